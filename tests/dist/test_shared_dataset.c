/* The node-shared copy of a collection against a second, plain read: rank 0
 * opens the file with HDF5's serial driver and compares every byte. */
#include <ackd/dist.h>
#include <string.h>
#include "check.h"

static PetscErrorCode serial_read(const char *path, const char *name, hid_t type, void *buf)
{
  hid_t file, dset;

  PetscFunctionBeginUser;
  AckdCallH5(file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), "opening %s", path);
  AckdCallH5(dset = H5Dopen2(file, name, H5P_DEFAULT), "opening %s", name);
  AckdCallH5(H5Dread(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), "reading %s", name);
  H5Dclose(dset);
  H5Fclose(file);
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  PetscCheck(argc > 1, PETSC_COMM_WORLD, PETSC_ERR_USER_INPUT, "usage: test_shared_dataset DATASET.h5");
  const char          *path = argv[1];
  AckdH5Settings       h5   = {.collective_metadata = PETSC_TRUE, .file_locking = PETSC_FALSE, .alignment = 0};
  AckdSharedDataset    d;
  PetscInt             n, c, h, w;
  const float         *images;
  const int           *labels;
  const unsigned char *split;
  PetscMPIInt          rank;

  MPI_Comm_rank(PETSC_COMM_WORLD, &rank);
  PetscCall(AckdSharedDatasetLoad(PETSC_COMM_WORLD, path, "ms", &h5, &d));
  PetscCall(AckdSharedDatasetGetShape(d, &n, &c, &h, &w));
  PetscCall(AckdSharedDatasetGetArrays(d, &images, &labels, &split));
  /* Every rank compares what it sees through the window with its own serial read. */
  size_t         bytes = sizeof(float) * (size_t)n * c * h * w;
  float         *ref;
  int           *ref_labels;
  unsigned char *ref_split;
  PetscCall(PetscMalloc3(bytes / sizeof(float), &ref, n, &ref_labels, n, &ref_split));
  PetscCall(serial_read(path, "/ms/images", H5T_NATIVE_FLOAT, ref));
  PetscCall(serial_read(path, "/ms/labels", H5T_NATIVE_INT, ref_labels));
  PetscCall(serial_read(path, "/ms/split", H5T_NATIVE_UCHAR, ref_split));
  CHECK(!memcmp(images, ref, bytes), "rank %d: images in the shared window differ from the file", rank);
  CHECK(!memcmp(labels, ref_labels, sizeof(int) * n), "rank %d: labels differ", rank);
  CHECK(!memcmp(split, ref_split, n), "rank %d: splits differ", rank);
  int bad = check_failures, any;
  MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, PETSC_COMM_WORLD);
  check_failures = any;
  PetscCall(PetscFree3(ref, ref_labels, ref_split));
  PetscCall(AckdSharedDatasetDestroy(&d));
  int failed = CHECK_REPORT("test_shared_dataset");
  PetscCall(PetscFinalize());
  return failed;
}
