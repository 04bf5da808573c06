/* The match file (docs/DESIGN.md §5), format "match", version 1:
 *   /                     attrs ackd_format, ackd_format_version, ackd_version, input, options, mpi_ranks
 *   /match/teacher_index  (N_s, k) int64: per student, its top-k teachers, best first; -1: none
 *   /match/weight         (N_s, k) float64: their plan weights normalised over the row's kept teachers
 *   /ot                   attrs solver, cost, eps, eps_relative, eps_scaling, tol, max_it, tau, grid,
 *                         block, iterations, converged, column_error, row_error, transport_cost,
 *                         entropic_value, max_cost, truncate; a truncated solve's kept_entries,
 *                         discarded_mass, discarded_cost, certificates (its column_error and
 *                         row_error are certified bounds for the dense plan)
 *     f (N_s), g (N_t)    float64 potentials (sinkhorn, unbalanced): P = exp((f_i + g_j - C_ij) / eps)
 *     student_mass (N_s), teacher_mass (N_t)   the marginals
 *     history_iteration, history_error, history_eps   the stopping quantity at each check
 * The top-k rows are written collectively: each rank holds a run of its grid
 * row's block-cyclic set of rows (all of it on grid column 0; a chunk of it
 * on every rank in the online mode's rotating layout), a strided hyperslab
 * of the file. */
#include "ot_impl.h"
#include <stdio.h>

/* Adds local rows [a, b) of one block (contiguous in the file) to the selection. */
static PetscErrorCode select_run(AckdOT ot, hid_t space, H5S_seloper_t *op, PetscInt a, PetscInt b, PetscInt k)
{
  PetscFunctionBeginUser;
  if (b <= a) PetscFunctionReturn(0);
  hsize_t start[2] = {(hsize_t)ot->topk_rows[a - ot->topk_first], 0}, count[2] = {(hsize_t)(b - a), (hsize_t)k};
  AckdCallH5(H5Sselect_hyperslab(space, *op, start, NULL, count, NULL), "selecting the match rows");
  *op = H5S_SELECT_OR;
  PetscFunctionReturn(0);
}

/* Selects the student rows this rank keeps, local rows [topk_first,
 * topk_first + topk_nrows) of its grid row's block-cyclic set: blocks of
 * `block` rows every nprow * block rows, from myrow * block on. At most three
 * hyperslabs, whatever the count: a partial first block, the whole blocks
 * between (one strided selection) and a partial last block. */
static PetscErrorCode select_rows(AckdOT ot, hid_t space, PetscInt k)
{
  const PetscInt block = ot->block, lo = ot->topk_first, hi = ot->topk_first + ot->topk_nrows;
  const hsize_t  period = (hsize_t)ot->grid.nprow * block;
  H5S_seloper_t  op     = H5S_SELECT_SET;

  PetscFunctionBeginUser;
  AckdCallH5(H5Sselect_none(space), "selecting no rows");
  if (hi == lo) PetscFunctionReturn(0);
  /* local blocks [first, last) lie wholly inside; the head and the tail are
   * the partial blocks at either end (the head all of it if no block is whole) */
  const PetscInt first = (lo + block - 1) / block, last = hi / block;
  const PetscInt head_end = PetscMin(hi, first * block), tail_start = last >= first ? last * block : hi;
  /* in increasing row order: HDF5 1.10.8 mis-merges a hyperslab OR-ed in
   * front of an earlier one (its bounds run past the dataset's extent) */
  PetscCall(select_run(ot, space, &op, lo, head_end, k));
  if (last > first) {
    hsize_t start[2] = {(hsize_t)ot->topk_rows[first * block - lo], 0}, stride[2] = {period, 1};
    hsize_t count[2] = {(hsize_t)(last - first), 1}, blk[2] = {(hsize_t)block, (hsize_t)k};
    AckdCallH5(H5Sselect_hyperslab(space, op, start, stride, count, blk), "selecting the match rows");
    op = H5S_SELECT_OR;
  }
  PetscCall(select_run(ot, space, &op, tail_start, hi, k));
  PetscFunctionReturn(0);
}

static PetscErrorCode write_rows(AckdOT ot, hid_t group, const char *name, hid_t type, PetscInt k, const void *data)
{
  hsize_t dims[2] = {(hsize_t)ot->ns, (hsize_t)k}, mdims = (hsize_t)PetscMax(1, ot->topk_nrows * k);
  hid_t   fspace, mspace, dset, dxpl;

  PetscFunctionBeginUser;
  AckdCallH5(fspace = H5Screate_simple(2, dims, NULL), "dataspace of /match/%s", name);
  AckdCallH5(dset = H5Dcreate2(group, name, type, fspace, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "creating /match/%s",
             name);
  PetscCall(select_rows(ot, fspace, k));
  AckdCallH5(mspace = H5Screate_simple(1, &mdims, NULL), "memory space of /match/%s", name);
  if (ot->topk_nrows == 0) H5Sselect_none(mspace);
  AckdCallH5(dxpl = H5Pcreate(H5P_DATASET_XFER), "transfer properties");
  AckdCallH5(H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE), "collective transfer");
  AckdCallH5Agreed(ot->comm, dset, H5Dwrite(dset, type, mspace, fspace, dxpl, data), "writing /match/%s", name);
  H5Pclose(dxpl);
  H5Sclose(mspace);
  H5Sclose(fspace);
  H5Dclose(dset);
  PetscFunctionReturn(0);
}

