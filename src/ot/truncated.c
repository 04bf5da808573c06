/* The truncated solve (-ot_truncate K): entropic OT at sizes where even recomputing C once per
 * iteration (the online mode) takes hours, certified against the dense problem.
 *
 * At small eps the plan P_ij = exp((f_i + g_j - C_ij) / eps) puts nearly all of a student's mass
 * on teachers near it. So the solve runs on a sparse set S of entries and treats the others as
 * cost +inf (sparse_store.c):
 *   1. S's first entries: one dense pass over C (tiles recomputed by single-precision GEMM)
 *      keeps, on each rank, every student's K cheapest teachers among its columns and every
 *      teacher's K cheapest students, each entry's cost recomputed exactly in double; and the
 *      support of a feasible plan (the north-west corner rule per class), so that the problem on
 *      S is feasible whatever S lacks;
 *   2. Sinkhorn with eps-scaling on S (the ordinary driver, sinkhorn.c), to half the tolerance;
 *   3. the certificate: a dense pass evaluates the plan of the final potentials on every entry
 *      outside S. That is the mass the truncation left out, per row and column; with S's own
 *      marginals it bounds the dense plan's marginal errors (and the left-out mass and cost).
 *      While the column bound exceeds the tolerance, left-out entries join S, largest first, as
 *      many e-folds of their row's mass as it takes to bring the left-out mass to a quarter of
 *      the tolerance (down to -ot_truncate_threshold, then deeper when that is not enough);
 *      Sinkhorn goes on from the potentials it had, and a new pass certifies again, at most
 *      -ot_truncate_rounds passes.
 * A dense pass costs one float GEMM of the whole problem, 2 N_s N_t d flops, and one exp per
 * entry, with no iteration in it: at 100k x 100k, d = 128, seconds per rank of oneDNN's GEMM,
 * where the online mode spends ~10 s in DGEMMs per iteration.
 *
 * Rounding. A float tile's cost differs from the exact one by at most delta (standard dot-product
 * error analysis: gamma_{d+2} |scale| |x~| |y~| for the GEMM on rounded inputs, and 3u times the
 * magnitudes for the rank-one terms, doubled for safety), so every mass the certificate sums is
 * within a factor exp(+-delta / eps) of the true one, and the bounds take the worse side. S's own
 * entries never come from a float tile. The eps of a relative -ot_eps is eps times the largest
 * cost, taken as the largest of the columns' float maxima recomputed in double: the dense max
 * unless a second cost lies within delta of it (the difference is then at most delta). */
#include "ot_impl.h"
#include <ackd/nn.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Tile of a dense pass: TILE_ROWS students x TILE_COLS teachers of float, 1 MB: the GEMM's
 * output, read back once while it sits in the L2 cache. */
#define TILE_ROWS 2048
#define TILE_COLS 128
/* Unit roundoff of float. */
#define FLOAT_U 5.9604644775390625e-08
/* The certificate sorts the left-out entries it may add to S by their share of their row's mass,
 * in e-folds down to e^-BINS (-ot_truncate_threshold is the lowest it adds). */
#define BINS 40

/* ---------------------------------------------------------------- kernels of the dense passes */

/* Every entry of a dense pass goes through these loops, so they are written to vectorise (several
 * partial sums, no branch) and cloned per instruction set. */

/* A tile column of GEMM products made costs: the rank-one terms added, rounding below 0 cut. */
ACKD_CPU_CLONES static void finish_costs(PetscInt m, float *restrict col, const float *restrict row_term,
                                         float col_term, float scale, float floor_cost)
{
  for (PetscInt i = 0; i < m; i++) {
    const float v = row_term[i] + col_term + scale * col[i];
    col[i]        = v < floor_cost ? floor_cost : v;
  }
}

/* The largest finite entry of a column (-inf if none). */
ACKD_CPU_CLONES static float finite_top(PetscInt m, const float *col)
{
  float part[16];
  for (int u = 0; u < 16; u++) part[u] = -INFINITY;
  PetscInt i = 0;
  for (; i + 16 <= m; i += 16)
    for (int u = 0; u < 16; u++) part[u] = col[i + u] < INFINITY && col[i + u] > part[u] ? col[i + u] : part[u];
  float top = -INFINITY;
  for (; i < m; i++) top = col[i] < INFINITY && col[i] > top ? col[i] : top;
  for (int u = 0; u < 16; u++) top = part[u] > top ? part[u] : top;
  return top;
}

/* Does some entry pass its row's bar or the column's? */
ACKD_CPU_CLONES static int any_below(PetscInt m, const float *col, float col_bar, const float *row_bar)
{
  int hit = 0;
  for (PetscInt i = 0; i < m; i++) hit |= (col[i] < col_bar) | (col[i] < row_bar[i]);
  return hit;
}

/* The plan's log entries (f_i + g_j - C_ij) / eps of a tile column. */
ACKD_CPU_CLONES static void plan_logs(PetscInt m, const float *restrict col, const double *restrict f, double gj,
                                      double inv_eps, double *restrict arg)
{
  for (PetscInt i = 0; i < m; i++) arg[i] = (f[i] + gj - (double)col[i]) * inv_eps;
}

