/* The BLACS process grid that holds the cost matrix, and the MPI communicators
 * along its rows and columns that the Sinkhorn reductions run on. */
#include "ot_grid.h"
#include "scalapack.h"

void AckdOTGridAutoShape(PetscMPIInt size, PetscInt *nprow, PetscInt *npcol)
{
  /* One process row: every rank holds whole columns of C, so a Sinkhorn
   * iteration is one fused pass over its block (sinkhorn.c) instead of two,
   * and the scaling kernel applies. The price is the row reduction: one
   * allreduce of N_s doubles per iteration over all ranks (8 MB for a million
   * students), against seconds of local work per iteration at that size. A
   * square grid (-ot_grid) halves that message but needs two passes over C. */
  *nprow = 1;
  *npcol = size;
}

void AckdOTContiguousRange(PetscInt n, PetscMPIInt size, PetscMPIInt rank, PetscInt *lo, PetscInt *hi)
{
  /* ceil(n / size) rows per rank: exactly ScaLAPACK's block distribution of
   * an n-row matrix with that block size over a size x 1 grid, so the input
   * redistributes with one Cpdgemr2d. */
  PetscInt block = (n + size - 1) / size;
  *lo            = PetscMin((PetscInt)rank * block, n);
  *hi            = PetscMin(*lo + block, n);
}

PetscErrorCode AckdOTGridCreate(MPI_Comm comm, PetscInt nprow, PetscInt npcol, AckdOTGrid *grid)
{
  PetscMPIInt size;
  int         pr, pc;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCheck(nprow * npcol == size, comm, PETSC_ERR_USER_INPUT,
             "process grid %" PetscInt_FMT "x%" PetscInt_FMT " has %" PetscInt_FMT
             " processes but the job has %d ranks; use a shape whose product is %d",
             nprow, npcol, nprow * npcol, size, size);
  /* BLACS keys its system handles by communicator: two objects alive on one
   * communicator (re-matchings inside training) would share, and doubly free,
   * one handle. A private duplicate per grid keeps them apart. */
  PetscCallMPI(MPI_Comm_dup(comm, &grid->comm));
  grid->system_handle = Csys2blacs_handle(grid->comm);
  grid->context       = grid->system_handle;
  grid->context_1d    = grid->system_handle;
  Cblacs_gridinit(&grid->context, "R", (int)nprow, (int)npcol);
  Cblacs_gridinit(&grid->context_1d, "C", size, 1);
  Cblacs_gridinfo(grid->context, &pr, &pc, &grid->myrow, &grid->mycol);
  PetscCheck(pr == nprow && pc == npcol && grid->myrow >= 0, comm, PETSC_ERR_LIB,
             "BLACS could not build a %" PetscInt_FMT "x%" PetscInt_FMT " grid (got %dx%d)", nprow, npcol, pr, pc);
  grid->nprow = pr;
  grid->npcol = pc;
  /* Split by the coordinates BLACS reports, so the MPI communicators are the
   * grid's rows and columns whatever rank order BLACS chose. */
  PetscCallMPI(MPI_Comm_split(comm, grid->myrow, grid->mycol, &grid->row_comm));
  PetscCallMPI(MPI_Comm_split(comm, grid->mycol, grid->myrow, &grid->col_comm));
  grid->active = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTGridDestroy(AckdOTGrid *grid)
{
  PetscFunctionBeginUser;
  if (!grid->active) PetscFunctionReturn(0);
  PetscCallMPI(MPI_Comm_free(&grid->row_comm));
  PetscCallMPI(MPI_Comm_free(&grid->col_comm));
  Cblacs_gridexit(grid->context);
  Cblacs_gridexit(grid->context_1d);
  Cfree_blacs_system_handle(grid->system_handle);
  PetscCallMPI(MPI_Comm_free(&grid->comm));
  grid->active = PETSC_FALSE;
  PetscFunctionReturn(0);
}
