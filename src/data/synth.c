/* `ackd synth`: the synthetic asymmetric benchmark.
 *
 * Every sample is a pure function of (seed, collection, index): its class, its
 * label noise, its split and its pixels are recomputed from the counter-based
 * RNG wherever they are needed, so the file holds the same data whatever the
 * number of ranks, and any rank can make any sample. */
#include <ackd/data.h>
#include "synth_scene.h"
#include <ackd/ckpt.h>
#include <string.h>

static AckdLogPackage synth_log = {.name = "ackd synth", .nevents = 2, .event_names = {"SynthRender", "SynthWrite"}};

/* RNG stream tags: one purpose each, so no two draws ever share a stream. */
enum {
  TAG_MS_SCENE = 1,
  TAG_RGB_SCENE,
  TAG_MS_LABEL_NOISE,
  TAG_RGB_LABEL_NOISE,
  TAG_MS_SPLIT,
  TAG_RGB_SPLIT,
  TAG_RGB_KNOWN_LABEL_NOISE,
  TAG_MS_NEIGHBOUR,
  TAG_RGB_NEIGHBOUR
};

enum {
  WRITE_BATCH = 64 /* samples rendered and written per collective round */
};

struct _p_AckdSynth {
  MPI_Comm       comm;
  AckdLog        log;
  AckdH5Settings h5;
  char           output[PETSC_MAX_PATH_LEN];
  PetscInt       ms_count, rgb_count, classes, bands, size, compress, seed;
  PetscReal      overlap, ms_noise, rgb_noise, ms_blur, rgb_blur, rgb_gsd, variability, label_noise;
  PetscReal      rgb_label_noise; /* RGB only, training and validation splits only */
  PetscReal      rgb_variability; /* the RGB collection's own; -synth_variability unless given */
  PetscReal      train_fraction, val_fraction;
  PetscReal      rgb_train_fraction, rgb_val_fraction; /* the RGB collection's own; the above unless given */
  PetscReal      mixing; /* the largest share of a scene a neighbouring class's cover holds */
  PetscBool      force, paired;
  PetscBool      ms_multilabel; /* the MS collection lists every cover a scene holds, its dominant one recorded */
  PetscLogEvent  event_render, event_write;
};

/* One collection as synth sees it: which world classes it shows, through which sensor. */
typedef struct {
  const char *name;
  PetscInt    count;
  PetscInt   *world_class; /* local class -> scene catalogue class */
  char      **class_names;
  AckdSensor  sensor;
  uint32_t    tag_scene, tag_label_noise, tag_split, tag_neighbour;
  PetscReal   variability;
  PetscReal   label_noise;
  PetscReal   known_label_noise; /* on the training and validation splits only (-synth_rgb_label_noise) */
  PetscReal   train_fraction, val_fraction;
  PetscBool   multilabel; /* (N, K) 0/1 labels: the main cover and the neighbouring parcel's */
} Collection;

PetscErrorCode AckdSynthCreate(MPI_Comm comm, AckdSynth *synth)
{
  AckdSynth s;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&s));
  s->comm = comm;
  PetscCall(PetscStrncpy(s->output, "synth.h5", sizeof s->output));
  s->ms_count       = 3000;
  s->rgb_count      = 3000;
  s->classes        = 10;
  s->overlap        = 0.7;
  s->bands          = 10;
  s->size           = 32;
  s->ms_noise       = 0.01;
  s->rgb_noise      = 0.02;
  s->ms_blur        = 0.5;
  s->rgb_blur       = 0.7;
  s->rgb_gsd        = 0.6;
  s->variability    = 0.5;
  s->label_noise    = 0.0;
  s->train_fraction = 0.7;
  s->val_fraction   = 0.15;
  s->compress       = 1;
  s->seed           = 42;
  PetscCall(AckdLogSetUp(&s->log, comm));
  PetscCall(AckdLogPackageRegister(&synth_log));
  s->event_render = synth_log.events[0];
  s->event_write  = synth_log.events[1];
  *synth          = s;
  PetscFunctionReturn(0);
}

