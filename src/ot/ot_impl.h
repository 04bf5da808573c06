/* The AckdOT object and what its source files share. Private to src/ot. */
#ifndef ACKD_OT_IMPL_H
#define ACKD_OT_IMPL_H

#include <ackd/ckpt.h>
#include <ackd/ot.h>
#include <math.h>

#include "cost_store.h"
#include "ot_grid.h"
#include "ot_kernels.h"
#include "truncated.h"

/* ---------------------------------------------------------------- object */

/* How labels are used (-ot_class_blocks): every class block on its own
 * sub-grid, or one dense C with +inf across classes. */
typedef enum { ACKD_OT_BLOCKS_SUBGRID, ACKD_OT_BLOCKS_DENSE } AckdOTClassBlocksKind;
/* How a Sinkhorn iteration evaluates the plan (-ot_sinkhorn_kernel). */
typedef enum { ACKD_OT_KERNEL_LOG, ACKD_OT_KERNEL_SCALING } AckdOTKernelKind;
/* Where the online mode keeps the student features (-ot_online_layout). */
typedef enum { ACKD_OT_ONLINE_AUTO, ACKD_OT_ONLINE_REPLICATED, ACKD_OT_ONLINE_ROTATING } AckdOTOnlineLayout;

struct _p_AckdOT {
  MPI_Comm    comm;
  PetscMPIInt rank, size;
  char        prefix[64];
  AckdLog     log;

  /* settings */
  AckdOTCostKind   cost_kind;
  AckdOTSolverKind solver;
  PetscReal        eps, tol, eps_scaling_factor, tau, kl_temperature, omega;
  PetscBool        eps_relative, eps_scaling;
  PetscInt         sinkhorn_kernel; /* AckdOTKernelKind */
  PetscInt         max_it, check_every, topk, block;
  PetscInt         grid_rows, grid_cols; /* 0: automatic */

  /* how the passes reach C, chosen by AckdOTSetUp (cost_store.h) */
  const AckdOTCostStore *store;
  /* a problem solved as several problems of its own (class blocks on sub-grids, blocks.c),
   * installed by AckdOTSetLabels; NULL: one C on the whole grid */
  const struct _AckdOTComposite *composite;

  /* problem */
  PetscInt   ns, nt, dim;
  AckdOTGrid grid;
  PetscInt   mloc, nloc, lld;     /* this rank's block of C */
  PetscBool  single;              /* C stored in float: half the memory and bytes per iteration */
  float     *C32;                 /* the same in float when single */
  PetscBool  kernel_single;       /* the scaling kernel's K in float (always when single) */
  double    *C;                   /* column-major mloc x nloc, +inf across classes */
  PetscInt  *row_global;          /* global student index of each local row */
  PetscInt  *col_global;          /* global teacher index of each local column */
  PetscInt  *labels_s, *labels_t; /* full, NULL: no class blocking */
  double    *a, *b;               /* full marginals */
  double     max_cost;
  PetscBool  setup, has_cost, solved;
  PetscBool  stoppable, stopped; /* AckdOTSetStoppable: a stop request ends the solve, unsolved */
  PetscBool  paused;             /* stopped because pause_interval ran out, not on request */
  double     pause_interval;     /* AckdOTSetPauseInterval: seconds of solving from pause_start; 0: never */
  double     pause_start;
  double     debug_check_delay; /* testing: seconds every convergence check waits (-ot_debug_check_delay) */
  PetscBool  warm_start;        /* Sinkhorn from the potentials in f_loc, g_loc (the semi-dual's finish) */
  PetscInt   resume_stage;      /* >= 0: Sinkhorn resumes in this eps stage from f_loc, g_loc (state.c) */
  MPI_Op     lse_op;

  /* solution */
  double      *f_loc, *g_loc; /* potentials of local rows and columns */
  double      *f, *g;         /* full, assembled after the solve */
  AckdOTResult result;
  PetscInt     history_capacity;
  double      *history, *history_eps;
  PetscInt    *history_iteration;
  PetscInt     topk_nrows, topk_first; /* rows kept here: local rows [topk_first, topk_first + topk_nrows) */
  PetscInt    *topk_rows, *topk_index;
  double      *topk_weight;

  PetscLogEvent event_cost, event_sinkhorn, event_topk, event_write;
  /* a truncated solve's dense passes (inside OTCost or OTSinkhorn), and its sweeps over S */
  PetscLogEvent event_dense, event_sparse;

  /* the bar on rank 0's terminal (sinkhorn.c): eps stage `stage` of
   * `nstages`, its first checked error stage_err0, heading for stage_tol */
  AckdProgress progress;
  PetscBool    show_progress; /* off in the class blocks' objects: their group's parent draws one bar */
  PetscInt     stage, nstages;
  double       stage_err0, stage_tol;

