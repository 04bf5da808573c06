/* Class blocks on sub-grids (docs/DESIGN.md §4).
 *
 * With labels the cost is +inf across classes, so the plan is block-diagonal
 * and every class block is an independent problem: balanced OT of the class's
 * students onto the class's teachers with their masses (ackd match and
 * AckdOTBalanceClassMasses make the masses agree per class). Instead of one
 * dense N_s x N_t matrix, mostly +inf, each block is assembled and solved by
 * an AckdOT of its own on a sub-grid of processes:
 *
 *   - Assignment (the same on every rank, a function of the class sizes
 *     only). Groups G = min(P, classes with both sides). Classes go, largest
 *     work n_s n_t first, to the least loaded group (LPT: within 4/3 of the
 *     best makespan); the P ranks are then shared out over the groups in
 *     proportion to their loads, at least one each (largest remainder). Many
 *     small classes: one rank per group, several classes each; a few big
 *     classes: several ranks per class.
 *   - Features: each rank's contiguous input rows go, in one all-to-all per
 *     side, to the rank of its class's group that owns them in the block's
 *     contiguous layout.
 *   - eps: relative to the largest finite cost over all blocks (a max over
 *     the parent communicator after assembly), so every block solves with
 *     the eps, and the eps-scaling schedule, of the dense problem: the plans
 *     agree with the dense path to the solver tolerance (tests/ot).
 *   - Solve: the groups run concurrently, each its classes in turn.
 *   - Results: the top-k rows (students and teachers mapped back to global)
 *     go, by one all-to-all, where the dense path keeps them, so the match
 *     file and AckdOTGetTopK look the same; potentials are summed over the
 *     parent communicator (O(N) numbers). Costs and entropic values add up
 *     over blocks, iteration counts are the largest block's, errors the L2
 *     norm over all blocks.
 *     Potentials are each block's: a block's (f, g) is defined up to a
 *     constant of its own (f + c, g - c), so they may differ from the dense
 *     path's by a constant per class, the plan does not.
 *
 * Memory and time go from N_s N_t to sum_c n_s(c) n_t(c), a factor of about
 * the number of classes. The exact solvers (GLPK, auction) then run per
 * block on the group's first rank, so the largest LP is the largest class,
 * and the groups solve their LPs at the same time. */
#include "ot_impl.h"
#include <math.h>

static PetscErrorCode blocks_destroy(AckdOT ot);

struct _AckdOTBlocks {
  PetscInt   nclass, nactive;    /* classes, those with both sides */
  PetscInt  *group_of;           /* per class: its group, -1 when a side is empty */
  PetscInt   ngroups, my_group;  /* this rank's group */
  PetscInt   nmine, *mine;       /* the classes of this rank's group, in solve order */
  AckdOT    *sub;                /* their objects, on sub_comm */
  PetscInt **s_index, **t_index; /* per class of mine: global sample of each block row / column */
  MPI_Comm   sub_comm;
};

/* LPT over groups, then ranks in proportion to the groups' loads. */
static PetscErrorCode assign(AckdOT ot, const PetscInt *ns_c, const PetscInt *nt_c, PetscInt *group_of,
                             PetscInt *ngroups, PetscInt *first_rank, PetscInt *nranks)
{
  struct _AckdOTBlocks *bl      = ot->blocks;
  PetscInt              nactive = 0, *order;
  double               *load;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(bl->nclass + 1, &order));
  for (PetscInt c = 0; c < bl->nclass; c++) {
    group_of[c] = -1;
    if (ns_c[c] > 0 && nt_c[c] > 0) order[nactive++] = c;
  }
  /* largest work first, ties by class: insertion sort (classes are few) */
  for (PetscInt t = 1; t < nactive; t++)
    for (PetscInt u = t; u > 0; u--) {
      double wa = (double)ns_c[order[u]] * nt_c[order[u]], wb = (double)ns_c[order[u - 1]] * nt_c[order[u - 1]];
      if (!(wa > wb)) break;
      PetscInt tmp = order[u];
      order[u]     = order[u - 1];
      order[u - 1] = tmp;
    }
  const PetscInt G = PetscMin((PetscInt)ot->size, nactive);
  PetscCall(PetscCalloc1(G + 1, &load));
  for (PetscInt t = 0; t < nactive; t++) {
    PetscInt best = 0;
    for (PetscInt g = 1; g < G; g++)
      if (load[g] < load[best]) best = g;
    group_of[order[t]] = best;
    load[best] += (double)ns_c[order[t]] * nt_c[order[t]];
  }
  /* one rank each, then the rest one at a time to the group with the most work per rank */
  for (PetscInt g = 0; g < G; g++) nranks[g] = 1;
  for (PetscInt r = G; r < ot->size; r++) {
    PetscInt best = 0;
    for (PetscInt g = 1; g < G; g++)
      if (load[g] / nranks[g] > load[best] / nranks[best]) best = g;
    nranks[best]++;
  }
  first_rank[0] = 0;
  for (PetscInt g = 1; g <= G; g++) first_rank[g] = first_rank[g - 1] + nranks[g - 1];
  *ngroups = G;
  PetscCall(PetscFree(load));
  PetscCall(PetscFree(order));
  PetscFunctionReturn(0);
}

