/* The Sinkhorn kernels for one storage type of C, included by logsumexp.c
 * once per type: COST_T is the element type, KERNEL_NAME(x) the function name
 * for it. Arithmetic is always double; a float C only halves the bytes read. */

/* Exact log-sum-exp of a strided line: max shift first. */
static double KERNEL_NAME(line_lse_exact)(PetscInt n, PetscInt stride, const COST_T *c, double fixed,
                                          const double *varying, double inv_eps)
{
  double top = -INFINITY, sum = 0;
  for (PetscInt t = 0; t < n; t++) top = fmax(top, (fixed + varying[t] - c[t * stride]) * inv_eps);
  if (top == -INFINITY) return -INFINITY;
  for (PetscInt t = 0; t < n; t++) sum += exp((fixed + varying[t] - c[t * stride]) * inv_eps - top);
  return top + log(sum);
}

#if HAVE_AVX512_EXP
AVX512_TARGET static double KERNEL_NAME(column_exp_avx512)(PetscInt m, const COST_T *c, const double *fs, double gs,
                                                           double inv_eps, double *e)
{
  const __m512d g = _mm512_set1_pd(gs), minus_inv_eps = _mm512_set1_pd(-inv_eps);
  __m512d       acc = _mm512_setzero_pd();
  for (PetscInt i = 0; i < m; i += 8) {
    const __mmask8 k = lanes_mask(m - i);
    _mm_prefetch((const char *)(c + i) + PREFETCH_BYTES, _MM_HINT_T0);
    const __m512d y =
        exp8(_mm512_fmadd_pd(LOAD_COST8(k, c + i), minus_inv_eps, _mm512_add_pd(_mm512_maskz_loadu_pd(k, fs + i), g)));
    _mm512_mask_storeu_pd(e + i, k, y);
    acc = _mm512_mask_add_pd(acc, k, acc, y);
  }
  return _mm512_reduce_add_pd(acc);
}
#endif

/* e_i = exp(fs_i + gs - c_i / eps) down one column (fs = f / eps, gs = g_j /
 * eps: one multiply-add per entry for the argument), and their sum. */
static inline double KERNEL_NAME(column_exp)(PetscBool avx512, PetscInt m, const COST_T *c, const double *fs, double gs,
                                             double inv_eps, double *e)
{
#if HAVE_AVX512_EXP
  if (avx512) return KERNEL_NAME(column_exp_avx512)(m, c, fs, gs, inv_eps, e);
#endif
  double sum = 0;
#pragma omp simd reduction(+ : sum)
  for (PetscInt i = 0; i < m; i++) {
    e[i] = exp_vectorizable(fs[i] + gs - (double)c[i] * inv_eps);
    sum += e[i];
  }
  return sum;
}

ACKD_CPU_CLONES void KERNEL_NAME(AckdOTRowLogSumExp)(PetscInt m, PetscInt n, PetscInt lld, const COST_T *C,
                                                     const double *f, const double *g, double inv_eps, double *work,
                                                     double *lse)
{
  /* Column by column: the inner loop runs down contiguous memory and updates
   * m independent sums, which vectorises. */
  for (PetscInt i = 0; i < m; i++) work[i] = 0;
  /* four columns per sweep: a quarter of the loads and stores of work[] */
  PetscInt j = 0;
  for (; j + 4 <= n; j += 4) {
    const COST_T *c0 = C + (size_t)j * lld, *c1 = c0 + lld, *c2 = c1 + lld, *c3 = c2 + lld;
    const double  g0 = g[j], g1 = g[j + 1], g2 = g[j + 2], g3 = g[j + 3]; /* -inf gives exp = 0 */
    for (PetscInt i = 0; i < m; i++)
      work[i] += (exp_vectorizable((f[i] + g0 - c0[i]) * inv_eps) + exp_vectorizable((f[i] + g1 - c1[i]) * inv_eps)) +
                 (exp_vectorizable((f[i] + g2 - c2[i]) * inv_eps) + exp_vectorizable((f[i] + g3 - c3[i]) * inv_eps));
  }
  for (; j < n; j++) {
    const COST_T *c  = C + (size_t)j * lld;
    const double  gj = g[j];
    if (gj == -INFINITY) continue;
    for (PetscInt i = 0; i < m; i++) work[i] += exp_vectorizable((f[i] + gj - c[i]) * inv_eps);
  }
  KERNEL_NAME(AckdOTRowSumsToLogSumExp)(m, n, lld, C, f, g, inv_eps, work, lse);
}

