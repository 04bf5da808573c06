/* -kd_method clip: CLIP-style alignment, the ECG→PPG recipe. Learned
 * projections (no bias) of the student's and the teacher's embeddings into a
 * shared d-dimensional space, L2-normalised: ẑ_s, ẑ_t. Over the local batch's
 * samples that have a teacher (batch-level, B/N):
 *   InfoNCE: L = ẑ_s ẑ_tᵀ / τ, ½ [CE(rows, diagonal) + CE(columns, diagonal)], mean over samples;
 *   relation: mean over pairs of (cos(x_s,i, x_s,j) - cos(x_t,i, x_t,j))², on the raw embeddings;
 *   L_clip = InfoNCE + γ relation; d = 128, τ = 0.07, γ = 1. */
#include "kd_impl.h"
#include <cblas.h>
#include <math.h>

typedef struct {
  PetscReal tau, gamma;
  PetscInt  dim, ps, pt;
} CLIP;

static PetscErrorCode create(AckdKDObj kd)
{
  CLIP *m;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&m));
  m->tau   = 0.07;
  m->gamma = 1.0;
  m->dim   = 128;
  kd->data = m;
  PetscFunctionReturn(0);
}

static PetscErrorCode options(AckdKDObj kd, PetscOptionItems *PetscOptionsObject)
{
  CLIP *m = (CLIP *)kd->data;

  PetscFunctionBeginUser;
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-clip_tau", "CLIP: InfoNCE temperature", &m->tau, 1e-4, 1e3, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-clip_relation", "CLIP: weight of the relation loss", &m->gamma, 0.0,
                            1e6, NULL));
  PetscCall(
      AckdOptionsInt(PetscOptionsObject, "-clip_dim", "CLIP: width of the shared space", &m->dim, 1, 65536, NULL));
  PetscFunctionReturn(0);
}

static PetscErrorCode setup(AckdKDObj kd)
{
  CLIP    *m    = (CLIP *)kd->data;
  PetscInt s[2] = {m->dim, kd->dims.student_embedding}, t[2] = {m->dim, kd->dims.teacher_embedding};

  PetscFunctionBeginUser;
  PetscCall(AckdParamsAddShaped(&kd->params, "clip.student_projection.weight", 2, s, s[1], ACKD_INIT_KAIMING_UNIFORM,
                                &m->ps));
  PetscCall(AckdParamsAddShaped(&kd->params, "clip.teacher_projection.weight", 2, t, t[1], ACKD_INIT_KAIMING_UNIFORM,
                                &m->pt));
  PetscFunctionReturn(0);
}