/* A tile column's plan entries e added to the row masses; their sum and their cost, returned. */
ACKD_CPU_CLONES static void add_masses(PetscInt m, const double *restrict e, const float *restrict col,
                                       double *restrict row_mass, double *mass, double *cost)
{
  double   pm[8] = {0, 0, 0, 0, 0, 0, 0, 0}, pc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  PetscInt i = 0;
  for (; i + 8 <= m; i += 8)
    for (int u = 0; u < 8; u++) {
      const double p = e[i + u];
      row_mass[i + u] += p;
      pm[u] += p;
      pc[u] += p > 0 ? p * (double)col[i + u] : 0.0; /* S's entries: p = 0 at cost +inf */
    }
  double sm = 0, sc = 0;
  for (; i < m; i++) {
    row_mass[i] += e[i];
    sm += e[i];
    sc += e[i] > 0 ? e[i] * (double)col[i] : 0.0;
  }
  for (int u = 0; u < 8; u++) sm += pm[u], sc += pc[u];
  *mass = sm;
  *cost = sc;
}

/* Is some entry's share of its row's mass (log) at or above the floor? */
ACKD_CPU_CLONES static int any_at_least(PetscInt m, const double *arg, const double *log_a, double floor)
{
  int hit = 0;
  for (PetscInt i = 0; i < m; i++) hit |= arg[i] - log_a[i] >= floor;
  return hit;
}

/* ---------------------------------------------------------------- the dense pass */

/* What a pass does with one tile: tile[jj * mb + ii] is the float cost of local row i0 + ii and
 * local column j0 + jj (+inf across classes). */
typedef PetscErrorCode (*TileVisit)(AckdOT ot, void *ctx, PetscInt i0, PetscInt mb, PetscInt j0, PetscInt nb,
                                    float *tile);

/* Recomputes every tile of this rank's block of C in float and hands it to visit; the columns
 * outer, so that a pass meets each column's row blocks in increasing order. */
