/* -kd_method c2kd: customised cross-modal KD (Huo et al., CVPR 2024) with a
 * frozen teacher. Two proxies, linear heads (with bias) on the pooled
 * embeddings: the student proxy z_ps = P_s x_s + b_s and the teacher proxy
 * z_pt = P_t x_t + b_t. With p^T = softmax(z/T), p̂ the same over the
 * non-target classes k ≠ y, sg = no gradient (the target side of each KL):
 *   inheritance (unimodal): KL(sg p_s ‖ p_ps) + KL(p_t ‖ p_pt), every sample;
 *   bidirectional (cross-modal, between the proxies): KL(sg p̂_pt ‖ p̂_ps) + KL(sg p̂_ps ‖ p̂_pt);
 *   the student learns from the teacher's proxy: KL(sg p̂_pt ‖ p̂_s);
 * the last two only on samples kept by on-the-fly selection: Kendall's τ
 * between the two proxies' non-target logits > κ (0), i.e. the proxies rank
 * the non-target classes alike (the filter carries no gradient).
 *   L = T² Σ_i w_i [inheritance_i + f_i (bidirectional_i + student_i)] / N, T = 4.
 * The student proxy sits on the student's embedding, so what it inherits
 * reaches the student's backbone; the teacher cannot move (docs/KD.md lists
 * what this simplifies). */
#include "kd_impl.h"
#include <math.h>

typedef struct {
  PetscReal T, kappa;
  PetscInt  ws, bs, wt, bt;
  double   *targets; /* per selected sample: sg z_s, sg z_ps, sg z_pt (3K), then the filter (1) */
  PetscInt  cap;
} C2KD;

static PetscErrorCode create(AckdKDObj kd)
{
  C2KD *m;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&m));
  m->T     = 4.0;
  m->kappa = 0.0;
  kd->data = m;
  PetscFunctionReturn(0);
}

static PetscErrorCode options(AckdKDObj kd, PetscOptionItems *PetscOptionsObject)
{
  C2KD *m = (C2KD *)kd->data;

  PetscFunctionBeginUser;
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-c2kd_temperature", "C2KD: temperature of every KL", &m->T, 1e-3, 1e3,
                            NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-c2kd_kendall",
                            "C2KD: keep a sample for cross-modal distillation when Kendall's tau of the proxies' "
                            "non-target logits exceeds this",
                            &m->kappa, -1.0, 1.0, NULL));
  PetscFunctionReturn(0);
}

static PetscErrorCode setup(AckdKDObj kd)
{
  C2KD *m = (C2KD *)kd->data;

  PetscFunctionBeginUser;
  PetscCall(ackd_kd_add_linear(kd, "c2kd.student_proxy", kd->dims.classes, kd->dims.student_embedding, &m->ws, &m->bs));
  PetscCall(ackd_kd_add_linear(kd, "c2kd.teacher_proxy", kd->dims.classes, kd->dims.teacher_embedding, &m->wt, &m->bt));
  PetscFunctionReturn(0);
}

/* Kendall's τ-a of two vectors (ties count 0); 1 when there is no pair. */
static double kendall(const double *a, const double *b, PetscInt n)
{
  double s = 0.0;
  if (n < 2) return 1.0;
  for (PetscInt k = 0; k < n; k++)
    for (PetscInt l = k + 1; l < n; l++) {
      double da = a[k] - a[l], db = b[k] - b[l];
      s += (double)((da > 0) - (da < 0)) * (double)((db > 0) - (db < 0));
    }
  return s / (0.5 * (double)n * (double)(n - 1));
}

/* The non-target entries of z (label y removed), and back: adds g (K - 1) into G (K). */
static void drop(const double *z, PetscInt K, PetscInt y, double *out)
{
  for (PetscInt k = 0, j = 0; k < K; k++)
    if (k != y) out[j++] = z[k];
}
static void undrop(const double *g, PetscInt K, PetscInt y, double *G)
{
  for (PetscInt k = 0, j = 0; k < K; k++)
    if (k != y) G[k] += g[j++];
}

