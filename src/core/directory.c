/* Output directories: created once, by one rank, with one agreed outcome. */
#include <ackd/core.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

PetscErrorCode AckdDirectoryCreate(MPI_Comm comm, const char *dir, const char *option)
{
  PetscMPIInt rank;
  int         err = 0;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  /* Rank 0 alone: on a parallel file system P concurrent mkdirs only load the metadata server. */
  if (rank == 0 && mkdir(dir, 0777) && errno != EEXIST) err = errno;
  PetscCallMPI(MPI_Bcast(&err, 1, MPI_INT, 0, comm));
  PetscCheck(!err, comm, PETSC_ERR_FILE_WRITE, "cannot create directory '%s': %s; check %s", dir, strerror(err),
             option);
  PetscFunctionReturn(0);
}
