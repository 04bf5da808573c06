/* Rank-0 logging. Informational lines go to stdout so they can be captured
 * with the job's results; warnings go to stderr so they are never silenced. */
#include <ackd/core.h>
#include <stdarg.h>
#include <string.h>

PetscErrorCode AckdLogSetUp(AckdLog *log, MPI_Comm comm)
{
  PetscFunctionBeginUser;
  log->comm  = comm;
  log->quiet = PETSC_FALSE;
  PetscCall(PetscOptionsGetBool(NULL, NULL, "-quiet", &log->quiet, NULL));
  PetscFunctionReturn(0);
}

static PetscErrorCode log_vprint(const AckdLog *log, FILE *stream, const char *prefix, const char *fmt, va_list ap)
{
  PetscMPIInt rank;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(log->comm, &rank));
  if (rank == 0) {
    /* One write per line: mpirun forwards a rank's stdout and stderr separately, chunk by chunk,
     * and a line written in two pieces can come out with another stream's line between them. */
    char    line[8192];
    size_t  lead = prefix ? strlen(prefix) : 0;
    va_list again;
    if (lead >= sizeof line) lead = 0;
    memcpy(line, prefix ? prefix : "", lead);
    va_copy(again, ap);
    int n = vsnprintf(line + lead, sizeof line - lead, fmt, ap);
    if (n >= 0 && lead + (size_t)n < sizeof line)
      fputs(line, stream);
    else { /* longer than the buffer: in two writes after all */
      if (prefix) fputs(prefix, stream);
      vfprintf(stream, fmt, again);
    }
    va_end(again);
    fflush(stream);
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdLogInfo(const AckdLog *log, const char *fmt, ...)
{
  va_list ap;

  PetscFunctionBeginUser;
  if (log->quiet) PetscFunctionReturn(0);
  va_start(ap, fmt);
  PetscErrorCode ierr = log_vprint(log, stdout, NULL, fmt, ap);
  va_end(ap);
  PetscCall(ierr);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdLogResult(const AckdLog *log, const char *fmt, ...)
{
  va_list ap;

  PetscFunctionBeginUser;
  va_start(ap, fmt);
  PetscErrorCode ierr = log_vprint(log, stdout, NULL, fmt, ap);
  va_end(ap);
  PetscCall(ierr);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdLogWarn(const AckdLog *log, const char *fmt, ...)
{
  va_list ap;

  PetscFunctionBeginUser;
  va_start(ap, fmt);
  PetscErrorCode ierr = log_vprint(log, stderr, "ackd: warning: ", fmt, ap);
  va_end(ap);
  PetscCall(ierr);
  PetscFunctionReturn(0);
}
