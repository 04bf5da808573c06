/* Stopping on request: batch systems send SIGUSR1 (Slurm's --signal) or
 * SIGTERM before a job's time runs out. The handler only sets a flag, the one
 * thing a signal handler may safely do; the training loop polls it between
 * steps, with every rank, and stops all ranks at the same step.
 *
 * The flag is process-wide state by nature: a signal reaches the process,
 * not an object; so is the launcher's pid, which the same poll watches.
 * (The other process-wide flag, an abandoned HDF5 file, lives in error.c.) */
#include <ackd/ckpt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop_signal = 0;

/* The launcher that started this rank (mpirun, orted), when one did: 0 for a singleton, whose
 * parent is only a shell that may go away on purpose (nohup). */
static pid_t launcher = 0;

static void on_signal(int sig)
{
  stop_signal = sig;
}

PetscErrorCode AckdStopRequestInstall(void)
{
  struct sigaction action;

  PetscFunctionBeginUser;
  memset(&action, 0, sizeof action);
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART; /* MPI and HDF5 calls carry on; the loop looks at the flag */
  PetscCheck(!sigaction(SIGUSR1, &action, NULL) && !sigaction(SIGTERM, &action, NULL), PETSC_COMM_SELF, PETSC_ERR_SYS,
             "cannot install the SIGUSR1/SIGTERM handlers");
  if (getenv("OMPI_COMM_WORLD_RANK") || getenv("PMIX_RANK")) launcher = getppid();
  PetscFunctionReturn(0);
}

/* Tests' stand-in for a scheduler: a real SIGTERM to this process at the n-th poll. */
static PetscInt polls_until_signal = 0;

void AckdStopDebugSignalAfter(PetscInt polls)
{
  polls_until_signal = polls;
}

PetscBool AckdStopSignalled(void)
{
  if (polls_until_signal > 0 && --polls_until_signal == 0) raise(SIGTERM);
  return (PetscBool)(stop_signal != 0);
}

PetscErrorCode AckdStopRequested(MPI_Comm comm, PetscBool *stop)
{
  int mine = stop_signal != 0, any;

  PetscFunctionBeginUser;
  /* A launcher killed outright (kill -9 of mpirun) leaves its ranks running: they would write
   * checkpoints until a collective with a dead peer hangs them. An orphan ends at once; the
   * newest checkpoint on disk is the state to resume from. */
  if (launcher && getppid() != launcher) {
    fprintf(stderr, "ackd: error: the MPI launcher (pid %ld) is gone; this rank stops at once, without a checkpoint\n",
            (long)launcher);
    _exit(ACKD_EXIT_ERROR);
  }
  /* A signal may reach only some ranks: any one of them stops everyone. */
  PetscCallMPI(MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, comm));
  *stop = (PetscBool)(any != 0);
  PetscFunctionReturn(0);
}