static PetscErrorCode check_fractions(MPI_Comm comm, const char *collection, PetscReal train, PetscReal val)
{
  PetscFunctionBeginUser;
  PetscCheck(train + val <= 1.0 + 1e-12, comm, PETSC_ERR_USER_INPUT,
             "options -synth_%strain and -synth_%sval (%g and %g) add up to more than 1; lower one", collection,
             collection, (double)train, (double)val);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdSynthSetFromOptions(AckdSynth s)
{
  PetscFunctionBeginUser;
  PetscOptionsBegin(s->comm, NULL, "ackd synth: the synthetic asymmetric MS/RGB benchmark", NULL);
  PetscCall(AckdOptionsString(PetscOptionsObject, "-synth_output", "Dataset file to write", s->output, sizeof s->output,
                              NULL));
  PetscCall(
      AckdOptionsInt(PetscOptionsObject, "-synth_ms_count", "Multispectral samples", &s->ms_count, 1, 100000000, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-synth_rgb_count", "RGB samples (different scenes, unpaired)",
                           &s->rgb_count, 1, 100000000, NULL));
  PetscCall(
      AckdOptionsInt(PetscOptionsObject, "-synth_classes", "Classes in each collection", &s->classes, 2, 1000, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-synth_overlap",
                            "Fraction of each collection's classes that the other collection also has", &s->overlap,
                            0.0, 1.0, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-synth_bands",
                           "Multispectral bands (10: Sentinel-2 B2-B8, B8A, B11, B12)", &s->bands, 1,
                           ACKD_SENSOR_MAX_BANDS, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-synth_size", "Image height and width in pixels (the paper: 64)",
                           &s->size, 8, 1024, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-synth_ms_noise", "Multispectral sensor noise std (reflectance)",
                            &s->ms_noise, 0.0, 1.0, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-synth_rgb_noise", "RGB sensor noise std (of [0,1] values)",
                            &s->rgb_noise, 0.0, 1.0, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-synth_ms_blur", "Multispectral point-spread sigma (pixels)",
                            &s->ms_blur, 0.0, 10.0, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-synth_rgb_blur", "RGB point-spread sigma (pixels)", &s->rgb_blur, 0.0,
                            10.0, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-synth_rgb_gsd",
                            "RGB ground sample distance relative to MS (< 1: finer RGB pixels)", &s->rgb_gsd, 0.05,
                            20.0, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-synth_variability",
                            "Intra-class variability of spectra, layout and illumination (0..1)", &s->variability, 0.0,
                            1.0, NULL));
  s->rgb_variability = s->variability;
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-synth_rgb_variability",
                            "The RGB collection's intra-class variability, when it comes from more places, seasons and "
                            "acquisitions than the MS one (0..1; default: -synth_variability)",
                            &s->rgb_variability, 0.0, 1.0, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-synth_mixing",
                            "Largest share of a scene held by a neighbouring parcel of another of its collection's "
                            "classes, across an edge (each scene draws its share uniformly below it; the label stays "
                            "the main cover's; 0..0.5, 0: one cover per scene)",
                            &s->mixing, 0.0, 0.5, NULL));
  PetscCall(
      AckdOptionsBool(PetscOptionsObject, "-synth_ms_multilabel",
                      "Label each MS scene with every cover it holds, the main one and its neighbouring parcel's, "
                      "as a multi-label benchmark labelled from a land-cover map does (BigEarthNet); the main "
                      "cover is recorded as /ms/dominant_class (needs -synth_mixing)",
                      &s->ms_multilabel, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-synth_label_noise",
                            "Probability that a sample's label is replaced by another class", &s->label_noise, 0.0, 1.0,
                            NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-synth_rgb_label_noise",
                            "Probability that an RGB sample's label in the training and validation splits is replaced "
                            "by another class (the labels a user has are noisy; the test split keeps the true ones, "
                            "and the MS collection is untouched)",
                            &s->rgb_label_noise, 0.0, 1.0, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-synth_train", "Training fraction of each class", &s->train_fraction,
                            0.0, 1.0, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-synth_val", "Validation fraction of each class (the rest is test)",
                            &s->val_fraction, 0.0, 1.0, NULL));
  s->rgb_train_fraction = s->train_fraction;
  s->rgb_val_fraction   = s->val_fraction;
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-synth_rgb_train",
                            "The RGB collection's training fraction of each class, when its labels are scarcer than "
                            "the MS one's (default: -synth_train)",
                            &s->rgb_train_fraction, 0.0, 1.0, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-synth_rgb_val",
                            "The RGB collection's validation fraction of each class (the rest is test; default: "
                            "-synth_val)",
                            &s->rgb_val_fraction, 0.0, 1.0, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-synth_seed", "Random seed: the whole benchmark is a function of it",
                           &s->seed, 0, PETSC_MAX_INT, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-synth_compress", "Deflate level of the image datasets (0: none)",
                           &s->compress, 0, 9, NULL));
  PetscCall(AckdOptionsBool(PetscOptionsObject, "-synth_paired",
                            "RGB sample i shows the ground of MS sample i, in the same split (co-registered "
                            "collections: the ceiling a matching of unpaired scenes can reach)",
                            &s->paired, NULL));
  PetscCall(AckdOptionsBool(PetscOptionsObject, "-synth_force",
                            "Replace an existing output written with other parameters", &s->force, NULL));
  PetscOptionsEnd();
  PetscCheck(!s->ms_multilabel || s->mixing > 0, s->comm, PETSC_ERR_USER_INPUT,
             "-synth_ms_multilabel needs -synth_mixing above 0: a scene's second label is the neighbouring parcel it "
             "straddles; give -synth_mixing (e.g. 0.4) or leave -synth_ms_multilabel out");
  PetscCall(check_fractions(s->comm, "", s->train_fraction, s->val_fraction));
  PetscCall(check_fractions(s->comm, "rgb_", s->rgb_train_fraction, s->rgb_val_fraction));
  PetscCheck(!s->paired || s->rgb_count == s->ms_count, s->comm, PETSC_ERR_USER_INPUT,
             "-synth_paired needs as many RGB as MS samples (-synth_rgb_count %" PetscInt_FMT
             ", -synth_ms_count %" PetscInt_FMT "): sample i of each shows the same ground; give both the same count",
             s->rgb_count, s->ms_count);
  PetscCheck(!s->paired || (s->rgb_train_fraction == s->train_fraction && s->rgb_val_fraction == s->val_fraction),
             s->comm, PETSC_ERR_USER_INPUT,
             "-synth_paired needs the RGB collection's split fractions equal to the MS one's (-synth_rgb_train %g "
             "-synth_rgb_val %g against %g and %g): sample i of each is in the same split; leave -synth_rgb_train and "
             "-synth_rgb_val out",
             (double)s->rgb_train_fraction, (double)s->rgb_val_fraction, (double)s->train_fraction,
             (double)s->val_fraction);
  /* Variability scales the layout draws too, so the same ground needs the same value on both sides. */
  PetscCheck(!s->paired || s->rgb_variability == s->variability, s->comm, PETSC_ERR_USER_INPUT,
             "-synth_paired needs -synth_rgb_variability equal to -synth_variability (%g and %g): sample i of each "
             "shows the same ground; leave -synth_rgb_variability out",
             (double)s->rgb_variability, (double)s->variability);
  PetscCall(AckdH5SettingsSetFromOptions(&s->h5));
  PetscFunctionReturn(0);
}

