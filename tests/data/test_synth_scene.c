/* Unit test of the synthetic world: determinism, physical plausibility of the
 * rendered spectra, learnability without triviality, argument checking, and
 * render speed. Exit status 0 on success; every failure prints its reason. */
#include "data/synth_scene.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
  EUROSAT_CLASSES  = 10,
  SCENES_PER_CLASS = 40,
  MS_SIDE          = 32,
  RGB_SIDE         = 64, /* gsd 0.5: the same ground as a 32x32 MS image */
  MAX_FEATURES     = 3 * ACKD_SENSOR_MAX_BANDS
};

static const uint64_t SEED = 20240611u;

static int failures = 0;

static void expect(int ok, const char *what)
{
  if (!ok) {
    printf("FAIL: %s\n", what);
    failures++;
  }
}

static PetscInt class_by_name(const char *wanted)
{
  char name[64];
  for (PetscInt k = 0; k < AckdSceneNamedClasses(); k++) {
    AckdSceneClassName(k, name, sizeof(name));
    if (!strcmp(name, wanted)) return k;
  }
  return -1;
}

static PetscInt band_by_name(const AckdSensor *s, const char *wanted)
{
  for (PetscInt c = 0; c < s->channels; c++)
    if (!strcmp(s->band_name[c], wanted)) return c;
  return -1;
}

/* ------------------------------------------------------------ determinism */

static PetscErrorCode test_determinism(void)
{
  AckdSensor ms;
  size_t     n = 10 * MS_SIDE * MS_SIDE;
  float     *a, *b;

  PetscFunctionBeginUser;
  PetscCall(AckdSceneSensorMultispectral(10, 0.01, 0.5, &ms));
  PetscCall(PetscMalloc2(n, &a, n, &b));
  for (PetscInt cls = 0; cls < AckdSceneNamedClasses() + 3; cls++) {
    PetscCall(AckdSceneRender(SEED, 7, 123, cls, 0.5, &ms, MS_SIDE, MS_SIDE, a));
    PetscCall(AckdSceneRender(SEED, 7, 123, cls, 0.5, &ms, MS_SIDE, MS_SIDE, b));
    expect(memcmp(a, b, n * sizeof(float)) == 0, "same arguments give identical bits");
    PetscCall(AckdSceneRender(SEED, 7, 124, cls, 0.5, &ms, MS_SIDE, MS_SIDE, b));
    expect(memcmp(a, b, n * sizeof(float)) != 0, "a different index gives a different image");
    PetscCall(AckdSceneRender(SEED, 8, 123, cls, 0.5, &ms, MS_SIDE, MS_SIDE, b));
    expect(memcmp(a, b, n * sizeof(float)) != 0, "a different tag gives a different image");
    PetscCall(AckdSceneRender(SEED + 1, 7, 123, cls, 0.5, &ms, MS_SIDE, MS_SIDE, b));
    expect(memcmp(a, b, n * sizeof(float)) != 0, "a different seed gives a different image");
  }
  PetscCall(PetscFree2(a, b));
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------ physics */

/* Mean spectrum and per-pixel medians of a class over a few noise-free scenes. */
typedef struct {
  double mean[ACKD_SENSOR_MAX_BANDS];
  double median_ndvi, median_nir;
  int    finite;
} ClassSpectrum;

static int compare_double(const void *x, const void *y)
{
  double a = *(const double *)x, b = *(const double *)y;
  return (a > b) - (a < b);
}

static PetscErrorCode class_spectrum(const AckdSensor *s, PetscInt cls, PetscInt red, PetscInt nir, ClassSpectrum *out)
{
  const PetscInt scenes = 8, plane = MS_SIDE * MS_SIDE;
  float         *img;
  double        *ndvi, *nirs;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(s->channels * plane, &img));
  PetscCall(PetscMalloc2(scenes * plane, &ndvi, scenes * plane, &nirs));
  memset(out, 0, sizeof(*out));
  out->finite = 1;
  for (PetscInt k = 0; k < scenes; k++) {
    PetscCall(AckdSceneRender(SEED, 1, (uint64_t)k, cls, 0.0, s, MS_SIDE, MS_SIDE, img));
    for (PetscInt c = 0; c < s->channels; c++)
      for (PetscInt q = 0; q < plane; q++) {
        if (!isfinite(img[c * plane + q])) out->finite = 0;
        out->mean[c] += img[c * plane + q] / (double)(scenes * plane);
      }
    if (red >= 0 && nir >= 0)
      for (PetscInt q = 0; q < plane; q++) {
        double r = img[red * plane + q], n = img[nir * plane + q];
        ndvi[k * plane + q] = (n - r) / (n + r);
        nirs[k * plane + q] = n;
      }
  }
  if (red >= 0 && nir >= 0) {
    qsort(ndvi, (size_t)(scenes * plane), sizeof(double), compare_double);
    qsort(nirs, (size_t)(scenes * plane), sizeof(double), compare_double);
    out->median_ndvi = ndvi[scenes * plane / 2];
    out->median_nir  = nirs[scenes * plane / 2];
  }
  PetscCall(PetscFree2(ndvi, nirs));
  PetscCall(PetscFree(img));
  PetscFunctionReturn(0);
}

