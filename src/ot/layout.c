/* Which part of the problem this rank holds: its contiguous slice of the input rows, its
 * block-cyclic block of C (ScaLAPACK's layout on the process grid), and the full potentials
 * assembled from the local parts. */
#include "ot_impl.h"
#include "scalapack.h"

PetscErrorCode AckdOTGetOwnedRows(AckdOT ot, AckdOTSide side, PetscInt *lo, PetscInt *hi)
{
  PetscFunctionBeginUser;
  AckdOTContiguousRange(side == ACKD_OT_STUDENT ? ot->ns : ot->nt, ot->size, ot->rank, lo, hi);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTSetLayout(AckdOT ot)
{
  const int   zero = 0, block = (int)ot->block, ns = (int)ot->ns, nt = (int)ot->nt;
  AckdOTGrid *g = &ot->grid;

  PetscFunctionBeginUser;
  ot->mloc = numroc_(&ns, &block, &g->myrow, &zero, &g->nprow);
  ot->nloc = numroc_(&nt, &block, &g->mycol, &zero, &g->npcol);
  ot->lld  = PetscMax(1, ot->mloc);
  PetscCall(PetscFree2(ot->row_global, ot->col_global));
  PetscCall(PetscMalloc2(ot->mloc + 1, &ot->row_global, ot->nloc + 1, &ot->col_global));
  for (PetscInt i = 0; i < ot->mloc; i++) ot->row_global[i] = AckdOTLocalToGlobal(i, block, g->nprow, g->myrow);
  for (PetscInt j = 0; j < ot->nloc; j++) ot->col_global[j] = AckdOTLocalToGlobal(j, block, g->npcol, g->mycol);
  ot->rotating = PETSC_FALSE; /* the online set-up may choose it */
  ot->held_i0  = 0;
  ot->held_i1  = ot->mloc;
  PetscFunctionReturn(0);
}

/* A potential's entry is held by the ranks of grid column 0 (f) or grid row 0
 * (g); a sum over the whole communicator to which only they contribute gives
 * every rank the full vector (-inf, a zero-mass sample, survives: -inf + 0). */
static PetscErrorCode gather_side(AckdOT ot, PetscInt n, PetscInt nlocal, const PetscInt *global, const double *local,
                                  PetscBool owner, double *full)
{
  double *buf;

  PetscFunctionBeginUser;
  PetscCall(PetscCalloc1(n, &buf));
  if (owner)
    for (PetscInt t = 0; t < nlocal; t++) buf[global[t]] = local[t];
  PetscCallMPI(MPI_Allreduce(buf, full, (PetscMPIInt)n, MPI_DOUBLE, MPI_SUM, ot->comm));
  PetscCall(PetscFree(buf));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTGatherPotentials(AckdOT ot)
{
  PetscFunctionBeginUser;
  if (!ot->f) PetscCall(PetscMalloc2(ot->ns, &ot->f, ot->nt, &ot->g));
  PetscCall(gather_side(ot, ot->ns, ot->mloc, ot->row_global, ot->f_loc, (PetscBool)(ot->grid.mycol == 0), ot->f));
  PetscCall(gather_side(ot, ot->nt, ot->nloc, ot->col_global, ot->g_loc, (PetscBool)(ot->grid.myrow == 0), ot->g));
  PetscFunctionReturn(0);
}
