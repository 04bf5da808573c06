/* Small text inputs (class maps, label tables): rank 0 reads, everyone gets
 * the same bytes, so every rank parses identically and the file system sees
 * one reader rather than P. */
#include <ackd/core.h>

PetscErrorCode AckdReadTextFile(MPI_Comm comm, const char *path, const char *what, char **text)
{
  PetscMPIInt rank;
  long        len = -1;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  *text = NULL;
  if (rank == 0) {
    FILE *f = fopen(path, "rb");
    if (f && !fseek(f, 0, SEEK_END) && (len = ftell(f)) >= 0 && !fseek(f, 0, SEEK_SET)) {
      PetscCall(PetscMalloc1(len + 1, text));
      len          = (long)fread(*text, 1, (size_t)len, f);
      (*text)[len] = '\0';
    }
    if (f) fclose(f);
  }
  PetscCallMPI(MPI_Bcast(&len, 1, MPI_LONG, 0, comm));
  PetscCheck(len >= 0, comm, PETSC_ERR_FILE_OPEN, "%s '%s' not found or not readable; check the path", what, path);
  if (rank != 0) PetscCall(PetscMalloc1(len + 1, text));
  PetscCallMPI(MPI_Bcast(*text, (int)len + 1, MPI_CHAR, 0, comm));
  PetscFunctionReturn(0);
}
