/* -kd_method fitnet: hints (Romero et al., ICLR 2015). A learned regressor r
 * (a 1x1 convolution = a linear map C_s -> C_t on every token, with bias) maps
 * the student's layer-4 tokens onto the teacher's:
 *   beta * mean over (token, channel) of (r(Z_s) - Z_t)², beta = 100.
 * -fitnet_feature embedding uses the pooled embeddings instead (a Linear D_s ->
 * D_t), which a gallery provides and which needs no equal token grid. */
#include "kd_impl.h"

typedef struct {
  PetscReal beta;
  PetscBool embedding;
  PetscInt  weight, bias, in, out;
} FitNet;

static PetscErrorCode create(AckdKDObj kd)
{
  FitNet *m;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&m));
  m->beta  = 100.0;
  kd->data = m;
  PetscFunctionReturn(0);
}

static const char *const features[] = {"tokens", "embedding"};

static PetscErrorCode options(AckdKDObj kd, PetscOptionItems *PetscOptionsObject)
{
  FitNet  *m      = (FitNet *)kd->data;
  PetscInt choice = m->embedding ? 1 : 0;

  PetscFunctionBeginUser;
  PetscCall(
      AckdOptionsReal(PetscOptionsObject, "-fitnet_beta", "FitNet: weight of the hint MSE", &m->beta, 0.0, 1e9, NULL));
  PetscCall(AckdOptionsChoice(PetscOptionsObject, "-fitnet_feature",
                              "FitNet's hint: layer-4 tokens (equal token grids) or the pooled embedding", features, 2,
                              &choice, NULL));
  m->embedding = choice == 1 ? PETSC_TRUE : PETSC_FALSE;
  PetscFunctionReturn(0);
}

static PetscErrorCode setup(AckdKDObj kd)
{
  FitNet  *m = (FitNet *)kd->data;
  PetscInt shape[2];

  PetscFunctionBeginUser;
  PetscCall(ackd_kd_refuse_missing(kd, m->embedding ? KD_NEEDS_EMBEDDING : KD_NEEDS_TOKENS,
                                   m->embedding ? "-kd_method fitnet -fitnet_feature embedding" : "-kd_method fitnet",
                                   "distill from a teacher checkpoint, or use -fitnet_feature embedding"));
  m->in    = m->embedding ? kd->dims.student_embedding : kd->dims.student_channels;
  m->out   = m->embedding ? kd->dims.teacher_embedding : kd->dims.teacher_channels;
  shape[0] = m->out;
  shape[1] = m->in;
  PetscCall(AckdParamsAddShaped(&kd->params, "fitnet.regressor.weight", 2, shape, m->in, ACKD_INIT_KAIMING_UNIFORM,
                                &m->weight));
  PetscCall(AckdParamsAdd(&kd->params, "fitnet.regressor.bias", m->out, m->in, ACKD_INIT_FAN_IN_UNIFORM, &m->bias));
  PetscFunctionReturn(0);
}

static PetscErrorCode loss(AckdKDObj kd, const KDStep *st, double coef, double *value)
{
  FitNet           *m  = (FitNet *)kd->data;
  const AckdTensor *xs = m->embedding ? st->in->student_embedding : st->in->student_tokens;
  const AckdTensor *xt = m->embedding ? st->in->teacher_embedding : st->in->teacher_tokens;
  PetscInt          ns = AckdTensorSize(xs) / (st->B * m->in), nt = AckdTensorSize(xt) / (st->B * m->out);
  double           *gx = m->embedding ? st->g_emb : st->g_tok, *x, *y, *dy, *gxs, v = 0.0;
  const float      *W = kd->params.values + m->weight, *b = kd->params.values + m->bias;

  PetscFunctionBeginUser;
  PetscCheck(ns * m->in * st->B == AckdTensorSize(xs) && nt * m->out * st->B == AckdTensorSize(xt) && ns == nt,
             kd->comm, PETSC_ERR_USER_INPUT,
             "-kd_method fitnet: the student has %" PetscInt_FMT " tokens per sample, the teacher %" PetscInt_FMT
             "; use -fitnet_feature embedding when the token grids differ",
             ns, nt);
  /* every selected sample's rows in one GEMM each way */
  PetscInt rows = st->nsel * ns;
  PetscCall(ackd_kd_gather(xs, ns * m->in, st->nsel, st->sel, &x));
  PetscCall(PetscMalloc2(rows * m->out, &y, rows * m->out, &dy));
  PetscCall(PetscCalloc1(rows * m->in, &gxs));
  PetscCall(ackd_kd_linear(x, rows, m->in, W, m->out, y));
  for (PetscInt s = 0; s < st->nsel; s++) {
    PetscInt     i = st->sel[s];
    const float *t = xt->data + i * nt * m->out;
    double       c = m->beta * st->w[i] * st->inv_n / (double)(ns * m->out);
    for (PetscInt e = 0; e < ns * m->out; e++) {
      PetscInt o = e % m->out;
      double   d = y[s * ns * m->out + e] + b[o] - t[e];
      v += c * d * d;
      dy[s * ns * m->out + e] = coef * c * 2.0 * d;
      st->g_params[m->bias + o] += dy[s * ns * m->out + e];
    }
  }
  PetscCall(ackd_kd_linear_backward(x, rows, m->in, W, m->out, dy, gxs, st->g_params + m->weight));
  for (PetscInt s = 0; s < st->nsel; s++)
    for (PetscInt k = 0; k < ns * m->in; k++) gx[st->sel[s] * ns * m->in + k] += gxs[s * ns * m->in + k];
  PetscCall(PetscFree2(y, dy));
  PetscCall(PetscFree(gxs));
  PetscCall(PetscFree(x));
  *value = v;
  PetscFunctionReturn(0);
}

static PetscBool wants_tokens(AckdKDObj kd)
{
  return (PetscBool) !((FitNet *)kd->data)->embedding;
}

const KDMethod ackd_kd_fitnet = {.name         = "fitnet",
                                 .help         = "hint regression on tokens (or embeddings)",
                                 .create       = create,
                                 .options      = options,
                                 .setup        = setup,
                                 .loss         = loss,
                                 .wants_tokens = wants_tokens};
