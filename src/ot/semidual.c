/* Semi-dual entropic OT, maximised over g with PETSc Tao's L-BFGS (TAOLMVM):
 * the same optimum as Sinkhorn, reached by a quasi-Newton path.
 *
 * Eliminating f from the entropic dual (f_i makes row i of the plan carry a_i)
 * leaves the concave function of g
 *   G(g) = sum_i a_i f_i(g) + sum_j b_j g_j,
 *   f_i(g) = eps log a_i - eps LSE_j((g_j - C_ij) / eps),
 * whose gradient is b_j - sum_i P_ij: its norm is exactly POT's stopping
 * quantity, the L2 error of the column marginal, so Tao's absolute gradient
 * tolerance is -ot_tol. Tao minimises -G. f and the column sums come from the
 * same distributed kernels as Sinkhorn. Zero-mass teachers stay at -inf and
 * out of the optimisation (their gradient is 0). */
#include "ot_impl.h"
#include <petsctao.h>
#include <math.h>
#include <string.h>

typedef struct {
  AckdOT     ot;
  double     eps;
  double    *log_a, *row_lse, *col_lse, *work;
  double    *g_full, *grad_full;
  VecScatter to_all;
  Vec        g_all;
  PetscInt   evaluations;
} SemiDual;

/* f, column log-sums and -G at the g held in x; the gradient into `gradient`. */
static PetscErrorCode evaluate(Tao tao, Vec x, PetscReal *value, Vec gradient, void *ctx)
{
  SemiDual          *s  = (SemiDual *)ctx;
  AckdOT             ot = s->ot;
  const PetscScalar *xa;
  PetscInt           lo, hi;
  double             local = 0, total;

  PetscFunctionBeginUser;
  PetscCall(VecScatterBegin(s->to_all, x, s->g_all, INSERT_VALUES, SCATTER_FORWARD));
  PetscCall(VecScatterEnd(s->to_all, x, s->g_all, INSERT_VALUES, SCATTER_FORWARD));
  PetscCall(VecGetArrayRead(s->g_all, &xa));
  for (PetscInt j = 0; j < ot->nloc; j++) {
    PetscInt gj  = ot->col_global[j];
    ot->g_loc[j] = ot->b[gj] > 0 ? xa[gj] : -INFINITY;
  }
  PetscCall(VecRestoreArrayRead(s->g_all, &xa));

  /* f(g): one row pass; the previous f is the shift (absorption) */
  PetscCall(ot->store->row_lse(ot, ot->f_loc, ot->g_loc, 1.0 / s->eps, s->work, NULL, s->row_lse)); /* stored C */
  if (ot->grid.npcol > 1)
    PetscCallMPI(
        MPI_Allreduce(MPI_IN_PLACE, s->row_lse, (PetscMPIInt)ot->mloc, MPI_DOUBLE, ot->lse_op, ot->grid.row_comm));
  PetscInt infeasible = ot->ns, first; /* a student with mass but only +inf costs */
  for (PetscInt i = 0; i < ot->mloc; i++) {
    if (s->log_a[i] == -INFINITY) continue;
    if (s->row_lse[i] == -INFINITY)
      infeasible = PetscMin(infeasible, ot->row_global[i]);
    else
      ot->f_loc[i] += s->eps * (s->log_a[i] - s->row_lse[i]);
  }
  PetscCallMPI(MPI_Allreduce(&infeasible, &first, 1, MPIU_INT, MPI_MIN, ot->comm));
  PetscCheck(first == ot->ns, ot->comm, PETSC_ERR_USER_INPUT,
             "student sample %" PetscInt_FMT " has mass but +inf cost to every teacher; give it zero mass", first);
  /* -G: sum a_i f_i over rows (once per grid row: the column-0 ranks), sum b_j g_j over columns (grid row 0) */
  if (ot->grid.mycol == 0)
    for (PetscInt i = 0; i < ot->mloc; i++)
      if (s->log_a[i] > -INFINITY) local -= ot->a[ot->row_global[i]] * ot->f_loc[i];
  if (ot->grid.myrow == 0)
    for (PetscInt j = 0; j < ot->nloc; j++)
      if (ot->g_loc[j] > -INFINITY) local -= ot->b[ot->col_global[j]] * ot->g_loc[j];
  PetscCallMPI(MPI_Allreduce(&local, &total, 1, MPI_DOUBLE, MPI_SUM, ot->comm));
  *value = total;

  /* gradient of -G: column sums of the plan minus b */
  PetscCall(ot->store->column_lse(ot, ot->f_loc, ot->g_loc, 1.0 / s->eps, s->col_lse));
  if (ot->grid.nprow > 1)
    PetscCallMPI(
        MPI_Allreduce(MPI_IN_PLACE, s->col_lse, (PetscMPIInt)ot->nloc, MPI_DOUBLE, ot->lse_op, ot->grid.col_comm));
  PetscCall(PetscArrayzero(s->grad_full, ot->nt));
  if (ot->grid.myrow == 0)
    for (PetscInt j = 0; j < ot->nloc; j++) {
      PetscInt gj = ot->col_global[j];
      if (ot->b[gj] > 0) s->grad_full[gj] = exp(s->col_lse[j]) - ot->b[gj];
    }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, s->grad_full, (PetscMPIInt)ot->nt, MPI_DOUBLE, MPI_SUM, ot->comm));
  PetscCall(VecGetOwnershipRange(gradient, &lo, &hi));
  PetscScalar *ga;
  PetscCall(VecGetArray(gradient, &ga));
  for (PetscInt j = lo; j < hi; j++) ga[j - lo] = s->grad_full[j];
  PetscCall(VecRestoreArray(gradient, &ga));
  s->evaluations++;
  PetscFunctionReturn(0);
}

