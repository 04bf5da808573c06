/* -kd_method logits: regress the teacher's logits, beta * mean over classes of
 * (z_s - z_t)², beta = 0.01 (docs/KD.md). */
#include "kd_impl.h"

typedef struct {
  PetscReal beta;
} Logits;

static PetscErrorCode create(AckdKDObj kd)
{
  Logits *m;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&m));
  m->beta  = 0.01;
  kd->data = m;
  PetscFunctionReturn(0);
}

static PetscErrorCode options(AckdKDObj kd, PetscOptionItems *PetscOptionsObject)
{
  PetscFunctionBeginUser;
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-logits_beta", "Weight of the logit MSE", &((Logits *)kd->data)->beta,
                            0.0, 1e6, NULL));
  PetscFunctionReturn(0);
}

static PetscErrorCode loss(AckdKDObj kd, const KDStep *st, double coef, double *value)
{
  PetscInt K = st->K;
  double   v = 0.0;

  PetscFunctionBeginUser;
  for (PetscInt s = 0; s < st->nsel; s++) {
    PetscInt i = st->sel[s];
    double   c = ((Logits *)kd->data)->beta * st->w[i] * st->inv_n / (double)K;
    for (PetscInt k = 0; k < K; k++) {
      double d = (double)st->in->student_logits->data[i * K + k] - st->zt[i * K + k];
      v += c * d * d;
      st->g_logits[i * K + k] += coef * c * 2.0 * d;
    }
  }
  *value = v;
  PetscFunctionReturn(0);
}

const KDMethod ackd_kd_logits = {.name            = "logits",
                                 .help            = "beta MSE(z_s, z_t)",
                                 .needs           = KD_NEEDS_LOGITS,
                                 .on_class_subset = PETSC_TRUE,
                                 .create          = create,
                                 .options         = options,
                                 .loss            = loss};
