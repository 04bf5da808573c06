/* Per student row, the k teachers that receive most of its mass.
 *
 * In row i the plan is P_ij = exp((f_i + g_j - C_ij) / eps), so the ranking
 * needs no exponentials: score_ij = g_j - C_ij (argmin: -C_ij, the paper's
 * hard matching). Each rank ranks its own block, the k best of every rank in
 * a grid row are exchanged along it, and grid column 0 keeps the merged
 * result; in the online mode's rotating layout the lists travel with their
 * rows instead, and each rank keeps its own chunk's. Ties go to the smaller
 * teacher index, so every grid shape gives the same answer. */
#include "ot_impl.h"
#include <math.h>

/* Does (s, j) rank above (s2, j2)? */
static inline PetscBool better(double s, PetscInt j, double s2, PetscInt j2)
{
  return (PetscBool)(s > s2 || (s == s2 && j < j2));
}

/* Inserts (s, j) into a list sorted best first, keeping k entries. */
static inline void insert(PetscInt k, double *score, PetscInt *index, double s, PetscInt j)
{
  if (!better(s, j, score[k - 1], index[k - 1])) return;
  PetscInt t = k - 1;
  while (t > 0 && better(s, j, score[t - 1], index[t - 1])) {
    score[t] = score[t - 1];
    index[t] = index[t - 1];
    t--;
  }
  score[t] = s;
  index[t] = j;
}

/* Merges the k best of every rank of a grid row on grid column 0 (rank 0 of
 * the row communicator, split by column), the only rank that keeps them: on
 * the default 1 x P grid a gather to every rank would hold P m k candidates
 * each. */
