/* A matching run (`ackd match`): which teacher samples teach which student sample, by optimal
 * transport between the two collections' features.
 *
 * Input file (-match_input), any HDF5 file with two groups:
 *   /student/features  (N_s, d)  float32 or float64: embeddings, or logits with -match_ot_cost kl
 *   /teacher/features  (N_t, d)  the same dimension d
 *   /student/labels, /teacher/labels  (N) integer, optional: classes in one shared index space
 *                      (negative: no class). With them the cost is +inf across classes.
 *   /student/mass, /teacher/mass      (N) float, optional: the marginals (default uniform)
 *   /student/index, /teacher/index    (N) integer, needed by -match_features index: dataset rows
 * Balanced OT (sinkhorn, semidual, exact) with class blocks moves each class's student mass onto that
 * class's teachers: teacher masses are rescaled per class to match, and
 * students of a class without teachers (and teachers of a class without
 * students) get no mass, with a warning.
 * Output (-match_output): the match file, see src/ot/match_file.c. */
#include <ackd/ckpt.h>
#include <ackd/ot.h>
#include <errno.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

enum { FEATURES_GIVEN, FEATURES_INDEX };
static const char *const FeatureSources[] = {"features", "index"};

typedef struct {
  PetscInt *labels;
  double   *mass;
  double   *rows; /* this rank's contiguous feature rows */
  PetscInt  n, dim, lo, hi;
} Side;

struct _p_AckdMatching {
  MPI_Comm       comm;
  AckdLog        log;
  AckdOT         ot;
  AckdH5Settings h5;
  PetscBool      class_blocks, blocked, resumable, setup;
  PetscInt       features; /* FEATURES_* */
  PetscReal      save_every;
  char           input[PETSC_MAX_PATH_LEN], output[PETSC_MAX_PATH_LEN];
  char           state_path[PETSC_MAX_PATH_LEN + 8], source[PETSC_MAX_PATH_LEN + 128];
  Side           s, t;
  double         t0;
};

static PetscErrorCode dataset_dims(MPI_Comm comm, hid_t file, const char *path, const char *name, int want_rank,
                                   hsize_t *dims, PetscBool *exists)
{
  PetscFunctionBeginUser;
  htri_t has = H5Lexists(file, name, H5P_DEFAULT);
  *exists    = (PetscBool)(has > 0);
  if (!*exists) PetscFunctionReturn(0);
  hid_t       dset;
  AckdH5Shape shape;
  AckdCallH5(dset = H5Dopen2(file, name, H5P_DEFAULT), "opening %s in '%s'", name, path);
  PetscCall(AckdH5DatasetShapeOf(dset, path, name, &shape));
  AckdCallH5(H5Dclose(dset), "closing %s in '%s'", name, path);
  PetscCheck(shape.rank == want_rank, comm, PETSC_ERR_FILE_UNEXPECTED,
             "%s in '%s' has %d dimensions, expected %d; write it in the layout of docs/FORMATS.md (embeddings)", name,
             path, shape.rank, want_rank);
  PetscCall(PetscArraycpy(dims, shape.dims, want_rank));
  PetscFunctionReturn(0);
}

/* Every rank reads a whole small vector (labels, masses, indices), or learns that the file has none:
 * each caller decides whether that is an error, with its own message. */
