/* -kd_method kd: Hinton's distillation, KL(p_t^T || p_s^T) per sample.
 * Without SemBridge: (1 - alpha) CE + alpha T² KL, T = 4, alpha = 0.9.
 * With SemBridge the authors' KD: KL at T = 3 without the T² factor (weights
 * 0.3 CE + 0.4 KD come from kd.c). */
#include "kd_impl.h"

typedef struct {
  PetscReal T, alpha;
  PetscBool t2;
} KD;

static PetscErrorCode create(AckdKDObj kd)
{
  KD *m;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&m));
  m->T     = kd->sembridge ? 3.0 : 4.0;
  m->alpha = 0.9;
  m->t2    = kd->sembridge ? PETSC_FALSE : PETSC_TRUE;
  kd->data = m;
  PetscFunctionReturn(0);
}

static PetscErrorCode options(AckdKDObj kd, PetscOptionItems *PetscOptionsObject)
{
  KD *m = (KD *)kd->data;

  PetscFunctionBeginUser;
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-kd_temperature", "KD temperature T (4; 3 with -sembridge)", &m->T,
                            1e-3, 1e3, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-kd_alpha", "KD's weight alpha: (1 - alpha) CE + alpha KD", &m->alpha,
                            0.0, 1.0, NULL));
  PetscCall(AckdOptionsBool(PetscOptionsObject, "-kd_t2", "Multiply the KL by T² (Hinton; off with -sembridge)", &m->t2,
                            NULL));
  PetscFunctionReturn(0);
}

static void weights(AckdKDObj kd, double *ce, double *w)
{
  ackd_kd_alpha_weights(((KD *)kd->data)->alpha, ce, w);
}

/* The soft term's gradient is 1/T² of the label's without the T² factor (Hinton et al. 2015, 2.1). */
static double label_share(AckdKDObj kd)
{
  KD *m = (KD *)kd->data;
  return m->t2 ? 1.0 : 1.0 / (m->T * m->T);
}

static PetscErrorCode loss(AckdKDObj kd, const KDStep *st, double coef, double *value)
{
  KD      *m = (KD *)kd->data;
  PetscInt K = st->K;
  double   f = m->t2 ? m->T * m->T : 1.0, v = 0.0;

  PetscFunctionBeginUser;
  for (PetscInt s = 0; s < st->nsel; s++) {
    PetscInt i = st->sel[s];
    double   zs[K], c = f * st->w[i] * st->inv_n;
    for (PetscInt k = 0; k < K; k++) zs[k] = st->in->student_logits->data[i * K + k];
    v += c * ackd_kd_kl_row(st->zt + i * K, zs, K, m->T, coef * c, st->g_logits + i * K, NULL);
  }
  *value = v;
  PetscFunctionReturn(0);
}

const KDMethod ackd_kd_kd = {.name            = "kd",
                             .help            = "Hinton KD: T² KL(p_t^T || p_s^T)",
                             .needs           = KD_NEEDS_LOGITS,
                             .on_class_subset = PETSC_TRUE,
                             .create          = create,
                             .options         = options,
                             .loss            = loss,
                             .weights         = weights,
                             .label_share     = label_share};
