/* The predictor: a checkpoint, the recipe of the data it was trained on, and
 * an input (a folder of images or one scene) turned into items that the ranks
 * score in rounds (predict.h). */
#define _GNU_SOURCE /* nftw */
#include "predict_impl.h"
#include <ftw.h>
#include <math.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

static AckdLogPackage predict_log = {
    .name = "ackd predict", .nevents = 3, .event_names = {"PredictLoad", "PredictForward", "PredictWrite"}};

/* Why an item has no prediction: an image's AckdRasterStatus, or a window without enough data. */
typedef enum {
  ITEM_OK         = ACKD_RASTER_OK,
  ITEM_UNREADABLE = ACKD_RASTER_UNREADABLE,
  ITEM_BAND_COUNT = ACKD_RASTER_BAND_COUNT,
  ITEM_NOT_FINITE = ACKD_RASTER_NOT_FINITE,
  ITEM_NODATA     = 8 /* a window with less valid data than -predict_min_valid */
} ItemStatus;

static const char *item_status_name(unsigned char s)
{
  switch (s) {
  case ITEM_OK:
    return "ok";
  case ITEM_UNREADABLE:
    return "unreadable";
  case ITEM_BAND_COUNT:
    return "band_count";
  case ITEM_NOT_FINITE:
    return "not_finite";
  case ITEM_NODATA:
    return "nodata";
  default:
    return "other_size";
  }
}

/* Items scored by the network: `load` fills one model input (channels, height, width) or says
 * why it cannot. */
typedef struct {
  PetscInt    n;
  const char *unit;
  PetscErrorCode (*load)(AckdPredictor p, PetscInt item, float *input, unsigned char *status);
} ItemSource;

struct _p_AckdPredictor {
  MPI_Comm      comm;
  AckdLog       log;
  char          checkpoint[PETSC_MAX_PATH_LEN], data[PETSC_MAX_PATH_LEN], input[PETSC_MAX_PATH_LEN];
  char          output[PETSC_MAX_PATH_LEN], probabilities[PETSC_MAX_PATH_LEN], modality[16], architecture[64];
  PetscInt      batch, threads, patch, stride, debug_signal_after;
  AckdPrecision precision; /* the convolutions' arithmetic */
  PetscInt      bands[ACKD_RASTER_MAX_BANDS], nbands;
  PetscReal     min_valid;

  AckdModelConfig    config;
  AckdModel          model;
  AckdEngine         engine;
  PetscBool          engine_ready;
  AckdInputRecipe    recipe;
  AckdCollectionInfo info;
  PetscInt           K;

  /* a folder: the images, relative to the input folder */
  PetscInt nfiles;
  char   **files;
  /* a scene: the window grid */
  AckdScene        scene;
  PetscInt         width, height, nx, ny, *xs, *ys;
  float           *window;
  unsigned char   *valid;
  AckdRasterBuffer raster;
  PetscLogEvent    event_load, event_forward, event_write;
};

PetscErrorCode AckdPredictorCreate(MPI_Comm comm, AckdPredictor *predictor)
{
  AckdPredictor p;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&p));
  p->comm      = comm;
  p->batch     = 64;
  p->min_valid = 0.5;
  PetscCall(PetscStrncpy(p->output, "", sizeof p->output));
  PetscCall(AckdLogSetUp(&p->log, comm));
  PetscCall(AckdLogPackageRegister(&predict_log));
  p->event_load    = predict_log.events[0];
  p->event_forward = predict_log.events[1];
  p->event_write   = predict_log.events[2];
  *predictor       = p;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdPredictorSetFromOptions(AckdPredictor p)
{
  PetscFunctionBeginUser;
  p->nbands = ACKD_RASTER_MAX_BANDS;
  PetscOptionsBegin(p->comm, NULL, "ackd predict: a model applied to a folder of images or a whole scene", NULL);
  PetscCall(AckdOptionsString(PetscOptionsObject, "-predict_checkpoint",
                              "Checkpoint of the model to apply (e.g. out/student/best.h5)", p->checkpoint,
                              sizeof p->checkpoint, NULL));
  PetscCall(AckdOptionsString(PetscOptionsObject, "-predict_input",
                              "A folder of images (searched recursively), or one scene (GeoTIFF or any raster GDAL "
                              "reads) classified with a sliding window",
                              p->input, sizeof p->input, NULL));
  PetscCall(AckdOptionsString(PetscOptionsObject, "-predict_output",
                              "Folder: predictions HDF5 (a CSV is written beside it); scene: the class-map GeoTIFF "
                              "(default predictions.h5 or classmap.tif)",
                              p->output, sizeof p->output, NULL));
  PetscCall(AckdOptionsString(PetscOptionsObject, "-predict_probabilities",
                              "Scene: also write the per-class probability GeoTIFF here (one band per class)",
                              p->probabilities, sizeof p->probabilities, NULL));
  PetscCall(AckdOptionsString(PetscOptionsObject, "-predict_data",
                              "Dataset whose recipe (bands, size, normalisation) and class names the model was trained "
                              "with (default: the one the checkpoint records)",
                              p->data, sizeof p->data, NULL));
  PetscCall(AckdOptionsIntArray(PetscOptionsObject, "-predict_bands",
                                "File bands to feed the model, 1-based (default: those the dataset was curated from)",
                                p->bands, &p->nbands, 1, 100000, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-predict_patch",
                           "Scene: window size in scene pixels (0: the model's input size); other sizes are resampled "
                           "to the input size",
                           &p->patch, 0, 1 << 20, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-predict_stride",
                           "Scene: step between windows in pixels (0: half the patch); pixels average the windows "
                           "that cover them",
                           &p->stride, 0, 1 << 20, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-predict_min_valid",
                            "Scene: a window with a smaller share of valid (not nodata) pixels is not classified",
                            &p->min_valid, 0, 1, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-predict_batch", "Images per forward pass on each rank", &p->batch, 1,
                           1 << 16, NULL));
  PetscCall(AckdOptionsPrecision(PetscOptionsObject, p->comm, "", "predict_precision", &p->precision));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-predict_threads", "Threads per rank (0: OMP_NUM_THREADS)", &p->threads,
                           0, 1024, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-predict_debug_signal_after",
                           "Testing: rank 0 sends itself SIGTERM at its N-th stop check (0: never)",
                           &p->debug_signal_after, 0, PETSC_MAX_INT, NULL));
  PetscOptionsEnd();
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------- the model and its recipe */

