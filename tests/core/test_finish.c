/* AckdFinish under the failure patterns that make MPI jobs hang.
 *
 *   test_finish collective   every rank fails the same way: exactly one line, exit 1
 *   test_finish stuck        the last rank fails while the others wait in a
 *                            barrier it never enters: the job must abort
 *   test_finish late         the last rank fails, the others finish normally:
 *                            that rank prints one line, the job exits non-zero
 *   test_finish ok           nobody fails: exit 0, nothing printed
 * tests/core/finish.sh runs these and checks exit codes, lines and time. */
#include <ackd/core.h>
#include <string.h>

static PetscErrorCode fail(MPI_Comm comm)
{
  PetscFunctionBeginUser;
  SETERRQ(PETSC_COMM_SELF, PETSC_ERR_FILE_OPEN, "file 'missing.h5' not found; check the path");
}

int main(int argc, char **argv)
{
  const char *mode = argc > 1 ? argv[1] : "ok";
  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  PetscMPIInt rank, size;
  MPI_Comm_rank(PETSC_COMM_WORLD, &rank);
  MPI_Comm_size(PETSC_COMM_WORLD, &size);
  AckdErrorRecord record = {.message = "", .code = 0, .traceback = PETSC_FALSE};
  PetscPushErrorHandler(AckdErrorHandler, &record);
  MPI_Comm finish;
  MPI_Comm_dup(PETSC_COMM_WORLD, &finish);

  PetscErrorCode status = 0;
  int            last   = rank == size - 1;
  if (!strcmp(mode, "collective"))
    status = fail(PETSC_COMM_WORLD);
  else if (!strcmp(mode, "stuck")) {
    if (last)
      status = fail(PETSC_COMM_WORLD);
    else
      MPI_Barrier(PETSC_COMM_WORLD); /* never completes: the last rank is gone */
  } else if (!strcmp(mode, "late") && last)
    status = fail(PETSC_COMM_WORLD);

  PetscPopErrorHandler();
  int code = AckdFinish(finish, "test", status, &record, 2.0);
  MPI_Comm_free(&finish);
  PetscFinalize();
  return code;
}
