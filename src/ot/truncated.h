/* The truncated solve (-ot_truncate K): Sinkhorn on a sparse set S of the entries of C, chosen
 * by a nearest-neighbour search and grown until a dense pass over all entries certifies the
 * answer. Private to src/ot; the method is in truncated.c, the passes over S in sparse_store.c. */
#ifndef ACKD_OT_TRUNCATED_H
#define ACKD_OT_TRUNCATED_H

#include <ackd/ot.h>
#include <stdint.h>

typedef struct _AckdOTSparse {
  /* S on this rank: the local columns compressed (CSC), rows ascending in each column, the exact
   * (double) cost of every entry */
  int64_t *col_start; /* nloc + 1 */
  int32_t *row;
  double  *cost;
  int64_t  nnz, capacity;
  int32_t  longest;   /* entries in the fullest column */
  int32_t *row_count; /* mloc: entries of each local row on this rank (0: its sums here are empty, not small) */

  /* the features, both precisions, row-major: exact costs of S (double) and the dense passes'
   * tiles (float GEMM) */
  double *xd, *yd;             /* mloc x d, nloc x d */
  float  *x32, *y32;           /* the same rounded */
  double *row_term, *col_term; /* the rank-one terms of the local rows and columns */
  float  *row_term32, *col_term32;
  double  delta; /* |float tile cost - exact cost| <= delta for every entry (truncated.c) */

  /* the certificate of the last dense pass (truncated.c) */
  double   column_bound, row_bound; /* L2 marginal errors of the dense plan, upper bounds */
  double   discarded_mass;          /* plan mass of the entries outside S, upper bound */
  double   discarded_cost;          /* their share of <C, P>, upper bound */
  int64_t  kept;                    /* |S| over all ranks */
  PetscInt rounds;                  /* certificates made: dense passes that certified or grew S */
} AckdOTSparse;

/* The set-up of a truncated problem from the transformed contiguous slices (freed here) and the
 * rank-one terms of all samples: features placed, the nearest-neighbour pass, S built, max C. */
PetscErrorCode AckdOTTruncatedSetUp(AckdOT ot, PetscInt lo_s, PetscInt hi_s, double **xs, PetscInt lo_t, PetscInt hi_t,
                                    double **yt, const double *row_term, const double *col_term);
/* Sinkhorn on S, certified by a dense pass, S grown and solved on until it holds. */
PetscErrorCode AckdOTTruncatedSolve(AckdOT ot);
PetscErrorCode AckdOTSparseDestroy(AckdOT ot);
/* S after set-up: the exact cost of an entry (sparse_store.c) and S's rebuild with extra entries. */
double         AckdOTSparseExactCost(AckdOT ot, PetscInt i, PetscInt j);
PetscErrorCode AckdOTSparseBuild(AckdOT ot, int64_t nextra, const int32_t *extra_row, const int32_t *extra_col);
/* The plan's statistics over S (sparse_store.c): row sums added to work, <C, P> and
 * sum P log P / eps added to local[0], local[1]. */
PetscErrorCode AckdOTSparsePlanStatistics(AckdOT ot, double eps, double *work, double local[2]);

#endif
