/* The Sinkhorn kernels against a long-double reference: ordinary values,
 * values whose one-pass sum would overflow or underflow (the exact fallback),
 * +inf costs and zero-mass (-inf) potentials; and the grid shape rule. */
#include "ot/ot_impl.h"
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

int main(void)
{
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
  CHECK(r == 2 && c == 2, "4 ranks: %dx%d", (int)r, (int)c);
  AckdOTGridAutoShape(12, &r, &c);
  CHECK(r == 3 && c == 4, "12 ranks: %dx%d", (int)r, (int)c);
  AckdOTGridAutoShape(7, &r, &c);
  CHECK(r == 1 && c == 7, "7 ranks: %dx%d", (int)r, (int)c);
  /* block-cyclic index map: block 2 over 3 processes, process 1 owns 2,3,8,9,... */
  CHECK(AckdOTLocalToGlobal(0, 2, 3, 1) == 2 && AckdOTLocalToGlobal(1, 2, 3, 1) == 3 &&
            AckdOTLocalToGlobal(2, 2, 3, 1) == 8,
        "block-cyclic map");
  return CHECK_REPORT("unit.ot.logsumexp");
}
