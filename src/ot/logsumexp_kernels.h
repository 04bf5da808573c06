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

KERNEL_CLONES void KERNEL_NAME(AckdOTRowLogSumExp)(PetscInt m, PetscInt n, PetscInt lld, const COST_T *C,
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
  for (PetscInt i = 0; i < m; i++) {
    if (f[i] == -INFINITY)
      lse[i] = -INFINITY;
    else if (work[i] >= SUM_LOW && work[i] <= SUM_HIGH)
      lse[i] = log(work[i]);
    else
      lse[i] = KERNEL_NAME(line_lse_exact)(n, lld, C + i, f[i], g, inv_eps);
  }
}

KERNEL_CLONES void KERNEL_NAME(AckdOTColLogSumExp)(PetscInt m, PetscInt n, PetscInt lld, const COST_T *C,
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
    if (sum >= SUM_LOW && sum <= SUM_HIGH)
      lse[j] = log(sum);
    else
      lse[j] = KERNEL_NAME(line_lse_exact)(m, 1, c, gj, f, inv_eps);
  }
}

#undef COST_T
#undef KERNEL_NAME
