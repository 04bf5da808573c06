/* bench_ot: milliseconds per Sinkhorn iteration of AckdOT on an n x n
 * squared-Euclidean problem (d features), and the memory-bandwidth bound of
 * that iteration: on one process row (the default grid) an iteration reads
 * this rank's block once (the fused sweep: C with -ot_sinkhorn_kernel log,
 * the absorbed kernel with scaling), on other grids twice (the g and the f
 * half-steps); so it cannot beat passes * bytes * mloc * nloc divided by the
 * read bandwidth that every rank sees while all ranks read at once.
 *
 *   mpirun -n P bench_ot -n 2000 -d 64 -iters 50 [-bench_ot_sinkhorn_kernel log] [-bench_ot_precision single]
 *                        [-bench_ot_kernel_precision single] [-bench_ot_online [-bench_ot_online_layout rotating]]
 * prints on rank 0:  n=2000 ranks=P grid=RxC kernel=... precision=... kernel_precision=... ackd_ms=...
 *                    stream_gbs=... bound_ms=...
 *
 * With -bench_ot_online C is recomputed in every pass: the record then says
 * online=replicated|rotating and holds gemm_ms, the time of the DGEMMs that
 * produce the rank's block in one call each (one per iteration for the fused
 * sweep, two otherwise), measured in the same run, the bound of that mode.
 *
 * The features are a closed formula, so bench/ot/run_bench.py hands POT the
 * very same matrices. Iteration time is the difference of two solves (10 and
 * 10 + iters iterations; the median of -reps such pairs), which removes setup,
 * statistics and top-k. At tiny sizes that difference is noise and may even be negative. */
#include <ackd/ot.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>

/* The formula bench/ot/run_bench.py repeats. */
static double feature(PetscInt side, PetscInt row, PetscInt k)
{
  return side == 0 ? sin(0.001 * (double)row * (double)(k + 1) + (double)k)
                   : cos(0.0007 * (double)row * (double)(k + 1) + 2.0 * (double)k);
}

/* -clusters M: features shaped like a network's embeddings of M classes instead. Sample `row` of
 * either side belongs to cluster hash(row) mod M: the cluster's centre c (a standard normal
 * vector, shared by both sides), plus -spread times a standard normal point of an -intrinsic
 * r-dimensional subspace of the cluster's own (U z, U d x r with entries N(0, 1 / r)), plus
 * -noise times isotropic normal noise. Learned embeddings vary along few directions within a
 * class; with -intrinsic 0 the variation is isotropic (U z replaced by d-dimensional noise), and
 * every pair within a cluster is then about equally far apart. The normals come from a
 * counter-based generator (splitmix64, Box-Muller), so any rank computes any row. */
static PetscInt clusters = 0, intrinsic = 8;
static double   spread = 1.0, noise = 0.1;

