/* `ackd curate`: a dataset file from real image folders, through GDAL.
 *
 * Each collection (MS GeoTIFFs, RGB JPEG/PNG/TIFF) is read in two passes.
 * Pass 1: ranks split the file list, decode their share, and record per file
 * its status, band count, size and content hash; the table is gathered so
 * that every rank makes the same decisions (the collection's size and band
 * count, which files to skip, which are duplicates). Pass 2: ranks split the
 * kept samples by final index, decode them again and write collectively.
 * Decoding twice costs less than holding a large collection in memory, and
 * makes the result independent of the number of ranks. */
#include "gdal_library.h"
#include "multilabel_sources.h"
#include <ackd/ckpt.h>
#include <string.h>
#include <sys/stat.h>

static AckdLogPackage curate_log = {
    .name = "ackd curate", .nevents = 2, .event_names = {"CurateDecode", "CurateWrite"}};

enum {
  WRITE_BATCH    = 32, /* samples decoded and written per collective round */
  WARNINGS_SHOWN = 20, /* per kind of problem; the rest are counted */
  CHECK_FIELDS   = 5   /* status, bands, height, width, hash */
};

static const char *const MS_EXTENSIONS[]                         = {"tif", "tiff", NULL};
static const char *const RGB_EXTENSIONS[]                        = {"jpg", "jpeg", "png", "tif", "tiff", NULL};
static const char *const STATUS_COUNT_ATTR[ACKD_RASTER_STATUSES] = {NULL, "skipped_unreadable", "skipped_band_count",
                                                                    "skipped_odd_size", "skipped_not_finite"};

struct _p_AckdCurate {
  MPI_Comm       comm;
  AckdLog        log;
  AckdH5Settings h5;
  char           output[PETSC_MAX_PATH_LEN], ms_dir[PETSC_MAX_PATH_LEN], rgb_dir[PETSC_MAX_PATH_LEN];
  char           class_map[PETSC_MAX_PATH_LEN], ms_labels[PETSC_MAX_PATH_LEN], ms_mat[PETSC_MAX_PATH_LEN];
  char           ms_fractions[PETSC_MAX_PATH_LEN];
  char           mat_layout[8], ms_class_names[4096];
  PetscInt       ms_bands[ACKD_RASTER_MAX_BANDS], n_ms_bands, ms_size, rgb_size;
  PetscInt       normalize, folds, fold, seed, compress, cache_mb;
  PetscReal      train, val;
  PetscReal      rgb_train, rgb_val; /* the RGB collection's own; train and val unless given */
  PetscBool      strict, drop_duplicates, force;
  PetscLogEvent  event_decode, event_write;
};

/* One collection on its way into the file. */
typedef struct {
  const char       *name, *dir;
  AckdClassFolders  folders;   /* the samples: class folders, or the rows of a label table or .mat file */
  unsigned char    *multi;     /* multi-label sources: nfiles x nclasses, else NULL */
  float            *fractions; /* a fraction table's cover fractions: nfiles x nclasses, else NULL */
  AckdMatInput      mat;       /* a .mat source, else NULL */
  AckdRasterRequest request;
  PetscInt          fixed_size; /* from the options; 0: the most common size */
  uint32_t          split_tag;
  PetscReal         train, val; /* the split's fractions when not k-fold */
  long long        *check;      /* CHECK_FIELDS per file, identical on every rank after pass 1 */
  PetscBool        *duplicate;
  PetscInt         *kept, nkept; /* final sample -> file */
  PetscInt          bands, height, width;
  PetscInt          skipped[ACKD_RASTER_STATUSES], duplicates, empty_classes;
  /* Pass 1's decodes, kept (within -curate_cache_mb) for pass 2, whose
   * block partition puts nearly every kept file back on the same rank. */
  float     *cache;
  PetscBool *cached;
  PetscInt   cache_lo, cache_slots, cache_height, cache_width;
} Source;

