/* MATLAB v7.3 .mat files (HDF5 underneath) with datasets `msi` and `label`,
 * as multi-label Sentinel-2 collections are often shipped. Each rank opens
 * the file read-only on its own and reads only its samples. */
#include "multilabel_sources.h"
#include <string.h>

struct _p_AckdMatInput {
  char    path[PETSC_MAX_PATH_LEN];
  hid_t   file, msi;
  hsize_t dims[4];
  int     axis_n, axis_c, axis_h, axis_w; /* where each letter sits among the HDF5 axes */
  float  *sample;                         /* one sample in the file's axis order */
};

static PetscErrorCode parse_layout(AckdMatInput m, const char *layout)
{
  int *axes[4] = {&m->axis_n, &m->axis_c, &m->axis_h, &m->axis_w};

  PetscFunctionBeginUser;
  PetscCheck(strlen(layout) == 4, PETSC_COMM_SELF, PETSC_ERR_USER_INPUT,
             "-curate_mat_layout '%s' must be 4 letters, an order of N, C, H and W (MATLAB's H x W x C x N is NCWH)",
             layout);
  for (int k = 0; k < 4; k++) *axes[k] = -1;
  for (int pos = 0; pos < 4; pos++) {
    const char *letter = strchr("NCHW", layout[pos]);
    PetscCheck(layout[pos] && letter && *axes[letter - "NCHW"] < 0, PETSC_COMM_SELF, PETSC_ERR_USER_INPUT,
               "-curate_mat_layout '%s' must use each of N, C, H and W once", layout);
    *axes[letter - "NCHW"] = pos;
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdMatInputOpen(const char *path, const char *layout, AckdMatInput *mat)
{
  AckdMatInput m;
  AckdH5Shape  shape;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&m));
  PetscCall(PetscStrncpy(m->path, path, sizeof m->path));
  PetscCall(parse_layout(m, layout));
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  htri_t is_h5 = H5Fis_hdf5(path);
  PetscCheck(is_h5 > 0, PETSC_COMM_SELF, PETSC_ERR_FILE_OPEN,
             "'%s' is missing or not a MATLAB v7.3 file (older .mat versions are not HDF5: re-save with save -v7.3)",
             path);
  AckdCallH5(m->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), "opening '%s'", path);
  PetscCheck(H5Lexists(m->file, "msi", H5P_DEFAULT) > 0 && H5Lexists(m->file, "label", H5P_DEFAULT) > 0,
             PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED, "'%s' needs the variables 'msi' and 'label'", path);
  AckdCallH5(m->msi = H5Dopen2(m->file, "msi", H5P_DEFAULT), "opening msi in '%s'", path);
  PetscCall(AckdH5DatasetShapeOf(m->msi, path, "msi", &shape));
  PetscCheck(shape.rank == 4, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED, "'%s': msi has %d dimensions, expected 4",
             path, shape.rank);
  PetscCall(PetscArraycpy(m->dims, shape.dims, 4));
  size_t per_sample = (size_t)(m->dims[0] * m->dims[1] * m->dims[2] * m->dims[3] / m->dims[m->axis_n]);
  PetscCall(PetscMalloc1(per_sample, &m->sample));
  *mat = m;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdMatInputGetSize(AckdMatInput m, PetscInt *count, PetscInt *channels, PetscInt *height,
                                   PetscInt *width)
{
  PetscFunctionBeginUser;
  *count    = (PetscInt)m->dims[m->axis_n];
  *channels = (PetscInt)m->dims[m->axis_c];
  *height   = (PetscInt)m->dims[m->axis_h];
  *width    = (PetscInt)m->dims[m->axis_w];
  PetscFunctionReturn(0);
}

