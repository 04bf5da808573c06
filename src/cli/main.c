/* ackd: one executable, one subcommand per pipeline stage.
 *
 *   mpirun -n P ackd STAGE [ARGS] [-options_file FILE] [-key value ...]
 *
 * main() owns the process: MPI and PETSc start-up, the command line, the log
 * stage that -log_view reports, and the collective ending in AckdFinish that
 * turns any failure on any rank into one line and a non-zero exit, never a
 * hang. Everything else lives in the library. */
#include "stages.h"
#include <string.h>
#include <unistd.h>

static const char *const HELP_WORDS[] = {"-help", "--help", "-h"};

/* 1 for ackd's own options, 2 for those and PETSc's internal solver options too. */
static int is_help_word(const char *arg)
{
  if (!strcmp(arg, "-help_all") || !strcmp(arg, "--help-all")) return 2;
  for (size_t i = 0; i < sizeof HELP_WORDS / sizeof HELP_WORDS[0]; i++)
    if (!strcmp(arg, HELP_WORDS[i])) return 1;
  return 0;
}

/* A command-line mistake found before PETSc starts: one line, exit 2. */
static int usage_error(int rank, const char *fmt, const char *what)
{
  if (rank == 0) {
    fprintf(stderr, "ackd: error: ");
    fprintf(stderr, fmt, what);
    fputc('\n', stderr);
  }
  MPI_Finalize();
  return ACKD_EXIT_USAGE;
}

/* PETSc would stop with a multi-line trace on a missing options file; check first. */
static const char *missing_options_file(int argc, char **argv)
{
  for (int i = 0; i + 1 < argc; i++)
    if (!strcmp(argv[i], "-options_file") && access(argv[i + 1], R_OK)) return argv[i + 1];
  return NULL;
}

static PetscErrorCode run_stage(const AckdStage *stage, int npositional, char **positional, int *exit_code)
{
  PetscLogStage log_stage;

  PetscFunctionBeginUser;
  PetscCall(PetscLogStageRegister(stage->name, &log_stage));
  PetscCall(PetscLogStagePush(log_stage));
  PetscCall(stage->run(PETSC_COMM_WORLD, npositional, positional, exit_code));
  PetscCall(PetscLogStagePop());
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  int provided, rank;

  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);

  if (argc < 2 || !strcmp(argv[1], "help") || is_help_word(argv[1])) {
    if (rank == 0) AckdStagePrintList(stdout);
    MPI_Finalize();
    return argc < 2 ? ACKD_EXIT_USAGE : ACKD_EXIT_OK;
  }
  if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
    if (rank == 0) printf("ackd %s\n", ACKD_VERSION_STRING);
    MPI_Finalize();
    return ACKD_EXIT_OK;
  }
  const AckdStage *stage = AckdStageFind(argv[1]);
  if (!stage) return usage_error(rank, "unknown stage '%s'; 'ackd help' lists the stages", argv[1]);

  /* argv = ackd STAGE [positional ...] [options ...]: PETSc sees only the options. */
  int    npositional = 0, pargc = 1, want_help = 0;
  char **positional = argv + 2;
  while (2 + npositional < argc && argv[2 + npositional][0] != '-') npositional++;
  char **pargv = malloc(sizeof(char *) * (size_t)(argc + 1));
  pargv[0]     = argv[0];
  for (int i = 2 + npositional; i < argc; i++) {
    if (is_help_word(argv[i]))
      want_help = PetscMax(want_help, is_help_word(argv[i]));
    else
      pargv[pargc++] = argv[i];
  }
  pargv[pargc] = NULL;
  if (!want_help && npositional != stage->positional) {
    free(pargv);
    if (rank == 0)
      fprintf(stderr, "ackd: error: stage '%s' takes %d argument%s (%s), got %d; usage: ackd %s %s [options]\n",
              stage->name, stage->positional, stage->positional == 1 ? "" : "s",
              stage->arguments[0] ? stage->arguments : "none", npositional, stage->name, stage->arguments);
    MPI_Finalize();
    return ACKD_EXIT_USAGE;
  }
  const char *missing = missing_options_file(pargc, pargv);
  if (missing) {
    free(pargv);
    return usage_error(rank, "options file '%s' not found or not readable; check the -options_file path", missing);
  }

  char **petsc_argv = pargv;
  if (PetscInitialize(&pargc, &petsc_argv, NULL, NULL)) {
    free(pargv);
    if (rank == 0) fprintf(stderr, "ackd %s: error: PETSc failed to start (see the message above)\n", stage->name);
    MPI_Abort(MPI_COMM_WORLD, ACKD_EXIT_ERROR);
  }
  /* Only now, so -help lists this stage's options rather than all of PETSc's start-up ones. */
  if (want_help) {
    AckdOptionsHelpSetUp(want_help == 2 ? PETSC_TRUE : PETSC_FALSE);
    if (rank == 0)
      printf("usage: ackd %s%s%s [options]\n%s\n\nOptions as -name <type> default D, now V (V: the value the "
             "options file or command line gives). -options_file, -quiet, -log_view, -check_options and -traceback "
             "apply to every stage; -help_all adds the PETSc options of the solvers inside (Tao, KSP, PC).\n",
             stage->name, stage->arguments[0] ? " " : "", stage->arguments, stage->summary);
  }

  AckdErrorRecord record = {.message = "", .code = 0, .traceback = PETSC_FALSE};
  PetscOptionsGetBool(NULL, NULL, "-traceback", &record.traceback, NULL);
  PetscPushErrorHandler(AckdErrorHandler, &record);
  MPI_Comm finish_comm; /* private, so a pending message of a failed stage cannot match */
  MPI_Comm_dup(PETSC_COMM_WORLD, &finish_comm);

  int            stage_code = 0;
  PetscErrorCode status     = run_stage(stage, npositional, positional, &stage_code);

  PetscPopErrorHandler();
  int code = AckdFinish(finish_comm, stage->name, status, &record, 5.0);
  if (code == ACKD_EXIT_OK) code = stage_code; /* e.g. 75: stopped by a signal after checkpointing */
  MPI_Comm_free(&finish_comm);
  PetscFinalize();
  free(pargv);
  MPI_Finalize();
  return code;
}
