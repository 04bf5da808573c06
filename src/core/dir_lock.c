/* One run per output directory. Two runs writing the same checkpoint names would overwrite each
 * other's state; the second is refused at once, naming the first.
 *
 * The lock is a file, DIR/.ackd.lock, created exclusively (O_EXCL is atomic on local file systems,
 * NFSv3 and later, and Lustre) and holding who took it: host, pid, batch job id, time. A run that
 * dies without releasing it leaves it behind; the next run takes it over when the holder is
 * provably gone: the same host and a pid no longer running, or the same batch job (a requeued job
 * keeps its id, on whatever node it lands). Otherwise the refusal says how to remove it. */
#include <ackd/core.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *job_id(void)
{
  const char *id = getenv("SLURM_JOB_ID");
  if (!id || !id[0]) id = getenv("PBS_JOBID");
  return id && id[0] ? id : "-";
}

/* The holder's line: "host pid job time". */
typedef struct {
  char host[256], job[128];
  long pid, since;
} Holder;

static int read_holder(const char *path, Holder *h)
{
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  int n = fscanf(f, "%255s %ld %127s %ld", h->host, &h->pid, h->job, &h->since);
  fclose(f);
  return n == 4;
}

static int create_lock(const char *path)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  char host[256] = "", line[512];
  gethostname(host, sizeof host - 1);
  int n =
      snprintf(line, sizeof line, "%s %ld %s %ld\n", host[0] ? host : "-", (long)getpid(), job_id(), (long)time(NULL));
  int ok = write(fd, line, (size_t)n) == n;
  ok     = close(fd) == 0 && ok;
  if (!ok) {
    unlink(path);
    return EIO;
  }
  return 0;
}

/* A process that has exited but not been reaped: in a container whose first process does not reap
 * orphans (Docker without --init, some Apptainer set-ups), the ranks of a kill -9'd mpirun stay
 * zombies, and kill(pid, 0) still finds them. Linux only; elsewhere the answer is "no". */
static int is_zombie(long pid)
{
  char path[64], text[512];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[n]           = 0;
  const char *paren = strrchr(text, ')'); /* the command name may hold spaces and parentheses */
  return paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X');
}

/* Whether the holder is gone for certain, and why (for the warning). */
static int holder_gone(const Holder *h, char *why, size_t len)
{
  char host[256] = "";
  gethostname(host, sizeof host - 1);
  if (strcmp(h->job, "-") && !strcmp(h->job, job_id())) {
    snprintf(why, len, "it was taken by this batch job (%s) before it was requeued", h->job);
    return 1;
  }
  if (!strcmp(h->host, host) && ((kill((pid_t)h->pid, 0) && errno == ESRCH) || is_zombie(h->pid))) {
    snprintf(why, len, "its process %ld on %s is no longer running", h->pid, h->host);
    return 1;
  }
  return 0;
}

PetscErrorCode AckdDirLockAcquire(MPI_Comm comm, const char *dir, const char *option, AckdDirLock *lock)
{
  PetscMPIInt rank;
  int         err = 0, busy = 0;
  Holder      h                                      = {.host = "", .job = "", .pid = 0, .since = 0};
  char        message[2 * PETSC_MAX_PATH_LEN + 1024] = "";

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  snprintf(lock->path, sizeof lock->path, "%s/.ackd.lock", dir);
  lock->held = PETSC_FALSE;
  if (rank == 0) {
    err = create_lock(lock->path);
    if (err == EEXIST) {
      char why[384];
      if (read_holder(lock->path, &h) && holder_gone(&h, why, sizeof why)) {
        fprintf(stderr, "ackd: warning: taking over the lock '%s': %s\n", lock->path, why);
        unlink(lock->path);
        err = create_lock(lock->path);
      }
    }
    if (err == EEXIST) {
      busy = 1;
      if (h.host[0]) {
        char      since[64] = "?";
        time_t    t         = (time_t)h.since;
        struct tm tm;
        if (localtime_r(&t, &tm)) strftime(since, sizeof since, "%Y-%m-%d %H:%M", &tm);
        snprintf(message, sizeof message,
                 "'%s' is in use by another run (host %s, pid %ld, job %s, since %s); wait for it, choose another %s, "
                 "or remove '%s' if that run is gone",
                 dir, h.host, h.pid, h.job, since, option, lock->path);
      } else
        snprintf(message, sizeof message,
                 "'%s' is locked by another run ('%s' exists); choose another %s, or remove the lock if no run uses "
                 "the directory",
                 dir, lock->path, option);
    } else if (err)
      snprintf(message, sizeof message, "cannot create the lock '%s': %s; check %s", lock->path, strerror(err), option);
  }
  PetscCallMPI(MPI_Bcast(&err, 1, MPI_INT, 0, comm));
  PetscCallMPI(MPI_Bcast(&busy, 1, MPI_INT, 0, comm));
  if (err) PetscCallMPI(MPI_Bcast(message, (int)sizeof message, MPI_CHAR, 0, comm));
  PetscCheck(!err, comm, busy ? PETSC_ERR_FILE_OPEN : PETSC_ERR_FILE_WRITE, "%s", message);
  lock->held = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdDirLockRelease(MPI_Comm comm, AckdDirLock *lock)
{
  PetscMPIInt rank;

  PetscFunctionBeginUser;
  if (!lock->held) PetscFunctionReturn(0);
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  if (rank == 0) unlink(lock->path);
  lock->held = PETSC_FALSE;
  PetscFunctionReturn(0);
}
