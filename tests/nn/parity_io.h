/* Writing arrays, tensors and parameter sets to HDF5 for the PyTorch parity
 * scripts (serial HDF5 calls: these tests run on one rank). */
#ifndef ACKD_TESTS_NN_PARITY_IO_H
#define ACKD_TESTS_NN_PARITY_IO_H

#include <ackd/nn.h>

static inline PetscErrorCode write_array(hid_t loc, const char *name, const float *data, int rank,
                                         const PetscInt *shape)
{
  hsize_t dims[4];
  hid_t   space, dset;

  PetscFunctionBeginUser;
  for (int i = 0; i < rank; i++) dims[i] = (hsize_t)shape[i];
  AckdCallH5(space = H5Screate_simple(rank, dims, NULL), "dataspace of %s", name);
  AckdCallH5(dset = H5Dcreate2(loc, name, H5T_NATIVE_FLOAT, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
             "creating %s", name);
  AckdCallH5(H5Dwrite(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "writing %s", name);
  H5Dclose(dset);
  H5Sclose(space);
  PetscFunctionReturn(0);
}

static inline PetscErrorCode write_tensor(hid_t loc, const char *name, const AckdTensor *t)
{
  PetscInt shape[4] = {t->n, t->c, t->h, t->w};

  PetscFunctionBeginUser;
  PetscCall(write_array(loc, name, t->data, 4, shape));
  PetscFunctionReturn(0);
}

static inline PetscErrorCode write_entries(hid_t group, const char *sub, const AckdParamEntry *entries, PetscInt n,
                                           const float *base)
{
  hid_t g;

  PetscFunctionBeginUser;
  AckdCallH5(g = H5Gcreate2(group, sub, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "creating group %s", sub);
  for (PetscInt i = 0; i < n; i++)
    PetscCall(write_array(g, entries[i].name, base + entries[i].offset, 1, &entries[i].size));
  H5Gclose(g);
  PetscFunctionReturn(0);
}

#endif