PetscErrorCode AckdCurateCreate(MPI_Comm comm, AckdCurate *curate)
{
  AckdCurate c;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&c));
  c->comm = comm;
  PetscCall(PetscStrncpy(c->output, "curated.h5", sizeof c->output));
  PetscCall(PetscStrncpy(c->mat_layout, "NCWH", sizeof c->mat_layout));
  c->normalize = ACKD_NORMALIZE_IMAGE_MAX;
  c->folds     = 5;
  c->train     = 0.8;
  c->val       = 0.2;
  c->seed      = 42;
  c->compress  = 0;
  c->cache_mb  = 2048;
  PetscCall(AckdLogSetUp(&c->log, comm));
  PetscCall(AckdLogPackageRegister(&curate_log));
  c->event_decode = curate_log.events[0];
  c->event_write  = curate_log.events[1];
  const AckdGDALLibrary *gdal; /* loaded now, so a missing GDAL stops curate before any work */
  PetscCall(AckdGDALLibraryGet(&gdal));
  *curate = c;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCurateSetFromOptions(AckdCurate c)
{
  PetscBool rgb_train_set = PETSC_FALSE, rgb_val_set = PETSC_FALSE;

  PetscFunctionBeginUser;
  c->n_ms_bands = ACKD_RASTER_MAX_BANDS;
  PetscOptionsBegin(c->comm, NULL, "ackd curate: a dataset from image folders (ROOT/<class>/<image>) through GDAL",
                    NULL);
  PetscCall(AckdOptionsString(PetscOptionsObject, "-curate_output", "Dataset file to write", c->output,
                              sizeof c->output, NULL));
  PetscCall(AckdOptionsString(PetscOptionsObject, "-curate_ms_dir", "Multispectral GeoTIFFs, one folder per class",
                              c->ms_dir, sizeof c->ms_dir, NULL));
  PetscCall(
      AckdOptionsIntArray(PetscOptionsObject, "-curate_ms_bands",
                          "MS bands to keep, 1-based (required with -curate_ms_dir; the paper: 1,2,3,4,5,6,7,10,11,12)",
                          c->ms_bands, &c->n_ms_bands, 1, 100000, NULL));
  PetscCall(AckdOptionsString(
      PetscOptionsObject, "-curate_ms_labels",
      "Multi-label one-hot CSV 'path,<class>,...' of images under -curate_ms_dir (instead of class folders)",
      c->ms_labels, sizeof c->ms_labels, NULL));
  PetscCall(AckdOptionsString(
      PetscOptionsObject, "-curate_ms_fractions",
      "CSV 'path,<class>,...' of images under -curate_ms_dir with each one's share of every class's cover (rows sum "
      "to 1): single labels (the largest share) and /ms/cover_fractions (instead of class folders)",
      c->ms_fractions, sizeof c->ms_fractions, NULL));
  PetscCall(AckdOptionsString(PetscOptionsObject, "-curate_ms_mat",
                              "Multi-label MATLAB v7.3 .mat file with 'msi' and 'label' (instead of -curate_ms_dir)",
                              c->ms_mat, sizeof c->ms_mat, NULL));
  PetscCall(AckdOptionsString(PetscOptionsObject, "-curate_mat_layout",
                              "Axis order of msi as HDF5 sees it (MATLAB's H x W x C x N is NCWH)", c->mat_layout,
                              sizeof c->mat_layout, NULL));
  PetscCall(AckdOptionsString(PetscOptionsObject, "-curate_ms_classes",
                              "Class names of the .mat labels, comma-separated (default class_0, class_1, ...)",
                              c->ms_class_names, sizeof c->ms_class_names, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-curate_ms_size",
                           "MS image size; others are skipped (0: the most common size)", &c->ms_size, 0, 100000,
                           NULL));
  PetscCall(AckdOptionsString(PetscOptionsObject, "-curate_rgb_dir",
                              "RGB images (JPEG, PNG, TIFF), one folder per class", c->rgb_dir, sizeof c->rgb_dir,
                              NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-curate_rgb_size",
                           "Resize RGB images to this size, bilinear (0: keep; other sizes are skipped)", &c->rgb_size,
                           0, 100000, NULL));
  PetscCall(AckdOptionsString(PetscOptionsObject, "-curate_class_map",
                              "CSV of 'ms_class,rgb_class' lines relating the two class lists (default: equal names)",
                              c->class_map, sizeof c->class_map, NULL));
  PetscCall(AckdOptionsChoice(
      PetscOptionsObject, "-curate_normalize",
      "image_max: the paper's x/max(x) then (x-0.5)/0.5; band_standardize: per-band (x-mean)/std over training",
      AckdNormalizationNames, 3, &c->normalize, NULL));
  PetscCall(
      AckdOptionsInt(PetscOptionsObject, "-curate_folds",
                     "Stratified k-fold split: fold -curate_fold is val, the rest train, no test split (ackd eval then "
                     "evaluates val); 0 or 1: -curate_train/-curate_val fractions, the rest test",
                     &c->folds, 0, 100, NULL));
  PetscCall(
      AckdOptionsInt(PetscOptionsObject, "-curate_fold", "Which fold is the validation set", &c->fold, 0, 99, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-curate_train", "Training fraction when not k-fold", &c->train, 0.0,
                            1.0, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-curate_val", "Validation fraction when not k-fold (rest: test)",
                            &c->val, 0.0, 1.0, NULL));
  c->rgb_train = c->train;
  c->rgb_val   = c->val;
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-curate_rgb_train",
                            "The RGB collection's own training fraction when not k-fold, for RGB labels scarcer than "
                            "the MS ones, as the scarce-label protocols of scene benchmarks (default: -curate_train)",
                            &c->rgb_train, 0.0, 1.0, &rgb_train_set));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-curate_rgb_val",
                            "The RGB collection's own validation fraction when not k-fold (default: -curate_val)",
                            &c->rgb_val, 0.0, 1.0, &rgb_val_set));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-curate_seed", "Seed of the splits", &c->seed, 0, PETSC_MAX_INT, NULL));
  PetscCall(AckdOptionsBool(PetscOptionsObject, "-curate_strict",
                            "Stop at the first unreadable, odd-sized or wrong-band image or empty class folder",
                            &c->strict, NULL));
  PetscCall(AckdOptionsBool(PetscOptionsObject, "-curate_drop_duplicates",
                            "Drop images whose pixels equal an earlier image's (they are always reported)",
                            &c->drop_duplicates, NULL));
  PetscCall(AckdOptionsInt(
      PetscOptionsObject, "-curate_compress",
      "Deflate level of the image datasets (0: none; deflating float imagery costs more CPU than it saves disk)",
      &c->compress, 0, 9, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-curate_cache_mb",
                           "Memory per rank for keeping pass-1 decodes, so pass 2 need not decode again", &c->cache_mb,
                           0, 1 << 30, NULL));
  PetscCall(AckdOptionsBool(PetscOptionsObject, "-curate_force", "Replace an existing output written otherwise",
                            &c->force, NULL));
  PetscOptionsEnd();
  PetscBool help;
  PetscCall(AckdOptionsHelpRequested(&help));
  if (help) PetscFunctionReturn(0); /* -help lists the options; what a run needs is checked for a run */
  PetscCheck(c->ms_dir[0] || c->ms_mat[0] || c->rgb_dir[0], c->comm, PETSC_ERR_USER_INPUT,
             "nothing to curate; give -curate_ms_dir (or -curate_ms_mat) and/or -curate_rgb_dir");
  PetscCheck(!(c->ms_dir[0] && c->ms_mat[0]), c->comm, PETSC_ERR_USER_INPUT,
             "give either -curate_ms_dir or -curate_ms_mat, not both");
  PetscCheck(!c->ms_labels[0] || c->ms_dir[0], c->comm, PETSC_ERR_USER_INPUT,
             "-curate_ms_labels names images under -curate_ms_dir; give that folder too");
  PetscCheck(!c->ms_fractions[0] || c->ms_dir[0], c->comm, PETSC_ERR_USER_INPUT,
             "-curate_ms_fractions names images under -curate_ms_dir; give that folder too");
  PetscCheck(!(c->ms_fractions[0] && c->ms_labels[0]), c->comm, PETSC_ERR_USER_INPUT,
             "give either -curate_ms_labels (multi-label) or -curate_ms_fractions (single labels and their cover "
             "fractions), not both");
  PetscCheck(!(c->ms_dir[0] || c->ms_mat[0]) || c->n_ms_bands > 0, c->comm, PETSC_ERR_USER_INPUT,
             "MS input needs -curate_ms_bands, the bands to keep (e.g. 1,2,3,4,5,6,7,10,11,12 as the paper)");
  PetscCheck(c->folds < 2 || c->fold < c->folds, c->comm, PETSC_ERR_USER_INPUT,
             "-curate_fold %" PetscInt_FMT " does not exist with -curate_folds %" PetscInt_FMT
             "; use 0..%" PetscInt_FMT,
             c->fold, c->folds, c->folds - 1);
  PetscCheck(c->folds >= 2 || c->train + c->val <= 1.0 + 1e-12, c->comm, PETSC_ERR_USER_INPUT,
             "-curate_train and -curate_val add up to more than 1; lower one");
  PetscCheck(c->folds < 2 || !(rgb_train_set || rgb_val_set), c->comm, PETSC_ERR_USER_INPUT,
             "-curate_rgb_train and -curate_rgb_val set fractions, but -curate_folds %" PetscInt_FMT
             " splits both collections into folds; give -curate_folds 0 to split by fractions",
             c->folds);
  PetscCheck(c->folds >= 2 || c->rgb_train + c->rgb_val <= 1.0 + 1e-12, c->comm, PETSC_ERR_USER_INPUT,
             "-curate_rgb_train and -curate_rgb_val (%g and %g) add up to more than 1; lower one", (double)c->rgb_train,
             (double)c->rgb_val);
  PetscCall(AckdH5SettingsSetFromOptions(&c->h5));
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------ pass 1 */