static double mean_ndvi(const ClassSpectrum *s, PetscInt red, PetscInt nir)
{
  return (s->mean[nir] - s->mean[red]) / (s->mean[nir] + s->mean[red]);
}

static PetscErrorCode test_physics(void)
{
  AckdSensor    ms, rgb;
  PetscInt      red, nir;
  ClassSpectrum spec;
  char          line[256];

  PetscFunctionBeginUser;
  PetscCall(AckdSceneSensorMultispectral(10, 0.0, 0.0, &ms));
  PetscCall(AckdSceneSensorRGB(0.5, 0.0, 0.0, &rgb));
  red = band_by_name(&ms, "B4");
  nir = band_by_name(&ms, "B8");
  expect(red >= 0 && nir >= 0, "the default MS sensor has B4 and B8");
  expect(ms.channels == 10 && !strcmp(ms.band_name[0], "B2") && !strcmp(ms.band_name[9], "B12"),
         "the default MS sensor runs B2..B12 in wavelength order");
  if (red < 0 || nir < 0) PetscFunctionReturn(0);

  const char *vegetation[] = {"Forest", "Pasture"};
  for (int k = 0; k < 2; k++) {
    PetscCall(class_spectrum(&ms, class_by_name(vegetation[k]), red, nir, &spec));
    double v = mean_ndvi(&spec, red, nir);
    printf("physics: %-12s NDVI %.3f  B4 %.3f  B8 %.3f  B11 %.3f\n", vegetation[k], v, spec.mean[red], spec.mean[nir],
           spec.mean[band_by_name(&ms, "B11")]);
    PetscCall(PetscSNPrintf(line, sizeof(line), "%s NDVI %.3f > 0.5", vegetation[k], v));
    expect(v > 0.5, line);
    expect(spec.finite, "vegetation values are finite");
    expect(spec.mean[band_by_name(&ms, "B11")] < spec.mean[nir], "vegetation is darker in SWIR than in NIR");
  }

  /* A lake image may have a vegetated shore, so the water itself is judged on
   * its typical pixel, and the image as a whole on its NIR mean. */
  PetscCall(class_spectrum(&ms, class_by_name("SeaLake"), red, nir, &spec));
  printf("physics: SeaLake      NDVI %.3f (median pixel %.3f)  B8 mean %.4f (median pixel %.4f)\n",
         mean_ndvi(&spec, red, nir), spec.median_ndvi, spec.mean[nir], spec.median_nir);
  expect(spec.median_ndvi < 0.0, "SeaLake typical pixel NDVI < 0");
  expect(spec.mean[nir] < 0.05, "SeaLake mean B8 < 0.05");
  expect(spec.median_nir < 0.02, "SeaLake typical pixel B8 < 0.02");
  expect(spec.finite, "SeaLake values are finite");

  const char *built[] = {"BareSoil", "Industrial"};
  for (int k = 0; k < 2; k++) {
    PetscCall(class_spectrum(&ms, class_by_name(built[k]), red, nir, &spec));
    double v = mean_ndvi(&spec, red, nir);
    printf("physics: %-12s NDVI %.3f\n", built[k], v);
    PetscCall(PetscSNPrintf(line, sizeof(line), "%s NDVI %.3f in (-0.1, 0.3)", built[k], v));
    expect(v > -0.1 && v < 0.3, line);
    expect(spec.finite, "bare/built-up values are finite");
  }

  /* RGB: values in [0, 1] for every class, and a forest looks green. */
  {
    const PetscInt plane = RGB_SIDE * RGB_SIDE;
    float         *img;
    int            in_range = 1;
    PetscCall(PetscMalloc1(3 * plane, &img));
    for (PetscInt cls = 0; cls < AckdSceneNamedClasses() + 4; cls++) {
      PetscCall(AckdSceneRender(SEED, 2, (uint64_t)cls, cls, 1.0, &rgb, RGB_SIDE, RGB_SIDE, img));
      for (PetscInt q = 0; q < 3 * plane; q++)
        if (!(img[q] >= 0.0f && img[q] <= 1.0f)) in_range = 0;
    }
    expect(in_range, "all RGB values are finite and in [0, 1]");
    double mean[3] = {0, 0, 0};
    for (PetscInt k = 0; k < 8; k++) {
      PetscCall(AckdSceneRender(SEED, 2, (uint64_t)k, class_by_name("Forest"), 0.0, &rgb, RGB_SIDE, RGB_SIDE, img));
      for (int c = 0; c < 3; c++)
        for (PetscInt q = 0; q < plane; q++) mean[c] += img[c * plane + q] / (8.0 * plane);
    }
    printf("physics: Forest RGB mean R %.3f G %.3f B %.3f\n", mean[0], mean[1], mean[2]);
    expect(mean[1] > mean[0] && mean[1] > mean[2], "Forest RGB mean has G > R and G > B");
    PetscCall(PetscFree(img));
  }
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------ learnability */

/* Per channel: mean, standard deviation, mean gradient magnitude. */
static void image_features(const float *img, PetscInt channels, PetscInt side, double *f)
{
  PetscInt plane = side * side;
  for (PetscInt c = 0; c < channels; c++) {
    const float *p   = img + c * plane;
    double       sum = 0, sum2 = 0, grad = 0;
    for (PetscInt q = 0; q < plane; q++) {
      sum += p[q];
      sum2 += (double)p[q] * p[q];
    }
    for (PetscInt i = 0; i + 1 < side; i++)
      for (PetscInt j = 0; j + 1 < side; j++) {
        double gx = p[i * side + j + 1] - p[i * side + j], gy = p[(i + 1) * side + j] - p[i * side + j];
        grad += sqrt(gx * gx + gy * gy);
      }
    double mean         = sum / plane;
    f[c]                = mean;
    f[channels + c]     = sqrt(fmax(0.0, sum2 / plane - mean * mean));
    f[2 * channels + c] = grad / ((side - 1) * (side - 1));
  }
}

/* Leave-one-out nearest class centroid on standardised features. */
static double nearest_centroid_accuracy(double *x, PetscInt n, PetscInt dim, const PetscInt *label, PetscInt classes,
                                        PetscInt *confusion)
{
  double   mu[MAX_FEATURES] = {0}, sd[MAX_FEATURES] = {0};
  double   centroid[EUROSAT_CLASSES][MAX_FEATURES] = {{0}};
  PetscInt count[EUROSAT_CLASSES] = {0}, correct = 0;

  for (PetscInt i = 0; i < n; i++)
    for (PetscInt d = 0; d < dim; d++) mu[d] += x[i * dim + d] / n;
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt d = 0; d < dim; d++) sd[d] += (x[i * dim + d] - mu[d]) * (x[i * dim + d] - mu[d]) / n;
  for (PetscInt d = 0; d < dim; d++) sd[d] = sqrt(sd[d]) + 1e-12;
  for (PetscInt i = 0; i < n; i++) {
    for (PetscInt d = 0; d < dim; d++) x[i * dim + d] = (x[i * dim + d] - mu[d]) / sd[d];
    for (PetscInt d = 0; d < dim; d++) centroid[label[i]][d] += x[i * dim + d];
    count[label[i]]++;
  }
  for (PetscInt i = 0; i < n; i++) {
    PetscInt best    = -1;
    double   best_d2 = INFINITY;
    for (PetscInt k = 0; k < classes; k++) {
      double d2 = 0;
      for (PetscInt d = 0; d < dim; d++) {
        double c = k == label[i] ? (centroid[k][d] - x[i * dim + d]) / (count[k] - 1) : centroid[k][d] / count[k];
        d2 += (x[i * dim + d] - c) * (x[i * dim + d] - c);
      }
      if (d2 < best_d2) best_d2 = d2, best = k;
    }
    confusion[label[i] * classes + best]++;
    correct += best == label[i];
  }
  return (double)correct / n;
}