static PetscErrorCode dense_pass(AckdOT ot, const char *label, TileVisit visit, void *ctx)
{
  const AckdOTSparse *s     = ot->sparse;
  const PetscInt      d     = ot->dim;
  const float         scale = (float)AckdOTGemmScale(ot), floor_cost = ot->cost_kind == ACKD_OT_COST_KL ? -INFINITY : 0;
  const PetscInt      mb_max = PetscMin(TILE_ROWS, PetscMax(ot->mloc, 1));
  const PetscInt      ntiles = (ot->nloc + TILE_COLS - 1) / TILE_COLS;
  float              *tile;
  AckdProgress        bar = {0};

  PetscFunctionBeginUser;
  PetscCall(PetscLogEventBegin(ot->event_dense, 0, 0, 0, 0));
  PetscCall(PetscMalloc1((size_t)mb_max * TILE_COLS, &tile));
  if (ot->show_progress) PetscCall(AckdProgressBegin(&bar, &ot->log, label, ntiles, NULL));
  for (PetscInt j0 = 0, t = 0; j0 < ot->nloc; j0 += TILE_COLS, t++) {
    const PetscInt nb = PetscMin(TILE_COLS, ot->nloc - j0);
    for (PetscInt i0 = 0; i0 < ot->mloc; i0 += mb_max) {
      const PetscInt mb = PetscMin(mb_max, ot->mloc - i0);
      /* tile = Y~ X~^T for these teachers and students: one column of it per teacher */
      PetscCall(
          AckdSgemm('N', 'T', nb, mb, d, 1.0f, s->y32 + (size_t)j0 * d, d, s->x32 + (size_t)i0 * d, d, 0.0f, tile, mb));
      for (PetscInt jj = 0; jj < nb; jj++) {
        float *col = tile + (size_t)jj * mb;
        finish_costs(mb, col, s->row_term32 + i0, s->col_term32[j0 + jj], scale, floor_cost);
        if (ot->labels_s) {
          const PetscInt class_t = ot->labels_t[ot->col_global[j0 + jj]];
          for (PetscInt ii = 0; ii < mb; ii++) {
            const PetscInt class_s = ot->labels_s[ot->row_global[i0 + ii]];
            if (AckdOTClassesApart(class_s, class_t)) col[ii] = INFINITY;
          }
        }
      }
      PetscCall(visit(ot, ctx, i0, mb, j0, nb, tile));
    }
    if (bar.active) PetscCall(AckdProgressUpdate(&bar, t + 1));
  }
  if (ot->show_progress) PetscCall(AckdProgressEnd(&bar));
  PetscCall(PetscFree(tile));
  PetscCall(PetscLogEventEnd(ot->event_dense, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------- step 1: the candidates */

/* Every row keeps its k cheapest entries among this rank's columns, every column its k cheapest
 * among all rows: a list of up to 2k (cost, index) pairs, cut back to the k cheapest when full,
 * whose k-th cost is then the bar a new entry must pass. */
typedef struct {
  PetscInt  k, cap;
  float    *cost;  /* n x cap */
  int32_t  *index; /* n x cap */
  PetscInt *count;
  float    *bar; /* +inf until the list first fills */
} Lists;

static PetscErrorCode lists_create(PetscInt n, PetscInt k, Lists *l)
{
  PetscFunctionBeginUser;
  l->k   = k;
  l->cap = 2 * k;
  PetscCall(PetscMalloc4((size_t)n * l->cap + 1, &l->cost, (size_t)n * l->cap + 1, &l->index, n + 1, &l->count, n + 1,
                         &l->bar));
  for (PetscInt t = 0; t < n; t++) {
    l->count[t] = 0;
    l->bar[t]   = INFINITY;
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode lists_destroy(Lists *l)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree4(l->cost, l->index, l->count, l->bar));
  PetscFunctionReturn(0);
}

/* Does (c, i) come before (c2, i2)? Cost, then index: a total order, so the cut is the same
 * whatever order the entries came in. */
static inline int before(float c, int32_t i, float c2, int32_t i2)
{
  return c < c2 || (c == c2 && i < i2);
}

static inline void swap_pair(float *c, int32_t *x, PetscInt a, PetscInt b)
{
  float   tc = c[a];
  int32_t tx = x[a];
  c[a] = c[b], x[a] = x[b];
  c[b] = tc, x[b] = tx;
}

/* Reorders c[0..n), x[0..n) so that its k first pairs are the k smallest (quickselect). */
static void select_smallest(PetscInt n, float *c, int32_t *x, PetscInt k)
{
  PetscInt lo = 0, hi = n - 1;
  while (lo < hi) {
    const PetscInt mid = lo + (hi - lo) / 2;
    swap_pair(c, x, mid, hi);
    PetscInt store = lo;
    for (PetscInt t = lo; t < hi; t++)
      if (before(c[t], x[t], c[hi], x[hi])) swap_pair(c, x, t, store++);
    swap_pair(c, x, store, hi);
    if (store == k - 1 || store == k) return;
    if (store < k)
      lo = store + 1;
    else
      hi = store - 1;
  }
}

/* List t offered (c, index): kept if it passes the bar; a full list is cut back first. */
static void lists_offer(Lists *l, PetscInt t, float c, int32_t index)
{
  if (!(c < l->bar[t])) return;
  float   *cost = l->cost + (size_t)t * l->cap;
  int32_t *idx  = l->index + (size_t)t * l->cap;
  if (l->count[t] == l->cap) {
    select_smallest(l->cap, cost, idx, l->k);
    float worst = -INFINITY;
    for (PetscInt u = 0; u < l->k; u++) worst = fmaxf(worst, cost[u]);
    l->count[t] = l->k;
    l->bar[t]   = worst;
    if (!(c < worst)) return;
  }
  cost[l->count[t]] = c;
  idx[l->count[t]]  = index;
  l->count[t]++;
}

typedef struct {
  Lists    rows, cols;
  float   *col_max; /* each local column's largest finite float cost, and its row */
  int32_t *col_max_row;
} Candidates;

static PetscErrorCode visit_candidates(AckdOT ot, void *ctx, PetscInt i0, PetscInt mb, PetscInt j0, PetscInt nb,
                                       float *tile)
{
  Candidates  *cand    = (Candidates *)ctx;
  const float *row_bar = cand->rows.bar + i0;

  PetscFunctionBeginUser;
  (void)ot;
  for (PetscInt jj = 0; jj < nb; jj++) {
    const PetscInt j   = j0 + jj;
    const float   *col = tile + (size_t)jj * mb;
    const float    top = finite_top(mb, col);
    if (top > cand->col_max[j])
      for (PetscInt ii = 0; ii < mb; ii++)
        if (col[ii] == top) {
          cand->col_max[j]     = top;
          cand->col_max_row[j] = (int32_t)(i0 + ii);
          break;
        }
    /* most entries pass neither bar: test 16 at a time, branch-free, and look closer at hits */
    for (PetscInt b = 0; b < mb; b += 16) {
      const PetscInt n = PetscMin(16, mb - b);
      if (!any_below(n, col + b, cand->cols.bar[j], row_bar + b)) continue;
      for (PetscInt u = 0; u < n; u++) {
        const PetscInt ii = b + u;
        lists_offer(&cand->cols, j, col[ii], (int32_t)(i0 + ii));
        lists_offer(&cand->rows, i0 + ii, col[ii], (int32_t)j);
      }
    }
  }
  PetscFunctionReturn(0);
}

/* Sample positions sorted by class (counting sort), classes in increasing order; without labels
 * one class. *start: n_class + 1 offsets into *order. Negative labels are left out. */
static PetscErrorCode order_by_class(PetscInt n, const PetscInt *labels, PetscInt nclass, PetscInt **order,
                                     PetscInt **start)
{
  PetscFunctionBeginUser;
  PetscCall(PetscCalloc1(nclass + 1, start));
  PetscCall(PetscMalloc1(n + 1, order));
  for (PetscInt i = 0; i < n; i++)
    if (!labels || labels[i] >= 0) (*start)[(labels ? labels[i] : 0) + 1]++;
  for (PetscInt c = 0; c < nclass; c++) (*start)[c + 1] += (*start)[c];
  PetscInt *fill;
  PetscCall(PetscMalloc1(nclass + 1, &fill));
  PetscCall(PetscArraycpy(fill, *start, nclass));
  for (PetscInt i = 0; i < n; i++)
    if (!labels || labels[i] >= 0) (*order)[fill[labels ? labels[i] : 0]++] = i;
  PetscCall(PetscFree(fill));
  PetscFunctionReturn(0);
}

/* A feasible plan's support, its entries with a local column appended to (row, col) at *n: the
 * north-west corner rule on each class's samples in index order (ns + nt entries at most). It
 * keeps the problem on S feasible whatever S lacks: where the nearest entries cannot carry the
 * marginals (a cluster with more students than teachers, say), mass flows here at a high cost
 * instead of driving the potentials apart, and the certificate then finds the entries it wants. */
static PetscErrorCode feasible_support(AckdOT ot, int32_t *row, int32_t *col, int64_t *n)
{
  PetscInt  nclass = 1, *os, *ss, *ot_, *st, *local;
  PetscBool labels = (PetscBool)(ot->labels_s != NULL);

  PetscFunctionBeginUser;
  if (labels) {
    for (PetscInt i = 0; i < ot->ns; i++) nclass = PetscMax(nclass, ot->labels_s[i] + 1);
    for (PetscInt j = 0; j < ot->nt; j++) nclass = PetscMax(nclass, ot->labels_t[j] + 1);
  }
  PetscCall(order_by_class(ot->ns, ot->labels_s, nclass, &os, &ss));
  PetscCall(order_by_class(ot->nt, ot->labels_t, nclass, &ot_, &st));
  PetscCall(PetscMalloc1(ot->nt + 1, &local)); /* global column -> local column, -1 elsewhere */
  for (PetscInt j = 0; j < ot->nt; j++) local[j] = -1;
  for (PetscInt j = 0; j < ot->nloc; j++) local[ot->col_global[j]] = j;
  for (PetscInt c = 0; c < nclass; c++) {
    PetscInt u = ss[c], v = st[c];
    if (u == ss[c + 1] || v == st[c + 1]) continue;
    double left_a = ot->a[os[u]], left_b = ot->b[ot_[v]];
    while (u < ss[c + 1] && v < st[c + 1]) {
      const PetscInt i = os[u], J = ot_[v];
      if (local[J] >= 0) {
        row[*n] = (int32_t)i;
        col[*n] = (int32_t)local[J];
        (*n)++;
      }
      if (left_a <= left_b) { /* the student's mass is placed: the next student */
        left_b -= left_a;
        if (++u < ss[c + 1]) left_a = ot->a[os[u]];
      } else {
        left_a -= left_b;
        if (++v < st[c + 1]) left_b = ot->b[ot_[v]];
      }
    }
  }
  PetscCall(PetscFree(local));
  PetscCall(PetscFree(os));
  PetscCall(PetscFree(ss));
  PetscCall(PetscFree(ot_));
  PetscCall(PetscFree(st));
  PetscFunctionReturn(0);
}

/* S's first entries: every row's and column's -ot_truncate nearest, in one dense pass that also
 * finds each column's largest cost. */
static PetscErrorCode select_nearest(AckdOT ot, float *col_max, int32_t *col_max_row)
{
  const PetscInt k = ot->truncate;
  Candidates     cand;

  PetscFunctionBeginUser;
  PetscCall(lists_create(ot->mloc, PetscMin(k, PetscMax(ot->nloc, 1)), &cand.rows));
  PetscCall(lists_create(ot->nloc, PetscMin(k, PetscMax(ot->mloc, 1)), &cand.cols));
  cand.col_max     = col_max;
  cand.col_max_row = col_max_row;
  PetscCall(dense_pass(ot, "ot candidates", visit_candidates, &cand));

  int64_t total = 0, t = 0;
  for (PetscInt i = 0; i < ot->mloc; i++) total += cand.rows.count[i];
  for (PetscInt j = 0; j < ot->nloc; j++) total += cand.cols.count[j];
  int32_t *erow, *ecol;
  PetscCall(PetscMalloc2(total + 1, &erow, total + 1, &ecol));
  /* a list may hold up to twice its k: all are kept, S is only the larger for it */
  for (PetscInt i = 0; i < ot->mloc; i++)
    for (PetscInt u = 0; u < cand.rows.count[i]; u++, t++) {
      erow[t] = (int32_t)i;
      ecol[t] = cand.rows.index[(size_t)i * cand.rows.cap + u];
    }
  for (PetscInt j = 0; j < ot->nloc; j++)
    for (PetscInt u = 0; u < cand.cols.count[j]; u++, t++) {
      erow[t] = cand.cols.index[(size_t)j * cand.cols.cap + u];
      ecol[t] = (int32_t)j;
    }
  PetscCall(lists_destroy(&cand.rows));
  PetscCall(lists_destroy(&cand.cols));
  PetscCall(AckdOTSparseBuild(ot, total, erow, ecol));
  PetscCall(PetscFree2(erow, ecol));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------- S */

double AckdOTSparseExactCost(AckdOT ot, PetscInt i, PetscInt j)
{
  const AckdOTSparse *s = ot->sparse;
  const double       *x = s->xd + (size_t)i * ot->dim, *y = s->yd + (size_t)j * ot->dim;
  double              dot = 0;
  if (ot->labels_s) {
    if (AckdOTClassesApart(ot->labels_s[ot->row_global[i]], ot->labels_t[ot->col_global[j]])) return INFINITY;
  }
  for (PetscInt k = 0; k < ot->dim; k++) dot += x[k] * y[k];
  double v = s->row_term[i] + s->col_term[j] + AckdOTGemmScale(ot) * dot;
  return ot->cost_kind != ACKD_OT_COST_KL && v < 0 ? 0.0 : v; /* as AckdOTFinishCosts */
}

static int compare_int32(const void *a, const void *b)
{
  const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

PetscErrorCode AckdOTSparseBuild(AckdOT ot, int64_t nextra, const int32_t *extra_row, const int32_t *extra_col)
{
  AckdOTSparse *s = ot->sparse;
  int64_t      *at, *start;
  int32_t      *extra, *row;
  double       *cost;

  PetscFunctionBeginUser;
  /* the extra rows grouped by column (counting sort), each group sorted */
  PetscCall(PetscCalloc1(ot->nloc + 1, &at));
  for (int64_t t = 0; t < nextra; t++) at[extra_col[t] + 1]++;
  for (PetscInt j = 0; j < ot->nloc; j++) at[j + 1] += at[j];
  PetscCall(PetscMalloc1(nextra + 1, &extra));
  {
    int64_t *fill;
    PetscCall(PetscMalloc1(ot->nloc + 1, &fill));
    PetscCall(PetscArraycpy(fill, at, ot->nloc));
    for (int64_t t = 0; t < nextra; t++) extra[fill[extra_col[t]]++] = extra_row[t];
    PetscCall(PetscFree(fill));
  }
  for (PetscInt j = 0; j < ot->nloc; j++)
    qsort(extra + at[j], (size_t)(at[j + 1] - at[j]), sizeof *extra, compare_int32);
  /* each column: S's sorted entries merged with the new ones, duplicates dropped; only the new
   * get their exact cost computed */
  const int64_t room = s->nnz + nextra;
  PetscCall(PetscMalloc1(ot->nloc + 1, &start)); /* kept as S's, freed apart */
  PetscCall(PetscMalloc2(room + 1, &row, room + 1, &cost));
  int64_t nnz = 0;
  s->longest  = 0;
  for (PetscInt j = 0; j < ot->nloc; j++) {
    int64_t       u = s->col_start ? s->col_start[j] : 0, v = at[j];
    const int64_t u1 = s->col_start ? s->col_start[j + 1] : 0, v1 = at[j + 1];
    start[j] = nnz;
    while (u < u1 || v < v1) {
      if (v == v1 || (u < u1 && s->row[u] <= extra[v])) {
        if (v < v1 && s->row[u] == extra[v]) v++; /* already in S */
        row[nnz]    = s->row[u];
        cost[nnz++] = s->cost[u++];
      } else if (nnz == start[j] || row[nnz - 1] != extra[v]) {
        row[nnz]    = extra[v];
        cost[nnz++] = AckdOTSparseExactCost(ot, extra[v++], j);
      } else
        v++; /* listed twice */
    }
    s->longest = (int32_t)PetscMax(s->longest, nnz - start[j]);
  }
  start[ot->nloc] = nnz;
  PetscCall(PetscFree(s->row_count));
  PetscCall(PetscCalloc1(ot->mloc + 1, &s->row_count));
  for (int64_t t = 0; t < nnz; t++) s->row_count[row[t]]++;
  PetscCall(PetscFree(s->col_start));
  PetscCall(PetscFree2(s->row, s->cost));
  PetscCall(PetscFree(at));
  PetscCall(PetscFree(extra));
  s->col_start = start;
  s->row       = row;
  s->cost      = cost;
  s->nnz       = nnz;
  PetscCallMPI(MPI_Allreduce(&s->nnz, &s->kept, 1, MPI_INT64_T, MPI_SUM, ot->comm));
  PetscFunctionReturn(0);
}

/* The bound delta on |float tile cost - exact cost| (see the header comment). */
static PetscErrorCode rounding_bound(AckdOT ot)
{
  AckdOTSparse *s = ot->sparse;
  const double  u = FLOAT_U, gamma = (ot->dim + 2) * u / (1 - (ot->dim + 2) * u), scale = fabs(AckdOTGemmScale(ot));
  double        local[4] = {0, 0, 0, 0}, most[4];

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < ot->mloc; i++) {
    double sq = 0;
    for (PetscInt k = 0; k < ot->dim; k++) sq += s->xd[(size_t)i * ot->dim + k] * s->xd[(size_t)i * ot->dim + k];
    local[0] = fmax(local[0], sqrt(sq));
    local[2] = fmax(local[2], fabs(s->row_term[i]));
  }
  for (PetscInt j = 0; j < ot->nloc; j++) {
    double sq = 0;
    for (PetscInt k = 0; k < ot->dim; k++) sq += s->yd[(size_t)j * ot->dim + k] * s->yd[(size_t)j * ot->dim + k];
    local[1] = fmax(local[1], sqrt(sq));
    local[3] = fmax(local[3], fabs(s->col_term[j]));
  }
  PetscCallMPI(MPI_Allreduce(local, most, 4, MPI_DOUBLE, MPI_MAX, ot->comm));
  const double product = scale * most[0] * most[1];
  s->delta             = 2.0 * (gamma * product + 3.0 * u * (most[2] + most[3] + product));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTTruncatedSetUp(AckdOT ot, PetscInt lo_s, PetscInt hi_s, double **xs, PetscInt lo_t, PetscInt hi_t,
                                    double **yt, const double *row_term, const double *col_term)
{
  const PetscInt d = ot->dim;
  AckdOTSparse  *s;

  PetscFunctionBeginUser;
  PetscCheck(ot->grid.nprow == 1, ot->comm, PETSC_ERR_USER_INPUT,
             "option -%sot_truncate needs whole columns on every rank (a 1xP grid), not %dx%d; drop -%sot_grid",
             ot->prefix, ot->grid.nprow, ot->grid.npcol, ot->prefix);
  PetscCheck(ot->cost_kind != ACKD_OT_COST_KL, ot->comm, PETSC_ERR_USER_INPUT,
             "option -%sot_truncate works with the sqeuclidean and cosine costs, not kl; drop -%sot_truncate",
             ot->prefix, ot->prefix);
  PetscCall(AckdOTSetLayout(ot));
  PetscCall(AckdOTSparseDestroy(ot));
  PetscCall(PetscNew(&ot->sparse));
  s = ot->sparse;
  PetscCall(PetscMalloc4((size_t)ot->mloc * d + 1, &s->xd, (size_t)ot->nloc * d + 1, &s->yd, (size_t)ot->mloc * d + 1,
                         &s->x32, (size_t)ot->nloc * d + 1, &s->y32));
  PetscCall(PetscMalloc4(ot->mloc + 1, &s->row_term, ot->nloc + 1, &s->col_term, ot->mloc + 1, &s->row_term32,
                         ot->nloc + 1, &s->col_term32));
  PetscCall(AckdOTPickRows(ot, ot->ns, lo_s, hi_s, *xs, ot->mloc, ot->row_global, s->xd, (size_t)d, 1));
  PetscCall(PetscFree(*xs));
  PetscCall(AckdOTPickRows(ot, ot->nt, lo_t, hi_t, *yt, ot->nloc, ot->col_global, s->yd, (size_t)d, 1));
  PetscCall(PetscFree(*yt));
  for (size_t t = 0; t < (size_t)ot->mloc * d; t++) s->x32[t] = (float)s->xd[t];
  for (size_t t = 0; t < (size_t)ot->nloc * d; t++) s->y32[t] = (float)s->yd[t];
  for (PetscInt i = 0; i < ot->mloc; i++) s->row_term32[i] = (float)(s->row_term[i] = row_term[ot->row_global[i]]);
  for (PetscInt j = 0; j < ot->nloc; j++) s->col_term32[j] = (float)(s->col_term[j] = col_term[ot->col_global[j]]);
  PetscCall(rounding_bound(ot));

  /* step 1: each row's and column's truncate nearest entries, and the largest cost */
  float   *col_max;
  int32_t *col_max_row;
  PetscCall(PetscMalloc2(ot->nloc + 1, &col_max, ot->nloc + 1, &col_max_row));
  for (PetscInt j = 0; j < ot->nloc; j++) col_max[j] = -INFINITY, col_max_row[j] = -1;
  PetscCall(select_nearest(ot, col_max, col_max_row));

  double local_max = -INFINITY;
  for (PetscInt j = 0; j < ot->nloc; j++)
    if (col_max_row[j] >= 0) local_max = fmax(local_max, AckdOTSparseExactCost(ot, col_max_row[j], j));
  PetscCallMPI(MPI_Allreduce(&local_max, &ot->max_cost, 1, MPI_DOUBLE, MPI_MAX, ot->comm));
  PetscCheck(ot->max_cost > -INFINITY, ot->comm, PETSC_ERR_USER_INPUT,
             "every cost is +inf: no student shares a class with any teacher; check the labels");
  PetscCall(PetscFree2(col_max, col_max_row));
  PetscCall(AckdLogInfo(&ot->log, "ot: truncated to %.0f entries (%.3g per student) of %.3g; float rounding %.2g\n",
                        (double)s->kept, (double)s->kept / (double)ot->ns, (double)ot->ns * (double)ot->nt, s->delta));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------- step 3: the certificate */

typedef struct {
  double    inv_eps;
  double   *arg, *e;  /* a tile column's plan log entries and entries */
  double   *log_a;    /* per local row: the log of its mass */
  double    floor;    /* the lowest share (log) an entry may join at: -ot_truncate_threshold, lowered when short */
  PetscInt  cut;      /* the e-folds that joined: BINS when all candidates did */
  double   *hist;     /* nloc x BINS: each column's left-out mass by e-fold below its row's mass */
  int64_t  *cursor;   /* per local column: the next entry of S the pass has not passed */
  double   *row_mass; /* per local row, per local column: mass outside S */
  double   *col_mass;
  double    cost_mass;  /* sum of (float) C P outside S */
  int64_t   njoin, cap; /* entries to join S: njoin of cap, local (row, column) */
  int32_t  *join_row, *join_col;
  uint8_t  *join_bin; /* the e-fold of each */
  int64_t   room;     /* entries S may still take on this rank */
  PetscBool full;     /* room ran out: some entries that should join S did not */
} Certificate;

static PetscErrorCode visit_certificate(AckdOT ot, void *ctx, PetscInt i0, PetscInt mb, PetscInt j0, PetscInt nb,
                                        float *tile)
{
  Certificate        *cert = (Certificate *)ctx;
  const AckdOTSparse *s    = ot->sparse;
  const double       *f = ot->f_loc + i0, *log_a = cert->log_a + i0;

  PetscFunctionBeginUser;
  for (PetscInt jj = 0; jj < nb; jj++) {
    const PetscInt j   = j0 + jj;
    const double   gj  = ot->g_loc[j];
    float         *col = tile + (size_t)jj * mb;
    if (gj == -INFINITY) continue; /* zero mass: its column of the plan is 0 */
    /* S's entries are not left out: cost +inf here, so that their exponential is 0 */
    int64_t t = cert->cursor[j];
    for (; t < s->col_start[j + 1] && s->row[t] < i0 + mb; t++) col[s->row[t] - i0] = INFINITY;
    cert->cursor[j] = t;
    plan_logs(mb, col, f, gj, cert->inv_eps, cert->arg);
    AckdOTExpArray(mb, cert->arg, cert->e);
    double mass, cost;
    add_masses(mb, cert->e, col, cert->row_mass + i0, &mass, &cost);
    cert->col_mass[j] += mass;
    cert->cost_mass += cost;
    if (!any_at_least(mb, cert->arg, log_a, cert->floor)) continue;
    for (PetscInt ii = 0; ii < mb; ii++) {
      const double level = cert->arg[ii] - log_a[ii]; /* log of the entry's share of its row's mass */
      if (!(level >= cert->floor)) continue;
      const int bin = level >= 0 ? 0 : (int)PetscMin(BINS - 1, (PetscInt)(-level));
      cert->hist[(size_t)j * BINS + bin] += cert->e[ii];
      if (cert->njoin == cert->room) {
        cert->full = PETSC_TRUE;
        continue;
      }
      if (cert->njoin == cert->cap) {
        cert->cap = PetscMax(1024, 2 * cert->cap);
        PetscCall(PetscRealloc(sizeof(int32_t) * (size_t)cert->cap, &cert->join_row));
        PetscCall(PetscRealloc(sizeof(int32_t) * (size_t)cert->cap, &cert->join_col));
        PetscCall(PetscRealloc(sizeof(uint8_t) * (size_t)cert->cap, &cert->join_bin));
      }
      cert->join_row[cert->njoin] = (int32_t)(i0 + ii);
      cert->join_col[cert->njoin] = (int32_t)j;
      cert->join_bin[cert->njoin] = (uint8_t)bin;
      cert->njoin++;
    }
  }
  PetscFunctionReturn(0);
}

/* The dense plan of the current potentials against the solution's marginals: sets the sparse
 * object's bounds, and lists the entries that should join S. */
static PetscErrorCode certify(AckdOT ot, double eps, double tol, Certificate *cert)
{
  AckdOTSparse *s       = ot->sparse;
  const double  inv_eps = 1.0 / eps, up = exp(s->delta * inv_eps), down = exp(-s->delta * inv_eps);
  double       *col_lse, *row_lse, *work, *spare;
  double        local[3] = {0, 0, 0}, sums[3];

  PetscFunctionBeginUser;
  cert->inv_eps   = inv_eps;
  cert->cost_mass = 0;
  cert->njoin     = 0;
  cert->full      = PETSC_FALSE;
  /* Entries S may hold on this rank: 16 bytes each (row, cost, and this list), within a quarter
   * of this rank's share of the memory it may use. */
  double share;
  PetscCall(AckdMemoryShare(ot->comm, 0.25, &share));
  cert->room = PetscMax(0, (int64_t)(share / 16.0) - s->nnz);
  for (PetscInt i = 0; i < ot->mloc; i++) {
    cert->log_a[i]    = log(ot->a[ot->row_global[i]]);
    cert->row_mass[i] = 0;
  }
  PetscCall(PetscArrayzero(cert->hist, (size_t)ot->nloc * BINS));
  for (PetscInt j = 0; j < ot->nloc; j++) {
    cert->cursor[j]   = s->col_start[j];
    cert->col_mass[j] = 0;
  }
  PetscCall(dense_pass(ot, "ot certificate", visit_certificate, cert));

  /* S's own marginals at the same potentials */
  PetscCall(
      PetscMalloc4(ot->nloc + 1, &col_lse, ot->mloc + 1, &row_lse, ot->mloc + 1, &work, 2 * ot->mloc + 1, &spare));
  PetscCall(ot->store->column_lse(ot, ot->f_loc, ot->g_loc, inv_eps, col_lse));
  PetscCall(ot->store->row_lse(ot, ot->f_loc, ot->g_loc, inv_eps, work, spare, row_lse));
  if (ot->grid.npcol > 1) {
    PetscCallMPI(
        MPI_Allreduce(MPI_IN_PLACE, row_lse, (PetscMPIInt)ot->mloc, MPI_DOUBLE, ot->lse_op, ot->grid.row_comm));
    PetscCallMPI(
        MPI_Allreduce(MPI_IN_PLACE, cert->row_mass, (PetscMPIInt)ot->mloc, MPI_DOUBLE, MPI_SUM, ot->grid.row_comm));
  }
  /* the dense marginal lies between S's plus the left-out mass scaled down and up */
  for (PetscInt j = 0; j < ot->nloc; j++) {
    const double kept = exp(col_lse[j]), b = ot->b[ot->col_global[j]];
    const double err = fmax(fabs(kept + down * cert->col_mass[j] - b), fabs(kept + up * cert->col_mass[j] - b));
    local[0] += err * err;
    local[1] += up * cert->col_mass[j];
  }
  local[2] = up * cert->cost_mass;
  PetscCallMPI(MPI_Allreduce(local, sums, 3, MPI_DOUBLE, MPI_SUM, ot->comm));
  double row_sq = 0;
  for (PetscInt i = 0; i < ot->mloc; i++) {
    const double kept = exp(row_lse[i]), a = ot->a[ot->row_global[i]];
    const double err = fmax(fabs(kept + down * cert->row_mass[i] - a), fabs(kept + up * cert->row_mass[i] - a));
    row_sq += err * err;
  }
  /* Which entries join: the fewest e-folds, largest first, that leave the left-out mass of the
   * columns at a quarter of the tolerance in L2 (as measured at these potentials) */
  double remaining[BINS + 1], total[BINS + 1];
  for (PetscInt c = 0; c <= BINS; c++) remaining[c] = 0;
  for (PetscInt j = 0; j < ot->nloc; j++) {
    double left = cert->col_mass[j];
    for (PetscInt c = 0; c <= BINS; c++) {
      remaining[c] += up * up * left * left;
      if (c < BINS) left = fmax(0.0, left - cert->hist[(size_t)j * BINS + c]);
    }
  }
  PetscCallMPI(MPI_Allreduce(remaining, total, BINS + 1, MPI_DOUBLE, MPI_SUM, ot->comm));
  PetscInt cut = BINS;
  for (PetscInt c = 0; c <= BINS; c++)
    if (sqrt(total[c]) <= 0.25 * tol) {
      cut = c;
      break;
    }
  int64_t kept = 0;
  for (int64_t t = 0; t < cert->njoin; t++)
    if (cert->join_bin[t] < cut) {
      cert->join_row[kept] = cert->join_row[t];
      cert->join_col[kept] = cert->join_col[t];
      kept++;
    }
  cert->njoin       = kept;
  cert->cut         = cut;
  s->column_bound   = sqrt(sums[0]);
  s->row_bound      = sqrt(row_sq);
  s->discarded_mass = sums[1];
  s->discarded_cost = sums[2] + s->delta * sums[1];
  s->rounds++;
  PetscCall(PetscFree4(col_lse, row_lse, work, spare));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------- the solve */

PetscErrorCode AckdOTTruncatedSolve(AckdOT ot)
{
  AckdOTSparse *s   = ot->sparse;
  const double  tol = ot->tol;
  Certificate   cert;
  PetscBool     certified = PETSC_FALSE, full = PETSC_FALSE;

  PetscFunctionBeginUser;
  /* AckdOTSolve has refused every solver but sinkhorn (argmin needs no solve), and AckdOTSinkhorn
   * checks eps */
  memset(&cert, 0, sizeof cert);
  PetscCall(PetscMalloc6(ot->mloc + 1, &cert.arg, ot->mloc + 1, &cert.e, ot->mloc + 1, &cert.log_a, ot->nloc + 1,
                         &cert.cursor, ot->mloc + 1, &cert.row_mass, ot->nloc + 1, &cert.col_mass));
  PetscCall(PetscMalloc1((size_t)ot->nloc * BINS + 1, &cert.hist));
  s->rounds  = 0;
  cert.floor = PetscMax(log(ot->truncate_threshold), -(double)BINS);
  {
    int64_t  n = 0;
    int32_t *row, *col;
    PetscCall(PetscMalloc2(ot->ns + ot->nt + 1, &row, ot->ns + ot->nt + 1, &col));
    PetscCall(feasible_support(ot, row, col, &n)); /* the marginals are known now */
    PetscCall(AckdOTSparseBuild(ot, n, row, col));
    PetscCall(PetscFree2(row, col));
  }
  /* Sinkhorn with eps-scaling on S, to half the tolerance: the other half is the room the
   * left-out mass may take. A resumed solve goes on from its potentials (AckdOTResumeFrom). */
  ot->tol = 0.5 * tol;
  PetscCall(AckdOTSinkhorn(ot));
  const PetscBool warm = ot->warm_start;
  ot->warm_start       = PETSC_TRUE; /* the rounds go on from the potentials at the target eps */
  for (PetscInt round = 1; !ot->stopped; round++) {
    PetscCall(certify(ot, ot->result.eps, tol, &cert));
    full      = (PetscBool)(full || cert.full);
    certified = (PetscBool)(s->column_bound < tol);
    int64_t total;
    PetscCallMPI(MPI_Allreduce(&cert.njoin, &total, 1, MPI_INT64_T, MPI_SUM, ot->comm));
    PetscCall(AckdLogInfo(&ot->log,
                          "ot: certificate %d: column error <= %.3g, row error <= %.3g, left-out mass <= %.3g; "
                          "%.0f entries join S\n",
                          (int)round, s->column_bound, s->row_bound, s->discarded_mass,
                          certified ? 0.0 : (double)total));
    if (certified || round >= ot->truncate_rounds) break;
    /* Every candidate was not enough, or none was wanted: mass below the floor is what is left
     * out. The next pass looks ten e-folds deeper (down to e^-BINS at most). */
    if (cert.cut == BINS || total == 0) {
      const double floor = cert.floor;
      cert.floor         = PetscMax(-(double)BINS, floor - 10);
      if (total == 0 && cert.floor == floor) break; /* nothing left to add */
      if (total == 0) continue;                     /* the same S and potentials, certified deeper */
    }
    PetscCall(AckdOTSparseBuild(ot, cert.njoin, cert.join_row, cert.join_col));
    PetscCall(AckdOTSinkhorn(ot)); /* on from the potentials it had */
  }
  ot->tol        = tol;
  ot->warm_start = warm;
  PetscCall(PetscFree6(cert.arg, cert.e, cert.log_a, cert.cursor, cert.row_mass, cert.col_mass));
  PetscCall(PetscFree(cert.hist));
  PetscCall(PetscFree(cert.join_row));
  PetscCall(PetscFree(cert.join_col));
  PetscCall(PetscFree(cert.join_bin));
  if (ot->stopped) PetscFunctionReturn(0);
  ot->result.converged      = certified;
  ot->result.column_error   = s->column_bound;
  ot->result.row_error      = s->row_bound;
  ot->result.truncated      = PETSC_TRUE;
  ot->result.kept_entries   = s->kept;
  ot->result.discarded_mass = s->discarded_mass;
  ot->result.discarded_cost = s->discarded_cost;
  ot->result.certificates   = s->rounds;
  if (!certified) {
    char text[160];
    snprintf(text, sizeof text, "column error <= %.3g after %d dense passes (tolerance %.3g)%s", s->column_bound,
             (int)s->rounds, tol, full ? ", S at its memory limit" : "");
    PetscCall(AckdLogWarn(&ot->log,
                          "ot: the truncated solve is not certified: %s; raise -%sot_truncate or "
                          "-%sot_truncate_rounds, lower -%sot_truncate_threshold, or solve densely\n",
                          text, ot->prefix, ot->prefix, ot->prefix));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTSparseDestroy(AckdOT ot)
{
  AckdOTSparse *s = ot->sparse;

  PetscFunctionBeginUser;
  if (!s) PetscFunctionReturn(0);
  PetscCall(PetscFree(s->col_start));
  PetscCall(PetscFree2(s->row, s->cost));
  PetscCall(PetscFree(s->row_count));
  PetscCall(PetscFree4(s->xd, s->yd, s->x32, s->y32));
  PetscCall(PetscFree4(s->row_term, s->col_term, s->row_term32, s->col_term32));
  PetscCall(PetscFree(ot->sparse));
  PetscFunctionReturn(0);
}