static PetscErrorCode read_sample(const Source *s, PetscInt i, AckdRasterBuffer *buf, AckdRasterInfo *info)
{
  PetscFunctionBeginUser;
  if (s->mat)
    PetscCall(AckdMatInputReadSample(s->mat, i, &s->request, buf, info));
  else
    PetscCall(AckdRasterRead(s->folders.paths[i], &s->request, buf, info));
  PetscFunctionReturn(0);
}

/* How messages name sample i: its file, or its place in the .mat file. */
static const char *sample_name(const Source *s, PetscInt i, char *buf, size_t len)
{
  if (!s->mat) return s->folders.paths[i];
  snprintf(buf, len, "%s: msi sample %" PetscInt_FMT, s->dir, i);
  return buf;
}

/* Keeps file i's decode if it has the size of this rank's first image and
 * the budget allows; slots are fixed-size so the cache is one allocation. */
static PetscErrorCode cache_keep(AckdCurate c, Source *s, PetscInt i, PetscInt hi, const AckdRasterInfo *info,
                                 const float *pixels, size_t floats)
{
  PetscFunctionBeginUser;
  if (!s->cache && c->cache_mb > 0) {
    size_t slot_bytes = sizeof(float) * floats;
    s->cache_slots    = PetscMin(hi - s->cache_lo, (PetscInt)(((size_t)c->cache_mb << 20) / slot_bytes));
    s->cache_height   = info->height;
    s->cache_width    = info->width;
    if (s->cache_slots > 0) {
      PetscCall(PetscMalloc1((size_t)s->cache_slots * floats, &s->cache));
      PetscCall(PetscCalloc1(s->cache_slots, &s->cached));
    }
  }
  PetscInt slot = i - s->cache_lo;
  if (!s->cache || slot >= s->cache_slots || info->height != s->cache_height || info->width != s->cache_width)
    PetscFunctionReturn(0);
  PetscCall(PetscArraycpy(s->cache + (size_t)slot * floats, pixels, floats));
  s->cached[slot] = PETSC_TRUE;
  PetscFunctionReturn(0);
}

/* File i's pixels from the cache, if pass 1 kept them at the collection's size. */
static const float *cache_find(const Source *s, PetscInt i, size_t floats)
{
  PetscInt slot = i - s->cache_lo;
  if (!s->cache || slot < 0 || slot >= s->cache_slots || !s->cached[slot]) return NULL;
  if (s->cache_height != s->height || s->cache_width != s->width) return NULL;
  return s->cache + (size_t)slot * floats;
}

static PetscErrorCode check_files(AckdCurate c, Source *s, AckdProgress *bar, PetscInt *done)
{
  PetscMPIInt      rank, size;
  PetscInt         n   = s->folders.nfiles;
  AckdRasterBuffer buf = {NULL, 0};

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(c->comm, &rank));
  PetscCallMPI(MPI_Comm_size(c->comm, &size));
  /* Block partition, as pass 2 uses over the kept files: with few files
   * skipped, a file is decoded and written by the same rank. */
  PetscInt lo, hi;
  AckdDatasetPartition(n, size, rank, &lo, &hi);
  s->cache_lo = lo;
  long long *mine;
  PetscCall(PetscCalloc1((size_t)PetscMax(hi - lo, 1) * CHECK_FIELDS, &mine));
  PetscCall(PetscLogEventBegin(c->event_decode, 0, 0, 0, 0));
  for (PetscInt i = lo; i < hi; i++) {
    AckdRasterInfo info;
    long long     *row = mine + (i - lo) * CHECK_FIELDS;
    PetscCall(read_sample(s, i, &buf, &info));
    row[0] = info.status;
    row[1] = info.bands;
    row[2] = info.height;
    row[3] = info.width;
    if (info.status == ACKD_RASTER_OK) {
      size_t floats = (size_t)s->request.nbands * (size_t)info.height * (size_t)info.width;
      row[4]        = (long long)AckdContentHash(buf.data, sizeof(float) * floats);
      PetscCall(cache_keep(c, s, i, hi, &info, buf.data, floats));
    }
    PetscCall(AckdProgressUpdate(bar, ++*done));
    if (AckdStopSignalled()) break; /* the caller decides for every rank, collectively */
  }
  PetscCall(PetscLogEventEnd(c->event_decode, 0, 0, 0, 0));
  PetscCall(PetscFree(buf.data));

  PetscMPIInt *counts, *displs;
  PetscCall(PetscMalloc2(size, &counts, size, &displs));
  for (PetscMPIInt r = 0; r < size; r++) {
    PetscInt rlo, rhi;
    AckdDatasetPartition(n, size, r, &rlo, &rhi);
    displs[r] = (PetscMPIInt)(rlo * CHECK_FIELDS);
    counts[r] = (PetscMPIInt)((rhi - rlo) * CHECK_FIELDS);
  }
  PetscCall(PetscMalloc1((size_t)PetscMax(n, 1) * CHECK_FIELDS, &s->check));
  PetscCallMPI(MPI_Allgatherv(mine, counts[rank], MPI_LONG_LONG, s->check, counts, displs, MPI_LONG_LONG, c->comm));
  PetscCall(PetscFree2(counts, displs));
  PetscCall(PetscFree(mine));
  PetscFunctionReturn(0);
}

static int compare_pairs(const void *x, const void *y)
{
  const long long *p = x, *q = y;
  return p[0] != q[0] ? (p[0] < q[0] ? -1 : 1) : (p[1] < q[1] ? -1 : (p[1] > q[1]));
}

/* The most common value of (a, b) over readable files; ties go to the
 * smallest. Sorted, then counted in runs: collections of millions of files
 * must not cost a quadratic pass. */
static PetscErrorCode most_common_pair(const Source *s, int field_a, int field_b, PetscInt *a, PetscInt *b)
{
  long long *pairs;
  PetscInt   m = 0, best = 0;

  PetscFunctionBeginUser;
  *a = *b = 0;
  PetscCall(PetscMalloc1(2 * (size_t)PetscMax(s->folders.nfiles, 1), &pairs));
  for (PetscInt i = 0; i < s->folders.nfiles; i++) {
    const long long *r = s->check + i * CHECK_FIELDS;
    if (r[0] != ACKD_RASTER_OK) continue;
    pairs[2 * m]     = r[field_a];
    pairs[2 * m + 1] = r[field_b];
    m++;
  }
  qsort(pairs, (size_t)m, 2 * sizeof(long long), compare_pairs);
  for (PetscInt i = 0, run = 1; i < m; i++, run++) {
    if (i + 1 < m && !compare_pairs(pairs + 2 * i, pairs + 2 * (i + 1))) continue;
    if (run > best) { /* runs come in ascending order, so a tie keeps the smaller pair */
      best = run;
      *a   = (PetscInt)pairs[2 * i];
      *b   = (PetscInt)pairs[2 * i + 1];
    }
    run = 0;
  }
  PetscCall(PetscFree(pairs));
  PetscFunctionReturn(0);
}

