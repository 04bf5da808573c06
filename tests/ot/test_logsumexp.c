/* The Sinkhorn kernels against a long-double reference, and their exp
 * against libm's: ordinary values,
 * values whose one-pass sum would overflow or underflow (the exact fallback),
 * +inf costs and zero-mass (-inf) potentials; and the grid shape rule. */
#include "ot/ot_grid.h"
#include "ot/ot_kernels.h"
#include "check.h"
#include <math.h>

enum { M = 37, N = 23 }; /* odd sizes: the 8-lane remainder loops run too */

/* log sum over a row (by_row) or column of exp((f_i + g_j - C_ij) * inv_eps) */
static double reference(const double *C, const double *f, const double *g, double inv_eps, int line, int by_row)
{
  long double top = -INFINITY, sum = 0;
  int         n = by_row ? N : M;
  for (int t = 0; t < n; t++) {
    int         i = by_row ? line : t, j = by_row ? t : line;
    long double x = ((long double)f[i] + g[j] - C[j * M + i]) * inv_eps;
    if (x > top) top = x;
  }
  if (top == -INFINITY) return -INFINITY;
  for (int t = 0; t < n; t++) {
    int i = by_row ? line : t, j = by_row ? t : line;
    sum += expl(((long double)f[i] + g[j] - C[j * M + i]) * inv_eps - top);
  }
  return (double)(top + logl(sum));
}

static void run_case(const char *name, double shift, double inv_eps)
{
  double   C[M * N], f[M], g[N], row[M], col[N], work[M];
  unsigned state = 12345;
  for (int t = 0; t < M * N; t++) {
    state = state * 1103515245u + 12345u;
    C[t]  = (state >> 8) / 16777216.0 * 3.0;
  }
  for (int i = 0; i < M; i++) f[i] = shift + 0.1 * i;
  for (int j = 0; j < N; j++) g[j] = -0.05 * j;
  C[5 * M + 3] = INFINITY;                             /* across classes */
  for (int i = 0; i < M; i++) C[7 * M + i] = INFINITY; /* a teacher no student can reach */
  f[11] = -INFINITY;                                   /* a student without mass */
  AckdOTRowLogSumExp(M, N, M, C, f, g, inv_eps, work, row);
  AckdOTColLogSumExp(M, N, M, C, f, g, inv_eps, col);
  for (int i = 0; i < M; i++) {
    double want = reference(C, f, g, inv_eps, i, 1);
    CHECK(want == -INFINITY ? row[i] == -INFINITY : fabs(row[i] - want) <= 1e-13 * fmax(1, fabs(want)),
          "%s: row %d: %.17g, want %.17g", name, i, row[i], want);
  }
  for (int j = 0; j < N; j++) {
    double want = reference(C, f, g, inv_eps, j, 0);
    CHECK(want == -INFINITY ? col[j] == -INFINITY : fabs(col[j] - want) <= 1e-13 * fmax(1, fabs(want)),
          "%s: column %d: %.17g, want %.17g", name, j, col[j], want);
  }
}

/* The fused sweeps (log, scaling, and scaling with a float K on a double C)
 * against the two-pass definition in long double: column log-sums of the
 * incoming plan, g' = g + eps (log b - lse_j), and the row sums of the plan
 * at (f, g'). The float K is held to its rounding (6e-8 relative per entry). */
static void run_sweep_case(const char *name, double shift, double inv_eps, double absorbed_offset)
{
  double   C[M * N], K[M * N], f[M], g[N], g_ref[N], g0[N], f0[M], log_b[N], col[N], work[M], buf[5 * M];
  double   u[M], acc[M], extra[M], eps = 1.0 / inv_eps;
  float    K32[M * N];
  unsigned state = 777;
  for (int t = 0; t < M * N; t++) {
    state = state * 1103515245u + 12345u;
    C[t]  = (state >> 8) / 16777216.0 * 3.0;
  }
  for (int i = 0; i < M; i++) f[i] = shift + 0.1 * i;
  for (int j = 0; j < N; j++) g[j] = -0.05 * j, log_b[j] = log(1.0 / N);
  C[5 * M + 3] = INFINITY;
  f[11]        = -INFINITY;
  g[9] = -INFINITY, log_b[9] = -INFINITY; /* a teacher without mass */
  for (int pass = 0; pass < 3; pass++) {
    const double     loose = pass == 2 ? 1e6 : 1.0; /* float K: 1e-13 becomes 1e-7 */
    AckdOTColumnRule rule  = {eps, 1.0, 1.0, log_b};
    PetscBool        fallback;
    for (int j = 0; j < N; j++) g_ref[j] = g[j];
    double gw[N];
    for (int j = 0; j < N; j++) gw[j] = g[j];
    if (pass == 0) {
      for (int i = 0; i < M; i++) work[i] = 0;
      AckdOTFusedSweep(M, N, M, C, f, gw, &rule, col, buf, work);
    } else {
      /* a kernel absorbed at potentials a little off the current ones: scalings != 1 */
      for (int i = 0; i < M; i++) f0[i] = f[i] == -INFINITY ? 0 : f[i] - absorbed_offset * eps;
      for (int j = 0; j < N; j++) g0[j] = g[j] == -INFINITY ? 0 : g[j] + absorbed_offset * eps;
      if (pass == 1) {
        AckdOTAbsorbKernel(M, N, M, C, f0, g0, inv_eps, K);
        AckdOTScalingSweep(M, N, M, C, K, f, f0, gw, g0, &rule, col, u, acc, extra, work, &fallback);
      } else {
        AckdOTAbsorbKernelMixed(M, N, M, C, f0, g0, inv_eps, K32);
        AckdOTScalingSweepMixed(M, N, M, C, K32, f, f0, gw, g0, &rule, col, u, acc, extra, work, &fallback);
      }
    }
    for (int j = 0; j < N; j++) {
      double want = g_ref[j] == -INFINITY ? -INFINITY : reference(C, f, g_ref, inv_eps, j, 0);
      CHECK(want == -INFINITY ? col[j] == -INFINITY : fabs(col[j] - want) <= 1e-13 * loose * fmax(1, fabs(want)),
            "%s sweep %d: column %d: %.17g, want %.17g", name, pass, j, col[j], want);
      g_ref[j] = want == -INFINITY ? -INFINITY : g_ref[j] + eps * (log_b[j] - want);
      CHECK(g_ref[j] == -INFINITY ? gw[j] == -INFINITY
                                  : fabs(gw[j] - g_ref[j]) <= 1e-12 * loose * fmax(1, fabs(g_ref[j])),
            "%s sweep %d: g[%d]: %.17g, want %.17g", name, pass, j, gw[j], g_ref[j]);
    }
    for (int i = 0; i < M; i++) {
      if (f[i] == -INFINITY) continue;
      double want = exp(reference(C, f, g_ref, inv_eps, i, 1));
      CHECK(fabs(work[i] - want) <= 1e-12 * loose * want, "%s sweep %d: row sum %d: %.17g, want %.17g", name, pass, i,
            work[i], want);
    }
  }
}

