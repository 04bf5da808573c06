/* -kd_method dkd: decoupled KD (Zhao et al., CVPR 2022). With b = (p_y, 1 - p_y)
 * the binary target/non-target split and p̂ the softmax over the non-target
 * classes only (both at temperature T):
 *   DKD = min((epoch + 1) / warmup, 1) T² [alpha KL(b_t || b_s) + beta KL(p̂_t || p̂_s)],
 * alpha 1, beta 8, T 4, a warm-up of the authors' 20 of 240 epochs scaled to the
 * run (epochs 0-based here, 1-based in the authors' loop, hence epoch + 1). CE weight 1. */
#include "kd_impl.h"
#include <math.h>

typedef struct {
  PetscReal alpha, beta, T;
  PetscInt  warmup;
} DKD;

static PetscErrorCode create(AckdKDObj kd)
{
  DKD *m;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&m));
  m->alpha  = 1.0;
  m->beta   = 8.0;
  m->T      = 4.0;
  m->warmup = -1; /* resolved in setup, once the run's epochs are known */
  kd->data  = m;
  PetscFunctionReturn(0);
}

static PetscErrorCode options(AckdKDObj kd, PetscOptionItems *PetscOptionsObject)
{
  DKD *m = (DKD *)kd->data;

  PetscFunctionBeginUser;
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-dkd_alpha", "DKD: weight of the target-class term (TCKD)", &m->alpha,
                            0.0, 1e6, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-dkd_beta", "DKD: weight of the non-target term (NCKD)", &m->beta, 0.0,
                            1e6, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-dkd_temperature", "DKD temperature T", &m->T, 1e-3, 1e3, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-dkd_warmup",
                           "DKD: epochs over which its weight ramps up linearly (default: 1/12 of the run, "
                           "the authors' 20 of 240)",
                           &m->warmup, 0, 1000000, NULL));
  PetscFunctionReturn(0);
}

static PetscErrorCode setup(AckdKDObj kd)
{
  PetscFunctionBeginUser;
  PetscCall(ackd_kd_resolve_warmup(kd, "-dkd_warmup", 20, 240, &((DKD *)kd->data)->warmup));
  PetscFunctionReturn(0);
}

static PetscErrorCode loss(AckdKDObj kd, const KDStep *st, double coef, double *value)
{
  DKD     *m = (DKD *)kd->data;
  PetscInt K = st->K;
  double   T = m->T, ramp = m->warmup > 0 ? PetscMin((double)(st->in->epoch + 1) / (double)m->warmup, 1.0) : 1.0;
  double   v = 0.0;

  PetscFunctionBeginUser;
  PetscCheck(K > 1, kd->comm, PETSC_ERR_ARG_OUTOFRANGE, "-kd_method dkd needs at least 2 classes");
  for (PetscInt s = 0; s < st->nsel; s++) {
    PetscInt i = st->sel[s], y = st->in->labels[i];
    double   zs[K], lps[K], lpt[K], c = ramp * T * T * st->w[i] * st->inv_n, *g = st->g_logits + i * K;
    double   ps_y, pt_y, tckd, nckd = 0.0, dps_y;
    for (PetscInt k = 0; k < K; k++) zs[k] = st->in->student_logits->data[i * K + k];
    ackd_kd_log_softmax(zs, K, T, lps);
    ackd_kd_log_softmax(st->zt + i * K, K, T, lpt);
    ps_y = exp(lps[y]);
    pt_y = exp(lpt[y]);
    /* TCKD on the binary split; 1 - p_y as log1p(-p_y) keeps the rest's mass exact */
    double ls1 = lps[y], ls2 = log1p(-ps_y), lt1 = lpt[y], lt2 = log1p(-pt_y);
    tckd  = pt_y * (lt1 - ls1) + (1.0 - pt_y) * (lt2 - ls2);
    dps_y = -pt_y / ps_y + (1.0 - pt_y) / (1.0 - ps_y); /* d TCKD / d p_s,y */
    for (PetscInt k = 0; k < K; k++) g[k] += coef * c * m->alpha * dps_y * ps_y * ((k == y) - exp(lps[k])) / T;
    /* NCKD: softmax over k != y, i.e. the logits with class y removed */
    {
      double zs2[K - 1], zt2[K - 1], g2[K - 1];
      for (PetscInt k = 0, j = 0; k < K; k++)
        if (k != y) {
          zs2[j]  = zs[k];
          zt2[j]  = st->zt[i * K + k];
          g2[j++] = 0.0;
        }
      nckd = ackd_kd_kl_row(zt2, zs2, K - 1, T, 1.0, g2, NULL);
      for (PetscInt k = 0, j = 0; k < K; k++)
        if (k != y) g[k] += coef * c * m->beta * g2[j++];
    }
    v += c * (m->alpha * tckd + m->beta * nckd);
  }
  *value = v;
  PetscFunctionReturn(0);
}

const KDMethod ackd_kd_dkd = {.name            = "dkd",
                              .help            = "decoupled KD (TCKD + NCKD)",
                              .needs           = KD_NEEDS_LOGITS,
                              .on_class_subset = PETSC_TRUE,
                              .create          = create,
                              .options         = options,
                              .setup           = setup,
                              .loss            = loss};
