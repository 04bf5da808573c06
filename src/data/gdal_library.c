#include "gdal_library.h"
#include <dlfcn.h>

#ifndef ACKD_GDAL_SONAME
#error "ACKD_GDAL_SONAME must name libgdal's shared object (src/data/CMakeLists.txt sets it)"
#endif

/* Every function ackd uses: its slot in AckdGDALLibrary and its name in GDAL. */
#define GDAL_FUNCTIONS(X)                                                                                              \
  X(AllRegister, GDALAllRegister)                                                                                      \
  X(Open, GDALOpen)                                                                                                    \
  X(Close, GDALClose)                                                                                                  \
  X(GetRasterCount, GDALGetRasterCount)                                                                                \
  X(GetRasterXSize, GDALGetRasterXSize)                                                                                \
  X(GetRasterYSize, GDALGetRasterYSize)                                                                                \
  X(DatasetRasterIOEx, GDALDatasetRasterIOEx)                                                                          \
  X(PushErrorHandler, CPLPushErrorHandler)                                                                             \
  X(PopErrorHandler, CPLPopErrorHandler)                                                                               \
  X(ErrorReset, CPLErrorReset)                                                                                         \
  X(GetLastErrorMsg, CPLGetLastErrorMsg)                                                                               \
  X(QuietErrorHandler, CPLQuietErrorHandler)                                                                           \
  X(GetDriverByName, GDALGetDriverByName)                                                                              \
  X(Create, GDALCreate)                                                                                                \
  X(GetRasterBand, GDALGetRasterBand)                                                                                  \
  X(GetGeoTransform, GDALGetGeoTransform)                                                                              \
  X(SetGeoTransform, GDALSetGeoTransform)                                                                              \
  X(GetProjectionRef, GDALGetProjectionRef)                                                                            \
  X(SetProjection, GDALSetProjection)                                                                                  \
  X(GetRasterNoDataValue, GDALGetRasterNoDataValue)                                                                    \
  X(SetRasterNoDataValue, GDALSetRasterNoDataValue)                                                                    \
  X(SetRasterCategoryNames, GDALSetRasterCategoryNames)                                                                \
  X(SetDescription, GDALSetDescription)                                                                                \
  X(CreateColorTable, GDALCreateColorTable)                                                                            \
  X(SetColorEntry, GDALSetColorEntry)                                                                                  \
  X(SetRasterColorTable, GDALSetRasterColorTable)                                                                      \
  X(DestroyColorTable, GDALDestroyColorTable)

/* Each slot has the type of the function gdal.h declares, so a GDAL whose
 * signatures changed fails to compile here rather than misbehave at run time. */
#define SAME_TYPE(slot, function)                                                                                      \
  _Static_assert(__builtin_types_compatible_p(__typeof__(((AckdGDALLibrary *)0)->slot), __typeof__(&function)),        \
                 #function);
GDAL_FUNCTIONS(SAME_TYPE)
#undef SAME_TYPE

static AckdGDALLibrary library;
static PetscBool       loaded;

static PetscErrorCode resolve(void *handle, const char *symbol, void **slot)
{
  PetscFunctionBeginUser;
  dlerror();
  *slot = dlsym(handle, symbol);
  PetscCheck(*slot, PETSC_COMM_SELF, PETSC_ERR_LIB,
             "GDAL library '%s' has no %s (%s); ackd was built against another GDAL: rebuild it", ACKD_GDAL_SONAME,
             symbol, dlerror());
  PetscFunctionReturn(0);
}

PetscErrorCode AckdGDALLibraryGet(const AckdGDALLibrary **gdal)
{
  PetscFunctionBeginUser;
  if (!loaded) {
    /* RTLD_LOCAL: GDAL's own dependencies stay out of the global namespace that
     * HDF5, MPI and PETSc already resolve against. */
    void *handle = dlopen(ACKD_GDAL_SONAME, RTLD_NOW | RTLD_LOCAL);
    PetscCheck(handle, PETSC_COMM_SELF, PETSC_ERR_LIB,
               "cannot load GDAL (%s), which curate and predict need to read images; install GDAL's runtime library "
               "(Debian: libgdal32)",
               dlerror());
#define RESOLVE(slot, function) PetscCall(resolve(handle, #function, (void **)&library.slot));
    GDAL_FUNCTIONS(RESOLVE)
#undef RESOLVE
    library.AllRegister();
    loaded = PETSC_TRUE; /* the handle stays open for the process's life, as a linked library would */
  }
  *gdal = &library;
  PetscFunctionReturn(0);
}
