/* A throttled progress bar. Batch jobs write their output to files, where a
 * bar is only noise, so it draws solely on an interactive terminal. */
#include <ackd/core.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum { BAR_WIDTH = 24 };

static int is_terminal_path(const char *link)
{
  return !strncmp(link, "/dev/pts/", 9) || !strncmp(link, "/dev/tty", 8);
}

/* Whether the person who started the run is watching a terminal. Under
 * mpirun a rank's own streams say nothing: Open MPI gives every rank a pty
 * for stdout even when mpirun writes to a file, and a pipe for stderr even on
 * a terminal. What matters is the launcher's stderr, which rank 0 (started by
 * mpirun on the same node) can read from /proc. */
static int watching_terminal(void)
{
  if (isatty(fileno(stderr))) return 1;
  char path[64], link[256];
  snprintf(path, sizeof path, "/proc/%ld/fd/2", (long)getppid());
  ssize_t n = readlink(path, link, sizeof link - 1);
  if (n <= 0) return 0;
  link[n] = '\0';
  return is_terminal_path(link);
}

PetscErrorCode AckdProgressBegin(AckdProgress *bar, const AckdLog *log, const char *label, PetscInt total,
                                 const char *unit)
{
  PetscMPIInt rank;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(log->comm, &rank));
  memset(bar, 0, sizeof *bar);
  snprintf(bar->label, sizeof bar->label, "%s", label);
  bar->total        = total;
  bar->unit         = unit;
  bar->start        = AckdTimeNow();
  bar->last_draw    = -1e300;
  bar->min_interval = 0.25;
  bar->active       = (PetscBool)(rank == 0 && !log->quiet && watching_terminal());
  PetscFunctionReturn(0);
}

static void format_duration(double seconds, char *buf, size_t len)
{
  long s = seconds < 0 ? 0 : (long)(seconds + 0.5);
  if (s >= 3600)
    snprintf(buf, len, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  else
    snprintf(buf, len, "%02ld:%02ld", s / 60, s % 60);
}

void AckdProgressFormat(const AckdProgress *bar, double now, char *line, size_t len)
{
  double fraction = bar->total > 0 ? (double)bar->done / (double)bar->total : 1.0;
  if (fraction > 1.0) fraction = 1.0;
  double elapsed = now - bar->start;
  double rate    = elapsed > 0 ? (double)bar->done / elapsed : 0.0;
  char   cells[BAR_WIDTH + 1], eta[32];
  int    filled = (int)(fraction * BAR_WIDTH);

  for (int i = 0; i < BAR_WIDTH; i++) cells[i] = i < filled ? '#' : '.';
  cells[BAR_WIDTH] = '\0';
  if (rate > 0)
    format_duration((double)(bar->total - bar->done) / rate, eta, sizeof eta);
  else
    snprintf(eta, sizeof eta, "--:--");
  if (!bar->unit) { /* a fraction of work not counted in units (a solver's way to its tolerance) */
    snprintf(line, len, "%-12s [%s] %3d%% ETA %s", bar->label, cells, (int)(100.0 * fraction), eta);
    return;
  }
  snprintf(line, len, "%-12s [%s] %3d%% %" PetscInt_FMT "/%" PetscInt_FMT " %.1f %s/s ETA %s", bar->label, cells,
           (int)(100.0 * fraction), bar->done, bar->total, rate, bar->unit, eta);
}

static void draw(AckdProgress *bar, double now)
{
  char line[160];
  AckdProgressFormat(bar, now, line, sizeof line);
  fprintf(stderr, "\r%s\033[K", line);
  fflush(stderr);
  bar->last_draw = now;
  bar->draws++;
}

PetscErrorCode AckdProgressUpdate(AckdProgress *bar, PetscInt done)
{
  PetscFunctionBeginUser;
  bar->done = done;
  if (!bar->active) PetscFunctionReturn(0);
  double now = AckdTimeNow();
  if (now - bar->last_draw >= bar->min_interval) draw(bar, now);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdProgressEnd(AckdProgress *bar)
{
  PetscFunctionBeginUser;
  if (bar->active) {
    draw(bar, AckdTimeNow());
    fputc('\n', stderr);
    fflush(stderr);
  }
  bar->active = PETSC_FALSE;
  PetscFunctionReturn(0);
}
