/* `ackd distill`: the shell around an AckdDistillation (src/distill/distillation.c). */
#include "stages.h"
#include <ackd/ckpt.h>
#include <ackd/distill.h>

PetscErrorCode AckdStageDistill(MPI_Comm comm, int npositional, char **positional, int *exit_code)
{
  AckdDistillation distillation;
  PetscBool        stop, stopped = PETSC_FALSE;

  PetscFunctionBeginUser;
  (void)npositional;
  (void)positional;
  PetscCall(AckdDistillationCreate(comm, &distillation));
  PetscCall(AckdDistillationSetFromOptions(distillation));
  PetscCall(AckdStageReady(comm, "distill", &stop));
  if (!stop) {
    PetscCall(AckdDistillationSetUp(distillation));
    PetscCall(AckdDistillationRun(distillation, &stopped));
  }
  if (stopped) *exit_code = ACKD_EXIT_CHECKPOINTED;
  PetscCall(AckdDistillationDestroy(&distillation));
  PetscFunctionReturn(0);
}
