/* Library failures as PETSc errors, and the collective end of a run.
 *
 * The end of a run is where HPC jobs most often hang: one rank fails while
 * its peers wait forever in a collective it has left. AckdFinish avoids that
 * without assuming anything about where the peers are. */
#include <ackd/core.h>
#include <dnnl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <limits.h>
#include <unistd.h>

typedef struct {
  char outer[256]; /* the API call that failed, e.g. "unable to open file" */
  char inner[256]; /* the most specific cause, e.g. "truncated file: eof = 1024" */
} H5ErrorText;

static herr_t collect_h5_error(unsigned n, const H5E_error2_t *err, void *ctx)
{
  H5ErrorText *text = ctx;
  /* Walking upward: the first record is the most specific, the last the API call. */
  if (n == 0) snprintf(text->inner, sizeof text->inner, "%s", err->desc ? err->desc : "");
  snprintf(text->outer, sizeof text->outer, "%s", err->desc ? err->desc : "");
  return 0;
}

static void describe_h5_error(char *buf, size_t len)
{
  H5ErrorText text = {{0}, {0}};
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, collect_h5_error, &text);
  H5Eclear2(H5E_DEFAULT);
  if (!text.inner[0])
    snprintf(buf, len, "HDF5 reported no detail");
  else if (!strncmp(text.inner, text.outer, strlen(text.outer)))
    snprintf(buf, len, "%s", text.inner);
  else
    snprintf(buf, len, "%s: %s", text.outer, text.inner);
}

/* "CONTEXT (HDF5: what its error stack says)", CONTEXT from the caller's format. */
static void h5_message(char *buf, size_t len, const char *fmt, va_list ap)
{
  char context[512], detail[520];

  vsnprintf(context, sizeof context, fmt, ap);
  describe_h5_error(detail, sizeof detail);
  snprintf(buf, len, "%s (HDF5: %s)", context, detail);
}

PetscErrorCode AckdH5Fail(const char *func, int line, const char *file, const char *fmt, ...)
{
  char    message[1100];
  va_list ap;

  va_start(ap, fmt);
  h5_message(message, sizeof message, fmt, ap);
  va_end(ap);
  return PetscError(PETSC_COMM_SELF, line, func, file, PETSC_ERR_LIB, PETSC_ERROR_INITIAL, "%s", message);
}

/* Set once a write to a file open on every rank has failed. HDF5 would close such a file at
 * MPI_Finalize, collectively, but after a failed write its ranks no longer agree on what is left
 * to flush (one truncates while another waits at a metadata sync point), and the close hangs. */
static int abandoned_file = 0;

int AckdH5FileAbandoned(void)
{
  return abandoned_file;
}

PetscErrorCode AckdH5Agree(MPI_Comm comm, herr_t status, hid_t loc, const char *func, int line, const char *file,
                           const char *fmt, ...)
{
  PetscMPIInt rank;
  int         mine          = INT_MAX, first;
  char        message[1100] = "";

  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  if (status < 0) mine = rank;
  PetscCallMPI(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm));
  if (first == INT_MAX) return 0;
  if (rank == first) {
    va_list ap;
    va_start(ap, fmt);
    h5_message(message, sizeof message - 64, fmt, ap);
    va_end(ap);
    strcat(message, "; check the free space and quota of its file system");
  }
  H5Eclear2(H5E_DEFAULT);
  PetscCallMPI(MPI_Bcast(message, sizeof message, MPI_CHAR, first, comm));
  return AckdH5FileAbandon(comm, loc, func, line, file, message);
}

PetscErrorCode AckdH5FileAbandon(MPI_Comm comm, hid_t loc, const char *func, int line, const char *file,
                                 const char *message)
{
  PetscMPIInt rank;

  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  abandoned_file = 1;
  if (rank == 0) {
    char    name[PETSC_MAX_PATH_LEN] = "";
    ssize_t n                        = H5Fget_name(loc, name, sizeof name);
    if (n > 5 && (size_t)n < sizeof name && !strcmp(name + n - 5, ".part")) unlink(name);
    H5Eclear2(H5E_DEFAULT);
  }
  return PetscError(PETSC_COMM_SELF, line, func, file, PETSC_ERR_FILE_WRITE, PETSC_ERROR_INITIAL, "%s", message);
}

