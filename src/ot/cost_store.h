/* How this rank's block of C is held, and the passes over it that the solvers make: stored in
 * double, stored in float (-ot_precision single), or never stored, its tiles recomputed from the
 * features whenever a pass needs them (-ot_online, online.c). AckdOTSetUp picks one store; the
 * passes then never ask which. Private to src/ot. */
#ifndef ACKD_OT_COST_STORE_H
#define ACKD_OT_COST_STORE_H

#include <ackd/ot.h>
#include <stdint.h>

#include "ot_kernels.h"

typedef struct {
  const char *name;
  /* col_lse_j = log Σ_i exp((f_i + g_j - C_ij) inv_eps) over this rank's rows (the grid column's
   * merge is the caller's) */
  PetscErrorCode (*column_lse)(AckdOT ot, const double *f, const double *g, double inv_eps, double *col_lse);
  /* row_lse_i likewise over this rank's columns; work and spare: mloc doubles each */
  PetscErrorCode (*row_lse)(AckdOT ot, const double *f, const double *g, double inv_eps, double *work, double *spare,
                            double *row_lse);
  /* Sinkhorn's fused sweep over whole columns (ot_kernels.h) on f_loc, g_loc; work: mloc zeros */
  PetscErrorCode (*fused_sweep)(AckdOT ot, const AckdOTColumnRule *rule, double *col_lse, double *buf, double *work);
  /* log of that sweep's row sums in work, exactly where they left the safe range; spare: 2 mloc */
  PetscErrorCode (*row_sums_to_lse)(AckdOT ot, double inv_eps, double *work, double *spare, double *row_lse);
  /* The stabilised scaling kernel (-ot_sinkhorn_kernel scaling), stored C only (NULL online):
   * K = exp((f0 + g0 - C) inv_eps) in the kernel's precision (K32 when ot->kernel_single, else K),
   * and one sweep with it (scaling_kernels.h). */
  PetscErrorCode (*absorb)(AckdOT ot, const double *f0, const double *g0, double inv_eps, double *K, float *K32);
  PetscErrorCode (*scaling_sweep)(AckdOT ot, const double *K, const float *K32, const double *f0, const double *g0,
                                  const AckdOTColumnRule *rule, double *col_lse, double *u, double *acc, double *extra,
                                  double *work, PetscBool *fallback);
} AckdOTCostStore;

extern const AckdOTCostStore ackd_ot_store_double, ackd_ot_store_float, ackd_ot_store_online, ackd_ot_store_sparse;

/* row_sums_to_lse for the stores that hold no block of C to hand to the kernels (online, sparse):
 * the log of each row sum in work where it lies in the one-pass range; for the other rows, two
 * passes of `pass_over` over their entries, the first taking each row's maximum argument, the
 * second its shifted sum (AckdOTExactRowAdd). row_count (may be NULL) marks rows with no entry on
 * this rank: their sum is empty, not small. */
typedef PetscErrorCode (*AckdOTExactRowPass)(AckdOT ot, double inv_eps, int pass, const double *row_lse, double *top,
                                             double *sum);
PetscErrorCode AckdOTRowSumsToLseByPasses(AckdOT ot, double inv_eps, const double *work, const int32_t *row_count,
                                          AckdOTExactRowPass pass_over, double *spare, double *row_lse);
/* One entry's argument x of a row left to the exact passes (row_lse NaN), into its top and sum. */
static inline void AckdOTExactRowAdd(int pass, double x, double *top, double *sum)
{
  if (pass == 0)
    *top = fmax(*top, x);
  else if (*top > -INFINITY)
    *sum += exp(x - *top);
}

#endif
