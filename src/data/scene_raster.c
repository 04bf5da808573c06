/* Whole scenes through GDAL: windows read out of a large georeferenced raster,
 * and the maps `ackd predict` writes back (a class map with its colour table
 * and class names, a probability raster), with the scene's grid and CRS.
 *
 * Scenes are opened per rank and read independently: GDAL handles are not
 * shared between processes. A map is written by one rank: a GeoTIFF cannot
 * take writes from several processes, and a map is cheap to write next to the
 * network that fills it. */
#include "gdal_library.h"
#include <ackd/data.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

struct _p_AckdScene {
  const AckdGDALLibrary *gdal;
  GDALDatasetH           ds;
  char                   path[PETSC_MAX_PATH_LEN];
  PetscInt               width, height, nbands;
  int                    bands[ACKD_RASTER_MAX_BANDS];
  int                    has_nodata[ACKD_RASTER_MAX_BANDS];
  double                 nodata[ACKD_RASTER_MAX_BANDS];
};

/* GDAL's last message, or `fallback` when it said nothing. */
static const char *gdal_reason(const AckdGDALLibrary *gdal, const char *fallback)
{
  const char *m = gdal->GetLastErrorMsg();
  return m && m[0] ? m : fallback;
}

PetscErrorCode AckdSceneOpen(const char *path, PetscInt nbands, const PetscInt *bands, AckdScene *scene)
{
  AckdScene s;

  PetscFunctionBeginUser;
  PetscCheck(nbands > 0 && nbands <= ACKD_RASTER_MAX_BANDS, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "a scene is read with 1 to %d bands, not %" PetscInt_FMT, ACKD_RASTER_MAX_BANDS, nbands);
  PetscCall(PetscNew(&s));
  PetscCall(AckdGDALLibraryGet(&s->gdal));
  PetscCall(PetscStrncpy(s->path, path, sizeof s->path));
  s->gdal->PushErrorHandler(s->gdal->QuietErrorHandler);
  s->gdal->ErrorReset();
  s->ds = s->gdal->Open(path, GA_ReadOnly);
  s->gdal->PopErrorHandler();
  if (!s->ds) {
    char reason[512];
    snprintf(reason, sizeof reason, "%s", gdal_reason(s->gdal, "GDAL cannot open it"));
    PetscCall(PetscFree(s));
    SETERRQ(PETSC_COMM_SELF, PETSC_ERR_FILE_OPEN,
            "cannot read scene '%s' (%s); give a raster GDAL reads, e.g. a GeoTIFF", path, reason);
  }
  s->width         = s->gdal->GetRasterXSize(s->ds);
  s->height        = s->gdal->GetRasterYSize(s->ds);
  PetscInt present = s->gdal->GetRasterCount(s->ds);
  s->nbands        = nbands;
  for (PetscInt b = 0; b < nbands; b++) {
    if (bands[b] < 1 || bands[b] > present) {
      s->gdal->Close(s->ds);
      PetscCall(PetscFree(s));
      SETERRQ(PETSC_COMM_SELF, PETSC_ERR_USER_INPUT,
              "scene '%s' has %" PetscInt_FMT " band%s, but the model reads band %" PetscInt_FMT
              "; give the scene of the sensor the model was trained on, or choose its bands with -predict_bands",
              path, present, present == 1 ? "" : "s", bands[b]);
    }
    s->bands[b]          = (int)bands[b];
    GDALRasterBandH band = s->gdal->GetRasterBand(s->ds, (int)bands[b]);
    s->nodata[b]         = s->gdal->GetRasterNoDataValue(band, &s->has_nodata[b]);
  }
  *scene = s;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdSceneGetSize(AckdScene scene, PetscInt *width, PetscInt *height)
{
  PetscFunctionBeginUser;
  *width  = scene->width;
  *height = scene->height;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdSceneReadWindow(AckdScene s, PetscInt x0, PetscInt y0, PetscInt w, PetscInt h, float *pixels,
                                   unsigned char *valid)
{
  PetscFunctionBeginUser;
  PetscCheck(x0 >= 0 && y0 >= 0 && x0 + w <= s->width && y0 + h <= s->height, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "window %" PetscInt_FMT "x%" PetscInt_FMT " at (%" PetscInt_FMT ", %" PetscInt_FMT
             ") is outside scene '%s' (%" PetscInt_FMT "x%" PetscInt_FMT ")",
             w, h, x0, y0, s->path, s->width, s->height);
  s->gdal->PushErrorHandler(s->gdal->QuietErrorHandler);
  s->gdal->ErrorReset();
  CPLErr err = s->gdal->DatasetRasterIOEx(s->ds, GF_Read, (int)x0, (int)y0, (int)w, (int)h, pixels, (int)w, (int)h,
                                          GDT_Float32, (int)s->nbands, s->bands, 0, 0, 0, NULL);
  s->gdal->PopErrorHandler();
  PetscCheck(err == CE_None, PETSC_COMM_SELF, PETSC_ERR_FILE_READ,
             "cannot read rows %" PetscInt_FMT "..%" PetscInt_FMT " of scene '%s' (%s); the file is damaged", y0,
             y0 + h, s->path, gdal_reason(s->gdal, "read failed"));
  const size_t plane = (size_t)w * (size_t)h;
  for (size_t i = 0; i < plane; i++) valid[i] = 1;
  for (PetscInt b = 0; b < s->nbands; b++) {
    const float *x = pixels + b * plane;
    /* Nodata is compared as the band's own type would hold it, which float32 represents exactly for
     * every integer type GDAL stores up to 24 bits and for float32 scenes. */
    const float nodata = (float)s->nodata[b];
    for (size_t i = 0; i < plane; i++)
      if (!isfinite(x[i]) || (s->has_nodata[b] && x[i] == nodata)) valid[i] = 0; /* a NaN nodata: not finite */
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdSceneGetGeoreference(AckdScene s, double geotransform[6], const char **wkt, PetscBool *georeferenced)
{
  PetscFunctionBeginUser;
  s->gdal->PushErrorHandler(s->gdal->QuietErrorHandler);
  *georeferenced  = (PetscBool)(s->gdal->GetGeoTransform(s->ds, geotransform) == CE_None);
  const char *ref = s->gdal->GetProjectionRef(s->ds);
  s->gdal->PopErrorHandler();
  *wkt = ref ? ref : "";
  PetscFunctionReturn(0);
}

PetscErrorCode AckdSceneClose(AckdScene *scene)
{
  PetscFunctionBeginUser;
  if (!*scene) PetscFunctionReturn(0);
  (*scene)->gdal->Close((*scene)->ds);
  PetscCall(PetscFree(*scene));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdRasterResample(PetscInt C, PetscInt h, PetscInt w, const float *in, PetscInt oh, PetscInt ow,
                                  float *out)
{
  const AckdGDALLibrary *gdal;

  PetscFunctionBeginUser;
  PetscCall(AckdGDALLibraryGet(&gdal));
  /* Through an in-memory dataset, so that a window is resampled by the code that resampled the
   * training images (AckdRasterRead with resize). */
  GDALDriverH mem = gdal->GetDriverByName("MEM");
  PetscCheck(mem, PETSC_COMM_SELF, PETSC_ERR_LIB,
             "GDAL has no MEM driver; install a complete GDAL (Debian: libgdal32)");
  gdal->ErrorReset();
  GDALDatasetH ds = gdal->Create(mem, "", (int)w, (int)h, (int)C, GDT_Float32, NULL);
  PetscCheck(ds, PETSC_COMM_SELF, PETSC_ERR_MEM, "GDAL cannot hold a %" PetscInt_FMT "x%" PetscInt_FMT " window (%s)",
             w, h, gdal_reason(gdal, "out of memory"));
  CPLErr err = gdal->DatasetRasterIOEx(ds, GF_Write, 0, 0, (int)w, (int)h, (void *)in, (int)w, (int)h, GDT_Float32,
                                       (int)C, NULL, 0, 0, 0, NULL);
  if (err == CE_None) {
    GDALRasterIOExtraArg extra;
    INIT_RASTERIO_EXTRA_ARG(extra);
    extra.eResampleAlg = GRIORA_Bilinear;
    err = gdal->DatasetRasterIOEx(ds, GF_Read, 0, 0, (int)w, (int)h, out, (int)ow, (int)oh, GDT_Float32, (int)C, NULL,
                                  0, 0, 0, &extra);
  }
  gdal->Close(ds);
  PetscCheck(err == CE_None, PETSC_COMM_SELF, PETSC_ERR_LIB, "GDAL could not resample a window (%s)",
             gdal_reason(gdal, "unknown reason"));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------- maps */

struct _p_AckdMap {
  const AckdGDALLibrary *gdal;
  GDALDatasetH           ds;
  AckdMapKind            kind;
  PetscInt               width, height, bands;
  char                   path[PETSC_MAX_PATH_LEN], partial[PETSC_MAX_PATH_LEN + 8];
};

/* Distinct colours for any number of classes: hues a golden angle apart, so
 * neighbouring class indices never get similar colours. */
static GDALColorEntry class_colour(PetscInt k)
{
  double hue = fmod(0.13 + 0.6180339887498949 * (double)k, 1.0) * 6.0, s = k % 2 ? 0.55 : 0.8, v = k % 3 ? 0.95 : 0.75;
  int    sector = (int)hue;
  double f = hue - sector, p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f)), r, g, b;
  switch (sector % 6) {
  case 0:
    r = v, g = t, b = p;
    break;
  case 1:
    r = q, g = v, b = p;
    break;
  case 2:
    r = p, g = v, b = t;
    break;
  case 3:
    r = p, g = q, b = v;
    break;
  case 4:
    r = t, g = p, b = v;
    break;
  default:
    r = v, g = p, b = q;
    break;
  }
  return (GDALColorEntry){(short)lround(255 * r), (short)lround(255 * g), (short)lround(255 * b), 255};
}

static PetscErrorCode describe_classes(AckdMap m, const AckdMapLayout *layout)
{
  const AckdGDALLibrary *gdal = m->gdal;
  char                 **names;

  PetscFunctionBeginUser;
  if (m->kind == ACKD_MAP_PROBABILITIES) {
    for (PetscInt k = 0; k < layout->classes; k++) {
      GDALRasterBandH band = gdal->GetRasterBand(m->ds, (int)k + 1);
      gdal->SetDescription((GDALMajorObjectH)band, layout->class_names[k]);
      PetscCheck(gdal->SetRasterNoDataValue(band, NAN) == CE_None, PETSC_COMM_SELF, PETSC_ERR_LIB,
                 "cannot set the nodata value of '%s' (%s)", m->partial, gdal_reason(gdal, "GDAL refused"));
    }
    PetscFunctionReturn(0);
  }
  GDALRasterBandH band = gdal->GetRasterBand(m->ds, 1);
  gdal->SetDescription((GDALMajorObjectH)band, "class");
  PetscCheck(gdal->SetRasterNoDataValue(band, ACKD_MAP_NODATA_CLASS) == CE_None, PETSC_COMM_SELF, PETSC_ERR_LIB,
             "cannot set the nodata value of '%s' (%s)", m->partial, gdal_reason(gdal, "GDAL refused"));
  /* Categories are indexed by pixel value up to the nodata value, which is named too, so that a GIS
   * shows "nodata" rather than an unnamed class. */
  PetscCall(PetscCalloc1(ACKD_MAP_NODATA_CLASS + 2, &names));
  GDALColorTableH table = gdal->CreateColorTable(GPI_RGB);
  for (PetscInt k = 0; k <= ACKD_MAP_NODATA_CLASS; k++) {
    GDALColorEntry c = k < layout->classes ? class_colour(k) : (GDALColorEntry){0, 0, 0, 0};
    gdal->SetColorEntry(table, (int)k, &c);
    names[k] = (char *)(k < layout->classes ? layout->class_names[k] : k == ACKD_MAP_NODATA_CLASS ? "nodata" : "");
  }
  CPLErr err = gdal->SetRasterColorTable(band, table);
  gdal->DestroyColorTable(table);
  if (err == CE_None) err = gdal->SetRasterCategoryNames(band, (CSLConstList)names);
  PetscCall(PetscFree(names));
  PetscCheck(err == CE_None, PETSC_COMM_SELF, PETSC_ERR_LIB, "cannot write the colour table of '%s' (%s)", m->partial,
             gdal_reason(gdal, "GDAL refused"));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdMapCreate(const char *path, const AckdMapLayout *layout, AckdMap *map)
{
  AckdMap m;

  PetscFunctionBeginUser;
  PetscCheck(layout->kind == ACKD_MAP_PROBABILITIES || layout->classes <= ACKD_MAP_NODATA_CLASS, PETSC_COMM_SELF,
             PETSC_ERR_SUP, "a class map holds at most %d classes in its byte pixels; the model has %" PetscInt_FMT,
             ACKD_MAP_NODATA_CLASS, layout->classes);
  PetscCall(PetscNew(&m));
  PetscCall(AckdGDALLibraryGet(&m->gdal));
  m->kind   = layout->kind;
  m->width  = layout->width;
  m->height = layout->height;
  m->bands  = layout->kind == ACKD_MAP_CLASSES ? 1 : layout->classes;
  PetscCall(PetscStrncpy(m->path, path, sizeof m->path));
  snprintf(m->partial, sizeof m->partial, "%s.part", path);
  /* The temporary name is created afresh and exclusively, as for HDF5 outputs (src/core/h5.c): a
   * link planted there is removed, not written through. */
  int fd = -1;
  if (unlink(m->partial) == 0 || errno == ENOENT) fd = open(m->partial, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0666);
  PetscCheck(fd >= 0, PETSC_COMM_SELF, PETSC_ERR_FILE_OPEN,
             "cannot create '%s' (%s); check that its directory exists and is writable", m->partial, strerror(errno));
  close(fd);
  GDALDriverH gtiff = m->gdal->GetDriverByName("GTiff");
  PetscCheck(gtiff, PETSC_COMM_SELF, PETSC_ERR_LIB,
             "GDAL has no GTiff driver; install a complete GDAL (Debian: libgdal32)");
  const char *options[] = {"TILED=YES", "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER", NULL};
  m->gdal->PushErrorHandler(m->gdal->QuietErrorHandler);
  m->gdal->ErrorReset();
  m->ds = m->gdal->Create(gtiff, m->partial, (int)m->width, (int)m->height, (int)m->bands,
                          layout->kind == ACKD_MAP_CLASSES ? GDT_Byte : GDT_Float32, (CSLConstList)options);
  m->gdal->PopErrorHandler();
  if (!m->ds) {
    char reason[512];
    snprintf(reason, sizeof reason, "%s", gdal_reason(m->gdal, "GDAL refused"));
    unlink(m->partial);
    PetscCall(PetscFree(m));
    SETERRQ(PETSC_COMM_SELF, PETSC_ERR_FILE_OPEN, "cannot create the GeoTIFF '%s.part' (%s)", path, reason);
  }
  if (layout->geotransform) {
    double gt[6];
    PetscCall(PetscArraycpy(gt, layout->geotransform, 6));
    PetscCheck(m->gdal->SetGeoTransform(m->ds, gt) == CE_None, PETSC_COMM_SELF, PETSC_ERR_LIB,
               "cannot georeference '%s' (%s)", m->partial, gdal_reason(m->gdal, "GDAL refused"));
  }
  if (layout->wkt && layout->wkt[0])
    PetscCheck(m->gdal->SetProjection(m->ds, layout->wkt) == CE_None, PETSC_COMM_SELF, PETSC_ERR_LIB,
               "cannot set the CRS of '%s' (%s)", m->partial, gdal_reason(m->gdal, "GDAL refused"));
  PetscCall(describe_classes(m, layout));
  *map = m;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdMapWriteRows(AckdMap m, PetscInt y0, PetscInt rows, const void *data)
{
  PetscFunctionBeginUser;
  m->gdal->ErrorReset();
  CPLErr err = m->gdal->DatasetRasterIOEx(
      m->ds, GF_Write, 0, (int)y0, (int)m->width, (int)rows, (void *)data, (int)m->width, (int)rows,
      m->kind == ACKD_MAP_CLASSES ? GDT_Byte : GDT_Float32, (int)m->bands, NULL, 0, 0, 0, NULL);
  PetscCheck(err == CE_None, PETSC_COMM_SELF, PETSC_ERR_FILE_WRITE,
             "cannot write rows %" PetscInt_FMT "..%" PetscInt_FMT " of '%s' (%s); check its file system's free space",
             y0, y0 + rows, m->partial, gdal_reason(m->gdal, "write failed"));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdMapCommit(AckdMap *map)
{
  AckdMap m = *map;

  PetscFunctionBeginUser;
  m->gdal->ErrorReset();
  m->gdal->Close(m->ds); /* flushes; GDAL reports a failed flush only through its error state */
  const char *last = m->gdal->GetLastErrorMsg();
  PetscBool   ok   = (PetscBool) !(last && last[0]);
  /* GDAL keeps what TIFF tags cannot hold (the class names) in a side file named after the
   * dataset: it moves with the map, and a stale one from an earlier map must not describe it. */
  char aux_from[PETSC_MAX_PATH_LEN + 24], aux_to[PETSC_MAX_PATH_LEN + 16];
  snprintf(aux_from, sizeof aux_from, "%s.aux.xml", m->partial);
  snprintf(aux_to, sizeof aux_to, "%s.aux.xml", m->path);
  if (ok && access(aux_from, F_OK) == 0)
    ok = (PetscBool)AckdFileRenameDurable(aux_from, aux_to);
  else if (ok)
    unlink(aux_to);
  if (ok) ok = (PetscBool)AckdFileRenameDurable(m->partial, m->path);
  if (!ok) {
    unlink(m->partial);
    unlink(aux_from);
  }
  PetscCheck(ok, PETSC_COMM_SELF, PETSC_ERR_FILE_WRITE,
             "cannot finish '%s' (%s); check its file system's free space and permissions", m->path,
             last && last[0] ? last : strerror(errno));
  PetscCall(PetscFree(*map));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdMapDiscard(AckdMap *map)
{
  PetscFunctionBeginUser;
  if (!*map) PetscFunctionReturn(0);
  char aux[PETSC_MAX_PATH_LEN + 24];
  snprintf(aux, sizeof aux, "%s.aux.xml", (*map)->partial);
  (*map)->gdal->Close((*map)->ds);
  unlink((*map)->partial);
  unlink(aux);
  PetscCall(PetscFree(*map));
  PetscFunctionReturn(0);
}
