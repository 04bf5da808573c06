/* The passes of Sinkhorn over the sparse set S of a truncated solve (truncated.h): the same
 * contract as the dense stores (cost_store.h), on whole local columns compressed.
 *
 * An entry outside S counts as cost +inf here: the solve is that of the problem restricted to S,
 * and the dense certificate (truncated.c) measures what the restriction left out. Every pass
 * works column by column: a column's entries are contiguous, its rows gathered from f and its
 * row sums scattered into work, and their exponentials are taken in one call of the Sinkhorn
 * kernels' exp (AVX-512 where the CPU has it). */
#include "ot_impl.h"
#include <math.h>

/* The plan's log entries of one column, fs = f / eps gathered by row: with AVX2 or AVX-512 the
 * clones gather 4 or 8 at a time. */
ACKD_CPU_CLONES static void gather_args(int64_t n, const int32_t *restrict row, const double *restrict cost,
                                        const double *restrict fs, double gs, double inv_eps, double *restrict arg)
{
  for (int64_t t = 0; t < n; t++) arg[t] = fs[row[t]] + gs - cost[t] * inv_eps;
}

/* Eight partial sums: the additions need not wait on one another. */
ACKD_CPU_CLONES static double sum_of(int64_t n, const double *e)
{
  double  part[8] = {0, 0, 0, 0, 0, 0, 0, 0}, sum = 0;
  int64_t t = 0;
  for (; t + 8 <= n; t += 8)
    for (int u = 0; u < 8; u++) part[u] += e[t + u];
  for (; t < n; t++) sum += e[t];
  for (int u = 0; u < 8; u++) sum += part[u];
  return sum;
}

/* work[row[t]] += e[t] ratio: the rows of a column are distinct, so the adds are independent. */
ACKD_CPU_CLONES static void scatter_add(int64_t n, const int32_t *row, const double *e, double ratio, double *work)
{
  for (int64_t t = 0; t < n; t++) work[row[t]] += e[t] * ratio;
}

/* e[t] = exp(fs[row[t]] + gj / eps - cost[t] / eps) over column j, fs = f / eps; returns their sum. */
static double column_exp(const AckdOTSparse *s, PetscInt j, const double *fs, double gj, double inv_eps, double *arg,
                         double *e)
{
  const int64_t b = s->col_start[j], n = s->col_start[j + 1] - b;
  gather_args(n, s->row + b, s->cost + b, fs, gj * inv_eps, inv_eps, arg);
  AckdOTExpArray((PetscInt)n, arg, e);
  return sum_of(n, e);
}

/* fs = f / eps, the gathered operand of every column. */
static void scaled(PetscInt m, const double *f, double inv_eps, double *fs)
{
  for (PetscInt i = 0; i < m; i++) fs[i] = f[i] * inv_eps;
}

/* The exact log-sum-exp of the arguments arg[0..n) of one column: max shift first. */
static double exact_lse(int64_t n, const double *arg)
{
  double top = -INFINITY, sum = 0;
  for (int64_t t = 0; t < n; t++) top = fmax(top, arg[t]);
  if (top == -INFINITY) return -INFINITY;
  for (int64_t t = 0; t < n; t++) sum += exp(arg[t] - top);
  return top + log(sum);
}

static PetscErrorCode sparse_column_lse(AckdOT ot, const double *f, const double *g, double inv_eps, double *col_lse)
{
  const AckdOTSparse *s = ot->sparse;
  double             *arg, *e;

  PetscFunctionBeginUser;
  double *fs;
  PetscCall(PetscMalloc3(s->longest + 1, &arg, s->longest + 1, &e, ot->mloc + 1, &fs));
  scaled(ot->mloc, f, inv_eps, fs);
  for (PetscInt j = 0; j < ot->nloc; j++) {
    if (g[j] == -INFINITY) {
      col_lse[j] = -INFINITY;
      continue;
    }
    const double sum = column_exp(s, j, fs, g[j], inv_eps, arg, e);
    col_lse[j]       = AckdOTSumInRange(sum) ? log(sum) : exact_lse(s->col_start[j + 1] - s->col_start[j], arg);
  }
  PetscCall(PetscFree3(arg, e, fs));
  PetscFunctionReturn(0);
}

/* The exact passes over S for the rows whose one-pass sum left the range. */
static PetscErrorCode sparse_exact_row_pass(AckdOT ot, double inv_eps, int pass, const double *row_lse, double *top,
                                            double *sum)
{
  const AckdOTSparse *s = ot->sparse;

  PetscFunctionBeginUser;
  for (PetscInt j = 0; j < ot->nloc; j++) {
    if (ot->g_loc[j] == -INFINITY) continue;
    for (int64_t t = s->col_start[j]; t < s->col_start[j + 1]; t++) {
      const int32_t i = s->row[t];
      if (isnan(row_lse[i]))
        AckdOTExactRowAdd(pass, (ot->f_loc[i] + ot->g_loc[j] - s->cost[t]) * inv_eps, &top[i], &sum[i]);
    }
  }
  PetscFunctionReturn(0);
}

