/* Log-domain Sinkhorn on the process grid, balanced or unbalanced, with
 * eps-scaling.
 *
 * The potentials f (rows) and g (columns) are kept in cost units, so a
 * solution at one eps warm-starts the next. One iteration follows POT's
 * sinkhorn_log: update g from the column log-sum-exps, then f from the row
 * ones; each is a local pass over this rank's block of C followed by an
 * allreduce (of log-sum-exps) along one grid direction. Balanced update:
 *   g_j <- g_j + eps (log b_j - LSE_i((f_i + g_j - C_ij) / eps)).
 * Unbalanced (KL penalty tau on the marginals, POT's sinkhorn_unbalanced):
 * the same target scaled by tau / (tau + eps).
 *
 * Stopping rule (POT): every check_every iterations, after the f update, the
 * L2 error of the plan's column marginal. That pass over C is exactly what the
 * next g update needs, so it is kept and the check costs nothing. Unbalanced
 * plans do not meet their marginals: there the rule is the largest change of
 * a potential since the previous iteration, divided by eps. */
#include "ot_impl.h"
#include <math.h>

typedef struct {
  double *log_a, *log_b; /* local marginals, -inf for zero mass */
  double *row_lse, *col_lse, *work;
  double *g_old, *buf; /* fused sweep: the potentials before it, its column buffer */
  double  last_change; /* fused, unbalanced: the largest potential change of the last iteration */
  /* stabilised scaling (-ot_sinkhorn_kernel scaling): the kernel absorbed at (f0, g0), in double (K) or float
   * (K32: -ot_kernel_precision single or a float C) */
  double   *K, *f0, *g0, *u, *acc, *extra;
  double   *spare; /* 2 mloc: the online store's row passes */
  float    *K32;
  PetscBool scaling;
  PetscBool col_lse_fresh; /* col_lse matches the current f and g */
  /* The first sample (global index) found with mass but only +inf costs: the
   * balanced problem is infeasible. Recorded where found, reported by every
   * rank together at the next check, so the message names the sample
   * whichever rank holds it. */
  PetscInt infeasible[2]; /* student, teacher; N when none */
} Workspace;

/* Where the progress bar stands: stage `stage` of the eps schedule starts, to `tol`. */
static void begin_stage(AckdOT ot, PetscInt stage, double tol)
{
  ot->stage      = PetscMin(stage, ot->nstages - 1);
  ot->stage_tol  = tol;
  ot->stage_err0 = NAN;
}

/* col_lse_j = log sum_i P_ij over all rows: local pass, then merge down the grid column. */
static PetscErrorCode column_lse(AckdOT ot, Workspace *w, double eps)
{
  PetscFunctionBeginUser;
  PetscCall(ot->store->column_lse(ot, ot->f_loc, ot->g_loc, 1.0 / eps, w->col_lse));
  if (ot->grid.nprow > 1)
    PetscCallMPI(
        MPI_Allreduce(MPI_IN_PLACE, w->col_lse, (PetscMPIInt)ot->nloc, MPI_DOUBLE, ot->lse_op, ot->grid.col_comm));
  w->col_lse_fresh = PETSC_TRUE;
  PetscFunctionReturn(0);
}

static PetscErrorCode row_lse(AckdOT ot, Workspace *w, double eps)
{
  PetscFunctionBeginUser;
  PetscCall(ot->store->row_lse(ot, ot->f_loc, ot->g_loc, 1.0 / eps, w->work, w->spare, w->row_lse));
  if (ot->grid.npcol > 1)
    PetscCallMPI(
        MPI_Allreduce(MPI_IN_PLACE, w->row_lse, (PetscMPIInt)ot->mloc, MPI_DOUBLE, ot->lse_op, ot->grid.row_comm));
  PetscFunctionReturn(0);
}