static PetscErrorCode learnability(const AckdSensor *s, PetscInt side, uint32_t tag, double *accuracy,
                                   PetscInt *confusion)
{
  PetscInt  n = EUROSAT_CLASSES * SCENES_PER_CLASS, dim = 3 * s->channels;
  float    *img;
  double   *x;
  PetscInt *label;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(s->channels * side * side, &img));
  PetscCall(PetscMalloc2(n * dim, &x, n, &label));
  for (PetscInt i = 0; i < n; i++) {
    label[i] = i % EUROSAT_CLASSES;
    PetscCall(AckdSceneRender(SEED, tag, (uint64_t)i, label[i], 0.5, s, side, side, img));
    image_features(img, s->channels, side, x + i * dim);
  }
  *accuracy = nearest_centroid_accuracy(x, n, dim, label, EUROSAT_CLASSES, confusion);
  PetscCall(PetscFree2(x, label));
  PetscCall(PetscFree(img));
  PetscFunctionReturn(0);
}

static void print_confusion(const char *title, const PetscInt *confusion)
{
  char name[64];
  printf("%s confusion (rows: true class, columns: predicted)\n", title);
  for (PetscInt k = 0; k < EUROSAT_CLASSES; k++) {
    AckdSceneClassName(k, name, sizeof(name));
    printf("  %-21s", name);
    for (PetscInt j = 0; j < EUROSAT_CLASSES; j++) printf(" %3" PetscInt_FMT, confusion[k * EUROSAT_CLASSES + j]);
    printf("\n");
  }
}

