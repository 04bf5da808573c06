/* `ackd ssm`: the shell around an AckdMatcher (src/kd/matcher.c). */
#include "stages.h"
#include <ackd/ckpt.h>
#include <ackd/kd.h>

PetscErrorCode AckdStageSSM(MPI_Comm comm, int npositional, char **positional, int *exit_code)
{
  AckdMatcher matcher;
  PetscBool   stop, stopped = PETSC_FALSE;

  PetscFunctionBeginUser;
  (void)npositional;
  (void)positional;
  PetscCall(AckdMatcherCreate(comm, &matcher));
  PetscCall(AckdMatcherSetFromOptions(matcher));
  PetscCall(AckdStageReady(comm, "ssm", &stop));
  if (!stop) {
    PetscCall(AckdMatcherSetUp(matcher));
    PetscCall(AckdMatcherRun(matcher, &stopped));
  }
  if (stopped) *exit_code = ACKD_EXIT_CHECKPOINTED;
  PetscCall(AckdMatcherDestroy(&matcher));
  PetscFunctionReturn(0);
}
