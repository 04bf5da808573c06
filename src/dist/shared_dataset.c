/* A collection held once per node, or streamed from the file.
 *
 * Ranks on one node share an MPI-3 window holding all images; each of them
 * reads a slice of it from the file, collectively with the other nodes, so a
 * node reads the collection once, not once per rank, and keeps one copy in
 * memory. Labels and splits are small and replicated on every rank.
 *
 * With -h5_streaming (a collection larger than a node's memory) no
 * image is held: every rank keeps the file open and reads the rows a batch
 * asks for, sorted into one hyperslab selection per call so the file is
 * read in increasing order, then scattered back into the caller's order. */
#include <ackd/dist.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <ackd/data.h>

enum {
  READ_CHUNK_BYTES = 256 << 20 /* per rank and call: MPI-IO counts are ints */
};

/* A stage's set-up is mostly this read at EuroSAT's scene size (reading and inflating 850 MB of
 * 64 x 64 scenes takes seconds): -log_view shows it beside the steps. */
static AckdLogPackage dataset_log = {.name = "ackd dataset", .nevents = 1, .event_names = {"DataLoad"}};

struct _p_AckdSharedDataset {
  MPI_Comm       node;
  MPI_Win        window;
  float         *images;
  int           *labels;
  unsigned char *split;
  unsigned char *multilabels; /* (count, columns) 0/1 of a multi-label collection, else NULL */
  int           *dominant;    /* (count) the class covering most of each scene, where a multi-label file records it */
  float         *fractions;   /* (count, columns) each class's share of the scene, read on request, else NULL */
  PetscInt       fraction_columns;
  AckdH5Settings h5; /* as loaded, for reading more of the file later */
  PetscInt       count, channels, height, width, columns;
  PetscBool      streaming;
  hid_t          stream_file, stream_images; /* streaming: this rank's own handles */
  char           path[PETSC_MAX_PATH_LEN], collection[64];
  double        *band_mean, *band_scale; /* the file's band statistics (NULL if it has none); scale = 1 / std */
  PetscBool      standardized;           /* reads return (x - mean) * scale per band */
};

static PetscErrorCode read_replicated(hid_t group, const char *name, hid_t type, void *buf, const char *path)
{
  hid_t dset;

  PetscFunctionBeginUser;
  AckdCallH5(dset = H5Dopen2(group, name, H5P_DEFAULT), "'%s': opening %s", path, name);
  AckdCallH5(H5Dread(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), "'%s': reading %s", path, name);
  H5Dclose(dset);
  PetscFunctionReturn(0);
}

/* Samples [lo, hi) into `dest`, in collective rounds every rank takes part in. */
static PetscErrorCode read_images(MPI_Comm comm, hid_t images, PetscInt lo, PetscInt hi, PetscInt sample, float *dest,
                                  const char *path)
{
  PetscInt per_round = PetscMax(1, READ_CHUNK_BYTES / (PetscInt)(sizeof(float) * sample));
  PetscInt mine      = (hi - lo + per_round - 1) / per_round, rounds;
  hid_t    dxpl;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Allreduce(&mine, &rounds, 1, MPIU_INT, MPI_MAX, comm));
  AckdCallH5(dxpl = H5Pcreate(H5P_DATASET_XFER), "transfer property list");
  AckdCallH5(H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE), "collective transfer");
  for (PetscInt r = 0; r < rounds; r++) {
    PetscInt first = lo + r * per_round, n = PetscMax(0, PetscMin(per_round, hi - first));
    hid_t    fspace, mspace;
    PetscCall(AckdH5SelectRows(images, first, n, &fspace, &mspace));
    AckdCallH5(H5Dread(images, H5T_NATIVE_FLOAT, mspace, fspace, dxpl, dest + (first - lo) * sample),
               "'%s': reading samples %" PetscInt_FMT "..%" PetscInt_FMT, path, first, first + n);
    H5Sclose(mspace);
    H5Sclose(fspace);
  }
  H5Pclose(dxpl);
  PetscFunctionReturn(0);
}

