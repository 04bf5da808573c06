/* The pipeline stages as the `ackd` executable knows them. */
#ifndef ACKD_CLI_STAGES_H
#define ACKD_CLI_STAGES_H

#include <ackd/core.h>

typedef struct {
  const char *name;
  const char *summary;
  const char *arguments;  /* positional arguments for the usage line, "" if none */
  int         positional; /* how many positional arguments the stage needs */
  PetscErrorCode (*run)(MPI_Comm comm, int npositional, char **positional);
} AckdStage;

const AckdStage *AckdStageFind(const char *name);
void             AckdStagePrintList(FILE *out);

/* Called by every stage once all its objects have read their options and
 * before any work: with -help it reports that the stage should stop (the
 * options were just listed); otherwise it rejects any option nobody read. */
PetscErrorCode AckdStageReady(MPI_Comm comm, const char *stage, PetscBool *stop);

PetscErrorCode AckdStageSynth(MPI_Comm comm, int npositional, char **positional);
PetscErrorCode AckdStageCurate(MPI_Comm comm, int npositional, char **positional);
PetscErrorCode AckdStageInspect(MPI_Comm comm, int npositional, char **positional);
PetscErrorCode AckdStageMatch(MPI_Comm comm, int npositional, char **positional);

#endif