static PetscErrorCode set_up_model(AckdPredictor p)
{
  AckdCkptReader reader;
  hid_t          file;
  PetscBool      found;

  PetscFunctionBeginUser;
  PetscCall(AckdCkptReaderOpen(p->comm, p->checkpoint, NULL, &reader));
  PetscCall(AckdCkptReaderGetFile(reader, &file));
  PetscCall(AckdModelConfigRead(p->comm, file, p->checkpoint, &p->config));
  PetscCall(AckdH5AttrReadString(file, "modality", p->modality, sizeof p->modality, &found));
  PetscCheck(found, p->comm, PETSC_ERR_FILE_UNEXPECTED, "'%s' does not record its modality (ms or rgb)", p->checkpoint);
  PetscCall(AckdH5AttrReadString(file, "architecture", p->architecture, sizeof p->architecture, &found));
  if (!p->data[0]) {
    PetscCall(AckdH5AttrReadString(file, "data", p->data, sizeof p->data, &found));
    PetscCheck(found && p->data[0], p->comm, PETSC_ERR_USER_INPUT,
               "'%s' does not record its dataset; give -predict_data", p->checkpoint);
  }
  PetscBool readable;
  PetscCall(AckdFileReadable(p->comm, p->data, &readable));
  PetscCheck(readable, p->comm, PETSC_ERR_FILE_OPEN,
             "cannot read '%s', the dataset '%s' was trained on, for its bands, normalisation and class names; give "
             "its new place with -predict_data",
             p->data, p->checkpoint);
  PetscCall(AckdCollectionInfoRead(p->comm, p->data, p->modality, &p->info));
  PetscCall(AckdInputRecipeRead(p->comm, p->data, p->modality, &p->info, &p->recipe));
  PetscCheck(
      p->info.channels == p->config.in_channels && p->info.classes == p->config.classes, p->comm, PETSC_ERR_USER_INPUT,
      "checkpoint '%s' takes %" PetscInt_FMT " bands and %" PetscInt_FMT " classes, but /%s in '%s' has %" PetscInt_FMT
      " and %" PetscInt_FMT "; give the dataset it was trained on with -predict_data",
      p->checkpoint, p->config.in_channels, p->config.classes, p->modality, p->data, p->info.channels, p->info.classes);
  p->K = p->config.classes;
  PetscCall(AckdModelCreate(p->comm, &p->model));
  PetscCall(AckdModelSetUp(p->model, &p->config, 0));
  PetscCall(AckdModelReadCheckpoint(reader, p->model));
  PetscCall(AckdCkptReaderDestroy(&reader));
  PetscCall(AckdModelSetTraining(p->model, PETSC_FALSE));
  PetscCall(AckdEngineCreate(p->threads, &p->engine));
  p->engine_ready = PETSC_TRUE;
  PetscCall(AckdEngineSetPrecision(&p->engine, p->precision));

  /* The file bands: given, recorded by curate, or R, G, B for a 3-band RGB collection. */
  const PetscInt C = p->recipe.channels;
  if (p->nbands == 0 && p->recipe.bands_recorded) {
    for (PetscInt b = 0; b < C; b++) p->bands[b] = p->recipe.bands[b];
    p->nbands = C;
  } else if (p->nbands == 0 && !strcmp(p->modality, "rgb") && C == 3) {
    for (PetscInt b = 0; b < C; b++) p->bands[b] = b + 1;
    p->nbands = C;
  }
  PetscCheck(p->nbands > 0, p->comm, PETSC_ERR_USER_INPUT,
             "'%s' does not record which file bands its %" PetscInt_FMT " %s bands came from; give them with "
             "-predict_bands (1-based, in the model's order)",
             p->data, C, p->modality);
  PetscCheck(p->nbands == C, p->comm, PETSC_ERR_USER_INPUT,
             "option -predict_bands lists %" PetscInt_FMT " bands, but the model takes %" PetscInt_FMT, p->nbands, C);
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------- a folder of images */

static const char *const IMAGE_EXTENSIONS[] = {"tif", "tiff", "jpg", "jpeg", "png", NULL};

static struct {
  char **paths;
  size_t n, cap, root_len;
  int    failed;
} scan;

static int collect_image(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
  (void)st;
  (void)ftw;
  if (type != FTW_F) return 0;
  const char *dot = strrchr(path, '.');
  if (!dot) return 0;
  for (const char *const *e = IMAGE_EXTENSIONS; *e; e++)
    if (!strcasecmp(dot + 1, *e)) {
      if (scan.n == scan.cap) {
        scan.cap     = scan.cap ? 2 * scan.cap : 256;
        char **grown = realloc(scan.paths, scan.cap * sizeof *grown);
        if (!grown) return scan.failed = 1;
        scan.paths = grown;
      }
      if (!(scan.paths[scan.n++] = strdup(path + scan.root_len))) return scan.failed = 1;
      return 0;
    }
  return 0;
}

static int compare_paths(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Rank 0 walks the folder; every rank gets the same sorted list, so items mean the same file
 * everywhere and in every run. */
static PetscErrorCode scan_folder(AckdPredictor p)
{
  PetscMPIInt rank;
  long long   sizes[2] = {0, 0}; /* files, bytes of their names */
  char       *packed   = NULL;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(p->comm, &rank));
  if (rank == 0) {
    memset(&scan, 0, sizeof scan);
    scan.root_len = strlen(p->input) + (p->input[strlen(p->input) - 1] == '/' ? 0 : 1);
    int walked    = nftw(p->input, collect_image, 32, FTW_PHYS);
    if (walked || scan.failed)
      sizes[0] = -1;
    else {
      qsort(scan.paths, scan.n, sizeof *scan.paths, compare_paths);
      sizes[0] = (long long)scan.n;
      for (size_t i = 0; i < scan.n; i++) sizes[1] += (long long)strlen(scan.paths[i]) + 1;
    }
  }
  PetscCallMPI(MPI_Bcast(sizes, 2, MPI_LONG_LONG, 0, p->comm));
  PetscCheck(sizes[0] >= 0, p->comm, PETSC_ERR_FILE_READ, "cannot list the images under '%s'; check its permissions",
             p->input);
  PetscCheck(sizes[0] > 0, p->comm, PETSC_ERR_USER_INPUT,
             "no image (.tif, .tiff, .jpg, .jpeg, .png) under '%s'; give a folder of images or a scene file", p->input);
  PetscCall(PetscMalloc1(sizes[1], &packed));
  if (rank == 0) {
    char *at = packed;
    for (size_t i = 0; i < scan.n; i++) {
      size_t len = strlen(scan.paths[i]) + 1;
      memcpy(at, scan.paths[i], len);
      at += len;
      free(scan.paths[i]);
    }
    free(scan.paths);
    memset(&scan, 0, sizeof scan);
  }
  PetscCallMPI(MPI_Bcast(packed, (PetscMPIInt)sizes[1], MPI_CHAR, 0, p->comm));
  p->nfiles = (PetscInt)sizes[0];
  PetscCall(PetscMalloc1(p->nfiles, &p->files));
  const char *at = packed;
  for (PetscInt i = 0; i < p->nfiles; i++) {
    PetscCall(PetscStrallocpy(at, &p->files[i]));
    at += strlen(at) + 1;
  }
  PetscCall(PetscFree(packed));
  PetscFunctionReturn(0);
}

/* As curate read the training images: the file bands, resampled to the model's size when they
 * differ (curate's -curate_rgb_size), then the collection's normalisation. */
static PetscErrorCode load_image(AckdPredictor p, PetscInt item, float *input, unsigned char *status)
{
  char                   path[2 * PETSC_MAX_PATH_LEN];
  AckdRasterInfo         info;
  const AckdInputRecipe *r = &p->recipe;

  PetscFunctionBeginUser;
  snprintf(path, sizeof path, "%s/%s", p->input, p->files[item]);
  AckdRasterRequest req = {
      .nbands = p->nbands, .bands = p->bands, .resize = PETSC_TRUE, .height = r->height, .width = r->width};
  PetscCall(AckdRasterRead(path, &req, &p->raster, &info));
  *status = (unsigned char)info.status;
  if (info.status != ACKD_RASTER_OK) PetscFunctionReturn(0);
  PetscCall(PetscArraycpy(input, p->raster.data, r->channels * r->height * r->width));
  AckdInputRecipeApply(r, input);
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------- a scene */

static PetscErrorCode open_scene(AckdPredictor p)
{
  const AckdInputRecipe *r = &p->recipe;

  PetscFunctionBeginUser;
  PetscCall(AckdSceneOpen(p->input, p->nbands, p->bands, &p->scene));
  PetscCall(AckdSceneGetSize(p->scene, &p->width, &p->height));
  PetscCheck(r->height == r->width || p->patch == 0, p->comm, PETSC_ERR_USER_INPUT,
             "the model takes %" PetscInt_FMT "x%" PetscInt_FMT " images; -predict_patch needs square ones", r->height,
             r->width);
  if (p->patch == 0) p->patch = r->width;
  if (p->stride == 0) p->stride = PetscMax(1, p->patch / 2);
  PetscCheck(p->stride <= p->patch, p->comm, PETSC_ERR_USER_INPUT,
             "option -predict_stride %" PetscInt_FMT " is larger than the patch (%" PetscInt_FMT
             "): pixels between windows would have no class; give a stride up to the patch",
             p->stride, p->patch);
  PetscCheck(p->width >= p->patch && p->height >= p->patch, p->comm, PETSC_ERR_USER_INPUT,
             "scene '%s' (%" PetscInt_FMT "x%" PetscInt_FMT ") is smaller than one window of %" PetscInt_FMT
             " pixels; give a smaller -predict_patch",
             p->input, p->width, p->height, p->patch);
  p->nx = AckdWindowOrigins(p->width, p->patch, p->stride, NULL);
  p->ny = AckdWindowOrigins(p->height, p->patch, p->stride, NULL);
  PetscCall(PetscMalloc2(p->nx, &p->xs, p->ny, &p->ys));
  AckdWindowOrigins(p->width, p->patch, p->stride, p->xs);
  AckdWindowOrigins(p->height, p->patch, p->stride, p->ys);
  const size_t plane = (size_t)p->patch * (size_t)p->patch;
  PetscCall(PetscMalloc2(plane * p->nbands, &p->window, plane, &p->valid));
  PetscFunctionReturn(0);
}

static PetscErrorCode load_window(AckdPredictor p, PetscInt item, float *input, unsigned char *status)
{
  const AckdInputRecipe *r     = &p->recipe;
  const PetscInt         P     = p->patch;
  const size_t           plane = (size_t)P * (size_t)P;
  size_t                 valid = 0;

  PetscFunctionBeginUser;
  PetscCall(AckdSceneReadWindow(p->scene, p->xs[item % p->nx], p->ys[item / p->nx], P, P, p->window, p->valid));
  for (size_t i = 0; i < plane; i++) valid += p->valid[i];
  *status = (double)valid < p->min_valid * (double)plane || valid == 0 ? ITEM_NODATA : ITEM_OK;
  if (*status != ITEM_OK) PetscFunctionReturn(0);
  if (valid < plane) AckdFillInvalid(p->nbands, plane, p->window, p->valid);
  if (P == r->width && P == r->height)
    PetscCall(PetscArraycpy(input, p->window, plane * p->nbands));
  else
    PetscCall(AckdRasterResample(p->nbands, P, P, p->window, r->height, r->width, input));
  AckdInputRecipeApply(r, input);
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------- scoring in rounds */

/* This rank's items of one round: loads them, runs the usable ones through the network in batches,
 * and leaves their logits (NaN for unusable items) and statuses in order. */
static PetscErrorCode score_items(AckdPredictor p, const ItemSource *src, PetscInt first, PetscInt n, float *inputs,
                                  PetscInt *slot, float *logits, unsigned char *status)
{
  const AckdInputRecipe *r      = &p->recipe;
  const PetscInt         sample = r->channels * r->height * r->width, K = p->K;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < n * K; i++) logits[i] = NAN;
  for (PetscInt start = 0; start < n; start += p->batch) {
    const PetscInt m    = PetscMin(p->batch, n - start);
    PetscInt       used = 0;
    PetscCall(PetscLogEventBegin(p->event_load, 0, 0, 0, 0));
    for (PetscInt i = start; i < start + m; i++) {
      PetscCall(src->load(p, first + i, inputs + used * sample, &status[i]));
      if (status[i] == ITEM_OK) slot[used++] = i;
    }
    PetscCall(PetscLogEventEnd(p->event_load, 0, 0, 0, 0));
    if (!used) continue;
    AckdModelOutputs out;
    AckdTensor       x = AckdTensorView(inputs, used, r->channels, r->height, r->width);
    PetscCall(PetscLogEventBegin(p->event_forward, 0, 0, 0, 0));
    PetscCall(AckdModelForward(p->model, &p->engine, &x, &out));
    PetscCall(PetscLogEventEnd(p->event_forward, 0, 0, 0, 0));
    for (PetscInt u = 0; u < used; u++) PetscCall(PetscArraycpy(logits + slot[u] * K, out.logits.data + u * K, K));
  }
  PetscFunctionReturn(0);
}

/* What the journal's logits depend on: a journal written for anything else starts afresh. */
static PetscErrorCode journal_parameters(AckdPredictor p, const ItemSource *src, char *text, size_t len)
{
  struct stat st = {0};
  PetscMPIInt rank;
  char        bands[256] = "";

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(p->comm, &rank));
  if (rank == 0) stat(p->checkpoint, &st);
  for (PetscInt b = 0; b < p->nbands; b++) {
    char one[24];
    snprintf(one, sizeof one, "%s%" PetscInt_FMT, b ? "," : "", p->bands[b]);
    PetscCall(PetscStrlcat(bands, one, sizeof bands));
  }
  snprintf(text, len,
           "checkpoint=%s size=%lld mtime=%lld data=%s input=%s items=%" PetscInt_FMT " bands=%s patch=%" PetscInt_FMT
           " stride=%" PetscInt_FMT " min_valid=%g",
           p->checkpoint, (long long)st.st_size, (long long)st.st_mtime, p->data, p->input, src->n, bands, p->patch,
           p->stride, (double)p->min_valid);
  PetscFunctionReturn(0);
}

/* Scores every item of `src`; on rank 0 *logits (n, K) and *status (n) hold the results. */
static PetscErrorCode score_all(AckdPredictor p, const ItemSource *src, const char *journal_path, float **logits,
                                unsigned char **status, PredictJournal *journal, PetscBool *stopped)
{
  PetscMPIInt    rank, size;
  const PetscInt K = p->K, sample = p->recipe.channels * p->recipe.height * p->recipe.width;
  PetscInt       done = 0;
  char           parameters[4 * PETSC_MAX_PATH_LEN];
  AckdProgress   bar;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(p->comm, &rank));
  PetscCallMPI(MPI_Comm_size(p->comm, &size));
  PetscCall(journal_parameters(p, src, parameters, sizeof parameters));
  if (rank == 0) PetscCall(PredictJournalOpen(journal_path, parameters, src->n, K, journal, &done));
  PetscCallMPI(MPI_Bcast(&done, 1, MPIU_INT, 0, p->comm));
  if (done > 0)
    PetscCall(AckdLogInfo(&p->log,
                          "predict: continuing after %" PetscInt_FMT " of %" PetscInt_FMT " %s (journal '%s')\n", done,
                          src->n, src->unit, journal_path));

  /* Four batches per rank per round: the journal's flush stays small next to the network. */
  const PetscInt round = 4 * p->batch * size, mine_max = 4 * p->batch;
  float         *inputs, *mine, *all = NULL;
  unsigned char *mine_status, *all_status = NULL;
  PetscInt      *slot;
  PetscMPIInt   *counts, *displs, *counts_k, *displs_k;
  PetscCall(PetscMalloc4((size_t)p->batch * sample, &inputs, (size_t)mine_max * K, &mine, mine_max, &mine_status,
                         p->batch, &slot));
  PetscCall(PetscMalloc4(size, &counts, size, &displs, size, &counts_k, size, &displs_k));
  if (rank == 0) PetscCall(PetscMalloc2((size_t)round * K, &all, round, &all_status));

  PetscCall(AckdStopRequestInstall());
  if (rank == 0) AckdStopDebugSignalAfter(p->debug_signal_after);
  PetscCallMPI(MPI_Barrier(p->comm));
  PetscCall(AckdProgressBegin(&bar, &p->log, "predict", src->n, src->unit));
  PetscCall(AckdProgressUpdate(&bar, done));
  *stopped = PETSC_FALSE;
  for (PetscInt start = done; start < src->n && !*stopped; start += round) {
    const PetscInt end = PetscMin(src->n, start + round);
    for (PetscMPIInt r = 0; r < size; r++) {
      PetscInt lo = start + (end - start) * r / size, hi = start + (end - start) * (r + 1) / size;
      counts[r]   = (PetscMPIInt)(hi - lo);
      displs[r]   = (PetscMPIInt)(lo - start);
      counts_k[r] = (PetscMPIInt)((hi - lo) * K);
      displs_k[r] = (PetscMPIInt)((lo - start) * K);
    }
    PetscCall(score_items(p, src, start + displs[rank], counts[rank], inputs, slot, mine, mine_status));
    PetscCall(PetscLogEventBegin(p->event_write, 0, 0, 0, 0));
    PetscCallMPI(MPI_Gatherv(mine, counts_k[rank], MPI_FLOAT, all, counts_k, displs_k, MPI_FLOAT, 0, p->comm));
    PetscCallMPI(MPI_Gatherv(mine_status, counts[rank], MPI_UNSIGNED_CHAR, all_status, counts, displs,
                             MPI_UNSIGNED_CHAR, 0, p->comm));
    if (rank == 0) PetscCall(PredictJournalAppend(journal, start, end - start, all, all_status));
    PetscCall(PetscLogEventEnd(p->event_write, 0, 0, 0, 0));
    PetscCall(AckdProgressUpdate(&bar, end));
    (void)AckdStopSignalled(); /* counts the check for -predict_debug_signal_after */
    PetscCall(AckdStopRequested(p->comm, stopped));
  }
  PetscCall(AckdProgressEnd(&bar));
  PetscCall(PetscFree4(inputs, mine, mine_status, slot));
  PetscCall(PetscFree4(counts, displs, counts_k, displs_k));
  if (rank == 0) PetscCall(PetscFree2(all, all_status));
  *logits = NULL;
  *status = NULL;
  if (rank == 0 && !*stopped) {
    PetscCall(PetscMalloc2((size_t)src->n * K, logits, src->n, status));
    PetscCall(PredictJournalReadAll(journal, *logits, *status));
  }
  PetscFunctionReturn(0);
}

