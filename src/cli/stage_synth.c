/* `ackd synth`: write the synthetic benchmark. */
#include "stages.h"
#include <ackd/ckpt.h>
#include <ackd/data.h>

PetscErrorCode AckdStageSynth(MPI_Comm comm, int npositional, char **positional, int *exit_code)
{
  AckdSynth synth;
  PetscBool stop;

  PetscFunctionBeginUser;
  PetscCall(AckdSynthCreate(comm, &synth));
  PetscCall(AckdSynthSetFromOptions(synth));
  PetscCall(AckdStageReady(comm, "synth", &stop));
  if (!stop) {
    PetscBool stopped;
    PetscCall(AckdSynthWrite(synth, NULL, &stopped));
    if (stopped) *exit_code = ACKD_EXIT_CHECKPOINTED;
  }
  PetscCall(AckdSynthDestroy(&synth));
  PetscFunctionReturn(0);
}