/* Sends this rank's contiguous input rows of one side to the owners of the
 * block rows; returns, per class of mine, the rows this rank owns in the
 * block's contiguous layout (row-major), in block order. */
static PetscErrorCode route_side(AckdOT ot, AckdOTSide side, const PetscInt *labels, PetscInt n, const double *rows,
                                 const PetscInt *count_c, const PetscInt *first_rank, const PetscInt *nranks,
                                 double ***out)
{
  struct _AckdOTBlocks *bl = ot->blocks;
  const PetscInt        d  = ot->dim;
  PetscInt              lo, hi, *pos, *seen;
  int                  *scount, *rcount, *sdisp, *rdisp;
  double               *sbuf, *rbuf;

  PetscFunctionBeginUser;
  AckdOTContiguousRange(n, ot->size, ot->rank, &lo, &hi);
  /* position of every sample within its class, and its destination rank */
  PetscCall(PetscMalloc2(n + 1, &pos, bl->nclass + 1, &seen));
  PetscCall(PetscArrayzero(seen, bl->nclass + 1));
  for (PetscInt i = 0; i < n; i++) pos[i] = labels[i] >= 0 ? seen[labels[i]]++ : -1;
  PetscCall(PetscCalloc4(ot->size, &scount, ot->size, &rcount, ot->size + 1, &sdisp, ot->size + 1, &rdisp));
#define DEST(i)                                                                                                        \
  (first_rank[bl->group_of[labels[i]]] +                                                                               \
   pos[i] / ((count_c[labels[i]] + nranks[bl->group_of[labels[i]]] - 1) / nranks[bl->group_of[labels[i]]]))
  for (PetscInt i = lo; i < hi; i++)
    if (labels[i] >= 0 && bl->group_of[labels[i]] >= 0) scount[DEST(i)] += (int)d;
  /* what this rank receives: the rows it owns of each class of its group */
  PetscInt *own_lo, *own_hi;
  PetscCall(PetscMalloc2(bl->nmine + 1, &own_lo, bl->nmine + 1, &own_hi));
  PetscMPIInt sub_rank;
  PetscCallMPI(MPI_Comm_rank(bl->sub_comm, &sub_rank));
  for (PetscInt t = 0; t < bl->nmine; t++)
    AckdOTContiguousRange(count_c[bl->mine[t]], nranks[bl->my_group], sub_rank, &own_lo[t], &own_hi[t]);
  for (PetscInt i = 0; i < n; i++) {
    if (labels[i] < 0 || bl->group_of[labels[i]] != bl->my_group) continue;
    for (PetscInt t = 0; t < bl->nmine; t++)
      if (bl->mine[t] == labels[i] && pos[i] >= own_lo[t] && pos[i] < own_hi[t]) {
        rcount[i / ((n + ot->size - 1) / ot->size)] += (int)d; /* the contiguous layout's owner */
      }
  }
  for (PetscMPIInt r = 0; r < ot->size; r++) {
    sdisp[r + 1] = sdisp[r] + scount[r];
    rdisp[r + 1] = rdisp[r] + rcount[r];
  }
  PetscCall(PetscMalloc2(sdisp[ot->size] + 1, &sbuf, rdisp[ot->size] + 1, &rbuf));
  {
    int *fill;
    PetscCall(PetscCalloc1(ot->size, &fill));
    for (PetscInt i = lo; i < hi; i++)
      if (labels[i] >= 0 && bl->group_of[labels[i]] >= 0) {
        PetscInt dest = DEST(i);
        PetscCall(PetscArraycpy(sbuf + sdisp[dest] + fill[dest], rows + (i - lo) * d, d));
        fill[dest] += (int)d;
      }
    PetscCall(PetscFree(fill));
  }
#undef DEST
  PetscCallMPI(MPI_Alltoallv(sbuf, scount, sdisp, MPI_DOUBLE, rbuf, rcount, rdisp, MPI_DOUBLE, ot->comm));
  /* rows arrive in increasing global index (sources in rank order, each in
   * order): walk the samples in that order and drop each into its block */
  double **blocks;
  PetscCall(PetscMalloc1(bl->nmine + 1, &blocks));
  for (PetscInt t = 0; t < bl->nmine; t++) PetscCall(PetscMalloc1((own_hi[t] - own_lo[t]) * d + 1, &blocks[t]));
  size_t at = 0;
  for (PetscInt i = 0; i < n; i++) {
    if (labels[i] < 0 || bl->group_of[labels[i]] != bl->my_group) continue;
    for (PetscInt t = 0; t < bl->nmine; t++)
      if (bl->mine[t] == labels[i] && pos[i] >= own_lo[t] && pos[i] < own_hi[t]) {
        PetscCall(PetscArraycpy(blocks[t] + (pos[i] - own_lo[t]) * d, rbuf + at, d));
        at += (size_t)d;
      }
  }
  (void)side;
  *out = blocks;
  PetscCall(PetscFree2(own_lo, own_hi));
  PetscCall(PetscFree2(sbuf, rbuf));
  PetscCall(PetscFree4(scount, rcount, sdisp, rdisp));
  PetscCall(PetscFree2(pos, seen));
  PetscFunctionReturn(0);
}

