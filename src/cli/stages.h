/* The pipeline stages as the `ackd` executable knows them. */
#ifndef ACKD_CLI_STAGES_H
#define ACKD_CLI_STAGES_H

#include <ackd/core.h>

typedef struct {
  const char *name;
  const char *summary;
  const char *arguments;                 /* positional arguments for the usage line, "" if none */
  int         positional;                /* how many positional arguments the stage needs */
  const char *prefixes;                  /* the option prefixes the stage reads, space-separated */
  const char *(*library_prefixes)(void); /* and those of a library object it holds (NULL: none) */
  /* *exit_code stays 0 unless the stage ends early on purpose (75: checkpointed, docs/EXIT_CODES.md). */
  PetscErrorCode (*run)(MPI_Comm comm, int npositional, char **positional, int *exit_code);
  PetscBool stops_on_request; /* SIGUSR1/SIGTERM set a flag its loops poll (docs/EXIT_CODES.md), from its start */
} AckdStage;

const AckdStage *AckdStageFind(const char *name);
void             AckdStagePrintList(FILE *out);

/* Called by every stage once all its objects have read their options and
 * before any work: with -help it reports that the stage should stop (the
 * options were just listed); otherwise it rejects any option nobody read,
 * except those that belong to other stages. One options file serves a whole
 * pipeline, so -match_ot_eps is no error in `train`; a misspelt option of
 * the stage's own prefixes, or one of no stage at all, is. With -check_options
 * it also reports that the stage should stop, once the options passed. */
PetscErrorCode AckdStageReady(MPI_Comm comm, const char *stage, PetscBool *stop);

PetscErrorCode AckdStageSynth(MPI_Comm comm, int npositional, char **positional, int *exit_code);
PetscErrorCode AckdStageCurate(MPI_Comm comm, int npositional, char **positional, int *exit_code);
PetscErrorCode AckdStageInspect(MPI_Comm comm, int npositional, char **positional, int *exit_code);
PetscErrorCode AckdStageMatch(MPI_Comm comm, int npositional, char **positional, int *exit_code);
PetscErrorCode AckdStageTrain(MPI_Comm comm, int npositional, char **positional, int *exit_code);
PetscErrorCode AckdStageDistill(MPI_Comm comm, int npositional, char **positional, int *exit_code);
PetscErrorCode AckdStageSSM(MPI_Comm comm, int npositional, char **positional, int *exit_code);
PetscErrorCode AckdStageEval(MPI_Comm comm, int npositional, char **positional, int *exit_code);
PetscErrorCode AckdStagePredict(MPI_Comm comm, int npositional, char **positional, int *exit_code);

#endif
