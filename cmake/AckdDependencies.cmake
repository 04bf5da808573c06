# Finds ackd's whole stack. A missing piece stops configure with one line that
# names the Debian package to install (scripts/install-deps installs them all).

include(CheckSymbolExists)
find_package(PkgConfig QUIET)
if(NOT PKG_CONFIG_FOUND)
  message(FATAL_ERROR "ackd: pkg-config not found: apt-get install pkg-config")
endif()

function(ackd_missing what package)
  message(FATAL_ERROR "ackd: ${what} not found: apt-get install ${package} (or run scripts/install-deps)")
endfunction()

# MPI (Open MPI 4.1)
find_package(MPI QUIET COMPONENTS C)
if(NOT MPI_C_FOUND)
  ackd_missing("MPI" "libopenmpi-dev openmpi-bin")
endif()

# Parallel HDF5: the openmpi flavour. A serial HDF5 cannot write one file from many ranks.
pkg_check_modules(HDF5 QUIET IMPORTED_TARGET hdf5-openmpi)
if(NOT HDF5_FOUND)
  pkg_check_modules(HDF5 QUIET IMPORTED_TARGET hdf5)
endif()
if(NOT HDF5_FOUND)
  ackd_missing("parallel HDF5" "libhdf5-openmpi-dev")
endif()
set(CMAKE_REQUIRED_INCLUDES ${HDF5_INCLUDE_DIRS} ${MPI_C_INCLUDE_DIRS})
check_symbol_exists(H5_HAVE_PARALLEL "H5pubconf.h" ACKD_HDF5_IS_PARALLEL)
unset(CMAKE_REQUIRED_INCLUDES)
if(NOT ACKD_HDF5_IS_PARALLEL)
  message(FATAL_ERROR "ackd: the HDF5 found (${HDF5_INCLUDE_DIRS}) is serial; ackd needs parallel HDF5: apt-get install libhdf5-openmpi-dev")
endif()

# PETSc 3.18: options, logging, errors, Tao
pkg_check_modules(PETSC QUIET IMPORTED_TARGET PETSc>=3.18)
if(NOT PETSC_FOUND)
  ackd_missing("PETSc >= 3.18" "libpetsc-real3.18-dev")
endif()

# ScaLAPACK with BLACS, and OpenBLAS
pkg_check_modules(SCALAPACK QUIET IMPORTED_TARGET scalapack-openmpi)
if(NOT SCALAPACK_FOUND)
  ackd_missing("ScaLAPACK (openmpi)" "libscalapack-openmpi-dev")
endif()
pkg_check_modules(OPENBLAS QUIET IMPORTED_TARGET openblas)
if(NOT OPENBLAS_FOUND)
  ackd_missing("OpenBLAS" "libopenblas-dev")
endif()

# oneDNN 2.x
find_package(dnnl 2.6 QUIET CONFIG)
if(NOT dnnl_FOUND)
  ackd_missing("oneDNN >= 2.6" "libdnnl-dev")
endif()

# GDAL, for raster ingestion
pkg_check_modules(GDAL QUIET IMPORTED_TARGET gdal)
if(NOT GDAL_FOUND)
  ackd_missing("GDAL" "libgdal-dev")
endif()
# ackd loads libgdal when curate first needs it (src/data/gdal_library.h says why), by the
# name the loader knows it by at run time: its SONAME, not the -dev package's libgdal.so link.
find_library(ACKD_GDAL_LIBRARY NAMES gdal HINTS ${GDAL_LIBRARY_DIRS} REQUIRED)
execute_process(COMMAND ${CMAKE_OBJDUMP} -p ${ACKD_GDAL_LIBRARY} OUTPUT_VARIABLE gdal_dynamic_section
                RESULT_VARIABLE gdal_objdump_failed)
string(REGEX MATCH "SONAME +([^ \n]+)" gdal_soname_line "${gdal_dynamic_section}")
if(gdal_objdump_failed OR NOT CMAKE_MATCH_1)
  message(FATAL_ERROR "cannot read the SONAME of ${ACKD_GDAL_LIBRARY} with '${CMAKE_OBJDUMP} -p'; install binutils")
endif()
set(ACKD_GDAL_SONAME ${CMAKE_MATCH_1} CACHE INTERNAL "libgdal's SONAME, which ackd dlopens")

# GLPK: the exact LP solver behind the OT validation path
find_path(GLPK_INCLUDE_DIR glpk.h)
find_library(GLPK_LIBRARY glpk)
if(NOT GLPK_INCLUDE_DIR OR NOT GLPK_LIBRARY)
  ackd_missing("GLPK" "libglpk-dev")
endif()
add_library(ackd_glpk INTERFACE)
target_include_directories(ackd_glpk INTERFACE ${GLPK_INCLUDE_DIR})
target_link_libraries(ackd_glpk INTERFACE ${GLPK_LIBRARY})

# Tools the tests call
find_program(ACKD_H5DUMP h5dump)
find_program(ACKD_H5DIFF h5diff)
find_program(ACKD_PYTHON3 python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT ACKD_H5DUMP OR NOT ACKD_H5DIFF)
  ackd_missing("h5dump/h5diff" "hdf5-tools")
endif()
if(NOT ACKD_PYTHON3)
  ackd_missing("/usr/bin/python3" "python3")
endif()

# POSIX threads: the watchdog that bounds a file close (src/core/h5.c)
find_package(Threads REQUIRED)