/* Softmax for a single-label model, sigmoid per class for a multi-label one; NaN rows stay NaN. The
 * prediction is the most probable class (the first on ties), -1 for an item not classified. */
static void probabilities(const AckdPredictor p, PetscInt n, const float *logits, const unsigned char *status,
                          float *prob, int *prediction)
{
  const PetscInt K = p->K;
  for (PetscInt i = 0; i < n; i++) {
    const float *z = logits + i * K;
    float       *q = prob + i * K;
    if (p->info.multilabel) {
      for (PetscInt k = 0; k < K; k++) q[k] = (float)(1.0 / (1.0 + exp(-(double)z[k])));
      continue;
    }
    double top = z[0], sum = 0;
    for (PetscInt k = 1; k < K; k++) top = PetscMax(top, (double)z[k]);
    for (PetscInt k = 0; k < K; k++) sum += exp((double)z[k] - top);
    for (PetscInt k = 0; k < K; k++) q[k] = (float)(exp((double)z[k] - top) / sum);
  }
  for (PetscInt i = 0; i < n; i++) {
    const float *q    = prob + i * K;
    PetscInt     best = 0;
    for (PetscInt k = 1; k < K; k++)
      if (q[k] > q[best]) best = k;
    prediction[i] = status[i] == ITEM_OK ? (int)best : -1;
  }
}