/* The block object inherits every setting of the parent but the grid and the labels. */
static PetscErrorCode create_block(AckdOT ot, PetscInt ns, PetscInt nt, AckdOT *out)
{
  AckdOT b;

  PetscFunctionBeginUser;
  PetscCall(AckdOTCreate(ot->blocks->sub_comm, &b));
  PetscCall(AckdOTSetOptionsPrefix(b, ot->prefix));
  b->cost_kind          = ot->cost_kind;
  b->solver             = ot->solver;
  b->eps                = ot->eps;
  b->tol                = ot->tol / sqrt((double)ot->blocks->nactive); /* the L2 error over all blocks meets tol */
  b->eps_scaling_factor = ot->eps_scaling_factor;
  b->tau                = ot->tau;
  b->omega              = ot->omega;
  b->kl_temperature     = ot->kl_temperature;
  b->eps_relative       = ot->eps_relative;
  b->eps_scaling        = ot->eps_scaling;
  b->sinkhorn_kernel    = ot->sinkhorn_kernel;
  b->max_it             = ot->max_it;
  b->check_every        = ot->check_every;
  b->topk               = ot->topk;
  b->block              = ot->block;
  b->single             = ot->single;
  b->kernel_single      = ot->kernel_single;
  b->online             = ot->online;
  b->online_layout      = ot->online_layout;
  b->truncate           = ot->truncate;
  b->truncate_threshold = ot->truncate_threshold;
  b->truncate_rounds    = ot->truncate_rounds;
  b->log.quiet          = ot->log.quiet;
  b->show_progress      = PETSC_FALSE;
  PetscCall(AckdOTSetSizes(b, ns, nt, ot->dim));
  PetscCall(AckdOTSetUp(b));
  *out = b;
  PetscFunctionReturn(0);
}

