/* A stopped solve's state, and resuming from it.
 *
 * Entropic OT solved by Sinkhorn with eps-scaling has a small state: the eps
 * stage it is in and the two potentials. Sinkhorn at a fixed eps converges
 * from any potentials, so a solve that stops in stage k resumes in stage k
 * from the potentials it had, and reaches the same plan to the tolerance. A
 * finished class block is saved as "in its last stage" with its converged
 * potentials: resumed, its first check meets the tolerance.
 *
 * The state is per problem: the dense problem, or every class block (a
 * block's potentials live at its samples' global indices, the blocks being
 * disjoint). Other solvers (semi-dual, exact, auction, argmin) start again. */
#include "ot_impl.h"
#include <ackd/core.h>
#include <math.h>
#include <string.h>

PetscErrorCode AckdOTStateFree(AckdOTState *state)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree3(state->stage, state->f, state->g));
  state->nproblems = 0;
  PetscFunctionReturn(0);
}

static PetscErrorCode state_alloc(AckdOT ot, AckdOTState *state)
{
  PetscFunctionBeginUser;
  state->nproblems = ot->blocks ? AckdOTBlocksCount(ot) : 1;
  PetscCall(PetscMalloc3(state->nproblems, &state->stage, ot->ns + 1, &state->f, ot->nt + 1, &state->g));
  for (PetscInt p = 0; p < state->nproblems; p++) state->stage[p] = -1;
  PetscCall(PetscArrayzero(state->f, ot->ns));
  PetscCall(PetscArrayzero(state->g, ot->nt));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTGetState(AckdOT ot, AckdOTState *state)
{
  PetscFunctionBeginUser;
  PetscCheck(AckdOTResumable(ot), ot->comm, PETSC_ERR_ORDER, "only a Sinkhorn solve has a state to resume from");
  PetscCall(state_alloc(ot, state));
  if (ot->blocks) {
    PetscCall(AckdOTBlocksGetState(ot, state));
    PetscFunctionReturn(0);
  }
  PetscCall(AckdOTGatherPotentials(ot));
  state->stage[0] = ot->stage;
  PetscCall(PetscArraycpy(state->f, ot->f, ot->ns));
  PetscCall(PetscArraycpy(state->g, ot->g, ot->nt));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTSetState(AckdOT ot, const AckdOTState *state)
{
  PetscFunctionBeginUser;
  PetscCheck(ot->has_cost, ot->comm, PETSC_ERR_ORDER, "call AckdOTSetFeatures before AckdOTSetState");
  PetscCheck(AckdOTResumable(ot), ot->comm, PETSC_ERR_ORDER, "only a Sinkhorn solve resumes from a state");
  PetscCheck(state->nproblems == (ot->blocks ? AckdOTBlocksCount(ot) : 1), ot->comm, PETSC_ERR_ARG_INCOMP,
             "the saved state has %" PetscInt_FMT " problems, this solve %" PetscInt_FMT, state->nproblems,
             ot->blocks ? AckdOTBlocksCount(ot) : 1);
  if (ot->blocks)
    PetscCall(AckdOTBlocksSetState(ot, state));
  else if (state->stage[0] >= 0)
    PetscCall(AckdOTResumeFrom(ot, state->stage[0], NULL, state->f, NULL, state->g));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------- the state file */

/* What makes two solves the same problem: the caller's source (its input file) and every setting
 * that changes the plan or the eps schedule. */
static void problem_line(AckdOT ot, const char *source, char *line, size_t len)
{
  snprintf(line, len,
           "%s; %" PetscInt_FMT " x %" PetscInt_FMT " x %" PetscInt_FMT "; %s, cost %s, eps %.17g%s, scaling %s "
           "%.17g, tol %.17g, tau %.17g, omega %.17g, T %.17g, %" PetscInt_FMT " class blocks",
           source, ot->ns, ot->nt, ot->dim, AckdOTSolverKinds[ot->solver], AckdOTCostKinds[ot->cost_kind],
           (double)ot->eps, ot->eps_relative ? " relative" : "", ot->eps_scaling ? "on" : "off",
           (double)ot->eps_scaling_factor, (double)ot->tol, (double)ot->tau, (double)ot->omega,
           (double)ot->kl_temperature, ot->blocks ? AckdOTBlocksCount(ot) : 0);
}

PetscErrorCode AckdOTStateWrite(AckdOT ot, const AckdOTState *state, const char *path, const AckdH5Settings *h5,
                                const char *source)
{
  hid_t   file;
  hsize_t n;
  char    fingerprint[2048];

  PetscFunctionBeginUser;
  problem_line(ot, source, fingerprint, sizeof fingerprint);
  PetscCall(AckdH5FileCreatePartial(ot->comm, path, h5, &file));
  PetscCall(AckdH5AttrWriteString(file, "ackd_format", "ot_state"));
  PetscCall(AckdH5AttrWriteInt(file, "ackd_format_version", 1));
  PetscCall(AckdH5AttrWriteString(file, "problem", fingerprint));
  int *stage;
  PetscCall(PetscMalloc1(state->nproblems, &stage));
  for (PetscInt p = 0; p < state->nproblems; p++) stage[p] = (int)state->stage[p];
  n = (hsize_t)state->nproblems;
  PetscCall(AckdH5WriteSmall(ot->comm, file, "stage", H5T_NATIVE_INT, 1, &n, stage));
  PetscCall(PetscFree(stage));
  n = (hsize_t)ot->ns;
  PetscCall(AckdH5WriteSmall(ot->comm, file, "f", H5T_NATIVE_DOUBLE, 1, &n, state->f));
  n = (hsize_t)ot->nt;
  PetscCall(AckdH5WriteSmall(ot->comm, file, "g", H5T_NATIVE_DOUBLE, 1, &n, state->g));
  PetscCall(AckdH5FileCommit(ot->comm, &file, path));
  PetscFunctionReturn(0);
}

/* A state is a cache of work done: one that does not fit (a wrong shape, non-finite
 * potentials) says why in *why and is not used, rather than stopping the run. */
static PetscErrorCode read_vector(hid_t file, const char *path, const char *name, hid_t type, hsize_t n, void *data,
                                  char *why, size_t why_len)
{
  hid_t       dset;
  AckdH5Shape shape;

  PetscFunctionBeginUser;
  if (why[0]) PetscFunctionReturn(0);
  if (H5Lexists(file, name, H5P_DEFAULT) <= 0) {
    snprintf(why, why_len, "it has no /%s", name);
    PetscFunctionReturn(0);
  }
  AckdCallH5(dset = H5Dopen2(file, name, H5P_DEFAULT), "'%s': opening /%s", path, name);
  PetscCall(AckdH5DatasetShapeOf(dset, path, name, &shape));
  if (shape.rank == 1 && shape.dims[0] == n)
    AckdCallH5(H5Dread(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "'%s': reading /%s", path, name);
  else
    snprintf(why, why_len, "/%s has %llu entries, expected %llu", name, (unsigned long long)shape.dims[0],
             (unsigned long long)n);
  H5Dclose(dset);
  PetscFunctionReturn(0);
}

static void check_potentials(const char *name, const double *v, PetscInt n, char *why, size_t why_len)
{
  for (PetscInt i = 0; i < n && !why[0]; i++)
    if (isnan(v[i]) || v[i] == INFINITY)
      snprintf(why, why_len, "potential %s[%" PetscInt_FMT "] is not a number", name, i);
}

PetscErrorCode AckdOTStateRead(AckdOT ot, const char *path, const AckdH5Settings *h5, const char *source,
                               AckdOTState *state, PetscBool *found, char *why, size_t why_len)
{
  hid_t     file;
  char      format[32] = "", problem[2048] = "", fingerprint[2048];
  PetscBool has_format, has_problem;

  PetscFunctionBeginUser;
  problem_line(ot, source, fingerprint, sizeof fingerprint);
  *found = PETSC_FALSE;
  why[0] = 0;
  PetscBool exists;
  PetscCall(PetscTestFile(path, 'r', &exists));
  if (!exists) PetscFunctionReturn(0);
  /* Every rank asks: the answer is the same file's, and no rank then opens alone. */
  if (H5Fis_hdf5(path) <= 0) {
    snprintf(why, why_len, "it is not an HDF5 file (corrupt or truncated)");
    PetscFunctionReturn(0);
  }
  PetscCall(AckdH5FileOpenRead(ot->comm, path, h5, &file));
  PetscCall(AckdH5AttrReadString(file, "ackd_format", format, sizeof format, &has_format));
  PetscCall(AckdH5AttrReadString(file, "problem", problem, sizeof problem, &has_problem));
  if (!has_format || strcmp(format, "ot_state") || !has_problem) {
    snprintf(why, why_len, "it is not a solver state written by ackd match");
  } else if (strcmp(problem, fingerprint)) {
    snprintf(why, why_len, "it is of another problem (%s; now %s)", problem, fingerprint);
  } else {
    PetscCall(state_alloc(ot, state));
    int *stage;
    PetscCall(PetscMalloc1(state->nproblems, &stage));
    PetscCall(read_vector(file, path, "stage", H5T_NATIVE_INT, (hsize_t)state->nproblems, stage, why, why_len));
    for (PetscInt p = 0; p < state->nproblems; p++) state->stage[p] = stage[p];
    PetscCall(PetscFree(stage));
    PetscCall(read_vector(file, path, "f", H5T_NATIVE_DOUBLE, (hsize_t)ot->ns, state->f, why, why_len));
    PetscCall(read_vector(file, path, "g", H5T_NATIVE_DOUBLE, (hsize_t)ot->nt, state->g, why, why_len));
    if (!why[0]) check_potentials("f", state->f, ot->ns, why, why_len);
    if (!why[0]) check_potentials("g", state->g, ot->nt, why, why_len);
    if (why[0]) PetscCall(AckdOTStateFree(state));
    *found = (PetscBool)!why[0];
  }
  PetscCall(AckdH5FileClose(&file, path));
  PetscFunctionReturn(0);
}
