/* -kd_method ctkd: curriculum temperature (Li et al., AAAI 2023), global
 * variant. One learned scalar θ sets T = T_min + (T_max - T_min) σ(θ + θ0), θ0
 * chosen so that T starts at T_init (4, KD's). The loss is KD's, T² KL(p_t^T ||
 * p_s^T); θ receives the *reversed* gradient -λ dL/dθ (gradient reversal: the
 * temperature makes distillation harder), λ rising as (1 - cos(π e / E)) / 2
 * to λ_max over E epochs, the authors' 10 of 240 scaled to the run. Weights as KD's (0.1 CE, 0.9). */
#include "kd_impl.h"
#include <math.h>

typedef struct {
  PetscReal tmin, tmax, tinit, lambda_max, alpha;
  PetscInt  warmup, theta;
} CTKD;

static PetscErrorCode create(AckdKDObj kd)
{
  CTKD *m;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&m));
  m->tmin       = 1.0;
  m->tmax       = 21.0;
  m->tinit      = 4.0;
  m->lambda_max = 1.0;
  m->alpha      = 0.9;
  m->warmup     = -1; /* resolved in setup, once the run's epochs are known */
  kd->data      = m;
  PetscFunctionReturn(0);
}

static PetscErrorCode options(AckdKDObj kd, PetscOptionItems *PetscOptionsObject)
{
  CTKD *m = (CTKD *)kd->data;

  PetscFunctionBeginUser;
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-ctkd_t_min", "CTKD: lowest temperature", &m->tmin, 1e-3, 1e3, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-ctkd_t_max", "CTKD: highest temperature", &m->tmax, 1e-3, 1e3, NULL));
  PetscCall(
      AckdOptionsReal(PetscOptionsObject, "-ctkd_t_init", "CTKD: initial temperature", &m->tinit, 1e-3, 1e3, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-ctkd_lambda", "CTKD: final gradient-reversal strength",
                            &m->lambda_max, 0.0, 1e3, NULL));
  PetscCall(
      AckdOptionsInt(PetscOptionsObject, "-ctkd_warmup",
                     "CTKD: epochs of the cosine rise of lambda (default: 1/24 of the run, the authors' 10 of 240)",
                     &m->warmup, 0, 1000000, NULL));
  PetscCall(
      AckdOptionsReal(PetscOptionsObject, "-ctkd_alpha", "(1 - alpha) CE + alpha CTKD", &m->alpha, 0.0, 1.0, NULL));
  PetscCheck(m->tmin < m->tinit && m->tinit < m->tmax, PETSC_COMM_SELF, PETSC_ERR_USER_INPUT,
             "options -ctkd_t_min, -ctkd_t_init, -ctkd_t_max must increase strictly");
  PetscFunctionReturn(0);
}

static void weights(AckdKDObj kd, double *ce, double *w)
{
  ackd_kd_alpha_weights(((CTKD *)kd->data)->alpha, ce, w);
}

static PetscErrorCode setup(AckdKDObj kd)
{
  CTKD *m = (CTKD *)kd->data;

  PetscFunctionBeginUser;
  PetscCall(ackd_kd_resolve_warmup(kd, "-ctkd_warmup", 10, 240, &m->warmup));
  /* zero-initialised: θ0 carries the initial temperature */
  PetscCall(AckdParamsAdd(&kd->params, "ctkd.global_temperature", 1, 1, ACKD_INIT_ZEROS, &m->theta));
  PetscFunctionReturn(0);
}

static PetscErrorCode loss(AckdKDObj kd, const KDStep *st, double coef, double *value)
{
  CTKD    *m  = (CTKD *)kd->data;
  PetscInt K  = st->K;
  double   u0 = (m->tinit - m->tmin) / (m->tmax - m->tmin), theta0 = log(u0 / (1.0 - u0));
  double   sg = 1.0 / (1.0 + exp(-(kd->params.values[m->theta] + theta0))), T = m->tmin + (m->tmax - m->tmin) * sg;
  double   e      = m->warmup > 0 ? PetscMin((double)st->in->epoch / (double)m->warmup, 1.0) : 1.0;
  double   lambda = m->lambda_max * 0.5 * (1.0 - cos(PETSC_PI * e)), v = 0.0, dvdT = 0.0;

  PetscFunctionBeginUser;
  for (PetscInt s = 0; s < st->nsel; s++) {
    PetscInt i = st->sel[s];
    double   zs[K], g[K], dkl = 0.0, c = st->w[i] * st->inv_n, kl;
    for (PetscInt k = 0; k < K; k++) {
      zs[k] = st->in->student_logits->data[i * K + k];
      g[k]  = 0.0;
    }
    kl = ackd_kd_kl_row(st->zt + i * K, zs, K, T, 1.0, g, &dkl);
    for (PetscInt k = 0; k < K; k++) st->g_logits[i * K + k] += coef * c * T * T * g[k];
    v += c * T * T * kl;
    dvdT += c * (2.0 * T * kl + T * T * dkl);
  }
  st->g_params[m->theta] += -lambda * coef * dvdT * (m->tmax - m->tmin) * sg * (1.0 - sg);
  *value = v;
  PetscFunctionReturn(0);
}

const KDMethod ackd_kd_ctkd = {.name            = "ctkd",
                               .help            = "KD with a learned temperature (gradient reversal)",
                               .needs           = KD_NEEDS_LOGITS,
                               .on_class_subset = PETSC_TRUE,
                               .create          = create,
                               .options         = options,
                               .setup           = setup,
                               .loss            = loss,
                               .weights         = weights,
                               .label_share     = ackd_kd_full_label_share};
