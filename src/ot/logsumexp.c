/* The Sinkhorn inner loop: log-sum-exp of the plan's log entries over the
 * local block of C, and the MPI reduction that merges partial results.
 *
 * Stability by absorption: the plan's log entries (f_i + g_j - C_ij) / eps
 * already carry the current potentials, so near a solution their exponentials
 * are plan entries (at most 1) and one pass without a max shift is safe. A
 * row or column whose sum leaves a comfortable range (early iterations, a
 * change of eps) is recomputed with an exact max shift, so the result never
 * overflows or loses precision, at the price of a second pass only there. */
#include "ot_kernels.h"
#include <ackd/core.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

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

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define HAVE_AVX512_EXP 1
/* How far ahead the AVX-512 column loop asks for C: its exps leave the
 * hardware prefetcher behind once C streams from memory (n = 4000: 25 ms per
 * sweep without, 16 ms with, on the development machine). */
#define PREFETCH_BYTES 2048
#define AVX512_TARGET  __attribute__((target("avx512f,avx512vl")))

/* The polynomial exp above costs 13 FMAs per entry on top of its reduction,
 * and the fused sweep is bound by that, not by memory. With AVX-512 a table
 * of 2^(j/16) fits two registers (one permute looks it up) and vscalefpd
 * applies 2^k with correct overflow and underflow, so the reduced argument is
 * |r| <= ln2/32, where a degree-6 polynomial is accurate to 1e-17; and
 * y = t + t q (q = e^r - 1, small) keeps the error at the table's half ulp
 * plus one rounding. Arguments below EXP_MIN_ARG give 0 (as
 * exp_vectorizable: no denormals, whose arithmetic is slow), NaN propagates,
 * large arguments give +inf. */
#define EXP_H (0x1.62e42fefa39efp-1 / 32)
/* Taylor's r^7 / 7! replaced by its best approximation of lower degree on
 * [-h, h] (Chebyshev economization: x^7 - T7(x) / 64 has degree 5), which
 * moves the truncation error from 4e-16 to 1e-17 for no extra operation. */
#define EXP_C1 (1.0 + 7 * EXP_H * EXP_H * EXP_H * EXP_H * EXP_H * EXP_H / (64.0 * 5040))
#define EXP_C3 (1.0 / 6 - 56 * EXP_H * EXP_H * EXP_H * EXP_H / (64.0 * 5040))
#define EXP_C5 (1.0 / 120 + 112 * EXP_H * EXP_H / (64.0 * 5040))

AVX512_TARGET static inline __m512d exp8(__m512d x)
{
  /* 2^(j/16) rounded to nearest, j = 0..15 */
  const __m512d table_lo =
      _mm512_setr_pd(0x1.0000000000000p+0, 0x1.0b5586cf9890fp+0, 0x1.172b83c7d517bp+0, 0x1.2387a6e756238p+0,
                     0x1.306fe0a31b715p+0, 0x1.3dea64c123422p+0, 0x1.4bfdad5362a27p+0, 0x1.5ab07dd485429p+0);
  const __m512d table_hi =
      _mm512_setr_pd(0x1.6a09e667f3bcdp+0, 0x1.7a11473eb0187p+0, 0x1.8ace5422aa0dbp+0, 0x1.9c49182a3f090p+0,
                     0x1.ae89f995ad3adp+0, 0x1.c199bdd85529cp+0, 0x1.d5818dcfba487p+0, 0x1.ea4afa2a490dap+0);
  const double shift = 0x1.8p52;
  /* unordered-true, so that NaN stays NaN; -inf and x < EXP_MIN_ARG give 0 */
  const __mmask8 live = _mm512_cmp_pd_mask(x, _mm512_set1_pd(EXP_MIN_ARG), _CMP_NLT_UQ);
  /* k = round(16 x / ln2) sits in the low mantissa bits of kd: its low 4 bits index the table */
  const __m512d kd = _mm512_fmadd_pd(x, _mm512_set1_pd(0x1.71547652b82fep+4), _mm512_set1_pd(shift));
  /* k / 16, exact: kd / 16 and shift / 16 are exact and their difference too */
  const __m512d k16 = _mm512_fmsub_pd(kd, _mm512_set1_pd(1.0 / 16), _mm512_set1_pd(shift / 16));
  /* r = x - (k / 16) ln2 with ln2 in two parts: the cancellation against x loses no bit of r */
  __m512d r       = _mm512_fnmadd_pd(k16, _mm512_set1_pd(0x1.62e42fefa39efp-1), x);
  r               = _mm512_fnmadd_pd(k16, _mm512_set1_pd(0x1.abc9e3b39803fp-56), r);
  __m512d p       = _mm512_fmadd_pd(_mm512_set1_pd(1.0 / 720), r, _mm512_set1_pd(EXP_C5));
  p               = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0 / 24));
  p               = _mm512_fmadd_pd(p, r, _mm512_set1_pd(EXP_C3));
  p               = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0.5));
  p               = _mm512_fmadd_pd(p, r, _mm512_set1_pd(EXP_C1));
  const __m512d q = _mm512_mul_pd(p, r);
  const __m512d t = _mm512_permutex2var_pd(table_lo, _mm512_castpd_si512(kd), table_hi);
  /* vscalefpd multiplies by 2^floor(k / 16): the table supplied the rest of 2^(k/16) */
  return _mm512_maskz_scalef_pd(live, _mm512_fmadd_pd(t, q, t), k16);
}