void KERNEL_NAME(AckdOTRowSumsToLogSumExp)(PetscInt m, PetscInt n, PetscInt lld, const COST_T *C, const double *f,
                                           const double *g, double inv_eps, const double *work, double *lse)
{
  for (PetscInt i = 0; i < m; i++) {
    if (f[i] == -INFINITY)
      lse[i] = -INFINITY;
    else if (AckdOTSumInRange(work[i]))
      lse[i] = log(work[i]);
    else
      lse[i] = KERNEL_NAME(line_lse_exact)(n, lld, C + i, f[i], g, inv_eps);
  }
}

ACKD_CPU_CLONES void KERNEL_NAME(AckdOTColLogSumExp)(PetscInt m, PetscInt n, PetscInt lld, const COST_T *C,
                                                     const double *f, const double *g, double inv_eps, double *lse)
{
  enum { LANES = 16 }; /* independent partial sums: a reduction the compiler may vectorise */
  for (PetscInt j = 0; j < n; j++) {
    const COST_T *c  = C + (size_t)j * lld;
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
    if (AckdOTSumInRange(sum))
      lse[j] = log(sum);
    else
      lse[j] = KERNEL_NAME(line_lse_exact)(m, 1, c, gj, f, inv_eps);
  }
}

/* One Sinkhorn iteration in a single pass over a block that holds whole
 * columns (a 1 x P grid): for each column, the plan entries of the current
 * potentials e_ij = exp((f_i + g_j - C_ij) / eps) give its column sum (the
 * stopping rule's marginal and the g update); the new g_j only rescales the
 * column, by r_j = exp((g_j' - g_j) / eps), so the row sums of the half-updated
 * plan are sum_j e_ij r_j, accumulated while the column is still in cache.
 * One exp per entry and one read of C per iteration, where the two
 * half-steps cost two of each. g is updated in place, col_lse receives the
 * log column sums of the incoming plan, and the row sums of the outgoing one
 * (this rank's columns only) are added to work (zeroed by the caller: the
 * online mode sweeps tile by tile). buf holds 5 m doubles. A column whose sum
 * leaves [SUM_LOW, SUM_HIGH] is summed exactly (max shift) and its entries
 * recomputed with the new g_j (plan entries, at most 1), so nothing
 * overflows. */
ACKD_CPU_CLONES void KERNEL_NAME(AckdOTFusedSweep)(PetscInt m, PetscInt n, PetscInt lld, const COST_T *C,
                                                   const double *f, double *g, const AckdOTColumnRule *rule,
                                                   double *col_lse, double *buf, double *work)
{
  enum { GROUP = 4 };
  const double    inv_eps = 1.0 / rule->eps;
  const PetscBool avx512  = use_avx512_exp();
  double         *fs      = buf + GROUP * m;
  for (PetscInt t = 0; t < GROUP * m; t++) buf[t] = 0;
  for (PetscInt i = 0; i < m; i++) fs[i] = f[i] * inv_eps;
  for (PetscInt j0 = 0; j0 < n; j0 += GROUP) {
    double ratio[GROUP] = {0, 0, 0, 0};
    for (PetscInt u = 0; u < GROUP && j0 + u < n; u++) {
      const PetscInt j  = j0 + u;
      const COST_T  *c  = C + (size_t)j * lld;
      double        *e  = buf + (size_t)u * m;
      const double   gj = g[j];
      if (gj == -INFINITY) { /* zero mass: transports nothing */
        col_lse[j] = -INFINITY;
        continue;
      }
      const double    sum      = KERNEL_NAME(column_exp)(avx512, m, c, fs, gj * inv_eps, inv_eps, e);
      const PetscBool in_range = AckdOTSumInRange(sum);
      col_lse[j]               = in_range ? log(sum) : KERNEL_NAME(line_lse_exact)(m, 1, c, gj, f, inv_eps);
      double next = AckdOTUpdatedPotential(gj, col_lse[j], rule->log_b[j], rule->eps, rule->damping, rule->omega);
      if (next == INFINITY) next = -INFINITY; /* no finite cost: the caller reports it */
      g[j] = next;
      if (next == -INFINITY) continue;
      if (in_range)
        ratio[u] = exp((next - gj) * inv_eps);
      else {
        for (PetscInt i2 = 0; i2 < m; i2++) e[i2] = exp_vectorizable((f[i2] + next - c[i2]) * inv_eps);
        ratio[u] = 1.0;
      }
    }
    const double *e0 = buf, *e1 = buf + m, *e2 = buf + 2 * m, *e3 = buf + 3 * m;
    const double  r0 = ratio[0], r1 = ratio[1], r2 = ratio[2], r3 = ratio[3];
    for (PetscInt i = 0; i < m; i++) work[i] += (e0[i] * r0 + e1[i] * r1) + (e2[i] * r2 + e3[i] * r3);
  }
}

#undef COST_T
#undef KERNEL_NAME
#undef LOAD_COST8