  /* online mode (-ot_online): C is never stored; tiles of it are recomputed
   * from the transformed features whenever a pass needs them (online.c) */
  PetscBool   online;
  PetscInt    online_layout;    /* AckdOTOnlineLayout, as asked */
  PetscBool   rotating;         /* as resolved at set-up: the grid row's students pass round it */
  PetscInt    held;             /* rotating: the chunk of them this rank holds now (its own: grid.mycol) */
  PetscInt    held_i0, held_i1; /* the local rows whose features it holds (stored C: all) */
  PetscInt    held_max;         /* rows the held-feature buffers have room for: the widest chunk */
  double     *online_x;         /* their features, column-major (held_i1 - held_i0) x dim */
  double     *online_x_next;    /* rotating: the chunk arriving from the next grid column */
  MPI_Request rotation[2];
  double     *online_y;   /* teacher features of the local columns, column-major dim x nloc */
  double     *online_row; /* rank-one terms of the local rows and columns */
  double     *online_col;
  double     *online_tile; /* (held rows) x tile_cols */
  PetscInt    tile_cols;

  /* the truncated solve (-ot_truncate, truncated.c): S, the sparse part of C it solves on */
  PetscInt      truncate;           /* entries kept per row and per column by the first pass; 0: off */
  PetscReal     truncate_threshold; /* share of its row's mass above which a left-out entry joins S */
  PetscInt      truncate_rounds;    /* dense passes (certificates) at most */
  AckdOTSparse *sparse;

  /* class blocks on sub-grids (blocks.c); NULL: one dense C */
  PetscInt              class_blocks; /* AckdOTClassBlocksKind */
  struct _AckdOTBlocks *blocks;
};

/* What AckdOTSetFeatures, AckdOTSolve and AckdOTDestroy do for a composite problem. */
typedef struct _AckdOTComposite {
  PetscErrorCode (*set_features)(AckdOT, const double *student_rows, const double *teacher_rows);
  PetscErrorCode (*solve)(AckdOT);
  PetscErrorCode (*destroy)(AckdOT);
} AckdOTComposite;

/* Columns per recomputed tile in the online mode (online.c): at most this
 * many, at least 32. */
#define AckdOT_TILE_MAX 256
/* A pass over C runs in stages. The stored block, or the online mode's
 * replicated features, make one stage covering all local rows. A rotating
 * layout makes one stage per chunk of the grid row's students: the rank holds
 * one chunk at a time, local rows [held_i0, held_i1), while it sends that
 * chunk to the previous grid column and receives the next one. Every rank of a
 * grid row runs the same stages, and after a pass every chunk is home again. */
static inline PetscInt AckdOTStageCount(AckdOT ot)
{
  return ot->rotating ? ot->grid.npcol : 1;
}
/* Does this rank see whole columns of C in one stage (one process row, and
 * no rotation)? Then an iteration is one fused pass (sinkhorn.c). */
static inline PetscBool AckdOTWholeColumns(AckdOT ot)
{
  return (PetscBool)(ot->grid.nprow == 1 && !ot->rotating);
}
PetscErrorCode AckdOTStageBegin(AckdOT ot);
PetscErrorCode AckdOTStageEnd(AckdOT ot);
/* Columns [j0, j0 + *ncols) of the held rows of the local block: in the
 * online mode a tile recomputed into ot->online_tile (*tile points at it,
 * column-major, leading dimension held_i1 - held_i0), otherwise *tile = NULL
 * and all remaining columns (read them with AckdOTCostEntry). */
PetscErrorCode AckdOTGetTile(AckdOT ot, PetscInt j0, PetscInt *ncols, const double **tile);
/* The online mode's features on this rank's grid block (online.c), from the
 * transformed contiguous slices (freed here, each once placed: set-up's peak
 * is then one side's slice less) and the rank-one terms of all samples. */
PetscErrorCode AckdOTOnlineSetUp(AckdOT ot, PetscInt lo_s, PetscInt hi_s, double **xs, PetscInt lo_t, PetscInt hi_t,
                                 double **yt, const double *row_term, const double *col_term);
PetscErrorCode AckdOTOnlineDestroy(AckdOT ot);
/* Copies the rows of one side that this rank needs out of the contiguous slices [lo, hi) the
 * ranks own (online.c): `local` lists the needed global rows in increasing order; row t goes to
 * out + t * step_row with its features step_dim apart. */
PetscErrorCode AckdOTPickRows(AckdOT ot, PetscInt n, PetscInt lo, PetscInt hi, const double *rows, PetscInt nlocal,
                              const PetscInt *local, double *out, size_t step_row, size_t step_dim);
