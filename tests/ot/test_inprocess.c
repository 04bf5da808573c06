/* DynM re-matching as `ackd distill` will do it: the OT library called
 * in-process on a communicator of training ranks (not PETSC_COMM_WORLD: here
 * the world's ranks in reverse order), KL cost between student logits (rows)
 * and teacher gallery logits (columns), with class labels, solved twice with
 * a fresh object each time as at two adjust epochs.
 *
 *   test_ot_inprocess PROBLEM.h5 MATCH.h5 [-distill_ot_... options]
 *
 * Asserts here: the two solves give the same top-k bit for bit, and each
 * rank's rows are the ones the library says it holds. The match file of the
 * second solve is then checked against POT by pot_reference.py, and the
 * files written at 1, 2 and 4 ranks against each other (same_match.sh). */
#include <ackd/ot.h>
#include <hdf5.h>
#include <stdlib.h>

typedef struct {
  PetscInt  n, d;
  double   *x;
  PetscInt *labels;
} Side;

/* Every rank reads the whole (small) side: distill holds its logits in memory. */
static PetscErrorCode read_side(MPI_Comm comm, hid_t file, const char *group, Side *s)
{
  char    name[64];
  hsize_t dims[2];
  hid_t   dset, space;

  PetscFunctionBeginUser;
  snprintf(name, sizeof name, "/%s/features", group);
  AckdCallH5(dset = H5Dopen2(file, name, H5P_DEFAULT), "opening %s", name);
  AckdCallH5(space = H5Dget_space(dset), "dataspace of %s", name);
  H5Sget_simple_extent_dims(space, dims, NULL);
  s->n = (PetscInt)dims[0];
  s->d = (PetscInt)dims[1];
  PetscCall(PetscMalloc1(s->n * s->d, &s->x));
  AckdCallH5(H5Dread(dset, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, s->x), "reading %s", name);
  H5Sclose(space);
  H5Dclose(dset);
  snprintf(name, sizeof name, "/%s/labels", group);
  PetscCall(PetscMalloc1(s->n, &s->labels));
  AckdCallH5(dset = H5Dopen2(file, name, H5P_DEFAULT), "opening %s", name);
  AckdCallH5(H5Dread(dset, sizeof(PetscInt) == 8 ? H5T_NATIVE_INT64 : H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                     s->labels),
             "reading %s", name);
  H5Dclose(dset);
  (void)comm;
  PetscFunctionReturn(0);
}

/* One re-matching: the calling sequence documented in ot.h. */
static PetscErrorCode rematch(MPI_Comm comm, const Side *s, const Side *t, AckdOT *out)
{
  AckdOT   ot;
  PetscInt lo_s, hi_s, lo_t, hi_t;
  double  *a, *b;

  PetscFunctionBeginUser;
  PetscCall(AckdOTCreate(comm, &ot));
  PetscCall(AckdOTSetOptionsPrefix(ot, "distill_"));
  PetscCall(AckdOTSetCostKind(ot, ACKD_OT_COST_KL));
  PetscCall(AckdOTSetFromOptions(ot));
  PetscCall(AckdOTSetSizes(ot, s->n, t->n, s->d));
  PetscCall(AckdOTSetUp(ot));
  PetscCall(PetscMalloc2(s->n, &a, t->n, &b));
  for (PetscInt i = 0; i < s->n; i++) a[i] = 1.0;
  for (PetscInt j = 0; j < t->n; j++) b[j] = 1.0;
  PetscCall(AckdOTBalanceClassMasses(s->n, s->labels, a, t->n, t->labels, b, NULL, NULL));
  PetscCall(AckdOTSetLabels(ot, s->labels, t->labels));
  PetscCall(AckdOTSetMarginals(ot, a, b));
  PetscCall(PetscFree2(a, b));
  PetscCall(AckdOTGetOwnedRows(ot, ACKD_OT_STUDENT, &lo_s, &hi_s));
  PetscCall(AckdOTGetOwnedRows(ot, ACKD_OT_TEACHER, &lo_t, &hi_t));
  PetscCall(AckdOTSetFeatures(ot, s->x + lo_s * s->d, t->x + lo_t * t->d));
  PetscCall(AckdOTSolve(ot));
  *out = ot;
  PetscFunctionReturn(0);
}

