/* Exact OT for square problems with uniform masses, where an optimal plan is
 * a permutation (Birkhoff): Bertsekas' auction algorithm with eps-scaling.
 *
 * Students bid for teachers; a bid raises the teacher's price by the bidder's
 * margin between its best and second-best teacher, plus eps. At the end every
 * student holds a teacher within eps of its best (eps-complementary
 * slackness), so the assignment is within n * eps of optimal in total cost,
 * i.e. within eps in OT cost (masses 1/n). Phases divide eps by
 * AUCTION_SCALING, keeping prices, from max C / AUCTION_SCALING down to
 * AUCTION_FINAL_EPS * max C. The duals f_i = -profit_i, g_j = -price_j are
 * exactly feasible (f_i + g_j <= C_ij). Runs on rank 0 on the gathered cost:
 * like `exact`, a path for problems that fit one node. */
#include "ot_impl.h"
#include <math.h>

#define AUCTION_SCALING   5.0
#define AUCTION_FINAL_EPS 1e-12

/* One phase at eps: all students start unassigned, prices are kept. status 1: a student has no finite cost. */
static void auction_phase(PetscInt n, const double *C, double eps, double range, double *price, PetscInt *owner,
                          PetscInt *assigned, PetscInt *queue, int *status)
{
  PetscInt head = 0, tail = 0; /* circular queue of unassigned students */
  for (PetscInt j = 0; j < n; j++) owner[j] = -1;
  for (PetscInt i = 0; i < n; i++) assigned[i] = -1, queue[tail++] = i;
  tail %= n;
  PetscInt pending = n;
  while (pending > 0) {
    PetscInt i = queue[head];
    head       = (head + 1) % n;
    pending--;
    double   best = -INFINITY, second = -INFINITY;
    PetscInt best_j = -1;
    for (PetscInt j = 0; j < n; j++) {
      double value = -C[(size_t)j * n + i] - price[j];
      if (value > best) {
        second = best;
        best   = value;
        best_j = j;
      } else if (value > second)
        second = value;
    }
    if (best_j < 0 || best == -INFINITY) {
      *status = 1;
      return;
    }
    /* any raise in [eps, best - second + eps] keeps eps-slackness; cap it when there is no second choice */
    price[best_j] += PetscMin(best - second, range) + eps;
    if (owner[best_j] >= 0) {
      assigned[owner[best_j]] = -1;
      queue[tail]             = owner[best_j];
      tail                    = (tail + 1) % n;
      pending++;
    }
    owner[best_j] = i;
    assigned[i]   = best_j;
  }
  *status = 0;
}

PetscErrorCode AckdOTAuction(AckdOT ot)
{
  const PetscInt n = ot->ns, k = PetscMin(ot->topk, ot->nt);
  double        *C = NULL, *weight, cost = 0;
  PetscInt      *index;
  int            status = 0;

  PetscFunctionBeginUser;
  PetscBool uniform = (PetscBool)(ot->ns == ot->nt);
  for (PetscInt i = 0; i < ot->ns && uniform; i++) uniform = (PetscBool)(ot->a[i] == ot->a[0]);
  for (PetscInt j = 0; j < ot->nt && uniform; j++) uniform = (PetscBool)(ot->b[j] == ot->a[0]);
  if (!uniform) {
    char what[96];
    if (ot->ns != ot->nt)
      snprintf(what, sizeof what, "it has %d students and %d teachers", (int)ot->ns, (int)ot->nt);
    else
      snprintf(what, sizeof what, "its masses differ");
    SETERRQ(ot->comm, PETSC_ERR_USER_INPUT,
            "-%ssolver auction needs a square problem with equal masses, but %s; use -%ssolver exact or sinkhorn",
            ot->prefix, what, ot->prefix);
  }
  PetscCall(PetscMalloc2((size_t)n * k, &index, (size_t)n * k, &weight));
  if (!ot->f) PetscCall(PetscMalloc2(ot->ns, &ot->f, ot->nt, &ot->g));
  PetscCall(AckdOTGatherCost(ot, &C));
  if (ot->rank == 0) {
    double   *price, min_cost = INFINITY;
    PetscInt *owner, *assigned, *queue;
    PetscCall(PetscCalloc1(n, &price));
    PetscCall(PetscMalloc3(n, &owner, n, &assigned, n, &queue));
    for (size_t t = 0; t < (size_t)n * n; t++) min_cost = PetscMin(min_cost, C[t]);
    double range = ot->max_cost - min_cost + ot->max_cost; /* larger than any useful raise */
    double eps = ot->max_cost / AUCTION_SCALING, final_eps = AUCTION_FINAL_EPS * ot->max_cost;
    for (;;) {
      eps = PetscMax(eps, final_eps);
      auction_phase(n, C, eps, range, price, owner, assigned, queue, &status);
      if (status || eps == final_eps) break;
      eps /= AUCTION_SCALING;
    }
    if (status == 0) {
      for (PetscInt t = 0; t < n * k; t++) index[t] = -1, weight[t] = 0;
      for (PetscInt i = 0; i < n; i++) {
        double profit = -INFINITY;
        for (PetscInt j = 0; j < n; j++) profit = PetscMax(profit, -C[(size_t)j * n + i] - price[j]);
        ot->f[i]      = -profit;
        index[i * k]  = assigned[i];
        weight[i * k] = 1.0;
        cost += C[(size_t)assigned[i] * n + i] / (double)n;
      }
      for (PetscInt j = 0; j < n; j++) ot->g[j] = -price[j];
    }
    PetscCall(PetscFree(price));
    PetscCall(PetscFree3(owner, assigned, queue));
  }
  PetscCall(PetscFree(C));
  PetscCallMPI(MPI_Bcast(&status, 1, MPI_INT, 0, ot->comm));
  PetscCheck(status == 0, ot->comm, PETSC_ERR_USER_INPUT,
             "a student has +inf cost to every teacher (with labels: classes of different sizes); the assignment "
             "problem is infeasible, use -%ssolver exact or sinkhorn",
             ot->prefix);
  PetscCallMPI(MPI_Bcast(&cost, 1, MPI_DOUBLE, 0, ot->comm));
  PetscCallMPI(MPI_Bcast(ot->f, (PetscMPIInt)ot->ns, MPI_DOUBLE, 0, ot->comm));
  PetscCallMPI(MPI_Bcast(ot->g, (PetscMPIInt)ot->nt, MPI_DOUBLE, 0, ot->comm));
  PetscCallMPI(MPI_Bcast(index, (PetscMPIInt)(n * k), MPIU_INT, 0, ot->comm));
  PetscCallMPI(MPI_Bcast(weight, (PetscMPIInt)(n * k), MPI_DOUBLE, 0, ot->comm));
  PetscCall(AckdOTKeepTopKRows(ot, k, index, weight));
  PetscCall(PetscFree2(index, weight));
  ot->result.transport_cost = cost;
  ot->result.entropic_value = cost;
  ot->result.converged      = PETSC_TRUE;
  ot->result.eps            = 0;
  ot->result.max_cost       = ot->max_cost;
  ot->result.iterations     = 0;
  ot->result.column_error   = 0;
  ot->result.row_error      = 0;
  PetscFunctionReturn(0);
}
