/* The dataset format's parallel writer, shared by `synth` and `curate`. */
#include <ackd/data.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void AckdDatasetPartition(PetscInt count, PetscMPIInt size, PetscMPIInt rank, PetscInt *lo, PetscInt *hi)
{
  PetscInt blocks = (count + ACKD_DATASET_STATS_BLOCK - 1) / ACKD_DATASET_STATS_BLOCK;
  PetscInt b0 = blocks * rank / size, b1 = blocks * (rank + 1) / size;
  *lo = PetscMin(b0 * ACKD_DATASET_STATS_BLOCK, count);
  *hi = PetscMin(b1 * ACKD_DATASET_STATS_BLOCK, count);
}

/* Running (count, mean, M2) of one band, merged with Chan et al.'s formula. */
typedef struct {
  double n, mean, m2;
} Moments;

static void moments_merge(Moments *a, const Moments *b)
{
  if (b->n == 0) return;
  if (a->n == 0) {
    *a = *b;
    return;
  }
  double n = a->n + b->n, delta = b->mean - a->mean;
  a->mean += delta * b->n / n;
  a->m2 += b->m2 + delta * delta * a->n * b->n / n;
  a->n = n;
}

struct _p_AckdCollectionWriter {
  MPI_Comm       comm;
  char           name[16];
  PetscInt       count, channels, height, width, label_columns;
  hid_t          group, images, labels, split, dxpl;
  PetscInt       lo, hi;        /* this rank's samples */
  PetscInt       first_block;   /* block index of `lo` */
  PetscInt       nblocks;       /* blocks this rank owns */
  Moments       *block_moments; /* nblocks x channels */
  double        *band_min, *band_max;
  double        *stats;  /* mean, std, min, max per band (4 x channels), after Finish */
  unsigned char *splits; /* this rank's samples' splits: Standardize revisits the training ones */
  PetscInt       next;   /* next sample this rank must write: enforces in-order writes */
};

static void reset_moments(AckdCollectionWriter w)
{
  memset(w->block_moments, 0, sizeof(Moments) * (size_t)PetscMax(w->nblocks, 1) * (size_t)w->channels);
  for (PetscInt c = 0; c < w->channels; c++) {
    w->band_min[c] = PETSC_MAX_REAL;
    w->band_max[c] = -PETSC_MAX_REAL;
  }
}

static PetscErrorCode create_dataset(hid_t loc, const char *name, hid_t type, int rank, const hsize_t *dims, hid_t dcpl,
                                     hid_t *dset)
{
  hid_t space;

  PetscFunctionBeginUser;
  AckdCallH5(space = H5Screate_simple(rank, dims, NULL), "dataspace of '%s'", name);
  AckdCallH5(*dset = H5Dcreate2(loc, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), "creating dataset '%s'", name);
  H5Sclose(space);
  PetscFunctionReturn(0);
}

