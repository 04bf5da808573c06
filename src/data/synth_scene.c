/* The synthetic world behind `ackd synth`.
 *
 * A scene is a continuous field over ground coordinates (u, v), measured in
 * multispectral pixels: a texture says how much of each of up to four
 * materials covers every ground point, and each material has a smooth
 * reflectance spectrum. A sensor samples that field at its own pixel centres
 * (so a finer RGB camera sees the same ground at a higher resolution), reads
 * the spectrum through its own spectral response, blurs, and adds noise.
 *
 * Everything random in one render comes from one Philox stream, drawn in a
 * fixed order: first the scene (layout, then material spectra, then
 * illumination), which does not depend on the sensor, then the sensor noise.
 * Hence the same (seed, tag, index, class) seen by the MS and by the RGB
 * sensor is the same piece of ground.
 */
#include "data/synth_scene.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum {
  SLOTS = 4 /* materials per class recipe */
};

static const double   MAX_BLUR_SIGMA = 16.0; /* pixels; bounds the kernel */
static const double   MAX_RGB_GSD    = 64.0; /* MS pixels per RGB pixel, far beyond any real pairing */
static const PetscInt MAX_IMAGE_SIDE = 8192; /* pixels; guards against a garbage size */

/* ================================================================ materials */

typedef enum {
  MAT_GRASS,
  MAT_CROP,
  MAT_FOREST,
  MAT_DRY_VEGETATION,
  MAT_WATER,
  MAT_TURBID_WATER,
  MAT_SOIL,
  MAT_SAND,
  MAT_CONCRETE,
  MAT_ASPHALT,
  MAT_ROOF_TILE,
  MAT_METAL_ROOF,
  MAT_SNOW,
  MAT_ROCK,
  MAT_COUNT
} MaterialId;

static double gauss(double x, double mu, double sigma)
{
  double t = (x - mu) / sigma;
  return exp(-0.5 * t * t);
}

static double logistic(double x, double mu, double width)
{
  return 1.0 / (1.0 + exp(-(x - mu) / width));
}

/* 0 at 350 nm rising to 1 deep in the SWIR: the iron-oxide and scattering
 * slope that makes soils and sands brighter towards long wavelengths. */
static double mineral_rise(double lambda)
{
  return 1.0 - exp(-(lambda - 350.0) / 700.0);
}

/* Green leaves: chlorophyll keeps the visible dark except a small green bump
 * and a red dip; leaf structure makes the NIR bright past the red edge; leaf
 * water pulls the SWIR (1610, 2190 nm) back down. */
static double green_vegetation(double lambda, double base, double green, double nir, double swir_loss)
{
  double visible = base + green * gauss(lambda, 555.0, 35.0) - 0.4 * base * gauss(lambda, 675.0, 25.0);
  double edge    = logistic(lambda, 718.0, 14.0);
  double water   = 1.0 - swir_loss * logistic(lambda, 1500.0, 250.0);
  return (visible * (1.0 - edge) + nir * edge) * water;
}

/* Water: a little blue from the water body, nearly nothing past 700 nm where
 * water absorbs; suspended sediment adds a broad green-red hump. */
static double water_body(double lambda, double turbidity)
{
  double clear    = (0.005 + 0.05 * gauss(lambda, 470.0, 80.0)) * (1.0 - 0.97 * logistic(lambda, 700.0, 25.0)) + 0.002;
  double sediment = 0.07 * gauss(lambda, 590.0, 80.0) * (1.0 - 0.95 * logistic(lambda, 760.0, 40.0));
  return clear + turbidity * sediment;
}

/* Reflectance in [0, 1] of material m at wavelength lambda (nm). `condition`
 * in [-1, 1] is the material's natural state: vigour for vegetation,
 * turbidity for water, dryness for soil, weathering for man-made surfaces. */
static double material_reflectance(MaterialId m, double condition, double lambda)
{
  double c = condition;
  double t = (lambda - 400.0) / 1800.0; /* 0 at 400 nm, 1 at 2200 nm */
  switch (m) {
  case MAT_GRASS:
    return green_vegetation(lambda, 0.035 * (1 - 0.15 * c), 0.05 * (1 + 0.25 * c), 0.40 * (1 + 0.12 * c), 0.75);
  case MAT_CROP:
    return green_vegetation(lambda, 0.030 * (1 - 0.15 * c), 0.06 * (1 + 0.25 * c), 0.50 * (1 + 0.12 * c), 0.78);
  case MAT_FOREST:
    return green_vegetation(lambda, 0.022 * (1 - 0.15 * c), 0.028 * (1 + 0.25 * c), 0.30 * (1 + 0.12 * c), 0.82);
  case MAT_DRY_VEGETATION: /* no chlorophyll: a rising visible, a weak edge, cellulose dip near 2100 nm */
    return (0.07 + 0.25 * logistic(lambda, 650.0, 90.0) + 0.05 * logistic(lambda, 718.0, 14.0)) *
           (1.0 - 0.25 * logistic(lambda, 1950.0, 120.0)) * (1 + 0.10 * c);
  case MAT_WATER:
    return water_body(lambda, 0.15 * (1 + c));
  case MAT_TURBID_WATER:
    return water_body(lambda, 0.8 * (1 + 0.5 * c));
  case MAT_SOIL: /* clay absorption near 2200 nm; wet soil (c < 0) is darker */
    return (0.06 + 0.28 * mineral_rise(lambda)) * (1.0 - 0.15 * gauss(lambda, 2200.0, 60.0)) * (1 + 0.2 * c);
  case MAT_SAND:
    return (0.16 + 0.34 * mineral_rise(lambda)) * (1.0 - 0.08 * gauss(lambda, 2200.0, 60.0)) * (1 + 0.1 * c);
  case MAT_CONCRETE:
    return (0.20 + 0.06 * logistic(lambda, 520.0, 60.0) + 0.02 * t) * (1 + 0.12 * c);
  case MAT_ASPHALT: /* fresh asphalt is near black; ageing (c > 0) greys it */
    return (0.05 + 0.05 * t) * (1 + 0.3 * c);
  case MAT_ROOF_TILE: /* fired clay: iron oxide makes it red */
    return (0.07 + 0.22 * logistic(lambda, 590.0, 22.0) + 0.08 * logistic(lambda, 1200.0, 200.0)) * (1 + 0.1 * c);
  case MAT_METAL_ROOF:
    return (0.40 - 0.04 * t) * (1 + 0.1 * c);
  case MAT_SNOW: /* bright and flat in the visible, ice absorbs strongly in the SWIR */
    return 0.95 * (1.0 - 0.3 * logistic(lambda, 1000.0, 120.0)) * (1.0 - 0.93 * logistic(lambda, 1400.0, 60.0)) *
           (1 + 0.06 * c);
  case MAT_ROCK:
    return (0.10 + 0.08 * mineral_rise(lambda)) * (1 + 0.2 * c);
  case MAT_COUNT:
    break;
  }
  return 0.0;
}

/* ================================================================ sensors */

typedef struct {
  const char *name;
  double      centre_nm;
} SpectralBand;

/* Sentinel-2 MSI, in wavelength order. */
static const SpectralBand SENTINEL2[13] = {
    {"B1", 443}, {"B2", 490},  {"B3", 560}, {"B4", 665},   {"B5", 705},   {"B6", 740},   {"B7", 783},
    {"B8", 842}, {"B8A", 865}, {"B9", 945}, {"B10", 1375}, {"B11", 1610}, {"B12", 2190},
};

