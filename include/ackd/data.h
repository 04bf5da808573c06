/* ackd data: the dataset file format, its parallel writer, the synthetic
 * benchmark generator, and the summary printed by `ackd inspect`.
 *
 * Dataset file (format "dataset", version 1), docs/DESIGN.md §5:
 *   /                      attrs ackd_format, ackd_format_version, ackd_version, created_utc,
 *                          generator, options, mpi_ranks
 *   /ms, /rgb              one group per modality (collection), attrs count, channels, height,
 *                          width, classes, multilabel, sensor, normalization, stats_split
 *     images   (N,C,H,W)   float32, chunked one sample per chunk, optionally deflated
 *     labels   (N)         int32 class index into `classes` (or (N,K) uint8 for multi-label)
 *     split    (N)         uint8: 0 train, 1 val, 2 test
 *     classes  (K)         fixed-length strings
 *     bands    (C)         fixed-length strings; wavelength_nm (C) float64
 *     band_mean, band_std, band_min, band_max (C) float64, over the training split
 *     neighbour_class (N) int32, neighbour_share (N) float32: synth with -synth_mixing only,
 *                          each scene's neighbouring class (in `classes`) and its share of the tile
 *   /class_map             ms_to_rgb (K_ms) and rgb_to_ms (K_rgb) int32, -1 where a class has
 *                          no counterpart; attrs shared, ms_only, rgb_only
 */
#ifndef ACKD_DATA_H
#define ACKD_DATA_H

#include <ackd/core.h>

#define ACKD_FORMAT_DATASET         "dataset"
#define ACKD_FORMAT_DATASET_VERSION 1

typedef enum { ACKD_SPLIT_TRAIN = 0, ACKD_SPLIT_VAL = 1, ACKD_SPLIT_TEST = 2 } AckdSplit;

/* Per-band statistics are accumulated per block of this many samples and the
 * blocks merged in a fixed order, so the result does not depend on how the
 * samples were spread over ranks. */
#define ACKD_DATASET_STATS_BLOCK 256

/* The contiguous sample range [lo, hi) a rank owns: whole stats blocks. */
void AckdDatasetPartition(PetscInt count, PetscMPIInt size, PetscMPIInt rank, PetscInt *lo, PetscInt *hi);

/* ---------------------------------------------------------------- splits */

typedef struct {
  uint64_t  seed;
  uint32_t  tag;        /* RNG stream tag: distinct per collection */
  PetscReal train, val; /* fractions; the rest is test (ignored with folds) */
  PetscInt  folds;      /* > 1: k-fold, fold `fold` is validation, the rest training */
  PetscInt  fold;
} AckdSplitSettings;

/* Stratified per class; samples whose label is outside 0..nclasses-1 are left untouched. */
PetscErrorCode AckdSplitStratified(PetscInt n, const PetscInt *label, PetscInt nclasses, const AckdSplitSettings *s,
                                   unsigned char *split);

/* ---------------------------------------------------------------- output files */

/* An existing output written with the same `parameters` (stored in attribute
 * `attribute`) is up to date: nothing to do, so a killed pipeline can be
 * started again. One written otherwise is only replaced with `force`
 * (`force_option` names the option in the error). */
PetscErrorCode AckdDatasetOutputIsCurrent(MPI_Comm comm, const char *path, const char *attribute,
                                          const char *parameters, PetscBool force, const char *force_option,
                                          PetscBool *current);

/* ---------------------------------------------------------------- writing */

typedef struct {
  const char        *name; /* group name: "ms" or "rgb" */
  PetscInt           count, channels, height, width;
  PetscInt           nclasses;
  const char *const *class_names;
  const char *const *band_names;
  const double      *wavelength_nm; /* may be NULL */
  const char        *sensor;        /* free text describing the sensor */
  PetscInt           compress;      /* deflate level 0-9, 0 = none */
  const char        *normalization; /* what was applied to the pixels; NULL: "none" */
  PetscInt           label_columns; /* 0: one class per sample; K: multi-label, (N, K) 0/1 */
  const PetscInt    *source_bands;  /* (channels) 1-based bands of the source files; NULL: none */
} AckdCollectionLayout;

typedef struct _p_AckdCollectionWriter *AckdCollectionWriter;

