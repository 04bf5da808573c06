/* Paths on a shared file system: created or checked once, by one rank, with
 * one agreed outcome. */
#include <ackd/core.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* mkdir -p: creates every missing directory of `dir`, parents first. On
 * failure returns errno and leaves in `failed` the directory that could not
 * be made (a parent, when that is where it went wrong). */
static int make_directories(const char *dir, char *failed, size_t len)
{
  char        path[PETSC_MAX_PATH_LEN];
  struct stat st;
  size_t      n = strlen(dir);

  if (n == 0 || n >= sizeof path) {
    snprintf(failed, len, "%s", dir);
    return n ? ENAMETOOLONG : ENOENT;
  }
  memcpy(path, dir, n + 1);
  for (char *p = path + 1;; p++) {
    if (*p != '/' && *p != '\0') continue;
    char end = *p;
    *p       = '\0';
    if (mkdir(path, 0777) && errno != EEXIST) {
      int err = errno;
      snprintf(failed, len, "%s", path);
      return err;
    }
    /* EEXIST also for a file of that name: only a directory will hold the outputs. */
    if (stat(path, &st) || !S_ISDIR(st.st_mode)) {
      snprintf(failed, len, "%s", path);
      return ENOTDIR;
    }
    *p = end;
    if (end == '\0') return 0;
    while (p[1] == '/') p++;    /* a//b */
    if (p[1] == '\0') return 0; /* a trailing slash */
  }
}

/* Whether a file can be created in `dir`, by creating one: access(W_OK) says yes to root on a
 * read-only mount, and to everyone where an ACL or a quota says no. */
static int probe_writable(const char *dir)
{
  char probe[PETSC_MAX_PATH_LEN + 64];
  snprintf(probe, sizeof probe, "%s/.ackd-write-probe.%ld", dir, (long)getpid());
  int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return errno;
  close(fd);
  unlink(probe);
  return 0;
}

PetscErrorCode AckdDirectoryCreate(MPI_Comm comm, const char *dir, const char *option)
{
  PetscMPIInt rank;
  int         err                        = 0;
  char        failed[PETSC_MAX_PATH_LEN] = "";

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  /* Rank 0 alone: on a parallel file system P concurrent mkdirs only load the
   * metadata server. The outcome, and where it failed, is every rank's. Checked
   * before any work, so a read-only output is not found after an epoch. */
  if (rank == 0) err = make_directories(dir, failed, sizeof failed);
  if (rank == 0 && !err && (err = probe_writable(dir))) snprintf(failed, sizeof failed, "%s", dir);
  PetscCallMPI(MPI_Bcast(&err, 1, MPI_INT, 0, comm));
  if (err) PetscCallMPI(MPI_Bcast(failed, (int)sizeof failed, MPI_CHAR, 0, comm));
  PetscCheck(!err || strcmp(failed, dir), comm, PETSC_ERR_FILE_WRITE,
             "cannot create or write in directory '%s': %s; check %s", dir, strerror(err), option);
  PetscCheck(!err, comm, PETSC_ERR_FILE_WRITE,
             "cannot create directory '%s' (for '%s'): %s; check %s or create it first", failed, dir, strerror(err),
             option);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOutputFileCheck(MPI_Comm comm, const char *path, const char *option)
{
  char        dir[PETSC_MAX_PATH_LEN];
  const char *slash = strrchr(path, '/');

  PetscFunctionBeginUser;
  if (!slash)
    snprintf(dir, sizeof dir, ".");
  else
    snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
  PetscCall(AckdDirectoryCreate(comm, dir, option));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdFileReadable(MPI_Comm comm, const char *path, PetscBool *readable)
{
  PetscMPIInt rank;
  int         ok = 0;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  if (rank == 0) ok = access(path, R_OK) == 0;
  PetscCallMPI(MPI_Bcast(&ok, 1, MPI_INT, 0, comm));
  *readable = (PetscBool)ok;
  PetscFunctionReturn(0);
}

/* Data on disk, then the new name, then the name on disk: after a crash at
 * any point the final name holds either the old file or the complete new
 * one, never a renamed file whose blocks were still in the page cache. */
int AckdFileRenameDurable(const char *from, const char *to)
{
  int fd = open(from, O_RDONLY);
  if (fd < 0) return 0;
  int ok = fsync(fd) == 0;
  close(fd);
  if (!ok || rename(from, to)) return 0;
  char        dir[PETSC_MAX_PATH_LEN];
  const char *slash = strrchr(to, '/');
  snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - to) : 1, slash ? to : ".");
  if (slash == to) snprintf(dir, sizeof dir, "/");
  int dfd = open(dir, O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) { /* some file systems refuse to fsync a directory; the rename has happened */
    fsync(dfd);
    close(dfd);
  }
  return 1;
}