static int compare_long_long(const void *x, const void *y)
{
  const long long *a = x, *b = y;
  return *a < *b ? -1 : (*a > *b);
}

static int compare_hash_index(const void *x, const void *y)
{
  const unsigned long long *a = x, *b = y;
  if (a[0] != b[0]) return a[0] < b[0] ? -1 : 1;
  return a[1] < b[1] ? -1 : (a[1] > b[1]);
}

static void reason_text(const Source *s, PetscInt i, char *buf, size_t len)
{
  const long long *r = s->check + i * CHECK_FIELDS;
  switch ((AckdRasterStatus)r[0]) {
  case ACKD_RASTER_UNREADABLE:
    snprintf(buf, len, "unreadable or corrupt (GDAL cannot decode it)");
    break;
  case ACKD_RASTER_BAND_COUNT:
    snprintf(buf, len, "has %lld bands, the collection's images have %" PetscInt_FMT, r[1], s->bands);
    break;
  case ACKD_RASTER_ODD_SIZE:
    snprintf(buf, len, "is %lldx%lld, the collection's images are %" PetscInt_FMT "x%" PetscInt_FMT, r[2], r[3],
             s->height, s->width);
    break;
  case ACKD_RASTER_NOT_FINITE:
    snprintf(buf, len, "holds NaN or Inf pixels");
    break;
  default:
    snprintf(buf, len, "fine");
    break;
  }
}

/* Bands asked for beyond what the collection's files have fail every file
 * alike: that is one fault of the band list, not one per file. The files'
 * most common band count (over those GDAL could open) decides. */
static PetscErrorCode band_range_check(AckdCurate c, const Source *s)
{
  PetscInt   n = s->folders.nfiles, max_band = 0, m = 0, bands = 0, best = 0;
  long long *counts;

  PetscFunctionBeginUser;
  for (PetscInt b = 0; b < s->request.nbands; b++) max_band = PetscMax(max_band, s->request.bands[b]);
  PetscCall(PetscMalloc1(PetscMax(n, 1), &counts));
  for (PetscInt i = 0; i < n; i++) {
    const long long *r = s->check + i * CHECK_FIELDS;
    if (r[0] == ACKD_RASTER_OK || r[0] == ACKD_RASTER_BAND_COUNT) counts[m++] = r[1];
  }
  qsort(counts, (size_t)m, sizeof(long long), compare_long_long);
  for (PetscInt i = 0, run = 1; i < m; i++, run++) {
    if (i + 1 < m && counts[i] == counts[i + 1]) continue;
    if (run > best) {
      best  = run;
      bands = (PetscInt)counts[i];
    }
    run = 0;
  }
  PetscCall(PetscFree(counts));
  if (!m || max_band <= bands) PetscFunctionReturn(0);
  PetscCheck(strcmp(s->name, "ms"), c->comm, PETSC_ERR_USER_INPUT,
             "option -curate_ms_bands: band %" PetscInt_FMT
             " is out of range for the files of '%s', which have %" PetscInt_FMT
             " band%s; give bands in 1..%" PetscInt_FMT,
             max_band, s->dir, bands, bands == 1 ? "" : "s", bands);
  SETERRQ(c->comm, PETSC_ERR_FILE_UNEXPECTED,
          "the images of '%s' have %" PetscInt_FMT " band%s, and RGB needs %" PetscInt_FMT "; give colour images",
          s->dir, bands, bands == 1 ? "" : "s", max_band);
}

/* Every rank holds the same table, so every rank takes the same decisions. */
static PetscErrorCode decide(AckdCurate c, Source *s)
{
  PetscInt n = s->folders.nfiles, shown[ACKD_RASTER_STATUSES] = {0};
  char     why[256];

  PetscFunctionBeginUser;
  PetscInt dummy;
  PetscCall(band_range_check(c, s));
  PetscCall(most_common_pair(s, 1, 1, &s->bands, &dummy));
  if (s->request.resize) {
    s->height = s->width = s->request.height;
  } else if (s->fixed_size > 0) {
    s->height = s->width = s->fixed_size;
  } else
    PetscCall(most_common_pair(s, 2, 3, &s->height, &s->width));
  for (PetscInt i = 0; i < n; i++) {
    long long *r = s->check + i * CHECK_FIELDS;
    if (r[0] == ACKD_RASTER_OK && r[1] != s->bands) r[0] = ACKD_RASTER_BAND_COUNT;
    if (r[0] == ACKD_RASTER_OK && (r[2] != s->height || r[3] != s->width)) r[0] = ACKD_RASTER_ODD_SIZE;
  }
  for (PetscInt i = 0; i < n; i++) {
    AckdRasterStatus st = (AckdRasterStatus)s->check[i * CHECK_FIELDS];
    if (st == ACKD_RASTER_OK) continue;
    char name[PETSC_MAX_PATH_LEN + 64];
    reason_text(s, i, why, sizeof why);
    PetscCheck(!c->strict, c->comm, PETSC_ERR_FILE_UNEXPECTED, "'%s' %s (-curate_strict stops at the first bad image)",
               sample_name(s, i, name, sizeof name), why);
    if (shown[st]++ < WARNINGS_SHOWN)
      PetscCall(AckdLogWarn(&c->log, "curate: skipping '%s': %s\n", sample_name(s, i, name, sizeof name), why));
    s->skipped[st]++;
  }
  for (PetscInt k = 0; k < s->folders.nclasses && !s->multi && !s->fractions; k++) {
    if (s->folders.class_counts[k]) continue;
    s->empty_classes++;
    PetscCheck(!c->strict, c->comm, PETSC_ERR_FILE_UNEXPECTED, "class folder '%s/%s' is empty (-curate_strict)", s->dir,
               s->folders.class_names[k]);
    PetscCall(AckdLogWarn(&c->log, "curate: class folder '%s/%s' is empty\n", s->dir, s->folders.class_names[k]));
  }
  for (int st = 1; st < ACKD_RASTER_STATUSES; st++)
    if (shown[st] > WARNINGS_SHOWN)
      PetscCall(AckdLogWarn(&c->log, "curate: ... and %" PetscInt_FMT " more %s\n", shown[st] - WARNINGS_SHOWN,
                            STATUS_COUNT_ATTR[st]));

  /* Duplicates: equal content hashes among usable files; the first in file order is the original. */
  unsigned long long *pairs;
  PetscInt            m = 0;
  PetscCall(PetscMalloc1(2 * (size_t)PetscMax(n, 1), &pairs));
  PetscCall(PetscCalloc1(PetscMax(n, 1), &s->duplicate));
  for (PetscInt i = 0; i < n; i++)
    if (s->check[i * CHECK_FIELDS] == ACKD_RASTER_OK) {
      pairs[2 * m]     = (unsigned long long)s->check[i * CHECK_FIELDS + 4];
      pairs[2 * m + 1] = (unsigned long long)i;
      m++;
    }
  qsort(pairs, (size_t)m, 2 * sizeof(unsigned long long), compare_hash_index);
  for (PetscInt j = 1, head = 0; j < m; j++) {
    if (pairs[2 * j] != pairs[2 * head]) {
      head = j; /* a new run of equal content starts: its first file is the original */
      continue;
    }
    PetscInt original = (PetscInt)pairs[2 * head + 1], copy = (PetscInt)pairs[2 * j + 1];
    s->duplicate[copy] = PETSC_TRUE;
    char a[PETSC_MAX_PATH_LEN + 64], b[PETSC_MAX_PATH_LEN + 64];
    if (s->duplicates++ < WARNINGS_SHOWN)
      PetscCall(AckdLogWarn(&c->log, "curate: '%s' duplicates '%s'%s\n", sample_name(s, copy, a, sizeof a),
                            sample_name(s, original, b, sizeof b), c->drop_duplicates ? " (dropped)" : ""));
  }
  PetscCall(PetscFree(pairs));

  PetscCall(PetscMalloc1(PetscMax(n, 1), &s->kept));
  for (PetscInt i = 0; i < n; i++)
    if (s->check[i * CHECK_FIELDS] == ACKD_RASTER_OK && !(c->drop_duplicates && s->duplicate[i]))
      s->kept[s->nkept++] = i;
  PetscCheck(s->nkept > 0, c->comm, PETSC_ERR_FILE_UNEXPECTED, "no usable image in '%s' (see the warnings above)",
             s->dir);
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------ pass 2 */

/* The kept samples' rows of a fraction table, each rank its block of them (docs/FORMATS.md). */
static PetscErrorCode write_fractions(AckdCurate c, const Source *s, hid_t group, PetscInt lo, PetscInt hi)
{
  const PetscInt K = s->folders.nclasses;
  float         *rows;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1((size_t)PetscMax(hi - lo, 1) * K, &rows));
  for (PetscInt j = lo; j < hi; j++) PetscCall(PetscArraycpy(rows + (j - lo) * K, s->fractions + s->kept[j] * K, K));
  PetscCall(AckdH5WriteRows(c->comm, group, "cover_fractions", H5T_NATIVE_FLOAT, s->nkept, K, lo, hi - lo, rows));
  PetscCall(PetscFree(rows));
  PetscFunctionReturn(0);
}