/* ---------------------------------------------------------------- outputs (rank 0) */

static PetscErrorCode write_common_attributes(AckdPredictor p, hid_t file, const char *kind)
{
  PetscFunctionBeginUser;
  PetscCall(AckdH5AttrWriteString(file, "ackd_format", "predictions"));
  PetscCall(AckdH5AttrWriteInt(file, "ackd_format_version", 1));
  PetscCall(AckdH5AttrWriteString(file, "ackd_version", ACKD_VERSION_STRING));
  PetscCall(AckdH5AttrWriteString(file, "input_kind", kind));
  PetscCall(AckdH5AttrWriteString(file, "input", p->input));
  PetscCall(AckdH5AttrWriteString(file, "checkpoint", p->checkpoint));
  PetscCall(AckdH5AttrWriteString(file, "data", p->data));
  PetscCall(AckdH5AttrWriteString(file, "modality", p->modality));
  PetscCall(AckdH5AttrWriteString(file, "architecture", p->architecture));
  PetscCall(AckdH5AttrWriteString(file, "probability", p->info.multilabel ? "sigmoid" : "softmax"));
  PetscCall(AckdH5AttrWriteString(file, "precision", AckdPrecisionNames[p->precision]));
  PetscCall(AckdH5WriteStrings(PETSC_COMM_SELF, file, "classes", p->K, (const char *const *)p->info.class_names));
  PetscFunctionReturn(0);
}