static PetscErrorCode loss(AckdKDObj kd, const KDStep *st, double coef, double *value)
{
  CLIP        *m = (CLIP *)kd->data;
  PetscInt     n = st->nsel, Ds = kd->dims.student_embedding, Dt = kd->dims.teacher_embedding, d = m->dim;
  const float *V = kd->params.values;
  double      *xs, *xt, *ys, *yt, *ls, *lt, *L, *dL, *gys, *gyt, *gxs, *ss, *stt, *ds, *lxs, *lxt, nce = 0.0, rel = 0.0;
  double       c = coef * st->share;

  PetscFunctionBeginUser;
  *value = 0.0;
  if (n < 1) PetscFunctionReturn(0);
  PetscCall(ackd_kd_gather(st->in->student_embedding, Ds, n, st->sel, &xs));
  PetscCall(ackd_kd_gather(st->in->teacher_embedding, Dt, n, st->sel, &xt));
  PetscCall(PetscMalloc6(n * d, &ys, n * d, &yt, n, &ls, n, &lt, n * n, &L, n * n, &dL));
  PetscCall(PetscCalloc3(n * d, &gys, n * d, &gyt, n * Ds, &gxs));
  PetscCall(PetscMalloc5(n * n, &ss, n * n, &stt, n * n, &ds, n, &lxs, n, &lxt));
  PetscCall(ackd_kd_linear(xs, n, Ds, V + m->ps, d, ys));
  PetscCall(ackd_kd_linear(xt, n, Dt, V + m->pt, d, yt));
  ackd_kd_normalise(ys, n, d, ls);
  ackd_kd_normalise(yt, n, d, lt);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)d, 1.0 / m->tau, ys, (int)d, yt, (int)d,
              0.0, L, (int)n);
  /* InfoNCE both ways: dL = (softmax_rows - I + softmax_cols - I) / (2n) */
  PetscCall(PetscArrayzero(dL, n * n));
  for (int dir = 0; dir < 2; dir++)
    for (PetscInt i = 0; i < n; i++) {
      PetscInt rs = dir ? 1 : n, cs = dir ? n : 1; /* a row of L, or a column */
      double   max = -INFINITY, sum = 0.0, lse;
      for (PetscInt j = 0; j < n; j++) max = PetscMax(max, L[i * rs + j * cs]);
      for (PetscInt j = 0; j < n; j++) sum += exp(L[i * rs + j * cs] - max);
      lse = max + log(sum);
      nce += (lse - L[i * rs + i * cs]) / (2.0 * n);
      for (PetscInt j = 0; j < n; j++) dL[i * rs + j * cs] += (exp(L[i * rs + j * cs] - lse) - (i == j)) / (2.0 * n);
    }
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)d, (int)n, c / m->tau, dL, (int)n, yt, (int)d,
              0.0, gys, (int)d);
  cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)d, (int)n, c / m->tau, dL, (int)n, ys, (int)d, 0.0,
              gyt, (int)d);
  ackd_kd_normalise_backward(ys, n, d, ls, gys);
  ackd_kd_normalise_backward(yt, n, d, lt, gyt);
  PetscCall(ackd_kd_linear_backward(xs, n, Ds, V + m->ps, d, gys, gxs, st->g_params + m->ps));
  PetscCall(ackd_kd_linear_backward(xt, n, Dt, V + m->pt, d, gyt, NULL, st->g_params + m->pt));

  /* relation on the raw embeddings' cosine matrices; dx̂_s = (dS + dSᵀ) x̂_s */
  ackd_kd_normalise(xs, n, Ds, lxs);
  ackd_kd_normalise(xt, n, Dt, lxt);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)Ds, 1.0, xs, (int)Ds, xs, (int)Ds, 0.0, ss,
              (int)n);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)Dt, 1.0, xt, (int)Dt, xt, (int)Dt, 0.0, stt,
              (int)n);
  for (PetscInt k = 0; k < n * n; k++) {
    double diff = ss[k] - stt[k];
    rel += diff * diff / (double)(n * n);
    ds[k] = 2.0 * diff / (double)(n * n);
  }
  {
    double *gx;
    PetscCall(PetscMalloc1(n * Ds, &gx));
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)Ds, (int)n, c * m->gamma, ds, (int)n, xs,
                (int)Ds, 0.0, gx, (int)Ds);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)Ds, (int)n, c * m->gamma, ds, (int)n, xs, (int)Ds,
                1.0, gx, (int)Ds);
    ackd_kd_normalise_backward(xs, n, Ds, lxs, gx);
    for (PetscInt k = 0; k < n * Ds; k++) gxs[k] += gx[k];
    PetscCall(PetscFree(gx));
  }
  for (PetscInt s = 0; s < n; s++)
    for (PetscInt k = 0; k < Ds; k++) st->g_emb[st->sel[s] * Ds + k] += gxs[s * Ds + k];
  *value = st->share * (nce + m->gamma * rel);
  PetscCall(PetscFree6(ys, yt, ls, lt, L, dL));
  PetscCall(PetscFree3(gys, gyt, gxs));
  PetscCall(PetscFree5(ss, stt, ds, lxs, lxt));
  PetscCall(PetscFree(xs));
  PetscCall(PetscFree(xt));
  PetscFunctionReturn(0);
}

const KDMethod ackd_kd_clip = {.name    = "clip",
                               .help    = "CLIP-style InfoNCE + relation (ECG->PPG)",
                               .needs   = KD_NEEDS_EMBEDDING,
                               .create  = create,
                               .options = options,
                               .setup   = setup,
                               .loss    = loss};
