/* The online mode's memory per rank, counted by PETSc's tracing malloc
 * (-malloc_debug): every allocation of the library goes through PetscMalloc,
 * so the peak between AckdOTSetFeatures and the top-k is what a solve costs
 * beyond its inputs, counted independently of the object's own log line.
 *
 *   mpirun -n P test_ot_online_memory -malloc_debug [-n 2000] [-d 512]
 *
 * Measured on an n x n problem, d features, 3 iterations:
 *   solo        rank 0 alone (MPI_COMM_SELF): the one-rank footprint F_1;
 *   rotating    all P ranks, default 1 x P grid;
 *   replicated  the same with every rank holding all students.
 * Asserts: rotating takes at most 1.4 F_1 / P per rank plus O(n) scalars,
 * i.e. memory O((N_s + N_t) d / P) (the set-up's peak holds an input copy,
 * a slice in transit and the features kept: 5 n d / P with the chunk's
 * second buffer against 4 n d on one rank, 1.25 F_1 / P); replicated at
 * least the students' n d doubles on every rank when P > 1 (so the first
 * bound can fail); and both layouts give the same top-k. */
#include <ackd/ot.h>
#include <math.h>

/* A closed formula: every rank fills its own rows, the same at any P. */
static double feature(PetscInt side, PetscInt row, PetscInt k)
{
  return side == 0 ? sin(0.013 * (double)row * (double)(k % 7 + 1) + (double)k)
                   : cos(0.011 * (double)row * (double)(k % 5 + 1) + 2.0 * (double)k);
}

typedef struct {
  double    peak_bytes; /* beyond what was allocated before SetFeatures */
  PetscInt  k, nrows;
  PetscInt *rows, *index; /* copies of the top-k this rank keeps */
} Measure;

static PetscErrorCode measure(MPI_Comm comm, const char *prefix, const char *layout, PetscInt n, PetscInt d,
                              Measure *out)
{
  AckdOT          ot;
  PetscInt        lo, hi, lo_t, hi_t;
  double         *x, *y;
  PetscLogDouble  before, peak;
  const PetscInt *rows, *index;
  const double   *weight;
  char            name[64];

  PetscFunctionBeginUser;
  snprintf(name, sizeof name, "-%sot_online_layout", prefix);
  PetscCall(PetscOptionsSetValue(NULL, name, layout));
  PetscCall(AckdOTCreate(comm, &ot));
  PetscCall(AckdOTSetOptionsPrefix(ot, prefix));
  PetscCall(AckdOTSetCostKind(ot, ACKD_OT_COST_SQEUCLIDEAN));
  PetscCall(AckdOTSetFromOptions(ot));
  PetscCall(AckdOTSetSizes(ot, n, n, d));
  PetscCall(AckdOTSetUp(ot));
  PetscCall(AckdOTGetOwnedRows(ot, ACKD_OT_STUDENT, &lo, &hi));
  PetscCall(AckdOTGetOwnedRows(ot, ACKD_OT_TEACHER, &lo_t, &hi_t));
  PetscCall(PetscMalloc2((hi - lo) * d + 1, &x, (hi_t - lo_t) * d + 1, &y));
  for (PetscInt i = lo; i < hi; i++)
    for (PetscInt k = 0; k < d; k++) x[(i - lo) * d + k] = feature(0, i, k);
  for (PetscInt j = lo_t; j < hi_t; j++)
    for (PetscInt k = 0; k < d; k++) y[(j - lo_t) * d + k] = feature(1, j, k);

  PetscCall(PetscMallocGetCurrentUsage(&before));
  PetscCall(PetscMallocPushMaximumUsage(1));
  PetscCall(AckdOTSetFeatures(ot, x, y));
  PetscCall(AckdOTSolve(ot));
  PetscCall(PetscMallocPopMaximumUsage(1, &peak));
  out->peak_bytes = peak - before;

  PetscCall(AckdOTGetTopK(ot, &out->k, &out->nrows, &rows, &index, &weight));
  PetscCall(PetscMalloc2(out->nrows + 1, &out->rows, out->nrows * out->k + 1, &out->index));
  PetscCall(PetscArraycpy(out->rows, rows, out->nrows));
  PetscCall(PetscArraycpy(out->index, index, out->nrows * out->k));
  PetscCall(PetscFree2(x, y));
  PetscCall(AckdOTDestroy(&ot));
  PetscFunctionReturn(0);
}

/* The full top-k table (n x k, -2 where no rank reported a row) on every rank. */
static PetscErrorCode gather_topk(MPI_Comm comm, const Measure *m, PetscInt n, PetscInt **table)
{
  PetscInt *mine;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(n * m->k, &mine));
  PetscCall(PetscMalloc1(n * m->k, table));
  for (PetscInt t = 0; t < n * m->k; t++) mine[t] = -2;
  for (PetscInt r = 0; r < m->nrows; r++)
    for (PetscInt t = 0; t < m->k; t++) mine[m->rows[r] * m->k + t] = m->index[r * m->k + t];
  PetscCallMPI(MPI_Allreduce(mine, *table, (PetscMPIInt)(n * m->k), MPIU_INT, MPI_MAX, comm));
  PetscCall(PetscFree(mine));
  PetscFunctionReturn(0);
}