static uint64_t splitmix64(uint64_t x)
{
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/* A standard normal number, the stream-th of key. */
static double normal(uint64_t key, uint64_t stream)
{
  const uint64_t a = splitmix64(key * 0x100000001b3ull + 2 * stream),
                 b = splitmix64(key * 0x100000001b3ull + 2 * stream + 1);
  const double u = ((double)(a >> 11) + 0.5) / 9007199254740992.0, v = (double)(b >> 11) / 9007199254740992.0;
  return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static double clustered_feature(PetscInt side, PetscInt row, PetscInt k, PetscInt d)
{
  const uint64_t sample  = ((uint64_t)side << 40) + (uint64_t)row + 0x1234567ull * (uint64_t)d;
  const uint64_t cluster = splitmix64(sample ^ 0x5bd1e995ull) % (uint64_t)clusters;
  double         x       = normal(0xc0ffeeull + cluster, (uint64_t)k) + noise * normal(sample, (uint64_t)(d + k));
  if (!intrinsic) return x + spread * normal(sample, (uint64_t)k);
  for (PetscInt q = 0; q < intrinsic; q++)
    x += spread * normal(0xbeefull + cluster, (uint64_t)(k * intrinsic + q)) * normal(sample, (uint64_t)q) /
         sqrt((double)intrinsic);
  return x;
}

static PetscErrorCode fill(AckdOT ot, AckdOTSide side, PetscInt d, double **rows)
{
  PetscInt lo, hi;

  PetscFunctionBeginUser;
  PetscCall(AckdOTGetOwnedRows(ot, side, &lo, &hi));
  PetscCall(PetscMalloc1((hi - lo) * d + 1, rows));
  for (PetscInt i = lo; i < hi; i++)
    for (PetscInt k = 0; k < d; k++)
      (*rows)[(i - lo) * d + k] = clusters ? clustered_feature(side == ACKD_OT_STUDENT ? 0 : 1, i, k, d)
                                           : feature(side == ACKD_OT_STUDENT ? 0 : 1, i, k);
  PetscFunctionReturn(0);
}

/* An option's value unless the command line gives one. */
static PetscErrorCode default_option(const char *name, const char *value)
{
  PetscBool given;

  PetscFunctionBeginUser;
  PetscCall(PetscOptionsHasName(NULL, NULL, name, &given));
  if (!given) PetscCall(PetscOptionsSetValue(NULL, name, value));
  PetscFunctionReturn(0);
}

/* The n x n problem of the closed formula, options under -bench_. */
static PetscErrorCode bench_problem(PetscInt n, PetscInt d, PetscInt classes, AckdOT *out)
{
  AckdOT  ot;
  double *x, *y;

  PetscFunctionBeginUser;
  PetscCall(AckdOTCreate(PETSC_COMM_WORLD, &ot));
  PetscCall(AckdOTSetOptionsPrefix(ot, "bench_"));
  PetscCall(AckdOTSetFromOptions(ot));
  PetscBool cost_given;
  PetscCall(PetscOptionsHasName(NULL, NULL, "-bench_ot_cost", &cost_given));
  if (!cost_given) PetscCall(AckdOTSetCostKind(ot, ACKD_OT_COST_SQEUCLIDEAN));
  PetscCall(AckdOTSetSizes(ot, n, n, d));
  PetscCall(AckdOTSetUp(ot));
  if (classes > 1) { /* sample i in class i mod classes, both sides: balanced classes */
    PetscInt *labels;
    PetscCall(PetscMalloc1(n, &labels));
    for (PetscInt i = 0; i < n; i++) labels[i] = i % classes;
    PetscCall(AckdOTSetLabels(ot, labels, labels));
    PetscCall(PetscFree(labels));
  }
  PetscCall(fill(ot, ACKD_OT_STUDENT, d, &x));
  PetscCall(fill(ot, ACKD_OT_TEACHER, d, &y));
  PetscCall(AckdOTSetFeatures(ot, x, y));
  PetscCall(PetscFree(x));
  PetscCall(PetscFree(y));
  *out = ot;
  PetscFunctionReturn(0);
}

/* STREAM-style read bandwidth per rank, all ranks reading together: best of 5. */
static PetscErrorCode read_bandwidth(MPI_Comm comm, size_t bytes, double *gbs)
{
  size_t  n = bytes / sizeof(double);
  double *x, best = 0, sink = 0;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(n, &x));
  for (size_t i = 0; i < n; i++) x[i] = (double)(i & 1023);
  for (int rep = 0; rep < 5; rep++) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    PetscCallMPI(MPI_Barrier(comm));
    double t0 = AckdTimeNow();
    for (size_t i = 0; i + 4 <= n; i += 4) {
      s0 += x[i];
      s1 += x[i + 1];
      s2 += x[i + 2];
      s3 += x[i + 3];
    }
    double t = AckdTimeNow() - t0, slowest;
    sink += s0 + s1 + s2 + s3;
    PetscCallMPI(MPI_Allreduce(&t, &slowest, 1, MPI_DOUBLE, MPI_MAX, comm));
    best = PetscMax(best, (double)bytes / slowest / 1e9);
  }
  if (sink == -1) PetscCall(PetscPrintf(comm, "%g\n", sink)); /* keeps the loop */
  PetscCall(PetscFree(x));
  *gbs = best;
  PetscFunctionReturn(0);
}

/* BLAS (OpenBLAS), for the online mode's reference. */
void dgemm_(const char *transa, const char *transb, const int *m, const int *n, const int *k, const double *alpha,
            const double *a, const int *lda, const double *b, const int *ldb, const double *beta, double *c,
            const int *ldc);