static PetscErrorCode blocks_set_features(AckdOT ot, const double *student_rows, const double *teacher_rows)
{
  struct _AckdOTBlocks *bl;
  PetscInt             *ns_c, *nt_c, *first_rank, *nranks, lo, hi, bad;

  PetscFunctionBeginUser;
  PetscCall(PetscLogEventBegin(ot->event_cost, 0, 0, 0, 0));
  /* input errors on the parent communicator, before the groups part */
  PetscCall(AckdOTGetOwnedRows(ot, ACKD_OT_STUDENT, &lo, &hi));
  PetscCall(AckdOTFirstBadRow(ot, ot->ns, lo, hi, student_rows, &bad));
  PetscCheck(bad == ot->ns, ot->comm, PETSC_ERR_USER_INPUT,
             "student features: sample %" PetscInt_FMT " holds NaN or Inf; every feature must be finite, fix the input",
             bad);
  PetscCall(AckdOTGetOwnedRows(ot, ACKD_OT_TEACHER, &lo, &hi));
  PetscCall(AckdOTFirstBadRow(ot, ot->nt, lo, hi, teacher_rows, &bad));
  PetscCheck(bad == ot->nt, ot->comm, PETSC_ERR_USER_INPUT,
             "teacher features: sample %" PetscInt_FMT " holds NaN or Inf; every feature must be finite, fix the input",
             bad);

  PetscCall(blocks_destroy(ot));
  PetscCall(PetscNew(&ot->blocks));
  bl = ot->blocks;
  for (PetscInt i = 0; i < ot->ns; i++) bl->nclass = PetscMax(bl->nclass, ot->labels_s[i] + 1);
  for (PetscInt j = 0; j < ot->nt; j++) bl->nclass = PetscMax(bl->nclass, ot->labels_t[j] + 1);
  PetscCall(PetscCalloc2(bl->nclass + 1, &ns_c, bl->nclass + 1, &nt_c));
  PetscCall(PetscMalloc1(bl->nclass + 1, &bl->group_of));
  for (PetscInt i = 0; i < ot->ns; i++)
    if (ot->labels_s[i] >= 0) ns_c[ot->labels_s[i]]++;
  for (PetscInt j = 0; j < ot->nt; j++)
    if (ot->labels_t[j] >= 0) nt_c[ot->labels_t[j]]++;
  PetscCall(PetscMalloc2(ot->size + 1, &first_rank, ot->size + 1, &nranks));
  PetscCall(assign(ot, ns_c, nt_c, bl->group_of, &bl->ngroups, first_rank, nranks));
  for (PetscInt c = 0; c < bl->nclass; c++) bl->nactive += bl->group_of[c] >= 0;
  PetscCheck(bl->ngroups > 0, ot->comm, PETSC_ERR_USER_INPUT,
             "every cost is +inf: no student shares a class with any teacher; check the labels");
  bl->my_group = 0;
  for (PetscInt g = 0; g < bl->ngroups; g++)
    if (ot->rank >= first_rank[g]) bl->my_group = g;
  PetscCallMPI(MPI_Comm_split(ot->comm, (int)bl->my_group, ot->rank, &bl->sub_comm));
  PetscCall(PetscMalloc1(bl->nclass + 1, &bl->mine));
  for (PetscInt c = 0; c < bl->nclass; c++)
    if (bl->group_of[c] == bl->my_group) bl->mine[bl->nmine++] = c;

  /* samples without a block: zero mass, or the balanced problem is infeasible */
  if (ot->solver != ACKD_OT_SOLVER_UNBALANCED && ot->solver != ACKD_OT_SOLVER_ARGMIN) {
    for (PetscInt i = 0; i < ot->ns; i++) {
      PetscInt c = ot->labels_s[i];
      PetscCheck(ot->a[i] == 0 || (c >= 0 && bl->group_of[c] >= 0), ot->comm, PETSC_ERR_USER_INPUT,
                 "student sample %" PetscInt_FMT " has mass but +inf cost to every teacher (no teacher of its "
                 "class); give it zero mass or use -%ssolver unbalanced",
                 i, ot->prefix);
    }
    for (PetscInt j = 0; j < ot->nt; j++) {
      PetscInt c = ot->labels_t[j];
      PetscCheck(ot->b[j] == 0 || (c >= 0 && bl->group_of[c] >= 0), ot->comm, PETSC_ERR_USER_INPUT,
                 "teacher sample %" PetscInt_FMT " has mass but +inf cost to every student (a class no student "
                 "has); give it zero mass or use -%ssolver unbalanced",
                 j, ot->prefix);
    }
  }

  /* the block rows of every class of mine, and the global index of each block row / column */
  double **xs, **yt;
  PetscCall(route_side(ot, ACKD_OT_STUDENT, ot->labels_s, ot->ns, student_rows, ns_c, first_rank, nranks, &xs));
  PetscCall(route_side(ot, ACKD_OT_TEACHER, ot->labels_t, ot->nt, teacher_rows, nt_c, first_rank, nranks, &yt));
  PetscCall(PetscCalloc3(bl->nmine + 1, &bl->sub, bl->nmine + 1, &bl->s_index, bl->nmine + 1, &bl->t_index));
  double local_max = -INFINITY;
  for (PetscInt t = 0; t < bl->nmine; t++) {
    const PetscInt c = bl->mine[t];
    double        *a, *b;
    PetscCall(PetscMalloc2(ns_c[c], &bl->s_index[t], nt_c[c], &bl->t_index[t]));
    PetscCall(PetscMalloc2(ns_c[c], &a, nt_c[c], &b));
    for (PetscInt i = 0, q = 0; i < ot->ns; i++)
      if (ot->labels_s[i] == c) bl->s_index[t][q] = i, a[q++] = ot->a[i];
    for (PetscInt j = 0, q = 0; j < ot->nt; j++)
      if (ot->labels_t[j] == c) bl->t_index[t][q] = j, b[q++] = ot->b[j];
    PetscCall(create_block(ot, ns_c[c], nt_c[c], &bl->sub[t]));
    /* marginals copied as they are (not normalised): costs then add up over blocks */
    PetscCall(PetscArraycpy(bl->sub[t]->a, a, ns_c[c]));
    PetscCall(PetscArraycpy(bl->sub[t]->b, b, nt_c[c]));
    PetscCall(PetscFree2(a, b));
    PetscCall(AckdOTSetFeatures(bl->sub[t], xs[t], yt[t]));
    local_max = PetscMax(local_max, bl->sub[t]->max_cost);
    PetscCall(PetscFree(xs[t]));
    PetscCall(PetscFree(yt[t]));
  }
  PetscCall(PetscFree(xs));
  PetscCall(PetscFree(yt));
  PetscCallMPI(MPI_Allreduce(&local_max, &ot->max_cost, 1, MPI_DOUBLE, MPI_MAX, ot->comm));
  for (PetscInt t = 0; t < bl->nmine; t++) bl->sub[t]->max_cost = ot->max_cost; /* the dense problem's eps */
  PetscCall(PetscFree2(ns_c, nt_c));
  PetscCall(PetscFree2(first_rank, nranks));
  PetscCall(AckdOTSetLayout(ot)); /* where the parent keeps its top-k rows */
  ot->has_cost = PETSC_TRUE;
  PetscCall(PetscLogEventEnd(ot->event_cost, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

/* The blocks' top-k rows, held by their sub-grids' keepers, to where the
 * dense path keeps them (grid column 0 of this object's grid, block-cyclic
 * rows), by one all-to-all of the rows each rank holds: O(N_s k / P) per
 * rank, where summing a full N_s x k table over the ranks costs each O(N_s k).
 * A record is 1 + 2k doubles: the global row, its k teachers (-1: none;
 * exact in a double), their weights. Rows of no block keep -1 and 0. */
static PetscErrorCode deliver_topk(AckdOT ot, PetscInt k, PetscInt nrec, const double *rec)
{
  const PetscInt width = 1 + 2 * k, block = ot->block, nprow = ot->grid.nprow;
  PetscMPIInt   *keeper, *send_n, *send_at, *recv_n, *recv_at, mine[2] = {ot->grid.myrow, ot->grid.mycol}, *coords;
  double        *sorted, *got;
  PetscInt       nrecv = 0;

  PetscFunctionBeginUser;
  /* the rank of each grid row's column 0, whatever order BLACS numbered the grid in */
  PetscCall(PetscMalloc2(2 * ot->size, &coords, nprow, &keeper));
  PetscCallMPI(MPI_Allgather(mine, 2, MPI_INT, coords, 2, MPI_INT, ot->comm));
  for (PetscMPIInt r = 0; r < ot->size; r++)
    if (coords[2 * r] >= 0 && coords[2 * r + 1] == 0) keeper[coords[2 * r]] = r;
  PetscCall(PetscCalloc4(ot->size, &send_n, ot->size + 1, &send_at, ot->size, &recv_n, ot->size + 1, &recv_at));
  for (PetscInt t = 0; t < nrec; t++) send_n[keeper[((PetscInt)rec[t * width] / block) % nprow]] += (PetscMPIInt)width;
  for (PetscMPIInt r = 0; r < ot->size; r++) send_at[r + 1] = send_at[r] + send_n[r];
  PetscCall(PetscMalloc1((size_t)nrec * width + 1, &sorted));
  {
    PetscMPIInt *fill;
    PetscCall(PetscMalloc1(ot->size, &fill));
    PetscCall(PetscArraycpy(fill, send_at, ot->size));
    for (PetscInt t = 0; t < nrec; t++) {
      const PetscMPIInt to = keeper[((PetscInt)rec[t * width] / block) % nprow];
      PetscCall(PetscArraycpy(sorted + fill[to], rec + t * width, width));
      fill[to] += (PetscMPIInt)width;
    }
    PetscCall(PetscFree(fill));
  }
  PetscCallMPI(MPI_Alltoall(send_n, 1, MPI_INT, recv_n, 1, MPI_INT, ot->comm));
  for (PetscMPIInt r = 0; r < ot->size; r++) recv_at[r + 1] = recv_at[r] + recv_n[r];
  PetscCall(PetscMalloc1((size_t)recv_at[ot->size] + 1, &got));
  PetscCallMPI(MPI_Alltoallv(sorted, send_n, send_at, MPI_DOUBLE, got, recv_n, recv_at, MPI_DOUBLE, ot->comm));
  nrecv = recv_at[ot->size] / width;

  PetscCall(AckdOTTopKAllocate(ot, k, 0, ot->grid.mycol == 0 ? ot->mloc : 0));
  for (PetscInt t = 0; t < ot->topk_nrows * k; t++) ot->topk_index[t] = -1, ot->topk_weight[t] = 0;
  for (PetscInt t = 0; t < nrecv; t++) {
    const double  *r     = got + t * width;
    const PetscInt gi    = (PetscInt)r[0];
    const PetscInt local = (gi / (block * nprow)) * block + gi % block;
    PetscCheck(local < ot->topk_nrows && ot->row_global[local] == gi, PETSC_COMM_SELF, PETSC_ERR_PLIB,
               "top-k row %" PetscInt_FMT " delivered to a rank that does not keep it", gi);
    for (PetscInt q = 0; q < k; q++) {
      ot->topk_index[local * k + q]  = (PetscInt)r[1 + q];
      ot->topk_weight[local * k + q] = r[1 + k + q];
    }
  }
  PetscCall(PetscFree(got));
  PetscCall(PetscFree(sorted));
  PetscCall(PetscFree4(send_n, send_at, recv_n, recv_at));
  PetscCall(PetscFree2(coords, keeper));
  PetscFunctionReturn(0);
}

static PetscErrorCode blocks_solve(AckdOT ot)
{
  struct _AckdOTBlocks *bl = ot->blocks;
  const PetscInt        k  = PetscMin(ot->topk, ot->nt);
  PetscMPIInt           sub_rank;
  PetscInt              iterations = 0, nrec = 0, capacity = 0, certificates = 0;
  double               *rec = NULL, sums[7] = {0, 0, 0, 0, 0, 0, 0}, eps = 0;
  PetscBool             converged = PETSC_TRUE, potentials = PETSC_FALSE;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(bl->sub_comm, &sub_rank));
  if (!ot->f) PetscCall(PetscMalloc2(ot->ns, &ot->f, ot->nt, &ot->g));
  PetscCall(PetscArrayzero(ot->f, ot->ns));
  PetscCall(PetscArrayzero(ot->g, ot->nt));
  PetscCall(AckdProgressBegin(&ot->progress, &ot->log, "ot blocks", bl->nmine, "block")); /* rank 0's group's */
  int ended[2] = {0, 0}; /* a block stopped on request, a block paused */
  for (PetscInt t = 0; t < bl->nmine; t++) {
    AckdOT       b = bl->sub[t];
    AckdOTResult r;
    b->stoppable         = ot->stoppable;
    b->pause_interval    = ot->pause_interval;
    b->pause_start       = ot->pause_start; /* the whole solve's clock, not the block's */
    b->debug_check_delay = ot->debug_check_delay;
    PetscCall(AckdOTSolve(b));
    if (b->stopped) {
      ended[b->paused ? 1 : 0] = 1;
      break;
    }
    PetscCall(AckdProgressUpdate(&ot->progress, t + 1));
    PetscCall(AckdOTGetResult(b, &r));
    iterations = PetscMax(iterations, r.iterations);
    converged  = (PetscBool)(converged && r.converged);
    eps        = r.eps;
    /* the block's top-k rows this rank keeps, students and teachers made global */
    PetscInt        kb, nrows;
    const PetscInt *rows, *idx;
    const double   *w;
    PetscCall(AckdOTGetTopK(b, &kb, &nrows, &rows, &idx, &w));
    if (nrec + nrows > capacity) {
      capacity = PetscMax(2 * capacity, nrec + nrows);
      PetscCall(PetscRealloc(sizeof(double) * (size_t)capacity * (1 + 2 * k), &rec));
    }
    for (PetscInt i = 0; i < nrows; i++, nrec++) {
      double *r = rec + (size_t)nrec * (1 + 2 * k);
      r[0]      = (double)bl->s_index[t][rows[i]];
      for (PetscInt q = 0; q < k; q++) { /* a block with fewer teachers than k: none beyond them */
        r[1 + q]     = q < kb && idx[i * kb + q] >= 0 ? (double)bl->t_index[t][idx[i * kb + q]] : -1.0;
        r[1 + k + q] = q < kb ? w[i * kb + q] : 0.0;
      }
    }
    if (sub_rank != 0) continue; /* the rest once per block */
    sums[0] += r.transport_cost;
    sums[1] += r.entropic_value;
    sums[2] += r.column_error * r.column_error;
    sums[3] += r.row_error * r.row_error;
    sums[4] += r.discarded_mass; /* truncated blocks (-ot_truncate): what their certificates bound */
    sums[5] += r.discarded_cost;
    sums[6] += (double)r.kept_entries;
    certificates = PetscMax(certificates, r.certificates);
    if (b->f) {
      potentials = PETSC_TRUE;
      for (PetscInt i = 0; i < b->ns; i++) ot->f[bl->s_index[t][i]] = b->f[i];
      for (PetscInt j = 0; j < b->nt; j++) ot->g[bl->t_index[t][j]] = b->g[j];
    }
  }
  PetscCall(AckdProgressEnd(&ot->progress));
  /* Groups solve different blocks on their own ranks: a stop heard in one group stops the whole;
   * a group that paused pauses it (the others have finished their blocks or paused too). */
  if (ot->stoppable || ot->pause_interval > 0) {
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, ended, 2, MPI_INT, MPI_MAX, ot->comm));
    ot->stopped = (PetscBool)(ended[0] || ended[1]);
    ot->paused  = (PetscBool)(ended[1] && !ended[0]);
  }
  if (ot->stopped) {
    PetscCall(PetscFree(rec));
    PetscFunctionReturn(0);
  }
  PetscCall(deliver_topk(ot, k, nrec, rec));
  PetscCall(PetscFree(rec));
  /* each entry has one contributor (-inf survives a sum with zeros) */
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, ot->f, (PetscMPIInt)ot->ns, MPI_DOUBLE, MPI_SUM, ot->comm));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, ot->g, (PetscMPIInt)ot->nt, MPI_DOUBLE, MPI_SUM, ot->comm));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, sums, 7, MPI_DOUBLE, MPI_SUM, ot->comm));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &certificates, 1, MPIU_INT, MPI_MAX, ot->comm));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &iterations, 1, MPIU_INT, MPI_MAX, ot->comm));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &converged, 1, MPIU_BOOL, MPI_LAND, ot->comm));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &potentials, 1, MPIU_BOOL, MPI_LOR, ot->comm));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &eps, 1, MPI_DOUBLE, MPI_MAX, ot->comm));
  /* samples without a block transport nothing */
  for (PetscInt i = 0; i < ot->ns; i++)
    if (ot->labels_s[i] < 0 || bl->group_of[ot->labels_s[i]] < 0) ot->f[i] = -INFINITY;
  for (PetscInt j = 0; j < ot->nt; j++)
    if (ot->labels_t[j] < 0 || bl->group_of[ot->labels_t[j]] < 0) ot->g[j] = -INFINITY;
  if (!potentials) PetscCall(PetscFree2(ot->f, ot->g)); /* argmin */

  ot->result.iterations     = iterations;
  ot->result.converged      = converged;
  ot->result.transport_cost = sums[0];
  ot->result.entropic_value = sums[1];
  ot->result.column_error   = sqrt(sums[2]);
  ot->result.row_error      = sqrt(sums[3]);
  ot->result.truncated      = (PetscBool)(ot->truncate > 0);
  ot->result.discarded_mass = sums[4];
  ot->result.discarded_cost = sums[5];
  ot->result.kept_entries   = (int64_t)sums[6];
  ot->result.certificates   = certificates;
  ot->result.eps            = eps;
  ot->result.max_cost       = ot->max_cost;
  /* one check: the final error over all blocks, at the largest block's iteration count */
  ot->result.history_length = 0;
  PetscCall(AckdOTRecordCheck(ot, iterations, eps, ot->result.column_error));
  ot->result.history           = ot->history;
  ot->result.history_iteration = ot->history_iteration;
  PetscFunctionReturn(0);
}