/* The same top-k table, entry for entry. */
static PetscErrorCode check_same(MPI_Comm comm, PetscInt entries, const PetscInt *a, const PetscInt *b,
                                 const char *what)
{
  PetscFunctionBeginUser;
  for (PetscInt t = 0; t < entries; t++)
    PetscCheck(a[t] == b[t] && a[t] >= -1, comm, PETSC_ERR_PLIB, "FAIL: top-k entry %d differs (%s: %d and %d)", (int)t,
               what, (int)a[t], (int)b[t]);
  PetscFunctionReturn(0);
}

static PetscErrorCode run(void)
{
  PetscInt    n = 2000, d = 512;
  PetscMPIInt rank, size;
  PetscBool   tracing;
  Measure     solo = {0}, rot, rep;
  double      worst_rot, least_rep;
  PetscInt   *table_rot, *table_rep, *table_solo;
  /* 3 iterations at a fixed eps, top-5, for each object */
  const char *prefixes[]  = {"solo_", "rot_", "rep_"},
             *common[][2] = {{"ot_online", "true"},       {"ot_max_it", "3"}, {"ot_tol", "0"},
                             {"ot_eps_scaling", "false"}, {"ot_topk", "5"},   {"ot_eps", "0.05"}};

  PetscFunctionBeginUser;
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-n", &n, NULL));
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-d", &d, NULL));
  PetscCallMPI(MPI_Comm_rank(PETSC_COMM_WORLD, &rank));
  PetscCallMPI(MPI_Comm_size(PETSC_COMM_WORLD, &size));
  PetscCall(PetscMallocGetDebug(&tracing, NULL, NULL));
  PetscCheck(tracing, PETSC_COMM_WORLD, PETSC_ERR_USER_INPUT, "run with -malloc_debug: the test counts PetscMalloc");
  PetscLogMemory = PETSC_TRUE; /* what -log_view_memory sets: the high-water mark of a push/pop is kept only then */
  for (int p = 0; p < 3; p++)
    for (size_t c = 0; c < sizeof common / sizeof common[0]; c++) {
      char option[64];
      snprintf(option, sizeof option, "-%s%s", prefixes[p], common[c][0]);
      PetscCall(PetscOptionsSetValue(NULL, option, common[c][1]));
    }

  if (rank == 0) PetscCall(measure(PETSC_COMM_SELF, "solo_", "rotating", n, d, &solo));
  PetscCallMPI(MPI_Bcast(&solo.peak_bytes, 1, MPI_DOUBLE, 0, PETSC_COMM_WORLD));
  PetscCall(measure(PETSC_COMM_WORLD, "rot_", "rotating", n, d, &rot));
  PetscCall(measure(PETSC_COMM_WORLD, "rep_", "replicated", n, d, &rep));
  PetscCallMPI(MPI_Allreduce(&rot.peak_bytes, &worst_rot, 1, MPI_DOUBLE, MPI_MAX, PETSC_COMM_WORLD));
  PetscCallMPI(MPI_Allreduce(&rep.peak_bytes, &least_rep, 1, MPI_DOUBLE, MPI_MIN, PETSC_COMM_WORLD));

  const double scalars = 16.0 * 2 * n * sizeof(double); /* potentials, marginals, lists: O(n), not / P */
  const double bound   = 1.4 * solo.peak_bytes / size + scalars;
  PetscCall(PetscPrintf(PETSC_COMM_WORLD,
                        "online memory n=%d d=%d ranks=%d: one rank %.2f MB; per rank rotating %.2f MB (bound %.2f, "
                        "x P / one rank = %.3f), replicated %.2f MB\n",
                        (int)n, (int)d, size, solo.peak_bytes / 1048576, worst_rot / 1048576, bound / 1048576,
                        worst_rot * size / solo.peak_bytes, least_rep / 1048576));
  PetscCheck(worst_rot <= bound, PETSC_COMM_WORLD, PETSC_ERR_PLIB,
             "FAIL: the rotating layout takes %.0f bytes on a rank, above %.0f", worst_rot, bound);
  if (size > 1)
    PetscCheck(least_rep >= (double)n * d * sizeof(double), PETSC_COMM_WORLD, PETSC_ERR_PLIB,
               "FAIL: the replicated layout takes %.0f bytes on a rank, less than the students' features", least_rep);

  PetscCall(gather_topk(PETSC_COMM_WORLD, &rot, n, &table_rot));
  PetscCall(gather_topk(PETSC_COMM_WORLD, &rep, n, &table_rep));
  PetscCall(check_same(PETSC_COMM_WORLD, n * rot.k, table_rot, table_rep, "rotating, replicated"));
  if (rank == 0) {
    PetscCall(gather_topk(PETSC_COMM_SELF, &solo, n, &table_solo));
    PetscCall(check_same(PETSC_COMM_SELF, n * rot.k, table_rot, table_solo, "P ranks, one rank"));
    PetscCall(PetscFree(table_solo));
    PetscCall(PetscFree2(solo.rows, solo.index));
  }
  PetscCall(PetscPrintf(PETSC_COMM_WORLD, "ok: the same top-%d on one rank and in both layouts\n", (int)rot.k));
  PetscCall(PetscFree(table_rot));
  PetscCall(PetscFree(table_rep));
  PetscCall(PetscFree2(rot.rows, rot.index));
  PetscCall(PetscFree2(rep.rows, rep.index));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  PetscCall(run());
  PetscCall(PetscFinalize());
  return 0;
}