static PetscErrorCode write_vector(AckdOT ot, hid_t group, const char *name, hid_t type, PetscInt n, const void *data)
{
  hsize_t dims = (hsize_t)n;

  PetscFunctionBeginUser;
  PetscCall(AckdH5WriteSmall(ot->comm, group, name, type, 1, &dims, data));
  PetscFunctionReturn(0);
}

static PetscErrorCode write_solver_attributes(AckdOT ot, hid_t group)
{
  char grid[32];

  PetscFunctionBeginUser;
  snprintf(grid, sizeof grid, "%dx%d", ot->grid.nprow, ot->grid.npcol);
  PetscCall(AckdH5AttrWriteString(group, "solver", AckdOTSolverKinds[ot->solver]));
  PetscCall(AckdH5AttrWriteString(group, "cost", AckdOTCostKinds[ot->cost_kind]));
  PetscCall(AckdH5AttrWriteString(group, "grid", grid));
  PetscCall(AckdH5AttrWriteInt(group, "block", ot->block));
  PetscCall(AckdH5AttrWriteString(group, "precision", ot->single ? "single" : "double"));
  PetscCall(AckdH5AttrWriteReal(group, "eps", ot->result.eps));
  PetscCall(AckdH5AttrWriteReal(group, "eps_option", ot->eps));
  PetscCall(AckdH5AttrWriteInt(group, "eps_relative", ot->eps_relative));
  PetscCall(AckdH5AttrWriteInt(group, "eps_scaling", ot->eps_scaling));
  PetscCall(AckdH5AttrWriteReal(group, "eps_scaling_factor", ot->eps_scaling_factor));
  PetscCall(AckdH5AttrWriteReal(group, "tol", ot->tol));
  PetscCall(AckdH5AttrWriteInt(group, "max_it", ot->max_it));
  PetscCall(AckdH5AttrWriteInt(group, "check_every", ot->check_every));
  PetscCall(AckdH5AttrWriteReal(group, "tau", ot->tau));
  if (ot->cost_kind == ACKD_OT_COST_KL) PetscCall(AckdH5AttrWriteReal(group, "kl_temperature", ot->kl_temperature));
  PetscCall(AckdH5AttrWriteInt(group, "class_blocks", ot->labels_s != NULL));
  PetscCall(AckdH5AttrWriteInt(group, "iterations", ot->result.iterations));
  PetscCall(AckdH5AttrWriteInt(group, "converged", ot->result.converged));
  PetscCall(AckdH5AttrWriteReal(group, "column_error", ot->result.column_error));
  PetscCall(AckdH5AttrWriteReal(group, "row_error", ot->result.row_error));
  PetscCall(AckdH5AttrWriteReal(group, "transport_cost", ot->result.transport_cost));
  PetscCall(AckdH5AttrWriteReal(group, "entropic_value", ot->result.entropic_value));
  PetscCall(AckdH5AttrWriteReal(group, "max_cost", ot->max_cost));
  PetscCall(AckdH5AttrWriteInt(group, "truncate", ot->truncate));
  if (ot->result.truncated) {
    PetscCall(AckdH5AttrWriteReal(group, "kept_entries", (double)ot->result.kept_entries));
    PetscCall(AckdH5AttrWriteReal(group, "discarded_mass", ot->result.discarded_mass));
    PetscCall(AckdH5AttrWriteReal(group, "discarded_cost", ot->result.discarded_cost));
    PetscCall(AckdH5AttrWriteInt(group, "certificates", ot->result.certificates));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTWriteMatchFile(AckdOT ot, const char *path, const AckdH5Settings *h5, const char *input)
{
  char      *options = NULL;
  hid_t      file, match, group;
  PetscInt   k = PetscMin(ot->topk, ot->nt);
  long long *index;

  PetscFunctionBeginUser;
  PetscCheck(ot->solved, ot->comm, PETSC_ERR_ORDER, "call AckdOTSolve before AckdOTWriteMatchFile");
  PetscCall(PetscLogEventBegin(ot->event_write, 0, 0, 0, 0));
  PetscCall(AckdH5FileCreatePartial(ot->comm, path, h5, &file));
  PetscCall(AckdH5AttrWriteString(file, "ackd_format", ACKD_FORMAT_MATCH));
  PetscCall(AckdH5AttrWriteInt(file, "ackd_format_version", ACKD_FORMAT_MATCH_VERSION));
  PetscCall(AckdH5AttrWriteString(file, "ackd_version", ACKD_VERSION_STRING));
  PetscCall(AckdH5AttrWriteString(file, "input", input ? input : ""));
  PetscCall(AckdOptionsToString(&options));
  PetscCall(AckdH5AttrWriteString(file, "options", options));
  PetscCall(PetscFree(options));
  PetscCall(AckdH5AttrWriteInt(file, "mpi_ranks", ot->size));

  AckdCallH5(match = H5Gcreate2(file, "match", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "creating /match");
  PetscCall(AckdH5AttrWriteInt(match, "k", k));
  PetscCall(AckdH5AttrWriteInt(match, "students", ot->ns));
  PetscCall(AckdH5AttrWriteInt(match, "teachers", ot->nt));
  PetscCall(PetscMalloc1((size_t)ot->topk_nrows * k + 1, &index));
  for (PetscInt t = 0; t < ot->topk_nrows * k; t++) index[t] = ot->topk_index[t];
  PetscCall(write_rows(ot, match, "teacher_index", H5T_NATIVE_LLONG, k, index));
  PetscCall(write_rows(ot, match, "weight", H5T_NATIVE_DOUBLE, k, ot->topk_weight));
  PetscCall(PetscFree(index));
  H5Gclose(match);

  AckdCallH5(group = H5Gcreate2(file, "ot", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "creating /ot");
  PetscCall(write_solver_attributes(ot, group));
  if (ot->f) {
    PetscCall(write_vector(ot, group, "f", H5T_NATIVE_DOUBLE, ot->ns, ot->f));
    PetscCall(write_vector(ot, group, "g", H5T_NATIVE_DOUBLE, ot->nt, ot->g));
  }
  PetscCall(write_vector(ot, group, "student_mass", H5T_NATIVE_DOUBLE, ot->ns, ot->a));
  PetscCall(write_vector(ot, group, "teacher_mass", H5T_NATIVE_DOUBLE, ot->nt, ot->b));
  PetscInt   nh = ot->solver == ACKD_OT_SOLVER_ARGMIN ? 0 : ot->result.history_length;
  long long *its;
  PetscCall(PetscMalloc1(nh + 1, &its));
  for (PetscInt t = 0; t < nh; t++) its[t] = ot->history_iteration[t];
  PetscCall(write_vector(ot, group, "history_iteration", H5T_NATIVE_LLONG, nh, its));
  PetscCall(write_vector(ot, group, "history_error", H5T_NATIVE_DOUBLE, nh, ot->history));
  PetscCall(write_vector(ot, group, "history_eps", H5T_NATIVE_DOUBLE, nh, ot->history_eps));
  PetscCall(PetscFree(its));
  H5Gclose(group);
  PetscCall(AckdH5FileCommit(ot->comm, &file, path));
  PetscCall(PetscLogEventEnd(ot->event_write, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdMatchSummarize(MPI_Comm comm, hid_t file, const char *path, FILE *out)
{
  PetscMPIInt rank;
  hid_t       match, group;
  PetscInt    k, ns, nt, iterations, converged;
  double      eps, cost, entropic, colerr, rowerr;
  char        solver[32], costkind[32], grid[32];

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  AckdCallH5(match = H5Gopen2(file, "match", H5P_DEFAULT), "'%s' has no /match group: not a complete match file", path);
  PetscCall(AckdH5AttrReadInt(match, "k", &k, NULL));
  PetscCall(AckdH5AttrReadInt(match, "students", &ns, NULL));
  PetscCall(AckdH5AttrReadInt(match, "teachers", &nt, NULL));
  H5Gclose(match);
  AckdCallH5(group = H5Gopen2(file, "ot", H5P_DEFAULT), "'%s' has no /ot group: not a complete match file", path);
  PetscCall(AckdH5AttrReadString(group, "solver", solver, sizeof solver, NULL));
  PetscCall(AckdH5AttrReadString(group, "cost", costkind, sizeof costkind, NULL));
  PetscCall(AckdH5AttrReadString(group, "grid", grid, sizeof grid, NULL));
  PetscCall(AckdH5AttrReadInt(group, "iterations", &iterations, NULL));
  PetscCall(AckdH5AttrReadInt(group, "converged", &converged, NULL));
  PetscCall(AckdH5AttrReadReal(group, "eps", &eps, NULL));
  PetscCall(AckdH5AttrReadReal(group, "transport_cost", &cost, NULL));
  PetscCall(AckdH5AttrReadReal(group, "entropic_value", &entropic, NULL));
  PetscCall(AckdH5AttrReadReal(group, "column_error", &colerr, NULL));
  PetscCall(AckdH5AttrReadReal(group, "row_error", &rowerr, NULL));
  H5Gclose(group);
  if (rank == 0) {
    fprintf(out, "%s: ackd match file\n", path);
    fprintf(out, "  /match  %d students x top-%d of %d teachers\n", (int)ns, (int)k, (int)nt);
    fprintf(out, "  /ot     solver %s  cost %s  grid %s  eps %.6g\n", solver, costkind, grid, eps);
    fprintf(out, "          %s after %d iterations  column error %.3g  row error %.3g\n",
            converged ? "converged" : "NOT converged", (int)iterations, colerr, rowerr);
    fprintf(out, "          transport cost %.10g  entropic value %.10g\n", cost, entropic);
  }
  PetscFunctionReturn(0);
}
