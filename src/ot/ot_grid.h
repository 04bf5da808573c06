/* The BLACS process grid the cost matrix is distributed over, and its index maps. Private to
 * src/ot. */
#ifndef ACKD_OT_GRID_H
#define ACKD_OT_GRID_H

#include <petscsys.h>

/* A pr x pc BLACS grid over the object's communicator, with MPI communicators
 * along its rows (same process row: they share student rows) and columns. */
typedef struct {
  MPI_Comm  comm; /* a duplicate of the object's: BLACS's handle is per communicator */
  int       system_handle;
  int       context;    /* the 2-D grid, row-major */
  int       context_1d; /* all ranks in one column: the contiguous input layout */
  int       nprow, npcol, myrow, mycol;
  MPI_Comm  row_comm, col_comm;
  PetscBool active;
} AckdOTGrid;

PetscErrorCode AckdOTGridCreate(MPI_Comm comm, PetscInt nprow, PetscInt npcol, AckdOTGrid *grid);
PetscErrorCode AckdOTGridDestroy(AckdOTGrid *grid);
/* The default grid: one process row (see grid.c). */
void AckdOTGridAutoShape(PetscMPIInt size, PetscInt *nprow, PetscInt *npcol);
/* Global index of a rank's local index in a block-cyclic dimension. */
static inline PetscInt AckdOTLocalToGlobal(PetscInt local, PetscInt block, PetscInt nprocs, PetscInt me)
{
  return ((local / block) * nprocs + me) * block + local % block;
}
/* Rows [lo, hi) of n in the contiguous input layout (blocks of ceil(n / size)). */
void AckdOTContiguousRange(PetscInt n, PetscMPIInt size, PetscMPIInt rank, PetscInt *lo, PetscInt *hi);

#endif
