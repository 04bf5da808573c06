/* The stage table: what `ackd help` lists and what main() dispatches to. */
#include "stages.h"
#include <ackd/kd.h>
#include <string.h>

static const AckdStage STAGES[] = {
    {"synth", "generate the synthetic asymmetric MS/RGB benchmark (parallel HDF5)", "", 0, "synth_", NULL,
     AckdStageSynth, PETSC_TRUE},
    {"curate", "build a dataset from image folders (MS GeoTIFF, RGB JPEG/PNG/TIFF) through GDAL", "", 0, "curate_",
     NULL, AckdStageCurate, PETSC_TRUE},
    {"train", "train the teacher on MS (or the no-KD student on RGB), data parallel, resumable", "", 0,
     "train_ teacher_", NULL, AckdStageTrain, PETSC_TRUE},
    {"ssm", "train the self-supervised matcher (MS and pseudo-RGB encoders), write the embeddings for match", "", 0,
     "ssm_", NULL, AckdStageSSM, PETSC_TRUE},
    {"match", "match teacher to student samples by distributed optimal transport (writes a match file)", "", 0,
     "match_", NULL, AckdStageMatch, PETSC_TRUE},
    {"distill", "train the RGB student from the frozen MS teacher with a KD method (-kd_method, -sembridge)", "", 0,
     "distill_ student_ dynm_", AckdKDOptionPrefixes, AckdStageDistill, PETSC_TRUE},
    {"eval", "evaluate a checkpoint on a split: OA, per-class accuracy, confusion matrix", "", 0, "eval_", NULL,
     AckdStageEval, PETSC_TRUE},
    {"predict", "apply a checkpoint to a folder of images or a whole GeoTIFF scene (sliding window, class map)", "", 0,
     "predict_", NULL, AckdStagePredict, PETSC_TRUE},
    {"inspect", "summarise any ackd HDF5 file: groups, shapes, classes, splits, band statistics", "FILE", 1, "", NULL,
     AckdStageInspect, PETSC_FALSE},
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
  fprintf(out, "\n'ackd STAGE -help' lists a stage's options with their defaults and meanings; 'ackd STAGE -help_all'\n"
               "adds the PETSc options of the solvers inside the stage (Tao, KSP, PC: rarely needed).\n"
               "Options common to every stage:\n"
               "  -options_file FILE   read options from FILE (PETSc format: one '-key value' per line)\n"
               "  -quiet               no progress bars or informational output\n"
               "  -log_view            profile: time, flops and messages per stage and event\n"
               "  -check_options       read and check every option, then exit without doing any work\n"
               "  -traceback           print PETSc's full error stack, not just one line\n");
}

/* Whether `prefix` (with its trailing '_') is one of the space-separated `list`. */
static PetscBool in_list(const char *list, const char *prefix, size_t len)
{
  for (const char *p = list; *p;) {
    while (*p == ' ') p++;
    size_t n = strcspn(p, " ");
    if (n == len && !strncmp(p, prefix, len)) return PETSC_TRUE;
    p += n;
  }
  return PETSC_FALSE;
}

/* Every prefix the stage reads: its own and its library objects'. */
static void stage_prefixes(const AckdStage *stage, char *list, size_t len)
{
  snprintf(list, len, "%s %s", stage->prefixes, stage->library_prefixes ? stage->library_prefixes() : "");
}

PetscErrorCode AckdStageReady(MPI_Comm comm, const char *stage, PetscBool *stop)
{
  const AckdStage *self         = AckdStageFind(stage);
  char             foreign[512] = "", own[512] = "", other[512];
  PetscBool        check_only = PETSC_FALSE;

  PetscFunctionBeginUser;
  PetscCall(PetscOptionsGetBool(NULL, NULL, "-check_options", &check_only, NULL));
  PetscCall(AckdOptionsHelpRequested(stop));
  if (*stop) PetscFunctionReturn(0);
  /* Prefixes that other stages read and this one does not. A prefix shared by
   * several stages (teacher_) that this stage reads stays checked here. */
  if (self) stage_prefixes(self, own, sizeof own);
  for (size_t i = 0; i < sizeof STAGES / sizeof STAGES[0]; i++) {
    stage_prefixes(&STAGES[i], other, sizeof other);
    for (const char *p = other; *p;) {
      while (*p == ' ') p++;
      size_t n = strcspn(p, " ");
      if (n && !in_list(own, p, n) && !in_list(foreign, p, n)) {
        size_t used = strlen(foreign);
        snprintf(foreign + used, sizeof foreign - used, " %.*s", (int)n, p);
      }
      p += n;
    }
  }
  /* Testing: a set-up that lasts this many seconds (reading a large collection does), so that a
   * test can signal the stage before its first step. Read before the check, which it must pass. */
  PetscReal setup_delay = 0;
  PetscCall(PetscOptionsGetReal(NULL, NULL, "-debug_setup_delay", &setup_delay, NULL));
  PetscCall(AckdOptionsCheckUnused(comm, stage, foreign));
  /* A job script can validate its command line on a login node before it queues for hours. */
  if (check_only) {
    PetscCall(PetscPrintf(comm, "ackd %s: options ok\n", stage));
    *stop = PETSC_TRUE;
  }
  if (!*stop) AckdSleep(setup_delay);
  PetscFunctionReturn(0);
}
