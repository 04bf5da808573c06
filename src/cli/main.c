/* ackd: one executable, one subcommand per pipeline stage.
 *
 *   mpirun -n P ackd STAGE [ARGS] [-options_file FILE] [-key value ...]
 *
 * main() owns the process: MPI and PETSc start-up, the command line, the log
 * stage that -log_view reports, and the collective ending in AckdFinish that
 * turns any failure on any rank into one line and a non-zero exit, never a
 * hang. Everything else lives in the library. */
#include "stages.h"
#include <ackd/ckpt.h>
#include <ctype.h>
#include <string.h>
#include <strings.h>
#include <time.h>
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

/* A launcher killed by SIGTERM reports its own failure (Open MPI's mpirun exits 1) even when
 * every rank stopped cleanly with 75. A job script that must tell the two apart names a file in
 * ACKD_STOP_RECORD; rank 0 writes it, whole or not at all, once the checkpoint is on disk. */
static void record_stop(int rank, const char *stage)
{
  const char *path = getenv("ACKD_STOP_RECORD");
  char        part[4096];
  FILE       *f;

  if (rank != 0 || !path || !path[0]) return;
  if (snprintf(part, sizeof part, "%s.part", path) >= (int)sizeof part) return;
  if (!(f = fopen(part, "w"))) return;
  int ok = fprintf(f, "ackd %s stopped on request; exit %d\n", stage, ACKD_EXIT_CHECKPOINTED) > 0;
  ok     = (fclose(f) == 0) && ok;
  if (!ok || rename(part, path)) {
    fprintf(stderr, "ackd %s: warning: cannot write the stop record '%s' (ACKD_STOP_RECORD)\n", stage, path);
    remove(part);
  }
}

/* A word that starts an option; -1 and -.5 are values (PETSc reads them so too). */
static int is_option_word(const char *w)
{
  return w[0] == '-' && !isdigit((unsigned char)w[1]) && !(w[1] == '.' && isdigit((unsigned char)w[2]));
}

static int is_bool_word(const char *w)
{
  static const char *const words[] = {"true", "false", "yes", "no", "on", "off", "1", "0"};
  for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
    if (!strcasecmp(w, words[i])) return 1;
  return 0;
}

/* Whether `value`, the word after `option`, is that option's value. Options
 * are "-key value" pairs, but the common flags are complete alone, so that in
 * `ackd inspect -quiet FILE` FILE is the argument: a flag takes only a boolean
 * (and -log_view only a viewer such as ascii:FILE). */
static int is_value_of(const char *option, const char *value)
{
  static const char *const flags[] = {"-quiet",        "-traceback",       "-check_options",         "-options_left",
                                      "-h5_streaming", "-h5_file_locking", "-h5_collective_metadata"};
  if (!strcmp(option, "-log_view")) return strchr(value, ':') != NULL;
  for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
    if (!strcmp(option, flags[i])) return is_bool_word(value);
  return 1;
}

/* PETSc stops with some twenty lines of trace on an options file it cannot
 * read or parse (a line without its leading dash): check each file here, before
 * PETSc starts, so the fault is one line naming the file, the line and the fix.
 * Files named inside files are checked too. Returns 1 and the message on a fault. */
static int check_options_file(const char *path, int depth, char *msg, size_t len)
{
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(msg, len, "options file '%s' not found or not readable; check the -options_file path", path);
    return 1;
  }
  char line[4096];
  int  n = 0, bad = 0;
  while (!bad && fgets(line, sizeof line, f)) {
    n++;
    char *hash = strchr(line, '#'); /* PETSc's comments; '!' is not one */
    if (hash) *hash = '\0';
    char *word = line + strspn(line, " \t\r\n");
    if (!*word) continue;
    word[strcspn(word, "\r\n")] = '\0';
    size_t wlen                 = strcspn(word, " \t");
    if (word[0] == '-') {
      char *value                  = word + wlen + strspn(word + wlen, " \t");
      value[strcspn(value, " \t")] = '\0';
      if (wlen == 13 && !strncmp(word, "-options_file", 13) && value[0] && depth < 8)
        bad = check_options_file(value, depth + 1, msg, len);
      continue;
    }
    if (wlen == 5 && !strncmp(word, "alias", 5)) { /* PETSc's 'alias -new -old' */
      char  *rest  = word + wlen + strspn(word + wlen, " \t");
      size_t first = strcspn(rest, " \t");
      if (rest[0] == '-' && rest[first + strspn(rest + first, " \t")] == '-') continue;
      snprintf(msg, len, "options file '%s' line %d: '%s' is not an alias; write 'alias -NEW_NAME -EXISTING_OPTION'",
               path, n, word);
      bad = 1;
      continue;
    }
    if (isalpha((unsigned char)word[0]))
      snprintf(msg, len, "options file '%s' line %d: '%s' is not an option (each line is '-key value'); write '-%s'",
               path, n, word, word);
    else
      snprintf(msg, len,
               "options file '%s' line %d: '%s' is not an option (each line is '-key value'); start it with '-', or "
               "with '#' for a comment",
               path, n, word);
    bad = 1;
  }
  fclose(f);
  return bad;
}

