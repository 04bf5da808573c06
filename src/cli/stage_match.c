/* `ackd match`: the shell around an AckdMatching (src/ot/matching.c). */
#include "stages.h"
#include <ackd/ckpt.h>
#include <ackd/ot.h>

PetscErrorCode AckdStageMatch(MPI_Comm comm, int npositional, char **positional, int *exit_code)
{
  AckdMatching matching;
  PetscBool    stop, stopped = PETSC_FALSE;

  PetscFunctionBeginUser;
  (void)npositional;
  (void)positional;
  PetscCall(AckdMatchingCreate(comm, &matching));
  PetscCall(AckdMatchingSetFromOptions(matching));
  PetscCall(AckdStageReady(comm, "match", &stop));
  if (!stop) {
    PetscCall(AckdMatchingSetUp(matching));
    PetscCall(AckdMatchingRun(matching, &stopped));
  }
  if (stopped) *exit_code = ACKD_EXIT_CHECKPOINTED;
  PetscCall(AckdMatchingDestroy(&matching));
  PetscFunctionReturn(0);
}