/* Columns [j0, j0 + ncols) of local rows [i0, i0 + m), held at c (leading
 * dimension ldc) as scale * X~ Y~^T, made costs: the rank-one terms of the
 * local rows and columns added, rounding below 0 of distances cut, +inf
 * across classes. Returns the largest finite entry. */
double AckdOTFinishCosts(AckdOT ot, PetscInt i0, PetscInt m, PetscInt j0, PetscInt ncols, double *c, PetscInt ldc,
                         const double *row_term_loc, const double *col_term_loc);
/* Entry (i, j) of the local block, whichever precision stores it. */
static inline double AckdOTCostEntry(AckdOT ot, PetscInt i, PetscInt j)
{
  size_t t = (size_t)j * ot->lld + i;
  return ot->single ? (double)ot->C32[t] : ot->C[t];
}
/* Entry (i, j) of a tile from AckdOTGetTile, or of the stored block. */
static inline double AckdOTTileEntry(AckdOT ot, const double *tile, PetscInt j0, PetscInt i, PetscInt j)
{
  return tile ? tile[(size_t)(j - j0) * (ot->held_i1 - ot->held_i0) + (i - ot->held_i0)] : AckdOTCostEntry(ot, i, j);
}
/* With labels (AckdOTSetLabels), a student and a teacher of different classes, or a student of
 * none (label < 0), cost +inf: the class blocks. */
static inline PetscBool AckdOTClassesApart(PetscInt class_s, PetscInt class_t)
{
  return (PetscBool)(class_s < 0 || class_s != class_t);
}
/* The factor of X~ Y~^T in every cost (see cost.c). */
static inline double AckdOTGemmScale(AckdOT ot)
{
  return ot->cost_kind == ACKD_OT_COST_SQEUCLIDEAN ? -2.0 : -1.0;
}
PetscErrorCode AckdOTAssembleCost(AckdOT ot, const double *student_rows, const double *teacher_rows);
/* This rank's block of the block-cyclic C: mloc, nloc, lld, row_global, col_global. */
PetscErrorCode AckdOTSetLayout(AckdOT ot);
/* Collective: the first of rows [lo, hi) (global indices, n in all) holding NaN or Inf, n if none. */
PetscErrorCode AckdOTFirstBadRow(AckdOT ot, PetscInt n, PetscInt lo, PetscInt hi, const double *rows, PetscInt *bad);
PetscErrorCode AckdOTSinkhorn(AckdOT ot);
PetscErrorCode AckdOTComputeTopK(AckdOT ot);
PetscErrorCode AckdOTExact(AckdOT ot);
PetscErrorCode AckdOTSemiDual(AckdOT ot);
/* Reads (and with -help lists) the options of the semi-dual solver's Tao. */
PetscErrorCode AckdOTSemiDualOptions(AckdOT ot);
PetscErrorCode AckdOTAuction(AckdOT ot);
/* Shared by the solvers that work on rank 0 (gathered_solve.c): the whole
 * cost matrix there (column-major ns x nt, +inf kept; NULL elsewhere), and the
 * full top-k table (ns x k, same on every rank) cut down to this rank's rows. */
PetscErrorCode AckdOTGatherCost(AckdOT ot, double **full);
PetscErrorCode AckdOTKeepTopKRows(AckdOT ot, PetscInt k, const PetscInt *index, const double *weight);
/* Room for the top-k of the rows this rank keeps, local rows [first, first +
 * nrows) (topk.c): topk_rows filled with their global indices, the rest to fill. */
PetscErrorCode AckdOTTopKAllocate(AckdOT ot, PetscInt k, PetscInt first, PetscInt nrows);
/* Shared by the iterative solvers (solve_record.c). */
PetscErrorCode AckdOTRecordCheck(AckdOT ot, PetscInt iteration, double eps, double err);
/* <C,P>, <C,P> + eps sum P log P and the row marginal error of the current
 * potentials, in one pass; work holds mloc doubles. */
PetscErrorCode AckdOTPlanStatistics(AckdOT ot, double eps, double *work);
/* Full vectors from the local parts: entries of local rows (or columns) of
 * grid column 0 (or row 0) are broadcast to every rank. */
PetscErrorCode AckdOTGatherPotentials(AckdOT ot);
/* state.c and its class-block half in blocks.c; resuming is sinkhorn.c's */
PetscErrorCode AckdOTResumeFrom(AckdOT ot, PetscInt stage, const PetscInt *row_of, const double *f,
                                const PetscInt *col_of, const double *g);
PetscInt       AckdOTBlocksCount(AckdOT ot);
PetscErrorCode AckdOTBlocksGetState(AckdOT ot, AckdOTState *state);
PetscErrorCode AckdOTBlocksSetState(AckdOT ot, const AckdOTState *state);

#endif