static PetscErrorCode update_g(AckdOT ot, Workspace *w, double eps, double damping, double *change)
{
  double local = 0;

  PetscFunctionBeginUser;
  if (!w->col_lse_fresh) PetscCall(column_lse(ot, w, eps));
  for (PetscInt j = 0; j < ot->nloc; j++) {
    double next = AckdOTUpdatedPotential(ot->g_loc[j], w->col_lse[j], w->log_b[j], eps, damping, ot->omega);
    if (next == INFINITY) {
      /* unbalanced: its mass is dropped; balanced: infeasible, reported at the check */
      if (ot->solver != ACKD_OT_SOLVER_UNBALANCED) w->infeasible[1] = PetscMin(w->infeasible[1], ot->col_global[j]);
      next = -INFINITY;
    }
    if (isfinite(next) && isfinite(ot->g_loc[j])) local = fmax(local, fabs(next - ot->g_loc[j]) / eps);
    ot->g_loc[j] = next;
  }
  *change          = local;
  w->col_lse_fresh = PETSC_FALSE;
  PetscFunctionReturn(0);
}

static PetscErrorCode update_f(AckdOT ot, Workspace *w, double eps, double damping, double *change)
{
  double local = 0;

  PetscFunctionBeginUser;
  PetscCall(row_lse(ot, w, eps));
  for (PetscInt i = 0; i < ot->mloc; i++) {
    double next = AckdOTUpdatedPotential(ot->f_loc[i], w->row_lse[i], w->log_a[i], eps, damping, ot->omega);
    if (next == INFINITY) {
      if (ot->solver != ACKD_OT_SOLVER_UNBALANCED) w->infeasible[0] = PetscMin(w->infeasible[0], ot->row_global[i]);
      next = -INFINITY;
    }
    if (isfinite(next) && isfinite(ot->f_loc[i])) local = fmax(local, fabs(next - ot->f_loc[i]) / eps);
    ot->f_loc[i] = next;
  }
  *change          = local;
  w->col_lse_fresh = PETSC_FALSE;
  PetscFunctionReturn(0);
}

/* Collective: raises the infeasibility any rank recorded. */
static PetscErrorCode check_feasible(AckdOT ot, Workspace *w)
{
  PetscInt first[2];

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Allreduce(w->infeasible, first, 2, MPIU_INT, MPI_MIN, ot->comm));
  PetscCheck(first[0] == ot->ns, ot->comm, PETSC_ERR_USER_INPUT,
             "student sample %" PetscInt_FMT " has mass but +inf cost to every teacher (no teacher of its class); "
             "give it zero mass or use -%ssolver unbalanced",
             first[0], ot->prefix);
  PetscCheck(first[1] == ot->nt, ot->comm, PETSC_ERR_USER_INPUT,
             "teacher sample %" PetscInt_FMT " has mass but +inf cost to every student (a class no student has); "
             "give it zero mass or use -%ssolver unbalanced",
             first[1], ot->prefix);
  PetscFunctionReturn(0);
}

/* L2 error of the column marginal: needs the fresh column log-sum-exps. */
static PetscErrorCode column_error(AckdOT ot, Workspace *w, double eps, double *err)
{
  double local = 0;

  PetscFunctionBeginUser;
  PetscCall(column_lse(ot, w, eps));
  for (PetscInt j = 0; j < ot->nloc; j++) {
    double diff = exp(w->col_lse[j]) - ot->b[ot->col_global[j]];
    local += diff * diff;
  }
  /* the columns of one grid row are disjoint and cover all of them */
  PetscCallMPI(MPI_Allreduce(&local, err, 1, MPI_DOUBLE, MPI_SUM, ot->grid.row_comm));
  *err = sqrt(*err);
  PetscFunctionReturn(0);
}

/* The fused iteration (a 1 x P grid, whole columns on every rank): one pass
 * over C per iteration (AckdOTFusedSweep). Its column sums are those of the
 * plan the previous iteration left, i.e. POT's stopping quantity for free, at
 * every iteration; on a check iteration whose error is below tol the sweep's
 * g update is undone, so the answer and the iteration count are those of the
 * two-pass path (and of POT). */
/* Absorbs the current potentials into the kernel: K = exp((f + g - C) / eps). */
static PetscErrorCode absorb(AckdOT ot, Workspace *w, double eps)
{
  PetscFunctionBeginUser;
  PetscCall(PetscArraycpy(w->f0, ot->f_loc, ot->mloc));
  PetscCall(PetscArraycpy(w->g0, ot->g_loc, ot->nloc));
  PetscCall(ot->store->absorb(ot, w->f0, w->g0, 1.0 / eps, w->K, w->K32));
  PetscFunctionReturn(0);
}

