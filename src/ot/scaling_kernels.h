/* The stabilised scaling kernels for one pair of storage types, included by
 * logsumexp.c once per pair: COST_T is C's element type (read only where a
 * column leaves the scaling range), KABS_T the absorbed kernel's (streamed
 * every iteration, so its size sets the iteration's time), SCALING_NAME(x)
 * the function name, LINE_LSE the exact log-sum-exp on C's type and
 * LOAD_K8(mask, p) eight entries of K as doubles. Arithmetic is double. */

/* Absorption: K_ij = exp((f0_i + g0_j - C_ij) / eps), the kernel of the
 * stabilised scaling iteration, with the potentials f0, g0 absorbed so that
 * its entries are plan entries up to the scalings (no overflow). */
ACKD_CPU_CLONES void SCALING_NAME(AckdOTAbsorbKernel)(PetscInt m, PetscInt n, PetscInt lld, const COST_T *C,
                                                      const double *f0, const double *g0, double inv_eps, KABS_T *K)
{
  for (PetscInt j = 0; j < n; j++) {
    const COST_T *c  = C + (size_t)j * lld;
    KABS_T       *k  = K + (size_t)j * lld;
    const double  gj = g0[j];
    for (PetscInt i = 0; i < m; i++) k[i] = (KABS_T)exp_vectorizable((f0[i] + gj - c[i]) * inv_eps);
  }
}

/* One loop over the rows for two groups of four columns: the dot products
 * dot_q = sum_i k_q[i] u_i of the current group, streamed from memory, and
 * acc_i += sum_q p_q[i] pv_q of the previous group, whose scalings pv are
 * known by now and whose columns are still in cache. Doing both in one loop
 * keeps the stream from memory going while the cached group is re-read (two
 * loops left it idle during the second). A column with pv_q = 0 adds
 * nothing, not even 0 * inf: a float K overflows where a plan entry exceeds
 * 3e38 (a column the sweep then does in the log domain, with pv_q = 0). */
#if HAVE_AVX512_EXP
AVX512_TARGET static void SCALING_NAME(group_step_avx512)(PetscInt m, const KABS_T *const k[4], const double *u,
                                                          const KABS_T *const p[4], const double pv[4], double *acc,
                                                          double dot[4])
{
  const __m512d v0 = _mm512_set1_pd(pv[0]), v1 = _mm512_set1_pd(pv[1]), v2 = _mm512_set1_pd(pv[2]),
                v3     = _mm512_set1_pd(pv[3]);
  const __mmask8 live0 = pv[0] != 0 ? 0xff : 0, live1 = pv[1] != 0 ? 0xff : 0, live2 = pv[2] != 0 ? 0xff : 0,
                 live3 = pv[3] != 0 ? 0xff : 0;
  __m512d d0 = _mm512_setzero_pd(), d1 = _mm512_setzero_pd(), d2 = _mm512_setzero_pd(), d3 = _mm512_setzero_pd();
  for (PetscInt i = 0; i < m; i += 8) {
    const __mmask8 mask = lanes_mask(m - i);
    /* K ahead on each of the four streams, as the log kernel asks for C (a gain within this machine's noise) */
    _mm_prefetch((const char *)(k[0] + i) + PREFETCH_BYTES, _MM_HINT_T0);
    _mm_prefetch((const char *)(k[1] + i) + PREFETCH_BYTES, _MM_HINT_T0);
    _mm_prefetch((const char *)(k[2] + i) + PREFETCH_BYTES, _MM_HINT_T0);
    _mm_prefetch((const char *)(k[3] + i) + PREFETCH_BYTES, _MM_HINT_T0);
    const __m512d ui  = _mm512_maskz_loadu_pd(mask, u + i);
    d0                = _mm512_fmadd_pd(LOAD_K8(mask, k[0] + i), ui, d0);
    d1                = _mm512_fmadd_pd(LOAD_K8(mask, k[1] + i), ui, d1);
    d2                = _mm512_fmadd_pd(LOAD_K8(mask, k[2] + i), ui, d2);
    d3                = _mm512_fmadd_pd(LOAD_K8(mask, k[3] + i), ui, d3);
    const __m512d s01 = _mm512_add_pd(_mm512_maskz_mul_pd(live0, LOAD_K8(mask, p[0] + i), v0),
                                      _mm512_maskz_mul_pd(live1, LOAD_K8(mask, p[1] + i), v1));
    const __m512d s23 = _mm512_add_pd(_mm512_maskz_mul_pd(live2, LOAD_K8(mask, p[2] + i), v2),
                                      _mm512_maskz_mul_pd(live3, LOAD_K8(mask, p[3] + i), v3));
    _mm512_mask_storeu_pd(acc + i, mask, _mm512_add_pd(_mm512_maskz_loadu_pd(mask, acc + i), _mm512_add_pd(s01, s23)));
  }
  dot[0] = _mm512_reduce_add_pd(d0);
  dot[1] = _mm512_reduce_add_pd(d1);
  dot[2] = _mm512_reduce_add_pd(d2);
  dot[3] = _mm512_reduce_add_pd(d3);
}
#endif

