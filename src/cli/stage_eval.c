/* `ackd eval`: the shell around an AckdEvaluation (src/train/evaluation.c). */
#include "stages.h"
#include <ackd/train.h>

PetscErrorCode AckdStageEval(MPI_Comm comm, int npositional, char **positional, int *exit_code)
{
  AckdEvaluation evaluation;
  PetscBool      stop, stopped = PETSC_FALSE;

  PetscFunctionBeginUser;
  (void)npositional;
  (void)positional;
  PetscCall(AckdEvaluationCreate(comm, &evaluation));
  PetscCall(AckdEvaluationSetFromOptions(evaluation));
  PetscCall(AckdStageReady(comm, "eval", &stop));
  if (!stop) {
    PetscCall(AckdEvaluationSetUp(evaluation));
    PetscCall(AckdEvaluationRun(evaluation, &stopped));
  }
  if (stopped) *exit_code = ACKD_EXIT_CHECKPOINTED;
  PetscCall(AckdEvaluationDestroy(&evaluation));
  PetscFunctionReturn(0);
}