PetscErrorCode AckdDnnlFail(int status, const char *func, int line, const char *file, const char *fmt, ...)
{
  char    context[512];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(context, sizeof context, fmt, ap);
  va_end(ap);
  const char *why = "unknown status";
  switch ((dnnl_status_t)status) {
  case dnnl_out_of_memory:
    why = "out of memory";
    break;
  case dnnl_invalid_arguments:
    why = "invalid arguments (shapes or formats do not fit)";
    break;
  case dnnl_unimplemented:
    why = "no implementation for these shapes and formats";
    break;
  case dnnl_iterator_ends:
    why = "primitive iterator ended";
    break;
  case dnnl_runtime_error:
    why = "runtime error";
    break;
  case dnnl_not_required:
    why = "operation not required";
    break;
  default:
    break;
  }
  return PetscError(PETSC_COMM_SELF, line, func, file, PETSC_ERR_LIB, PETSC_ERROR_INITIAL, "%s (oneDNN: %s)", context,
                    why);
}

PetscErrorCode AckdErrorHandler(MPI_Comm comm, int line, const char *func, const char *file, PetscErrorCode n,
                                PetscErrorType p, const char *mess, void *ctx)
{
  AckdErrorRecord *record = ctx;

  if (record->traceback) PetscTraceBackErrorHandler(comm, line, func, file, n, p, mess, NULL);
  if (p == PETSC_ERROR_INITIAL && !record->code) {
    const char *generic = NULL;
    if (!mess || !mess[0]) PetscErrorMessage(n, &generic, NULL);
    snprintf(record->message, sizeof record->message, "%s", mess && mess[0] ? mess : (generic ? generic : "error"));
    record->code = n;
  }
  return n;
}

static int exit_code_for(PetscErrorCode code)
{
  return code == PETSC_ERR_USER_INPUT ? ACKD_EXIT_USAGE : ACKD_EXIT_ERROR;
}

static void print_error_line(const char *stage, int rank, int size, const AckdErrorRecord *record)
{
  const char *msg = record && record->message[0] ? record->message : "failed (no message recorded)";
  if (size > 1 && rank != 0)
    fprintf(stderr, "ackd %s: error on rank %d: %s\n", stage, rank, msg);
  else
    fprintf(stderr, "ackd %s: error: %s\n", stage, msg);
  fflush(stderr);
}

int AckdFinish(MPI_Comm comm, const char *stage, PetscErrorCode status, const AckdErrorRecord *record,
               double grace_seconds)
{
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);

  /* Each rank offers its own id if it failed, `size` otherwise; the minimum is
   * the first failed rank, which alone prints, so a collective error reads as
   * one line rather than P copies. */
  int         mine = status ? rank : size, first = size, done = 0;
  MPI_Request request;
  MPI_Iallreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm, &request);
  if (!status) {
    MPI_Wait(&request, MPI_STATUS_IGNORE);
  } else {
    double deadline = AckdTimeNow() + grace_seconds;
    while (!done && AckdTimeNow() < deadline) {
      MPI_Test(&request, &done, MPI_STATUS_IGNORE);
      if (!done) nanosleep(&(struct timespec){0, 2000000}, NULL);
    }
    if (!done) {
      /* The peers are busy elsewhere, most likely blocked in a collective this
       * rank will never enter: take the whole job down rather than hang. */
      print_error_line(stage, rank, size, record);
      MPI_Abort(MPI_COMM_WORLD, exit_code_for(record ? record->code : status));
      return ACKD_EXIT_ERROR;
    }
  }
  if (first == size) return ACKD_EXIT_OK;
  if (rank == first) print_error_line(stage, rank, size, record);
  return status ? exit_code_for(record->code ? record->code : status) : ACKD_EXIT_ERROR;
}

int AckdToolMain(int argc, char **argv, const char *name, PetscErrorCode (*body)(void))
{
  AckdErrorRecord record = {.message = "", .code = 0, .traceback = PETSC_FALSE};
  MPI_Comm        finish; /* private, so a pending message of a failed body cannot match */

  if (PetscInitialize(&argc, &argv, NULL, NULL)) return ACKD_EXIT_ERROR;
  PetscOptionsGetBool(NULL, NULL, "-traceback", &record.traceback, NULL);
  PetscPushErrorHandler(AckdErrorHandler, &record);
  MPI_Comm_dup(PETSC_COMM_WORLD, &finish);
  PetscErrorCode status = body();
  PetscPopErrorHandler();
  int code = AckdFinish(finish, name, status, &record, 5.0);
  MPI_Comm_free(&finish);
  PetscFinalize();
  return code;
}