static PetscErrorCode write_collection(AckdCurate c, Source *s, hid_t file, AckdProgress *bar, PetscInt *done,
                                       PetscBool *stopped)
{
  PetscMPIInt          rank, size;
  PetscInt             lo, hi, rounds, C = s->request.nbands;
  AckdCollectionWriter writer;
  AckdRasterBuffer     buf = {NULL, 0};
  const char          *band_names[ACKD_RASTER_MAX_BANDS];
  char                 names[ACKD_RASTER_MAX_BANDS][16], sensor[PETSC_MAX_PATH_LEN + 32];
  PetscInt            *labels;
  unsigned char       *split;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(c->comm, &rank));
  PetscCallMPI(MPI_Comm_size(c->comm, &size));
  for (PetscInt b = 0; b < C; b++) {
    snprintf(names[b], sizeof names[b], "%s%" PetscInt_FMT,
             s->request.nbands == 3 && !strcmp(s->name, "rgb") ? "" : "band_", s->request.bands[b]);
    band_names[b] = names[b];
  }
  if (!strcmp(s->name, "rgb")) band_names[0] = "R", band_names[1] = "G", band_names[2] = "B";
  snprintf(sensor, sizeof sensor, "images from %s", s->dir);

  /* Labels and splits of the kept samples, the same on every rank. */
  PetscCall(PetscMalloc2(s->nkept, &labels, s->nkept, &split));
  for (PetscInt j = 0; j < s->nkept; j++) labels[j] = s->folders.label[s->kept[j]];
  AckdSplitSettings settings = {.seed  = (uint64_t)c->seed,
                                .tag   = s->split_tag,
                                .train = s->train,
                                .val   = s->val,
                                .folds = c->folds >= 2 ? c->folds : 0,
                                .fold  = c->fold};
  /* Multi-label samples are stratified by their first class (K: none). */
  PetscCall(AckdSplitStratified(s->nkept, labels, s->folders.nclasses + (s->multi != NULL), &settings, split));

  AckdCollectionLayout layout = {.name          = s->name,
                                 .count         = s->nkept,
                                 .channels      = C,
                                 .height        = s->height,
                                 .width         = s->width,
                                 .nclasses      = s->folders.nclasses,
                                 .class_names   = (const char *const *)s->folders.class_names,
                                 .band_names    = band_names,
                                 .wavelength_nm = NULL,
                                 .sensor        = sensor,
                                 .compress      = c->compress,
                                 .normalization = AckdNormalizationNames[c->normalize],
                                 .label_columns = s->multi ? s->folders.nclasses : 0,
                                 .source_bands  = s->request.bands};
  PetscCall(AckdCollectionWriterCreate(c->comm, file, &layout, &writer));

  size_t         sample = (size_t)C * (size_t)s->height * (size_t)s->width;
  float         *images;
  int            batch_labels[WRITE_BATCH];
  unsigned char *batch_multi = NULL;
  PetscInt       K           = s->folders.nclasses;
  PetscCall(PetscMalloc1(WRITE_BATCH * sample, &images));
  if (s->multi) PetscCall(PetscMalloc1((size_t)WRITE_BATCH * K, &batch_multi));
  AckdDatasetPartition(s->nkept, size, rank, &lo, &hi);
  PetscInt mine = (hi - lo + WRITE_BATCH - 1) / WRITE_BATCH;
  PetscCallMPI(MPI_Allreduce(&mine, &rounds, 1, MPIU_INT, MPI_MAX, c->comm));
  for (PetscInt r = 0; r < rounds && !*stopped; r++) {
    PetscInt first = lo + r * WRITE_BATCH, n = PetscMax(0, PetscMin(WRITE_BATCH, hi - first));
    PetscCall(PetscLogEventBegin(c->event_decode, 0, 0, 0, 0));
    for (PetscInt i = 0; i < n; i++) {
      PetscInt     file   = s->kept[first + i];
      const float *pixels = cache_find(s, file, sample);
      if (!pixels) {
        AckdRasterInfo info;
        char           name[PETSC_MAX_PATH_LEN + 64];
        PetscCall(read_sample(s, file, &buf, &info));
        /* Pass 1 read this file; a change since means the input moved under us. */
        PetscCheck(info.status == ACKD_RASTER_OK && info.height == s->height && info.width == s->width, PETSC_COMM_SELF,
                   PETSC_ERR_FILE_UNEXPECTED, "'%s' changed while curate was running (%s); run curate again",
                   sample_name(s, file, name, sizeof name), info.reason[0] ? info.reason : "other size");
        pixels = buf.data;
      }
      if (s->multi) PetscCall(PetscArraycpy(batch_multi + i * K, s->multi + (size_t)file * K, K));
      PetscCall(PetscArraycpy(images + i * sample, pixels, sample));
      if (c->normalize == ACKD_NORMALIZE_IMAGE_MAX) AckdNormalizeImageMax(images + i * sample, sample);
      batch_labels[i] = (int)labels[first + i];
    }
    PetscCall(PetscLogEventEnd(c->event_decode, 0, 0, 0, 0));
    PetscCall(PetscLogEventBegin(c->event_write, 0, 0, 0, 0));
    PetscCall(AckdCollectionWriterWrite(writer, first, n, images, batch_labels, batch_multi,
                                        split + PetscMin(first, s->nkept)));
    PetscCall(PetscLogEventEnd(c->event_write, 0, 0, 0, 0));
    *done += n;
    PetscCall(AckdProgressUpdate(bar, *done));
    PetscCall(AckdStopRequested(c->comm, stopped));
  }
  if (*stopped) {
    PetscCall(AckdCollectionWriterDestroy(&writer));
    PetscCall(PetscFree(images));
    PetscCall(PetscFree(batch_multi));
    PetscCall(PetscFree(buf.data));
    PetscCall(PetscFree2(labels, split));
    PetscFunctionReturn(0);
  }
  PetscCall(AckdCollectionWriterFinish(writer));
  if (c->normalize == ACKD_NORMALIZE_BAND_STANDARDIZE) PetscCall(AckdCollectionWriterStandardize(writer));
  PetscCall(AckdCollectionWriterDestroy(&writer));

  hid_t group;
  AckdCallH5(group = H5Gopen2(file, s->name, H5P_DEFAULT), "opening /%s", s->name);
  PetscCall(AckdH5AttrWriteString(group, "source_dir", s->dir));
  PetscCall(AckdH5AttrWriteInt(group, "files_found", s->folders.nfiles));
  for (int st = 1; st < ACKD_RASTER_STATUSES; st++)
    PetscCall(AckdH5AttrWriteInt(group, STATUS_COUNT_ATTR[st], s->skipped[st]));
  PetscCall(AckdH5AttrWriteInt(group, "duplicates_found", s->duplicates));
  PetscCall(AckdH5AttrWriteInt(group, "duplicates_dropped", c->drop_duplicates ? s->duplicates : 0));
  PetscCall(AckdH5AttrWriteInt(group, "empty_class_folders", s->empty_classes));
  if (s->fractions) PetscCall(write_fractions(c, s, group, lo, hi));
  H5Gclose(group);
  PetscCall(PetscFree(images));
  PetscCall(PetscFree(batch_multi));
  PetscCall(PetscFree(buf.data));
  PetscCall(PetscFree2(labels, split));
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------ class map */