/* Collective: creates the group and its datasets at full size. */
PetscErrorCode AckdCollectionWriterCreate(MPI_Comm comm, hid_t file, const AckdCollectionLayout *layout,
                                          AckdCollectionWriter *writer);
/* Collective: every rank calls it the same number of times, with n = 0 when it
 * has nothing left, because filtered parallel HDF5 writes must be collective.
 * Samples [first, first + n) of this rank, images in (n, C, H, W) order;
 * `labels` (n) for single-label collections, `multilabels` (n, K) otherwise. */
PetscErrorCode AckdCollectionWriterWrite(AckdCollectionWriter writer, PetscInt first, PetscInt n, const float *images,
                                         const int *labels, const unsigned char *multilabels,
                                         const unsigned char *splits);
/* Collective: merges the statistics of every block and writes them. */
PetscErrorCode AckdCollectionWriterFinish(AckdCollectionWriter writer);
/* Collective, after Finish: rewrites the images as (x - mean) / std per band
 * with the training statistics; the raw statistics stay as source_band_*. */
PetscErrorCode AckdCollectionWriterStandardize(AckdCollectionWriter writer);
PetscErrorCode AckdCollectionWriterDestroy(AckdCollectionWriter *writer);

/* The relation between the two collections' class lists: ms_to_rgb[i] is the
 * RGB class of MS class i, or -1. AckdClassMapByName relates equal names. */
PetscErrorCode AckdDatasetWriteClassMap(MPI_Comm comm, hid_t file, PetscInt n_ms, PetscInt n_rgb, const int *ms_to_rgb);
void AckdClassMapByName(PetscInt n_ms, const char *const *ms_classes, PetscInt n_rgb, const char *const *rgb_classes,
                        int *ms_to_rgb);
/* Root attributes: format, version, creator, time and the options in force. */
PetscErrorCode AckdDatasetWriteProvenance(MPI_Comm comm, hid_t file, const char *generator);

/* ---------------------------------------------------------------- synth */

typedef struct _p_AckdSynth *AckdSynth;

PetscErrorCode AckdSynthCreate(MPI_Comm comm, AckdSynth *synth);
PetscErrorCode AckdSynthSetFromOptions(AckdSynth synth);
/* Collective: generates both collections and writes them to `path`, through a
 * temporary file renamed at the end, so `path` is either absent, the old file,
 * or complete. On SIGUSR1 or SIGTERM it stops after the current round of writes,
 * removes the temporary file and sets *stopped (the stage exits 75). */
PetscErrorCode AckdSynthWrite(AckdSynth synth, const char *path, PetscBool *stopped);
PetscErrorCode AckdSynthDestroy(AckdSynth *synth);

/* ---------------------------------------------------------------- rasters */

#define ACKD_RASTER_MAX_BANDS 64

typedef enum {
  ACKD_RASTER_OK = 0,
  ACKD_RASTER_UNREADABLE, /* missing, corrupt, or not an image GDAL knows */
  ACKD_RASTER_BAND_COUNT, /* another number of bands than the collection's */
  ACKD_RASTER_ODD_SIZE,   /* another size than the collection's (set by curate) */
  ACKD_RASTER_NOT_FINITE, /* NaN or Inf pixels */
  ACKD_RASTER_STATUSES
} AckdRasterStatus;

typedef struct {
  PetscInt        nbands;       /* bands to read, in this order */
  const PetscInt *bands;        /* 1-based band numbers */
  PetscInt        expect_bands; /* the band count every image must have; 0: any that holds the selection */
  PetscBool       resize;       /* resample (bilinear) to height x width */
  PetscInt        height, width;
} AckdRasterRequest;

typedef struct {
  AckdRasterStatus status;
  PetscInt         bands, height, width; /* as found (height, width: as returned) */
  char             reason[256];
} AckdRasterInfo;

typedef struct {
  float *data; /* nbands x height x width after a successful read */
  size_t capacity;
} AckdRasterBuffer;

/* Decodes one image through GDAL. Bad files are reported in `info`, not as errors. */
PetscErrorCode AckdRasterRead(const char *path, const AckdRasterRequest *req, AckdRasterBuffer *buf,
                              AckdRasterInfo *info);