/* The online mode's reference: ms of one DGEMM producing this rank's whole
 * m x n block of X Y^T in a single call (no tiles, no sweep), all ranks at
 * once, the slowest rank's median of 3. Beyond 256 MB of output, a slice of
 * the columns is timed and scaled. */
static PetscErrorCode gemm_ms(MPI_Comm comm, PetscInt m, PetscInt n, PetscInt d, double *ms)
{
  const PetscInt cols = PetscMax(1, PetscMin(n, (PetscInt)(32e6 / (double)PetscMax(m, 1))));
  const int      mm = (int)m, nn = (int)cols, dd = (int)d;
  const double   one = 1.0, zero = 0.0;
  double        *a, *b, *c, t[3], slowest;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc3((size_t)m * d, &a, (size_t)d * cols, &b, (size_t)m * cols, &c));
  for (size_t i = 0; i < (size_t)m * d; i++) a[i] = sin((double)i);
  for (size_t i = 0; i < (size_t)d * cols; i++) b[i] = cos((double)i);
  for (int rep = 0; rep < 3; rep++) {
    PetscCallMPI(MPI_Barrier(comm));
    double t0 = AckdTimeNow();
    dgemm_("N", "N", &mm, &nn, &dd, &one, a, &mm, b, &dd, &zero, c, &mm);
    t[rep] = (AckdTimeNow() - t0) * 1e3 * (double)n / (double)cols;
  }
  PetscCall(PetscSortReal(3, t));
  PetscCallMPI(MPI_Allreduce(&t[1], &slowest, 1, MPI_DOUBLE, MPI_MAX, comm));
  *ms = slowest;
  PetscCall(PetscFree3(a, b, c));
  PetscFunctionReturn(0);
}

static PetscErrorCode solve_ms(AckdOT ot, PetscInt iterations, double *ms)
{
  AckdOTResult r;

  PetscFunctionBeginUser;
  PetscCall(AckdOTSetTolerances(ot, 0.0, iterations));
  PetscCallMPI(MPI_Barrier(PETSC_COMM_WORLD));
  double t0 = AckdTimeNow();
  PetscCall(AckdOTSolve(ot));
  *ms = (AckdTimeNow() - t0) * 1e3;
  PetscCall(AckdOTGetResult(ot, &r));
  PetscCheck(r.iterations == iterations, PETSC_COMM_WORLD, PETSC_ERR_PLIB, "ran %d iterations, asked %d",
             (int)r.iterations, (int)iterations);
  PetscCheck(isfinite(r.transport_cost), PETSC_COMM_WORLD, PETSC_ERR_PLIB, "non-finite transport cost");
  PetscFunctionReturn(0);
}

/* One whole solve, timed from the features to the top-k: eps = 0.01 max C
 * with eps-scaling, tolerance 1e-6 on the column marginal (options may
 * override), the target of issue 4 at n = 20000 on 2 ranks. */