/* The parameters that determine the file's contents, in one canonical line:
 * a rerun with the same line finds its output up to date. */
static void parameter_line(AckdSynth s, char *buf, size_t len)
{
  snprintf(buf, len,
           "ms_count=%" PetscInt_FMT " rgb_count=%" PetscInt_FMT " classes=%" PetscInt_FMT
           " overlap=%.15g bands=%" PetscInt_FMT " size=%" PetscInt_FMT
           " ms_noise=%.15g rgb_noise=%.15g ms_blur=%.15g rgb_blur=%.15g rgb_gsd=%.15g variability=%.15g"
           " label_noise=%.15g train=%.15g val=%.15g seed=%" PetscInt_FMT " compress=%" PetscInt_FMT " version=%s",
           s->ms_count, s->rgb_count, s->classes, (double)s->overlap, s->bands, s->size, (double)s->ms_noise,
           (double)s->rgb_noise, (double)s->ms_blur, (double)s->rgb_blur, (double)s->rgb_gsd, (double)s->variability,
           (double)s->label_noise, (double)s->train_fraction, (double)s->val_fraction, s->seed, s->compress,
           ACKD_VERSION_STRING);
  /* named only when used, so that the files written before they existed stay up to date */
  size_t used = strlen(buf);
  if (s->rgb_label_noise > 0)
    used += (size_t)snprintf(buf + used, len - used, " rgb_label_noise=%.15g", (double)s->rgb_label_noise);
  if (s->rgb_variability != s->variability && used < len)
    used += (size_t)snprintf(buf + used, len - used, " rgb_variability=%.15g", (double)s->rgb_variability);
  if (s->rgb_train_fraction != s->train_fraction && used < len)
    used += (size_t)snprintf(buf + used, len - used, " rgb_train=%.15g", (double)s->rgb_train_fraction);
  if (s->rgb_val_fraction != s->val_fraction && used < len)
    used += (size_t)snprintf(buf + used, len - used, " rgb_val=%.15g", (double)s->rgb_val_fraction);
  if (s->mixing > 0 && used < len) used += (size_t)snprintf(buf + used, len - used, " mixing=%.15g", (double)s->mixing);
  if (s->ms_multilabel && used < len) used += (size_t)snprintf(buf + used, len - used, " ms_multilabel=1");
  if (s->paired && used < len) snprintf(buf + used, len - used, " paired=1");
}