/* The first of n samples (each `sample` floats) holding NaN or Inf, or -1. One pass at load
 * time: a non-finite pixel would otherwise turn the first batch that holds it into NaN weights. */
static PetscInt first_nonfinite(const float *x, PetscInt n, PetscInt sample)
{
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt j = 0; j < sample; j++)
      if (!isfinite(x[i * sample + j])) return i;
  return -1;
}

PetscErrorCode AckdSharedDatasetLoad(MPI_Comm comm, const char *path, const char *collection, const AckdH5Settings *h5,
                                     AckdSharedDataset *dataset)
{
  AckdSharedDataset d;
  hid_t             file, group, images;
  PetscMPIInt       rank, node_rank, node_size;

  PetscFunctionBeginUser;
  PetscCall(AckdLogPackageRegister(&dataset_log));
  PetscCall(PetscLogEventBegin(dataset_log.events[0], 0, 0, 0, 0));
  PetscCall(PetscNew(&d));
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCall(PetscStrncpy(d->path, path, sizeof d->path));
  d->stream_file = d->stream_images = H5I_INVALID_HID;
  d->streaming                      = h5->streaming;
  d->h5                             = *h5;
  PetscCall(AckdH5FileOpenRead(comm, path, h5, &file));
  PetscCall(AckdDatasetValidate(file, path));
  PetscCheck(H5Lexists(file, collection, H5P_DEFAULT) > 0, comm, PETSC_ERR_FILE_UNEXPECTED,
             "'%s' has no /%s collection", path, collection);
  AckdCallH5(group = H5Gopen2(file, collection, H5P_DEFAULT), "'%s': opening /%s", path, collection);
  AckdCallH5(images = H5Dopen2(group, "images", H5P_DEFAULT), "'%s': opening /%s/images", path, collection);
  AckdH5Shape shape;
  PetscCall(AckdH5DatasetShapeOf(images, path, "images", &shape));
  d->count        = (PetscInt)shape.dims[0];
  d->channels     = (PetscInt)shape.dims[1];
  d->height       = (PetscInt)shape.dims[2];
  d->width        = (PetscInt)shape.dims[3];
  PetscInt sample = d->channels * d->height * d->width;

  /* One window per node, owned by the node's first rank (empty when streaming). */
  PetscCallMPI(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &d->node));
  PetscCallMPI(MPI_Comm_rank(d->node, &node_rank));
  PetscCallMPI(MPI_Comm_size(d->node, &node_size));
  MPI_Aint bytes = node_rank == 0 && !d->streaming ? (MPI_Aint)sizeof(float) * d->count * sample : 0;
  float   *base;
  /* The window lives in the node's shared memory (Open MPI: a file in /dev/shm), which containers
   * and some schedulers cap far below the node's memory (Docker: 64 MB). */
  int err = MPI_Win_allocate_shared(bytes, sizeof(float), MPI_INFO_NULL, d->node, &base, &d->window);
  if (err != MPI_SUCCESS) {
    char text[MPI_MAX_ERROR_STRING];
    int  len = 0;
    MPI_Error_string(err, text, &len);
    SETERRQ(PETSC_COMM_SELF, PETSC_ERR_MEM,
            "'%s': holding /%s's images in node memory needs %.0f MB of shared memory, which the MPI library could "
            "not allocate (%s); give the job more (Open MPI keeps it in /dev/shm, or where "
            "OMPI_MCA_osc_sm_backing_directory says), or read each batch from the file with -h5_streaming",
            path, collection, (double)sizeof(float) * d->count * sample / 1e6, text);
  }
  MPI_Aint size;
  int      unit;
  PetscCallMPI(MPI_Win_shared_query(d->window, 0, &size, &unit, &d->images));
  PetscCallMPI(MPI_Win_lock_all(MPI_MODE_NOCHECK, d->window));

  if (d->streaming) {
    /* Independent reads of a few rows at a time: every rank its own serial handle on the file. */
    d->images = NULL;
    AckdCallH5(d->stream_file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), "'%s': opening for streaming", path);
    char name[64];
    snprintf(name, sizeof name, "%s/images", collection);
    AckdCallH5(d->stream_images = H5Dopen2(d->stream_file, name, H5P_DEFAULT), "'%s': opening /%s", path, name);
  } else {
    PetscInt lo = d->count * node_rank / node_size, hi = d->count * (node_rank + 1) / node_size;
    PetscCall(read_images(comm, images, lo, hi, sample, d->images + lo * sample, path));
    PetscInt bad = first_nonfinite(d->images + lo * sample, hi - lo, sample), first;
    bad          = bad < 0 ? PETSC_MAX_INT : lo + bad;
    PetscCallMPI(MPI_Allreduce(&bad, &first, 1, MPIU_INT, MPI_MIN, comm));
    PetscCheck(first == PETSC_MAX_INT, comm, PETSC_ERR_FILE_UNEXPECTED,
               "'%s': /%s/images sample %" PetscInt_FMT " holds NaN or Inf; every pixel must be finite: fix or drop "
               "the sample (a raster's nodata value, for one)",
               path, collection, first);
    /* Make every rank's slice visible to the whole node before anyone reads it. */
    PetscCallMPI(MPI_Win_sync(d->window));
    PetscCallMPI(MPI_Barrier(d->node));
    PetscCallMPI(MPI_Win_sync(d->window));
  }

  char        labels[96];
  AckdH5Shape lshape;
  PetscCall(PetscSNPrintf(labels, sizeof labels, "/%s/labels", collection));
  PetscCall(AckdH5DatasetShape(group, labels, path, &lshape));
  PetscCheck(lshape.rank == 1 || lshape.rank == 2, comm, PETSC_ERR_FILE_UNEXPECTED,
             "'%s': /%s/labels has %d dimensions; expected (N) or (N, K) for multi-label", path, collection,
             lshape.rank);
  PetscCall(PetscMalloc2(d->count, &d->labels, d->count, &d->split));
  if (lshape.rank == 1) {
    PetscCall(read_replicated(group, "labels", H5T_NATIVE_INT, d->labels, path));
  } else {
    /* Multi-label: the (N, K) 0/1 table, replicated like the split; no single class per sample. */
    d->columns = (PetscInt)lshape.dims[1];
    PetscCall(PetscMalloc1(PetscMax(d->count * d->columns, 1), &d->multilabels));
    PetscCall(read_replicated(group, "labels", H5T_NATIVE_UCHAR, d->multilabels, path));
    for (PetscInt i = 0; i < d->count; i++) d->labels[i] = -1;
    if (H5Lexists(group, "dominant_class", H5P_DEFAULT) > 0) {
      PetscCall(PetscMalloc1(PetscMax(d->count, 1), &d->dominant));
      PetscCall(read_replicated(group, "dominant_class", H5T_NATIVE_INT, d->dominant, path));
      for (PetscInt i = 0; i < d->count; i++) {
        const int c = d->dominant[i];
        PetscCheck(c >= 0 && c < d->columns && d->multilabels[i * d->columns + c], comm, PETSC_ERR_FILE_UNEXPECTED,
                   "'%s': /%s/dominant_class[%" PetscInt_FMT "] = %d is not one of the sample's positive labels; "
                   "rewrite the file or remove dominant_class",
                   path, collection, i, c);
      }
    }
  }
  PetscCall(read_replicated(group, "split", H5T_NATIVE_UCHAR, d->split, path));
  if (H5Lexists(group, "band_mean", H5P_DEFAULT) > 0 && H5Lexists(group, "band_std", H5P_DEFAULT) > 0) {
    PetscCall(PetscMalloc2(d->channels, &d->band_mean, d->channels, &d->band_scale));
    PetscCall(read_replicated(group, "band_mean", H5T_NATIVE_DOUBLE, d->band_mean, path));
    PetscCall(read_replicated(group, "band_std", H5T_NATIVE_DOUBLE, d->band_scale, path));
    /* a constant band is only centred */
    for (PetscInt c = 0; c < d->channels; c++) d->band_scale[c] = d->band_scale[c] > 0 ? 1.0 / d->band_scale[c] : 1.0;
  }
  PetscCall(PetscStrncpy(d->collection, collection, sizeof d->collection));
  H5Dclose(images);
  H5Gclose(group);
  PetscCall(AckdH5FileClose(&file, path));
  *dataset = d;
  PetscCall(PetscLogEventEnd(dataset_log.events[0], 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdSharedDatasetGetShape(AckdSharedDataset d, PetscInt *count, PetscInt *channels, PetscInt *height,
                                         PetscInt *width)
{
  PetscFunctionBeginUser;
  *count    = d->count;
  *channels = d->channels;
  *height   = d->height;
  *width    = d->width;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdSharedDatasetStandardize(AckdSharedDataset d)
{
  PetscFunctionBeginUser;
  PetscCheck(d->band_mean, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED,
             "'%s': /%s has no band_mean and band_std to standardise its bands with; write the dataset again with "
             "ackd synth or ackd curate",
             d->path, d->collection);
  d->standardized = PETSC_TRUE;
  PetscFunctionReturn(0);
}

static void standardize(const AckdSharedDataset d, PetscInt n, float *x)
{
  const PetscInt plane = d->height * d->width;
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt c = 0; c < d->channels; c++) {
      float      *band = x + (i * d->channels + c) * plane;
      const float mean = (float)d->band_mean[c], scale = (float)d->band_scale[c];
      for (PetscInt q = 0; q < plane; q++) band[q] = (band[q] - mean) * scale;
    }
}

PetscErrorCode AckdSharedDatasetGetArrays(AckdSharedDataset d, const float **images, const int **labels,
                                          const unsigned char **split)
{
  PetscFunctionBeginUser;
  if (images) *images = d->standardized ? NULL : d->images;
  if (labels) *labels = d->labels;
  if (split) *split = d->split;
  PetscFunctionReturn(0);
}

typedef struct {
  PetscInt row, at;
} RowAt;

static int compare_rows(const void *a, const void *b)
{
  const RowAt *x = a, *y = b;
  return (x->row > y->row) - (x->row < y->row);
}

PetscErrorCode AckdSharedDatasetReadImages(AckdSharedDataset d, PetscInt n, const PetscInt *rows, float *out)
{
  const PetscInt sample = d->channels * d->height * d->width;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < n; i++)
    PetscCheck(rows[i] >= 0 && rows[i] < d->count, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
               "sample %" PetscInt_FMT " is outside the collection's %" PetscInt_FMT, rows[i], d->count);
  if (!d->streaming) {
    for (PetscInt i = 0; i < n; i++) PetscCall(PetscArraycpy(out + i * sample, d->images + rows[i] * sample, sample));
    if (d->standardized) standardize(d, n, out);
    PetscFunctionReturn(0);
  }
  if (n == 0) PetscFunctionReturn(0);
  /* HDF5 returns a union of hyperslabs in file order: read sorted, unique rows, then place them. */
  RowAt    *order;
  float    *buffer;
  PetscInt *slot, unique = 0;
  hid_t     fspace, mspace;
  PetscCall(PetscMalloc2(n, &order, n, &slot));
  for (PetscInt i = 0; i < n; i++) order[i] = (RowAt){rows[i], i};
  qsort(order, (size_t)n, sizeof *order, compare_rows);
  AckdCallH5(fspace = H5Dget_space(d->stream_images), "'%s': image dataspace", d->path);
  AckdCallH5(H5Sselect_none(fspace), "selecting no rows");
  for (PetscInt i = 0; i < n;) {
    PetscInt j = i + 1;
    while (j < n && order[j].row <= order[j - 1].row + 1) j++; /* a run of consecutive (or repeated) rows */
    hsize_t start[4] = {(hsize_t)order[i].row, 0, 0, 0};
    hsize_t count[4] = {(hsize_t)(order[j - 1].row - order[i].row + 1), (hsize_t)d->channels, (hsize_t)d->height,
                        (hsize_t)d->width};
    AckdCallH5(H5Sselect_hyperslab(fspace, H5S_SELECT_OR, start, NULL, count, NULL), "selecting rows");
    for (PetscInt k = i; k < j; k++) slot[k] = unique + order[k].row - order[i].row; /* its place in the buffer */
    unique += (PetscInt)count[0];
    i = j;
  }
  hsize_t mdims = (hsize_t)(unique * sample);
  AckdCallH5(mspace = H5Screate_simple(1, &mdims, NULL), "memory space");
  PetscCall(PetscMalloc1(unique * sample, &buffer));
  AckdCallH5(H5Dread(d->stream_images, H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, buffer),
             "'%s': streaming %" PetscInt_FMT " samples", d->path, n);
  for (PetscInt k = 0; k < n; k++)
    PetscCall(PetscArraycpy(out + order[k].at * sample, buffer + slot[k] * sample, sample));
  /* Streaming reads only this rank's rows: the rank that finds one reports it (AckdFinish aborts the rest). */
  for (PetscInt k = 0; k < n; k++)
    PetscCheck(first_nonfinite(out + k * sample, 1, sample) < 0, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED,
               "'%s': sample %" PetscInt_FMT " holds NaN or Inf; every pixel must be finite: fix or drop the sample "
               "(a raster's nodata value, for one)",
               d->path, rows[k]);
  if (d->standardized) standardize(d, n, out);
  H5Sclose(mspace);
  H5Sclose(fspace);
  PetscCall(PetscFree(buffer));
  PetscCall(PetscFree2(order, slot));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdSharedDatasetGetMultilabels(AckdSharedDataset d, PetscInt *columns,
                                               const unsigned char **multilabels)
{
  PetscFunctionBeginUser;
  if (columns) *columns = d->columns;
  if (multilabels) *multilabels = d->multilabels;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdSharedDatasetGetDominant(AckdSharedDataset d, const int **dominant)
{
  PetscFunctionBeginUser;
  *dominant = d->dominant;
  PetscFunctionReturn(0);
}

/* A row of shares must be a distribution; 1e-4 leaves room for shares rounded to float, not for a
 * row that forgot a class. Returns the first row that is not one, or -1. */
static PetscInt first_bad_fraction_row(const float *fractions, PetscInt count, PetscInt columns, double *sum,
                                       PetscBool *finite)
{
  for (PetscInt i = 0; i < count; i++) {
    const float *row = fractions + i * columns;
    PetscBool    bad = PETSC_FALSE;
    *sum             = 0.0;
    *finite          = PETSC_TRUE;
    for (PetscInt k = 0; k < columns; k++) {
      *finite = (PetscBool)(*finite && isfinite(row[k]));
      bad     = (PetscBool)(bad || !(row[k] >= 0.0f && row[k] <= 1.0f));
      *sum += row[k];
    }
    if (bad || fabs(*sum - 1.0) > 1e-4) return i;
  }
  return -1;
}

PetscErrorCode AckdSharedDatasetGetCoverFractions(MPI_Comm comm, AckdSharedDataset d, PetscInt classes,
                                                  const float **fractions)
{
  hid_t file, group;

  PetscFunctionBeginUser;
  if (!d->fractions) {
    PetscCall(AckdH5FileOpenRead(comm, d->path, &d->h5, &file));
    AckdCallH5(group = H5Gopen2(file, d->collection, H5P_DEFAULT), "'%s': opening /%s", d->path, d->collection);
    PetscCheck(H5Lexists(group, "cover_fractions", H5P_DEFAULT) > 0, comm, PETSC_ERR_FILE_UNEXPECTED,
               "'%s' has no /%s/cover_fractions (each scene's share of every class, docs/FORMATS.md) to train on; "
               "write the dataset with ackd synth -synth_mixing, add the table, or train on the labels",
               d->path, d->collection);
    char        name[96];
    AckdH5Shape shape;
    PetscCall(PetscSNPrintf(name, sizeof name, "/%s/cover_fractions", d->collection));
    PetscCall(AckdH5DatasetShape(group, name, d->path, &shape));
    PetscCheck(shape.rank == 2 && shape.dims[0] == (hsize_t)d->count && shape.dims[1] == (hsize_t)classes, comm,
               PETSC_ERR_FILE_UNEXPECTED,
               "'%s': /%s/cover_fractions must be (%" PetscInt_FMT ", %" PetscInt_FMT
               "), a row per sample and a column per class; it is %d-dimensional (%llu, %llu)",
               d->path, d->collection, d->count, classes, shape.rank, (unsigned long long)shape.dims[0],
               (unsigned long long)(shape.rank > 1 ? shape.dims[1] : 0));
    PetscCall(PetscMalloc1(PetscMax(d->count * classes, 1), &d->fractions));
    PetscCall(read_replicated(group, "cover_fractions", H5T_NATIVE_FLOAT, d->fractions, d->path));
    H5Gclose(group);
    PetscCall(AckdH5FileClose(&file, d->path));
    d->fraction_columns = classes;
    double    sum;
    PetscBool finite;
    PetscInt  bad = first_bad_fraction_row(d->fractions, d->count, classes, &sum, &finite);
    if (bad >= 0) PetscCall(PetscFree(d->fractions));
    PetscCheck(bad < 0 || finite, comm, PETSC_ERR_FILE_UNEXPECTED,
               "'%s': /%s/cover_fractions row %" PetscInt_FMT " holds NaN or Inf; every share must be finite; fix "
               "the table",
               d->path, d->collection, bad);
    PetscCheck(bad < 0, comm, PETSC_ERR_FILE_UNEXPECTED,
               "'%s': /%s/cover_fractions row %" PetscInt_FMT " is not a distribution over the classes (its shares "
               "sum to %.6g; each must lie in [0, 1] and they must sum to 1); fix the table",
               d->path, d->collection, bad, sum);
  }
  PetscCheck(d->fraction_columns == classes, comm, PETSC_ERR_ARG_INCOMP,
             "cover fractions read for %" PetscInt_FMT " classes, asked for %" PetscInt_FMT, d->fraction_columns,
             classes);
  *fractions = d->fractions;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdSharedDatasetDescribe(AckdSharedDataset d, char *text, size_t len)
{
  const int64_t shape[4] = {d->count, d->channels, d->height, d->width};
  uint64_t      h        = ACKD_DIGEST_START;

  PetscFunctionBeginUser;
  h = AckdDigest(h, shape, sizeof shape);
  h = AckdDigest(h, d->labels, sizeof(int) * (size_t)d->count);
  h = AckdDigest(h, d->split, (size_t)d->count);
  if (d->multilabels) h = AckdDigest(h, d->multilabels, (size_t)(d->count * d->columns));
  if (d->dominant) h = AckdDigest(h, d->dominant, sizeof(int) * (size_t)d->count);
  if (d->fractions) h = AckdDigest(h, d->fractions, sizeof(float) * (size_t)(d->count * d->fraction_columns));
  if (d->band_mean) {
    h = AckdDigest(h, d->band_mean, sizeof(double) * (size_t)d->channels);
    h = AckdDigest(h, d->band_scale, sizeof(double) * (size_t)d->channels);
  }
  snprintf(text, len,
           "/%s: %" PetscInt_FMT " samples of %" PetscInt_FMT " x %" PetscInt_FMT " x %" PetscInt_FMT
           ", labels and split %016llx",
           d->collection, d->count, d->channels, d->height, d->width, (unsigned long long)h);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdSharedDatasetDestroy(AckdSharedDataset *dataset)
{
  AckdSharedDataset d = *dataset;

  PetscFunctionBeginUser;
  if (!d) PetscFunctionReturn(0);
  if (d->stream_images >= 0) H5Dclose(d->stream_images);
  if (d->stream_file >= 0) H5Fclose(d->stream_file);
  PetscCallMPI(MPI_Win_unlock_all(d->window));
  PetscCallMPI(MPI_Win_free(&d->window));
  PetscCallMPI(MPI_Comm_free(&d->node));
  PetscCall(PetscFree2(d->labels, d->split));
  PetscCall(PetscFree(d->multilabels));
  PetscCall(PetscFree(d->dominant));
  PetscCall(PetscFree(d->fractions));
  PetscCall(PetscFree2(d->band_mean, d->band_scale));
  PetscCall(PetscFree(d));
  *dataset = NULL;
  PetscFunctionReturn(0);
}