/* Which Sentinel-2 bands a sensor with fewer than 13 keeps, most useful
 * first: visible, NIR, SWIR, red edge, then the atmospheric bands B1, B9 and
 * B10 that land-cover work usually drops. The first 10 are the default set. */
static const int SENTINEL2_PRIORITY[13] = {3, 2, 1, 7, 11, 12, 4, 5, 6, 8, 0, 9, 10};

static const double SPECTRAL_FIRST_NM = 443.0, SPECTRAL_LAST_NM = 2190.0;

/* RGB camera: broad overlapping Gaussian responses (R, G, B), integrated on a
 * fixed grid; then exposure, white balance and display gamma. */
static const double RGB_CENTRE_NM[3]     = {610.0, 540.0, 465.0};
static const double RGB_WIDTH_NM[3]      = {35.0, 40.0, 35.0};
static const double RGB_WHITE_BALANCE[3] = {1.0, 1.0, 1.08};
static const double RGB_EXPOSURE         = 2.2;
static const double RGB_GAMMA            = 1.0 / 2.2;
static const double RGB_SATURATION       = 0.6;
static const double RGB_GRID_FIRST_NM = 380.0, RGB_GRID_STEP_NM = 5.0;
enum {
  RGB_GRID_POINTS = 77 /* 380..760 nm: the responses are negligible outside */
};