/* MS shows world classes 0..K-1; RGB shares the first round(overlap K) of them
 * and has K - shared classes of its own, so each side has classes the other
 * lacks, as in the paper's unpaired benchmarks. Paired, the RGB collection
 * draws its scenes and splits from the MS streams: sample i of a shared class
 * is the same ground in the same split on both sides. */
static PetscErrorCode collections_set_up(AckdSynth s, Collection *ms, Collection *rgb)
{
  PetscInt K = s->classes, shared = (PetscInt)PetscFloorReal(s->overlap * (PetscReal)K + 0.5);

  PetscFunctionBeginUser;
  *ms  = (Collection){.name            = "ms",
                      .count           = s->ms_count,
                      .tag_scene       = TAG_MS_SCENE,
                      .tag_label_noise = TAG_MS_LABEL_NOISE,
                      .tag_split       = TAG_MS_SPLIT,
                      .tag_neighbour   = TAG_MS_NEIGHBOUR,
                      .variability     = s->variability,
                      .label_noise     = s->label_noise,
                      .train_fraction  = s->train_fraction,
                      .val_fraction    = s->val_fraction,
                      .multilabel      = s->ms_multilabel};
  *rgb = (Collection){.name              = "rgb",
                      .count             = s->rgb_count,
                      .tag_scene         = s->paired ? TAG_MS_SCENE : TAG_RGB_SCENE,
                      .tag_label_noise   = TAG_RGB_LABEL_NOISE,
                      .tag_split         = s->paired ? TAG_MS_SPLIT : TAG_RGB_SPLIT,
                      .tag_neighbour     = s->paired ? TAG_MS_NEIGHBOUR : TAG_RGB_NEIGHBOUR,
                      .variability       = s->rgb_variability,
                      .label_noise       = s->label_noise,
                      .known_label_noise = s->rgb_label_noise,
                      .train_fraction    = s->rgb_train_fraction,
                      .val_fraction      = s->rgb_val_fraction};
  PetscCall(AckdSceneSensorMultispectral(s->bands, s->ms_noise, s->ms_blur, &ms->sensor));
  PetscCall(AckdSceneSensorRGB(s->rgb_gsd, s->rgb_noise, s->rgb_blur, &rgb->sensor));
  Collection *both[2] = {ms, rgb};
  for (int k = 0; k < 2; k++) {
    Collection *c = both[k];
    PetscCall(PetscMalloc1(K, &c->world_class));
    PetscCall(PetscMalloc1(K, &c->class_names));
    for (PetscInt j = 0; j < K; j++) {
      c->world_class[j] = (k == 0 || j < shared) ? j : K + (j - shared);
      PetscCall(PetscMalloc1(64, &c->class_names[j]));
      AckdSceneClassName(c->world_class[j], c->class_names[j], 64);
    }
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode collection_destroy(Collection *c, PetscInt K)
{
  PetscFunctionBeginUser;
  for (PetscInt j = 0; j < K && c->class_names; j++) PetscCall(PetscFree(c->class_names[j]));
  PetscCall(PetscFree(c->class_names));
  PetscCall(PetscFree(c->world_class));
  PetscFunctionReturn(0);
}

/* Stratified split on the scene class (i mod K), not the noisy label, so label
 * noise never unbalances the splits. */
static PetscErrorCode compute_splits(AckdSynth s, const Collection *c, unsigned char *split)
{
  PetscInt         *scene;
  AckdSplitSettings settings = {.seed  = (uint64_t)s->seed,
                                .tag   = c->tag_split,
                                .train = c->train_fraction,
                                .val   = c->val_fraction,
                                .folds = 0,
                                .fold  = 0};

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(c->count, &scene));
  for (PetscInt i = 0; i < c->count; i++) scene[i] = i % s->classes;
  PetscCall(AckdSplitStratified(c->count, scene, s->classes, &settings, split));
  PetscCall(PetscFree(scene));
  PetscFunctionReturn(0);
}

/* Label i relabelled with probability p to another class, uniformly, by the stream `tag`. */
static int noisy(AckdSynth s, PetscInt i, int label, PetscReal p, uint32_t tag)
{
  if (p <= 0) return label;
  AckdRng rng;
  AckdRngInit(&rng, (uint64_t)s->seed, (uint64_t)i, tag);
  if (AckdRngUniform(&rng) >= p) return label;
  PetscInt other = (PetscInt)AckdRngBelow(&rng, (uint32_t)(s->classes - 1));
  return (int)(other >= label ? other + 1 : other);
}

/* Classes are interleaved (sample i shows class i mod K), so every prefix of
 * the file is balanced; label noise then relabels a random few: everywhere
 * (-synth_label_noise), and where the user's labels are (training and
 * validation splits, -synth_rgb_label_noise) on top. */
static int sample_label(AckdSynth s, const Collection *c, PetscInt i, unsigned char split, PetscInt *scene_class)
{
  PetscInt clean = i % s->classes;
  *scene_class   = c->world_class[clean];
  int label      = noisy(s, i, (int)clean, c->label_noise, c->tag_label_noise);
  if (split == ACKD_SPLIT_TEST) return label;
  return noisy(s, i, label, c->known_label_noise, TAG_RGB_KNOWN_LABEL_NOISE);
}

/* The neighbouring parcel scene i straddles: another of the collection's
 * classes (its index there in *local_class), since a benchmark's
 * classes cover its region's land, with a share uniform below -synth_mixing.
 * Paired, both collections draw it from the MS stream, so the same ground has
 * the same neighbour. */
static AckdSceneNeighbour scene_neighbour(AckdSynth s, const Collection *c, PetscInt i, int *local_class)
{
  AckdRng rng;
  AckdRngInit(&rng, (uint64_t)s->seed, (uint64_t)i, c->tag_neighbour);
  PetscInt own = i % s->classes, other = (PetscInt)AckdRngBelow(&rng, (uint32_t)(s->classes - 1));
  if (other >= own) other++;
  *local_class = (int)other;
  return (AckdSceneNeighbour){.global_class = c->world_class[other], .share = s->mixing * AckdRngUniform(&rng)};
}

/* Ground truth for analysis, beside the labels: each of this rank's scenes' neighbouring class
 * (in the collection's numbering) and its share of the tile, so a study can ask whether a
 * matching hands a student teachers with its own neighbour. Filled as the scenes are rendered. */
typedef struct {
  int   *neighbour_class;
  float *share;
  int   *dominant; /* a multi-label collection's main cover: the label a single-label file would hold */
} NeighbourRecords;

static PetscErrorCode write_neighbours(AckdSynth s, const Collection *c, hid_t group, PetscInt lo, PetscInt hi,
                                       const NeighbourRecords *records)
{
  float *fractions;

  PetscFunctionBeginUser;
  /* The share of the tile each class covers (docs/FORMATS.md), what a land-cover map gives a real
   * benchmark: the scene's own class holds what its neighbour leaves, whatever label noise did to
   * its label. A teacher can learn from it (ackd train -train_targets cover_fractions). */
  PetscCall(PetscCalloc1((size_t)PetscMax(hi - lo, 1) * s->classes, &fractions));
  for (PetscInt i = lo; i < hi; i++) {
    float *row                            = fractions + (i - lo) * s->classes;
    row[i % s->classes]                   = 1.0f - records->share[i - lo];
    row[records->neighbour_class[i - lo]] = records->share[i - lo];
  }
  PetscCall(AckdH5WriteRows(s->comm, group, "cover_fractions", H5T_NATIVE_FLOAT, c->count, s->classes, lo, hi - lo,
                            fractions));
  PetscCall(PetscFree(fractions));
  PetscCall(AckdH5WriteRows(s->comm, group, "neighbour_class", H5T_NATIVE_INT, c->count, 0, lo, hi - lo,
                            records->neighbour_class));
  PetscCall(
      AckdH5WriteRows(s->comm, group, "neighbour_share", H5T_NATIVE_FLOAT, c->count, 0, lo, hi - lo, records->share));
  if (c->multilabel)
    PetscCall(
        AckdH5WriteRows(s->comm, group, "dominant_class", H5T_NATIVE_INT, c->count, 0, lo, hi - lo, records->dominant));
  PetscFunctionReturn(0);
}

/* Writes one collection; on a stop request (SIGUSR1, SIGTERM) it ends after the current round of
 * writes, with *stopped set and the collection incomplete. */
static PetscErrorCode write_collection(AckdSynth s, hid_t file, Collection *c, AckdProgress *bar, PetscInt *progress,
                                       PetscBool *stopped)
{
  PetscMPIInt          rank, size;
  PetscInt             lo, hi, local, rounds, S = s->size;
  AckdCollectionWriter writer;
  const char          *bands[ACKD_SENSOR_MAX_BANDS];
  unsigned char       *split;
  float               *images;
  int                  labels[WRITE_BATCH];
  unsigned char       *multilabels = NULL;
  PetscInt             flipped     = 0;
  char                 sensor[128];
  NeighbourRecords     records = {NULL, NULL, NULL};

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(s->comm, &rank));
  PetscCallMPI(MPI_Comm_size(s->comm, &size));
  for (PetscInt b = 0; b < c->sensor.channels; b++) bands[b] = c->sensor.band_name[b];
  snprintf(sensor, sizeof sensor, "synthetic %s: gsd %g, noise %g, blur %g px",
           c->sensor.kind == ACKD_SENSOR_RGB ? "RGB camera" : "multispectral (Sentinel-2-like)", c->sensor.gsd,
           c->sensor.noise, c->sensor.blur);
  AckdCollectionLayout layout = {.name          = c->name,
                                 .count         = c->count,
                                 .channels      = c->sensor.channels,
                                 .height        = S,
                                 .width         = S,
                                 .nclasses      = s->classes,
                                 .class_names   = (const char *const *)c->class_names,
                                 .band_names    = bands,
                                 .wavelength_nm = c->sensor.wavelength_nm,
                                 .sensor        = sensor,
                                 .compress      = s->compress,
                                 .label_columns = c->multilabel ? s->classes : 0};
  PetscCall(AckdCollectionWriterCreate(s->comm, file, &layout, &writer));

  PetscCall(PetscMalloc1(c->count, &split));
  PetscCall(compute_splits(s, c, split));
  PetscInt sample = c->sensor.channels * S * S;
  PetscCall(PetscMalloc1((size_t)WRITE_BATCH * sample, &images));

  AckdDatasetPartition(c->count, size, rank, &lo, &hi);
  local = hi - lo;
  if (s->mixing > 0)
    PetscCall(PetscMalloc2(PetscMax(local, 1), &records.neighbour_class, PetscMax(local, 1), &records.share));
  if (c->multilabel) {
    PetscCall(PetscMalloc1((size_t)WRITE_BATCH * s->classes, &multilabels));
    PetscCall(PetscMalloc1(PetscMax(local, 1), &records.dominant));
  }
  PetscInt my_rounds = (local + WRITE_BATCH - 1) / WRITE_BATCH;
  PetscCallMPI(MPI_Allreduce(&my_rounds, &rounds, 1, MPIU_INT, MPI_MAX, s->comm));
  for (PetscInt r = 0; r < rounds && !*stopped; r++) {
    PetscInt first = lo + r * WRITE_BATCH, n = PetscMax(0, PetscMin(WRITE_BATCH, hi - first));
    PetscCall(PetscLogEventBegin(s->event_render, 0, 0, 0, 0));
    for (PetscInt i = 0; i < n; i++) {
      PetscInt scene_class;
      labels[i] = sample_label(s, c, first + i, split[first + i], &scene_class);
      flipped += labels[i] != (first + i) % s->classes;
      AckdSceneNeighbour neighbour, *mixed = NULL;
      if (records.share) {
        PetscInt k       = first + i - lo;
        neighbour        = scene_neighbour(s, c, first + i, &records.neighbour_class[k]);
        records.share[k] = (float)neighbour.share;
        mixed            = &neighbour;
        if (multilabels) {
          unsigned char *row = multilabels + i * s->classes;
          for (PetscInt j = 0; j < s->classes; j++) row[j] = 0;
          row[labels[i]] = row[records.neighbour_class[k]] = 1;
          records.dominant[k]                              = labels[i];
        }
      }
      PetscCall(AckdSceneRenderMixed((uint64_t)s->seed, c->tag_scene, (uint64_t)(first + i), scene_class,
                                     c->variability, mixed, &c->sensor, S, S, images + i * sample));
    }
    PetscCall(PetscLogEventEnd(s->event_render, 0, 0, 0, 0));
    PetscCall(PetscLogEventBegin(s->event_write, 0, 0, 0, 0));
    PetscCall(
        AckdCollectionWriterWrite(writer, first, n, images, labels, multilabels, split + PetscMin(first, c->count)));
    PetscCall(PetscLogEventEnd(s->event_write, 0, 0, 0, 0));
    *progress += n;
    PetscCall(AckdProgressUpdate(bar, *progress));
    PetscCall(AckdStopRequested(s->comm, stopped));
  }
  if (*stopped) {
    PetscCall(AckdCollectionWriterDestroy(&writer));
    PetscCall(PetscFree2(records.neighbour_class, records.share));
    PetscCall(PetscFree(records.dominant));
    PetscCall(PetscFree(multilabels));
    PetscCall(PetscFree(images));
    PetscCall(PetscFree(split));
    PetscFunctionReturn(0);
  }
  PetscCall(AckdCollectionWriterFinish(writer));
  PetscCall(AckdCollectionWriterDestroy(&writer));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &flipped, 1, MPIU_INT, MPI_SUM, s->comm));
  hid_t group;
  AckdCallH5(group = H5Gopen2(file, c->name, H5P_DEFAULT), "opening /%s", c->name);
  PetscCall(AckdH5AttrWriteInt(group, "labels_flipped", flipped)); /* provenance: how noisy the labels are */
  if (records.share) PetscCall(write_neighbours(s, c, group, lo, hi, &records));
  H5Gclose(group);
  PetscCall(PetscFree2(records.neighbour_class, records.share));
  PetscCall(PetscFree(records.dominant));
  PetscCall(PetscFree(multilabels));
  PetscCall(PetscFree(images));
  PetscCall(PetscFree(split));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdSynthWrite(AckdSynth s, const char *path, PetscBool *stopped)
{
  PetscMPIInt  rank, size;
  Collection   ms, rgb;
  char         params[2048];
  PetscBool    current = PETSC_FALSE;
  hid_t        file;
  AckdProgress bar;
  PetscInt     done = 0, lo, hi, mine = 0;
  double       t0 = AckdTimeNow();

  PetscFunctionBeginUser;
  *stopped = PETSC_FALSE;
  if (path) PetscCall(PetscStrncpy(s->output, path, sizeof s->output));
  PetscCallMPI(MPI_Comm_rank(s->comm, &rank));
  PetscCallMPI(MPI_Comm_size(s->comm, &size));
  parameter_line(s, params, sizeof params);
  PetscCall(
      AckdDatasetOutputIsCurrent(s->comm, s->output, "synth_parameters", params, s->force, "-synth_force", &current));
  if (current) {
    PetscCall(AckdLogInfo(&s->log, "synth: '%s' is up to date (same parameters); nothing to do\n", s->output));
    PetscFunctionReturn(0);
  }

  PetscCall(collections_set_up(s, &ms, &rgb));
  PetscInt shared = 0;
  for (PetscInt j = 0; j < s->classes; j++) shared += rgb.world_class[j] < s->classes;
  PetscCall(AckdLogInfo(&s->log,
                        "synth: %" PetscInt_FMT " MS (%" PetscInt_FMT "x%" PetscInt_FMT "x%" PetscInt_FMT
                        ") + %" PetscInt_FMT " RGB (3x%" PetscInt_FMT "x%" PetscInt_FMT ") samples, %" PetscInt_FMT
                        " classes each (%" PetscInt_FMT " shared), seed %" PetscInt_FMT ", %d rank%s -> %s\n",
                        s->ms_count, s->bands, s->size, s->size, s->rgb_count, s->size, s->size, s->classes, shared,
                        s->seed, size, size > 1 ? "s" : "", s->output));

  /* Before the collective create: once the .part exists, every rank hears a stop request. */
  PetscCall(AckdStopRequestInstall());
  PetscCall(AckdH5FileCreatePartial(s->comm, s->output, &s->h5, &file));
  PetscCall(AckdDatasetWriteProvenance(s->comm, file, "synth"));
  PetscCall(AckdH5AttrWriteString(file, "synth_parameters", params));

  AckdDatasetPartition(s->ms_count, size, rank, &lo, &hi);
  mine += hi - lo;
  AckdDatasetPartition(s->rgb_count, size, rank, &lo, &hi);
  mine += hi - lo;
  PetscCall(AckdProgressBegin(&bar, &s->log, "synth", mine, "img"));
  PetscCall(write_collection(s, file, &ms, &bar, &done, stopped));
  if (!*stopped) PetscCall(write_collection(s, file, &rgb, &bar, &done, stopped));
  PetscCall(AckdProgressEnd(&bar));
  if (*stopped) {
    /* Rendering is cheap next to training: the next run renders again rather than resuming. */
    PetscCall(AckdH5FileDiscard(s->comm, &file, s->output));
    PetscCall(
        AckdLogInfo(&s->log, "synth: stopped by a signal; '%s' not written, run the same command again\n", s->output));
    PetscCall(collection_destroy(&ms, s->classes));
    PetscCall(collection_destroy(&rgb, s->classes));
    PetscFunctionReturn(0);
  }
  int *ms_to_rgb;
  PetscCall(PetscMalloc1(s->classes, &ms_to_rgb));
  AckdClassMapByName(s->classes, (const char *const *)ms.class_names, s->classes, (const char *const *)rgb.class_names,
                     ms_to_rgb);
  PetscCall(AckdDatasetWriteClassMap(s->comm, file, s->classes, s->classes, ms_to_rgb));
  PetscCall(PetscFree(ms_to_rgb));
  PetscCall(AckdH5FileCommit(s->comm, &file, s->output));
  double seconds = AckdTimeNow() - t0;
  PetscCall(AckdLogInfo(&s->log, "synth: wrote %s in %.2f s (%.0f samples/s)\n", s->output, seconds,
                        (double)(s->ms_count + s->rgb_count) / seconds));
  PetscCall(collection_destroy(&ms, s->classes));
  PetscCall(collection_destroy(&rgb, s->classes));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdSynthDestroy(AckdSynth *synth)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree(*synth));
  PetscFunctionReturn(0);
}