PetscErrorCode AckdMatInputReadLabels(AckdMatInput m, PetscInt *nclasses, unsigned char **multi)
{
  hid_t       dset;
  AckdH5Shape shape;
  double     *values;
  PetscInt    N = (PetscInt)m->dims[m->axis_n];

  PetscFunctionBeginUser;
  AckdCallH5(dset = H5Dopen2(m->file, "label", H5P_DEFAULT), "opening label in '%s'", m->path);
  PetscCall(AckdH5DatasetShapeOf(dset, m->path, "label", &shape));
  PetscCheck(shape.rank == 2, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED, "'%s': label has %d dimensions, expected 2",
             m->path, shape.rank);
  const hsize_t *d = shape.dims;
  /* MATLAB's N x K arrives as (K, N); a file written from Python may hold (N, K). */
  PetscBool transposed = (PetscBool)((PetscInt)d[1] == N && (PetscInt)d[0] != N);
  PetscCheck((PetscInt)d[0] == N || (PetscInt)d[1] == N, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED,
             "'%s': label is %llux%llu but msi holds %" PetscInt_FMT " samples", m->path, (unsigned long long)d[0],
             (unsigned long long)d[1], N);
  *nclasses = (PetscInt)(transposed ? d[0] : d[1]);
  PetscCall(PetscMalloc1((size_t)N * *nclasses, &values));
  AckdCallH5(H5Dread(dset, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, values), "reading label in '%s'", m->path);
  H5Dclose(dset);
  PetscCall(PetscMalloc1((size_t)N * *nclasses, multi));
  for (PetscInt i = 0; i < N; i++)
    for (PetscInt k = 0; k < *nclasses; k++) {
      double v = transposed ? values[k * N + i] : values[i * *nclasses + k];
      PetscCheck(v == 0 || v == 1, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED,
                 "'%s': label of sample %" PetscInt_FMT ", class %" PetscInt_FMT " is %g, not 0 or 1", m->path, i, k,
                 v);
      (*multi)[i * *nclasses + k] = (unsigned char)v;
    }
  PetscCall(PetscFree(values));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdMatInputReadSample(AckdMatInput m, PetscInt i, const AckdRasterRequest *req, AckdRasterBuffer *buf,
                                      AckdRasterInfo *info)
{
  hsize_t start[4] = {0, 0, 0, 0}, count[4], stride[4];
  hid_t   fspace, mspace;

  PetscFunctionBeginUser;
  memset(info, 0, sizeof *info);
  info->bands  = (PetscInt)m->dims[m->axis_c];
  info->height = (PetscInt)m->dims[m->axis_h];
  info->width  = (PetscInt)m->dims[m->axis_w];
  for (int a = 0; a < 4; a++) count[a] = m->dims[a];
  start[m->axis_n] = (hsize_t)i;
  count[m->axis_n] = 1;
  AckdCallH5(fspace = H5Dget_space(m->msi), "msi in '%s'", m->path);
  H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL);
  AckdCallH5(mspace = H5Screate_simple(4, count, NULL), "msi in '%s'", m->path);
  AckdCallH5(H5Dread(m->msi, H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, m->sample),
             "reading sample %" PetscInt_FMT " of msi in '%s'", i, m->path);
  H5Sclose(mspace);
  H5Sclose(fspace);

  size_t need = (size_t)req->nbands * (size_t)info->height * (size_t)info->width;
  if (need > buf->capacity) {
    PetscCall(PetscFree(buf->data));
    PetscCall(PetscMalloc1(need, &buf->data));
    buf->capacity = need;
  }
  /* Element strides of the sample in the file's axis order, then a gather into (C, H, W). */
  stride[3] = 1;
  for (int a = 2; a >= 0; a--) stride[a] = stride[a + 1] * count[a + 1];
  PetscInt H = info->height, W = info->width;
  for (PetscInt b = 0; b < req->nbands; b++) {
    PetscCheck(req->bands[b] <= info->bands, PETSC_COMM_SELF, PETSC_ERR_USER_INPUT,
               "-curate_ms_bands selects band %" PetscInt_FMT " but msi in '%s' has %" PetscInt_FMT " bands",
               req->bands[b], m->path, info->bands);
    const float *band = m->sample + (size_t)(req->bands[b] - 1) * stride[m->axis_c];
    float       *out  = buf->data + (size_t)b * H * W;
    for (PetscInt h = 0; h < H; h++)
      for (PetscInt w = 0; w < W; w++) out[h * W + w] = band[h * stride[m->axis_h] + w * stride[m->axis_w]];
  }
  for (size_t k = 0; k < need && info->status == ACKD_RASTER_OK; k++)
    if (!isfinite(buf->data[k])) {
      info->status = ACKD_RASTER_NOT_FINITE;
      snprintf(info->reason, sizeof info->reason, "holds NaN or Inf pixels");
    }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdMatInputClose(AckdMatInput *mat)
{
  PetscFunctionBeginUser;
  if (!*mat) PetscFunctionReturn(0);
  if ((*mat)->msi >= 0) H5Dclose((*mat)->msi);
  if ((*mat)->file >= 0) H5Fclose((*mat)->file);
  PetscCall(PetscFree((*mat)->sample));
  PetscCall(PetscFree(*mat));
  PetscFunctionReturn(0);
}
