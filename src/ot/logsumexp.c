/* The Sinkhorn inner loop: log-sum-exp of the plan's log entries over the
 * local block of C, and the MPI reduction that merges partial results.
 *
 * Stability by absorption: the plan's log entries (f_i + g_j - C_ij) / eps
 * already carry the current potentials, so near a solution their exponentials
 * are plan entries (at most 1) and one pass without a max shift is safe. A
 * row or column whose sum leaves a comfortable range (early iterations, a
 * change of eps) is recomputed with an exact max shift, so the result never
 * overflows or loses precision, at the price of a second pass only there. */
#include "ot_impl.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Outside [SUM_LOW, SUM_HIGH] a one-pass sum may have overflowed, or consist
 * of denormals that lost digits: such lines get the exact two-pass treatment. */
#define SUM_LOW  1e-250
#define SUM_HIGH 1e250
/* Below this exp() underflows to denormals: those terms count as zero. */
#define EXP_MIN_ARG -708.0

/* exp() written so that the compiler can vectorise the loops it sits in (libm's
 * exp is an opaque call). Range reduction x = k ln2 + r with |r| <= ln2/2, a
 * degree-12 Taylor polynomial (truncation error below 2e-16 relative), 2^k
 * built in the exponent bits. exp(-inf) = 0, NaN propagates. */
static inline double exp_vectorizable(double x)
{
  const double log2e = 1.4426950408889634074, ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10,
               round_shift = 0x1.8p52;
  double   xc              = x < EXP_MIN_ARG ? EXP_MIN_ARG : (x > 709.0 ? 709.0 : x);
  double   kd              = xc * log2e + round_shift; /* round to nearest: k sits in the low mantissa bits */
  uint64_t kbits;
  memcpy(&kbits, &kd, sizeof kbits);
  kd -= round_shift;
  double r       = (xc - kd * ln2_hi) - kd * ln2_lo;
  double p       = 1.0 / 479001600.0;
  p              = p * r + 1.0 / 39916800.0;
  p              = p * r + 1.0 / 3628800.0;
  p              = p * r + 1.0 / 362880.0;
  p              = p * r + 1.0 / 40320.0;
  p              = p * r + 1.0 / 5040.0;
  p              = p * r + 1.0 / 720.0;
  p              = p * r + 1.0 / 120.0;
  p              = p * r + 1.0 / 24.0;
  p              = p * r + 1.0 / 6.0;
  p              = p * r + 0.5;
  p              = p * r + 1.0;
  p              = p * r + 1.0;
  uint64_t sbits = (kbits + 1023) << 52;
  double   scale;
  memcpy(&scale, &sbits, sizeof scale);
  double y = p * scale;
  return x < EXP_MIN_ARG ? 0.0 : y;
}

/* One build runs well on any x86-64: GCC compiles the two kernels for AVX-512F,
 * AVX2 and baseline SSE2 (chosen by CPU features, not model names, which virtual CPUs hide) and picks one when the
 * program loads. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define KERNEL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define KERNEL_CLONES
#endif

/* Exact log-sum-exp of a strided line: max shift first. */
static double line_lse_exact(PetscInt n, PetscInt stride, const double *c, double fixed, const double *varying,
                             double inv_eps)
{
  double top = -INFINITY, sum = 0;
  for (PetscInt t = 0; t < n; t++) top = fmax(top, (fixed + varying[t] - c[t * stride]) * inv_eps);
  if (top == -INFINITY) return -INFINITY;
  for (PetscInt t = 0; t < n; t++) sum += exp((fixed + varying[t] - c[t * stride]) * inv_eps - top);
  return top + log(sum);
}

KERNEL_CLONES void AckdOTRowLogSumExp(PetscInt m, PetscInt n, PetscInt lld, const double *C, const double *f,
                                      const double *g, double inv_eps, double *work, double *lse)
{
  /* Column by column: the inner loop runs down contiguous memory and updates
   * m independent sums, which vectorises. */
  for (PetscInt i = 0; i < m; i++) work[i] = 0;
  /* four columns per sweep: a quarter of the loads and stores of work[] */
  PetscInt j = 0;
  for (; j + 4 <= n; j += 4) {
    const double *c0 = C + (size_t)j * lld, *c1 = c0 + lld, *c2 = c1 + lld, *c3 = c2 + lld;
    const double  g0 = g[j], g1 = g[j + 1], g2 = g[j + 2], g3 = g[j + 3]; /* -inf gives exp = 0 */
    for (PetscInt i = 0; i < m; i++)
      work[i] += (exp_vectorizable((f[i] + g0 - c0[i]) * inv_eps) + exp_vectorizable((f[i] + g1 - c1[i]) * inv_eps)) +
                 (exp_vectorizable((f[i] + g2 - c2[i]) * inv_eps) + exp_vectorizable((f[i] + g3 - c3[i]) * inv_eps));
  }
  for (; j < n; j++) {
    const double *c  = C + (size_t)j * lld;
    const double  gj = g[j];
    if (gj == -INFINITY) continue;
    for (PetscInt i = 0; i < m; i++) work[i] += exp_vectorizable((f[i] + gj - c[i]) * inv_eps);
  }
  for (PetscInt i = 0; i < m; i++) {
    if (f[i] == -INFINITY)
      lse[i] = -INFINITY;
    else if (work[i] >= SUM_LOW && work[i] <= SUM_HIGH)
      lse[i] = log(work[i]);
    else
      lse[i] = line_lse_exact(n, lld, C + i, f[i], g, inv_eps);
  }
}

KERNEL_CLONES void AckdOTColLogSumExp(PetscInt m, PetscInt n, PetscInt lld, const double *C, const double *f,
                                      const double *g, double inv_eps, double *lse)
{
  enum { LANES = 16 }; /* independent partial sums: a reduction the compiler may vectorise */
  for (PetscInt j = 0; j < n; j++) {
    const double *c  = C + (size_t)j * lld;
    const double  gj = g[j];
    if (gj == -INFINITY) {
      lse[j] = -INFINITY;
      continue;
    }
    double   acc[LANES] = {0};
    PetscInt i          = 0;
    for (; i + LANES <= m; i += LANES)
      for (PetscInt u = 0; u < LANES; u++) acc[u] += exp_vectorizable((f[i + u] + gj - c[i + u]) * inv_eps);
    double sum = 0;
    for (PetscInt u = 0; u < LANES; u++) sum += acc[u];
    for (; i < m; i++) sum += exp_vectorizable((f[i] + gj - c[i]) * inv_eps);
    if (sum >= SUM_LOW && sum <= SUM_HIGH)
      lse[j] = log(sum);
    else
      lse[j] = line_lse_exact(m, 1, c, gj, f, inv_eps);
  }
}

/* inout = log(exp(in) + exp(inout)), elementwise, without overflow. */
static void lse_merge(void *in, void *inout, int *len, MPI_Datatype *type)
{
  const double *x = (const double *)in;
  double       *y = (double *)inout;
  for (int t = 0; t < *len; t++) {
    double hi = fmax(x[t], y[t]), lo = fmin(x[t], y[t]);
    y[t] = hi == -INFINITY ? -INFINITY : hi + log1p(exp(lo - hi));
  }
}

PetscErrorCode AckdOTLogSumExpOpCreate(MPI_Op *op)
{
  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Op_create(lse_merge, 1, op));
  PetscFunctionReturn(0);
}
