/* The online mode (-ot_online): C is never stored. Every pass recomputes it
 * tile by tile, a local GEMM of the student features this rank holds against
 * the teacher features of its columns, so memory goes with the features,
 * not with N_s x N_t.
 *
 * Each rank keeps the teachers of its grid column, N_t d / P_c. The students
 * of its grid row it keeps in one of two layouts (-ot_online_layout):
 *   replicated  all of them, N_s d / P_r: a pass is one stage, and on a grid
 *               of one process row the fused one-pass iteration applies;
 *   rotating    a 1 / P_c chunk of them, passed round the grid row during
 *               each pass (AckdOTStageBegin/End), N_s d / P plus the chunk
 *               arriving: on the default 1 x P grid memory is
 *               O((N_s + N_t) d / P). The price is a second pass per
 *               iteration, since no rank sees a whole column at once.
 * auto replicates while the replicated features take at most a quarter of
 * this rank's share of the memory it may use (the node's, or its batch job's
 * cgroup limit). */
#include "ot_impl.h"
#include "scalapack.h"
#include <math.h>

/* Point-to-point tag of the rotation, on the grid's row communicator. */
#define ROTATION_TAG 4101

/* Local rows [lo, hi) of chunk c of this rank's grid row. */
static void chunk_rows(AckdOT ot, PetscInt c, PetscInt *lo, PetscInt *hi)
{
  AckdOTContiguousRange(ot->mloc, ot->grid.npcol, (PetscMPIInt)c, lo, hi);
}

/* Each rank in turn broadcasts its slice, so no rank ever holds more than what
 * it keeps plus one slice (n d / P), where an all-gather would put all n d on
 * every rank. Block-cyclic layouts list their rows in increasing order. */
PetscErrorCode AckdOTPickRows(AckdOT ot, PetscInt n, PetscInt lo, PetscInt hi, const double *rows, PetscInt nlocal,
                              const PetscInt *local, double *out, size_t step_row, size_t step_dim)
{
  const PetscInt d      = ot->dim;
  PetscInt       widest = 0, t = 0;
  double        *slice;

  PetscFunctionBeginUser;
  for (PetscMPIInt r = 0; r < ot->size; r++) {
    PetscInt rlo, rhi;
    AckdOTContiguousRange(n, ot->size, r, &rlo, &rhi);
    widest = PetscMax(widest, rhi - rlo);
  }
  PetscCall(PetscMalloc1(widest * d + 1, &slice));
  for (PetscMPIInt r = 0; r < ot->size; r++) {
    PetscInt rlo, rhi;
    AckdOTContiguousRange(n, ot->size, r, &rlo, &rhi);
    if (rhi == rlo) continue;
    if (r == ot->rank) {
      PetscCheck(rlo == lo && rhi == hi, PETSC_COMM_SELF, PETSC_ERR_PLIB,
                 "owned rows [%" PetscInt_FMT ", %" PetscInt_FMT ") are not the contiguous slice of rank %d", lo, hi,
                 r);
      PetscCall(PetscArraycpy(slice, rows, (rhi - rlo) * d));
    }
    PetscCallMPI(MPI_Bcast(slice, (PetscMPIInt)((rhi - rlo) * d), MPI_DOUBLE, r, ot->comm));
    for (; t < nlocal && local[t] < rhi; t++)
      for (PetscInt k = 0; k < d; k++) out[t * step_row + k * step_dim] = slice[(local[t] - rlo) * d + k];
  }
  PetscCall(PetscFree(slice));
  PetscFunctionReturn(0);
}

/* Resolves -ot_online_layout auto, the same way on every rank: the memory is
 * the node's, or its batch job's cgroup limit, shared by the ranks on the
 * node. (A limit per rank, rare, is not seen: ask for rotating then.) */
static PetscErrorCode choose_layout(AckdOT ot)
{
  int rotate = ot->online_layout == ACKD_OT_ONLINE_ROTATING;

  PetscFunctionBeginUser;
  if (ot->online_layout == ACKD_OT_ONLINE_AUTO) {
    double share;
    PetscCall(AckdMemoryShare(ot->comm, 0.25, &share)); /* a batch job's cgroup limit where it has one */
    const double replicated = (double)ot->mloc * (double)ot->dim * sizeof(double);
    int          mine       = replicated > share;
    PetscCallMPI(MPI_Allreduce(&mine, &rotate, 1, MPI_INT, MPI_LOR, ot->comm));
  }
  ot->rotating = (PetscBool)(rotate && ot->grid.npcol > 1); /* one grid column: one chunk, nothing to pass */
  PetscFunctionReturn(0);
}