static PetscInt class_index(const AckdClassFolders *f, const char *name)
{
  for (PetscInt k = 0; k < f->nclasses; k++)
    if (!strcmp(f->class_names[k], name)) return k;
  return -1;
}

static void trim(char *s)
{
  char *end = s + strlen(s);
  while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n')) *--end = '\0';
  char *start = s;
  while (*start == ' ' || *start == '\t') start++;
  memmove(s, start, strlen(start) + 1);
}

/* A CSV of "ms_class,rgb_class" lines; a side may be empty for a class the other collection lacks. */
static PetscErrorCode read_class_map(AckdCurate c, const Source *ms, const Source *rgb, int *ms_to_rgb)
{
  char      *text;
  PetscBool *ms_named, *rgb_named; /* the classes some line mentions */

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < ms->folders.nclasses; i++) ms_to_rgb[i] = -1;
  PetscCall(PetscCalloc2(ms->folders.nclasses, &ms_named, rgb->folders.nclasses, &rgb_named));
  PetscCall(AckdReadTextFile(c->comm, c->class_map, "class map", &text));
  PetscInt line_no = 0;
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    line_no++;
    trim(line);
    if (!line[0] || line[0] == '#') continue;
    char *comma = strchr(line, ',');
    PetscCheck(comma, c->comm, PETSC_ERR_USER_INPUT,
               "class map '%s' line %" PetscInt_FMT ": expected 'ms_class,rgb_class'", c->class_map, line_no);
    *comma        = '\0';
    char *ms_name = line, *rgb_name = comma + 1;
    trim(ms_name);
    trim(rgb_name);
    PetscInt i = class_index(&ms->folders, ms_name), j = class_index(&rgb->folders, rgb_name);
    PetscCheck(!ms_name[0] || i >= 0, c->comm, PETSC_ERR_USER_INPUT,
               "class map '%s' line %" PetscInt_FMT ": MS class '%s' is not a folder of '%s'", c->class_map, line_no,
               ms_name, ms->dir);
    PetscCheck(!rgb_name[0] || j >= 0, c->comm, PETSC_ERR_USER_INPUT,
               "class map '%s' line %" PetscInt_FMT ": RGB class '%s' is not a folder of '%s'", c->class_map, line_no,
               rgb_name, rgb->dir);
    if (i >= 0) ms_named[i] = PETSC_TRUE;
    if (j >= 0) rgb_named[j] = PETSC_TRUE;
    if (i >= 0 && j >= 0) ms_to_rgb[i] = (int)j; /* else a class of one side only */
  }
  PetscCall(PetscFree(text));
  /* A class the map leaves out is kept without a partner, as a one-sided line
   * would say; left out by mistake, it would silently lose its teacher. */
  for (PetscInt i = 0; i < ms->folders.nclasses; i++)
    if (!ms_named[i] && ms->folders.class_counts[i])
      PetscCall(AckdLogWarn(&c->log,
                            "curate: class map '%s' does not mention MS class '%s': it gets no RGB partner; add a "
                            "line '%s,RGB_CLASS' (or '%s,' if it has none)\n",
                            c->class_map, ms->folders.class_names[i], ms->folders.class_names[i],
                            ms->folders.class_names[i]));
  for (PetscInt j = 0; j < rgb->folders.nclasses; j++)
    if (!rgb_named[j] && rgb->folders.class_counts[j])
      PetscCall(AckdLogWarn(&c->log,
                            "curate: class map '%s' does not mention RGB class '%s': it gets no MS partner; add a "
                            "line 'MS_CLASS,%s' (or ',%s' if it has none)\n",
                            c->class_map, rgb->folders.class_names[j], rgb->folders.class_names[j],
                            rgb->folders.class_names[j]));
  PetscCall(PetscFree2(ms_named, rgb_named));
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------ run */