static PetscErrorCode merge_on_first_column(AckdOT ot, PetscInt k, double *score, PetscInt *index)
{
  const PetscInt    m      = ot->mloc;
  const PetscMPIInt pc     = ot->grid.npcol;
  const PetscBool   keeper = (PetscBool)(ot->grid.mycol == 0);
  const size_t      total  = keeper ? (size_t)pc * m * k : 0;
  double           *all_score;
  PetscInt         *all_index;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc2(total + 1, &all_score, total + 1, &all_index));
  PetscCallMPI(MPI_Gather(score, (PetscMPIInt)(m * k), MPI_DOUBLE, all_score, (PetscMPIInt)(m * k), MPI_DOUBLE, 0,
                          ot->grid.row_comm));
  PetscCallMPI(MPI_Gather(index, (PetscMPIInt)(m * k), MPIU_INT, all_index, (PetscMPIInt)(m * k), MPIU_INT, 0,
                          ot->grid.row_comm));
  for (PetscInt t = 0; t < m * k; t++) {
    score[t] = -INFINITY;
    index[t] = PETSC_MAX_INT;
  }
  for (PetscMPIInt r = 0; r < (keeper ? pc : 0); r++)
    for (PetscInt i = 0; i < m; i++)
      for (PetscInt t = 0; t < k; t++) {
        double s = all_score[((size_t)r * m + i) * k + t];
        if (s > -INFINITY) insert(k, score + i * k, index + i * k, s, all_index[((size_t)r * m + i) * k + t]);
      }
  PetscCall(PetscFree2(all_score, all_index));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTTopKAllocate(AckdOT ot, PetscInt k, PetscInt first, PetscInt nrows)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree3(ot->topk_rows, ot->topk_index, ot->topk_weight));
  ot->topk_first = first;
  ot->topk_nrows = nrows;
  PetscCall(PetscMalloc3(nrows + 1, &ot->topk_rows, (size_t)nrows * k + 1, &ot->topk_index, (size_t)nrows * k + 1,
                         &ot->topk_weight));
  for (PetscInt i = 0; i < nrows; i++) ot->topk_rows[i] = ot->row_global[first + i];
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTComputeTopK(AckdOT ot)
{
  const PetscInt  k      = PetscMin(ot->topk, ot->nt);
  const PetscBool argmin = (PetscBool)(ot->solver == ACKD_OT_SOLVER_ARGMIN);
  /* rows with a candidate list on this rank; rotating: those of a chunk, travelling with it (online.c) */
  const PetscInt lists = ot->rotating ? ot->held_max : ot->mloc;
  double        *score;
  PetscInt      *index;
  double         eps = ot->result.eps, cost_local = 0, cost;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc2((size_t)lists * k + 1, &score, (size_t)lists * k + 1, &index));
  for (PetscInt t = 0; t < lists * k; t++) {
    score[t] = -INFINITY;
    index[t] = PETSC_MAX_INT;
  }
  for (PetscInt stage = 0; stage < AckdOTStageCount(ot); stage++) {
    const PetscInt first = ot->rotating ? ot->held_i0 : 0; /* local row of list 0 */
    PetscCall(AckdOTStageBegin(ot));
    if (ot->sparse) { /* a truncated solve: its plan lives on S (the tiles are not stored) */
      const AckdOTSparse *sp = ot->sparse;
      for (PetscInt j = 0; j < ot->nloc; j++) {
        const double gj = argmin ? 0.0 : ot->g_loc[j];
        if (gj == -INFINITY) continue;
        for (int64_t t = sp->col_start[j]; t < sp->col_start[j + 1]; t++) {
          const PetscInt i    = sp->row[t];
          double        *list = score + i * k;
          double         s    = gj - sp->cost[t];
          if (s > list[k - 1] || (s == list[k - 1] && s > -INFINITY))
            insert(k, list, index + i * k, s, ot->col_global[j]);
        }
      }
    }
    for (PetscInt j0 = 0, nc; j0 < (ot->sparse ? 0 : ot->nloc); j0 += nc) {
      const double *tile;
      PetscCall(AckdOTGetTile(ot, j0, &nc, &tile));
      for (PetscInt j = j0; j < j0 + nc; j++) {
        const double   gj   = argmin ? 0.0 : ot->g_loc[j];
        const PetscInt gidx = ot->col_global[j];
        if (gj == -INFINITY) continue; /* a teacher without mass receives nothing */
        for (PetscInt i = ot->held_i0; i < ot->held_i1; i++) {
          double  s    = gj - AckdOTTileEntry(ot, tile, j0, i, j);
          double *list = score + (i - first) * k;
          if (s > list[k - 1] || (s == list[k - 1] && s > -INFINITY)) insert(k, list, index + (i - first) * k, s, gidx);
        }
      }
    }
    PetscCall(AckdOTStageEnd(ot));
    if (ot->rotating) { /* after the chunk, to the rank that has just received it */
      const PetscMPIInt pc = ot->grid.npcol, me = ot->grid.mycol, to = (me + pc - 1) % pc, from = (me + 1) % pc;
      PetscCallMPI(MPI_Sendrecv_replace(score, (PetscMPIInt)(lists * k), MPI_DOUBLE, to, 0, from, 0, ot->grid.row_comm,
                                        MPI_STATUS_IGNORE));
      PetscCallMPI(MPI_Sendrecv_replace(index, (PetscMPIInt)(lists * k), MPIU_INT, to, 0, from, 0, ot->grid.row_comm,
                                        MPI_STATUS_IGNORE));
    }
  }
  /* Rotating: each chunk is home with the lists of the whole grid row, and
   * its rank keeps its rows. Otherwise grid column 0 keeps all of them. */
  if (!ot->rotating) PetscCall(merge_on_first_column(ot, k, score, index));

  /* weights relative to the best kept entry */
  if (ot->rotating)
    PetscCall(AckdOTTopKAllocate(ot, k, ot->held_i0, ot->held_i1 - ot->held_i0));
  else
    PetscCall(AckdOTTopKAllocate(ot, k, 0, ot->grid.mycol == 0 ? ot->mloc : 0));
  for (PetscInt i = 0; i < ot->topk_nrows; i++) {
    const PetscInt  gi      = ot->topk_rows[i];
    const double    mass    = ot->a[gi];
    const PetscBool no_mass = (PetscBool)(!argmin && (mass == 0 || ot->f[gi] == -INFINITY));
    double          total   = 0;

    for (PetscInt t = 0; t < k; t++) {
      double   s    = score[i * k + t];
      PetscInt slot = i * k + t;
      if (no_mass || s == -INFINITY) {
        ot->topk_index[slot]  = -1;
        ot->topk_weight[slot] = 0;
        continue;
      }
      ot->topk_index[slot]  = index[slot];
      ot->topk_weight[slot] = argmin ? 1.0 : exp((s - score[i * k]) / eps);
      total += ot->topk_weight[slot];
    }
    for (PetscInt t = 0; t < k && total > 0; t++) {
      PetscInt slot = i * k + t;
      ot->topk_weight[slot] /= total;
      /* argmin's plan: the row's mass spread over its kept teachers */
      if (argmin && ot->topk_index[slot] >= 0) cost_local += mass * ot->topk_weight[slot] * (-score[slot]);
    }
  }
  PetscCall(PetscFree2(score, index));
  if (argmin) {
    PetscCallMPI(MPI_Allreduce(&cost_local, &cost, 1, MPI_DOUBLE, MPI_SUM, ot->comm));
    ot->result.transport_cost = cost;
    ot->result.entropic_value = cost;
    ot->result.converged      = PETSC_TRUE;
    ot->result.max_cost       = ot->max_cost;
  }
  PetscFunctionReturn(0);
}
