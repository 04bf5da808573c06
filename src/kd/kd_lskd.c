/* -kd_method lskd: logit standardisation (Sun et al., CVPR 2024) plugged into
 * KD: z' = (z - mean z) / (std z + 1e-7) (std unbiased, as torch.std) for both
 * networks, then T² KL(p_t'^T || p_s'^T), T = 3; weights as KD's (0.1 CE, 0.9). */
#include "kd_impl.h"
#include <math.h>

typedef struct {
  PetscReal T, alpha;
} LSKD;

static PetscErrorCode create(AckdKDObj kd)
{
  LSKD *m;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&m));
  m->T     = 3.0;
  m->alpha = 0.9;
  kd->data = m;
  PetscFunctionReturn(0);
}

static PetscErrorCode options(AckdKDObj kd, PetscOptionItems *PetscOptionsObject)
{
  LSKD *m = (LSKD *)kd->data;

  PetscFunctionBeginUser;
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-lskd_temperature", "LSKD temperature T", &m->T, 1e-3, 1e3, NULL));
  PetscCall(
      AckdOptionsReal(PetscOptionsObject, "-lskd_alpha", "(1 - alpha) CE + alpha LSKD", &m->alpha, 0.0, 1.0, NULL));
  PetscFunctionReturn(0);
}

static void weights(AckdKDObj kd, double *ce, double *w)
{
  ackd_kd_alpha_weights(((LSKD *)kd->data)->alpha, ce, w);
}

static void standardise(const double *z, PetscInt K, double *out, double *centred, double *sigma)
{
  double mean = 0.0, ss = 0.0;
  for (PetscInt k = 0; k < K; k++) mean += z[k];
  mean /= (double)K;
  for (PetscInt k = 0; k < K; k++) {
    centred[k] = z[k] - mean;
    ss += centred[k] * centred[k];
  }
  *sigma = sqrt(ss / (double)(K - 1));
  for (PetscInt k = 0; k < K; k++) out[k] = centred[k] / (*sigma + 1e-7);
}

static PetscErrorCode loss(AckdKDObj kd, const KDStep *st, double coef, double *value)
{
  LSKD    *m = (LSKD *)kd->data;
  PetscInt K = st->K;
  double   v = 0.0;

  PetscFunctionBeginUser;
  PetscCheck(K > 1, kd->comm, PETSC_ERR_ARG_OUTOFRANGE, "-kd_method lskd needs at least 2 classes");
  for (PetscInt s = 0; s < st->nsel; s++) {
    PetscInt i = st->sel[s];
    double   zs[K], zsn[K], zt[K], cs[K], ct[K], g[K], sig_s, sig_t, c = m->T * m->T * st->w[i] * st->inv_n;
    double   gmean = 0.0, gc = 0.0, den;
    for (PetscInt k = 0; k < K; k++) {
      zs[k] = st->in->student_logits->data[i * K + k];
      g[k]  = 0.0;
    }
    standardise(zs, K, zsn, cs, &sig_s);
    standardise(st->zt + i * K, K, zt, ct, &sig_t);
    v += c * ackd_kd_kl_row(zt, zsn, K, m->T, 1.0, g, NULL);
    /* back through z' = c / (sigma + eps): dsigma/dz_j = c_j / ((K - 1) sigma) */
    for (PetscInt k = 0; k < K; k++) {
      gmean += g[k] / (double)K;
      gc += g[k] * cs[k];
    }
    den = sig_s + 1e-7;
    for (PetscInt j = 0; j < K; j++)
      st->g_logits[i * K + j] +=
          coef * c * ((g[j] - gmean) / den - gc * cs[j] / (den * den * (double)(K - 1) * PetscMax(sig_s, 1e-300)));
  }
  *value = v;
  PetscFunctionReturn(0);
}

const KDMethod ackd_kd_lskd = {.name            = "lskd",
                               .help            = "KD on standardised logits",
                               .needs           = KD_NEEDS_LOGITS,
                               .on_class_subset = PETSC_TRUE,
                               .create          = create,
                               .options         = options,
                               .loss            = loss,
                               .weights         = weights,
                               .label_share     = ackd_kd_full_label_share};