static PetscErrorCode write_scores(AckdPredictor p, hid_t file, PetscInt n, const float *logits, const float *prob,
                                   const int *prediction, const unsigned char *status)
{
  hsize_t nk[2] = {(hsize_t)n, (hsize_t)p->K}, n1 = (hsize_t)n;

  PetscFunctionBeginUser;
  PetscCall(AckdH5WriteSmall(PETSC_COMM_SELF, file, "status", H5T_NATIVE_UCHAR, 1, &n1, status));
  PetscCall(AckdH5WriteSmall(PETSC_COMM_SELF, file, "prediction", H5T_NATIVE_INT, 1, &n1, prediction));
  PetscCall(AckdH5WriteSmall(PETSC_COMM_SELF, file, "probability", H5T_NATIVE_FLOAT, 2, nk, prob));
  PetscCall(AckdH5WriteSmall(PETSC_COMM_SELF, file, "logits", H5T_NATIVE_FLOAT, 2, nk, logits));
  PetscFunctionReturn(0);
}

/* The CSV beside the HDF5 file: one line per image, the class and its probability first. */
static PetscErrorCode write_csv(AckdPredictor p, const char *path, const float *prob, const int *prediction,
                                const unsigned char *status)
{
  char  partial[PETSC_MAX_PATH_LEN + 32];
  FILE *f;

  PetscFunctionBeginUser;
  snprintf(partial, sizeof partial, "%s.part", path);
  f = fopen(partial, "w");
  PetscCheck(f, PETSC_COMM_SELF, PETSC_ERR_FILE_OPEN, "cannot create '%s'; check that its directory is writable",
             partial);
  fprintf(f, "path,status,class,probability");
  for (PetscInt k = 0; k < p->K; k++) fprintf(f, ",p_%s", p->info.class_names[k]);
  fputc('\n', f);
  for (PetscInt i = 0; i < p->nfiles; i++) {
    const float *q = prob + i * p->K;
    /* Quoted, doubling quotes, as RFC 4180 asks of a field that may hold commas. */
    fputc('"', f);
    for (const char *c = p->files[i]; *c; c++) fputs(*c == '"' ? "\"\"" : (char[]){*c, 0}, f);
    fprintf(f, "\",%s,", item_status_name(status[i]));
    if (prediction[i] >= 0) {
      fprintf(f, "%s,%.6f", p->info.class_names[prediction[i]], (double)q[prediction[i]]);
      for (PetscInt k = 0; k < p->K; k++) fprintf(f, ",%.6f", (double)q[k]);
    } else {
      fputc(',', f);
      for (PetscInt k = 0; k < p->K; k++) fputc(',', f);
    }
    fputc('\n', f);
  }
  int ok = !ferror(f);
  ok     = !fclose(f) && ok;
  if (ok) ok = AckdFileRenameDurable(partial, path);
  if (!ok) remove(partial);
  PetscCheck(ok, PETSC_COMM_SELF, PETSC_ERR_FILE_WRITE, "cannot write '%s'; check its file system's free space", path);
  PetscFunctionReturn(0);
}

