/* Paths on a shared file system: created or checked once, by one rank, with
 * one agreed outcome. */
#include <ackd/core.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

PetscErrorCode AckdFileReadable(MPI_Comm comm, const char *path, PetscBool *readable)
{
  PetscMPIInt rank;
  int         ok = 0;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  if (rank == 0) ok = access(path, R_OK) == 0;
  PetscCallMPI(MPI_Bcast(&ok, 1, MPI_INT, 0, comm));
  *readable = (PetscBool)ok;
  PetscFunctionReturn(0);
}
