/* -kd_method at: attention transfer (Zagoruyko & Komodakis, ICLR 2017) on the
 * layer-4 tokens. a = normalize(mean over channels of Z²) over the tokens of a
 * sample (F.normalize, eps 1e-12); loss = beta * mean over (sample, token) of
 * (a_s - a_t)², beta = 1000. Channel counts may differ; token grids must agree. */
#include "kd_impl.h"
#include <math.h>

typedef struct {
  PetscReal beta;
} AT;

static PetscErrorCode create(AckdKDObj kd)
{
  AT *m;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&m));
  m->beta  = 1000.0;
  kd->data = m;
  PetscFunctionReturn(0);
}

static PetscErrorCode options(AckdKDObj kd, PetscOptionItems *PetscOptionsObject)
{
  PetscFunctionBeginUser;
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-at_beta", "AT: weight of the attention-map MSE",
                            &((AT *)kd->data)->beta, 0.0, 1e9, NULL));
  PetscFunctionReturn(0);
}

/* q_n = mean_c Z_nc², a = q / max(|q|, 1e-12); returns |q| (clamped). */
static double attention_map(const float *z, PetscInt N, PetscInt C, double *q, double *a)
{
  double norm = 0.0;
  for (PetscInt n = 0; n < N; n++) {
    double acc = 0.0;
    for (PetscInt c = 0; c < C; c++) acc += (double)z[n * C + c] * z[n * C + c];
    q[n] = acc / (double)C;
    norm += q[n] * q[n];
  }
  norm = PetscMax(sqrt(norm), 1e-12);
  for (PetscInt n = 0; n < N; n++) a[n] = q[n] / norm;
  return norm;
}

static PetscErrorCode loss(AckdKDObj kd, const KDStep *st, double coef, double *value)
{
  const AckdTensor *zs = st->in->student_tokens, *zt = st->in->teacher_tokens;
  PetscInt          Cs = kd->dims.student_channels, Ct = kd->dims.teacher_channels;
  PetscInt          N, Nt; /* tokens per sample */
  double           *qs, *as, *qt, *at, *da, v = 0.0;

  PetscFunctionBeginUser;
  *value = 0.0;
  if (st->B == 0) PetscFunctionReturn(0); /* no share of an uneven last batch: no tokens to count */
  N  = AckdTensorSize(zs) / (st->B * Cs);
  Nt = AckdTensorSize(zt) / (st->B * Ct);
  /* Over one token the normalised map is 1 for every sample: the term would be 0 and the run a
   * CE-only one under AT's name. */
  PetscCheck(N > 1 && Nt > 1, kd->comm, PETSC_ERR_USER_INPUT,
             "-kd_method at: the %s's layer-4 grid has 1 token per sample (its input is no larger than the "
             "backbone's stride), where an attention map is constant and AT teaches nothing; use larger images "
             "or another method",
             N > 1 ? "teacher" : "student");
  PetscCheck(N == Nt, kd->comm, PETSC_ERR_USER_INPUT,
             "-kd_method at: the student has %" PetscInt_FMT " tokens per sample, the teacher %" PetscInt_FMT
             "; AT needs equal layer-4 grids (same input size and stride)",
             N, Nt);
  PetscCall(PetscMalloc5(N, &qs, N, &as, N, &qt, N, &at, N, &da));
  for (PetscInt s = 0; s < st->nsel; s++) {
    PetscInt     i = st->sel[s];
    const float *z = zs->data + i * N * Cs;
    double       c = ((AT *)kd->data)->beta * st->w[i] * st->inv_n / (double)N, norm, dot = 0.0;
    norm = attention_map(z, N, Cs, qs, as);
    attention_map(zt->data + i * N * Ct, N, Ct, qt, at);
    for (PetscInt n = 0; n < N; n++) {
      double d = as[n] - at[n];
      v += c * d * d;
      da[n] = coef * c * 2.0 * d;
      dot += da[n] * as[n];
    }
    /* a = q / |q|: dq = (da - a (a·da)) / |q|; dZ = dq 2 Z / C */
    for (PetscInt n = 0; n < N; n++) {
      double dq = (da[n] - as[n] * dot) / norm;
      for (PetscInt ch = 0; ch < Cs; ch++) st->g_tok[(i * N + n) * Cs + ch] += dq * 2.0 * z[n * Cs + ch] / (double)Cs;
    }
  }
  PetscCall(PetscFree5(qs, as, qt, at, da));
  *value = v;
  PetscFunctionReturn(0);
}

const KDMethod ackd_kd_at = {.name    = "at",
                             .help    = "attention transfer on layer-4 tokens",
                             .needs   = KD_NEEDS_TOKENS,
                             .create  = create,
                             .options = options,
                             .loss    = loss};