static inline void SCALING_NAME(group_step)(PetscBool avx512, PetscInt m, const KABS_T *const k[4], const double *u,
                                            const KABS_T *const p[4], const double pv[4], double *acc, double dot[4])
{
#if HAVE_AVX512_EXP
  if (avx512) {
    SCALING_NAME(group_step_avx512)(m, k, u, p, pv, acc, dot);
    return;
  }
#endif
  const KABS_T *k0 = k[0], *k1 = k[1], *k2 = k[2], *k3 = k[3], *p0 = p[0], *p1 = p[1], *p2 = p[2], *p3 = p[3];
  const double  v0 = pv[0], v1 = pv[1], v2 = pv[2], v3 = pv[3];
  double        d0 = 0, d1 = 0, d2 = 0, d3 = 0;
#pragma omp simd reduction(+ : d0, d1, d2, d3)
  for (PetscInt i = 0; i < m; i++) {
    d0 += (double)k0[i] * u[i];
    d1 += (double)k1[i] * u[i];
    d2 += (double)k2[i] * u[i];
    d3 += (double)k3[i] * u[i];
    acc[i] += ((v0 != 0 ? (double)p0[i] * v0 : 0.0) + (v1 != 0 ? (double)p1[i] * v1 : 0.0)) +
              ((v2 != 0 ? (double)p2[i] * v2 : 0.0) + (v3 != 0 ? (double)p3[i] * v3 : 0.0));
  }
  dot[0] = d0, dot[1] = d1, dot[2] = d2, dot[3] = d3;
}

/* One Sinkhorn iteration by the stabilised scaling method (Schmitzer's
 * absorption) over a block of whole columns: the plan is
 * P_ij = u_i K_ij v_j with u = exp((f - f0) / eps), v = exp((g - g0) / eps)
 * and K absorbed at (f0, g0), so a column sum is a dot product and the row
 * sums of the half-updated plan a multiply-add per entry, in one pass over K
 * (group_step). No exp per entry. Outputs as AckdOTFusedSweep; u holds the
 * scalings (m doubles, filled here), acc and extra m doubles of work. A
 * column whose dot product leaves [SUM_LOW, SUM_HIGH] is done in the log
 * domain on C (exact, max shift), its plan entries added to `extra`, and
 * *fallback set: the caller re-absorbs. */
ACKD_CPU_CLONES void SCALING_NAME(AckdOTScalingSweep)(PetscInt m, PetscInt n, PetscInt lld, const COST_T *C,
                                                      const KABS_T *K, const double *f, const double *f0, double *g,
                                                      const double *g0, const AckdOTColumnRule *rule, double *col_lse,
                                                      double *u, double *acc, double *extra, double *work,
                                                      PetscBool *fallback)
{
  enum { GROUP = 4 };
  const double    inv_eps       = 1.0 / rule->eps;
  const PetscBool avx512        = use_avx512_exp();
  PetscBool       bad           = PETSC_FALSE;
  const KABS_T   *prev[GROUP]   = {K, K, K, K};
  double          prev_v[GROUP] = {0, 0, 0, 0};
  for (PetscInt i = 0; i < m; i++) {
    u[i]   = f[i] == -INFINITY ? 0.0 : exp((f[i] - f0[i]) * inv_eps);
    acc[i] = 0;
  }
  for (PetscInt j0 = 0; j0 < n; j0 += GROUP) {
    const KABS_T *cur[GROUP];
    double        dot[GROUP], v[GROUP] = {0, 0, 0, 0};
    /* a short last group repeats its last column, whose extra dot products are ignored */
    for (PetscInt q = 0; q < GROUP; q++) cur[q] = K + (size_t)PetscMin(j0 + q, n - 1) * lld;
    SCALING_NAME(group_step)(avx512, m, cur, u, prev, prev_v, acc, dot);
    for (PetscInt q = 0; q < GROUP && j0 + q < n; q++) {
      const PetscInt j  = j0 + q;
      const double   gj = g[j];
      if (gj == -INFINITY) {
        col_lse[j] = -INFINITY;
        continue;
      }
      const double log_v = (gj - g0[j]) * inv_eps;
      if (AckdOTSumInRange(dot[q])) {
        col_lse[j]  = log_v + log(dot[q]);
        double next = AckdOTUpdatedPotential(gj, col_lse[j], rule->log_b[j], rule->eps, rule->damping, rule->omega);
        if (next == INFINITY) next = -INFINITY;
        g[j] = next;
        v[q] = next == -INFINITY ? 0.0 : exp((next - g0[j]) * inv_eps);
        continue;
      }
      /* outside the scaling range: this column in the log domain, on C */
      if (!bad) {
        for (PetscInt i2 = 0; i2 < m; i2++) extra[i2] = 0;
        bad = PETSC_TRUE;
      }
      const COST_T *c = C + (size_t)j * lld;
      col_lse[j]      = LINE_LSE(m, 1, c, gj, f, inv_eps);
      double next     = AckdOTUpdatedPotential(gj, col_lse[j], rule->log_b[j], rule->eps, rule->damping, rule->omega);
      if (next == INFINITY) next = -INFINITY;
      g[j] = next;
      if (next == -INFINITY) continue;
      for (PetscInt i2 = 0; i2 < m; i2++) extra[i2] += exp_vectorizable((f[i2] + next - c[i2]) * inv_eps);
    }
    for (PetscInt q = 0; q < GROUP; q++) prev[q] = cur[q], prev_v[q] = v[q];
  }
  if (n > 0) { /* the last group's row sums: its dot products are not needed again */
    double unused[GROUP];
    SCALING_NAME(group_step)(avx512, m, prev, u, prev, prev_v, acc, unused);
  }
  for (PetscInt i = 0; i < m; i++) work[i] = u[i] * acc[i] + (bad ? extra[i] : 0.0);
  *fallback = bad;
}

#undef COST_T
#undef KABS_T
#undef SCALING_NAME
#undef LINE_LSE
#undef LOAD_K8
