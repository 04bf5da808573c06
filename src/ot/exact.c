/* Exact OT by linear programming (GLPK): the validation path for small
 * problems. The transportation LP
 *   min sum C_ij x_ij  s.t.  sum_j x_ij = a_i,  sum_i x_ij = b_j,  x >= 0
 * (one variable per finite cost) is solved on rank 0 by GLPK's primal
 * simplex: a basic solution, accurate to rounding. (GLPK's exact rational
 * simplex would see the rounding of the masses' totals as infeasibility.)
 * The duals are the potentials f,
 * g (f_i + g_j <= C_ij, equality where mass moves); the top-k table is
 * broadcast and each grid column 0 rank keeps its rows, as for Sinkhorn.
 *
 * Large exact problems across ranks: with labels (the case of ackd match,
 * whose costs are +inf across classes) the LP separates into one LP per class
 * block, and -ot_class_blocks subgrid (the default) solves each block on the
 * first rank of its group, the groups at the same time (blocks.c), so the
 * largest LP is the largest class and P groups work concurrently; the
 * variable limit below applies per block. That was chosen over a distributed
 * auction or network simplex: an auction round needs every teacher's price
 * for every bid (an allgather of N_t prices per round, over thousands of
 * rounds with eps-scaling) and simplex pivots are sequential, while class
 * blocks give the concurrency with the validated GLPK path unchanged (tests:
 * exact with classes on 1 and 4 ranks against ot.emd2). A large problem
 * without labels stays a single LP, refused above the limit with a pointer
 * to Sinkhorn at small eps. */
#include "ot_impl.h"
#include <glpk.h>
#include <math.h>

/* Above this many variables the LP is not a validation-sized problem. */
#define EXACT_MAX_VARIABLES 4000000