/* A .mat file's samples stand in for files: N rows, classes from the labels. */
static PetscErrorCode mat_catalogue(AckdCurate c, Source *s)
{
  AckdClassFolders *f = &s->folders;
  PetscInt          channels, height, width, named = 0;
  char             *names[1024], list[sizeof c->ms_class_names];

  PetscFunctionBeginUser;
  PetscCall(AckdMatInputOpen(c->ms_mat, c->mat_layout, &s->mat));
  PetscCall(AckdMatInputGetSize(s->mat, &f->nfiles, &channels, &height, &width));
  PetscCall(AckdMatInputReadLabels(s->mat, &f->nclasses, &s->multi));
  if (c->ms_class_names[0]) {
    PetscCall(PetscStrncpy(list, c->ms_class_names, sizeof list)); /* strtok cuts its copy, not the option */
    for (char *t = strtok(list, ","); t && named < (PetscInt)(sizeof names / sizeof names[0]); t = strtok(NULL, ","))
      names[named++] = t;
    PetscCheck(named == f->nclasses, c->comm, PETSC_ERR_USER_INPUT,
               "-curate_ms_classes names %" PetscInt_FMT " classes but the labels of '%s' have %" PetscInt_FMT, named,
               c->ms_mat, f->nclasses);
  }
  PetscCall(PetscMalloc2(f->nclasses, &f->class_names, f->nclasses, &f->class_counts));
  PetscCall(PetscMalloc2(f->nfiles, &f->paths, f->nfiles, &f->label)); /* no paths: messages name msi rows */
  for (PetscInt i = 0; i < f->nfiles; i++) f->paths[i] = NULL;
  for (PetscInt k = 0; k < f->nclasses; k++) {
    char fallback[32];
    snprintf(fallback, sizeof fallback, "class_%" PetscInt_FMT, k);
    PetscCall(PetscStrallocpy(named ? names[k] : fallback, &f->class_names[k]));
    f->class_counts[k] = 0;
  }
  for (PetscInt i = 0; i < f->nfiles; i++) {
    f->label[i] = f->nclasses;
    for (PetscInt k = f->nclasses - 1; k >= 0; k--)
      if (s->multi[i * f->nclasses + k]) {
        f->label[i] = k;
        f->class_counts[k]++;
      }
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode source_set_up(AckdCurate c, Source *s, const char *name, const char *dir)
{
  static const PetscInt rgb_bands[3] = {1, 2, 3};

  PetscFunctionBeginUser;
  memset(s, 0, sizeof *s);
  s->name = name;
  s->dir  = dir;
  if (!dir[0]) PetscFunctionReturn(0);
  PetscBool is_ms = (PetscBool)!strcmp(name, "ms");
  if (is_ms && c->ms_mat[0])
    PetscCall(mat_catalogue(c, s));
  else if (is_ms && c->ms_labels[0])
    PetscCall(AckdLabelTableRead(c->comm, c->ms_labels, dir, &s->folders, &s->multi));
  else if (is_ms && c->ms_fractions[0])
    PetscCall(AckdFractionTableRead(c->comm, c->ms_fractions, dir, &s->folders, &s->fractions));
  else
    PetscCall(AckdClassFoldersScan(c->comm, dir, is_ms ? MS_EXTENSIONS : RGB_EXTENSIONS, &s->folders));
  s->split_tag  = is_ms ? 1 : 2;
  s->train      = is_ms ? c->train : c->rgb_train;
  s->val        = is_ms ? c->val : c->rgb_val;
  s->request    = (AckdRasterRequest){.nbands       = is_ms ? c->n_ms_bands : 3,
                                      .bands        = is_ms ? c->ms_bands : rgb_bands,
                                      .expect_bands = 0,
                                      .resize       = (PetscBool)(!is_ms && c->rgb_size > 0),
                                      .height       = c->rgb_size,
                                      .width        = c->rgb_size};
  s->fixed_size = is_ms ? c->ms_size : 0;
  PetscFunctionReturn(0);
}

static PetscErrorCode source_destroy(Source *s)
{
  PetscFunctionBeginUser;
  if (s->dir && s->dir[0]) PetscCall(AckdClassFoldersDestroy(&s->folders));
  PetscCall(AckdMatInputClose(&s->mat));
  PetscCall(PetscFree(s->cache));
  PetscCall(PetscFree(s->cached));
  PetscCall(PetscFree(s->multi));
  PetscCall(PetscFree(s->fractions));
  PetscCall(PetscFree(s->check));
  PetscCall(PetscFree(s->duplicate));
  PetscCall(PetscFree(s->kept));
  PetscFunctionReturn(0);
}

/* A file's name, size and modification time: what a rerun compares. */
static uint64_t file_digest(const char *path)
{
  struct stat st;
  long long   facts[2] = {0, 0};
  if (!path[0]) return 0;
  if (!stat(path, &st)) facts[0] = (long long)st.st_size, facts[1] = (long long)st.st_mtime;
  return AckdContentHash(path, strlen(path)) * 31 + AckdContentHash(facts, sizeof facts);
}

/* Everything that decides the file's contents, including each input file's
 * size and modification time, so a rerun finds its output up to date only
 * if neither the options nor the inputs changed. */
static PetscErrorCode parameter_line(AckdCurate c, const Source *sources, char **line)
{
  PetscMPIInt rank;
  uint64_t    digest     = 0;
  char        bands[512] = "";

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(c->comm, &rank));
  if (rank == 0) {
    const char *side_files[] = {c->ms_labels, c->ms_mat, c->class_map};
    for (size_t f = 0; f < sizeof side_files / sizeof side_files[0]; f++)
      digest = digest * 31 + file_digest(side_files[f]);
    /* only when given, so that the files written before it existed stay up to date */
    if (c->ms_fractions[0]) digest = digest * 31 + file_digest(c->ms_fractions);
    for (int k = 0; k < 2; k++)
      for (PetscInt i = 0; i < sources[k].folders.nfiles && !sources[k].mat; i++)
        digest = digest * 31 + file_digest(sources[k].folders.paths[i]);
  }
  PetscCallMPI(MPI_Bcast(&digest, 1, MPI_UINT64_T, 0, c->comm));
  for (PetscInt b = 0; b < c->n_ms_bands; b++) {
    char one[24];
    snprintf(one, sizeof one, "%s%" PetscInt_FMT, b ? "," : "", c->ms_bands[b]);
    PetscCall(PetscStrlcat(bands, one, sizeof bands));
  }
  size_t len = 8 * PETSC_MAX_PATH_LEN + sizeof c->ms_class_names + 1024;
  PetscCall(PetscMalloc1(len, line));
  snprintf(*line, len,
           "ms_dir=%s ms_labels=%s ms_mat=%s mat_layout=%s ms_classes=%s ms_bands=%s ms_size=%" PetscInt_FMT
           " rgb_dir=%s rgb_size=%" PetscInt_FMT " class_map=%s normalize=%s folds=%" PetscInt_FMT
           " fold=%" PetscInt_FMT " train=%.15g val=%.15g seed=%" PetscInt_FMT
           " drop_duplicates=%d compress=%" PetscInt_FMT " inputs=%016llx version=%s",
           c->ms_dir, c->ms_labels, c->ms_mat, c->mat_layout, c->ms_class_names, bands, c->ms_size, c->rgb_dir,
           c->rgb_size, c->class_map, AckdNormalizationNames[c->normalize], c->folds, c->fold, (double)c->train,
           (double)c->val, c->seed, (int)c->drop_duplicates, c->compress, (unsigned long long)digest,
           ACKD_VERSION_STRING);
  /* named only when they differ, so that the files written before they existed stay up to date */
  size_t used = strlen(*line);
  if (c->rgb_train != c->train || c->rgb_val != c->val)
    used += (size_t)snprintf(*line + used, len - used, " rgb_train=%.15g rgb_val=%.15g", (double)c->rgb_train,
                             (double)c->rgb_val);
  if (c->ms_fractions[0] && used < len) snprintf(*line + used, len - used, " ms_fractions=%s", c->ms_fractions);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCurateRun(AckdCurate c, PetscBool *stopped)
{
  Source       sources[2], *ms = &sources[0], *rgb = &sources[1];
  AckdProgress bar;
  PetscInt     done = 0, mine = 0;
  PetscMPIInt  rank, size;
  PetscBool    current;
  char        *params;
  hid_t        file;
  double       t0 = AckdTimeNow();

  PetscFunctionBeginUser;
  *stopped = PETSC_FALSE;
  PetscCallMPI(MPI_Comm_rank(c->comm, &rank));
  PetscCallMPI(MPI_Comm_size(c->comm, &size));
  PetscCall(source_set_up(c, ms, "ms", c->ms_mat[0] ? c->ms_mat : c->ms_dir));
  PetscCall(source_set_up(c, rgb, "rgb", c->rgb_dir));
  PetscCall(parameter_line(c, sources, &params));
  PetscCall(
      AckdDatasetOutputIsCurrent(c->comm, c->output, "curate_parameters", params, c->force, "-curate_force", &current));
  if (current) {
    PetscCall(AckdLogInfo(&c->log, "curate: '%s' is up to date (same options and inputs); nothing to do\n", c->output));
    PetscCall(source_destroy(ms));
    PetscCall(source_destroy(rgb));
    PetscCall(PetscFree(params));
    PetscFunctionReturn(0);
  }

  for (int k = 0; k < 2; k++) {
    PetscInt n = sources[k].folders.nfiles;
    mine += 2 * (n * (rank + 1) / size - n * rank / size); /* pass 1, and about as much again in pass 2 */
  }
  PetscCall(AckdStopRequestInstall());
  PetscCallMPI(MPI_Barrier(c->comm)); /* from the next line on, every rank hears a stop request */
  PetscCall(AckdLogInfo(&c->log, "curate: checking %" PetscInt_FMT " MS and %" PetscInt_FMT " RGB files\n",
                        ms->folders.nfiles, rgb->folders.nfiles));
  PetscCall(AckdProgressBegin(&bar, &c->log, "curate", mine, "img"));
  for (int k = 0; k < 2 && !*stopped; k++) {
    if (!sources[k].dir[0]) continue;
    PetscCall(check_files(c, &sources[k], &bar, &done));
    PetscCall(AckdStopRequested(c->comm, stopped));
    if (!*stopped) PetscCall(decide(c, &sources[k]));
  }
  if (!*stopped) {
    PetscCall(AckdH5FileCreatePartial(c->comm, c->output, &c->h5, &file));
    PetscCall(AckdDatasetWriteProvenance(c->comm, file, "curate"));
    PetscCall(AckdH5AttrWriteString(file, "curate_parameters", params));
    for (int k = 0; k < 2 && !*stopped; k++)
      if (sources[k].dir[0]) PetscCall(write_collection(c, &sources[k], file, &bar, &done, stopped));
    /* Pass 1 is the long part on a file system of rasters, and its results are not kept: the next
     * run starts again, as synth's does. */
    if (*stopped) PetscCall(AckdH5FileDiscard(c->comm, &file, c->output));
  }
  PetscCall(AckdProgressEnd(&bar));
  if (*stopped) {
    PetscCall(
        AckdLogInfo(&c->log, "curate: stopped by a signal; '%s' not written, run the same command again\n", c->output));
    PetscCall(source_destroy(ms));
    PetscCall(source_destroy(rgb));
    PetscCall(PetscFree(params));
    PetscFunctionReturn(0);
  }
  if (ms->dir[0] && rgb->dir[0]) {
    int *ms_to_rgb;
    PetscCall(PetscMalloc1(ms->folders.nclasses, &ms_to_rgb));
    if (c->class_map[0])
      PetscCall(read_class_map(c, ms, rgb, ms_to_rgb));
    else
      AckdClassMapByName(ms->folders.nclasses, (const char *const *)ms->folders.class_names, rgb->folders.nclasses,
                         (const char *const *)rgb->folders.class_names, ms_to_rgb);
    PetscCall(AckdDatasetWriteClassMap(c->comm, file, ms->folders.nclasses, rgb->folders.nclasses, ms_to_rgb));
    PetscCall(PetscFree(ms_to_rgb));
  }
  PetscCall(AckdH5FileCommit(c->comm, &file, c->output));
  for (int k = 0; k < 2; k++) {
    Source *s = &sources[k];
    if (!s->dir[0]) continue;
    PetscInt skipped = 0;
    for (int st = 1; st < ACKD_RASTER_STATUSES; st++) skipped += s->skipped[st];
    PetscCall(AckdLogInfo(
        &c->log,
        "curate: /%s: %" PetscInt_FMT " files in %" PetscInt_FMT " classes, %" PetscInt_FMT " skipped, %" PetscInt_FMT
        " duplicate%s%s -> %" PetscInt_FMT " samples %" PetscInt_FMT "x%" PetscInt_FMT "x%" PetscInt_FMT "\n",
        s->name, s->folders.nfiles, s->folders.nclasses, skipped, s->duplicates, s->duplicates == 1 ? "" : "s",
        c->drop_duplicates && s->duplicates ? " (dropped)" : "", s->nkept, s->request.nbands, s->height, s->width));
  }
  PetscCall(AckdLogInfo(&c->log, "curate: wrote %s in %.2f s\n", c->output, AckdTimeNow() - t0));
  PetscCall(source_destroy(ms));
  PetscCall(source_destroy(rgb));
  PetscCall(PetscFree(params));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCurateDestroy(AckdCurate *curate)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree(*curate));
  PetscFunctionReturn(0);
}
