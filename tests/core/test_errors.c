/* Library failures become PETSc errors that carry ackd's context and the
 * library's own reason: HDF5, oneDNN and MPI. */
#include <ackd/core.h>
#include <dnnl.h>
#include <string.h>
#include "check.h"

static PetscErrorCode open_missing_file(void)
{
  hid_t file;

  PetscFunctionBeginUser;
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  AckdCallH5(file = H5Fopen("/nonexistent/ackd.h5", H5F_ACC_RDONLY, H5P_DEFAULT), "opening checkpoint '%s'",
             "/nonexistent/ackd.h5");
  H5Fclose(file);
  PetscFunctionReturn(0);
}

static PetscErrorCode bad_memory_descriptor(void)
{
  dnnl_memory_desc_t md;
  dnnl_dims_t        dims = {-4, 3, 8, 8};

  PetscFunctionBeginUser;
  AckdCallDnnl(dnnl_memory_desc_init_by_tag(&md, 4, dims, dnnl_f32, dnnl_nchw), "describing the input of layer %s",
               "conv1");
  PetscFunctionReturn(0);
}

static PetscErrorCode send_to_missing_rank(void)
{
  MPI_Comm comm;
  int      x = 0, size;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_dup(PETSC_COMM_WORLD, &comm));
  PetscCallMPI(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCallMPI(MPI_Send(&x, 1, MPI_INT, size + 5, 0, comm));
  PetscFunctionReturn(0);
}

static void expect(PetscErrorCode (*f)(void), const char *what, const char *a, const char *b)
{
  AckdErrorRecord record;
  memset(&record, 0, sizeof record);
  PetscPushErrorHandler(AckdErrorHandler, &record);
  PetscErrorCode ierr = f();
  PetscPopErrorHandler();
  CHECK(ierr != 0, "%s must fail", what);
  CHECK(strstr(record.message, a) != NULL, "%s: '%s' lacks '%s'", what, record.message, a);
  CHECK(strstr(record.message, b) != NULL, "%s: '%s' lacks '%s'", what, record.message, b);
  printf("%s -> %s\n", what, record.message);
}

int main(int argc, char **argv)
{
  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  expect(open_missing_file, "HDF5", "opening checkpoint '/nonexistent/ackd.h5'", "(HDF5: unable to open file");
  expect(bad_memory_descriptor, "oneDNN", "describing the input of layer conv1", "(oneDNN: invalid arguments");
  expect(send_to_missing_rank, "MPI", "MPI error", "MPI_ERR_");
  int failed = CHECK_REPORT("test_errors");
  PetscCall(PetscFinalize());
  return failed;
}
