/* `ackd curate`: a dataset from real image folders. */
#include "stages.h"
#include <ackd/ckpt.h>
#include <ackd/data.h>

PetscErrorCode AckdStageCurate(MPI_Comm comm, int npositional, char **positional, int *exit_code)
{
  AckdCurate curate;
  PetscBool  stop;

  PetscFunctionBeginUser;
  PetscCall(AckdCurateCreate(comm, &curate));
  PetscCall(AckdCurateSetFromOptions(curate));
  PetscCall(AckdStageReady(comm, "curate", &stop));
  if (!stop) {
    PetscBool stopped;
    PetscCall(AckdCurateRun(curate, &stopped));
    if (stopped) *exit_code = ACKD_EXIT_CHECKPOINTED;
  }
  PetscCall(AckdCurateDestroy(&curate));
  PetscFunctionReturn(0);
}