static PetscErrorCode run_stage(const AckdStage *stage, int npositional, char **positional, int *exit_code)
{
  PetscLogStage log_stage;

  PetscFunctionBeginUser;
  PetscCall(PetscLogStageRegister(stage->name, &log_stage));
  PetscCall(PetscLogStagePush(log_stage));
  /* From the start, not from the first step: a scheduler's signal during the set-up (reading a
   * large collection takes seconds to minutes) would otherwise kill the ranks by its default
   * action, and the job would fail instead of being requeued with exit 75. */
  if (stage->stops_on_request) PetscCall(AckdStopRequestInstall());
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

  /* argv = ackd STAGE, then arguments and options in any order: PETSc sees only the options. */
  int    npositional = 0, pargc = 1, want_help = 0;
  char **positional = malloc(sizeof(char *) * (size_t)argc);
  char **pargv      = malloc(sizeof(char *) * (size_t)(argc + 1));
  if (!positional || !pargv) { /* before PetscInitialize, so PETSc's allocator is not there yet */
    free(pargv);
    free(positional);
    return usage_error(rank, "out of memory while reading the %s arguments", "command line's");
  }
  pargv[0] = argv[0];
  for (int i = 2; i < argc; i++) {
    if (!argv[i][0]) continue; /* an empty word, as "${opts[@]/-quiet/}" leaves: nothing, as PETSc takes it */
    if (is_help_word(argv[i])) {
      want_help = PetscMax(want_help, is_help_word(argv[i]));
    } else if (is_option_word(argv[i])) {
      pargv[pargc++] = argv[i];
      if (i + 1 < argc && !is_option_word(argv[i + 1]) && is_value_of(argv[i], argv[i + 1])) pargv[pargc++] = argv[++i];
    } else {
      positional[npositional++] = argv[i];
    }
  }
  pargv[pargc] = NULL;
  if (!want_help && npositional != stage->positional) {
    free(pargv);
    free(positional);
    if (rank == 0)
      fprintf(stderr, "ackd: error: stage '%s' takes %d argument%s (%s), got %d; usage: ackd %s %s [options]\n",
              stage->name, stage->positional, stage->positional == 1 ? "" : "s",
              stage->arguments[0] ? stage->arguments : "none", npositional, stage->name, stage->arguments);
    MPI_Finalize();
    return ACKD_EXIT_USAGE;
  }
  /* Rank 0 reads the options files; every rank learns the outcome. */
  char message[PETSC_MAX_PATH_LEN * 2 + 256] = "";
  int  bad                                   = 0;
  for (int i = 1; i < pargc && !bad; i++) {
    if (strcmp(pargv[i], "-options_file")) continue;
    if (i + 1 >= pargc || is_option_word(pargv[i + 1])) {
      snprintf(message, sizeof message, "option -options_file needs a file name");
      bad = 1;
    } else if (rank == 0) {
      bad = check_options_file(pargv[i + 1], 0, message, sizeof message);
    }
  }
  MPI_Bcast(&bad, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (bad) {
    free(pargv);
    free(positional);
    return usage_error(rank, "%s", message);
  }

  char **petsc_argv = pargv;
  int    failed = PetscInitialize(&pargc, &petsc_argv, NULL, NULL) != 0, counts[2] = {failed, 1}, totals[2] = {0, 0};
  /* Ranks that all failed end normally with exit 2 (the options are at
   * fault). PETSc may fail on rank 0 alone while it reads an options file, the
   * others waiting in its broadcast: a failed rank whose peers do not arrive
   * within 5 s takes the job down rather than hang. */
  MPI_Request agree;
  int         done = 0;
  MPI_Iallreduce(counts, totals, 2, MPI_INT, MPI_SUM, MPI_COMM_WORLD, &agree);
  for (double start = MPI_Wtime(); failed && !done && MPI_Wtime() - start < 5.0;) {
    MPI_Test(&agree, &done, MPI_STATUS_IGNORE);
    if (!done) nanosleep(&(struct timespec){0, 2000000}, NULL);
  }
  if (failed && !done) {
    fprintf(stderr, "ackd %s: error: PETSc failed to start (see the message above); check the options\n", stage->name);
    MPI_Abort(MPI_COMM_WORLD, ACKD_EXIT_USAGE);
  }
  if (!failed) MPI_Wait(&agree, MPI_STATUS_IGNORE);
  if (totals[0]) {
    free(pargv);
    free(positional);
    if (rank == 0)
      fprintf(stderr, "ackd %s: error: PETSc failed to start (see the message above); check the options\n",
              stage->name);
    if (totals[0] != totals[1]) MPI_Abort(MPI_COMM_WORLD, ACKD_EXIT_USAGE);
    MPI_Finalize();
    return ACKD_EXIT_USAGE;
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
  if (code == ACKD_EXIT_CHECKPOINTED) record_stop(rank, stage->name);
  if (AckdH5FileAbandoned()) {
    /* Every rank agreed on the failed write and the error line is out: end here, before HDF5's
     * collective close at MPI_Finalize can hang on the half-written file (its .part is gone). */
    fflush(stdout);
    fflush(stderr);
    _exit(code);
  }
  MPI_Comm_free(&finish_comm);
  PetscFinalize();
  free(pargv);
  free(positional);
  MPI_Finalize();
  return code;
}