static void print_close_pairs(const char *title, const PetscInt *confusion)
{
  const char *pairs[][2] = {
      {"Pasture", "HerbaceousVegetation"},
      {"HerbaceousVegetation", "Forest"},
      {"Pasture", "Forest"},
      {"Residential", "Industrial"},
      {"River", "SeaLake"},
      {"AnnualCrop", "PermanentCrop"},
  };
  for (size_t k = 0; k < sizeof(pairs) / sizeof(pairs[0]); k++) {
    PetscInt a = class_by_name(pairs[k][0]), b = class_by_name(pairs[k][1]);
    printf("%s close pair %s <-> %s: %" PetscInt_FMT " + %" PetscInt_FMT " confused of %d\n", title, pairs[k][0],
           pairs[k][1], confusion[a * EUROSAT_CLASSES + b], confusion[b * EUROSAT_CLASSES + a], 2 * SCENES_PER_CLASS);
  }
}

static PetscErrorCode test_learnability(void)
{
  AckdSensor ms, rgb;
  double     ms_accuracy, rgb_accuracy;
  PetscInt   ms_confusion[EUROSAT_CLASSES * EUROSAT_CLASSES]  = {0};
  PetscInt   rgb_confusion[EUROSAT_CLASSES * EUROSAT_CLASSES] = {0};
  char       line[128];

  PetscFunctionBeginUser;
  PetscCall(AckdSceneSensorMultispectral(10, 0.01, 0.5, &ms));
  PetscCall(AckdSceneSensorRGB(0.5, 0.02, 0.7, &rgb));
  PetscCall(learnability(&ms, MS_SIDE, 11, &ms_accuracy, ms_confusion));
  PetscCall(learnability(&rgb, RGB_SIDE, 12, &rgb_accuracy, rgb_confusion));
  printf("learnability: nearest-centroid LOO accuracy, %d classes x %d scenes: MS %.3f, RGB %.3f (chance 0.100)\n",
         EUROSAT_CLASSES, SCENES_PER_CLASS, ms_accuracy, rgb_accuracy);
  print_confusion("MS", ms_confusion);
  print_close_pairs("MS", ms_confusion);
  print_confusion("RGB", rgb_confusion);
  print_close_pairs("RGB", rgb_confusion);
  PetscCall(PetscSNPrintf(line, sizeof(line), "MS nearest-centroid accuracy %.3f >= 0.6", ms_accuracy));
  expect(ms_accuracy >= 0.6, line);
  PetscCall(PetscSNPrintf(line, sizeof(line), "MS nearest-centroid accuracy %.3f < 0.98 (not trivial)", ms_accuracy));
  expect(ms_accuracy < 0.98, line);
  PetscCall(PetscSNPrintf(line, sizeof(line), "RGB nearest-centroid accuracy %.3f >= 0.4", rgb_accuracy));
  expect(rgb_accuracy >= 0.4, line);
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------ a neighbouring cover */

/* Without a neighbour, or with a share of 0, the mixed render is the plain one
 * to the bit; with one, the pixels that differ from the scene's own cover
 * (a sensor without noise or blur, and a neighbour made of other materials)
 * cover the neighbour's share of the tile on average over scenes: the edge
 * wanders about the line that cuts that share (edge_offset's closed form) by
 * at most 6% of the tile's side either way, and the soft edge, 0.7 MS pixels
 * wide, adds about 1.1% of a 32 x 32 tile (half its width along a side). */
static PetscErrorCode test_neighbour(void)
{
  const PetscInt     scenes = 200, forest = class_by_name("Forest"), sea = class_by_name("SeaLake");
  const double       shares[] = {0.1, 0.3, 0.5};
  AckdSensor         ms, sharp, rgb;
  PetscInt           plane = MS_SIDE * MS_SIDE;
  float             *own, *mixed;
  AckdSceneNeighbour none = {.global_class = sea, .share = 0.0};

  PetscFunctionBeginUser;
  PetscCall(AckdSceneSensorMultispectral(10, 0.01, 0.5, &ms));
  PetscCall(AckdSceneSensorMultispectral(10, 0.0, 0.0, &sharp));
  PetscCall(AckdSceneSensorRGB(0.6, 0.0, 0.0, &rgb));
  PetscCall(PetscMalloc2(10 * plane, &own, 10 * plane, &mixed));
  PetscCall(AckdSceneRender(SEED, 9, 5, forest, 0.5, &ms, MS_SIDE, MS_SIDE, own));
  PetscCall(AckdSceneRenderMixed(SEED, 9, 5, forest, 0.5, NULL, &ms, MS_SIDE, MS_SIDE, mixed));
  expect(!memcmp(own, mixed, sizeof(float) * 10 * plane), "no neighbour: the plain render's bits");
  PetscCall(AckdSceneRenderMixed(SEED, 9, 5, forest, 0.5, &none, &ms, MS_SIDE, MS_SIDE, mixed));
  expect(!memcmp(own, mixed, sizeof(float) * 10 * plane), "a neighbour's share of 0: the plain render's bits");

  const AckdSensor *sensors[2] = {&sharp, &rgb};
  for (int k = 0; k < 2; k++) {
    const AckdSensor *sensor = sensors[k];
    for (size_t q = 0; q < sizeof shares / sizeof shares[0]; q++) {
      AckdSceneNeighbour next = {.global_class = sea, .share = shares[q]};
      double             sum = 0.0, largest = 0.0;
      for (PetscInt i = 0; i < scenes; i++) {
        PetscInt changed = 0;
        PetscCall(AckdSceneRender(SEED, 10, (uint64_t)i, forest, 0.5, sensor, MS_SIDE, MS_SIDE, own));
        PetscCall(AckdSceneRenderMixed(SEED, 10, (uint64_t)i, forest, 0.5, &next, sensor, MS_SIDE, MS_SIDE, mixed));
        for (PetscInt p = 0; p < plane; p++) {
          PetscBool differs = PETSC_FALSE;
          for (PetscInt c = 0; c < sensor->channels; c++) differs |= own[c * plane + p] != mixed[c * plane + p];
          changed += differs;
        }
        sum += (double)changed / plane;
        largest = fmax(largest, (double)changed / plane);
      }
      char what[160];
      snprintf(what, sizeof what, "%s, share %.1f: the neighbour holds %.3f of the tile on average (%.3f..%.3f)",
               k ? "RGB" : "MS", shares[q], sum / scenes, shares[q] - 0.02, shares[q] + 0.04);
      expect(sum / scenes > shares[q] - 0.02 && sum / scenes < shares[q] + 0.04, what);
      snprintf(what, sizeof what, "%s, share %.1f: no tile's neighbour holds more than %.2f (largest %.3f)",
               k ? "RGB" : "MS", shares[q], shares[q] + 0.12, largest);
      expect(largest < shares[q] + 0.12, what);
    }
  }

  PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
  AckdSceneNeighbour over = {.global_class = sea, .share = 0.6}, nan = {.global_class = sea, .share = NAN};
  expect(AckdSceneRenderMixed(SEED, 0, 0, forest, 0.5, &over, &ms, MS_SIDE, MS_SIDE, own) != 0,
         "a neighbour's share of 0.6 is rejected: the label's cover must dominate");
  expect(AckdSceneRenderMixed(SEED, 0, 0, forest, 0.5, &nan, &ms, MS_SIDE, MS_SIDE, own) != 0,
         "a NaN share is rejected");
  PetscCall(PetscPopErrorHandler());
  PetscCall(PetscFree2(own, mixed));
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------ bad arguments */

static PetscErrorCode test_bad_arguments(void)
{
  AckdSensor ms;
  float      img[10 * 4 * 4];

  PetscFunctionBeginUser;
  PetscCall(AckdSceneSensorMultispectral(10, 0.0, 0.0, &ms));
  PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
  {
    AckdSensor bad;
    expect(AckdSceneSensorMultispectral(0, 0.0, 0.0, &bad) != 0, "0 bands is rejected");
    expect(AckdSceneSensorMultispectral(33, 0.0, 0.0, &bad) != 0, "33 bands is rejected");
    expect(AckdSceneSensorMultispectral(10, -1.0, 0.0, &bad) != 0, "negative noise is rejected");
    expect(AckdSceneSensorRGB(0.0, 0.0, 0.0, &bad) != 0, "gsd 0 is rejected");
    expect(AckdSceneRender(SEED, 0, 0, 0, 0.5, &ms, 0, 4, img) != 0, "height 0 is rejected");
    expect(AckdSceneRender(SEED, 0, 0, -1, 0.5, &ms, 4, 4, img) != 0, "class -1 is rejected");
    expect(AckdSceneRender(SEED, 0, 0, 0, 1.5, &ms, 4, 4, img) != 0, "variability 1.5 is rejected");
  }
  PetscCall(PetscPopErrorHandler());
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------ sensors */

static PetscErrorCode test_sensor_bands(void)
{
  AckdSensor s;

  PetscFunctionBeginUser;
  PetscCall(AckdSceneSensorMultispectral(13, 0.0, 0.0, &s));
  expect(!strcmp(s.band_name[0], "B1") && !strcmp(s.band_name[12], "B12"), "13 bands are B1..B12 incl. B8A");
  PetscCall(AckdSceneSensorMultispectral(3, 0.0, 0.0, &s));
  expect(!strcmp(s.band_name[0], "B2") && !strcmp(s.band_name[2], "B4"), "3 bands are the visible B2, B3, B4");
  PetscCall(AckdSceneSensorMultispectral(14, 0.0, 0.0, &s));
  expect(!strcmp(s.band_name[13], "b14") && fabs(s.wavelength_nm[0] - 443.0) < 1e-9 &&
             fabs(s.wavelength_nm[13] - 2190.0) < 1e-9,
         "14 bands are evenly spaced 443..2190 nm named b01..b14");
  for (PetscInt c = 1; c < s.channels; c++) expect(s.wavelength_nm[c] > s.wavelength_nm[c - 1], "bands ascend");
  char name[64];
  AckdSceneClassName(AckdSceneNamedClasses() + 5, name, sizeof(name));
  PetscCall(PetscSNPrintf(name + 40, 20, "synthetic_%" PetscInt_FMT, AckdSceneNamedClasses() + 5));
  expect(!strcmp(name, name + 40), "procedural classes are named synthetic_<id>");
  expect(AckdSceneNamedClasses() >= 14, "at least 14 hand-made classes");
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------ timing */

static PetscErrorCode time_render(PetscInt bands, PetscInt side, PetscInt repeats)
{
  AckdSensor ms;
  float     *img;
  double     start;

  PetscFunctionBeginUser;
  PetscCall(AckdSceneSensorMultispectral(bands, 0.01, 0.5, &ms));
  PetscCall(PetscMalloc1(bands * side * side, &img));
  start = MPI_Wtime();
  for (PetscInt k = 0; k < repeats; k++)
    PetscCall(AckdSceneRender(SEED, 3, (uint64_t)k, k % AckdSceneNamedClasses(), 0.5, &ms, side, side, img));
  printf("timing: %" PetscInt_FMT "x%" PetscInt_FMT "x%" PetscInt_FMT " MS render %.3f ms per image\n", side, side,
         bands, 1e3 * (MPI_Wtime() - start) / repeats);
  PetscCall(PetscFree(img));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  PetscCall(test_determinism());
  PetscCall(test_sensor_bands());
  PetscCall(test_physics());
  PetscCall(test_learnability());
  PetscCall(test_bad_arguments());
  PetscCall(test_neighbour());
  PetscCall(time_render(10, 32, 2000));
  PetscCall(time_render(13, 64, 500));
  if (failures)
    printf("test_synth_scene: %d check(s) FAILED\n", failures);
  else
    printf("test_synth_scene: all checks passed\n");
  PetscCall(PetscFinalize());
  return failures ? 1 : 0;
}