/* `output` with its extension (if any) replaced by `extension`, e.g. map.tif -> map.h5. */
static void beside(const char *output, const char *extension, char *path, size_t len)
{
  const char *dot = strrchr(output, '.'), *slash = strrchr(output, '/');
  if (dot && dot != output && (!slash || dot > slash + 1))
    snprintf(path, len, "%.*s%s", (int)(dot - output), output, extension);
  else
    snprintf(path, len, "%s%s", output, extension);
}

static PetscErrorCode finish_folder(AckdPredictor p, const float *logits, const unsigned char *status)
{
  AckdH5Settings h5 = {0};
  hid_t          file;
  float         *prob;
  int           *prediction;
  char           csv[PETSC_MAX_PATH_LEN + 8];
  PetscInt       scored = 0, *count;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc3((size_t)p->nfiles * p->K, &prob, p->nfiles, &prediction, p->K, &count));
  probabilities(p, p->nfiles, logits, status, prob, prediction);
  PetscCall(AckdH5SettingsSetFromOptions(&h5));
  PetscCall(AckdH5FileCreatePartial(PETSC_COMM_SELF, p->output, &h5, &file));
  PetscCall(write_common_attributes(p, file, "folder"));
  PetscCall(AckdH5WriteStrings(PETSC_COMM_SELF, file, "path", p->nfiles, (const char *const *)p->files));
  PetscCall(write_scores(p, file, p->nfiles, logits, prob, prediction, status));
  PetscCall(AckdH5FileCommit(PETSC_COMM_SELF, &file, p->output));
  beside(p->output, ".csv", csv, sizeof csv);
  PetscCall(write_csv(p, csv, prob, prediction, status));

  for (PetscInt k = 0; k < p->K; k++) count[k] = 0;
  for (PetscInt i = 0; i < p->nfiles; i++)
    if (prediction[i] >= 0) scored++, count[prediction[i]]++;
  PetscCall(AckdLogResult(&p->log,
                          "%s on %" PetscInt_FMT " images of '%s': %" PetscInt_FMT " classified, %" PetscInt_FMT
                          " unreadable or of other bands\n",
                          p->checkpoint, p->nfiles, p->input, scored, p->nfiles - scored));
  for (PetscInt k = 0; k < p->K; k++)
    PetscCall(AckdLogResult(&p->log, "  %-24s %" PetscInt_FMT "\n", p->info.class_names[k], count[k]));
  PetscCall(AckdLogInfo(&p->log, "wrote %s and %s\n", p->output, csv));
  PetscCall(PetscFree3(prob, prediction, count));
  PetscFunctionReturn(0);
}

