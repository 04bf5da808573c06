/* Multi-head self-attention on OpenBLAS. Per sample and head, the scores
 * Q Kᵀ are a (T x T) GEMM on strided views of the packed QKV matrix, so no
 * head is ever copied out. Softmax rows are shifted by their maximum. */
#include <ackd/nn.h>
#include <math.h>

PetscErrorCode AckdAttentionSetUp(AckdAttention *att, AckdParams *params, const char *name, PetscInt dim,
                                  PetscInt heads, PetscBool bias)
{
  char pname[ACKD_NN_NAME_LEN + 24];

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(att, sizeof *att));
  PetscCall(PetscStrncpy(att->name, name, sizeof att->name));
  PetscCheck(dim > 0 && heads > 0 && dim % heads == 0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "layer %s: %" PetscInt_FMT " heads do not divide the token dimension %" PetscInt_FMT, name, heads, dim);
  att->dim      = dim;
  att->heads    = heads;
  att->has_bias = bias;
  att->params   = params;
  att->in_bias = att->out_bias = -1;
  /* PyTorch draws in_proj_weight with xavier_uniform and zeroes both biases;
   * ackd keeps one default (kaiming_uniform, a = sqrt 5) for every matrix:
   * weights are exchanged explicitly whenever the two must agree. */
  PetscCall(PetscSNPrintf(pname, sizeof pname, "%s.in_proj_weight", name));
  PetscInt in_shape[2] = {3 * dim, dim}, out_shape[2] = {dim, dim};
  PetscCall(AckdParamsAddShaped(params, pname, 2, in_shape, dim, ACKD_INIT_KAIMING_UNIFORM, &att->in_weight));
  if (bias) {
    PetscCall(PetscSNPrintf(pname, sizeof pname, "%s.in_proj_bias", name));
    PetscCall(AckdParamsAdd(params, pname, 3 * dim, dim, ACKD_INIT_ZEROS, &att->in_bias));
  }
  PetscCall(PetscSNPrintf(pname, sizeof pname, "%s.out_proj.weight", name));
  PetscCall(AckdParamsAddShaped(params, pname, 2, out_shape, dim, ACKD_INIT_KAIMING_UNIFORM, &att->out_weight));
  if (bias) {
    PetscCall(PetscSNPrintf(pname, sizeof pname, "%s.out_proj.bias", name));
    PetscCall(AckdParamsAdd(params, pname, dim, dim, ACKD_INIT_ZEROS, &att->out_bias));
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode reserve(AckdAttention *att, PetscInt rows, PetscInt plans, PetscInt t)
{
  PetscInt d = att->dim;

  PetscFunctionBeginUser;
  if (rows > att->tokens_capacity) {
    PetscCall(PetscFree4(att->qkv, att->context, att->d_qkv, att->d_context));
    PetscCall(PetscMalloc4(rows * 3 * d, &att->qkv, rows * d, &att->context, rows * 3 * d, &att->d_qkv, rows * d,
                           &att->d_context));
    att->tokens_capacity = rows;
  }
  if (plans > att->plans_capacity) {
    PetscCall(PetscFree(att->attention));
    PetscCall(PetscMalloc1(plans, &att->attention));
    att->plans_capacity = plans;
  }
  if (t * t > att->scores_capacity) {
    PetscCall(PetscFree(att->d_scores));
    PetscCall(PetscMalloc1(t * t, &att->d_scores));
    att->scores_capacity = t * t;
  }
  PetscFunctionReturn(0);
}

/* rows x out = rows x in · (out x in)ᵀ + bias */
static PetscErrorCode project(const float *x, PetscInt rows, PetscInt in, const float *w, const float *b, PetscInt out,
                              float *y)
{
  PetscFunctionBeginUser;
  if (b)
    for (PetscInt r = 0; r < rows; r++)
      for (PetscInt o = 0; o < out; o++) y[r * out + o] = b[o];
  PetscCall(AckdSgemm('N', 'T', rows, out, in, 1.0f, x, in, w, in, b ? 1.0f : 0.0f, y, out));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdAttentionForward(AckdAttention *att, const AckdTensor *x, AckdTensor *y)
{
  PetscInt     d = att->dim, H = att->heads, hd = d / H, B = x->n, T = AckdTensorSize(x) / (x->n * d);
  const float *values = att->params->values;
  const float  scale  = (float)(1.0 / sqrt((double)hd));

  PetscFunctionBeginUser;
  PetscCheck(x->w == d, PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ,
             "layer %s: tokens have %" PetscInt_FMT " features, the layer expects %" PetscInt_FMT, att->name, x->w, d);
  PetscCall(reserve(att, B * T, B * H * T * T, T));
  *y = AckdTensorView(y->data, x->n, x->c, x->h, x->w);
  PetscCall(project(x->data, B * T, d, values + att->in_weight, att->has_bias ? values + att->in_bias : NULL, 3 * d,
                    att->qkv));
  for (PetscInt b = 0; b < B; b++)
    for (PetscInt h = 0; h < H; h++) {
      const float *q = att->qkv + b * T * 3 * d + h * hd, *k = q + d, *v = q + 2 * d;
      float       *p = att->attention + ((b * H + h) * T) * T;
      PetscCall(AckdSgemm('N', 'T', T, T, hd, scale, q, 3 * d, k, 3 * d, 0.0f, p, T));
      for (PetscInt i = 0; i < T; i++) {
        float *row = p + i * T, max = row[0];
        double sum = 0.0;
        for (PetscInt j = 1; j < T; j++) max = PetscMax(max, row[j]);
        for (PetscInt j = 0; j < T; j++) sum += (row[j] = expf(row[j] - max));
        for (PetscInt j = 0; j < T; j++) row[j] = (float)(row[j] / sum);
      }
      PetscCall(AckdSgemm('N', 'N', T, hd, T, 1.0f, p, T, v, 3 * d, 0.0f, att->context + b * T * d + h * hd, d));
    }
  PetscCall(project(att->context, B * T, d, values + att->out_weight, att->has_bias ? values + att->out_bias : NULL, d,
                    y->data));
  PetscFunctionReturn(0);
}

static void column_sums(const float *m, PetscInt rows, PetscInt cols, float *sums)
{
  for (PetscInt c = 0; c < cols; c++) sums[c] = 0.0f;
  for (PetscInt r = 0; r < rows; r++)
    for (PetscInt c = 0; c < cols; c++) sums[c] += m[r * cols + c];
}

/* With P = softmax(S): dS = P ⊙ (dP - rowsum(dP ⊙ P)). */
PetscErrorCode AckdAttentionBackward(AckdAttention *att, const AckdTensor *x, const AckdTensor *dy, AckdTensor *dx)
{
  PetscInt     d = att->dim, H = att->heads, hd = d / H, B = x->n, T = AckdTensorSize(x) / (x->n * d);
  const float *values = att->params->values;
  float       *grads  = att->params->grads;
  const float  scale  = (float)(1.0 / sqrt((double)hd));

  PetscFunctionBeginUser;
  PetscCheck(B * T <= att->tokens_capacity, PETSC_COMM_SELF, PETSC_ERR_ORDER, "layer %s: backward before forward",
             att->name);
  /* output projection: dW = dyᵀ context, db = Σ dy, d context = dy W */
  PetscCall(AckdSgemm('T', 'N', d, d, B * T, 1.0f, dy->data, d, att->context, d, 0.0f, grads + att->out_weight, d));
  if (att->has_bias) column_sums(dy->data, B * T, d, grads + att->out_bias);
  PetscCall(AckdSgemm('N', 'N', B * T, d, d, 1.0f, dy->data, d, values + att->out_weight, d, 0.0f, att->d_context, d));
  for (PetscInt b = 0; b < B; b++)
    for (PetscInt h = 0; h < H; h++) {
      const float *q = att->qkv + b * T * 3 * d + h * hd, *k = q + d, *v = q + 2 * d;
      const float *p = att->attention + ((b * H + h) * T) * T, *dc = att->d_context + b * T * d + h * hd;
      float       *dq = att->d_qkv + b * T * 3 * d + h * hd, *dk = dq + d, *dv = dq + 2 * d, *ds = att->d_scores;
      /* dV = Pᵀ dC, dP = dC Vᵀ */
      PetscCall(AckdSgemm('T', 'N', T, hd, T, 1.0f, p, T, dc, d, 0.0f, dv, 3 * d));
      PetscCall(AckdSgemm('N', 'T', T, T, hd, 1.0f, dc, d, v, 3 * d, 0.0f, ds, T));
      for (PetscInt i = 0; i < T; i++) {
        double dot = 0.0;
        for (PetscInt j = 0; j < T; j++) dot += (double)ds[i * T + j] * p[i * T + j];
        for (PetscInt j = 0; j < T; j++) ds[i * T + j] = (float)(p[i * T + j] * (ds[i * T + j] - dot)) * scale;
      }
      /* dQ = dS K, dK = dSᵀ Q */
      PetscCall(AckdSgemm('N', 'N', T, hd, T, 1.0f, ds, T, k, 3 * d, 0.0f, dq, 3 * d));
      PetscCall(AckdSgemm('T', 'N', T, hd, T, 1.0f, ds, T, q, 3 * d, 0.0f, dk, 3 * d));
    }
  /* input projection */
  PetscCall(AckdSgemm('T', 'N', 3 * d, d, B * T, 1.0f, att->d_qkv, 3 * d, x->data, d, 0.0f, grads + att->in_weight, d));
  if (att->has_bias) column_sums(att->d_qkv, B * T, 3 * d, grads + att->in_bias);
  if (dx) {
    *dx = AckdTensorView(dx->data, x->n, x->c, x->h, x->w);
    PetscCall(
        AckdSgemm('N', 'N', B * T, d, 3 * d, 1.0f, att->d_qkv, 3 * d, values + att->in_weight, d, 0.0f, dx->data, d));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdAttentionDestroy(AckdAttention *att)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree4(att->qkv, att->context, att->d_qkv, att->d_context));
  PetscCall(PetscFree(att->attention));
  PetscCall(PetscFree(att->d_scores));
  att->tokens_capacity = att->plans_capacity = att->scores_capacity = 0;
  PetscFunctionReturn(0);
}