/* Recomputes the tile of columns [j0, j0 + *ncols) of the held rows into
 * ot->online_tile; *top: its largest finite cost. */
static PetscErrorCode recompute_tile(AckdOT ot, PetscInt j0, PetscInt *ncols, double *top)
{
  const int    m = (int)(ot->held_i1 - ot->held_i0), nc = (int)PetscMin(ot->tile_cols, ot->nloc - j0), d = (int)ot->dim;
  const double scale = AckdOTGemmScale(ot), beta = 0.0;

  PetscFunctionBeginUser;
  if (ot->rotating) { /* lets a transfer between nodes advance while the tiles are computed */
    int done;
    PetscCallMPI(MPI_Testall(2, ot->rotation, &done, MPI_STATUSES_IGNORE));
  }
  if (m > 0 && nc > 0)
    dgemm_("N", "N", &m, &nc, &d, &scale, ot->online_x, &m, ot->online_y + (size_t)j0 * d, &d, &beta, ot->online_tile,
           &m);
  *top   = AckdOTFinishCosts(ot, ot->held_i0, m, j0, nc, ot->online_tile, m, ot->online_row, ot->online_col);
  *ncols = nc;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTOnlineSetUp(AckdOT ot, PetscInt lo_s, PetscInt hi_s, double **xs, PetscInt lo_t, PetscInt hi_t,
                                 double **yt, const double *row_term, const double *col_term)
{
  const PetscInt d = ot->dim;

  PetscFunctionBeginUser;
  PetscCall(AckdOTSetLayout(ot));
  PetscCall(choose_layout(ot));
  PetscCall(AckdOTOnlineDestroy(ot));
  ot->held_max = ot->mloc;
  if (ot->rotating) {
    PetscInt lo, hi;
    chunk_rows(ot, 0, &lo, &hi); /* chunk 0 is a widest */
    ot->held_max = hi - lo;
    ot->held     = ot->grid.mycol;
    chunk_rows(ot, ot->held, &ot->held_i0, &ot->held_i1);
  }
  const PetscInt widest = ot->held_max;
  /* OpenBLAS packs the whole rows x d student operand at every call, about
   * as costly as 25 of the tile's columns: a wide tile amortises it, as long
   * as the tile stays in cache for its sweep (4 MB). */
  ot->tile_cols   = PetscMax(32, PetscMin(AckdOT_TILE_MAX, (4194304 / (8 * PetscMax(widest, 1))) / 16 * 16));
  ot->rotation[0] = ot->rotation[1] = MPI_REQUEST_NULL;

  /* held students column-major (rows x d), teachers d x nloc: the GEMM's
   * operands as they are; one side after the other, each input copy freed
   * before the next side's features are allocated */
  const PetscInt held = ot->held_i1 - ot->held_i0;
  PetscCall(PetscMalloc4(widest * d + 1, &ot->online_x, ot->rotating ? widest * d + 1 : 1, &ot->online_x_next,
                         ot->mloc + 1, &ot->online_row, widest * ot->tile_cols + 1, &ot->online_tile));
  PetscCall(
      AckdOTPickRows(ot, ot->ns, lo_s, hi_s, *xs, held, ot->row_global + ot->held_i0, ot->online_x, 1, (size_t)held));
  PetscCall(PetscFree(*xs));
  PetscCall(PetscMalloc2(d * ot->nloc + 1, &ot->online_y, ot->nloc + 1, &ot->online_col));
  PetscCall(AckdOTPickRows(ot, ot->nt, lo_t, hi_t, *yt, ot->nloc, ot->col_global, ot->online_y, (size_t)d, 1));
  PetscCall(PetscFree(*yt));
  for (PetscInt i = 0; i < ot->mloc; i++) ot->online_row[i] = row_term[ot->row_global[i]];
  for (PetscInt j = 0; j < ot->nloc; j++) ot->online_col[j] = col_term[ot->col_global[j]];

  double local_max = -INFINITY, most;
  for (PetscInt s = 0; s < AckdOTStageCount(ot); s++) {
    PetscCall(AckdOTStageBegin(ot));
    for (PetscInt j0 = 0, nc; j0 < ot->nloc; j0 += nc) {
      double top;
      PetscCall(recompute_tile(ot, j0, &nc, &top));
      local_max = fmax(local_max, top);
    }
    PetscCall(AckdOTStageEnd(ot));
  }
  PetscCallMPI(MPI_Allreduce(&local_max, &ot->max_cost, 1, MPI_DOUBLE, MPI_MAX, ot->comm));
  PetscCheck(ot->max_cost > -INFINITY, ot->comm, PETSC_ERR_USER_INPUT,
             "every cost is +inf: no student shares a class with any teacher; check the labels");
  const double bytes = sizeof(double) * (double)d * ((ot->rotating ? 2.0 : 1.0) * widest + ot->nloc);
  PetscCallMPI(MPI_Allreduce(&bytes, &most, 1, MPI_DOUBLE, MPI_MAX, ot->comm));
  PetscCall(AckdLogInfo(&ot->log, "ot: online, %s layout: %.3f MB of features per rank at most\n",
                        ot->rotating ? "rotating" : "replicated", most / 1048576.0));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTStageBegin(AckdOT ot)
{
  const PetscMPIInt pc = ot->grid.npcol, me = ot->grid.mycol;
  const PetscInt    d = ot->dim;
  PetscInt          lo, hi;

  PetscFunctionBeginUser;
  if (!ot->rotating) PetscFunctionReturn(0);
  /* the held chunk goes to the previous grid column while the next one's
   * arrives: both move during this stage's tiles */
  chunk_rows(ot, (ot->held + 1) % pc, &lo, &hi);
  PetscCallMPI(MPI_Irecv(ot->online_x_next, (PetscMPIInt)((hi - lo) * d), MPI_DOUBLE, (me + 1) % pc, ROTATION_TAG,
                         ot->grid.row_comm, &ot->rotation[0]));
  PetscCallMPI(MPI_Isend(ot->online_x, (PetscMPIInt)((ot->held_i1 - ot->held_i0) * d), MPI_DOUBLE, (me + pc - 1) % pc,
                         ROTATION_TAG, ot->grid.row_comm, &ot->rotation[1]));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTStageEnd(AckdOT ot)
{
  PetscFunctionBeginUser;
  if (!ot->rotating) PetscFunctionReturn(0);
  PetscCallMPI(MPI_Waitall(2, ot->rotation, MPI_STATUSES_IGNORE));
  double *arrived   = ot->online_x_next;
  ot->online_x_next = ot->online_x;
  ot->online_x      = arrived;
  ot->held          = (ot->held + 1) % ot->grid.npcol;
  chunk_rows(ot, ot->held, &ot->held_i0, &ot->held_i1);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTGetTile(AckdOT ot, PetscInt j0, PetscInt *ncols, const double **tile)
{
  double top;

  PetscFunctionBeginUser;
  if (!ot->online) {
    *ncols = ot->nloc - j0;
    *tile  = NULL;
    PetscFunctionReturn(0);
  }
  PetscCall(recompute_tile(ot, j0, ncols, &top));
  *tile = ot->online_tile;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTOnlineDestroy(AckdOT ot)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree4(ot->online_x, ot->online_x_next, ot->online_row, ot->online_tile));
  PetscCall(PetscFree2(ot->online_y, ot->online_col));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------- the online store (cost_store.h) */

/* Every pass runs tile by tile over the held rows, stage by stage when the students rotate. */
static PetscErrorCode online_column_lse(AckdOT ot, const double *f, const double *g, double inv_eps, double *col_lse)
{
  PetscFunctionBeginUser;
  for (PetscInt s = 0; s < AckdOTStageCount(ot); s++) {
    const PetscInt i0 = ot->held_i0, m = ot->held_i1 - ot->held_i0;
    PetscCall(AckdOTStageBegin(ot));
    for (PetscInt j0 = 0, nc; j0 < ot->nloc; j0 += nc) {
      const double *tile = NULL;
      double        part[AckdOT_TILE_MAX];
      PetscCall(AckdOTGetTile(ot, j0, &nc, &tile));
      AckdOTColLogSumExp(m, nc, m, tile, f + i0, g + j0, inv_eps, part);
      /* each chunk of rows adds its share of the column's sum */
      for (PetscInt j = 0; j < nc; j++) col_lse[j0 + j] = s == 0 ? part[j] : AckdOTLogAddExp(col_lse[j0 + j], part[j]);
    }
    PetscCall(AckdOTStageEnd(ot));
  }
  PetscFunctionReturn(0);
}

/* Each tile's log-sum-exp merged in: exact however large a row's sum grows, for one log and exp
 * per row and tile. */
static PetscErrorCode online_row_lse(AckdOT ot, const double *f, const double *g, double inv_eps, double *work,
                                     double *spare, double *row_lse)
{
  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < ot->mloc; i++) row_lse[i] = -INFINITY;
  for (PetscInt s = 0; s < AckdOTStageCount(ot); s++) {
    const PetscInt i0 = ot->held_i0, m = ot->held_i1 - ot->held_i0;
    PetscCall(AckdOTStageBegin(ot));
    for (PetscInt j0 = 0, nc; j0 < ot->nloc; j0 += nc) {
      const double *tile = NULL;
      PetscCall(AckdOTGetTile(ot, j0, &nc, &tile));
      AckdOTRowLogSumExp(m, nc, m, tile, f + i0, g + j0, inv_eps, work, spare);
      for (PetscInt i = 0; i < m; i++) row_lse[i0 + i] = AckdOTLogAddExp(row_lse[i0 + i], spare[i]);
    }
    PetscCall(AckdOTStageEnd(ot));
  }
  PetscFunctionReturn(0);
}

/* Whole columns (replicated features on one process row): one stage. */
static PetscErrorCode online_fused_sweep(AckdOT ot, const AckdOTColumnRule *rule, double *col_lse, double *buf,
                                         double *work)
{
  PetscFunctionBeginUser;
  for (PetscInt j0 = 0, nc; j0 < ot->nloc; j0 += nc) {
    const double    *tile = NULL;
    AckdOTColumnRule part = {rule->eps, rule->damping, rule->omega, rule->log_b + j0};
    PetscCall(AckdOTGetTile(ot, j0, &nc, &tile));
    AckdOTFusedSweep(ot->mloc, nc, ot->mloc, tile, ot->f_loc, ot->g_loc + j0, &part, col_lse + j0, buf, work);
  }
  PetscFunctionReturn(0);
}

/* Rows whose one-pass sum left the safe range (rare: a change of eps) get two more passes of
 * recomputed tiles, all such rows at once (AckdOTRowSumsToLseByPasses): this is one of them. */
static PetscErrorCode online_exact_row_pass(AckdOT ot, double inv_eps, int pass, const double *row_lse, double *top,
                                            double *sum)
{
  PetscFunctionBeginUser;
  for (PetscInt j0 = 0, nc; j0 < ot->nloc; j0 += nc) {
    const double *tile = NULL;
    PetscCall(AckdOTGetTile(ot, j0, &nc, &tile));
    for (PetscInt j = 0; j < nc; j++)
      for (PetscInt i = 0; i < ot->mloc; i++)
        if (isnan(row_lse[i]))
          AckdOTExactRowAdd(pass, (ot->f_loc[i] + ot->g_loc[j0 + j] - tile[(size_t)j * ot->mloc + i]) * inv_eps,
                            &top[i], &sum[i]);
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode online_row_sums_to_lse(AckdOT ot, double inv_eps, double *work, double *spare, double *row_lse)
{
  PetscFunctionBeginUser;
  PetscCall(AckdOTRowSumsToLseByPasses(ot, inv_eps, work, NULL, online_exact_row_pass, spare, row_lse));
  PetscFunctionReturn(0);
}

/* The scaling kernel would need K stored beside C: not online (sinkhorn.c uses the log kernels). */
const AckdOTCostStore ackd_ot_store_online = {.name            = "online",
                                              .column_lse      = online_column_lse,
                                              .row_lse         = online_row_lse,
                                              .fused_sweep     = online_fused_sweep,
                                              .row_sums_to_lse = online_row_sums_to_lse};
