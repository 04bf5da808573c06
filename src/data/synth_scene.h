/* The synthetic world behind `ackd synth`: land-cover classes, the spectra of
 * the materials they are made of, their spatial textures, and the two sensors
 * (multispectral and RGB) that image them. Internal to src/data. */
#ifndef ACKD_DATA_SYNTH_SCENE_H
#define ACKD_DATA_SYNTH_SCENE_H

#include <ackd/core.h>

#define ACKD_SENSOR_MAX_BANDS 32

typedef enum { ACKD_SENSOR_MULTISPECTRAL, ACKD_SENSOR_RGB } AckdSensorKind;

typedef struct {
  AckdSensorKind kind;
  PetscInt       channels;                             /* MS: bands; RGB: 3 */
  double         wavelength_nm[ACKD_SENSOR_MAX_BANDS]; /* band centres (RGB: the centres of R, G, B responses) */
  char           band_name[ACKD_SENSOR_MAX_BANDS][16];
  double         gsd;   /* ground distance per pixel, in MS pixels: MS 1, a finer RGB sensor < 1 */
  double         noise; /* additive Gaussian noise std, in output units */
  double         blur;  /* point-spread Gaussian sigma, in pixels */
} AckdSensor;

/* Multispectral sensor with `bands` bands: Sentinel-2-like band centres
 * (10 bands by default: B2-B8, B8A, B11, B12), values in reflectance units. */
PetscErrorCode AckdSceneSensorMultispectral(PetscInt bands, double noise, double blur, AckdSensor *sensor);
/* RGB camera: broad overlapping spectral responses, its own gain and gamma,
 * values in [0, 1] like an 8-bit image divided by 255. */
PetscErrorCode AckdSceneSensorRGB(double gsd, double noise, double blur, AckdSensor *sensor);

/* Classes 0..AckdSceneNamedClasses()-1 have hand-made recipes (AnnualCrop,
 * Forest, River, ...); higher class ids are procedural mixtures, so any
 * number of classes can be asked for. */
PetscInt AckdSceneNamedClasses(void);
void     AckdSceneClassName(PetscInt global_class, char *name, size_t len);

/* Renders one image, channels x height x width in C order. A pure function of
 * its arguments: (seed, tag, index) selects the scene's random layout and the
 * sensor's noise, so the same arguments give the same bits on any rank.
 * Callers keep (tag, index) unique per sample. `variability` in [0, 1] scales
 * intra-class variation of spectra, layout and illumination. */
PetscErrorCode AckdSceneRender(uint64_t seed, uint32_t tag, uint64_t index, PetscInt global_class, double variability,
                               const AckdSensor *sensor, PetscInt height, PetscInt width, float *image);

/* A second land cover in the scene: the tile straddles the edge between its
 * class's parcel and a neighbouring parcel of another class, which holds
 * `share` of the tile's area (0 <= share <= 1/2, so the label's cover still
 * dominates, as in single-label benchmarks labelled by their main cover). */
typedef struct {
  PetscInt global_class;
  double   share;
} AckdSceneNeighbour;

/* AckdSceneRender with a neighbouring cover across an edge of random
 * orientation, drawn after the scene's own layout and radiometry (the same
 * season for both covers). A NULL neighbour or a share of 0 gives
 * AckdSceneRender's bits. */
PetscErrorCode AckdSceneRenderMixed(uint64_t seed, uint32_t tag, uint64_t index, PetscInt global_class,
                                    double variability, const AckdSceneNeighbour *neighbour, const AckdSensor *sensor,
                                    PetscInt height, PetscInt width, float *image);

#endif
