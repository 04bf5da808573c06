/* The cost matrix C (students x teachers) on the process grid.
 *
 * All three costs are one GEMM plus rank-one terms,
 *   C_ij = row_term_i + col_term_j + scale * (X~ Y~^T)_ij,
 * with features X~, Y~ transformed row by row where they arrive:
 *   sqeuclidean  |x|^2 + |y|^2 - 2 x.y
 *   cosine       1 - x^ . y^                       (rows normalised)
 *   kl           KL(p_t || p_s) = sum p_t log p_t - p_t . log p_s,
 *                p = softmax(logits / T); X~ = log p_s, Y~ = p_t
 * The transformed rows are redistributed block-cyclically (Cpdgemr2d) and
 * multiplied with PDGEMM. Across classes the cost is +inf. */
#include "ot_impl.h"
#include "scalapack.h"
#include <math.h>

/* First row (global index) holding a non-finite value, or n if none. */
PetscErrorCode AckdOTFirstBadRow(AckdOT ot, PetscInt n, PetscInt lo, PetscInt hi, const double *rows, PetscInt *bad)
{
  PetscInt mine = n;

  PetscFunctionBeginUser;
  for (PetscInt i = lo; i < hi && mine == n; i++)
    for (PetscInt k = 0; k < ot->dim; k++)
      if (!isfinite(rows[(i - lo) * ot->dim + k])) {
        mine = i;
        break;
      }
  PetscCallMPI(MPI_Allreduce(&mine, bad, 1, MPIU_INT, MPI_MIN, ot->comm));
  PetscFunctionReturn(0);
}

/* Transforms this rank's rows in place (row-major, hi - lo rows) and fills
 * its entries of the full vector `term` (zero elsewhere). A row without a
 * direction (cosine of a zero vector) lowers *zero_row to its index. */
static PetscErrorCode transform_rows(AckdOT ot, AckdOTSide side, PetscInt lo, PetscInt hi, double *rows, double *term,
                                     PetscInt *zero_row)
{
  const PetscInt d = ot->dim;

  PetscFunctionBeginUser;
  for (PetscInt i = lo; i < hi; i++) {
    double *x  = rows + (i - lo) * d;
    double  sq = 0;
    switch (ot->cost_kind) {
    case ACKD_OT_COST_SQEUCLIDEAN:
      for (PetscInt k = 0; k < d; k++) sq += x[k] * x[k];
      term[i] = sq;
      break;
    case ACKD_OT_COST_COSINE:
      for (PetscInt k = 0; k < d; k++) sq += x[k] * x[k];
      if (!(sq > 0)) { /* undefined cosine: reported collectively by the caller */
        *zero_row = PetscMin(*zero_row, i);
        sq        = 1;
      }
      for (PetscInt k = 0; k < d; k++) x[k] /= sqrt(sq);
      term[i] = side == ACKD_OT_STUDENT ? 1.0 : 0.0;
      break;
    case ACKD_OT_COST_KL: {
      /* log-softmax with a max shift: logits can be large */
      double top = -INFINITY, sum = 0;
      for (PetscInt k = 0; k < d; k++) top = fmax(top, x[k] / ot->kl_temperature);
      for (PetscInt k = 0; k < d; k++) sum += exp(x[k] / ot->kl_temperature - top);
      double log_norm = top + log(sum);
      for (PetscInt k = 0; k < d; k++) x[k] = x[k] / ot->kl_temperature - log_norm;
      if (side == ACKD_OT_TEACHER) {
        double neg_entropy = 0;
        for (PetscInt k = 0; k < d; k++) {
          double p = exp(x[k]);
          neg_entropy += p > 0 ? p * x[k] : 0.0;
          x[k] = p;
        }
        term[i] = neg_entropy;
      } else
        term[i] = 0.0;
    } break;
    }
  }
  PetscFunctionReturn(0);
}

