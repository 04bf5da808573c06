/* What the iterative solvers (Sinkhorn, unbalanced, semi-dual) record as they go and when they
 * end: each convergence check (the history, a stop or pause request heard, the progress bar)
 * and the final plan's cost, entropic value and row error. */
#include "ot_impl.h"
#include <math.h>

PetscErrorCode AckdOTRecordCheck(AckdOT ot, PetscInt iteration, double eps, double err)
{
  PetscFunctionBeginUser;
  AckdSleep(ot->debug_check_delay);
  /* Every check is collective on the solver's ranks: the place to hear a stop request, and to
   * agree (rank clocks differ) that the pause interval has run out. */
  if (ot->stoppable) PetscCall(AckdStopRequested(ot->comm, &ot->stopped));
  if (!ot->stopped && ot->pause_interval > 0 && AckdOTResumable(ot)) {
    int due = AckdTimeNow() - ot->pause_start >= ot->pause_interval;
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &due, 1, MPI_INT, MPI_MAX, ot->comm));
    ot->stopped = ot->paused = (PetscBool)(due != 0);
  }
  if (ot->result.history_length == ot->history_capacity) {
    ot->history_capacity = PetscMax(64, 2 * ot->history_capacity);
    PetscCall(PetscRealloc(sizeof(double) * ot->history_capacity, &ot->history));
    PetscCall(PetscRealloc(sizeof(double) * ot->history_capacity, &ot->history_eps));
    PetscCall(PetscRealloc(sizeof(PetscInt) * ot->history_capacity, &ot->history_iteration));
  }
  ot->history[ot->result.history_length]           = err;
  ot->history_eps[ot->result.history_length]       = eps;
  ot->history_iteration[ot->result.history_length] = iteration;
  ot->result.history_length++;
  if (ot->progress.active) {
    /* The bar's fraction. The eps-scaling stages, solved loosely, take the
     * first tenth; the last stage, most of the time, the rest, measured as
     * the way from its first checked error to the tolerance on a log scale:
     * Sinkhorn converges linearly, so that goes about evenly with time. */
    double part = 0;
    if (isnan(ot->stage_err0)) ot->stage_err0 = err;
    if (err <= ot->stage_tol)
      part = 1;
    else if (ot->stage_err0 > ot->stage_tol && err < ot->stage_err0)
      part = log(ot->stage_err0 / err) / log(ot->stage_err0 / ot->stage_tol);
    const PetscInt first = ot->nstages - 1; /* stages before the last */
    const double   done =
        ot->stage < first ? 0.1 * ((double)ot->stage + part) / first : (first ? 0.1 : 0.0) + (first ? 0.9 : 1.0) * part;
    PetscCall(AckdProgressUpdate(&ot->progress, PetscMax((PetscInt)(1000.0 * done), ot->progress.done)));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTPlanStatistics(AckdOT ot, double eps, double *work)
{
  double local[2] = {0, 0}, total[2], row_local = 0, row_err;

  PetscFunctionBeginUser;
  PetscCall(PetscArrayzero(work, ot->mloc));
  if (ot->sparse) PetscCall(AckdOTSparsePlanStatistics(ot, eps, work, local));
  for (PetscInt s = 0; s < (ot->sparse ? 0 : AckdOTStageCount(ot)); s++) {
    PetscCall(AckdOTStageBegin(ot));
    for (PetscInt j0 = 0, nc; j0 < ot->nloc; j0 += nc) {
      const double *tile;
      PetscCall(AckdOTGetTile(ot, j0, &nc, &tile));
      for (PetscInt j = j0; j < j0 + nc; j++)
        for (PetscInt i = ot->held_i0; i < ot->held_i1; i++) {
          double c    = AckdOTTileEntry(ot, tile, j0, i, j);
          double logp = (ot->f_loc[i] + ot->g_loc[j] - c) / eps;
          if (!(logp > -INFINITY)) continue; /* +inf cost or zero mass: P = 0 */
          double p = exp(logp);
          work[i] += p;
          local[0] += p * c;
          local[1] += p * logp;
        }
    }
    PetscCall(AckdOTStageEnd(ot));
  }
  PetscCallMPI(MPI_Allreduce(local, total, 2, MPI_DOUBLE, MPI_SUM, ot->comm));
  ot->result.transport_cost = total[0];
  ot->result.entropic_value = total[0] + eps * total[1];
  if (ot->grid.npcol > 1)
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, work, (PetscMPIInt)ot->mloc, MPI_DOUBLE, MPI_SUM, ot->grid.row_comm));
  for (PetscInt i = 0; i < ot->mloc; i++) {
    double diff = work[i] - ot->a[ot->row_global[i]];
    row_local += diff * diff;
  }
  PetscCallMPI(MPI_Allreduce(&row_local, &row_err, 1, MPI_DOUBLE, MPI_SUM, ot->grid.col_comm));
  ot->result.row_error = sqrt(row_err);
  PetscFunctionReturn(0);
}
