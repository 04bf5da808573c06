/* The stored cost blocks, in double and in float: each pass is one kernel call over the whole
 * local block (ot_kernels.h, scaling_kernels.h). The online store is online.c's. */
#include "ot_impl.h"

static PetscErrorCode column_lse_double(AckdOT ot, const double *f, const double *g, double inv_eps, double *col_lse)
{
  PetscFunctionBeginUser;
  AckdOTColLogSumExp(ot->mloc, ot->nloc, ot->lld, ot->C, f, g, inv_eps, col_lse);
  PetscFunctionReturn(0);
}

static PetscErrorCode column_lse_float(AckdOT ot, const double *f, const double *g, double inv_eps, double *col_lse)
{
  PetscFunctionBeginUser;
  AckdOTColLogSumExpSingle(ot->mloc, ot->nloc, ot->lld, ot->C32, f, g, inv_eps, col_lse);
  PetscFunctionReturn(0);
}

static PetscErrorCode row_lse_double(AckdOT ot, const double *f, const double *g, double inv_eps, double *work,
                                     double *spare, double *row_lse)
{
  PetscFunctionBeginUser;
  (void)spare;
  AckdOTRowLogSumExp(ot->mloc, ot->nloc, ot->lld, ot->C, f, g, inv_eps, work, row_lse);
  PetscFunctionReturn(0);
}

static PetscErrorCode row_lse_float(AckdOT ot, const double *f, const double *g, double inv_eps, double *work,
                                    double *spare, double *row_lse)
{
  PetscFunctionBeginUser;
  (void)spare;
  AckdOTRowLogSumExpSingle(ot->mloc, ot->nloc, ot->lld, ot->C32, f, g, inv_eps, work, row_lse);
  PetscFunctionReturn(0);
}

static PetscErrorCode fused_sweep_double(AckdOT ot, const AckdOTColumnRule *rule, double *col_lse, double *buf,
                                         double *work)
{
  PetscFunctionBeginUser;
  AckdOTFusedSweep(ot->mloc, ot->nloc, ot->lld, ot->C, ot->f_loc, ot->g_loc, rule, col_lse, buf, work);
  PetscFunctionReturn(0);
}

static PetscErrorCode fused_sweep_float(AckdOT ot, const AckdOTColumnRule *rule, double *col_lse, double *buf,
                                        double *work)
{
  PetscFunctionBeginUser;
  AckdOTFusedSweepSingle(ot->mloc, ot->nloc, ot->lld, ot->C32, ot->f_loc, ot->g_loc, rule, col_lse, buf, work);
  PetscFunctionReturn(0);
}

static PetscErrorCode row_sums_double(AckdOT ot, double inv_eps, double *work, double *spare, double *row_lse)
{
  PetscFunctionBeginUser;
  (void)spare;
  AckdOTRowSumsToLogSumExp(ot->mloc, ot->nloc, ot->lld, ot->C, ot->f_loc, ot->g_loc, inv_eps, work, row_lse);
  PetscFunctionReturn(0);
}

static PetscErrorCode row_sums_float(AckdOT ot, double inv_eps, double *work, double *spare, double *row_lse)
{
  PetscFunctionBeginUser;
  (void)spare;
  AckdOTRowSumsToLogSumExpSingle(ot->mloc, ot->nloc, ot->lld, ot->C32, ot->f_loc, ot->g_loc, inv_eps, work, row_lse);
  PetscFunctionReturn(0);
}

/* A double C keeps its kernel in double, or in float (-ot_kernel_precision single: half the
 * bytes, the "mixed" kernels); a float C's kernel is float. */
static PetscErrorCode absorb_double(AckdOT ot, const double *f0, const double *g0, double inv_eps, double *K,
                                    float *K32)
{
  PetscFunctionBeginUser;
  if (ot->kernel_single)
    AckdOTAbsorbKernelMixed(ot->mloc, ot->nloc, ot->lld, ot->C, f0, g0, inv_eps, K32);
  else
    AckdOTAbsorbKernel(ot->mloc, ot->nloc, ot->lld, ot->C, f0, g0, inv_eps, K);
  PetscFunctionReturn(0);
}

