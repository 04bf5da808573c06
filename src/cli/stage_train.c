/* `ackd train`: the shell around an AckdTraining (src/train/training.c). */
#include "stages.h"
#include <ackd/train.h>

PetscErrorCode AckdStageTrain(MPI_Comm comm, int npositional, char **positional, int *exit_code)
{
  AckdTraining training;
  PetscBool    stop, stopped = PETSC_FALSE;

  PetscFunctionBeginUser;
  (void)npositional;
  (void)positional;
  PetscCall(AckdTrainingCreate(comm, &training));
  PetscCall(AckdTrainingSetFromOptions(training));
  PetscCall(AckdStageReady(comm, "train", &stop));
  if (!stop) {
    PetscCall(AckdTrainingSetUp(training));
    PetscCall(AckdTrainingRun(training, &stopped));
  }
  if (stopped) *exit_code = ACKD_EXIT_CHECKPOINTED;
  PetscCall(AckdTrainingDestroy(&training));
  PetscFunctionReturn(0);
}
