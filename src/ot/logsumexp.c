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

#define COST_T         double
#define KERNEL_NAME(x) x
#include "logsumexp_kernels.h"
#define COST_T         float
#define KERNEL_NAME(x) x##Single
#include "logsumexp_kernels.h"

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
