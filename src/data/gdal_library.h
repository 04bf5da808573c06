/* GDAL, loaded when a stage first needs it rather than at every rank's start.
 *
 * libgdal brings in over a hundred shared libraries of its own (codecs, PROJ,
 * network and database clients). Linked into ackd, the dynamic loader maps and
 * relocates all of them in every rank of every stage, which doubles the start-up
 * of a stage that never reads a raster (about 120 ms per process, measured on a
 * 2-core AMD EPYC VM on 2026-12-05; on a cluster, every rank at once on a shared
 * file system). Only curate and predict touch rasters, so only they pay for GDAL. */
#pragma once
#include <cpl_error.h>
#include <gdal.h>
#include <petscsys.h>

typedef struct {
  void (*AllRegister)(void);
  GDALDatasetH (*Open)(const char *, GDALAccess);
  void (*Close)(GDALDatasetH);
  int (*GetRasterCount)(GDALDatasetH);
  int (*GetRasterXSize)(GDALDatasetH);
  int (*GetRasterYSize)(GDALDatasetH);
  CPLErr (*DatasetRasterIOEx)(GDALDatasetH, GDALRWFlag, int, int, int, int, void *, int, int, GDALDataType, int, int *,
                              GSpacing, GSpacing, GSpacing, GDALRasterIOExtraArg *);
  void (*PushErrorHandler)(CPLErrorHandler);
  void (*PopErrorHandler)(void);
  void (*ErrorReset)(void);
  const char *(*GetLastErrorMsg)(void);
  void (*QuietErrorHandler)(CPLErr, CPLErrorNum, const char *);
  /* scenes and maps (scene_raster.c) */
  GDALDriverH (*GetDriverByName)(const char *);
  GDALDatasetH (*Create)(GDALDriverH, const char *, int, int, int, GDALDataType, CSLConstList);
  GDALRasterBandH (*GetRasterBand)(GDALDatasetH, int);
  CPLErr (*GetGeoTransform)(GDALDatasetH, double *);
  CPLErr (*SetGeoTransform)(GDALDatasetH, double *);
  const char *(*GetProjectionRef)(GDALDatasetH);
  CPLErr (*SetProjection)(GDALDatasetH, const char *);
  double (*GetRasterNoDataValue)(GDALRasterBandH, int *);
  CPLErr (*SetRasterNoDataValue)(GDALRasterBandH, double);
  CPLErr (*SetRasterCategoryNames)(GDALRasterBandH, CSLConstList);
  void (*SetDescription)(GDALMajorObjectH, const char *);
  GDALColorTableH (*CreateColorTable)(GDALPaletteInterp);
  void (*SetColorEntry)(GDALColorTableH, int, const GDALColorEntry *);
  CPLErr (*SetRasterColorTable)(GDALRasterBandH, GDALColorTableH);
  void (*DestroyColorTable)(GDALColorTableH);
} AckdGDALLibrary;

/* The library, loaded and its drivers registered on the first call. A missing
 * or incomplete libgdal is an error naming the library and the package. */
PetscErrorCode AckdGDALLibraryGet(const AckdGDALLibrary **gdal);