PetscInt AckdOTBlocksCount(AckdOT ot)
{
  return ot->blocks->nclass;
}

/* A block solved, stopped or not begun: its stage and potentials at its samples' global indices,
 * contributed by its group's first rank; sums and a max over the parent give every rank all. */
PetscErrorCode AckdOTBlocksGetState(AckdOT ot, AckdOTState *state)
{
  struct _AckdOTBlocks *bl = ot->blocks;
  PetscMPIInt           sub_rank;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(bl->sub_comm, &sub_rank));
  for (PetscInt t = 0; t < bl->nmine; t++) {
    AckdOT b = bl->sub[t];
    if (!b->solved && !b->stopped) continue; /* not begun */
    if (b->stopped) PetscCall(AckdOTGatherPotentials(b));
    if (sub_rank != 0) continue;
    state->stage[bl->mine[t]] = b->stage;
    for (PetscInt i = 0; i < b->ns; i++) state->f[bl->s_index[t][i]] = b->f[i];
    for (PetscInt j = 0; j < b->nt; j++) state->g[bl->t_index[t][j]] = b->g[j];
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, state->stage, (PetscMPIInt)bl->nclass, MPIU_INT, MPI_MAX, ot->comm));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, state->f, (PetscMPIInt)ot->ns, MPI_DOUBLE, MPI_SUM, ot->comm));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, state->g, (PetscMPIInt)ot->nt, MPI_DOUBLE, MPI_SUM, ot->comm));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTBlocksSetState(AckdOT ot, const AckdOTState *state)
{
  struct _AckdOTBlocks *bl = ot->blocks;

  PetscFunctionBeginUser;
  for (PetscInt t = 0; t < bl->nmine; t++)
    if (state->stage[bl->mine[t]] >= 0)
      PetscCall(
          AckdOTResumeFrom(bl->sub[t], state->stage[bl->mine[t]], bl->s_index[t], state->f, bl->t_index[t], state->g));
  PetscFunctionReturn(0);
}

