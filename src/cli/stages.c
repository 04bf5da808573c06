/* The stage table: what `ackd help` lists and what main() dispatches to. */
#include "stages.h"
#include <string.h>

static const AckdStage STAGES[] = {
    {"synth", "generate the synthetic asymmetric MS/RGB benchmark (parallel HDF5)", "", 0, AckdStageSynth},
    {"curate", "build a dataset from image folders (MS GeoTIFF, RGB JPEG/PNG/TIFF) through GDAL", "", 0,
     AckdStageCurate},
    {"inspect", "summarise any ackd HDF5 file: groups, shapes, classes, splits, band statistics", "FILE", 1,
     AckdStageInspect},
    {"match", "match teacher to student samples by distributed optimal transport (writes a match file)", "", 0,
     AckdStageMatch},
};

const AckdStage *AckdStageFind(const char *name)
{
  for (size_t i = 0; i < sizeof STAGES / sizeof STAGES[0]; i++)
    if (!strcmp(STAGES[i].name, name)) return &STAGES[i];
  return NULL;
}

void AckdStagePrintList(FILE *out)
{
  fprintf(out, "usage: mpirun -n P ackd STAGE [ARGS] [-options_file FILE] [-option value ...]\n\nstages:\n");
  for (size_t i = 0; i < sizeof STAGES / sizeof STAGES[0]; i++)
    fprintf(out, "  %-10s %-6s %s\n", STAGES[i].name, STAGES[i].arguments, STAGES[i].summary);
  fprintf(out, "\n'ackd STAGE -help' lists a stage's options with their defaults and meanings.\n"
               "Options common to every stage:\n"
               "  -options_file FILE   read options from FILE (PETSc format: one '-key value' per line)\n"
               "  -quiet               no progress bars or informational output\n"
               "  -log_view            profile: time, flops and messages per stage and event\n"
               "  -traceback           print PETSc's full error stack, not just one line\n");
}

PetscErrorCode AckdStageReady(MPI_Comm comm, const char *stage, PetscBool *stop)
{
  PetscFunctionBeginUser;
  PetscCall(PetscOptionsHasHelp(NULL, stop));
  if (*stop) PetscFunctionReturn(0);
  PetscCall(AckdOptionsCheckUnused(comm, stage));
  PetscFunctionReturn(0);
}