/* Moves row-major contiguous rows into a block-cyclic n x dim matrix on the grid. */
static PetscErrorCode distribute(AckdOT ot, PetscInt n, PetscInt lo, PetscInt hi, const double *rows, double **local,
                                 int *desc)
{
  const int   one = 1, zero = 0, dim = (int)ot->dim, nn = (int)n, block = (int)ot->block;
  const int   src_block = (int)((n + ot->size - 1) / ot->size), nrows = (int)(hi - lo);
  int         src_desc[ACKD_DESC_LEN], info, src_lld = PetscMax(1, nrows);
  double     *src;
  AckdOTGrid *g = &ot->grid;

  PetscFunctionBeginUser;
  /* ScaLAPACK stores local blocks column-major: transpose the rows. */
  PetscCall(PetscMalloc1((size_t)src_lld * dim, &src));
  for (int i = 0; i < nrows; i++)
    for (int k = 0; k < dim; k++) src[(size_t)k * src_lld + i] = rows[(size_t)i * dim + k];
  descinit_(src_desc, &nn, &dim, &src_block, &dim, &zero, &zero, &g->context_1d, &src_lld, &info);
  PetscCheck(info == 0, ot->comm, PETSC_ERR_LIB, "descinit_ failed for the input layout (argument %d)", -info);

  int mloc = numroc_(&nn, &block, &g->myrow, &zero, &g->nprow);
  int kloc = numroc_(&dim, &block, &g->mycol, &zero, &g->npcol);
  int lld  = PetscMax(1, mloc);
  descinit_(desc, &nn, &dim, &block, &block, &zero, &zero, &g->context, &lld, &info);
  PetscCheck(info == 0, ot->comm, PETSC_ERR_LIB, "descinit_ failed for the grid layout (argument %d)", -info);
  PetscCall(PetscCalloc1((size_t)lld * PetscMax(1, kloc), local));
  Cpdgemr2d(nn, dim, src, one, one, src_desc, *local, one, one, desc, g->context_1d);
  PetscCall(PetscFree(src));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTAssembleCost(AckdOT ot, const double *student_rows, const double *teacher_rows)
{
  PetscInt    lo_s, hi_s, lo_t, hi_t, bad;
  double     *xs, *yt, *row_term, *col_term, *buf, *X, *Y;
  int         desc_x[ACKD_DESC_LEN], desc_y[ACKD_DESC_LEN], desc_c[ACKD_DESC_LEN], info;
  AckdOTGrid *g = &ot->grid;

  PetscFunctionBeginUser;
  PetscCall(PetscLogEventBegin(ot->event_cost, 0, 0, 0, 0));
  PetscCall(AckdOTGetOwnedRows(ot, ACKD_OT_STUDENT, &lo_s, &hi_s));
  PetscCall(AckdOTGetOwnedRows(ot, ACKD_OT_TEACHER, &lo_t, &hi_t));
  PetscCall(AckdOTFirstBadRow(ot, ot->ns, lo_s, hi_s, student_rows, &bad));
  PetscCheck(bad == ot->ns, ot->comm, PETSC_ERR_USER_INPUT,
             "student features: sample %" PetscInt_FMT " holds NaN or Inf; every feature must be finite, fix the input",
             bad);
  PetscCall(AckdOTFirstBadRow(ot, ot->nt, lo_t, hi_t, teacher_rows, &bad));
  PetscCheck(bad == ot->nt, ot->comm, PETSC_ERR_USER_INPUT,
             "teacher features: sample %" PetscInt_FMT " holds NaN or Inf; every feature must be finite, fix the input",
             bad);

  /* Transform copies, and gather the rank-one terms on every rank. Two
   * allocations: each copy is freed as soon as its side has been placed. */
  PetscCall(PetscMalloc1((size_t)(hi_s - lo_s) * ot->dim + 1, &xs));
  PetscCall(PetscMalloc1((size_t)(hi_t - lo_t) * ot->dim + 1, &yt));
  PetscCall(PetscArraycpy(xs, student_rows, (hi_s - lo_s) * ot->dim));
  PetscCall(PetscArraycpy(yt, teacher_rows, (hi_t - lo_t) * ot->dim));
  PetscCall(PetscCalloc3(ot->ns, &row_term, ot->nt, &col_term, PetscMax(ot->ns, ot->nt), &buf));
  PetscInt zero_s = ot->ns, zero_t = ot->nt, first;
  PetscCall(transform_rows(ot, ACKD_OT_STUDENT, lo_s, hi_s, xs, buf, &zero_s));
  PetscCallMPI(MPI_Allreduce(&zero_s, &first, 1, MPIU_INT, MPI_MIN, ot->comm));
  PetscCheck(first == ot->ns, ot->comm, PETSC_ERR_USER_INPUT,
             "student sample %" PetscInt_FMT " has an all-zero feature vector: its cosine cost is undefined; fix the "
             "input or use -%sot_cost sqeuclidean",
             first, ot->prefix);
  PetscCallMPI(MPI_Allreduce(buf, row_term, (PetscMPIInt)ot->ns, MPI_DOUBLE, MPI_SUM, ot->comm));
  PetscCall(PetscArrayzero(buf, PetscMax(ot->ns, ot->nt)));
  PetscCall(transform_rows(ot, ACKD_OT_TEACHER, lo_t, hi_t, yt, buf, &zero_t));
  PetscCallMPI(MPI_Allreduce(&zero_t, &first, 1, MPIU_INT, MPI_MIN, ot->comm));
  PetscCheck(first == ot->nt, ot->comm, PETSC_ERR_USER_INPUT,
             "teacher sample %" PetscInt_FMT " has an all-zero feature vector: its cosine cost is undefined; fix the "
             "input or use -%sot_cost sqeuclidean",
             first, ot->prefix);
  PetscCallMPI(MPI_Allreduce(buf, col_term, (PetscMPIInt)ot->nt, MPI_DOUBLE, MPI_SUM, ot->comm));

  if (ot->truncate || ot->online) { /* C is never stored: the features are kept instead */
    if (ot->truncate)
      PetscCall(AckdOTTruncatedSetUp(ot, lo_s, hi_s, &xs, lo_t, hi_t, &yt, row_term, col_term));
    else
      PetscCall(AckdOTOnlineSetUp(ot, lo_s, hi_s, &xs, lo_t, hi_t, &yt, row_term, col_term));
    PetscCall(PetscFree3(row_term, col_term, buf));
    ot->has_cost = PETSC_TRUE;
    PetscCall(PetscLogEventEnd(ot->event_cost, 0, 0, 0, 0));
    PetscFunctionReturn(0);
  }
  PetscCall(distribute(ot, ot->ns, lo_s, hi_s, xs, &X, desc_x));
  PetscCall(PetscFree(xs));
  PetscCall(distribute(ot, ot->nt, lo_t, hi_t, yt, &Y, desc_y));
  PetscCall(PetscFree(yt));

  /* C = scale * X~ Y~^T */
  const int zero = 0, one = 1, block = (int)ot->block, ns = (int)ot->ns, nt = (int)ot->nt, dim = (int)ot->dim;
  PetscCall(AckdOTSetLayout(ot));
  int lld = (int)ot->lld;
  descinit_(desc_c, &ns, &nt, &block, &block, &zero, &zero, &g->context, &lld, &info);
  PetscCheck(info == 0, ot->comm, PETSC_ERR_LIB, "descinit_ failed for the cost matrix (argument %d)", -info);
  PetscCall(PetscFree(ot->C));
  PetscCall(PetscCalloc1((size_t)ot->lld * PetscMax(1, ot->nloc), &ot->C));
  const double scale = AckdOTGemmScale(ot), beta = 0.0;
  pdgemm_("N", "T", &ns, &nt, &dim, &scale, X, &one, &one, desc_x, Y, &one, &one, desc_y, &beta, ot->C, &one, &one,
          desc_c);
  PetscCall(PetscFree(X));
  PetscCall(PetscFree(Y));

  double *row_loc, *col_loc, local_max;
  PetscCall(PetscMalloc2(ot->mloc + 1, &row_loc, ot->nloc + 1, &col_loc));
  for (PetscInt i = 0; i < ot->mloc; i++) row_loc[i] = row_term[ot->row_global[i]];
  for (PetscInt j = 0; j < ot->nloc; j++) col_loc[j] = col_term[ot->col_global[j]];
  local_max = AckdOTFinishCosts(ot, 0, ot->mloc, 0, ot->nloc, ot->C, ot->lld, row_loc, col_loc);
  PetscCall(PetscFree2(row_loc, col_loc));
  PetscCallMPI(MPI_Allreduce(&local_max, &ot->max_cost, 1, MPI_DOUBLE, MPI_MAX, ot->comm));
  PetscCheck(ot->max_cost > -INFINITY, ot->comm, PETSC_ERR_USER_INPUT,
             "every cost is +inf: no student shares a class with any teacher; check the labels");
  PetscCall(PetscFree3(row_term, col_term, buf));
  PetscCall(PetscFree(ot->C32));
  if (ot->single) { /* assembled in double (PDGEMM), stored in float */
    size_t n = (size_t)ot->lld * PetscMax(1, ot->nloc);
    PetscCall(PetscMalloc1(n, &ot->C32));
    for (size_t t = 0; t < n; t++) ot->C32[t] = (float)ot->C[t];
    PetscCall(PetscFree(ot->C));
  }
  ot->has_cost = PETSC_TRUE;
  PetscCall(PetscLogEventEnd(ot->event_cost, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}
