/* Table and .mat inputs of `ackd curate` (internal to src/data): a one-hot CSV
 * table naming image files, a table of their cover fractions, and MATLAB v7.3
 * .mat files holding the images. */
#ifndef ACKD_DATA_MULTILABEL_SOURCES_H
#define ACKD_DATA_MULTILABEL_SOURCES_H

#include <ackd/data.h>

/* A one-hot table: a header "path,<class>,<class>,..." then one row per image,
 * its path relative to `image_dir` and a 0 or 1 per class. Fills `catalogue`
 * (paths, class names, per-class positive counts; label[] holds each image's
 * first class, or K when it has none) and `multi` (nfiles x nclasses). */
PetscErrorCode AckdLabelTableRead(MPI_Comm comm, const char *table, const char *image_dir, AckdClassFolders *catalogue,
                                  unsigned char **multi);

/* A fraction table: the same layout with each image's share of every class's cover (a number in
 * [0, 1]; a row sums to 1 within 1e-3 and is scaled to sum to 1). Its label is the largest share
 * (the lowest index among equals), counted in class_counts; `fractions` is nfiles x nclasses. */
PetscErrorCode AckdFractionTableRead(MPI_Comm comm, const char *table, const char *image_dir,
                                     AckdClassFolders *catalogue, float **fractions);

/* MATLAB v7.3 files are HDF5. `layout` names the order of the HDF5 axes of
 * `msi` with the letters N, C, H, W: MATLAB saves an H x W x C x N array
 * column-major, which HDF5 sees as N, C, W, H ("NCWH"). */
typedef struct _p_AckdMatInput *AckdMatInput;

PetscErrorCode AckdMatInputOpen(const char *path, const char *layout, AckdMatInput *mat);
PetscErrorCode AckdMatInputGetSize(AckdMatInput mat, PetscInt *count, PetscInt *channels, PetscInt *height,
                                   PetscInt *width);
/* The `label` dataset as (count x classes) 0/1, whichever way round it is stored. */
PetscErrorCode AckdMatInputReadLabels(AckdMatInput mat, PetscInt *nclasses, unsigned char **multi);
/* Sample i, band-selected, into buf as (C, H, W); bad pixels are reported in info. */
PetscErrorCode AckdMatInputReadSample(AckdMatInput mat, PetscInt i, const AckdRasterRequest *req, AckdRasterBuffer *buf,
                                      AckdRasterInfo *info);
PetscErrorCode AckdMatInputClose(AckdMatInput *mat);

#endif