/* The windows file beside the map: where each window lies and what the network said of it. */
static PetscErrorCode write_windows(AckdPredictor p, const char *path, PetscInt n, const float *logits,
                                    const float *prob, const int *prediction, const unsigned char *status)
{
  AckdH5Settings h5 = {0};
  hid_t          file;
  long long     *origin;
  hsize_t        n2[2] = {(hsize_t)n, 2};

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(2 * n, &origin));
  for (PetscInt w = 0; w < n; w++) {
    origin[2 * w]     = p->xs[w % p->nx];
    origin[2 * w + 1] = p->ys[w / p->nx];
  }
  PetscCall(AckdH5SettingsSetFromOptions(&h5));
  PetscCall(AckdH5FileCreatePartial(PETSC_COMM_SELF, path, &h5, &file));
  PetscCall(write_common_attributes(p, file, "scene"));
  PetscCall(AckdH5AttrWriteString(file, "class_map", p->output));
  PetscCall(AckdH5AttrWriteInt(file, "patch", p->patch));
  PetscCall(AckdH5AttrWriteInt(file, "stride", p->stride));
  PetscCall(AckdH5AttrWriteInt(file, "scene_width", p->width));
  PetscCall(AckdH5AttrWriteInt(file, "scene_height", p->height));
  PetscCall(AckdH5WriteSmall(PETSC_COMM_SELF, file, "origin", H5T_NATIVE_LLONG, 2, n2, origin));
  PetscCall(write_scores(p, file, n, logits, prob, prediction, status));
  PetscCall(AckdH5FileCommit(PETSC_COMM_SELF, &file, path));
  PetscCall(PetscFree(origin));
  PetscFunctionReturn(0);
}

static PetscErrorCode finish_scene(AckdPredictor p, const float *logits, const unsigned char *status,
                                   const char *windows_path)
{
  enum { STRIP = 64 };
  const PetscInt n = p->nx * p->ny, K = p->K, W = p->width;
  float         *prob, *pixels, *strip_prob     = NULL;
  unsigned char *used, *valid, *classes;
  int           *prediction;
  long long     *area;
  double         geotransform[6];
  const char    *wkt;
  PetscBool      georeferenced;
  AckdMap        map, prob_map = NULL;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc4((size_t)n * K, &prob, n, &prediction, n, &used, K + 1, &area));
  probabilities(p, n, logits, status, prob, prediction);
  for (PetscInt w = 0; w < n; w++) used[w] = status[w] == ITEM_OK;
  PetscCall(write_windows(p, windows_path, n, logits, prob, prediction, status));

  PetscCall(AckdSceneGetGeoreference(p->scene, geotransform, &wkt, &georeferenced));
  AckdMapLayout layout = {.kind         = ACKD_MAP_CLASSES,
                          .width        = W,
                          .height       = p->height,
                          .classes      = K,
                          .class_names  = (const char *const *)p->info.class_names,
                          .geotransform = georeferenced ? geotransform : NULL,
                          .wkt          = wkt};
  PetscCall(AckdMapCreate(p->output, &layout, &map));
  if (p->probabilities[0]) {
    layout.kind = ACKD_MAP_PROBABILITIES;
    PetscCall(AckdMapCreate(p->probabilities, &layout, &prob_map));
    PetscCall(PetscMalloc1((size_t)K * STRIP * W, &strip_prob));
  }
  PetscCall(
      PetscMalloc3((size_t)p->nbands * STRIP * W, &pixels, (size_t)STRIP * W, &valid, (size_t)STRIP * W, &classes));
  for (PetscInt k = 0; k <= K; k++) area[k] = 0;
  for (PetscInt y0 = 0; y0 < p->height; y0 += STRIP) {
    const PetscInt rows = PetscMin(STRIP, p->height - y0);
    PetscCall(AckdSceneReadWindow(p->scene, 0, y0, W, rows, pixels, valid));
    AckdWindowsCompose(W, p->patch, p->nx, p->xs, p->ny, p->ys, K, prob, used, y0, rows, valid, classes, strip_prob);
    for (PetscInt i = 0; i < rows * W; i++) area[classes[i] == ACKD_MAP_NODATA_CLASS ? K : classes[i]]++;
    PetscCall(AckdMapWriteRows(map, y0, rows, classes));
    if (prob_map) PetscCall(AckdMapWriteRows(prob_map, y0, rows, strip_prob));
  }
  PetscCall(AckdMapCommit(&map));
  if (prob_map) PetscCall(AckdMapCommit(&prob_map));

  const double total = (double)W * (double)p->height;
  PetscCall(AckdLogResult(&p->log,
                          "%s on scene '%s' (%" PetscInt_FMT "x%" PetscInt_FMT ", %" PetscInt_FMT
                          " windows of %" PetscInt_FMT " every %" PetscInt_FMT "): share of the scene per class\n",
                          p->checkpoint, p->input, W, p->height, n, p->patch, p->stride));
  for (PetscInt k = 0; k <= K; k++)
    if (area[k] || k < K)
      PetscCall(AckdLogResult(&p->log, "  %-24s %6.2f%%\n", k < K ? p->info.class_names[k] : "(nodata)",
                              100.0 * (double)area[k] / total));
  PetscCall(AckdLogInfo(&p->log, "wrote %s%s%s and %s\n", p->output, p->probabilities[0] ? ", " : "", p->probabilities,
                        windows_path));
  PetscCall(PetscFree3(pixels, valid, classes));
  PetscCall(PetscFree(strip_prob));
  PetscCall(PetscFree4(prob, prediction, used, area));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------- run */