/* Rank 0: solve, fill f, g, the cost and the full top-k table. status: 0 optimal, 1 infeasible, 2 GLPK failed. */
static PetscErrorCode solve_lp(AckdOT ot, const double *C, PetscInt k, PetscInt *index, double *weight, int *status,
                               PetscInt *iterations)
{
  const PetscInt ns = ot->ns, nt = ot->nt;
  PetscInt       nvar = 0;
  int           *ia, *ja, *var_row, *var_col;
  double        *ar;

  PetscFunctionBeginUser;
  for (size_t t = 0; t < (size_t)ns * nt; t++) nvar += C[t] < INFINITY;
  PetscCall(PetscMalloc3(2 * nvar + 1, &ia, 2 * nvar + 1, &ja, 2 * nvar + 1, &ar));
  PetscCall(PetscMalloc2(nvar + 1, &var_row, nvar + 1, &var_col));
  glp_prob *lp = glp_create_prob();
  glp_set_obj_dir(lp, GLP_MIN);
  glp_add_rows(lp, (int)(ns + nt));
  for (PetscInt i = 0; i < ns; i++) glp_set_row_bnds(lp, (int)i + 1, GLP_FX, ot->a[i], ot->a[i]);
  /* Masses equal in total only up to rounding, and the exact simplex would
   * call that infeasible: the teacher side may deviate by a relative 1e-12. */
  for (PetscInt j = 0; j < nt; j++) {
    double slack = 1e-12 * ot->b[j];
    glp_set_row_bnds(lp, (int)(ns + j) + 1, slack > 0 ? GLP_DB : GLP_FX, ot->b[j] - slack, ot->b[j] + slack);
  }
  if (nvar > 0) glp_add_cols(lp, (int)nvar);
  int v = 0, e = 0;
  for (PetscInt j = 0; j < nt; j++)
    for (PetscInt i = 0; i < ns; i++) {
      double c = C[(size_t)j * ns + i];
      if (!(c < INFINITY)) continue;
      v++;
      var_row[v] = (int)i;
      var_col[v] = (int)j;
      glp_set_col_bnds(lp, v, GLP_LO, 0.0, 0.0);
      glp_set_obj_coef(lp, v, c);
      e++, ia[e] = (int)i + 1, ja[e] = v, ar[e] = 1.0;
      e++, ia[e] = (int)(ns + j) + 1, ja[e] = v, ar[e] = 1.0;
    }
  glp_load_matrix(lp, e, ia, ja, ar);
  glp_smcp parm;
  glp_init_smcp(&parm);
  parm.msg_lev = GLP_MSG_OFF;
  int ret      = glp_simplex(lp, &parm);
  *status      = ret != 0 ? 2 : glp_get_status(lp) == GLP_OPT ? 0 : 1;
  *iterations  = glp_get_it_cnt(lp);
  if (*status == 0) {
    ot->result.transport_cost = glp_get_obj_val(lp);
    for (PetscInt i = 0; i < ns; i++) ot->f[i] = glp_get_row_dual(lp, (int)i + 1);
    for (PetscInt j = 0; j < nt; j++) ot->g[j] = glp_get_row_dual(lp, (int)(ns + j) + 1);
    /* top-k per row by plan weight, ties to the smaller teacher index */
    for (PetscInt t = 0; t < ns * k; t++) index[t] = -1, weight[t] = 0;
    for (int w = 1; w <= v; w++) {
      double x = glp_get_col_prim(lp, w);
      if (!(x > 0)) continue;
      PetscInt i = var_row[w], j = var_col[w], *idx = index + i * k;
      double  *wt = weight + i * k;
      if (idx[k - 1] >= 0 && !(x > wt[k - 1])) continue; /* columns arrive in increasing j: ties keep the first */
      PetscInt s = k - 1;
      while (s > 0 && (idx[s - 1] < 0 || x > wt[s - 1])) {
        idx[s] = idx[s - 1];
        wt[s]  = wt[s - 1];
        s--;
      }
      idx[s] = j;
      wt[s]  = x;
    }
    for (PetscInt i = 0; i < ns; i++) {
      double total = 0;
      for (PetscInt t = 0; t < k; t++) total += weight[i * k + t];
      for (PetscInt t = 0; t < k && total > 0; t++) weight[i * k + t] /= total;
    }
  }
  glp_delete_prob(lp);
  PetscCall(PetscFree3(ia, ja, ar));
  PetscCall(PetscFree2(var_row, var_col));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTExact(AckdOT ot)
{
  const PetscInt k = PetscMin(ot->topk, ot->nt);
  double        *C = NULL, *weight;
  PetscInt      *index, iterations = 0;
  int            status = 0;

  PetscFunctionBeginUser;
  PetscCheck((double)ot->ns * (double)ot->nt <= EXACT_MAX_VARIABLES, ot->comm, PETSC_ERR_USER_INPUT,
             "-%ssolver exact is the validation path for small problems (at most %d cost entries, this one has %.0f); "
             "use -%ssolver sinkhorn with a small -%sot_eps",
             ot->prefix, EXACT_MAX_VARIABLES, (double)ot->ns * (double)ot->nt, ot->prefix, ot->prefix);
  if (!ot->f) PetscCall(PetscMalloc2(ot->ns, &ot->f, ot->nt, &ot->g));
  PetscCall(PetscMalloc2((size_t)ot->ns * k, &index, (size_t)ot->ns * k, &weight));
  PetscCall(AckdOTGatherCost(ot, &C));
  if (ot->rank == 0) PetscCall(solve_lp(ot, C, k, index, weight, &status, &iterations));
  PetscCall(PetscFree(C));
  PetscCallMPI(MPI_Bcast(&status, 1, MPI_INT, 0, ot->comm));
  PetscCheck(status != 1, ot->comm, PETSC_ERR_USER_INPUT,
             "the exact transport problem is infeasible: total masses (per class, with labels) differ; rescale them");
  PetscCheck(status != 2, ot->comm, PETSC_ERR_LIB, "GLPK failed to solve the transport LP");
  PetscCallMPI(MPI_Bcast(&iterations, 1, MPIU_INT, 0, ot->comm));
  PetscCallMPI(MPI_Bcast(&ot->result.transport_cost, 1, MPI_DOUBLE, 0, ot->comm));
  PetscCallMPI(MPI_Bcast(ot->f, (PetscMPIInt)ot->ns, MPI_DOUBLE, 0, ot->comm));
  PetscCallMPI(MPI_Bcast(ot->g, (PetscMPIInt)ot->nt, MPI_DOUBLE, 0, ot->comm));
  PetscCallMPI(MPI_Bcast(index, (PetscMPIInt)(ot->ns * k), MPIU_INT, 0, ot->comm));
  PetscCallMPI(MPI_Bcast(weight, (PetscMPIInt)(ot->ns * k), MPI_DOUBLE, 0, ot->comm));

  PetscCall(AckdOTKeepTopKRows(ot, k, index, weight));
  PetscCall(PetscFree2(index, weight));
  ot->result.entropic_value = ot->result.transport_cost; /* eps = 0 */
  ot->result.iterations     = iterations;                /* simplex iterations */
  ot->result.converged      = PETSC_TRUE;
  ot->result.eps            = 0;
  ot->result.max_cost       = ot->max_cost;
  ot->result.column_error   = 0;
  ot->result.row_error      = 0;
  PetscFunctionReturn(0);
}
