/* Decoding one image through GDAL: GeoTIFF with any number of bands, JPEG,
 * PNG. A bad file is not an error here but a status with a reason: curate
 * decides whether to skip it (the default) or stop (-curate_strict). */
#include "gdal_library.h"
#include <ackd/data.h>
#include <string.h>

static void set_reason(AckdRasterInfo *info, AckdRasterStatus status, const char *what)
{
  info->status = status;
  snprintf(info->reason, sizeof info->reason, "%s", what);
}

PetscErrorCode AckdRasterRead(const char *path, const AckdRasterRequest *req, AckdRasterBuffer *buf,
                              AckdRasterInfo *info)
{
  const AckdGDALLibrary *gdal;

  PetscFunctionBeginUser;
  PetscCall(AckdGDALLibraryGet(&gdal));
  memset(info, 0, sizeof *info);
  /* GDAL would print its own messages on stderr; ackd reports the file once, with context. */
  gdal->PushErrorHandler(gdal->QuietErrorHandler);
  gdal->ErrorReset();
  GDALDatasetH ds = gdal->Open(path, GA_ReadOnly);
  if (!ds) {
    set_reason(info, ACKD_RASTER_UNREADABLE,
               gdal->GetLastErrorMsg()[0] ? gdal->GetLastErrorMsg() : "GDAL cannot open it");
    gdal->PopErrorHandler();
    PetscFunctionReturn(0);
  }
  info->bands       = gdal->GetRasterCount(ds);
  info->height      = gdal->GetRasterYSize(ds);
  info->width       = gdal->GetRasterXSize(ds);
  PetscInt max_band = 0;
  for (PetscInt b = 0; b < req->nbands; b++) max_band = PetscMax(max_band, req->bands[b]);
  if (info->bands < max_band || (req->expect_bands > 0 && info->bands != req->expect_bands)) {
    char why[128];
    snprintf(why, sizeof why, "has %" PetscInt_FMT " bands, expected %" PetscInt_FMT, info->bands,
             req->expect_bands > 0 ? req->expect_bands : max_band);
    set_reason(info, ACKD_RASTER_BAND_COUNT, why);
    gdal->Close(ds);
    gdal->PopErrorHandler();
    PetscFunctionReturn(0);
  }
  PetscInt out_h = req->resize ? req->height : info->height, out_w = req->resize ? req->width : info->width;
  size_t   need = (size_t)req->nbands * (size_t)out_h * (size_t)out_w;
  if (need > buf->capacity) {
    PetscCall(PetscFree(buf->data));
    PetscCall(PetscMalloc1(need, &buf->data));
    buf->capacity = need;
  }
  int bands[ACKD_RASTER_MAX_BANDS];
  for (PetscInt b = 0; b < req->nbands; b++) bands[b] = (int)req->bands[b];
  GDALRasterIOExtraArg extra;
  INIT_RASTERIO_EXTRA_ARG(extra);
  extra.eResampleAlg = GRIORA_Bilinear;
  /* Band-sequential float32: exactly the (C, H, W) layout of the dataset file. */
  CPLErr err = gdal->DatasetRasterIOEx(ds, GF_Read, 0, 0, (int)info->width, (int)info->height, buf->data, (int)out_w,
                                       (int)out_h, GDT_Float32, (int)req->nbands, bands, 0, 0, 0, &extra);
  if (err != CE_None)
    set_reason(info, ACKD_RASTER_UNREADABLE, gdal->GetLastErrorMsg()[0] ? gdal->GetLastErrorMsg() : "read failed");
  else {
    info->height = out_h;
    info->width  = out_w;
    for (size_t i = 0; i < need && info->status == ACKD_RASTER_OK; i++)
      if (!isfinite(buf->data[i])) set_reason(info, ACKD_RASTER_NOT_FINITE, "holds NaN or Inf pixels");
  }
  gdal->Close(ds);
  gdal->PopErrorHandler();
  PetscFunctionReturn(0);
}

uint64_t AckdContentHash(const void *data, size_t bytes)
{
  /* FNV-1a: byte-exact duplicates only; a near-duplicate is a different image. */
  const unsigned char *p = data;
  uint64_t             h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < bytes; i++) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}
