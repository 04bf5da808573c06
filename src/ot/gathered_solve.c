/* The solvers that run on one rank (exact LP, auction): the whole cost matrix gathered there,
 * and the top-k table it sends back kept by the ranks that own each row. */
#include "ot_impl.h"

PetscErrorCode AckdOTGatherCost(AckdOT ot, double **full)
{
  double *mine;
  size_t  n = (size_t)ot->ns * ot->nt;

  PetscFunctionBeginUser;
  PetscCall(PetscCalloc1(n, &mine));
  *full = NULL;
  if (ot->rank == 0) PetscCall(PetscMalloc1(n, full));
  for (PetscInt j = 0; j < ot->nloc; j++)
    for (PetscInt i = 0; i < ot->mloc; i++)
      mine[(size_t)ot->col_global[j] * ot->ns + ot->row_global[i]] = AckdOTCostEntry(ot, i, j);
  /* each entry is owned by one rank; the others add 0 (inf + 0 = inf) */
  PetscCallMPI(MPI_Reduce(mine, ot->rank == 0 ? *full : NULL, (PetscMPIInt)n, MPI_DOUBLE, MPI_SUM, 0, ot->comm));
  PetscCall(PetscFree(mine));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTKeepTopKRows(AckdOT ot, PetscInt k, const PetscInt *index, const double *weight)
{
  PetscFunctionBeginUser;
  PetscCall(AckdOTTopKAllocate(ot, k, 0, ot->grid.mycol == 0 ? ot->mloc : 0));
  for (PetscInt i = 0; i < ot->topk_nrows; i++) {
    const PetscInt gi = ot->topk_rows[i];
    for (PetscInt t = 0; t < k; t++) {
      ot->topk_index[i * k + t]  = index[gi * k + t];
      ot->topk_weight[i * k + t] = weight[gi * k + t];
    }
  }
  PetscFunctionReturn(0);
}