/* Scalings u = exp((f - f0) / eps), v = exp((g - g0) / eps) beyond e^limit
 * would let kernel entries that underflowed (below 1e-308 in double, 1e-38 in
 * float: K's precision, whatever C's) matter: re-absorb before. */
static PetscBool needs_absorption(AckdOT ot, Workspace *w, double eps)
{
  const double limit = ot->kernel_single ? 20.0 : 100.0;
  for (PetscInt i = 0; i < ot->mloc; i++)
    if (isfinite(ot->f_loc[i]) && !(fabs(ot->f_loc[i] - w->f0[i]) <= limit * eps)) return PETSC_TRUE;
  for (PetscInt j = 0; j < ot->nloc; j++)
    if (isfinite(ot->g_loc[j]) && !(fabs(ot->g_loc[j] - w->g0[j]) <= limit * eps)) return PETSC_TRUE;
  return PETSC_FALSE;
}

static PetscErrorCode run_stage_fused(AckdOT ot, Workspace *w, double eps, double tol, PetscBool *met, double *err)
{
  const PetscBool  unbalanced = (PetscBool)(ot->solver == ACKD_OT_SOLVER_UNBALANCED);
  AckdOTColumnRule rule       = {eps, unbalanced ? ot->tau / (ot->tau + eps) : 1.0, ot->omega, w->log_b};

  PetscFunctionBeginUser;
  *met = PETSC_FALSE;
  if (w->scaling) PetscCall(absorb(ot, w, eps)); /* a new eps: a new kernel */
  for (PetscInt it = 0; ot->result.iterations < ot->max_it; it++) {
    /* the state entering this sweep is that after `it` iterations of the stage */
    const PetscBool check    = (PetscBool)(it > 0 && (it - 1) % ot->check_every == 0);
    PetscBool       fallback = PETSC_FALSE;
    PetscCall(PetscArraycpy(w->g_old, ot->g_loc, ot->nloc));
    if (w->scaling) {
      PetscCall(ot->store->scaling_sweep(ot, w->K, w->K32, w->f0, w->g0, &rule, w->col_lse, w->u, w->acc, w->extra,
                                         w->work, &fallback));
    } else {
      PetscCall(PetscArrayzero(w->work, ot->mloc));
      PetscCall(ot->store->fused_sweep(ot, &rule, w->col_lse, w->buf, w->work));
    }
    double dg = 0;
    for (PetscInt j = 0; j < ot->nloc; j++) {
      if (w->col_lse[j] == -INFINITY && w->log_b[j] > -INFINITY && w->g_old[j] > -INFINITY && !unbalanced)
        w->infeasible[1] = PetscMin(w->infeasible[1], ot->col_global[j]);
      if (isfinite(ot->g_loc[j]) && isfinite(w->g_old[j])) dg = fmax(dg, fabs(ot->g_loc[j] - w->g_old[j]) / eps);
    }
    if (check) {
      PetscCall(check_feasible(ot, w));
      if (unbalanced)
        PetscCallMPI(MPI_Allreduce(&w->last_change, err, 1, MPI_DOUBLE, MPI_MAX, ot->comm));
      else {
        double local = 0;
        for (PetscInt j = 0; j < ot->nloc; j++) {
          double diff = exp(w->col_lse[j]) - ot->b[ot->col_global[j]];
          local += diff * diff;
        }
        PetscCallMPI(MPI_Allreduce(&local, err, 1, MPI_DOUBLE, MPI_SUM, ot->grid.row_comm));
        *err = sqrt(*err);
      }
      PetscCheck(!isnan(*err), ot->comm, PETSC_ERR_FP, "Sinkhorn produced NaN at eps %g; please report this",
                 (double)eps);
      PetscCall(AckdOTRecordCheck(ot, ot->result.iterations, eps, *err));
      if (ot->stopped) break;
      if (*err < tol) {
        PetscCall(PetscArraycpy(ot->g_loc, w->g_old, ot->nloc));
        *met = PETSC_TRUE;
        break;
      }
    }
    /* the f half-step: row sums of this rank's columns, merged along the grid row */
    PetscCall(ot->store->row_sums_to_lse(ot, 1.0 / eps, w->work, w->spare, w->row_lse));
    if (ot->grid.npcol > 1)
      PetscCallMPI(
          MPI_Allreduce(MPI_IN_PLACE, w->row_lse, (PetscMPIInt)ot->mloc, MPI_DOUBLE, ot->lse_op, ot->grid.row_comm));
    double df = 0;
    for (PetscInt i = 0; i < ot->mloc; i++) {
      double next = AckdOTUpdatedPotential(ot->f_loc[i], w->row_lse[i], w->log_a[i], eps, rule.damping, rule.omega);
      if (next == INFINITY) {
        if (!unbalanced) w->infeasible[0] = PetscMin(w->infeasible[0], ot->row_global[i]);
        next = -INFINITY;
      }
      if (isfinite(next) && isfinite(ot->f_loc[i])) df = fmax(df, fabs(next - ot->f_loc[i]) / eps);
      ot->f_loc[i] = next;
    }
    w->last_change = PetscMax(dg, df);
    ot->result.iterations++;
    if (w->scaling && (fallback || needs_absorption(ot, w, eps))) PetscCall(absorb(ot, w, eps));
  }
  w->col_lse_fresh = PETSC_FALSE;
  PetscFunctionReturn(0);
}