/* Whether `path` is a folder (1), a file (0), or missing (-1), asked by rank 0. */
static PetscErrorCode input_kind(AckdPredictor p, int *kind)
{
  PetscMPIInt rank;
  struct stat st;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(p->comm, &rank));
  if (rank == 0) *kind = stat(p->input, &st) ? -1 : S_ISDIR(st.st_mode) ? 1 : 0;
  PetscCallMPI(MPI_Bcast(kind, 1, MPI_INT, 0, p->comm));
  PetscCheck(*kind >= 0, p->comm, PETSC_ERR_FILE_OPEN,
             "option -predict_input: '%s' does not exist; give a folder of images or a scene file", p->input);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdPredictorRun(AckdPredictor p, PetscBool *stopped)
{
  PetscMPIInt    rank;
  int            folder;
  ItemSource     src;
  PredictJournal journal;
  float         *logits;
  unsigned char *status;
  char           journal_path[PETSC_MAX_PATH_LEN + 16], windows_path[PETSC_MAX_PATH_LEN + 8];

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(p->comm, &rank));
  PetscCheck(p->checkpoint[0], p->comm, PETSC_ERR_USER_INPUT,
             "option -predict_checkpoint is required: a checkpoint written by ackd train or ackd distill");
  PetscCheck(p->input[0], p->comm, PETSC_ERR_USER_INPUT,
             "option -predict_input is required: a folder of images or a scene (GeoTIFF)");
  PetscCall(input_kind(p, &folder));
  if (!p->output[0]) PetscCall(PetscStrncpy(p->output, folder ? "predictions.h5" : "classmap.tif", sizeof p->output));
  PetscCheck(folder || !p->probabilities[0] || strcmp(p->probabilities, p->output), p->comm, PETSC_ERR_USER_INPUT,
             "options -predict_output and -predict_probabilities name the same file '%s'; give two names", p->output);
  PetscCheck(!folder || !p->probabilities[0], p->comm, PETSC_ERR_USER_INPUT,
             "option -predict_probabilities is for scenes; a folder's probabilities are in '%s' and its CSV",
             p->output);
  {
    /* The file written beside the output (folder: NAME.csv; scene: NAME.h5) must be another file. */
    char side[PETSC_MAX_PATH_LEN + 8];
    beside(p->output, folder ? ".csv" : ".h5", side, sizeof side);
    PetscCheck(strcmp(side, p->output), p->comm, PETSC_ERR_USER_INPUT,
               "option -predict_output '%s': predict writes %s beside it under that very name; give %s", p->output,
               folder ? "the CSV" : "the windows file",
               folder ? "the HDF5 file's name (e.g. predictions.h5)" : "the map's name (e.g. classmap.tif)");
  }
  PetscCall(AckdOutputFileCheck(p->comm, p->output, "-predict_output"));
  if (p->probabilities[0]) PetscCall(AckdOutputFileCheck(p->comm, p->probabilities, "-predict_probabilities"));
  PetscCall(set_up_model(p));

  if (folder) {
    PetscCall(scan_folder(p));
    src = (ItemSource){p->nfiles, "images", load_image};
  } else {
    PetscCall(open_scene(p));
    src = (ItemSource){p->nx * p->ny, "windows", load_window};
    PetscCall(AckdLogInfo(&p->log,
                          "predict: scene '%s', %" PetscInt_FMT "x%" PetscInt_FMT " pixels, %" PetscInt_FMT
                          "x%" PetscInt_FMT " windows of %" PetscInt_FMT " pixels every %" PetscInt_FMT "\n",
                          p->input, p->width, p->height, p->nx, p->ny, p->patch, p->stride));
  }
  snprintf(journal_path, sizeof journal_path, "%s.journal.h5", p->output);
  PetscCall(score_all(p, &src, journal_path, &logits, &status, &journal, stopped));
  if (*stopped) {
    if (rank == 0) PetscCall(PredictJournalClose(&journal, PETSC_FALSE));
    PetscCall(AckdLogInfo(
        &p->log, "predict: stopped by a signal; '%s' keeps what is done, run the same command again\n", journal_path));
    PetscFunctionReturn(0);
  }
  /* Rank 0 writes every output; the others wait, so that the stage ends when the files are whole. */
  PetscErrorCode failed = 0;
  if (rank == 0) {
    if (folder)
      failed = finish_folder(p, logits, status);
    else {
      beside(p->output, ".h5", windows_path, sizeof windows_path);
      failed = finish_scene(p, logits, status, windows_path);
    }
    if (!failed) failed = PredictJournalClose(&journal, PETSC_TRUE);
  }
  PetscCallMPI(MPI_Bcast(&failed, 1, MPI_INT, 0, p->comm));
  PetscCheck(!failed, p->comm, PETSC_ERR_FILE_WRITE, "predict: writing the outputs failed on rank 0 (see above)");
  if (rank == 0) PetscCall(PetscFree2(logits, status));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdPredictorDestroy(AckdPredictor *predictor)
{
  AckdPredictor p = *predictor;

  PetscFunctionBeginUser;
  if (!p) PetscFunctionReturn(0);
  if (p->model) PetscCall(AckdModelDestroy(&p->model));
  if (p->engine_ready) PetscCall(AckdEngineDestroy(&p->engine));
  for (PetscInt i = 0; i < p->nfiles; i++) PetscCall(PetscFree(p->files[i]));
  PetscCall(PetscFree(p->files));
  PetscCall(AckdSceneClose(&p->scene));
  PetscCall(PetscFree2(p->xs, p->ys));
  PetscCall(PetscFree2(p->window, p->valid));
  PetscCall(PetscFree(p->raster.data));
  PetscCall(AckdCollectionInfoDestroy(&p->info));
  PetscCall(PetscFree(*predictor));
  PetscFunctionReturn(0);
}