/* A row with no entry on this rank (common: S is sparse) has an empty sum here, not a small one. */
static PetscErrorCode sparse_row_sums_to_lse(AckdOT ot, double inv_eps, double *work, double *spare, double *row_lse)
{
  PetscFunctionBeginUser;
  PetscCall(
      AckdOTRowSumsToLseByPasses(ot, inv_eps, work, ot->sparse->row_count, sparse_exact_row_pass, spare, row_lse));
  PetscFunctionReturn(0);
}

static PetscErrorCode sparse_row_lse(AckdOT ot, const double *f, const double *g, double inv_eps, double *work,
                                     double *spare, double *row_lse)
{
  const AckdOTSparse *s = ot->sparse;
  double             *arg, *e;

  PetscFunctionBeginUser;
  PetscCheck(f == ot->f_loc && g == ot->g_loc, ot->comm, PETSC_ERR_SUP,
             "the truncated solve's row pass works on the object's own potentials");
  double *fs;
  PetscCall(PetscMalloc3(s->longest + 1, &arg, s->longest + 1, &e, ot->mloc + 1, &fs));
  scaled(ot->mloc, f, inv_eps, fs);
  PetscCall(PetscArrayzero(work, ot->mloc));
  for (PetscInt j = 0; j < ot->nloc; j++) {
    if (g[j] == -INFINITY) continue;
    const int64_t b = s->col_start[j], n = s->col_start[j + 1] - b;
    (void)column_exp(s, j, fs, g[j], inv_eps, arg, e);
    scatter_add(n, s->row + b, e, 1.0, work);
  }
  PetscCall(PetscFree3(arg, e, fs));
  PetscCall(sparse_row_sums_to_lse(ot, inv_eps, work, spare, row_lse));
  PetscFunctionReturn(0);
}

/* One fused iteration (ot_kernels.h's AckdOTFusedSweep on S): per column, the column's sum, its
 * new g, and its entries' shares of the row sums at that new g, scattered into work. */
static PetscErrorCode sparse_fused_sweep(AckdOT ot, const AckdOTColumnRule *rule, double *col_lse, double *buf,
                                         double *work)
{
  const AckdOTSparse *s       = ot->sparse;
  const double        inv_eps = 1.0 / rule->eps;
  double             *arg, *e;

  double *fs = buf; /* 5 mloc doubles: room for f / eps */

  PetscFunctionBeginUser;
  PetscCall(PetscLogEventBegin(ot->event_sparse, 0, 0, 0, 0));
  PetscCall(PetscMalloc2(s->longest + 1, &arg, s->longest + 1, &e));
  scaled(ot->mloc, ot->f_loc, inv_eps, fs);
  for (PetscInt j = 0; j < ot->nloc; j++) {
    const double gj = ot->g_loc[j];
    if (gj == -INFINITY) { /* zero mass: transports nothing */
      col_lse[j] = -INFINITY;
      continue;
    }
    const int64_t   b = s->col_start[j], n = s->col_start[j + 1] - b;
    const double    sum      = column_exp(s, j, fs, gj, inv_eps, arg, e);
    const PetscBool in_range = AckdOTSumInRange(sum);
    col_lse[j]               = in_range ? log(sum) : exact_lse(n, arg);
    double next = AckdOTUpdatedPotential(gj, col_lse[j], rule->log_b[j], rule->eps, rule->damping, rule->omega);
    if (next == INFINITY) next = -INFINITY; /* no entry in S: the caller reports it */
    ot->g_loc[j] = next;
    if (next == -INFINITY) continue;
    double ratio = 1.0;
    if (in_range)
      ratio = exp((next - gj) * inv_eps);
    else
      (void)column_exp(s, j, fs, next, inv_eps, arg, e);
    scatter_add(n, s->row + b, e, ratio, work);
  }
  PetscCall(PetscFree2(arg, e));
  PetscCall(PetscLogEventEnd(ot->event_sparse, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

/* No stabilised scaling kernel: it would keep a second array beside S for a pass that is
 * already cheap; sinkhorn.c runs the log kernel. */
const AckdOTCostStore ackd_ot_store_sparse = {.name            = "truncated",
                                              .column_lse      = sparse_column_lse,
                                              .row_lse         = sparse_row_lse,
                                              .fused_sweep     = sparse_fused_sweep,
                                              .row_sums_to_lse = sparse_row_sums_to_lse};

PetscErrorCode AckdOTSparsePlanStatistics(AckdOT ot, double eps, double *work, double local[2])
{
  const AckdOTSparse *s = ot->sparse;

  PetscFunctionBeginUser;
  for (PetscInt j = 0; j < ot->nloc; j++)
    for (int64_t t = s->col_start[j]; t < s->col_start[j + 1]; t++) {
      const int32_t i    = s->row[t];
      const double  logp = (ot->f_loc[i] + ot->g_loc[j] - s->cost[t]) / eps;
      if (!(logp > -INFINITY)) continue;
      const double p = exp(logp);
      work[i] += p;
      local[0] += p * s->cost[t];
      local[1] += p * logp;
    }
  PetscFunctionReturn(0);
}