static PetscErrorCode create_images(AckdCollectionWriter w, PetscInt compress)
{
  hsize_t dims[4]  = {(hsize_t)w->count, (hsize_t)w->channels, (hsize_t)w->height, (hsize_t)w->width};
  hsize_t chunk[4] = {1, dims[1], dims[2], dims[3]};
  hid_t   dcpl;

  PetscFunctionBeginUser;
  /* One sample per chunk: a loader reads any sample alone, and no chunk is
   * ever shared by two ranks, which filtered parallel writes require. */
  AckdCallH5(dcpl = H5Pcreate(H5P_DATASET_CREATE), "images property list");
  AckdCallH5(H5Pset_chunk(dcpl, 4, chunk), "chunking /%s/images", w->name);
  AckdCallH5(H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER), "fill time of /%s/images", w->name);
  if (compress > 0) {
    AckdCallH5(H5Pset_shuffle(dcpl), "shuffle filter on /%s/images", w->name);
    AckdCallH5(H5Pset_deflate(dcpl, (unsigned)compress), "deflate filter on /%s/images", w->name);
  }
  PetscErrorCode ierr = create_dataset(w->group, "images", H5T_NATIVE_FLOAT, 4, dims, dcpl, &w->images);
  H5Pclose(dcpl);
  PetscCall(ierr);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCollectionWriterCreate(MPI_Comm comm, hid_t file, const AckdCollectionLayout *layout,
                                          AckdCollectionWriter *writer)
{
  AckdCollectionWriter w;
  PetscMPIInt          rank, size;

  PetscFunctionBeginUser;
  PetscCheck(layout->count > 0 && layout->channels > 0 && layout->height > 0 && layout->width > 0, comm,
             PETSC_ERR_ARG_OUTOFRANGE, "collection '%s' needs positive count and image shape", layout->name);
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCall(PetscNew(&w));
  w->comm = comm;
  PetscCall(PetscStrncpy(w->name, layout->name, sizeof w->name));
  w->count         = layout->count;
  w->channels      = layout->channels;
  w->height        = layout->height;
  w->width         = layout->width;
  w->label_columns = layout->label_columns;
  AckdDatasetPartition(w->count, size, rank, &w->lo, &w->hi);
  w->next        = w->lo;
  w->first_block = w->lo / ACKD_DATASET_STATS_BLOCK;
  w->nblocks     = (w->hi - w->lo + ACKD_DATASET_STATS_BLOCK - 1) / ACKD_DATASET_STATS_BLOCK;
  PetscCall(PetscCalloc1((size_t)PetscMax(w->nblocks, 1) * w->channels, &w->block_moments));
  PetscCall(PetscMalloc2(w->channels, &w->band_min, w->channels, &w->band_max));
  PetscCall(PetscMalloc1(4 * w->channels, &w->stats));
  PetscCall(PetscMalloc1(PetscMax(w->hi - w->lo, 1), &w->splits));
  reset_moments(w);

  AckdCallH5(w->group = H5Gcreate2(file, layout->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "creating group /%s",
             layout->name);
  PetscCall(create_images(w, layout->compress));
  hsize_t n = (hsize_t)w->count, nk[2] = {(hsize_t)w->count, (hsize_t)layout->label_columns};
  if (w->label_columns > 0)
    PetscCall(create_dataset(w->group, "labels", H5T_NATIVE_UCHAR, 2, nk, H5P_DEFAULT, &w->labels));
  else
    PetscCall(create_dataset(w->group, "labels", H5T_NATIVE_INT, 1, &n, H5P_DEFAULT, &w->labels));
  PetscCall(create_dataset(w->group, "split", H5T_NATIVE_UCHAR, 1, &n, H5P_DEFAULT, &w->split));
  AckdCallH5(w->dxpl = H5Pcreate(H5P_DATASET_XFER), "transfer property list");
  AckdCallH5(H5Pset_dxpl_mpio(w->dxpl, H5FD_MPIO_COLLECTIVE), "collective transfer");

  PetscCall(AckdH5WriteStrings(comm, w->group, "classes", layout->nclasses, layout->class_names));
  PetscCall(AckdH5WriteStrings(comm, w->group, "bands", layout->channels, layout->band_names));
  if (layout->wavelength_nm) {
    hsize_t c = (hsize_t)layout->channels;
    PetscCall(AckdH5WriteSmall(comm, w->group, "wavelength_nm", H5T_NATIVE_DOUBLE, 1, &c, layout->wavelength_nm));
  }
  PetscCall(AckdH5AttrWriteInt(w->group, "count", w->count));
  PetscCall(AckdH5AttrWriteInt(w->group, "channels", w->channels));
  PetscCall(AckdH5AttrWriteInt(w->group, "height", w->height));
  PetscCall(AckdH5AttrWriteInt(w->group, "width", w->width));
  PetscCall(AckdH5AttrWriteInt(w->group, "classes", layout->nclasses));
  PetscCall(AckdH5AttrWriteInt(w->group, "multilabel", w->label_columns > 0));
  PetscCall(AckdH5AttrWriteString(w->group, "sensor", layout->sensor ? layout->sensor : "unknown"));
  PetscCall(AckdH5AttrWriteString(w->group, "normalization", layout->normalization ? layout->normalization : "none"));
  if (layout->source_bands)
    PetscCall(AckdH5AttrWriteIntArray(w->group, "source_bands", w->channels, layout->source_bands));
  PetscCall(AckdH5AttrWriteString(w->group, "stats_split", "train"));
  *writer = w;
  PetscFunctionReturn(0);
}

/* Folds one training sample into its block's per-band moments. */
static void accumulate_sample(AckdCollectionWriter w, PetscInt index, const float *image)
{
  PetscInt hw     = w->height * w->width;
  Moments *blocks = w->block_moments + (index / ACKD_DATASET_STATS_BLOCK - w->first_block) * w->channels;

  for (PetscInt c = 0; c < w->channels; c++) {
    const float *band = image + c * hw;
    double       sum = 0, m2 = 0, lo = band[0], hi = band[0];
    for (PetscInt p = 0; p < hw; p++) sum += band[p];
    double mean = sum / (double)hw;
    for (PetscInt p = 0; p < hw; p++) {
      double d = band[p] - mean;
      m2 += d * d;
      lo = PetscMin(lo, band[p]);
      hi = PetscMax(hi, band[p]);
    }
    Moments sample = {(double)hw, mean, m2};
    moments_merge(&blocks[c], &sample);
    w->band_min[c] = PetscMin(w->band_min[c], lo);
    w->band_max[c] = PetscMax(w->band_max[c], hi);
  }
}

static PetscErrorCode write_rows(AckdCollectionWriter w, hid_t dset, hid_t memtype, PetscInt first, PetscInt n,
                                 const void *data)
{
  hid_t fspace, mspace;

  PetscFunctionBeginUser;
  PetscCall(AckdH5SelectRows(dset, first, n, &fspace, &mspace));
  AckdCallH5Agreed(w->comm, dset, H5Dwrite(dset, memtype, mspace, fspace, w->dxpl, data),
                   "writing samples %" PetscInt_FMT "..%" PetscInt_FMT " of /%s", first, first + n, w->name);
  H5Sclose(mspace);
  H5Sclose(fspace);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCollectionWriterWrite(AckdCollectionWriter w, PetscInt first, PetscInt n, const float *images,
                                         const int *labels, const unsigned char *multilabels,
                                         const unsigned char *splits)
{
  PetscFunctionBeginUser;
  if (n > 0) {
    PetscCheck(first == w->next && first + n <= w->hi, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
               "samples %" PetscInt_FMT "..%" PetscInt_FMT
               " of /%s are out of order for this rank (expected from %" PetscInt_FMT " below %" PetscInt_FMT ")",
               first, first + n, w->name, w->next, w->hi);
    PetscInt sample = w->channels * w->height * w->width;
    for (PetscInt i = 0; i < n * sample; i++)
      PetscCheck(!PetscIsInfOrNanReal(images[i]), PETSC_COMM_SELF, PETSC_ERR_FP,
                 "sample %" PetscInt_FMT " of /%s has a NaN or Inf pixel; refusing to write it", first + i / sample,
                 w->name);
    for (PetscInt i = 0; i < n; i++) {
      w->splits[first + i - w->lo] = splits[i];
      if (splits[i] == ACKD_SPLIT_TRAIN) accumulate_sample(w, first + i, images + i * sample);
    }
    w->next += n;
  }
  PetscCall(write_rows(w, w->images, H5T_NATIVE_FLOAT, first, n, images));
  if (w->label_columns > 0)
    PetscCall(write_rows(w, w->labels, H5T_NATIVE_UCHAR, first, n, multilabels));
  else
    PetscCall(write_rows(w, w->labels, H5T_NATIVE_INT, first, n, labels));
  PetscCall(write_rows(w, w->split, H5T_NATIVE_UCHAR, first, n, splits));
  PetscFunctionReturn(0);
}

/* Gathers every block's moments everywhere and merges them in block order,
 * so the statistics do not depend on how blocks were spread over ranks. */
static PetscErrorCode merge_statistics(AckdCollectionWriter w)
{
  PetscMPIInt size, *counts, *displs;
  PetscInt    C = w->channels, total_blocks = (w->count + ACKD_DATASET_STATS_BLOCK - 1) / ACKD_DATASET_STATS_BLOCK;
  PetscMPIInt mine = (PetscMPIInt)(w->nblocks * C * 3);
  Moments    *all;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_size(w->comm, &size));
  PetscCall(PetscMalloc2(size, &counts, size, &displs));
  PetscCall(PetscMalloc1((size_t)total_blocks * C, &all));
  PetscCallMPI(MPI_Allgather(&mine, 1, MPI_INT, counts, 1, MPI_INT, w->comm));
  displs[0] = 0;
  for (PetscMPIInt r = 1; r < size; r++) displs[r] = displs[r - 1] + counts[r - 1];
  PetscCallMPI(MPI_Allgatherv(w->block_moments, mine, MPI_DOUBLE, all, counts, displs, MPI_DOUBLE, w->comm));
  double *stats = w->stats;
  for (PetscInt c = 0; c < C; c++) {
    Moments m = {0, 0, 0};
    for (PetscInt b = 0; b < total_blocks; b++) moments_merge(&m, &all[b * C + c]);
    stats[c]     = m.mean;
    stats[C + c] = m.n > 0 ? sqrt(m.m2 / m.n) : 0.0;
  }
  PetscCallMPI(MPI_Allreduce(w->band_min, stats + 2 * C, (int)C, MPI_DOUBLE, MPI_MIN, w->comm));
  PetscCallMPI(MPI_Allreduce(w->band_max, stats + 3 * C, (int)C, MPI_DOUBLE, MPI_MAX, w->comm));
  for (PetscInt c = 0; c < C; c++)
    if (stats[2 * C + c] > stats[3 * C + c]) stats[2 * C + c] = stats[3 * C + c] = 0; /* no training samples */
  PetscCall(PetscFree(all));
  PetscCall(PetscFree2(counts, displs));
  PetscFunctionReturn(0);
}

static const char *const STAT_NAMES[] = {"band_mean", "band_std", "band_min", "band_max"};

static PetscErrorCode write_statistics(AckdCollectionWriter w)
{
  hsize_t dims = (hsize_t)w->channels;

  PetscFunctionBeginUser;
  for (int k = 0; k < 4; k++)
    PetscCall(
        AckdH5WriteSmall(w->comm, w->group, STAT_NAMES[k], H5T_NATIVE_DOUBLE, 1, &dims, w->stats + k * w->channels));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCollectionWriterFinish(AckdCollectionWriter w)
{
  PetscFunctionBeginUser;
  PetscCheck(w->next == w->hi, PETSC_COMM_SELF, PETSC_ERR_ARG_WRONGSTATE,
             "/%s: rank wrote samples up to %" PetscInt_FMT " of its %" PetscInt_FMT "..%" PetscInt_FMT, w->name,
             w->next, w->lo, w->hi);
  PetscCall(merge_statistics(w));
  PetscCall(write_statistics(w));
  PetscFunctionReturn(0);
}

static PetscErrorCode read_rows(AckdCollectionWriter w, PetscInt first, PetscInt n, float *data)
{
  hid_t fspace, mspace;

  PetscFunctionBeginUser;
  PetscCall(AckdH5SelectRows(w->images, first, n, &fspace, &mspace));
  AckdCallH5(H5Dread(w->images, H5T_NATIVE_FLOAT, mspace, fspace, w->dxpl, data),
             "reading back samples %" PetscInt_FMT "..%" PetscInt_FMT " of /%s", first, first + n, w->name);
  H5Sclose(mspace);
  H5Sclose(fspace);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCollectionWriterStandardize(AckdCollectionWriter w)
{
  enum { BATCH = 64 };
  PetscInt C = w->channels, hw = w->height * w->width, sample = C * hw, rounds;
  double   mean[ACKD_RASTER_MAX_BANDS], inv_std[ACKD_RASTER_MAX_BANDS];
  float   *buf;

  PetscFunctionBeginUser;
  PetscCheck(C <= ACKD_RASTER_MAX_BANDS, PETSC_COMM_SELF, PETSC_ERR_SUP, "standardising more than %d bands",
             ACKD_RASTER_MAX_BANDS);
  for (PetscInt c = 0; c < C; c++) {
    mean[c]    = w->stats[c];
    inv_std[c] = w->stats[C + c] > 0 ? 1.0 / w->stats[C + c] : 1.0; /* a constant band stays centred */
  }
  for (int k = 0; k < 4; k++) {
    char kept[32];
    snprintf(kept, sizeof kept, "source_%s", STAT_NAMES[k]);
    AckdCallH5(H5Lmove(w->group, STAT_NAMES[k], w->group, kept, H5P_DEFAULT, H5P_DEFAULT), "renaming /%s/%s", w->name,
               STAT_NAMES[k]);
  }
  reset_moments(w);
  PetscCall(PetscMalloc1((size_t)BATCH * sample, &buf));
  PetscInt mine = (w->hi - w->lo + BATCH - 1) / BATCH;
  PetscCallMPI(MPI_Allreduce(&mine, &rounds, 1, MPIU_INT, MPI_MAX, w->comm));
  for (PetscInt r = 0; r < rounds; r++) {
    PetscInt first = w->lo + r * BATCH, n = PetscMax(0, PetscMin(BATCH, w->hi - first));
    PetscCall(read_rows(w, first, n, buf));
    for (PetscInt i = 0; i < n; i++) {
      float *x = buf + i * sample;
      for (PetscInt c = 0; c < C; c++)
        for (PetscInt p = 0; p < hw; p++) x[c * hw + p] = (float)((x[c * hw + p] - mean[c]) * inv_std[c]);
      if (w->splits[first + i - w->lo] == ACKD_SPLIT_TRAIN) accumulate_sample(w, first + i, x);
    }
    PetscCall(write_rows(w, w->images, H5T_NATIVE_FLOAT, first, n, buf));
  }
  PetscCall(PetscFree(buf));
  /* Statistics of what is stored now, merged exactly as the first time. */
  PetscCall(merge_statistics(w));
  PetscCall(write_statistics(w));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCollectionWriterDestroy(AckdCollectionWriter *writer)
{
  AckdCollectionWriter w = *writer;

  PetscFunctionBeginUser;
  if (!w) PetscFunctionReturn(0);
  if (w->dxpl > 0) H5Pclose(w->dxpl);
  if (w->images > 0) H5Dclose(w->images);
  if (w->labels > 0) H5Dclose(w->labels);
  if (w->split > 0) H5Dclose(w->split);
  if (w->group > 0) H5Gclose(w->group);
  PetscCall(PetscFree(w->block_moments));
  PetscCall(PetscFree2(w->band_min, w->band_max));
  PetscCall(PetscFree(w->stats));
  PetscCall(PetscFree(w->splits));
  PetscCall(PetscFree(w));
  *writer = NULL;
  PetscFunctionReturn(0);
}

void AckdClassMapByName(PetscInt n_ms, const char *const *ms_classes, PetscInt n_rgb, const char *const *rgb_classes,
                        int *ms_to_rgb)
{
  for (PetscInt i = 0; i < n_ms; i++) {
    ms_to_rgb[i] = -1;
    for (PetscInt j = 0; j < n_rgb && ms_to_rgb[i] < 0; j++)
      if (!strcmp(ms_classes[i], rgb_classes[j])) ms_to_rgb[i] = (int)j;
  }
}

PetscErrorCode AckdDatasetWriteClassMap(MPI_Comm comm, hid_t file, PetscInt n_ms, PetscInt n_rgb, const int *ms_to_rgb)
{
  int     *rgb_to_ms;
  PetscInt shared = 0;
  hid_t    group;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(PetscMax(n_rgb, 1), &rgb_to_ms));
  for (PetscInt j = 0; j < n_rgb; j++) rgb_to_ms[j] = -1;
  for (PetscInt i = 0; i < n_ms; i++) {
    if (ms_to_rgb[i] < 0) continue;
    PetscCheck(ms_to_rgb[i] < n_rgb && rgb_to_ms[ms_to_rgb[i]] < 0, PETSC_COMM_SELF, PETSC_ERR_ARG_WRONG,
               "class map relates RGB class %d to two MS classes or is out of range", ms_to_rgb[i]);
    rgb_to_ms[ms_to_rgb[i]] = (int)i;
    shared++;
  }
  AckdCallH5(group = H5Gcreate2(file, "class_map", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "creating /class_map");
  hsize_t d_ms = (hsize_t)n_ms, d_rgb = (hsize_t)n_rgb;
  PetscCall(AckdH5WriteSmall(comm, group, "ms_to_rgb", H5T_NATIVE_INT, 1, &d_ms, ms_to_rgb));
  PetscCall(AckdH5WriteSmall(comm, group, "rgb_to_ms", H5T_NATIVE_INT, 1, &d_rgb, rgb_to_ms));
  PetscCall(AckdH5AttrWriteInt(group, "shared", shared));
  PetscCall(AckdH5AttrWriteInt(group, "ms_only", n_ms - shared));
  PetscCall(AckdH5AttrWriteInt(group, "rgb_only", n_rgb - shared));
  H5Gclose(group);
  PetscCall(PetscFree(rgb_to_ms));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdDatasetOutputIsCurrent(MPI_Comm comm, const char *path, const char *attribute,
                                          const char *parameters, PetscBool force, const char *force_option,
                                          PetscBool *current)
{
  PetscMPIInt rank;
  int         state = 0; /* 0 absent, 1 current, 2 different */

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  if (rank == 0 && !access(path, F_OK)) {
    state = 2;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file >= 0) {
      char     *stored;
      PetscBool found = PETSC_FALSE;
      size_t    len   = strlen(parameters) + 2;
      PetscCall(PetscMalloc1(len, &stored));
      if (H5Aexists(file, attribute) > 0) PetscCall(AckdH5AttrReadString(file, attribute, stored, len, &found));
      if (found && !strcmp(stored, parameters)) state = 1;
      PetscCall(PetscFree(stored));
      H5Fclose(file);
    }
    H5Eclear2(H5E_DEFAULT);
  }
  PetscCallMPI(MPI_Bcast(&state, 1, MPI_INT, 0, comm));
  PetscCheck(
      state != 2 || force, comm, PETSC_ERR_USER_INPUT,
      "output '%s' exists and was not written with these parameters; pass %s to replace it, or choose another output",
      path, force_option);
  *current = (PetscBool)(state == 1 && !force);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdDatasetWriteProvenance(MPI_Comm comm, hid_t file, const char *generator)
{
  char        stamp[32] = "";
  char       *options;
  PetscMPIInt rank, size;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  /* Attributes are written collectively and must be identical on every rank:
   * take rank 0's clock. */
  if (rank == 0) {
    time_t    now = time(NULL);
    struct tm utc;
    gmtime_r(&now, &utc);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &utc);
  }
  PetscCallMPI(MPI_Bcast(stamp, sizeof stamp, MPI_CHAR, 0, comm));
  PetscCall(AckdOptionsToString(&options));
  PetscCall(AckdH5AttrWriteString(file, "ackd_format", ACKD_FORMAT_DATASET));
  PetscCall(AckdH5AttrWriteInt(file, "ackd_format_version", ACKD_FORMAT_DATASET_VERSION));
  PetscCall(AckdH5AttrWriteString(file, "ackd_version", ACKD_VERSION_STRING));
  PetscCall(AckdH5AttrWriteString(file, "created_utc", stamp));
  PetscCall(AckdH5AttrWriteString(file, "generator", generator));
  PetscCall(AckdH5AttrWriteString(file, "options", options));
  PetscCall(AckdH5AttrWriteInt(file, "mpi_ranks", size));
  PetscCall(PetscFree(options));
  PetscFunctionReturn(0);
}