static PetscErrorCode run(const char *problem, const char *match)
{
  MPI_Comm       train;
  PetscMPIInt    rank, size;
  Side           s = {0}, t = {0};
  AckdOT         first, second;
  AckdH5Settings h5;
  hid_t          file;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(PETSC_COMM_WORLD, &rank));
  PetscCallMPI(MPI_Comm_size(PETSC_COMM_WORLD, &size));
  PetscCallMPI(MPI_Comm_split(PETSC_COMM_WORLD, 0, size - 1 - rank, &train));
  AckdCallH5(file = H5Fopen(problem, H5F_ACC_RDONLY, H5P_DEFAULT), "opening '%s'", problem);
  PetscCall(read_side(train, file, "student", &s));
  PetscCall(read_side(train, file, "teacher", &t));
  H5Fclose(file);

  PetscCall(rematch(train, &s, &t, &first));
  PetscCall(rematch(train, &s, &t, &second));
  PetscInt        k1, k2, n1, n2;
  const PetscInt *rows1, *rows2, *idx1, *idx2;
  const double   *w1, *w2;
  PetscCall(AckdOTGetTopK(first, &k1, &n1, &rows1, &idx1, &w1));
  PetscCall(AckdOTGetTopK(second, &k2, &n2, &rows2, &idx2, &w2));
  PetscInt bad = 0, held = n2, total;
  if (k1 != k2 || n1 != n2) bad++;
  for (PetscInt r = 0; r < n1 * (bad ? 0 : 1); r++) {
    if (rows1[r] != rows2[r]) bad++;
    for (PetscInt q = 0; q < k1; q++)
      if (idx1[r * k1 + q] != idx2[r * k1 + q] || w1[r * k1 + q] != w2[r * k1 + q]) bad++;
    if (idx2[r * k2] >= 0 && t.labels[idx2[r * k2]] != s.labels[rows2[r]]) bad++; /* within class */
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPIU_INT, MPI_SUM, train));
  PetscCallMPI(MPI_Allreduce(&held, &total, 1, MPIU_INT, MPI_SUM, train));
  PetscCheck(bad == 0, train, PETSC_ERR_PLIB, "two re-matchings of the same logits differ (%d mismatches)", (int)bad);
  PetscCheck(total == s.n, train, PETSC_ERR_PLIB, "the ranks hold %d top-k rows, not one per student (%d)", (int)total,
             (int)s.n);

  PetscCall(AckdH5SettingsSetFromOptions(&h5));
  PetscCall(AckdOTWriteMatchFile(second, match, &h5, problem));
  AckdOTResult r;
  PetscCall(AckdOTGetResult(second, &r));
  PetscCall(PetscPrintf(train, "in-process re-matching on %d ranks: %d iterations, converged %d, top-%d agree\n", size,
                        (int)r.iterations, (int)r.converged, (int)k2));
  PetscCall(AckdOTDestroy(&first));
  PetscCall(AckdOTDestroy(&second));
  PetscCall(PetscFree(s.x));
  PetscCall(PetscFree(t.x));
  PetscCall(PetscFree(s.labels));
  PetscCall(PetscFree(t.labels));
  PetscCallMPI(MPI_Comm_free(&train));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  if (argc < 3) {
    fprintf(stderr, "usage: test_ot_inprocess PROBLEM.h5 MATCH.h5 [options]\n");
    return 2;
  }
  PetscCall(run(argv[1], argv[2]));
  PetscCall(PetscFinalize());
  return 0;
}
