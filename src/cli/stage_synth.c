/* `ackd synth`: write the synthetic benchmark. */
#include "stages.h"
#include <ackd/data.h>

PetscErrorCode AckdStageSynth(MPI_Comm comm, int npositional, char **positional, int *exit_code)
{
  AckdSynth synth;
  PetscBool stop;

  PetscFunctionBeginUser;
  PetscCall(AckdSynthCreate(comm, &synth));
  PetscCall(AckdSynthSetFromOptions(synth));
  PetscCall(AckdStageReady(comm, "synth", &stop));
  if (!stop) PetscCall(AckdSynthWrite(synth, NULL));
  PetscCall(AckdSynthDestroy(&synth));
  PetscFunctionReturn(0);
}