/* Records the gradient norm (the column marginal error) of every iteration. */
static PetscErrorCode monitor(Tao tao, void *ctx)
{
  SemiDual *s = (SemiDual *)ctx;
  PetscInt  its;
  PetscReal value, gnorm;

  PetscFunctionBeginUser;
  PetscCall(TaoGetSolutionStatus(tao, &its, &value, &gnorm, NULL, NULL, NULL));
  PetscCall(AckdOTRecordCheck(s->ot, its, s->eps, gnorm));
  if (s->ot->stopped) PetscCall(TaoSetConvergedReason(tao, TAO_CONVERGED_USER));
  PetscFunctionReturn(0);
}

/* The Tao of the semi-dual solve, configured by the object's settings and
 * then by -<prefix>ot_semidual_tao_* options (which override them). */
static PetscErrorCode create_tao(AckdOT ot, Vec solution, Tao *out)
{
  Tao  tao;
  char prefix[96];

  PetscFunctionBeginUser;
  PetscCall(TaoCreate(ot->comm, &tao));
  PetscCall(TaoSetType(tao, TAOLMVM));
  snprintf(prefix, sizeof prefix, "%sot_semidual_", ot->prefix);
  PetscCall(TaoSetOptionsPrefix(tao, prefix));
  PetscCall(TaoSetTolerances(tao, ot->tol, 0.0, 0.0));
  PetscCall(TaoSetMaximumIterations(tao, ot->max_it));
  PetscCall(TaoSetMaximumFunctionEvaluations(tao, 10 * ot->max_it));
  if (solution) PetscCall(TaoSetSolution(tao, solution));
  /* Only when some -<prefix>ot_semidual_* option is given (or to list them):
   * in PETSc 3.18 TaoSetFromOptions alone changes LMVM's defaults, and the
   * solve then stalls in its line search near 1e-9 (tests/ot semidual at
   * tolerance 1e-11), where the defaults of TaoCreate reach it. */
  char     *all;
  PetscBool help;
  PetscCall(PetscOptionsHasHelp(NULL, &help));
  PetscCall(PetscOptionsGetAll(NULL, &all));
  char key[112];
  snprintf(key, sizeof key, "-%s", prefix);
  if (help || !solution || strstr(all, key)) PetscCall(TaoSetFromOptions(tao));
  PetscCall(PetscFree(all));
  *out = tao;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTSemiDualOptions(AckdOT ot)
{
  Tao tao;

  PetscFunctionBeginUser;
  PetscCall(create_tao(ot, NULL, &tao));
  PetscCall(TaoDestroy(&tao));
  PetscFunctionReturn(0);
}

/* The result of a finished solve, measured at the solution Tao returns. */
static PetscErrorCode report(AckdOT ot, Tao tao, Vec g, SemiDual *s)
{
  TaoConvergedReason reason;
  PetscReal          value, gnorm;
  PetscInt           its;

  PetscFunctionBeginUser;
  PetscCall(TaoGetConvergedReason(tao, &reason));
  PetscCall(TaoGetIterationNumber(tao, &its));
  /* the last evaluation may have been a rejected line-search point: evaluate the solution */
  PetscCall(evaluate(tao, g, &value, g, s));
  PetscCall(VecNorm(g, NORM_2, &gnorm)); /* g now holds the gradient */

  ot->result.iterations        = its;
  ot->result.column_error      = gnorm;
  ot->result.converged         = (PetscBool)(reason > 0 && gnorm < ot->tol);
  ot->result.eps               = s->eps;
  ot->result.max_cost          = ot->max_cost;
  ot->result.history           = ot->history;
  ot->result.history_iteration = ot->history_iteration;
  if (ot->result.converged) {
    PetscCall(AckdOTPlanStatistics(ot, s->eps, s->work));
    PetscFunctionReturn(0);
  }
  /* L-BFGS stalls near the optimum when its line search meets the rounding of the objective (seen
   * at 5e-11 with OpenBLAS's AVX-512 kernels). Sinkhorn converges linearly from anywhere near the
   * optimum, so it finishes from these potentials; its own report then says whether it got there. */
  PetscCall(AckdLogInfo(&ot->log,
                        "ot: semi-dual L-BFGS stopped at column error %.3g after %d iterations (tolerance %.3g, Tao: "
                        "%s); finishing with Sinkhorn iterations from its potentials\n",
                        (double)gnorm, (int)its, (double)ot->tol, TaoConvergedReasons[reason]));
  ot->warm_start      = PETSC_TRUE;
  PetscErrorCode ierr = AckdOTSinkhorn(ot);
  ot->warm_start      = PETSC_FALSE;
  PetscCall(ierr);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTSemiDual(AckdOT ot)
{
  SemiDual s = {0};
  Tao      tao;
  Vec      g;

  PetscFunctionBeginUser;
  s.ot  = ot;
  s.eps = ot->eps_relative ? ot->eps * ot->max_cost : ot->eps;
  PetscCheck(s.eps > 0, ot->comm, PETSC_ERR_USER_INPUT,
             "eps relative to the largest cost is 0 (every finite cost is 0); use -%sot_eps_relative false",
             ot->prefix);
  PetscCall(PetscFree2(ot->f_loc, ot->g_loc));
  PetscCall(PetscMalloc2(ot->mloc + 1, &ot->f_loc, ot->nloc + 1, &ot->g_loc));
  PetscCall(
      PetscMalloc4(ot->mloc + 1, &s.log_a, ot->mloc + 1, &s.row_lse, ot->nloc + 1, &s.col_lse, ot->mloc + 1, &s.work));
  PetscCall(PetscMalloc1(ot->nt, &s.grad_full));
  for (PetscInt i = 0; i < ot->mloc; i++) {
    s.log_a[i]   = log(ot->a[ot->row_global[i]]);
    ot->f_loc[i] = s.log_a[i] == -INFINITY ? -INFINITY : 0.0;
  }
  ot->result.iterations     = 0;
  ot->result.history_length = 0;

  PetscCall(VecCreateMPI(ot->comm, PETSC_DECIDE, ot->nt, &g));
  PetscCall(VecSet(g, 0.0));
  PetscCall(VecScatterCreateToAll(g, &s.to_all, &s.g_all));
  PetscCall(create_tao(ot, g, &tao));
  PetscCall(TaoSetObjectiveAndGradient(tao, NULL, evaluate, &s));
  PetscCall(TaoSetMonitor(tao, monitor, &s, NULL));
  PetscCall(TaoSolve(tao));
  if (!ot->stopped) PetscCall(report(ot, tao, g, &s)); /* else the caller discards the solve */
  PetscCall(TaoDestroy(&tao));
  PetscCall(VecScatterDestroy(&s.to_all));
  PetscCall(VecDestroy(&s.g_all));
  PetscCall(VecDestroy(&g));
  PetscCall(PetscFree4(s.log_a, s.row_lse, s.col_lse, s.work));
  PetscCall(PetscFree(s.grad_full));
  PetscFunctionReturn(0);
}