/* The sweep's exp against libm's: a few ulp wherever the result is a normal
 * double up to 709 (beyond, the portable one saturates at exp(709)), 0 below -708 and for -inf
 * (zero mass, +inf cost), no NaN or 0 above, NaN kept. */
static void run_exp_case(const char *name)
{
  enum { WIDE = 3001, NEAR = 2001, SPECIAL = 9, TOTAL = WIDE + NEAR + SPECIAL };
  static double x[TOTAL], y[TOTAL];
  const double  special[SPECIAL] = {-INFINITY, NAN, -1e300, -745.2, -708.0, -707.9, 709.7, 710.0, 1e300};
  int           n                = 0;
  double        worst            = 0;
  for (int t = 0; t < WIDE; t++) x[n++] = -760.0 + 1480.0 * t / (WIDE - 1) + 1e-3 * sin(t);
  for (int t = 0; t < NEAR; t++) x[n++] = -2.0 + 4.0 * t / (NEAR - 1);
  for (int t = 0; t < SPECIAL; t++) x[n++] = special[t];
  AckdOTExpArray(n, x, y);
  for (int t = 0; t < n; t++) {
    if (isnan(x[t]))
      CHECK(isnan(y[t]), "%s: exp(NaN) = %g", name, y[t]);
    else if (x[t] < -708.0)
      CHECK(y[t] == 0.0, "%s: exp(%.17g) = %g, want 0", name, x[t], y[t]);
    else if (x[t] <= 709.0) {
      double want = exp(x[t]), err = fabs(y[t] - want) / want;
      CHECK(err <= 4.5e-16, "%s: exp(%.17g) = %.17g, libm %.17g", name, x[t], y[t], want);
      worst = fmax(worst, err);
    } else
      CHECK(!isnan(y[t]) && y[t] >= exp(709.0), "%s: exp(%.17g) = %g", name, x[t], y[t]);
  }
  printf("%s: largest relative error against libm exp on [-708, 709]: %.3g\n", name, worst);
}

int main(void)
{
  /* each case on the AVX-512 kernels (where the CPU has them) and the portable ones */
  for (int portable = 0; portable < 2; portable++) {
    AckdOTPortableExp = (PetscBool)portable;
    run_exp_case(portable ? "portable exp" : "sweep exp");
    run_sweep_case("ordinary", 0.0, 1.0, 0.5);
    run_sweep_case("large eps", 0.3, 1e-3, 3.0);
    run_sweep_case("overflowing columns", 40.0, 20.0, 0.0); /* column sums beyond 1e250: the exact fallback */
  }
  AckdOTPortableExp = PETSC_FALSE;

  run_case("ordinary", 0.0, 1.0);
  run_case("overflowing sums", 900.0, 1.0); /* exp(900): the one-pass sum overflows */
  run_case("underflowing sums", -5.0, 1e4); /* eps = 1e-4: every term underflows */
  run_case("large eps", 0.3, 1e-3);

  PetscInt r, c;
  AckdOTGridAutoShape(1, &r, &c);
  CHECK(r == 1 && c == 1, "1 rank: %dx%d", (int)r, (int)c);
  AckdOTGridAutoShape(2, &r, &c);
  CHECK(r == 1 && c == 2, "2 ranks: %dx%d", (int)r, (int)c);
  AckdOTGridAutoShape(4, &r, &c);
  CHECK(r == 1 && c == 4, "4 ranks: %dx%d", (int)r, (int)c);
  AckdOTGridAutoShape(12, &r, &c);
  CHECK(r == 1 && c == 12, "12 ranks: %dx%d", (int)r, (int)c);
  AckdOTGridAutoShape(7, &r, &c);
  CHECK(r == 1 && c == 7, "7 ranks: %dx%d", (int)r, (int)c);
  /* block-cyclic index map: block 2 over 3 processes, process 1 owns 2,3,8,9,... */
  CHECK(AckdOTLocalToGlobal(0, 2, 3, 1) == 2 && AckdOTLocalToGlobal(1, 2, 3, 1) == 3 &&
            AckdOTLocalToGlobal(2, 2, 3, 1) == 8,
        "block-cyclic map");
  return CHECK_REPORT("unit.ot.logsumexp");
}