static PetscErrorCode loss(AckdKDObj kd, const KDStep *st, double coef, double *value)
{
  C2KD        *m = (C2KD *)kd->data;
  PetscInt     n = st->nsel, K = st->K, Ds = kd->dims.student_embedding, Dt = kd->dims.teacher_embedding;
  const float *V  = kd->params.values;
  double       T2 = m->T * m->T, v = 0.0, *xs, *xt, *ps, *pt, *gps, *gpt, *gxs;

  PetscFunctionBeginUser;
  *value = 0.0;
  if (n < 1) PetscFunctionReturn(0);
  PetscCall(ackd_kd_gather(st->in->student_embedding, Ds, n, st->sel, &xs));
  PetscCall(ackd_kd_gather(st->in->teacher_embedding, Dt, n, st->sel, &xt));
  PetscCall(PetscMalloc2(n * K, &ps, n * K, &pt));
  PetscCall(PetscCalloc3(n * K, &gps, n * K, &gpt, n * Ds, &gxs));
  if (n > m->cap) {
    PetscCheck(!kd->freeze_targets, kd->comm, PETSC_ERR_ORDER, "c2kd: frozen targets from a smaller batch");
    PetscCall(PetscFree(m->targets));
    PetscCall(PetscMalloc1(n * (3 * K + 1), &m->targets));
    m->cap = n;
  }
  PetscCall(ackd_kd_linear(xs, n, Ds, V + m->ws, K, ps));
  PetscCall(ackd_kd_linear(xt, n, Dt, V + m->wt, K, pt));
  for (PetscInt k = 0; k < n; k++)
    for (PetscInt c = 0; c < K; c++) {
      ps[k * K + c] += V[m->bs + c];
      pt[k * K + c] += V[m->bt + c];
    }
  for (PetscInt k = 0; k < n; k++) {
    PetscInt i = st->sel[k], y = st->in->labels[i];
    double   zs[K], nps[K], npt[K], nzs[K], sps[K], spt[K], g1[K], g2[K], g3[K], term;
    double   c = st->w[i] * st->inv_n, gc = coef * c * T2, *sg = m->targets + k * (3 * K + 1);
    for (PetscInt j = 0; j < K; j++) zs[j] = st->in->student_logits->data[i * K + j];
    drop(ps + k * K, K, y, nps);
    drop(pt + k * K, K, y, npt);
    drop(zs, K, y, nzs);
    if (!kd->freeze_targets) {
      PetscCall(PetscArraycpy(sg, zs, K));
      PetscCall(PetscArraycpy(sg + K, nps, K - 1));
      PetscCall(PetscArraycpy(sg + 2 * K, npt, K - 1));
      sg[3 * K] = K > 1 && kendall(nps, npt, K - 1) > m->kappa;
    }
    PetscCall(PetscArraycpy(sps, sg + K, K - 1));
    PetscCall(PetscArraycpy(spt, sg + 2 * K, K - 1));
    term = ackd_kd_kl_row(sg, ps + k * K, K, m->T, gc, gps + k * K, NULL);
    term += ackd_kd_kl_row(st->zt + i * K, pt + k * K, K, m->T, gc, gpt + k * K, NULL);
    if (sg[3 * K] > 0) {
      PetscCall(PetscArrayzero(g1, K - 1));
      PetscCall(PetscArrayzero(g2, K - 1));
      PetscCall(PetscArrayzero(g3, K - 1));
      term += ackd_kd_kl_row(spt, nps, K - 1, m->T, gc, g1, NULL);
      term += ackd_kd_kl_row(sps, npt, K - 1, m->T, gc, g2, NULL);
      term += ackd_kd_kl_row(spt, nzs, K - 1, m->T, gc, g3, NULL);
      undrop(g1, K, y, gps + k * K);
      undrop(g2, K, y, gpt + k * K);
      undrop(g3, K, y, st->g_logits + i * K);
    }
    v += c * T2 * term;
  }
  PetscCall(ackd_kd_linear_backward(xs, n, Ds, V + m->ws, K, gps, gxs, st->g_params + m->ws));
  PetscCall(ackd_kd_linear_backward(xt, n, Dt, V + m->wt, K, gpt, NULL, st->g_params + m->wt));
  for (PetscInt k = 0; k < n; k++) {
    for (PetscInt c = 0; c < K; c++) {
      st->g_params[m->bs + c] += gps[k * K + c];
      st->g_params[m->bt + c] += gpt[k * K + c];
    }
    for (PetscInt c = 0; c < Ds; c++) st->g_emb[st->sel[k] * Ds + c] += gxs[k * Ds + c];
  }
  *value = v;
  PetscCall(PetscFree2(ps, pt));
  PetscCall(PetscFree3(gps, gpt, gxs));
  PetscCall(PetscFree(xs));
  PetscCall(PetscFree(xt));
  PetscFunctionReturn(0);
}

static PetscErrorCode destroy(AckdKDObj kd)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree(((C2KD *)kd->data)->targets));
  PetscFunctionReturn(0);
}

const KDMethod ackd_kd_c2kd = {.destroy = destroy,
                               .name    = "c2kd",
                               .help    = "C2KD: proxies, bidirectional KL, Kendall-tau selection",
                               .needs   = KD_NEEDS_LOGITS | KD_NEEDS_EMBEDDING,
                               .create  = create,
                               .options = options,
                               .setup   = setup,
                               .loss    = loss};