/* lanes [0, rest) of 8: the loops end with a masked part instead of a scalar tail */
static inline __mmask8 lanes_mask(PetscInt rest)
{
  return rest >= 8 ? (__mmask8)0xff : (__mmask8)((1u << rest) - 1);
}

AVX512_TARGET static void exp_array_avx512(PetscInt n, const double *x, double *y)
{
  for (PetscInt i = 0; i < n; i += 8) {
    const __mmask8 k = lanes_mask(n - i);
    _mm512_mask_storeu_pd(y + i, k, exp8(_mm512_maskz_loadu_pd(k, x + i)));
  }
}

static PetscBool use_avx512_exp(void)
{
  return (PetscBool)(!AckdOTPortableExp && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl"));
}
#else
#define HAVE_AVX512_EXP 0
static PetscBool use_avx512_exp(void)
{
  return PETSC_FALSE;
}
#endif

PetscBool AckdOTPortableExp = PETSC_FALSE;

void AckdOTExpArray(PetscInt n, const double *x, double *y)
{
#if HAVE_AVX512_EXP
  if (use_avx512_exp()) {
    exp_array_avx512(n, x, y);
    return;
  }
#endif
  for (PetscInt i = 0; i < n; i++) y[i] = exp_vectorizable(x[i]);
}

#define COST_T              double
#define KERNEL_NAME(x)      x
#define LOAD_COST8(mask, c) _mm512_maskz_loadu_pd(mask, c)
#include "logsumexp_kernels.h"
#define COST_T              float
#define KERNEL_NAME(x)      x##Single
#define LOAD_COST8(mask, c) _mm512_cvtps_pd(_mm256_maskz_loadu_ps(mask, c))
#include "logsumexp_kernels.h"

/* The scaling kernels: K in C's precision, and the mixed one (-ot_kernel_precision
 * single on a double C), whose K streams half the bytes. */
#define COST_T           double
#define KABS_T           double
#define SCALING_NAME(x)  x
#define LINE_LSE         line_lse_exact
#define LOAD_K8(mask, k) _mm512_maskz_loadu_pd(mask, k)
#include "scaling_kernels.h"
#define COST_T           float
#define KABS_T           float
#define SCALING_NAME(x)  x##Single
#define LINE_LSE         line_lse_exactSingle
#define LOAD_K8(mask, k) _mm512_cvtps_pd(_mm256_maskz_loadu_ps(mask, k))
#include "scaling_kernels.h"
#define COST_T           double
#define KABS_T           float
#define SCALING_NAME(x)  x##Mixed
#define LINE_LSE         line_lse_exact
#define LOAD_K8(mask, k) _mm512_cvtps_pd(_mm256_maskz_loadu_ps(mask, k))
#include "scaling_kernels.h"

/* inout = log(exp(in) + exp(inout)), elementwise, without overflow. */
static void lse_merge(void *in, void *inout, int *len, MPI_Datatype *type)
{
  const double *x = (const double *)in;
  double       *y = (double *)inout;
  for (int t = 0; t < *len; t++) y[t] = AckdOTLogAddExp(x[t], y[t]);
}

PetscErrorCode AckdOTLogSumExpOpCreate(MPI_Op *op)
{
  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Op_create(lse_merge, 1, op));
  PetscFunctionReturn(0);
}
