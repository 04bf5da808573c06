/* The self-supervised matcher's projection head and its soft-target
 * contrastive loss (docs/DESIGN.md §2, item 2; the formulas in docs/KD.md, "SemBridge"). The head reuses nn's layers;
 * the loss is written here in double. */
#include "kd_impl.h"
#include <cblas.h>
#include <math.h>

PetscErrorCode AckdSSMHeadSetUp(AckdSSMHead *head, AckdParams *params, const char *name, PetscInt in, PetscInt out,
                                double dropout, uint64_t seed, uint32_t tag)
{
  char sub[ACKD_NN_NAME_LEN + 16];

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(head, sizeof *head));
  PetscCall(PetscStrncpy(head->name, name, sizeof head->name));
  head->in  = in;
  head->out = out;
  PetscCall(PetscSNPrintf(sub, sizeof sub, "%s.projection", name));
  PetscCall(AckdLinearSetUp(&head->projection, params, sub, in, out, PETSC_TRUE));
  PetscCall(PetscSNPrintf(sub, sizeof sub, "%s.fc", name));
  PetscCall(AckdLinearSetUp(&head->fc, params, sub, out, out, PETSC_TRUE));
  PetscCall(PetscSNPrintf(sub, sizeof sub, "%s.dropout", name));
  PetscCall(AckdDropoutSetUp(&head->dropout, sub, dropout, seed, tag));
  PetscCall(PetscSNPrintf(sub, sizeof sub, "%s.layer_norm", name));
  PetscCall(AckdLayerNormSetUp(&head->norm, params, sub, out));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdSSMHeadSetTraining(AckdSSMHead *head, PetscBool training, PetscInt step, PetscInt sample_offset)
{
  PetscFunctionBeginUser;
  head->dropout.training      = training;
  head->dropout.step          = step;
  head->dropout.sample_offset = sample_offset;
  PetscFunctionReturn(0);
}

static PetscErrorCode reserve(AckdSSMHead *head, PetscInt rows)
{
  PetscInt n = rows * head->out;

  PetscFunctionBeginUser;
  if (rows > head->rows_capacity) {
    PetscCall(PetscFree7(head->p, head->g, head->f, head->r, head->y, head->dy, head->dg));
    PetscCall(
        PetscMalloc7(n, &head->p, n, &head->g, n, &head->f, n, &head->r, n, &head->y, n, &head->dy, n, &head->dg));
    head->rows_capacity = rows;
  }
  PetscFunctionReturn(0);
}

#define VIEW(buf) AckdTensorView((buf), B, head->out, 1, 1)

PetscErrorCode AckdSSMHeadForward(AckdSSMHead *head, AckdEngine *engine, const AckdTensor *x, AckdTensor *e)
{
  PetscInt   B = x->n;
  AckdTensor p, g, f, r, y;

  PetscFunctionBeginUser;
  PetscCheck(AckdTensorSize(x) == B * head->in, PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ,
             "SSM head %s: input has %" PetscInt_FMT " features per sample, the head expects %" PetscInt_FMT,
             head->name, AckdTensorSize(x) / PetscMax(B, 1), head->in);
  PetscCall(reserve(head, B));
  p = VIEW(head->p);
  g = VIEW(head->g);
  f = VIEW(head->f);
  r = VIEW(head->r);
  y = VIEW(head->y);
  PetscCall(AckdLinearForward(&head->projection, engine, x, &p));
  PetscCall(AckdActivationForward(ACKD_ACT_GELU, &p, &g));
  PetscCall(AckdLinearForward(&head->fc, engine, &g, &f));
  PetscCall(AckdDropoutForward(&head->dropout, &f, &r));
  for (PetscInt i = 0; i < B * head->out; i++) head->y[i] = head->p[i] + head->r[i];
  *e = AckdTensorView(e->data, B, head->out, 1, 1);
  PetscCall(AckdLayerNormForward(&head->norm, &y, e));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdSSMHeadBackward(AckdSSMHead *head, AckdEngine *engine, const AckdTensor *x, const AckdTensor *de,
                                   AckdTensor *dx)
{
  PetscInt   B = x->n;
  AckdTensor p, g, y, dy, dg, tmp;

  PetscFunctionBeginUser;
  PetscCheck(B <= head->rows_capacity, PETSC_COMM_SELF, PETSC_ERR_ORDER, "SSM head %s: backward before forward",
             head->name);
  p  = VIEW(head->p);
  g  = VIEW(head->g);
  y  = VIEW(head->y);
  dy = VIEW(head->dy);
  dg = VIEW(head->dg);
  PetscCall(AckdLayerNormBackward(&head->norm, &y, de, &dy));
  /* y = p + dropout(fc(gelu(p))): the residual's gradient reaches p twice */
  tmp = VIEW(head->f); /* the forward's fc output is no longer needed: scratch for d fc */
  PetscCall(AckdDropoutBackward(&head->dropout, &dy, &tmp));
  PetscCall(AckdLinearBackward(&head->fc, engine, &g, &tmp, &dg));
  tmp = VIEW(head->r); /* scratch for d p through GELU */
  PetscCall(AckdActivationBackward(ACKD_ACT_GELU, &p, &dg, &tmp));
  for (PetscInt i = 0; i < B * head->out; i++) head->dy[i] += head->r[i];
  PetscCall(AckdLinearBackward(&head->projection, engine, x, &dy, dx));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdSSMHeadDestroy(AckdSSMHead *head)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree7(head->p, head->g, head->f, head->r, head->y, head->dy, head->dg));
  PetscCall(AckdDropoutDestroy(&head->dropout));
  PetscCall(AckdLayerNormDestroy(&head->norm));
  head->rows_capacity = 0;
  PetscFunctionReturn(0);
}