static PetscErrorCode read_vector(MPI_Comm comm, hid_t file, const char *path, const char *name, PetscInt n,
                                  hid_t memtype, void *data, PetscBool *exists)
{
  hsize_t dims[1];

  PetscFunctionBeginUser;
  PetscCall(dataset_dims(comm, file, path, name, 1, dims, exists));
  if (!*exists) PetscFunctionReturn(0);
  PetscCheck((PetscInt)dims[0] == n, comm, PETSC_ERR_FILE_UNEXPECTED,
             "%s in '%s' has %llu entries but there are %" PetscInt_FMT " samples", name, path,
             (unsigned long long)dims[0], n);
  hid_t dset;
  AckdCallH5(dset = H5Dopen2(file, name, H5P_DEFAULT), "opening %s", name);
  AckdCallH5(H5Dread(dset, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "reading %s in '%s'", name, path);
  H5Dclose(dset);
  PetscFunctionReturn(0);
}

static PetscErrorCode read_side(MPI_Comm comm, AckdOT ot, hid_t file, const char *path, const char *group,
                                AckdOTSide which, Side *side)
{
  char      name[64];
  PetscBool exists;

  PetscFunctionBeginUser;
  PetscCall(AckdOTGetOwnedRows(ot, which, &side->lo, &side->hi));
  PetscCall(PetscMalloc1((side->hi - side->lo) * side->dim + 1, &side->rows));
  snprintf(name, sizeof name, "/%s/features", group);
  hid_t dset, fspace, mspace, dxpl;
  AckdCallH5(dset = H5Dopen2(file, name, H5P_DEFAULT), "opening %s in '%s'", name, path);
  AckdCallH5(fspace = H5Dget_space(dset), "dataspace of %s", name);
  hsize_t start[2] = {(hsize_t)side->lo, 0}, count[2] = {(hsize_t)(side->hi - side->lo), (hsize_t)side->dim};
  if (count[0] > 0)
    AckdCallH5(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL), "rows of %s", name);
  else
    H5Sselect_none(fspace);
  hsize_t mcount = PetscMax(1, count[0] * count[1]);
  AckdCallH5(mspace = H5Screate_simple(1, &mcount, NULL), "memory space");
  if (count[0] == 0) H5Sselect_none(mspace);
  AckdCallH5(dxpl = H5Pcreate(H5P_DATASET_XFER), "transfer properties");
  AckdCallH5(H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE), "collective transfer");
  AckdCallH5(H5Dread(dset, H5T_NATIVE_DOUBLE, mspace, fspace, dxpl, side->rows), "reading %s in '%s'", name, path);
  H5Pclose(dxpl);
  H5Sclose(mspace);
  H5Sclose(fspace);
  H5Dclose(dset);

  snprintf(name, sizeof name, "/%s/labels", group);
  PetscCall(PetscMalloc1(side->n, &side->labels));
  PetscCall(read_vector(comm, file, path, name, side->n, H5T_NATIVE_INT, side->labels, &exists));
  if (!exists) PetscCall(PetscFree(side->labels)); /* NULL: this side has no classes */
  PetscCall(PetscMalloc1(side->n, &side->mass));
  snprintf(name, sizeof name, "/%s/mass", group);
  PetscCall(read_vector(comm, file, path, name, side->n, H5T_NATIVE_DOUBLE, side->mass, &exists));
  if (!exists)
    for (PetscInt i = 0; i < side->n; i++) side->mass[i] = 1.0;
  for (PetscInt i = 0; i < side->n; i++)
    PetscCheck(isfinite(side->mass[i]) && side->mass[i] >= 0, comm, PETSC_ERR_USER_INPUT,
               "/%s/mass[%" PetscInt_FMT "] in '%s' is negative or not finite; masses must be finite and >= 0", group,
               i, path);
  PetscFunctionReturn(0);
}

/* -match_features index, for co-registered collections (ackd synth -synth_paired, or paired
 * tiles of two sensors): each row becomes a unit vector drawn from its sample's dataset index, so
 * a student and the teacher of its index cost 0 and any other pair about 1 +- d^(-1/2). Every
 * solver, the class blocks and the top-k then match true pairs by the same path as embeddings. */
static PetscErrorCode features_from_index(MPI_Comm comm, hid_t file, const char *path, const char *group, Side *side)
{
  enum { MIN_DIM = 16, TAG_INDEX_FEATURES = 0x494e4458 };
  char       name[64];
  PetscBool  exists;
  long long *index;

  PetscFunctionBeginUser;
  snprintf(name, sizeof name, "/%s/index", group);
  PetscCall(PetscMalloc1(side->n, &index));
  PetscCall(read_vector(comm, file, path, name, side->n, H5T_NATIVE_LLONG, index, &exists));
  PetscCheck(exists, comm, PETSC_ERR_FILE_UNEXPECTED,
             "-match_features index needs %s in '%s', each sample's dataset row (ackd ssm writes it); give it or "
             "match on the features",
             name, path);
  PetscCheck(side->dim >= MIN_DIM, comm, PETSC_ERR_USER_INPUT,
             "-match_features index needs features of at least %d columns to keep other pairs' costs near 1; '%s' has "
             "%" PetscInt_FMT,
             (int)MIN_DIM, path, side->dim);
  for (PetscInt i = side->lo; i < side->hi; i++) {
    double *row = side->rows + (i - side->lo) * side->dim, norm = 0;
    AckdRng rng;
    AckdRngInit(&rng, 0, (uint64_t)index[i], TAG_INDEX_FEATURES);
    for (PetscInt k = 0; k < side->dim; k++) {
      row[k] = AckdRngNormal(&rng);
      norm += row[k] * row[k];
    }
    for (PetscInt k = 0; k < side->dim; k++) row[k] /= sqrt(norm);
  }
  PetscCall(PetscFree(index));
  PetscFunctionReturn(0);
}

