/* -kd_method fitnet: hints (Romero et al., ICLR 2015). A learned regressor r
 * (a 1x1 convolution = a linear map C_s -> C_t on every token, with bias) maps
 * the student's layer-4 tokens onto the teacher's:
 *   beta * mean over (token, channel) of (r(Z_s) - Z_t)², beta = 100.
 * -fitnet_feature embedding uses the pooled embeddings instead (a Linear D_s ->
 * D_t), which a gallery provides and which needs no equal token grid. The term
 * itself is hint.c's, which -kd_hint_weight adds to the other methods. */
#include "kd_impl.h"

typedef struct {
  PetscReal beta;
  KDHint    hint;
} FitNet;

static PetscErrorCode create(AckdKDObj kd)
{
  FitNet *m;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&m));
  m->beta        = 100.0;
  m->hint.option = "-fitnet_feature"; /* named in refusals even when no options are read */
  kd->data       = m;
  PetscFunctionReturn(0);
}

static PetscErrorCode options(AckdKDObj kd, PetscOptionItems *PetscOptionsObject)
{
  FitNet *m = (FitNet *)kd->data;

  PetscFunctionBeginUser;
  PetscCall(
      AckdOptionsReal(PetscOptionsObject, "-fitnet_beta", "FitNet: weight of the hint MSE", &m->beta, 0.0, 1e9, NULL));
  PetscCall(ackd_kd_hint_feature_option(PetscOptionsObject, "-fitnet_feature", &m->hint));
  PetscFunctionReturn(0);
}

static PetscErrorCode setup(AckdKDObj kd)
{
  FitNet *m = (FitNet *)kd->data;

  PetscFunctionBeginUser;
  PetscCall(ackd_kd_hint_setup(
      kd, &m->hint, m->hint.embedding ? "-kd_method fitnet -fitnet_feature embedding" : "-kd_method fitnet", "fitnet"));
  PetscFunctionReturn(0);
}

static PetscErrorCode loss(AckdKDObj kd, const KDStep *st, double coef, double *value)
{
  FitNet *m = (FitNet *)kd->data;

  PetscFunctionBeginUser;
  PetscCall(ackd_kd_hint_loss(kd, &m->hint, st, "-kd_method fitnet", m->beta, coef, value));
  PetscFunctionReturn(0);
}

static PetscBool wants_tokens(AckdKDObj kd)
{
  return (PetscBool) !((FitNet *)kd->data)->hint.embedding;
}

const KDMethod ackd_kd_fitnet = {.name         = "fitnet",
                                 .help         = "hint regression on tokens (or embeddings)",
                                 .create       = create,
                                 .options      = options,
                                 .setup        = setup,
                                 .loss         = loss,
                                 .wants_tokens = wants_tokens};