static PetscErrorCode blocks_destroy(AckdOT ot)
{
  struct _AckdOTBlocks *bl = ot->blocks;

  PetscFunctionBeginUser;
  if (!bl) PetscFunctionReturn(0);
  for (PetscInt t = 0; t < bl->nmine; t++) {
    PetscCall(AckdOTDestroy(&bl->sub[t]));
    PetscCall(PetscFree2(bl->s_index[t], bl->t_index[t]));
  }
  PetscCall(PetscFree3(bl->sub, bl->s_index, bl->t_index));
  PetscCall(PetscFree(bl->group_of));
  PetscCall(PetscFree(bl->mine));
  if (bl->sub_comm != MPI_COMM_NULL && bl->sub_comm) PetscCallMPI(MPI_Comm_free(&bl->sub_comm));
  PetscCall(PetscFree(ot->blocks));
  PetscFunctionReturn(0);
}

static const AckdOTComposite class_blocks = {
    .set_features = blocks_set_features, .solve = blocks_solve, .destroy = blocks_destroy};

/* Labels give C its class structure; with -ot_class_blocks subgrid they also make the problem
 * one of class blocks, each an AckdOT of its own on a sub-grid. Defined here, with the blocks,
 * so that ot.c reaches them only through the composite it installs. */
PetscErrorCode AckdOTSetLabels(AckdOT ot, const PetscInt *student_labels, const PetscInt *teacher_labels)
{
  PetscFunctionBeginUser;
  PetscCheck(ot->setup, ot->comm, PETSC_ERR_ORDER, "call AckdOTSetUp before AckdOTSetLabels");
  PetscCheck(!ot->has_cost, ot->comm, PETSC_ERR_ORDER, "set labels before features: the cost is masked when assembled");
  PetscCall(PetscFree(ot->labels_s));
  PetscCall(PetscFree(ot->labels_t));
  PetscCall(PetscMalloc1(ot->ns, &ot->labels_s));
  PetscCall(PetscMalloc1(ot->nt, &ot->labels_t));
  PetscCall(PetscArraycpy(ot->labels_s, student_labels, ot->ns));
  PetscCall(PetscArraycpy(ot->labels_t, teacher_labels, ot->nt));
  /* -ot_class_blocks subgrid: the problem becomes this file's blocks; dense keeps one C, +inf across classes */
  ot->composite = ot->class_blocks == ACKD_OT_BLOCKS_SUBGRID ? &class_blocks : NULL;
  PetscFunctionReturn(0);
}