static PetscErrorCode absorb_float(AckdOT ot, const double *f0, const double *g0, double inv_eps, double *K, float *K32)
{
  PetscFunctionBeginUser;
  (void)K;
  AckdOTAbsorbKernelSingle(ot->mloc, ot->nloc, ot->lld, ot->C32, f0, g0, inv_eps, K32);
  PetscFunctionReturn(0);
}

static PetscErrorCode scaling_sweep_double(AckdOT ot, const double *K, const float *K32, const double *f0,
                                           const double *g0, const AckdOTColumnRule *rule, double *col_lse, double *u,
                                           double *acc, double *extra, double *work, PetscBool *fallback)
{
  PetscFunctionBeginUser;
  if (ot->kernel_single)
    AckdOTScalingSweepMixed(ot->mloc, ot->nloc, ot->lld, ot->C, K32, ot->f_loc, f0, ot->g_loc, g0, rule, col_lse, u,
                            acc, extra, work, fallback);
  else
    AckdOTScalingSweep(ot->mloc, ot->nloc, ot->lld, ot->C, K, ot->f_loc, f0, ot->g_loc, g0, rule, col_lse, u, acc,
                       extra, work, fallback);
  PetscFunctionReturn(0);
}

static PetscErrorCode scaling_sweep_float(AckdOT ot, const double *K, const float *K32, const double *f0,
                                          const double *g0, const AckdOTColumnRule *rule, double *col_lse, double *u,
                                          double *acc, double *extra, double *work, PetscBool *fallback)
{
  PetscFunctionBeginUser;
  (void)K;
  AckdOTScalingSweepSingle(ot->mloc, ot->nloc, ot->lld, ot->C32, K32, ot->f_loc, f0, ot->g_loc, g0, rule, col_lse, u,
                           acc, extra, work, fallback);
  PetscFunctionReturn(0);
}

const AckdOTCostStore ackd_ot_store_double = {.name            = "double",
                                              .column_lse      = column_lse_double,
                                              .row_lse         = row_lse_double,
                                              .fused_sweep     = fused_sweep_double,
                                              .row_sums_to_lse = row_sums_double,
                                              .absorb          = absorb_double,
                                              .scaling_sweep   = scaling_sweep_double};

const AckdOTCostStore ackd_ot_store_float = {.name            = "float",
                                             .column_lse      = column_lse_float,
                                             .row_lse         = row_lse_float,
                                             .fused_sweep     = fused_sweep_float,
                                             .row_sums_to_lse = row_sums_float,
                                             .absorb          = absorb_float,
                                             .scaling_sweep   = scaling_sweep_float};

PetscErrorCode AckdOTRowSumsToLseByPasses(AckdOT ot, double inv_eps, const double *work, const int32_t *row_count,
                                          AckdOTExactRowPass pass_over, double *spare, double *row_lse)
{
  PetscInt exact = 0;
  double  *top = spare, *sum = spare + ot->mloc;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < ot->mloc; i++) {
    const PetscBool empty = (PetscBool)(ot->f_loc[i] == -INFINITY || (row_count && !row_count[i]));
    row_lse[i]            = empty ? -INFINITY : AckdOTSumInRange(work[i]) ? log(work[i]) : NAN;
    exact += isnan(row_lse[i]);
  }
  if (!exact) PetscFunctionReturn(0);
  for (PetscInt i = 0; i < ot->mloc; i++) top[i] = -INFINITY, sum[i] = 0;
  for (int pass = 0; pass < 2; pass++) PetscCall(pass_over(ot, inv_eps, pass, row_lse, top, sum));
  for (PetscInt i = 0; i < ot->mloc; i++)
    if (isnan(row_lse[i])) row_lse[i] = top[i] == -INFINITY ? -INFINITY : top[i] + log(sum[i]);
  PetscFunctionReturn(0);
}
