/* `ackd predict`: a trained model applied to new images or a whole scene. */
#include "stages.h"
#include <ackd/predict.h>

PetscErrorCode AckdStagePredict(MPI_Comm comm, int npositional, char **positional, int *exit_code)
{
  AckdPredictor predictor;
  PetscBool     stop;

  PetscFunctionBeginUser;
  (void)npositional;
  (void)positional;
  PetscCall(AckdPredictorCreate(comm, &predictor));
  PetscCall(AckdPredictorSetFromOptions(predictor));
  PetscCall(AckdStageReady(comm, "predict", &stop));
  if (!stop) {
    PetscBool stopped;
    PetscCall(AckdPredictorRun(predictor, &stopped));
    if (stopped) *exit_code = ACKD_EXIT_CHECKPOINTED;
  }
  PetscCall(AckdPredictorDestroy(&predictor));
  PetscFunctionReturn(0);
}