/* Row-wise log softmax of an n x n matrix (transposed = column-wise). */
static void log_softmax_rows(const double *a, PetscInt n, PetscBool columns, double *out)
{
  PetscInt rs = columns ? 1 : n, cs = columns ? n : 1; /* strides of a row and of a column */
  for (PetscInt i = 0; i < n; i++) {
    double max = -INFINITY, sum = 0.0;
    for (PetscInt j = 0; j < n; j++) max = PetscMax(max, a[i * rs + j * cs]);
    for (PetscInt j = 0; j < n; j++) sum += exp(a[i * rs + j * cs] - max);
    for (PetscInt j = 0; j < n; j++) out[i * rs + j * cs] = a[i * rs + j * cs] - max - log(sum);
  }
}

/* With R = softmax_rows(L), Q = softmax_cols(L), T = softmax_rows(A):
 *   d/dL = [(R - T) + (Q ⊙ colsum(T) - T)] / (2B),
 *   d/dT = -(log R + log Q) / (2B), d/dA = T ⊙ (dT - rowsum(dT ⊙ T)),
 *   dE_rgb = dL E_ms / τ + τ/2 (dA + dAᵀ) E_rgb, dE_ms = dLᵀ E_rgb / τ + τ/2 (dA + dAᵀ) E_ms. */
PetscErrorCode AckdSSMLoss(const AckdTensor *e_rgb, const AckdTensor *e_ms, double tau, double scale, double *loss,
                           AckdTensor *d_rgb, AckdTensor *d_ms)
{
  PetscInt B = e_rgb->n, d = AckdTensorSize(e_rgb) / PetscMax(B, 1);
  double  *er, *em, *L, *A, *T, *lr, *lc, *dL, *dA, *gr, *gm, v = 0.0;

  PetscFunctionBeginUser;
  PetscCheck(e_ms->n == B && AckdTensorSize(e_ms) == B * d, PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ,
             "AckdSSMLoss: the RGB and MS embeddings differ in shape");
  PetscCheck(tau > 0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE, "AckdSSMLoss: tau must be positive");
  PetscCall(ackd_kd_gather(e_rgb, d, B, NULL, &er));
  PetscCall(ackd_kd_gather(e_ms, d, B, NULL, &em));
  PetscCall(PetscMalloc6(B * B, &L, B * B, &A, B * B, &T, B * B, &lr, B * B, &lc, B * B, &dL));
  PetscCall(PetscMalloc3(B * B, &dA, B * d, &gr, B * d, &gm));
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)B, (int)d, 1.0 / tau, er, (int)d, em, (int)d, 0.0,
              L, (int)B);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)B, (int)d, tau / 2, em, (int)d, em, (int)d, 0.0, A,
              (int)B);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)B, (int)d, tau / 2, er, (int)d, er, (int)d, 1.0, A,
              (int)B);
  log_softmax_rows(A, B, PETSC_FALSE, T);
  for (PetscInt k = 0; k < B * B; k++) T[k] = exp(T[k]);
  log_softmax_rows(L, B, PETSC_FALSE, lr);
  log_softmax_rows(L, B, PETSC_TRUE, lc);
  for (PetscInt k = 0; k < B * B; k++) v -= T[k] * (lr[k] + lc[k]) / (2.0 * B);
  for (PetscInt j = 0; j < B; j++) {
    double colsum = 0.0;
    for (PetscInt i = 0; i < B; i++) colsum += T[i * B + j];
    for (PetscInt i = 0; i < B; i++) {
      PetscInt k = i * B + j;
      dL[k]      = scale * ((exp(lr[k]) - T[k]) + (exp(lc[k]) * colsum - T[k])) / (2.0 * B);
      dA[k]      = -scale * (lr[k] + lc[k]) / (2.0 * B); /* dT for now */
    }
  }
  for (PetscInt i = 0; i < B; i++) {
    double dot = 0.0;
    for (PetscInt j = 0; j < B; j++) dot += dA[i * B + j] * T[i * B + j];
    for (PetscInt j = 0; j < B; j++) dA[i * B + j] = T[i * B + j] * (dA[i * B + j] - dot);
  }
  for (PetscInt i = 0; i < B; i++)
    for (PetscInt j = i; j < B; j++) {
      double sym    = dA[i * B + j] + dA[j * B + i];
      dA[i * B + j] = dA[j * B + i] = sym;
    }
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)B, (int)d, (int)B, 1.0 / tau, dL, (int)B, em, (int)d, 0.0,
              gr, (int)d);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)B, (int)d, (int)B, tau / 2, dA, (int)B, er, (int)d, 1.0,
              gr, (int)d);
  cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)B, (int)d, (int)B, 1.0 / tau, dL, (int)B, er, (int)d, 0.0,
              gm, (int)d);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)B, (int)d, (int)B, tau / 2, dA, (int)B, em, (int)d, 1.0,
              gm, (int)d);
  if (d_rgb)
    for (PetscInt k = 0; k < B * d; k++) d_rgb->data[k] = (float)gr[k];
  if (d_ms)
    for (PetscInt k = 0; k < B * d; k++) d_ms->data[k] = (float)gm[k];
  *loss = scale * v;
  PetscCall(PetscFree6(L, A, T, lr, lc, dL));
  PetscCall(PetscFree3(dA, gr, gm));
  PetscCall(PetscFree(er));
  PetscCall(PetscFree(em));
  PetscFunctionReturn(0);
}