/* Runs iterations at one eps until the stopping rule holds below `tol` or the
 * iteration budget is spent. */
static PetscErrorCode run_stage(AckdOT ot, Workspace *w, double eps, double tol, PetscBool *met, double *err)
{
  const PetscBool unbalanced = (PetscBool)(ot->solver == ACKD_OT_SOLVER_UNBALANCED);
  const double    damping    = unbalanced ? ot->tau / (ot->tau + eps) : 1.0;

  PetscFunctionBeginUser;
  if (AckdOTWholeColumns(ot)) {
    PetscCall(run_stage_fused(ot, w, eps, tol, met, err));
    PetscFunctionReturn(0);
  }
  *met = PETSC_FALSE;
  /* iterations count from 0 within a stage, as POT's cpt */
  for (PetscInt it = 0; ot->result.iterations < ot->max_it; it++) {
    double dg = 0, df = 0;
    PetscCall(update_g(ot, w, eps, damping, &dg));
    PetscCall(update_f(ot, w, eps, damping, &df));
    ot->result.iterations++;
    if (it % ot->check_every) continue;
    PetscCall(check_feasible(ot, w)); /* the first iteration is a check: caught at once */
    if (unbalanced) {
      double change = PetscMax(dg, df);
      PetscCallMPI(MPI_Allreduce(&change, err, 1, MPI_DOUBLE, MPI_MAX, ot->comm));
    } else
      PetscCall(column_error(ot, w, eps, err));
    PetscCheck(!isnan(*err), ot->comm, PETSC_ERR_FP, "Sinkhorn produced NaN at eps %g; please report this",
               (double)eps);
    PetscCall(AckdOTRecordCheck(ot, ot->result.iterations, eps, *err));
    if (ot->stopped) break;
    if (*err < tol) {
      *met = PETSC_TRUE;
      break;
    }
  }
  PetscFunctionReturn(0);
}