/* Balanced OT per class: teacher mass of class c becomes the student mass of c. */
static PetscErrorCode balance_classes(const AckdLog *log, Side *s, Side *t)
{
  PetscInt dropped_s, dropped_t;

  PetscFunctionBeginUser;
  PetscCall(AckdOTBalanceClassMasses(s->n, s->labels, s->mass, t->n, t->labels, t->mass, &dropped_s, &dropped_t));
  if (dropped_s || dropped_t)
    PetscCall(AckdLogWarn(log,
                          "match: %" PetscInt_FMT " students and %" PetscInt_FMT
                          " teachers have no counterpart class and are not matched\n",
                          dropped_s, dropped_t));
  PetscFunctionReturn(0);
}

/* The input as the solver's state file records it: a rewritten input is another problem. */
static void input_identity(const char *input, PetscInt features, char *source, size_t len)
{
  struct stat st;
  if (stat(input, &st) == 0)
    snprintf(source, len, "input '%s' of %lld bytes, modified %lld.%09ld, matched on its %s", input,
             (long long)st.st_size, (long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec, FeatureSources[features]);
  else
    snprintf(source, len, "input '%s', matched on its %s", input, FeatureSources[features]);
}

/* A solve stopped earlier resumes from OUTPUT.state when that file is of the same problem. */
static PetscErrorCode resume(AckdOT ot, const AckdLog *log, const char *state_path, const AckdH5Settings *h5,
                             const char *source)
{
  AckdOTState state;
  PetscBool   found;
  char        why[2600];

  PetscFunctionBeginUser;
  PetscCall(AckdOTStateRead(ot, state_path, h5, source, &state, &found, why, sizeof why));
  if (!found) {
    if (why[0])
      PetscCall(AckdLogWarn(log, "match: not resuming from '%s': %s; the solve starts again\n", state_path, why));
    PetscFunctionReturn(0);
  }
  PetscCall(AckdOTSetState(ot, &state));
  PetscInt begun = 0, highest = -1;
  for (PetscInt p = 0; p < state.nproblems; p++) {
    begun += state.stage[p] >= 0;
    highest = PetscMax(highest, state.stage[p]);
  }
  if (state.nproblems > 1)
    PetscCall(AckdLogInfo(
        log, "match: resuming from '%s': %" PetscInt_FMT " of %" PetscInt_FMT " class blocks begun or done\n",
        state_path, begun, state.nproblems));
  else
    PetscCall(AckdLogInfo(log, "match: resuming from '%s': eps stage %" PetscInt_FMT "\n", state_path, highest));
  PetscCall(AckdOTStateFree(&state));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdMatchingCreate(MPI_Comm comm, AckdMatching *matching)
{
  AckdMatching m;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&m));
  m->comm         = comm;
  m->class_blocks = PETSC_TRUE;
  m->save_every   = 600;
  PetscCall(PetscStrncpy(m->output, "match.h5", sizeof m->output));
  PetscCall(AckdLogSetUp(&m->log, comm));
  PetscCall(AckdOTCreate(comm, &m->ot));
  *matching = m;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdMatchingSetFromOptions(AckdMatching m)
{
  PetscFunctionBeginUser;
  PetscCall(AckdOTSetOptionsPrefix(m->ot, "match_"));
  PetscCall(AckdOTSetFromOptions(m->ot));
  PetscOptionsBegin(m->comm, NULL, "ackd match: teacher samples for every student sample, by optimal transport", NULL);
  PetscCall(AckdOptionsString(PetscOptionsObject, "-match_input",
                              "HDF5 file with /student/features and /teacher/features (see the stage's header)",
                              m->input, sizeof m->input, NULL));
  PetscCall(
      AckdOptionsString(PetscOptionsObject, "-match_output", "Match file to write", m->output, sizeof m->output, NULL));
  PetscCall(AckdOptionsBool(PetscOptionsObject, "-match_class_blocks",
                            "Match only within classes when the input has labels (+inf cost across classes)",
                            &m->class_blocks, NULL));
  PetscCall(AckdOptionsChoice(PetscOptionsObject, "-match_features",
                              "What a sample is matched on: its features, or its dataset index (co-registered "
                              "collections: a student is matched to the teacher of its own index)",
                              FeatureSources, 2, &m->features, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-match_save_every",
                            "Save the Sinkhorn solver's state to OUTPUT.state every this many seconds of solving, so "
                            "that a run killed outright resumes from it (0: only when stopped by a signal)",
                            &m->save_every, 0, 1e9, NULL));
  PetscOptionsEnd();
  PetscCall(AckdH5SettingsSetFromOptions(&m->h5));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdMatchingSetUp(AckdMatching m)
{
  MPI_Comm         comm = m->comm;
  AckdOT           ot   = m->ot;
  Side            *s = &m->s, *t = &m->t;
  AckdOTSolverKind solver;
  PetscBool        exists_s, exists_t;
  hid_t            file;
  hsize_t          dims_s[2], dims_t[2];

  PetscFunctionBeginUser;
  if (m->setup) PetscFunctionReturn(0);
  PetscCheck(m->input[0], comm, PETSC_ERR_USER_INPUT, "option -match_input is required: the file of features to match");
  m->t0 = AckdTimeNow();
  PetscCall(AckdH5FileOpenRead(comm, m->input, &m->h5, &file));
  PetscCall(dataset_dims(comm, file, m->input, "/student/features", 2, dims_s, &exists_s));
  PetscCall(dataset_dims(comm, file, m->input, "/teacher/features", 2, dims_t, &exists_t));
  PetscCheck(exists_s && exists_t, comm, PETSC_ERR_FILE_UNEXPECTED,
             "'%s' has no /%s/features dataset; write (N, d) features for both /student and /teacher", m->input,
             exists_s ? "teacher" : "student");
  PetscCheck(dims_s[1] == dims_t[1], comm, PETSC_ERR_FILE_UNEXPECTED,
             "features in '%s' differ in dimension: student %llu, teacher %llu; both sides need the same d", m->input,
             (unsigned long long)dims_s[1], (unsigned long long)dims_t[1]);
  s->n   = (PetscInt)dims_s[0];
  t->n   = (PetscInt)dims_t[0];
  s->dim = t->dim = (PetscInt)dims_s[1];
  PetscCall(AckdOTSetSizes(ot, s->n, t->n, s->dim));
  PetscCall(AckdOTSetUp(ot));
  PetscCall(read_side(comm, ot, file, m->input, "student", ACKD_OT_STUDENT, s));
  PetscCall(read_side(comm, ot, file, m->input, "teacher", ACKD_OT_TEACHER, t));
  if (m->features == FEATURES_INDEX) {
    PetscCall(features_from_index(comm, file, m->input, "student", s));
    PetscCall(features_from_index(comm, file, m->input, "teacher", t));
  }
  PetscCall(AckdH5FileClose(&file, m->input));

  PetscCall(AckdOTGetSolverKind(ot, &solver));
  m->blocked = (PetscBool)(m->class_blocks && s->labels && t->labels);
  PetscCheck(!m->class_blocks || (!s->labels == !t->labels), comm, PETSC_ERR_FILE_UNEXPECTED,
             "'%s' has labels for only one side; give both /student/labels and /teacher/labels, or "
             "-match_class_blocks false",
             m->input);
  PetscCall(AckdOutputFileCheck(comm, m->output, "-match_output"));
  if (m->blocked && (solver != ACKD_OT_SOLVER_UNBALANCED && solver != ACKD_OT_SOLVER_ARGMIN))
    PetscCall(balance_classes(&m->log, s, t));
  else {
    AckdOTNormaliseMasses(s->n, s->mass);
    AckdOTNormaliseMasses(t->n, t->mass);
  }
  if (m->blocked) PetscCall(AckdOTSetLabels(ot, s->labels, t->labels));
  PetscCall(AckdOTSetMarginals(ot, s->mass, t->mass));
  PetscCall(AckdOTSetFeatures(ot, s->rows, t->rows));
  m->resumable = AckdOTResumable(ot);
  snprintf(m->state_path, sizeof m->state_path, "%s.state", m->output);
  input_identity(m->input, m->features, m->source, sizeof m->source);
  if (m->resumable) PetscCall(resume(ot, &m->log, m->state_path, &m->h5, m->source));
  m->setup = PETSC_TRUE;
  PetscFunctionReturn(0);
}

/* The state a killed or stopped run resumes from. */
static PetscErrorCode save_state(AckdMatching m, PetscBool keep_solving)
{
  AckdOTState state;

  PetscFunctionBeginUser;
  PetscCall(AckdOTGetState(m->ot, &state));
  PetscCall(AckdOTStateWrite(m->ot, &state, m->state_path, &m->h5, m->source));
  if (keep_solving) PetscCall(AckdOTSetState(m->ot, &state));
  PetscCall(AckdOTStateFree(&state));
  PetscFunctionReturn(0);
}

static PetscErrorCode report(AckdMatching m)
{
  AckdOTResult r;
  PetscInt     pr, pc;
  PetscMPIInt  rank;
  char         line[256];

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(m->comm, &rank));
  if (rank == 0 && unlink(m->state_path) && errno != ENOENT)
    PetscCall(AckdLogWarn(&m->log, "match: cannot remove the finished solve's state '%s' (%s)\n", m->state_path,
                          strerror(errno)));
  PetscCall(AckdOTGetResult(m->ot, &r));
  PetscCall(AckdOTGetGridShape(m->ot, &pr, &pc));
  snprintf(line, sizeof line, "%s, %d iterations, column error %.3g, transport cost %.8g, eps %.4g",
           r.converged ? "converged" : "NOT converged", (int)r.iterations, r.column_error, r.transport_cost, r.eps);
  PetscCall(AckdLogInfo(&m->log, "match: %" PetscInt_FMT " students x %" PetscInt_FMT " teachers on a %dx%d grid: %s\n",
                        m->s.n, m->t.n, (int)pr, (int)pc, line));
  PetscCall(AckdLogInfo(&m->log, "match: wrote %s in %.2f s\n", m->output, AckdTimeNow() - m->t0));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdMatchingRun(AckdMatching m, PetscBool *stopped)
{
  PetscBool paused;

  PetscFunctionBeginUser;
  PetscCall(AckdMatchingSetUp(m));
  PetscCall(AckdStopRequestInstall());
  PetscCall(AckdOTSetStoppable(m->ot, PETSC_TRUE));
  /* After the handlers, on every rank: from this line on, a stop request is honoured. */
  PetscCallMPI(MPI_Barrier(m->comm));
  PetscCall(AckdLogInfo(&m->log, "match: solving %" PetscInt_FMT " students x %" PetscInt_FMT " teachers%s\n", m->s.n,
                        m->t.n, m->blocked ? " by class blocks" : ""));
  if (m->resumable) PetscCall(AckdOTSetPauseInterval(m->ot, m->save_every));
  for (;;) {
    PetscCall(AckdOTSolve(m->ot));
    PetscCall(AckdOTGetPaused(m->ot, &paused));
    if (!paused) break;
    /* the solve goes on from the same state */
    PetscCall(save_state(m, PETSC_TRUE));
    PetscCall(AckdLogInfo(&m->log, "match: saved the solver's state in '%s'\n", m->state_path));
    PetscCall(AckdOTSetPauseInterval(m->ot, m->save_every));
  }
  PetscCall(AckdOTGetStopped(m->ot, stopped));
  if (!*stopped) {
    PetscCall(AckdOTWriteMatchFile(m->ot, m->output, &m->h5, m->input));
    PetscCall(report(m));
  } else if (m->resumable) {
    PetscCall(save_state(m, PETSC_FALSE));
    PetscCall(AckdLogInfo(&m->log,
                          "match: stopped by a signal; the solver's state is in '%s': the same command resumes\n",
                          m->state_path));
  } else /* semi-dual, exact, auction: their state is not kept (docs/RELIABILITY.md) */
    PetscCall(
        AckdLogInfo(&m->log, "match: stopped by a signal; '%s' not written, run the same command again\n", m->output));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdMatchingDestroy(AckdMatching *matching)
{
  AckdMatching m = *matching;

  PetscFunctionBeginUser;
  if (!m) PetscFunctionReturn(0);
  PetscCall(PetscFree(m->s.rows));
  PetscCall(PetscFree(m->t.rows));
  PetscCall(PetscFree(m->s.labels));
  PetscCall(PetscFree(m->t.labels));
  PetscCall(PetscFree(m->s.mass));
  PetscCall(PetscFree(m->t.mass));
  PetscCall(AckdOTDestroy(&m->ot));
  PetscCall(PetscFree(*matching));
  PetscFunctionReturn(0);
}