uint64_t       AckdContentHash(const void *data, size_t bytes);
/* Bilinear resampling of a (C, h, w) image to (C, oh, ow), by the GDAL code that resizes images in
 * AckdRasterRead, so that a window of a scene is resized as the training images were. */
PetscErrorCode AckdRasterResample(PetscInt C, PetscInt h, PetscInt w, const float *in, PetscInt oh, PetscInt ow,
                                  float *out);

/* ---------------------------------------------------------------- scenes and maps (GDAL) */

/* A large raster read window by window, on one rank (src/data/scene_raster.c). */
typedef struct _p_AckdScene *AckdScene;

/* Opens `path` read-only keeping `bands` (1-based); a file GDAL cannot read, or one without such a
 * band, is an error naming it. */
PetscErrorCode AckdSceneOpen(const char *path, PetscInt nbands, const PetscInt *bands, AckdScene *scene);
PetscErrorCode AckdSceneGetSize(AckdScene scene, PetscInt *width, PetscInt *height);
/* The raw pixels (nbands, h, w) of the window at column x0, row y0; valid (h * w) is 0 where any
 * kept band holds its nodata value or a NaN or Inf, 1 elsewhere. */
PetscErrorCode AckdSceneReadWindow(AckdScene scene, PetscInt x0, PetscInt y0, PetscInt w, PetscInt h, float *pixels,
                                   unsigned char *valid);
/* The scene's geotransform (GDAL's six coefficients) and CRS as WKT ("" when it has none);
 * *georeferenced is false when it has no geotransform. `wkt` lives as long as the scene. */
PetscErrorCode AckdSceneGetGeoreference(AckdScene scene, double geotransform[6], const char **wkt,
                                        PetscBool *georeferenced);
PetscErrorCode AckdSceneClose(AckdScene *scene);

/* A map written by one rank as a tiled, deflated GeoTIFF: under `path`.part, renamed to `path`
 * only when complete. A class map is one byte band with a colour table, the class names as
 * categories and ACKD_MAP_NODATA_CLASS as nodata; a probability map one float32 band per class,
 * named after it, with NaN as nodata. */
#define ACKD_MAP_NODATA_CLASS 255
typedef enum { ACKD_MAP_CLASSES, ACKD_MAP_PROBABILITIES } AckdMapKind;
typedef struct {
  AckdMapKind        kind;
  PetscInt           width, height, classes;
  const char *const *class_names;
  const double      *geotransform; /* NULL: none */
  const char        *wkt;          /* NULL or "": no CRS */
} AckdMapLayout;
typedef struct _p_AckdMap *AckdMap;

PetscErrorCode AckdMapCreate(const char *path, const AckdMapLayout *layout, AckdMap *map);
/* Rows [y0, y0 + rows): bytes (rows, width) for a class map, floats (classes, rows, width) for a
 * probability map. */
PetscErrorCode AckdMapWriteRows(AckdMap map, PetscInt y0, PetscInt rows, const void *data);
PetscErrorCode AckdMapCommit(AckdMap *map);
PetscErrorCode AckdMapDiscard(AckdMap *map);

/* ---------------------------------------------------------------- class folders */

/* ROOT/<class>/<image>, sorted by class then file name, the same on every rank. */
typedef struct {
  PetscInt  nclasses;
  char    **class_names;
  PetscInt *class_counts; /* files per class; 0 for an empty class folder */
  PetscInt  nfiles;
  char    **paths; /* ROOT/<class>/<file> */
  PetscInt *label; /* class index per file */
} AckdClassFolders;

/* Collective; `extensions` is a NULL-terminated list such as {"tif", "tiff", NULL}. */
PetscErrorCode AckdClassFoldersScan(MPI_Comm comm, const char *root, const char *const *extensions,
                                    AckdClassFolders *folders);
PetscErrorCode AckdClassFoldersDestroy(AckdClassFolders *folders);

/* ---------------------------------------------------------------- curate */

typedef struct _p_AckdCurate *AckdCurate;

PetscErrorCode AckdCurateCreate(MPI_Comm comm, AckdCurate *curate);
PetscErrorCode AckdCurateSetFromOptions(AckdCurate curate);
/* Collective: scans, decodes, checks and writes the dataset. A stop request (SIGUSR1, SIGTERM)
 * ends it after the current file of pass 1 or round of writes, with the temporary file removed and
 * *stopped set (the stage exits 75; the next run starts again). */