/* Balanced OT needs equal total mass, and with class blocks equal mass per class. */
static PetscErrorCode check_balance(AckdOT ot)
{
  double sa = 0, sb = 0;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < ot->ns; i++) sa += ot->a[i];
  for (PetscInt j = 0; j < ot->nt; j++) sb += ot->b[j];
  if (fabs(sa - sb) > 1e-9 * PetscMax(sa, sb)) {
    char sums[96];
    snprintf(sums, sizeof sums, "%.12g and %.12g", sa, sb);
    SETERRQ(ot->comm, PETSC_ERR_USER_INPUT,
            "balanced OT needs equal total masses but the student and teacher masses sum to %s; rescale them or use "
            "-%ssolver unbalanced",
            sums, ot->prefix);
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTSinkhorn(AckdOT ot)
{
  Workspace w;
  double    eps_target = ot->eps_relative ? ot->eps * ot->max_cost : ot->eps, err = INFINITY;
  PetscBool met = PETSC_FALSE;

  PetscFunctionBeginUser;
  PetscCheck(eps_target > 0, ot->comm, PETSC_ERR_USER_INPUT,
             "eps relative to the largest cost is 0 (every finite cost is 0); use -%sot_eps_relative false",
             ot->prefix);
  if (ot->solver == ACKD_OT_SOLVER_SINKHORN) PetscCall(check_balance(ot));
  const PetscBool given = (PetscBool)(ot->warm_start || ot->resume_stage >= 0); /* f_loc, g_loc hold potentials */
  if (!given) {
    PetscCall(PetscFree2(ot->f_loc, ot->g_loc));
    PetscCall(PetscMalloc2(ot->mloc + 1, &ot->f_loc, ot->nloc + 1, &ot->g_loc));
  }
  PetscCall(PetscMalloc5(ot->mloc + 1, &w.log_a, ot->nloc + 1, &w.log_b, ot->mloc + 1, &w.row_lse, ot->nloc + 1,
                         &w.col_lse, ot->mloc + 1, &w.work));
  PetscCall(PetscMalloc2(ot->nloc + 1, &w.g_old, AckdOTWholeColumns(ot) ? 5 * ot->mloc + 1 : 1, &w.buf));
  w.last_change = INFINITY;
  /* the scaling kernel needs whole columns (the fused sweep) and a stored C to keep K beside
   * (not the online mode's tiles, nor a truncated solve's S) */
  w.scaling = (PetscBool)(ot->sinkhorn_kernel == ACKD_OT_KERNEL_SCALING && AckdOTWholeColumns(ot) && ot->store->absorb);
  w.K = NULL, w.K32 = NULL;
  if (w.scaling) {
    size_t entries = (size_t)ot->lld * PetscMax(1, ot->nloc);
    if (ot->kernel_single)
      PetscCall(PetscMalloc1(entries, &w.K32));
    else
      PetscCall(PetscMalloc1(entries, &w.K));
  }
  PetscCall(PetscMalloc6(ot->mloc + 1, &w.f0, ot->nloc + 1, &w.g0, ot->mloc + 1, &w.u, ot->mloc + 1, &w.acc,
                         ot->mloc + 1, &w.extra, 2 * ot->mloc + 1, &w.spare));
  w.col_lse_fresh = PETSC_FALSE;
  w.infeasible[0] = ot->ns;
  w.infeasible[1] = ot->nt;
  for (PetscInt i = 0; i < ot->mloc; i++) {
    w.log_a[i] = log(ot->a[ot->row_global[i]]);
    if (w.log_a[i] == -INFINITY || !given) ot->f_loc[i] = w.log_a[i] == -INFINITY ? -INFINITY : 0.0;
  }
  for (PetscInt j = 0; j < ot->nloc; j++) {
    w.log_b[j] = log(ot->b[ot->col_global[j]]);
    if (w.log_b[j] == -INFINITY || !given) ot->g_loc[j] = w.log_b[j] == -INFINITY ? -INFINITY : 0.0;
  }
  if (!ot->warm_start) { /* a warm start continues the count and the history of what went before */
    ot->result.iterations     = 0;
    ot->result.history_length = 0;
  }

  /* eps-scaling: eps_k = max C * factor^k down to the target, each stage
   * solved loosely (its solution only warm-starts the next), the last to tol. */
  double   eps   = eps_target;
  PetscInt stage = 0;
  ot->nstages    = 1;
  if (ot->eps_scaling) /* the schedule's length, also for a warm start: its state is then in the last stage */
    for (eps = ot->max_cost; eps > eps_target; eps *= ot->eps_scaling_factor) ot->nstages++;
  if (ot->warm_start) stage = ot->nstages - 1; /* at eps_target already */
  if (ot->show_progress) PetscCall(AckdProgressBegin(&ot->progress, &ot->log, "sinkhorn", 1000, NULL));
  if (ot->eps_scaling && !ot->warm_start)
    for (eps = ot->max_cost; eps > eps_target && !ot->stopped;) {
      double stage_tol = PetscMax(ot->tol, 1e-3);
      if (stage < ot->resume_stage) { /* a resumed solve: this stage was done before the stop */
        stage++;
        eps *= ot->eps_scaling_factor;
        continue;
      }
      begin_stage(ot, stage++, stage_tol);
      PetscCall(run_stage(ot, &w, eps, stage_tol, &met, &err));
      w.col_lse_fresh = PETSC_FALSE; /* eps changes */
      eps *= ot->eps_scaling_factor;
    }
  eps = eps_target;
  begin_stage(ot, stage, ot->tol);
  if (!ot->stopped) PetscCall(run_stage(ot, &w, eps, ot->tol, &met, &err));
  if (w.scaling && ot->kernel_single && met) {
    /* A float kernel solves the problem of a cost perturbed by eps * 6e-8 (its
     * rounding): a few exact log-domain iterations on C (double or float, whichever
     * C is) take the plan from that problem's solution to this one's. */
    w.scaling = PETSC_FALSE;
    PetscCall(run_stage(ot, &w, eps, ot->tol, &met, &err));
  }
  PetscCall(AckdProgressEnd(&ot->progress));
  ot->resume_stage = -1; /* used up */
  if (ot->stopped) {     /* the caller keeps the state (AckdOTGetState) or drops it: nothing to measure */
    PetscCall(PetscFree5(w.log_a, w.log_b, w.row_lse, w.col_lse, w.work));
    PetscCall(PetscFree2(w.g_old, w.buf));
    PetscCall(PetscFree6(w.f0, w.g0, w.u, w.acc, w.extra, w.spare));
    PetscCall(PetscFree(w.K));
    PetscCall(PetscFree(w.K32));
    PetscFunctionReturn(0);
  }
  if (!met && ot->solver != ACKD_OT_SOLVER_UNBALANCED) {
    /* the budget ran out between checks: measure the final plan */
    PetscCall(column_error(ot, &w, eps, &err));
    met = (PetscBool)(err < ot->tol);
  }
  ot->result.converged    = met;
  ot->result.column_error = err;
  ot->result.eps          = eps;
  ot->result.max_cost     = ot->max_cost;
  PetscCall(AckdOTPlanStatistics(ot, eps, w.work));
  ot->result.history           = ot->history;
  ot->result.history_iteration = ot->history_iteration;
  if (ot->solver == ACKD_OT_SOLVER_UNBALANCED) {
    /* report the column marginal error for unbalanced too, for information */
    PetscCall(column_error(ot, &w, eps, &ot->result.column_error));
  }
  PetscCall(PetscFree5(w.log_a, w.log_b, w.row_lse, w.col_lse, w.work));
  PetscCall(PetscFree2(w.g_old, w.buf));
  PetscCall(PetscFree6(w.f0, w.g0, w.u, w.acc, w.extra, w.spare));
  PetscCall(PetscFree(w.K));
  PetscCall(PetscFree(w.K32));
  if (!met) {
    char text[96];
    snprintf(text, sizeof text, "%.3g after %d iterations (tolerance %.3g)", err, (int)ot->result.iterations,
             (double)ot->tol);
    PetscCall(AckdLogWarn(&ot->log, "ot: Sinkhorn did not converge: error %s; raise -%sot_max_it or eps\n", text,
                          ot->prefix));
  }
  PetscFunctionReturn(0);
}

/* A stopped solve resumes in its eps stage from its potentials (state.c, and per class block
 * blocks.c): f and g full vectors, indexed through row_of / col_of when not NULL. */
PetscErrorCode AckdOTResumeFrom(AckdOT ot, PetscInt stage, const PetscInt *row_of, const double *f,
                                const PetscInt *col_of, const double *g)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree2(ot->f_loc, ot->g_loc));
  PetscCall(PetscMalloc2(ot->mloc + 1, &ot->f_loc, ot->nloc + 1, &ot->g_loc));
  for (PetscInt i = 0; i < ot->mloc; i++) ot->f_loc[i] = f[row_of ? row_of[ot->row_global[i]] : ot->row_global[i]];
  for (PetscInt j = 0; j < ot->nloc; j++) ot->g_loc[j] = g[col_of ? col_of[ot->col_global[j]] : ot->col_global[j]];
  ot->resume_stage = stage;
  PetscFunctionReturn(0);
}
