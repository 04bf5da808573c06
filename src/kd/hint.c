/* A hint (Romero et al., ICLR 2015): a learned regressor r, a linear map C_s -> C_t with bias on
 * every token (a 1x1 convolution), takes the student's layer-4 tokens onto the teacher's, or the
 * pooled embedding D_s onto D_t. Per taught sample the term is the mean over (token, channel) of
 * (r(Z_s) - Z_t)²; the batch's value is Σ_i w_i · that / N.
 *
 * Two users: -kd_method fitnet is this term alone, times its beta; -kd_hint_weight adds it to any
 * method as a term of its own ("hint", with its own regressor), which is how SemBridge's logit
 * term and a hint at cross-entropy's size are studied together (docs/KD.md). */
#include "kd_impl.h"

static const char *const features[] = {"tokens", "embedding"};

PetscErrorCode ackd_kd_hint_feature_option(PetscOptionItems *PetscOptionsObject, const char *option, KDHint *h)
{
  PetscInt choice = h->embedding ? 1 : 0;

  PetscFunctionBeginUser;
  h->option = option;
  PetscCall(AckdOptionsChoice(PetscOptionsObject, option,
                              "The hint's feature: layer-4 tokens (equal token grids) or the pooled embedding",
                              features, 2, &choice, NULL));
  h->embedding = choice == 1 ? PETSC_TRUE : PETSC_FALSE;
  PetscFunctionReturn(0);
}

PetscErrorCode ackd_kd_hint_setup(AckdKDObj kd, KDHint *h, const char *who, const char *name)
{
  char fix[128], regressor[64];

  PetscFunctionBeginUser;
  PetscCall(PetscSNPrintf(fix, sizeof fix, "distill from a teacher checkpoint, or use %s embedding", h->option));
  PetscCall(ackd_kd_refuse_missing(kd, h->embedding ? KD_NEEDS_EMBEDDING : KD_NEEDS_TOKENS, who, fix));
  h->in  = h->embedding ? kd->dims.student_embedding : kd->dims.student_channels;
  h->out = h->embedding ? kd->dims.teacher_embedding : kd->dims.teacher_channels;
  PetscCall(PetscSNPrintf(regressor, sizeof regressor, "%s.regressor", name));
  PetscCall(ackd_kd_add_linear(kd, regressor, h->out, h->in, &h->weight, &h->bias));
  PetscFunctionReturn(0);
}

PetscErrorCode ackd_kd_hint_loss(AckdKDObj kd, const KDHint *h, const KDStep *st, const char *who, double scale,
                                 double coef, double *value)
{
  const AckdTensor *xs = h->embedding ? st->in->student_embedding : st->in->student_tokens;
  const AckdTensor *xt = h->embedding ? st->in->teacher_embedding : st->in->teacher_tokens;
  double           *gx = h->embedding ? st->g_emb : st->g_tok, *x, *y, *dy, *gxs, v = 0.0;
  const float      *W = kd->params.values + h->weight, *b = kd->params.values + h->bias;

  PetscFunctionBeginUser;
  *value = 0.0;
  if (st->B == 0) PetscFunctionReturn(0); /* no share of an uneven last batch: no tokens to count */
  PetscCheck(xs && xt, kd->comm, PETSC_ERR_ARG_NULL, "%s: this batch has no teacher or student %s", who,
             h->embedding ? "embedding" : "tokens");
  const PetscInt ns = AckdTensorSize(xs) / (st->B * h->in), nt = AckdTensorSize(xt) / (st->B * h->out);
  PetscCheck(ns * h->in * st->B == AckdTensorSize(xs) && nt * h->out * st->B == AckdTensorSize(xt) && ns == nt,
             kd->comm, PETSC_ERR_USER_INPUT,
             "%s: the student has %" PetscInt_FMT " tokens per sample, the teacher %" PetscInt_FMT
             "; use %s embedding when the token grids differ",
             who, ns, nt, h->option);
  /* every taught sample's rows in one GEMM each way */
  const PetscInt rows = st->nsel * ns, per = ns * h->out;
  PetscCall(ackd_kd_gather(xs, ns * h->in, st->nsel, st->sel, &x));
  PetscCall(PetscMalloc2(rows * h->out, &y, rows * h->out, &dy));
  PetscCall(PetscCalloc1(rows * h->in, &gxs));
  PetscCall(ackd_kd_linear(x, rows, h->in, W, h->out, y));
  for (PetscInt s = 0; s < st->nsel; s++) {
    const PetscInt i = st->sel[s];
    const float   *t = xt->data + i * per;
    const double   c = scale * st->w[i] * st->inv_n / (double)per;
    for (PetscInt e = 0; e < per; e++) {
      const PetscInt o = e % h->out;
      const double   d = y[s * per + e] + b[o] - t[e];
      v += c * d * d;
      dy[s * per + e] = coef * c * 2.0 * d;
      st->g_params[h->bias + o] += dy[s * per + e];
    }
  }
  PetscCall(ackd_kd_linear_backward(x, rows, h->in, W, h->out, dy, gxs, st->g_params + h->weight));
  for (PetscInt s = 0; s < st->nsel; s++)
    for (PetscInt k = 0; k < ns * h->in; k++) gx[st->sel[s] * ns * h->in + k] += gxs[s * ns * h->in + k];
  PetscCall(PetscFree2(y, dy));
  PetscCall(PetscFree(gxs));
  PetscCall(PetscFree(x));
  *value = v;
  PetscFunctionReturn(0);
}