static PetscErrorCode whole_solve(PetscInt n, PetscInt d, PetscInt classes)
{
  AckdOT       ot;
  AckdOTResult r;
  PetscInt     rows, cols;
  PetscMPIInt  size;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_size(PETSC_COMM_WORLD, &size));
  PetscCallMPI(MPI_Barrier(PETSC_COMM_WORLD));
  double t0 = AckdTimeNow();
  PetscCall(default_option("-bench_ot_tol", "1e-6"));
  PetscCall(default_option("-bench_ot_max_it", "100000"));
  PetscCall(bench_problem(n, d, classes, &ot));
  double t1 = AckdTimeNow();
  PetscCall(AckdOTSolve(ot));
  double t2 = AckdTimeNow();
  PetscCall(AckdOTGetResult(ot, &r));
  PetscCall(AckdOTGetGridShape(ot, &rows, &cols));
  struct rusage usage;
  double        rss_mb, peak_mb;
  getrusage(RUSAGE_SELF, &usage);
  rss_mb = (double)usage.ru_maxrss / 1024.0;
  PetscCallMPI(MPI_Allreduce(&rss_mb, &peak_mb, 1, MPI_DOUBLE, MPI_MAX, PETSC_COMM_WORLD));
  char line[384];
  snprintf(line, sizeof line,
           "bench=ot_solve n=%d d=%d ranks=%d grid=%dx%d eps=%.4g eps_rel=%.4g iterations=%d converged=%d "
           "column_error=%.3g row_error=%.3g classes=%d cost_s=%.2f solve_s=%.2f total_s=%.2f peak_rss_mb=%.0f",
           (int)n, (int)d, size, (int)rows, (int)cols, r.eps, r.eps / r.max_cost, (int)r.iterations, (int)r.converged,
           r.column_error, r.row_error, (int)classes, t1 - t0, t2 - t1, t2 - t0, peak_mb);
  PetscCall(PetscPrintf(PETSC_COMM_WORLD, "%s\n", line));
  if (r.truncated) {
    /* the reference: what the online mode would spend in DGEMMs alone, at its fused one pass per
     * iteration, for as many iterations, on this rank's block */
    double gemm;
    PetscCall(gemm_ms(PETSC_COMM_WORLD, n, (n + size - 1) / size, d, &gemm));
    snprintf(line, sizeof line,
             "bench=ot_truncated n=%d kept_entries=%.0f kept_per_student=%.1f certificates=%d discarded_mass=%.3g "
             "discarded_cost=%.3g column_error_bound=%.3g online_gemm_s_per_iteration=%.2f online_gemm_s_total=%.0f "
             "speedup_vs_online_gemm=%.1f",
             (int)n, (double)r.kept_entries, (double)r.kept_entries / (double)n, (int)r.certificates, r.discarded_mass,
             r.discarded_cost, r.column_error, gemm / 1e3, gemm / 1e3 * (double)r.iterations,
             gemm / 1e3 * (double)r.iterations / (t2 - t0));
    PetscCall(PetscPrintf(PETSC_COMM_WORLD, "%s\n", line));
  }
  for (PetscInt t = 0; t < r.history_length && getenv("BENCH_OT_HISTORY"); t++)
    PetscCall(PetscPrintf(PETSC_COMM_WORLD, "check at %d: error %.3e\n", (int)r.history_iteration[t], r.history[t]));
  PetscCall(AckdOTDestroy(&ot));
  PetscFunctionReturn(0);
}

