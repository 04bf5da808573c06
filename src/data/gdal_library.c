#include "gdal_library.h"
#include <dlfcn.h>

#ifndef ACKD_GDAL_SONAME
#error "ACKD_GDAL_SONAME must name libgdal's shared object (src/data/CMakeLists.txt sets it)"
#endif

/* Each slot has the type of the function gdal.h declares, so a GDAL whose
 * signatures changed fails to compile here rather than misbehave at run time. */
#define SAME_TYPE(slot, function)                                                                                      \
  _Static_assert(__builtin_types_compatible_p(__typeof__(((AckdGDALLibrary *)0)->slot), __typeof__(&function)),        \
                 #function)
SAME_TYPE(AllRegister, GDALAllRegister);
SAME_TYPE(Open, GDALOpen);
SAME_TYPE(Close, GDALClose);
SAME_TYPE(GetRasterCount, GDALGetRasterCount);
SAME_TYPE(GetRasterXSize, GDALGetRasterXSize);
SAME_TYPE(GetRasterYSize, GDALGetRasterYSize);
SAME_TYPE(DatasetRasterIOEx, GDALDatasetRasterIOEx);
SAME_TYPE(PushErrorHandler, CPLPushErrorHandler);
SAME_TYPE(PopErrorHandler, CPLPopErrorHandler);
SAME_TYPE(ErrorReset, CPLErrorReset);
SAME_TYPE(GetLastErrorMsg, CPLGetLastErrorMsg);
SAME_TYPE(QuietErrorHandler, CPLQuietErrorHandler);
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
               "cannot load GDAL (%s), which curate needs to decode images; install GDAL's runtime library "
               "(Debian: libgdal32)",
               dlerror());
    struct {
      const char *symbol;
      void      **slot;
    } table[] = {
        {"GDALAllRegister", (void **)&library.AllRegister},
        {"GDALOpen", (void **)&library.Open},
        {"GDALClose", (void **)&library.Close},
        {"GDALGetRasterCount", (void **)&library.GetRasterCount},
        {"GDALGetRasterXSize", (void **)&library.GetRasterXSize},
        {"GDALGetRasterYSize", (void **)&library.GetRasterYSize},
        {"GDALDatasetRasterIOEx", (void **)&library.DatasetRasterIOEx},
        {"CPLPushErrorHandler", (void **)&library.PushErrorHandler},
        {"CPLPopErrorHandler", (void **)&library.PopErrorHandler},
        {"CPLErrorReset", (void **)&library.ErrorReset},
        {"CPLGetLastErrorMsg", (void **)&library.GetLastErrorMsg},
        {"CPLQuietErrorHandler", (void **)&library.QuietErrorHandler},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
      PetscCall(resolve(handle, table[i].symbol, table[i].slot));
    library.AllRegister();
    loaded = PETSC_TRUE; /* the handle stays open for the process's life, as a linked library would */
  }
  *gdal = &library;
  PetscFunctionReturn(0);
}