PetscErrorCode AckdCurateRun(AckdCurate curate, PetscBool *stopped);
PetscErrorCode AckdCurateDestroy(AckdCurate *curate);

/* ---------------------------------------------------------------- collection info */

/* What a stage needs to know about one collection of a dataset file before
 * building a model for it: class count and names, and whether it is
 * multi-label; and the class map between the two collections. */
typedef struct {
  PetscInt  count, classes, channels, height, width;
  PetscBool multilabel;
  char    **class_names; /* `classes` strings */
  int      *ms_to_rgb;   /* /class_map (K_ms), -1: no counterpart; NULL if the file has none */
  PetscInt  nms_classes;
} AckdCollectionInfo;

/* Collective. */
PetscErrorCode AckdCollectionInfoRead(MPI_Comm comm, const char *path, const char *collection,
                                      AckdCollectionInfo *info);
PetscErrorCode AckdCollectionInfoDestroy(AckdCollectionInfo *info);

/* ---------------------------------------------------------------- input recipe */

/* How a collection's images were made from raster files (src/data/input_recipe.c): the file bands
 * kept, the image size, and the normalisation with its statistics. `ackd predict` applies it to
 * new rasters so that they reach the model as the training images did. */
typedef enum { ACKD_NORMALIZE_NONE, ACKD_NORMALIZE_IMAGE_MAX, ACKD_NORMALIZE_BAND_STANDARDIZE } AckdNormalization;
extern const char *const AckdNormalizationNames[]; /* "none", "image_max", "band_standardize" */

typedef struct {
  PetscInt          channels, height, width;
  PetscInt          bands[ACKD_RASTER_MAX_BANDS]; /* 1-based file bands, when bands_recorded */
  PetscBool         bands_recorded;               /* curate records them; synth has no files */
  AckdNormalization normalization;
  double            mean[ACKD_RASTER_MAX_BANDS], std[ACKD_RASTER_MAX_BANDS]; /* band_standardize's */
} AckdInputRecipe;

/* Collective: the recipe of /`collection` in dataset `path`, whose sizes `info` (read from the same
 * file by AckdCollectionInfoRead) already holds. */
PetscErrorCode AckdInputRecipeRead(MPI_Comm comm, const char *path, const char *collection,
                                   const AckdCollectionInfo *info, AckdInputRecipe *recipe);
/* In place on raw pixels (channels, height, width) of the recipe's size. */
void AckdInputRecipeApply(const AckdInputRecipe *recipe, float *x);
/* Pixels without data (valid 0) of an image (channels, plane) take their band's mean over the
 * valid ones: the model then sees a plain patch there, not a fill value far outside the data. */
void AckdFillInvalid(PetscInt channels, size_t plane, float *x, const unsigned char *valid);
/* The paper's per-image normalisation: x / max(x) into [0, 1], then to [-1, 1]. */
void AckdNormalizeImageMax(float *x, size_t n);

/* ---------------------------------------------------------------- augmentation */

/* Scene augmentation: one of the 8 symmetries of the square (flips and 90°
 * rotations), drawn from (seed, epoch, global sample index) alone, so a
 * sample is transformed identically whichever rank, batch or rank count
 * handles it. Images are (C, S, S); non-square images are only flipped.
 * `out` must not alias `in`. Returns the transform drawn (0 is identity). */
PetscInt AckdAugmentScene(uint64_t seed, PetscInt epoch, PetscInt index, PetscInt channels, PetscInt height,
                          PetscInt width, const float *in, float *out);
/* Applies transform `t` of AckdAugmentScene (0..7): bit 0 flips left-right,
 * bit 1 flips up-down, bit 2 transposes (applied first). */
void AckdAugmentApply(PetscInt t, PetscInt channels, PetscInt height, PetscInt width, const float *in, float *out);

/* ---------------------------------------------------------------- reading */

/* Checks that an open file is a complete ackd dataset; errors name the first
 * missing or inconsistent object. */
PetscErrorCode AckdDatasetValidate(hid_t file, const char *path);
/* Prints a human summary of a dataset file on rank 0 (the others only wait). */
PetscErrorCode AckdDatasetSummarize(MPI_Comm comm, hid_t file, const char *path, FILE *out);

#endif