PetscErrorCode AckdSceneSensorMultispectral(PetscInt bands, double noise, double blur, AckdSensor *sensor)
{
  PetscFunctionBeginUser;
  PetscCheck(sensor, PETSC_COMM_SELF, PETSC_ERR_ARG_NULL, "multispectral sensor: output pointer is NULL");
  PetscCheck(bands >= 1 && bands <= ACKD_SENSOR_MAX_BANDS, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "multispectral sensor: %" PetscInt_FMT " bands requested; valid range is 1..%d", bands,
             ACKD_SENSOR_MAX_BANDS);
  PetscCheck(isfinite(noise) && noise >= 0.0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "multispectral sensor: noise %g is not a valid standard deviation; valid range is [0, inf)", noise);
  PetscCheck(isfinite(blur) && blur >= 0.0 && blur <= MAX_BLUR_SIGMA, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "multispectral sensor: blur sigma %g px; valid range is [0, %g]", blur, MAX_BLUR_SIGMA);
  PetscCall(PetscMemzero(sensor, sizeof(*sensor)));
  sensor->kind     = ACKD_SENSOR_MULTISPECTRAL;
  sensor->channels = bands;
  sensor->gsd      = 1.0;
  sensor->noise    = noise;
  sensor->blur     = blur;
  if (bands <= 13) {
    PetscInt k = 0;
    for (int b = 0; b < 13; b++) {
      int rank = 0;
      while (SENTINEL2_PRIORITY[rank] != b) rank++;
      if (rank >= bands) continue;
      sensor->wavelength_nm[k] = SENTINEL2[b].centre_nm;
      PetscCall(PetscStrncpy(sensor->band_name[k], SENTINEL2[b].name, sizeof(sensor->band_name[k])));
      k++;
    }
  } else { /* hyperspectral-ish sensors such as Tiangong-2: evenly spaced over the S2 range */
    for (PetscInt k = 0; k < bands; k++) {
      sensor->wavelength_nm[k] = SPECTRAL_FIRST_NM + (SPECTRAL_LAST_NM - SPECTRAL_FIRST_NM) * k / (bands - 1);
      PetscCall(PetscSNPrintf(sensor->band_name[k], sizeof(sensor->band_name[k]), "b%02d", (int)(k + 1)));
    }
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdSceneSensorRGB(double gsd, double noise, double blur, AckdSensor *sensor)
{
  static const char *const names[3] = {"R", "G", "B"};

  PetscFunctionBeginUser;
  PetscCheck(sensor, PETSC_COMM_SELF, PETSC_ERR_ARG_NULL, "RGB sensor: output pointer is NULL");
  PetscCheck(isfinite(gsd) && gsd > 0.0 && gsd <= MAX_RGB_GSD, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "RGB sensor: gsd %g (in MS pixels); valid range is (0, %g]", gsd, MAX_RGB_GSD);
  PetscCheck(isfinite(noise) && noise >= 0.0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "RGB sensor: noise %g is not a valid standard deviation; valid range is [0, inf)", noise);
  PetscCheck(isfinite(blur) && blur >= 0.0 && blur <= MAX_BLUR_SIGMA, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "RGB sensor: blur sigma %g px; valid range is [0, %g]", blur, MAX_BLUR_SIGMA);
  PetscCall(PetscMemzero(sensor, sizeof(*sensor)));
  sensor->kind     = ACKD_SENSOR_RGB;
  sensor->channels = 3;
  sensor->gsd      = gsd;
  sensor->noise    = noise;
  sensor->blur     = blur;
  for (int c = 0; c < 3; c++) {
    sensor->wavelength_nm[c] = RGB_CENTRE_NM[c];
    PetscCall(PetscStrncpy(sensor->band_name[c], names[c], sizeof(sensor->band_name[c])));
  }
  PetscFunctionReturn(0);
}

/* What channel c of the sensor reads from a material: the spectrum at the band
 * centre for the MS sensor, the response-weighted mean for the RGB camera. */
static double sensor_channel_reflectance(const AckdSensor *sensor, PetscInt c, MaterialId m, double condition)
{
  if (sensor->kind == ACKD_SENSOR_MULTISPECTRAL) return material_reflectance(m, condition, sensor->wavelength_nm[c]);
  double sum = 0.0, weight = 0.0;
  for (int k = 0; k < RGB_GRID_POINTS; k++) {
    double lambda = RGB_GRID_FIRST_NM + RGB_GRID_STEP_NM * k;
    double s      = gauss(lambda, RGB_CENTRE_NM[c], RGB_WIDTH_NM[c]);
    sum += s * material_reflectance(m, condition, lambda);
    weight += s;
  }
  return sum / weight;
}

/* ================================================================ noise fields */

static double clamp01(double x)
{
  return x < 0.0 ? 0.0 : (x > 1.0 ? 1.0 : x);
}

static double smooth01(double t)
{
  t = clamp01(t);
  return t * t * (3.0 - 2.0 * t);
}

/* 0 well below `edge`, 1 well above, with a smooth transition `width` wide:
 * every boundary in the world is soft, so textures stay continuous. */
static double step_up(double x, double edge, double width)
{
  return smooth01((x - edge) / width + 0.5);
}

/* A stateless integer hash of a lattice point; the lattices of the value
 * noise and of the cellular patterns hang off it. */
static uint32_t lattice_hash(int64_t i, int64_t j, uint32_t seed)
{
  uint32_t h = seed ^ ((uint32_t)i * 0x8da6b343u) ^ ((uint32_t)j * 0xd8163841u) ^ (uint32_t)((uint64_t)i >> 32);
  h ^= h >> 16;
  h *= 0x7feb352du;
  h ^= h >> 15;
  h *= 0x846ca68bu;
  h ^= h >> 16;
  return h;
}

static double hash_unit(uint32_t h)
{
  return h * 0x1.0p-32;
}

static double value_noise(double x, double y, uint32_t seed)
{
  double  fx = floor(x), fy = floor(y);
  int64_t ix = (int64_t)fx, iy = (int64_t)fy;
  double  tx = smooth01(x - fx), ty = smooth01(y - fy);
  double  v00 = hash_unit(lattice_hash(ix, iy, seed)), v10 = hash_unit(lattice_hash(ix + 1, iy, seed));
  double  v01 = hash_unit(lattice_hash(ix, iy + 1, seed)), v11 = hash_unit(lattice_hash(ix + 1, iy + 1, seed));
  double  bottom = v00 + (v10 - v00) * tx, top = v01 + (v11 - v01) * tx;
  return bottom + (top - bottom) * ty;
}

/* Value noise summed over octaves, in [0, 1] with mean 1/2. */
static double fractal_noise(double x, double y, uint32_t seed, int octaves)
{
  double sum = 0.0, norm = 0.0, amplitude = 1.0, frequency = 1.0;
  for (int o = 0; o < octaves; o++) {
    sum += amplitude * value_noise(x * frequency, y * frequency, seed + 0x9E3779B9u * (uint32_t)o);
    norm += amplitude;
    amplitude *= 0.5;
    frequency *= 2.03; /* not 2: keeps the octaves' lattices from lining up */
  }
  return sum / norm;
}

/* The noise level above which roughly `coverage` of the ground lies. Fractal
 * value noise is close to normal around 1/2 with this spread; the logit is a
 * cheap stand-in for the normal quantile. */
static double coverage_threshold(double coverage)
{
  const double spread = 0.13;
  double       p      = coverage < 0.01 ? 0.01 : (coverage > 0.99 ? 0.99 : coverage);
  return 0.5 - spread * log(p / (1.0 - p)) / 1.7;
}

/* Round crowns (trees, orchard rows) on a jittered lattice, in lattice units:
 * the height of the highest dome covering (x, y), 0 between crowns. */
static double crown_dome(double x, double y, double jitter, double radius, uint32_t seed)
{
  int64_t ix = (int64_t)floor(x), iy = (int64_t)floor(y);
  double  dome = 0.0;
  for (int dj = -1; dj <= 1; dj++) {
    for (int di = -1; di <= 1; di++) {
      uint32_t h  = lattice_hash(ix + di, iy + dj, seed);
      double   cx = (double)(ix + di) + 0.5 + jitter * (hash_unit(h) - 0.5);
      double   cy = (double)(iy + dj) + 0.5 + jitter * (((h >> 11) & 1023) / 1023.0 - 0.5);
      double   r  = radius * (0.8 + 0.4 * ((h >> 21) & 1023) / 1023.0);
      double   d2 = ((x - cx) * (x - cx) + (y - cy) * (y - cy)) / (r * r);
      if (d2 < 1.0 && 1.0 - d2 > dome) dome = 1.0 - d2;
    }
  }
  return dome;
}

/* Parallel soft stripes: 1 on a `duty` fraction of each period. */
static double stripes(double phase, double duty)
{
  return step_up(cos(2.0 * PETSC_PI * phase), cos(PETSC_PI * duty), 0.5);
}

/* ================================================================ textures */

typedef enum {
  TEX_FIELDS,    /* parcels of striped crop, bare soil or stubble */
  TEX_CANOPY,    /* closed tree crowns with a few clearings */
  TEX_PATCHY,    /* fractal patches of two or three covers */
  TEX_UNIFORM,   /* one cover with gentle low-frequency variation */
  TEX_ROAD,      /* a straight road band through fields */
  TEX_BLOCKS,    /* buildings on a street grid */
  TEX_DOTS,      /* a regular lattice of crowns (orchards) */
  TEX_RIVER,     /* a meandering water band with banks */
  TEX_SHORE,     /* open water with an optional shore, beach or shallows */
  TEX_MARSH,     /* pools and channels in wet vegetation */
  TEX_RUNWAY,    /* wide runway, taxiway and apron in grass */
  TEX_SNOWFIELD, /* snow with rock outcrops and crevasses */
  TEX_ROWS,      /* narrow plant rows in parcels (vineyards) */
  TEX_COUNT
} TextureKind;

/* One image's draw of a class: where and how the texture lies. */
typedef struct {
  TextureKind texture;
  double      scale;    /* characteristic length, MS pixels: period, width or crown spacing */
  double      fraction; /* coverage of the class's defining material */
  double      aux;      /* a texture-specific knob in [0, 1]; see each texture */
  double      cos_a, sin_a;
  double      ox, oy; /* where in the endless noise world this image lies */
  double      extent; /* ground size of the image, to keep lines inside it */
  double      p[6];   /* the texture's own layout draws, uniform on [0, 1) */
  uint32_t    seed;   /* for the noise lattices */
} SceneLayout;

/* Fills w[SLOTS] (abundances summing to 1) and a brightness `shade` (crown
 * shadows, roof pitch) at rotated, centred ground coordinates (a, b). */
typedef void (*TextureFunction)(const SceneLayout *s, double a, double b, double w[SLOTS], double *shade);

/* slots: crop, soil, stubble, grass margins. aux: stripe period. */
static void texture_fields(const SceneLayout *s, double a, double b, double w[SLOTS], double *shade)
{
  double   x = a / s->scale + s->ox, y = b / s->scale + s->oy;
  double   fx = floor(x), fy = floor(y);
  uint32_t h = lattice_hash((int64_t)fx, (int64_t)fy, s->seed);
  double   u = x - fx, v = y - fy;
  double   edge   = fmin(fmin(u, 1 - u), fmin(v, 1 - v)) * s->scale;
  double   margin = 1.0 - step_up(edge, 0.6, 0.8);
  double   period = (2.0 + 3.0 * s->aux) * (0.8 + 0.4 * ((h >> 8) & 255) / 255.0);
  double   along  = ((h >> 2) & 1) ? a : b;

  switch (h & 3) {
  case 0:
  case 1: {
    double crop = stripes(along / period + s->p[0], s->fraction);
    w[0]        = crop;
    w[1]        = 1.0 - crop;
  } break;
  case 2:
    w[1] = 1.0;
    break;
  default:
    w[2] = 1.0;
  }
  for (int k = 0; k < SLOTS; k++) w[k] *= 1.0 - margin;
  w[3] += margin;
  *shade = 0.92 + 0.16 * ((h >> 16) & 255) / 255.0; /* each parcel its own growth stage */
}

/* slots: canopy, clearing grass, clearing soil, a second tree species. aux: how much of the second species. */
static void texture_canopy(const SceneLayout *s, double a, double b, double w[SLOTS], double *shade)
{
  double x = a / s->scale + s->ox, y = b / s->scale + s->oy;
  double dome    = crown_dome(x, y, 0.9, 0.62, s->seed);
  double gaps    = fractal_noise(x / 5.0, y / 5.0, s->seed + 1, 3);
  double open    = step_up(gaps, coverage_threshold(1.0 - s->fraction), 0.05);
  double soil    = step_up(fractal_noise(x, y, s->seed + 2, 2), 0.62, 0.1);
  double species = s->aux * step_up(fractal_noise(x / 8.0, y / 8.0, s->seed + 3, 2), 0.5, 0.2);
  double canopy  = 1.0 - open;

  w[0]   = canopy * (1.0 - species);
  w[3]   = canopy * species;
  w[1]   = open * (1.0 - soil);
  w[2]   = open * soil;
  *shade = canopy * (0.55 + 0.6 * dome) + open; /* sunlit crown tops, shadowed gaps between them */
}

/* slots: main cover, second cover, third cover, sparse shrubs. aux: shrub density. */
static void texture_patchy(const SceneLayout *s, double a, double b, double w[SLOTS], double *shade)
{
  double x = a / s->scale + s->ox, y = b / s->scale + s->oy;
  double n1      = fractal_noise(x, y, s->seed, 3);
  double n2      = fractal_noise(1.7 * x + 31.7, 1.7 * y - 11.3, s->seed + 1, 3);
  double n3      = fractal_noise(2.5 * x - 5.1, 2.5 * y + 7.9, s->seed + 2, 2);
  double primary = step_up(n1, coverage_threshold(s->fraction), 0.05);
  double second  = step_up(n2, 0.5, 0.1);
  double shrub   = s->aux * step_up(n3, coverage_threshold(0.15), 0.04);
  double rest    = (1.0 - primary) * (1.0 - shrub);

  w[0]   = primary * (1.0 - shrub);
  w[1]   = rest * (1.0 - second);
  w[2]   = rest * second;
  w[3]   = shrub;
  *shade = 0.94 + 0.12 * n2;
}

/* slots: grass, lusher grass, bare patches, dry tufts. aux: contrast of the lush/dry variation. */
static void texture_uniform(const SceneLayout *s, double a, double b, double w[SLOTS], double *shade)
{
  double x = a / s->scale + s->ox, y = b / s->scale + s->oy;
  double n1    = fractal_noise(x, y, s->seed, 2);
  double n2    = fractal_noise(4.0 * x, 4.0 * y, s->seed + 1, 2);
  double lush  = clamp01(0.5 + (n1 - 0.5) * (1.5 + 3.0 * s->aux));
  double bare  = step_up(n2, coverage_threshold(s->fraction), 0.04);
  double dry   = 0.5 * step_up(n1, coverage_threshold(0.1), 0.05);
  double grass = (1.0 - bare) * (1.0 - dry);

  w[0]   = grass * (1.0 - lush);
  w[1]   = grass * lush;
  w[2]   = bare;
  w[3]   = (1.0 - bare) * dry;
  *shade = 0.97 + 0.06 * n2;
}

/* slots: asphalt, concrete shoulders, field cover A, field cover B. aux: chance of a dual carriageway. */
static void texture_road(const SceneLayout *s, double a, double b, double w[SLOTS], double *shade)
{
  double d        = fabs(b - (s->p[0] - 0.5) * 0.5 * s->extent);
  int    dual     = s->p[1] < s->aux;
  double inner    = dual ? 0.4 : 0.0;
  double outer    = inner + s->scale;
  double median   = dual ? 1.0 - step_up(d, inner, 0.5) : 0.0;
  double road     = (1.0 - step_up(d, outer, 0.6)) * (1.0 - median);
  double shoulder = step_up(d, outer, 0.6) * (1.0 - step_up(d, outer + 0.8, 0.6));
  double field    = 1.0 - road - shoulder - median;
  double x = a / 8.0 + s->ox, y = b / 8.0 + s->oy;
  double field_mix = step_up(fractal_noise(x, y, s->seed, 3), 0.5, 0.15);

  w[0]   = road;
  w[1]   = shoulder;
  w[2]   = field * (1.0 - field_mix) + median;
  w[3]   = field * field_mix;
  *shade = 1.0;
}

/* slots: roof A, roof B, streets, yards or gardens. fraction: building size in its plot; aux: street width. */
static void texture_blocks(const SceneLayout *s, double a, double b, double w[SLOTS], double *shade)
{
  double   P = s->scale, x = a / P + s->ox, y = b / P + s->oy;
  double   fx = floor(x), fy = floor(y);
  uint32_t h = lattice_hash((int64_t)fx, (int64_t)fy, s->seed);
  double   u = x - fx, v = y - fy;
  double   half_u  = 0.5 * s->fraction * (0.75 + 0.5 * (h & 255) / 255.0);
  double   half_v  = 0.5 * s->fraction * (0.75 + 0.5 * ((h >> 8) & 255) / 255.0);
  double   present = ((h >> 16) & 255) < 235 ? 1.0 : 0.0; /* some plots are empty */
  double   building =
      present * step_up((half_u - fabs(u - 0.5)) * P, 0.0, 0.6) * step_up((half_v - fabs(v - 0.5)) * P, 0.0, 0.6);
  double edge   = fmin(fmin(u, 1 - u), fmin(v, 1 - v)) * P;
  double street = (1.0 - step_up(edge, 0.4 + 1.2 * s->aux, 0.6)) * (1.0 - building);
  int    roof_b = ((h >> 24) & 255) >= 180;
  /* a pitched roof: one face towards the sun, one away */
  double pitch = 1.0 + 0.12 * tanh((u - 0.5) * P * 2.0);

  w[roof_b ? 1 : 0] = building;
  w[2]              = street;
  w[3]              = 1.0 - building - street;
  *shade            = 1.0 - building + building * pitch * (0.9 + 0.2 * ((h >> 4) & 15) / 15.0);
}

/* slots: tree crowns, bare inter-row, grassed inter-row, unused. fraction: crown radius / spacing; aux: grass cover. */
static void texture_dots(const SceneLayout *s, double a, double b, double w[SLOTS], double *shade)
{
  double x = a / s->scale + s->ox, y = b / s->scale + s->oy;
  double dome = crown_dome(x, y, 0.12, s->fraction, s->seed);
  double tree = smooth01(4.0 * dome);
  double cover =
      step_up(fractal_noise(a / 10.0 + s->ox, b / 10.0 + s->oy, s->seed + 1, 2), coverage_threshold(s->aux), 0.1);

  w[0]   = tree;
  w[1]   = (1.0 - tree) * (1.0 - cover);
  w[2]   = (1.0 - tree) * cover;
  *shade = 1.0 - tree + tree * (0.7 + 0.35 * dome);
}

/* slots: water, banks, meadow, riparian trees. scale: half width; aux: bank width and meander amplitude. */
static void texture_river(const SceneLayout *s, double a, double b, double w[SLOTS], double *shade)
{
  double length    = s->extent * (0.7 + 0.8 * s->p[0]);
  double amplitude = s->extent * 0.12 * (0.3 + s->aux) * s->p[1];
  double k1 = 2.0 * PETSC_PI / length, k2 = k1 / 0.43;
  double phase1 = 2.0 * PETSC_PI * s->p[2], phase2 = 2.0 * PETSC_PI * s->p[3];
  double centre =
      (s->p[4] - 0.5) * 0.3 * s->extent + amplitude * sin(k1 * a + phase1) + 0.4 * amplitude * sin(k2 * a + phase2);
  double slope  = amplitude * k1 * cos(k1 * a + phase1) + 0.4 * amplitude * k2 * cos(k2 * a + phase2);
  double d      = fabs(b - centre) / sqrt(1.0 + slope * slope); /* distance across the bend, not along b */
  double half   = s->scale;
  double bank_w = 0.5 + 1.5 * s->aux;
  double water  = 1.0 - step_up(d, half, 0.8);
  double bank   = step_up(d, half, 0.8) * (1.0 - step_up(d, half + bank_w, 0.8));
  double land   = 1.0 - water - bank;
  double trees  = step_up(fractal_noise(a / 7.0 + s->ox, b / 7.0 + s->oy, s->seed, 3), coverage_threshold(0.35), 0.08);

  w[0]   = water;
  w[1]   = bank;
  w[2]   = land * (1.0 - trees);
  w[3]   = land * trees;
  *shade = 1.0;
}

/* slots: open water, shore band (beach sand or shallows), land A, land B.
 * fraction: mean water fraction; aux: beach width (0: no beach, only shallows). */
static void texture_shore(const SceneLayout *s, double a, double b, double w[SLOTS], double *shade)
{
  double land_fraction = (1.0 - s->fraction) * (0.5 + s->p[0]);
  double line          = -0.5 * s->extent + land_fraction * s->extent;
  double x = a / (4.0 * s->scale) + s->ox, y = s->oy;
  double wobble = (fractal_noise(x, y, s->seed, 3) - 0.5) * 3.0 * s->scale;
  double sd     = b - line - wobble; /* > 0 on the water side */
  double beach  = 8.0 * s->aux;
  double water  = step_up(sd, 2.0, 1.0);
  double band   = (1.0 - water) * step_up(sd, -beach, 0.8);
  double land   = 1.0 - water - band;
  double n      = fractal_noise(a / 6.0 + s->ox, b / 6.0 + s->oy, s->seed + 1, 3);
  double mix    = step_up(n, 0.5, 0.15);

  w[0]   = water;
  w[1]   = band;
  w[2]   = land * (1.0 - mix);
  w[3]   = land * mix;
  *shade = 1.0 + 0.08 * water * (n - 0.5); /* wind ripples */
}

/* slots: water, wet grass, reeds, dry tussocks. fraction: pool coverage; aux: channel width. */
static void texture_marsh(const SceneLayout *s, double a, double b, double w[SLOTS], double *shade)
{
  double x = a / s->scale + s->ox, y = b / s->scale + s->oy;
  double pools   = step_up(fractal_noise(x, y, s->seed, 3), coverage_threshold(s->fraction), 0.04);
  double n2      = fractal_noise(0.4 * x + 3.3, 0.4 * y - 8.1, s->seed + 1, 3);
  double channel = 1.0 - step_up(fabs(n2 - 0.5), 0.015 + 0.03 * s->aux, 0.015);
  double water   = fmax(pools, channel);
  double n3      = fractal_noise(2.0 * x, 2.0 * y, s->seed + 2, 2);
  double reeds   = step_up(n3, 0.55, 0.1);
  double dry     = 0.3 * step_up(n2, 0.7, 0.1);
  double veg     = 1.0 - water;

  w[0]   = water;
  w[1]   = veg * (1.0 - reeds) * (1.0 - dry);
  w[2]   = veg * reeds * (1.0 - dry);
  w[3]   = veg * dry;
  *shade = 0.95 + 0.1 * n3;
}

/* slots: runway and apron concrete, taxiway asphalt, dry grass, green grass. scale: runway half width;
 * aux: taxiway distance. */
static void texture_runway(const SceneLayout *s, double a, double b, double w[SLOTS], double *shade)
{
  double d            = b - (s->p[0] - 0.5) * 0.3 * s->extent;
  double half         = s->scale;
  double taxi_off     = half + 3.0 + 5.0 * s->aux;
  double runway       = 1.0 - step_up(fabs(d), half, 0.7);
  double taxiway      = 1.0 - step_up(fabs(d - taxi_off), 1.0, 0.6);
  double link_spacing = 18.0;
  double link_phase   = a / link_spacing + s->p[1];
  double link_d       = fabs(link_phase - floor(link_phase) - 0.5) * link_spacing;
  double link         = (1.0 - step_up(link_d, 0.9, 0.6)) * step_up(d, 0.0, 0.5) * (1.0 - step_up(d, taxi_off, 0.5));
  double apron_along  = fabs(a - (s->p[2] - 0.5) * s->extent);
  double apron        = step_up(d, taxi_off + 2.5, 0.7) * (1.0 - step_up(d, taxi_off + 12.0, 0.7)) *
                 (1.0 - step_up(apron_along, 10.0, 0.7));
  double concrete = fmax(runway, apron);
  double asphalt  = fmax(taxiway, link) * (1.0 - concrete);
  double grass    = 1.0 - concrete - asphalt;
  double green    = step_up(fractal_noise(a / 9.0 + s->ox, b / 9.0 + s->oy, s->seed, 3), 0.5, 0.2);

  w[0]   = concrete;
  w[1]   = asphalt;
  w[2]   = grass * (1.0 - green);
  w[3]   = grass * green;
  *shade = 1.0;
}

/* slots: snow, rock, moraine debris, unused. fraction: snow cover; aux: crevasse strength. */
static void texture_snowfield(const SceneLayout *s, double a, double b, double w[SLOTS], double *shade)
{
  double x = a / s->scale + s->ox, y = b / s->scale + s->oy;
  double n1       = fractal_noise(x, y, s->seed, 4);
  double n2       = fractal_noise(0.5 * x, 0.5 * y, s->seed + 1, 2);
  double rock     = step_up(n1, coverage_threshold(1.0 - s->fraction), 0.03);
  double debris   = (1.0 - rock) * 0.3 * step_up(n2, 0.6, 0.1);
  double ridge    = fabs(sin(PETSC_PI * (b + 3.0 * s->scale * (n2 - 0.5)) / (0.4 * s->scale)));
  double crevasse = s->aux * (1.0 - step_up(ridge, 0.2, 0.15));

  w[0]   = 1.0 - rock - debris;
  w[1]   = rock;
  w[2]   = debris;
  *shade = (0.85 + 0.25 * n2) * (1.0 - 0.5 * crevasse * (1.0 - rock)); /* slopes facing the sun, shadowed cracks */
}

/* slots: plant rows, bare inter-row, grassed inter-row, parcel margins. scale: row spacing; fraction: row width
 * / spacing; aux: grass cover between rows. */
static void texture_rows(const SceneLayout *s, double a, double b, double w[SLOTS], double *shade)
{
  const double parcel = 22.0;
  double       x = a / parcel + s->ox, y = b / parcel + s->oy;
  double       fx = floor(x), fy = floor(y);
  uint32_t     h = lattice_hash((int64_t)fx, (int64_t)fy, s->seed);
  double       u = x - fx, v = y - fy;
  double       margin = 1.0 - step_up(fmin(fmin(u, 1 - u), fmin(v, 1 - v)) * parcel, 0.6, 0.8);
  double       along  = (h & 1) ? a : b;
  double       period = s->scale * (0.85 + 0.3 * ((h >> 8) & 255) / 255.0);
  double       rows   = stripes(along / period + s->p[0], s->fraction);
  double       cover =
      step_up(fractal_noise(a / 6.0 + s->ox, b / 6.0 + s->oy, s->seed + 1, 2), coverage_threshold(s->aux), 0.1);

  w[0]   = (1.0 - margin) * rows;
  w[1]   = (1.0 - margin) * (1.0 - rows) * (1.0 - cover);
  w[2]   = (1.0 - margin) * (1.0 - rows) * cover;
  w[3]   = margin;
  *shade = 1.0 - 0.15 * rows * (1.0 - rows); /* the shadowed flank of each row */
}

static const TextureFunction TEXTURES[TEX_COUNT] = {
    texture_fields, texture_canopy, texture_patchy, texture_uniform, texture_road,      texture_blocks, texture_dots,
    texture_river,  texture_shore,  texture_marsh,  texture_runway,  texture_snowfield, texture_rows,
};

/* Typical scale of each texture, for the procedural classes. */
static const double TEXTURE_SCALE[TEX_COUNT] = {16.0, 2.4, 5.0, 12.0, 1.6, 8.0, 3.6, 2.5, 6.0, 4.0, 3.5, 8.0, 2.6};

/* ================================================================ classes */

typedef struct {
  const char *name;
  TextureKind texture;
  MaterialId  material[SLOTS];
  double      scale, fraction, aux; /* see SceneLayout */
} ClassRecipe;

/* EuroSAT's ten classes first, in its order, then a few more. Look-alikes
 * are deliberate: Pasture, HerbaceousVegetation and Forest share vegetation;
 * Residential and Industrial share concrete and asphalt; River, SeaLake and
 * Wetland share water; AnnualCrop and Vineyard share striped rows. */
static const ClassRecipe NAMED_CLASSES[] = {
    {"AnnualCrop", TEX_FIELDS, {MAT_CROP, MAT_SOIL, MAT_DRY_VEGETATION, MAT_GRASS}, 16.0, 0.55, 0.4},
    {"Forest", TEX_CANOPY, {MAT_FOREST, MAT_GRASS, MAT_SOIL, MAT_FOREST}, 2.4, 0.93, 0.5},
    {"HerbaceousVegetation", TEX_PATCHY, {MAT_GRASS, MAT_DRY_VEGETATION, MAT_SOIL, MAT_FOREST}, 5.0, 0.55, 0.6},
    {"Highway", TEX_ROAD, {MAT_ASPHALT, MAT_CONCRETE, MAT_GRASS, MAT_CROP}, 1.6, 0.5, 0.5},
    {"Industrial", TEX_BLOCKS, {MAT_METAL_ROOF, MAT_CONCRETE, MAT_ASPHALT, MAT_CONCRETE}, 13.0, 0.72, 0.6},
    {"Pasture", TEX_UNIFORM, {MAT_GRASS, MAT_CROP, MAT_SOIL, MAT_DRY_VEGETATION}, 12.0, 0.05, 0.3},
    {"PermanentCrop", TEX_DOTS, {MAT_FOREST, MAT_DRY_VEGETATION, MAT_GRASS, MAT_SOIL}, 3.6, 0.36, 0.4},
    {"Residential", TEX_BLOCKS, {MAT_ROOF_TILE, MAT_CONCRETE, MAT_ASPHALT, MAT_GRASS}, 5.5, 0.55, 0.2},
    {"River", TEX_RIVER, {MAT_TURBID_WATER, MAT_SAND, MAT_GRASS, MAT_FOREST}, 2.5, 0.5, 0.4},
    {"SeaLake", TEX_SHORE, {MAT_WATER, MAT_TURBID_WATER, MAT_GRASS, MAT_SOIL}, 6.0, 0.94, 0.0},
    {"Wetland", TEX_MARSH, {MAT_TURBID_WATER, MAT_GRASS, MAT_FOREST, MAT_DRY_VEGETATION}, 4.0, 0.3, 0.5},
    {"BareSoil", TEX_PATCHY, {MAT_SOIL, MAT_SAND, MAT_DRY_VEGETATION, MAT_ROCK}, 7.0, 0.6, 0.3},
    {"Beach", TEX_SHORE, {MAT_WATER, MAT_SAND, MAT_DRY_VEGETATION, MAT_GRASS}, 6.0, 0.5, 0.7},
    {"Airport", TEX_RUNWAY, {MAT_CONCRETE, MAT_ASPHALT, MAT_DRY_VEGETATION, MAT_GRASS}, 3.5, 0.5, 0.5},
    {"Glacier", TEX_SNOWFIELD, {MAT_SNOW, MAT_ROCK, MAT_ROCK, MAT_SNOW}, 8.0, 0.8, 0.6},
    {"Vineyard", TEX_ROWS, {MAT_FOREST, MAT_SOIL, MAT_DRY_VEGETATION, MAT_GRASS}, 2.6, 0.35, 0.5},
};

#define NAMED_CLASS_COUNT ((PetscInt)(sizeof(NAMED_CLASSES) / sizeof(NAMED_CLASSES[0])))

/* The stream that defines procedural classes: fixed, so class 37 is the same
 * class in every run whatever the user's seed. */
static const uint64_t PROCEDURAL_CLASS_SEED = 0x61636b642d636c73ull; /* "ackd-cls" */
static const uint32_t PROCEDURAL_CLASS_TAG  = 0x72656370u;           /* "recp" */

PetscInt AckdSceneNamedClasses(void)
{
  return NAMED_CLASS_COUNT;
}

void AckdSceneClassName(PetscInt global_class, char *name, size_t len)
{
  if (!name || len == 0) return;
  if (global_class >= 0 && global_class < NAMED_CLASS_COUNT)
    snprintf(name, len, "%s", NAMED_CLASSES[global_class].name);
  else
    snprintf(name, len, "synthetic_%" PetscInt_FMT, global_class);
}

static void procedural_recipe(PetscInt global_class, ClassRecipe *recipe)
{
  AckdRng rng;

  AckdRngInit(&rng, PROCEDURAL_CLASS_SEED, (uint64_t)global_class, PROCEDURAL_CLASS_TAG);
  recipe->name    = NULL;
  recipe->texture = (TextureKind)AckdRngBelow(&rng, TEX_COUNT);
  for (int k = 0; k < SLOTS; k++) recipe->material[k] = (MaterialId)AckdRngBelow(&rng, MAT_COUNT);
  recipe->scale    = TEXTURE_SCALE[recipe->texture] * AckdRngUniformRange(&rng, 0.6, 1.6);
  recipe->fraction = AckdRngUniformRange(&rng, 0.25, 0.8);
  recipe->aux      = AckdRngUniform(&rng);
}

static void class_recipe(PetscInt global_class, ClassRecipe *recipe)
{
  if (global_class < NAMED_CLASS_COUNT)
    *recipe = NAMED_CLASSES[global_class];
  else
    procedural_recipe(global_class, recipe);
}

/* ================================================================ one render */

typedef struct {
  double reading[SLOTS][ACKD_SENSOR_MAX_BANDS]; /* what each channel reads from each slot's material */
  double illumination;                          /* per-image gain: sun angle, exposure */
  double haze;                                  /* path radiance at 490 nm, falling as 1/lambda^2 */
  double season;                                /* the acquisition's departure from the class's mean condition */
} SceneRadiometry;

/* A neighbouring parcel's cover and the edge between it and the scene's own. */
typedef struct {
  SceneLayout layout;
  double      reading[SLOTS][ACKD_SENSOR_MAX_BANDS];
  double      nx, ny; /* the edge's normal, pointing into the neighbour */
  double      offset; /* the edge's distance from the tile's centre along the normal */
  double      extent; /* ground size of the tile */
  uint32_t    seed;   /* for the edge's wander */
} SceneNeighbour;

static double clamp_range(double x, double lo, double hi)
{
  return x < lo ? lo : (x > hi ? hi : x);
}

/* The layout draws come first and do not depend on the sensor. */
static void draw_layout(AckdRng *rng, const ClassRecipe *recipe, double variability, double ground_width,
                        double ground_height, SceneLayout *s)
{
  double angle = variability * AckdRngUniformRange(rng, -PETSC_PI, PETSC_PI);

  s->texture  = recipe->texture;
  s->cos_a    = cos(angle);
  s->sin_a    = sin(angle);
  s->ox       = AckdRngUniformRange(rng, 0.0, 4096.0);
  s->oy       = AckdRngUniformRange(rng, 0.0, 4096.0);
  s->scale    = recipe->scale * exp(0.25 * variability * AckdRngNormal(rng));
  s->fraction = clamp_range(recipe->fraction + 0.2 * variability * AckdRngNormal(rng), 0.02, 0.98);
  s->aux      = recipe->aux;
  s->extent   = fmax(ground_width, ground_height);
  s->seed     = AckdRngU32(rng);
  for (int k = 0; k < 6; k++) s->p[k] = AckdRngUniform(rng);
}

/* What each slot's material reads in every channel, for one cover of a scene:
 * the season moves every material of the scene the same way (a dry summer
 * browns all grass at once), the rest of each material's condition is its own. */
static void draw_readings(AckdRng *rng, const ClassRecipe *recipe, double variability, double season,
                          const AckdSensor *sensor, double reading[SLOTS][ACKD_SENSOR_MAX_BANDS])
{
  for (int k = 0; k < SLOTS; k++) {
    double condition = clamp_range(0.9 * season + 0.7 * variability * AckdRngNormal(rng), -1.0, 1.0);
    double gain      = 1.0 + 0.10 * variability * AckdRngNormal(rng);
    for (PetscInt c = 0; c < sensor->channels; c++)
      reading[k][c] = gain * sensor_channel_reflectance(sensor, c, recipe->material[k], condition);
  }
}

static void draw_radiometry(AckdRng *rng, const ClassRecipe *recipe, double variability, const AckdSensor *sensor,
                            SceneRadiometry *r)
{
  r->season = variability * AckdRngNormal(rng);
  draw_readings(rng, recipe, variability, r->season, sensor, r->reading);
  r->illumination = fmax(0.5, 1.0 + 0.2 * variability * AckdRngNormal(rng));
  r->haze         = 0.03 * variability * AckdRngUniform(rng);
}

/* The offset t at which the half-plane n.x > t cuts `share` (<= 1/2) of a
 * square of side `extent` centred on the origin, for the unit normal n at
 * `angle`. Along n the square's points are the sum of two uniform variables on
 * [-a, a] and [-b, b] (a >= b), a trapezoidal density whose upper tail is
 * (a + b - t)^2 / (8ab) above a - b and (a - t) / (2a) below it. */
static double edge_offset(double angle, double extent, double share)
{
  double a = 0.5 * extent * fabs(cos(angle)), b = 0.5 * extent * fabs(sin(angle));
  if (a < b) {
    double swap = a;
    a           = b;
    b           = swap;
  }
  if (share <= b / (2.0 * a)) return a + b - sqrt(8.0 * a * b * share);
  return a - 2.0 * a * share;
}

static void draw_neighbour(AckdRng *rng, const AckdSceneNeighbour *neighbour, double variability, double season,
                           const AckdSensor *sensor, double ground_width, double ground_height, SceneNeighbour *n)
{
  ClassRecipe recipe;

  class_recipe(neighbour->global_class, &recipe);
  draw_layout(rng, &recipe, variability, ground_width, ground_height, &n->layout);
  draw_readings(rng, &recipe, variability, season, sensor, n->reading);
  double angle = AckdRngUniformRange(rng, -PETSC_PI, PETSC_PI);
  n->nx        = cos(angle);
  n->ny        = sin(angle);
  n->extent    = fmax(ground_width, ground_height);
  n->offset    = edge_offset(angle, n->extent, neighbour->share);
  n->seed      = AckdRngU32(rng);
}

/* How much of ground point (u, v) the neighbouring cover holds: 1 past the
 * edge, 0 before it. Parcel edges are not ruled lines, so the edge wanders by
 * a few percent of the tile about its line, with a mean of zero, which keeps
 * the neighbour's share of the tile at its draw on average. */
static double neighbour_weight(const SceneNeighbour *n, double u, double v)
{
  double across = n->nx * u + n->ny * v, along = -n->ny * u + n->nx * v;
  double wander = 0.12 * n->extent * (fractal_noise(along / (0.3 * n->extent), 0.5, n->seed, 3) - 0.5);
  return step_up(across, n->offset + wander, 0.7);
}

static double cover_value(const double reading[SLOTS][ACKD_SENSOR_MAX_BANDS], PetscInt c, const double w[SLOTS],
                          double shade)
{
  double value = 0.0;
  for (int k = 0; k < SLOTS; k++) value += w[k] * reading[k][c];
  return shade * value;
}

/* Samples the texture at every pixel centre and mixes the slot readings; with
 * a neighbour, its cover's mixture past the edge. */
static void paint_scene(const SceneLayout *s, const SceneRadiometry *r, const SceneNeighbour *n,
                        const AckdSensor *sensor, PetscInt height, PetscInt width, float *image)
{
  TextureFunction texture = TEXTURES[s->texture];
  PetscInt        plane   = height * width;
  double          gsd     = sensor->gsd;

  for (PetscInt i = 0; i < height; i++) {
    double v = (i + 0.5) * gsd - 0.5 * height * gsd;
    for (PetscInt j = 0; j < width; j++) {
      double u = (j + 0.5) * gsd - 0.5 * width * gsd;
      double a = s->cos_a * u + s->sin_a * v, b = -s->sin_a * u + s->cos_a * v;
      double w[SLOTS] = {0.0, 0.0, 0.0, 0.0}, shade = 1.0;
      double w2[SLOTS] = {0.0, 0.0, 0.0, 0.0}, shade2 = 1.0, mix = n ? neighbour_weight(n, u, v) : 0.0;
      texture(s, a, b, w, &shade);
      if (mix > 0.0) {
        const SceneLayout *t = &n->layout;
        TEXTURES[t->texture](t, t->cos_a * u + t->sin_a * v, -t->sin_a * u + t->cos_a * v, w2, &shade2);
      }
      for (PetscInt c = 0; c < sensor->channels; c++) {
        double value = cover_value(r->reading, c, w, shade);
        if (mix > 0.0) value = (1.0 - mix) * value + mix * cover_value(n->reading, c, w2, shade2);
        image[c * plane + i * width + j] = (float)value;
      }
    }
  }
}

/* Separable Gaussian point-spread function, edges clamped. */
static PetscErrorCode blur_image(float *image, PetscInt channels, PetscInt height, PetscInt width, double sigma)
{
  PetscInt radius = (PetscInt)ceil(3.0 * sigma);
  double  *kernel, total = 0.0;
  float   *row_pass;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(2 * radius + 1, &kernel));
  PetscCall(PetscMalloc1(height * width, &row_pass));
  for (PetscInt t = -radius; t <= radius; t++) total += kernel[t + radius] = gauss((double)t, 0.0, sigma);
  for (PetscInt t = 0; t <= 2 * radius; t++) kernel[t] /= total;
  for (PetscInt c = 0; c < channels; c++) {
    float *p = image + c * height * width;
    for (PetscInt i = 0; i < height; i++) {
      for (PetscInt j = 0; j < width; j++) {
        double sum = 0.0;
        for (PetscInt t = -radius; t <= radius; t++) {
          PetscInt jj = PetscClipInterval(j + t, 0, width - 1);
          sum += kernel[t + radius] * p[i * width + jj];
        }
        row_pass[i * width + j] = (float)sum;
      }
    }
    for (PetscInt i = 0; i < height; i++) {
      for (PetscInt j = 0; j < width; j++) {
        double sum = 0.0;
        for (PetscInt t = -radius; t <= radius; t++) {
          PetscInt ii = PetscClipInterval(i + t, 0, height - 1);
          sum += kernel[t + radius] * row_pass[ii * width + j];
        }
        p[i * width + j] = (float)sum;
      }
    }
  }
  PetscCall(PetscFree(row_pass));
  PetscCall(PetscFree(kernel));
  PetscFunctionReturn(0);
}

/* Illumination and haze act on the light reaching the sensor, in every channel alike. */
static void illuminate(const SceneRadiometry *r, const AckdSensor *sensor, PetscInt plane, float *image)
{
  for (PetscInt c = 0; c < sensor->channels; c++) {
    double lambda = sensor->wavelength_nm[c];
    double haze   = r->haze * (490.0 / lambda) * (490.0 / lambda);
    float *p      = image + c * plane;
    for (PetscInt q = 0; q < plane; q++) p[q] = (float)(r->illumination * p[q] + haze);
  }
}

/* The camera's own processing: exposure, white balance, a colour-correction
 * matrix that restores the saturation the broad responses wash out, and the
 * display gamma. */
static void rgb_camera_response(PetscInt plane, float *image)
{
  float *red = image, *green = image + plane, *blue = image + 2 * plane;
  for (PetscInt q = 0; q < plane; q++) {
    double linear[3] = {red[q], green[q], blue[q]}, grey = 0.0;
    for (int c = 0; c < 3; c++) {
      linear[c] *= RGB_EXPOSURE * RGB_WHITE_BALANCE[c];
      grey += linear[c] / 3.0;
    }
    for (int c = 0; c < 3; c++) {
      double corrected     = (1.0 + RGB_SATURATION) * linear[c] - RGB_SATURATION * grey;
      image[c * plane + q] = (float)pow(fmax(0.0, corrected), RGB_GAMMA);
    }
  }
}

/* Noise is in output units: reflectance for MS, display value for RGB (the
 * camera's read-out after its processing), where it is then clipped. */
static void add_noise(AckdRng *rng, const AckdSensor *sensor, PetscInt plane, float *image)
{
  PetscInt total = sensor->channels * plane;
  if (sensor->noise > 0.0)
    for (PetscInt q = 0; q < total; q++) image[q] = (float)(image[q] + sensor->noise * AckdRngNormal(rng));
  if (sensor->kind == ACKD_SENSOR_RGB)
    for (PetscInt q = 0; q < total; q++) image[q] = (float)clamp01(image[q]);
}

static PetscErrorCode check_sensor(const AckdSensor *sensor)
{
  PetscFunctionBeginUser;
  PetscCheck(sensor, PETSC_COMM_SELF, PETSC_ERR_ARG_NULL, "scene render: sensor is NULL");
  PetscCheck(sensor->kind == ACKD_SENSOR_MULTISPECTRAL || sensor->kind == ACKD_SENSOR_RGB, PETSC_COMM_SELF,
             PETSC_ERR_ARG_OUTOFRANGE, "scene render: sensor kind %d is neither multispectral (%d) nor RGB (%d)",
             (int)sensor->kind, (int)ACKD_SENSOR_MULTISPECTRAL, (int)ACKD_SENSOR_RGB);
  PetscCheck(sensor->channels >= 1 && sensor->channels <= ACKD_SENSOR_MAX_BANDS, PETSC_COMM_SELF,
             PETSC_ERR_ARG_OUTOFRANGE, "scene render: sensor has %" PetscInt_FMT " channels; valid range is 1..%d",
             sensor->channels, ACKD_SENSOR_MAX_BANDS);
  PetscCheck(sensor->kind != ACKD_SENSOR_RGB || sensor->channels == 3, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "scene render: RGB sensor has %" PetscInt_FMT " channels; it must have 3", sensor->channels);
  PetscCheck(isfinite(sensor->gsd) && sensor->gsd > 0.0 && sensor->gsd <= MAX_RGB_GSD, PETSC_COMM_SELF,
             PETSC_ERR_ARG_OUTOFRANGE, "scene render: sensor gsd %g; valid range is (0, %g]", sensor->gsd, MAX_RGB_GSD);
  PetscCheck(isfinite(sensor->noise) && sensor->noise >= 0.0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "scene render: sensor noise %g; valid range is [0, inf)", sensor->noise);
  PetscCheck(isfinite(sensor->blur) && sensor->blur >= 0.0 && sensor->blur <= MAX_BLUR_SIGMA, PETSC_COMM_SELF,
             PETSC_ERR_ARG_OUTOFRANGE, "scene render: sensor blur sigma %g px; valid range is [0, %g]", sensor->blur,
             MAX_BLUR_SIGMA);
  for (PetscInt c = 0; c < sensor->channels; c++)
    PetscCheck(isfinite(sensor->wavelength_nm[c]) && sensor->wavelength_nm[c] > 0.0, PETSC_COMM_SELF,
               PETSC_ERR_ARG_OUTOFRANGE, "scene render: channel %" PetscInt_FMT " wavelength %g nm; must be positive",
               c, sensor->wavelength_nm[c]);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdSceneRenderMixed(uint64_t seed, uint32_t tag, uint64_t index, PetscInt global_class,
                                    double variability, const AckdSceneNeighbour *neighbour, const AckdSensor *sensor,
                                    PetscInt height, PetscInt width, float *image)
{
  ClassRecipe     recipe;
  SceneLayout     layout;
  SceneRadiometry radiometry;
  SceneNeighbour  next;
  AckdRng         rng;
  PetscBool       mixed = neighbour && neighbour->share > 0.0 ? PETSC_TRUE : PETSC_FALSE;

  PetscFunctionBeginUser;
  PetscCall(check_sensor(sensor));
  PetscCheck(image, PETSC_COMM_SELF, PETSC_ERR_ARG_NULL, "scene render: output image is NULL");
  PetscCheck(global_class >= 0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "scene render: class %" PetscInt_FMT "; valid range is 0 and up", global_class);
  PetscCheck(height >= 1 && height <= MAX_IMAGE_SIDE, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "scene render: height %" PetscInt_FMT "; valid range is 1..%" PetscInt_FMT, height, MAX_IMAGE_SIDE);
  PetscCheck(width >= 1 && width <= MAX_IMAGE_SIDE, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "scene render: width %" PetscInt_FMT "; valid range is 1..%" PetscInt_FMT, width, MAX_IMAGE_SIDE);
  PetscCheck(isfinite(variability) && variability >= 0.0 && variability <= 1.0, PETSC_COMM_SELF,
             PETSC_ERR_ARG_OUTOFRANGE, "scene render: variability %g; valid range is [0, 1]", variability);
  if (neighbour) {
    PetscCheck(isfinite(neighbour->share) && neighbour->share >= 0.0 && neighbour->share <= 0.5, PETSC_COMM_SELF,
               PETSC_ERR_ARG_OUTOFRANGE, "scene render: neighbour's share %g; valid range is [0, 0.5]",
               neighbour->share);
    PetscCheck(neighbour->global_class >= 0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
               "scene render: neighbour's class %" PetscInt_FMT "; valid range is 0 and up", neighbour->global_class);
  }

  class_recipe(global_class, &recipe);
  AckdRngInit(&rng, seed, index, tag);
  draw_layout(&rng, &recipe, variability, width * sensor->gsd, height * sensor->gsd, &layout);
  draw_radiometry(&rng, &recipe, variability, sensor, &radiometry);
  if (mixed)
    draw_neighbour(&rng, neighbour, variability, radiometry.season, sensor, width * sensor->gsd, height * sensor->gsd,
                   &next);
  paint_scene(&layout, &radiometry, mixed ? &next : NULL, sensor, height, width, image);
  if (sensor->blur > 0.0) PetscCall(blur_image(image, sensor->channels, height, width, sensor->blur));
  illuminate(&radiometry, sensor, height * width, image);
  if (sensor->kind == ACKD_SENSOR_RGB) rgb_camera_response(height * width, image);
  add_noise(&rng, sensor, height * width, image);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdSceneRender(uint64_t seed, uint32_t tag, uint64_t index, PetscInt global_class, double variability,
                               const AckdSensor *sensor, PetscInt height, PetscInt width, float *image)
{
  PetscFunctionBeginUser;
  PetscCall(AckdSceneRenderMixed(seed, tag, index, global_class, variability, NULL, sensor, height, width, image));
  PetscFunctionReturn(0);
}
