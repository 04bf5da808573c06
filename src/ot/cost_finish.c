/* A block of GEMM products made costs (cost.c's assembly and online.c's tiles): the rank-one
 * terms added, rounding below 0 of distances cut, +inf across classes. */
#include "ot_impl.h"
#include <math.h>

double AckdOTFinishCosts(AckdOT ot, PetscInt i0, PetscInt m, PetscInt j0, PetscInt ncols, double *c, PetscInt ldc,
                         const double *row_term_loc, const double *col_term_loc)
{
  /* rounding can make a distance of equal points slightly negative */
  const double  floor_cost = ot->cost_kind == ACKD_OT_COST_KL ? -INFINITY : 0.0;
  const double *row_term   = row_term_loc + i0;
  double        top        = -INFINITY;
  for (PetscInt j = 0; j < ncols; j++) {
    const double col_term = col_term_loc[j0 + j];
    double      *col      = c + (size_t)j * ldc;
    if (!ot->labels_s) { /* the online mode's inner loop: kept simple enough to vectorise */
      for (PetscInt i = 0; i < m; i++) {
        double v = col[i] + row_term[i] + col_term;
        v        = v < floor_cost ? floor_cost : v;
        col[i]   = v;
        top      = v > top ? v : top;
      }
      continue;
    }
    const PetscInt class_t = ot->labels_t[ot->col_global[j0 + j]];
    for (PetscInt i = 0; i < m; i++) {
      const PetscInt class_s = ot->labels_s[ot->row_global[i0 + i]];
      double         v       = col[i] + row_term[i] + col_term;
      v                      = v < floor_cost ? floor_cost : v;
      if (AckdOTClassesApart(class_s, class_t)) v = INFINITY;
      col[i] = v;
      if (v < INFINITY) top = v > top ? v : top;
    }
  }
  return top;
}