static PetscErrorCode run(void)
{
  PetscInt    n = 2000, d = 64, iters = 50, reps = 3, classes = 0, rows, cols;
  PetscBool   whole = PETSC_FALSE;
  PetscMPIInt size;
  AckdOT      ot;
  double      gbs           = 0, short_ms, long_ms;
  char        precision[16] = "double", kernel[16] = "scaling", kernel_precision[16] = "";

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_size(PETSC_COMM_WORLD, &size));
  PetscOptionsBegin(PETSC_COMM_WORLD, NULL, "bench_ot", NULL);
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-n", "Students = teachers", &n, 1, 1000000, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-d", "Feature dimension", &d, 1, 100000, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-iters", "Timed iterations", &iters, 1, 1000000, NULL));
  PetscCall(AckdOptionsBool(PetscOptionsObject, "-solve",
                            "Time one whole solve instead (cost assembly, eps-scaling down to -bench_ot_eps, to "
                            "-bench_ot_tol), as issue 4's n = 20000 target",
                            &whole, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-classes",
                           "With -solve: labels i mod classes on both sides (class blocks: -bench_ot_class_blocks)",
                           &classes, 0, 1000000, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-clusters",
                           "Features of this many clusters (centre plus -spread times noise) instead of the closed "
                           "formula; 0: the formula",
                           &clusters, 0, 1000000, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-spread", "With -clusters: variation within a cluster over its centre",
                            &spread, 0.0, 100.0, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-intrinsic",
                           "With -clusters: dimension of each cluster's variation (0: all d, isotropic)", &intrinsic, 0,
                           1024, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-noise", "With -clusters: isotropic noise over centre", &noise, 0.0,
                            100.0, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-reps", "Timed (short, long) pairs: the median is reported", &reps, 1,
                           64, NULL));
  PetscCall(AckdOptionsString(PetscOptionsObject, "-bench_ot_precision", "double or single (read here for the bound)",
                              precision, sizeof precision, NULL));
  PetscCall(AckdOptionsString(PetscOptionsObject, "-bench_ot_sinkhorn_kernel",
                              "scaling or log (read here for the record)", kernel, sizeof kernel, NULL));
  PetscOptionsEnd();
  PetscBool single, scaling, kernel_single;
  PetscCall(PetscStrcmp(precision, "single", &single));
  PetscCall(PetscStrcmp(kernel, "scaling", &scaling));
  if (whole) {
    PetscCall(whole_solve(n, d, classes));
    PetscFunctionReturn(0);
  }
  /* eps = 0.05 max C without eps-scaling: every iteration is a plain iteration */
  PetscCall(PetscOptionsSetValue(NULL, "-bench_ot_eps", "0.05"));
  PetscCall(PetscOptionsSetValue(NULL, "-bench_ot_eps_scaling", "false"));
  PetscCall(PetscOptionsSetValue(NULL, "-bench_ot_topk", "1"));
  PetscCall(bench_problem(n, d, 0, &ot));
  PetscCall(AckdOTGetGridShape(ot, &rows, &cols));
  /* the solver's own default and option, read back for the record and the bound */
  PetscCall(AckdOTGetKernelPrecision(ot, &kernel_single));
  PetscCall(PetscStrncpy(kernel_precision, kernel_single ? "single" : "double", sizeof kernel_precision));

  /* the median of `reps` (short, long) pairs, taken back to back: the
   * machine is shared, and a pair sees the same load */
  double diff[64];
  for (PetscInt rep = 0; rep < reps; rep++) {
    PetscCall(solve_ms(ot, 10, &short_ms));
    PetscCall(solve_ms(ot, 10 + iters, &long_ms));
    diff[rep] = (long_ms - short_ms) / (double)iters;
  }
  PetscCall(PetscSortReal(reps, diff));
  double ms = reps % 2 ? diff[reps / 2] : 0.5 * (diff[reps / 2 - 1] + diff[reps / 2]);

  char      line[320]; /* C's printf: PETSc's formats reals its own way */
  PetscBool online, rotating;
  PetscCall(AckdOTGetOnlineLayout(ot, &online, &rotating));
  if (online) {
    /* recomputed C: the bound is the GEMM of the rank's block, once per
     * iteration for the fused sweep, twice for the two-pass ones */
    double    reference = 0;
    PetscBool fused     = (PetscBool)(rows == 1 && !rotating);
    PetscCall(gemm_ms(PETSC_COMM_WORLD, (n + rows - 1) / rows, (n + cols - 1) / cols, d, &reference));
    snprintf(line, sizeof line,
             "n=%d d=%d ranks=%d grid=%dx%d kernel=log precision=double kernel_precision=- online=%s ackd_ms=%.3f "
             "gemm_ms=%.3f of_gemm=%.2f",
             (int)n, (int)d, size, (int)rows, (int)cols, rotating ? "rotating" : "replicated", ms,
             (fused ? 1.0 : 2.0) * reference, ms / ((fused ? 1.0 : 2.0) * reference));
  } else {
    /* the largest local block, read once per iteration on one process row (the
     * fused sweep: C, or the absorbed kernel in its own precision), twice otherwise */
    const PetscBool four        = scaling && rows == 1 ? kernel_single : single;
    double          block_bytes = (four ? 4.0 : 8.0) * ceil((double)n / (double)rows) * ceil((double)n / (double)cols);
    double          passes      = rows == 1 ? 1.0 : 2.0;
    PetscCall(read_bandwidth(PETSC_COMM_WORLD, (size_t)PetscMax(block_bytes, 256e6), &gbs));
    double bound_ms = passes * block_bytes / (gbs * 1e9) * 1e3;
    snprintf(line, sizeof line,
             "n=%d d=%d ranks=%d grid=%dx%d kernel=%s precision=%s kernel_precision=%s ackd_ms=%.3f stream_gbs=%.2f "
             "bound_ms=%.3f",
             (int)n, (int)d, size, (int)rows, (int)cols, kernel, precision, scaling ? kernel_precision : "-", ms, gbs,
             bound_ms);
  }
  PetscCall(PetscPrintf(PETSC_COMM_WORLD, "%s\n", line));
  PetscCall(AckdOTDestroy(&ot));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  return AckdToolMain(argc, argv, "bench_ot", run);
}
