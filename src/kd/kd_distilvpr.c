/* -kd_method distilvpr: DistilVPR (Wang et al., AAAI 2024), cross-modal KD for
 * visual place recognition, as the authors' code computes it (sijieaaa/DistilVPR:
 * selfagent/rkdg.py, compute_distil_loss.py and hyptorch's Poincaré maps). On the
 * pooled embeddings of the local batch's n samples that have a teacher: y the
 * student's (through a learned map without bias to the teacher's width when the
 * widths differ), t the teacher's; ball(v) = project(expmap0(v)) in the Poincaré
 * ball of curvature c, d_c the Poincaré distance.
 *   RKD-G (self-agent), on the raw rows: RKD's distance and angle terms (weight 1
 *     each) + mean_ij Huber(ĝ_s - ĝ_t), ĝ = d_c(ball(·), ball(·)) over its mean;
 *   st2ss (cross-agent), on the L2-normalised rows ŷ, t̂, for each of the
 *     Euclidean distance, the cosine and d_c∘ball: mean_ij (s(ŷ_i, ŷ_j) - sg s(ŷ_i, t̂_j))²;
 *   B/N · [w_rkdg (L_d + L_a + L_g) + w_st2ss (L_euc + L_cos + L_geo)], defaults 0.1, 0.1, c = 0.1. */
#include "kd_impl.h"
#include <cblas.h>
#include <math.h>

/* hyptorch's numerical guards, kept so that the distances are the ones the authors trained with */
#define BALL_MIN_NORM 1e-5 /* expmap0's floor on |v| */
#define BALL_MARGIN   1e-3 /* project keeps |p| <= (1 - margin)/√c */
#define MOBIUS_EPS    1e-5 /* added to the Möbius denominator */
#define ARTANH_EDGE   1e-5 /* artanh's argument is clamped at 1 - edge */

typedef struct {
  PetscReal rkdg, st2ss, curvature;
  PetscInt  proj;    /* -1 when the widths agree */
  double   *targets; /* st2ss's three student-teacher matrices of the latest unfrozen call (freeze_targets) */
  PetscInt  cap;
} DistilVPR;

static PetscErrorCode create(AckdKDObj kd)
{
  DistilVPR *m;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&m));
  m->rkdg      = 0.1;
  m->st2ss     = 0.1;
  m->curvature = 0.1;
  m->proj      = -1;
  kd->data     = m;
  PetscFunctionReturn(0);
}

static PetscErrorCode options(AckdKDObj kd, PetscOptionItems *PetscOptionsObject)
{
  DistilVPR *m = (DistilVPR *)kd->data;

  PetscFunctionBeginUser;
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-distilvpr_rkdg_weight",
                            "DistilVPR: weight of RKD-G (RKD distance + angle + Poincaré geodesic)", &m->rkdg, 0.0, 1e9,
                            NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-distilvpr_st2ss_weight",
                            "DistilVPR: weight of each cross-agent st2ss term (Euclidean, cosine, Poincaré)", &m->st2ss,
                            0.0, 1e9, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-distilvpr_curvature", "DistilVPR: curvature c of the Poincaré ball",
                            &m->curvature, 1e-6, 1e6, NULL));
  PetscFunctionReturn(0);
}

static PetscErrorCode setup(AckdKDObj kd)
{
  DistilVPR *m        = (DistilVPR *)kd->data;
  PetscInt   shape[2] = {kd->dims.teacher_embedding, kd->dims.student_embedding};

  PetscFunctionBeginUser;
  if (shape[0] != shape[1])
    PetscCall(AckdParamsAddShaped(&kd->params, "distilvpr.student_projection.weight", 2, shape, shape[1],
                                  ACKD_INIT_KAIMING_UNIFORM, &m->proj));
  PetscFunctionReturn(0);
}

static double dot(const double *x, const double *y, PetscInt D)
{
  double acc = 0.0;
  for (PetscInt k = 0; k < D; k++) acc += x[k] * y[k];
  return acc;
}

/* expmap0 keeps v's direction: p = f(|v|) v, f(r) = tanh(√c r)/(√c r), unless |p| passes the
 * margin, where p = (1 - margin)/√c · v/|v|. len receives |v| for the backward. */
static void to_ball(const double *v, PetscInt n, PetscInt D, double c, double *p, double *len)
{
  const double sc = sqrt(c), rmax = (1.0 - BALL_MARGIN) / sc;
  for (PetscInt i = 0; i < n; i++) {
    double r = sqrt(dot(v + i * D, v + i * D, D)), rc = PetscMax(r, BALL_MIN_NORM);
    double f = tanh(sc * rc) / (sc * rc);
    if (f * r > rmax) f = rmax / r;
    len[i] = r;
    for (PetscInt k = 0; k < D; k++) p[i * D + k] = f * v[i * D + k];
  }
}

/* gv += dp/dv · gp. Inside the margin d(f v) = f dv + f'(r) (v̂·dv) v with
 * f'(r) = (1 - tanh²)/r - tanh/(√c r²); on it, the normalisation's (dv - v̂ (v̂·dv)) rmax/r. */
static void to_ball_backward(const double *v, PetscInt n, PetscInt D, double c, const double *len, const double *gp,
                             double *gv)
{
  const double sc = sqrt(c), rmax = (1.0 - BALL_MARGIN) / sc;
  for (PetscInt i = 0; i < n; i++) {
    const double *vi = v + i * D, *gi = gp + i * D;
    double        r = len[i], rc = PetscMax(r, BALL_MIN_NORM), th = tanh(sc * rc), f = th / (sc * rc), radial;
    double        vg = dot(vi, gi, D);
    if (f * r > rmax) {
      f      = rmax / r;
      radial = -f * vg / (r * r);
    } else
      radial = r < BALL_MIN_NORM ? 0.0 : ((1.0 - th * th) / r - th / (sc * r * r)) * vg / r;
    for (PetscInt k = 0; k < D; k++) gv[i * D + k] += f * gi[k] + radial * vi[k];
  }
}

/* d_c(p, q) from a = |p|², b = |q|², s = p·q: |(-p) ⊕_c q| = |A (-p) + M q| / (den + ε) with
 * A = 1 - 2cs + cb, M = 1 - ca, den = 1 - 2cs + c²ab, so |A (-p) + M q|² = A²a - 2AMs + M²b.
 * The partials (da NULL: not wanted) are those of the value, hence 0 where artanh's argument
 * is clamped (hyptorch's backward passes 1/(1 - edge²) there instead). */
static double poincare(double a, double b, double s, double c, double *da, double *db, double *ds)
{
  const double sc = sqrt(c), A = 1.0 - 2.0 * c * s + c * b, M = 1.0 - c * a;
  const double den = 1.0 - 2.0 * c * s + c * c * a * b + MOBIUS_EPS, N2 = A * A * a - 2.0 * A * M * s + M * M * b;
  double       N, u;

  if (da) *da = *db = *ds = 0.0;
  if (!(N2 > 0)) return 0.0;
  N = sqrt(N2);
  u = sc * N / den;
  if (u >= 1.0 - ARTANH_EDGE) return 2.0 / sc * atanh(1.0 - ARTANH_EDGE);
  if (da) {
    /* dd/du = (2/√c)/(1 - u²), du = √c (dN²/(2N den) - N dden/den²) */
    const double k = 2.0 / (1.0 - u * u), P = 2.0 * A * a - 2.0 * M * s;
    *da = k * ((A * A + 2.0 * c * A * s - 2.0 * c * M * b) / (2.0 * N * den) - N * c * c * b / (den * den));
    *db = k * ((c * P + M * M) / (2.0 * N * den) - N * c * c * a / (den * den));
    *ds = k * ((-2.0 * c * P - 2.0 * A * M) / (2.0 * N * den) + N * 2.0 * c / (den * den));
  }
  return 2.0 / sc * atanh(u);
}

/* G (n x m) = d_c(p_i, q_j). Within one set (q == p) the diagonal is 0: (-p) ⊕ p vanishes
 * exactly, and the positive-mean normalisation must not count rounding noise there. */
static void poincare_matrix(const double *p, PetscInt n, const double *q, PetscInt m, PetscInt D, double c, double *G)
{
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt j = 0; j < m; j++)
      G[i * m + j] = (p == q && i == j) ? 0.0
                                        : poincare(dot(p + i * D, p + i * D, D), dot(q + j * D, q + j * D, D),
                                                   dot(p + i * D, q + j * D, D), c, NULL, NULL, NULL);
}

/* gp += Σ_ij gG_ij dG_ij/dp for G = poincare_matrix(p, p). */
static void poincare_matrix_backward(const double *p, PetscInt n, PetscInt D, double c, const double *gG, double *gp)
{
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt j = 0; j < n; j++) {
      const double *pi = p + i * D, *pj = p + j * D;
      double        da, db, ds;
      if (i == j || gG[i * n + j] == 0.0) continue;
      poincare(dot(pi, pi, D), dot(pj, pj, D), dot(pi, pj, D), c, &da, &db, &ds);
      for (PetscInt k = 0; k < D; k++) {
        gp[i * D + k] += gG[i * n + j] * (2.0 * da * pi[k] + ds * pj[k]);
        gp[j * D + k] += gG[i * n + j] * (2.0 * db * pj[k] + ds * pi[k]);
      }
    }
}

/* RKD-G's geodesic term: RKD's normalised Huber on the Poincaré distances of the raw rows. */
static PetscErrorCode geodesic(const double *y, const double *t, PetscInt n, PetscInt D, double c, double coef,
                               double *gy, double *value)
{
  double *py, *pt, *ly, *lt, *Gs, *Gt, *gG, *gp;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc4(n * D, &py, n * D, &pt, n, &ly, n, &lt));
  PetscCall(PetscMalloc3(n * n, &Gs, n * n, &Gt, n * n, &gG));
  PetscCall(PetscCalloc1(n * D, &gp));
  to_ball(y, n, D, c, py, ly);
  to_ball(t, n, D, c, pt, lt);
  poincare_matrix(py, n, py, n, D, c, Gs);
  poincare_matrix(pt, n, pt, n, D, c, Gt);
  *value = ackd_kd_rkd_normalised_huber(Gs, Gt, n, coef, gG);
  poincare_matrix_backward(py, n, D, c, gG, gp);
  to_ball_backward(y, n, D, c, ly, gp, gy);
  PetscCall(PetscFree4(py, pt, ly, lt));
  PetscCall(PetscFree3(Gs, Gt, gG));
  PetscCall(PetscFree(gp));
  PetscFunctionReturn(0);
}

/* The three st2ss terms; the student-teacher matrices are targets (computed into `targets`
 * unless frozen), so only the student-student side carries gradient. value[3]: Euclidean,
 * cosine, Poincaré. */
static PetscErrorCode st2ss(const double *y, const double *t, PetscInt n, PetscInt D, double c, double coef,
                            PetscBool frozen, double *targets, double *gy, double value[3])
{
  const double nn = (double)(n * n);
  double      *ys, *ts, *ly, *lt, *by, *bt, *lby, *lbt, *S, *g, *gb;
  double      *F = targets, *C = targets + n * n, *J = targets + 2 * n * n;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc6(n * D, &ys, n * D, &ts, n, &ly, n, &lt, n * D, &by, n * D, &bt));
  PetscCall(PetscMalloc3(n, &lby, n, &lbt, n * n, &S));
  PetscCall(PetscCalloc2(n * D, &g, n * D, &gb));
  PetscCall(PetscArraycpy(ys, y, n * D));
  PetscCall(PetscArraycpy(ts, t, n * D));
  ackd_kd_normalise(ys, n, D, ly);
  ackd_kd_normalise(ts, n, D, lt);
  value[0] = value[1] = value[2] = 0.0;

  /* Euclidean: differences, not the Gram matrix, keep close pairs accurate */
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt j = 0; j < n; j++) {
      double e = 0.0, f = 0.0, diff, w;
      for (PetscInt k = 0; k < D; k++) {
        e += (ys[i * D + k] - ys[j * D + k]) * (ys[i * D + k] - ys[j * D + k]);
        f += (ys[i * D + k] - ts[j * D + k]) * (ys[i * D + k] - ts[j * D + k]);
      }
      if (!frozen) F[i * n + j] = sqrt(f);
      e    = sqrt(e);
      diff = e - F[i * n + j];
      value[0] += diff * diff / nn;
      if (!(e > 0)) continue;
      w = coef * 2.0 * diff / (nn * e);
      for (PetscInt k = 0; k < D; k++) {
        g[i * D + k] += w * (ys[i * D + k] - ys[j * D + k]);
        g[j * D + k] -= w * (ys[i * D + k] - ys[j * D + k]);
      }
    }

  /* cosine of unit rows: S = Ŷ Ŷᵀ against C = Ŷ T̂ᵀ; dŶ = (dS + dSᵀ) Ŷ */
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)D, 1.0, ys, (int)D, ys, (int)D, 0.0, S,
              (int)n);
  if (!frozen)
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)D, 1.0, ys, (int)D, ts, (int)D, 0.0, C,
                (int)n);
  for (PetscInt k = 0; k < n * n; k++) {
    value[1] += (S[k] - C[k]) * (S[k] - C[k]) / nn;
    S[k] = coef * 2.0 * (S[k] - C[k]) / nn;
  }
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)D, (int)n, 1.0, S, (int)n, ys, (int)D, 1.0, g,
              (int)D);
  cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)D, (int)n, 1.0, S, (int)n, ys, (int)D, 1.0, g,
              (int)D);

  /* Poincaré, on the unit rows' points in the ball */
  to_ball(ys, n, D, c, by, lby);
  to_ball(ts, n, D, c, bt, lbt);
  poincare_matrix(by, n, by, n, D, c, S);
  if (!frozen) poincare_matrix(by, n, bt, n, D, c, J);
  for (PetscInt k = 0; k < n * n; k++) {
    value[2] += (S[k] - J[k]) * (S[k] - J[k]) / nn;
    S[k] = coef * 2.0 * (S[k] - J[k]) / nn;
  }
  poincare_matrix_backward(by, n, D, c, S, gb);
  to_ball_backward(ys, n, D, c, lby, gb, g);

  ackd_kd_normalise_backward(ys, n, D, ly, g);
  for (PetscInt k = 0; k < n * D; k++) gy[k] += g[k];
  PetscCall(PetscFree6(ys, ts, ly, lt, by, bt));
  PetscCall(PetscFree3(lby, lbt, S));
  PetscCall(PetscFree2(g, gb));
  PetscFunctionReturn(0);
}

static PetscErrorCode loss(AckdKDObj kd, const KDStep *st, double coef, double *value)
{
  DistilVPR   *m = (DistilVPR *)kd->data;
  PetscInt     n = st->nsel, Ds = kd->dims.student_embedding, D = kd->dims.teacher_embedding;
  const double c = m->curvature, cg = coef * st->share * m->rkdg, cx = coef * st->share * m->st2ss;
  double      *xs, *xt, *y, *gy, *gxs, ld = 0.0, la = 0.0, lg = 0.0, lx[3] = {0.0, 0.0, 0.0};

  PetscFunctionBeginUser;
  *value = 0.0;
  /* every term compares pairs: one sample has none (its st2ss diagonal would be a constant) */
  if (n < 2) PetscFunctionReturn(0);
  if (n > m->cap) {
    PetscCheck(!kd->freeze_targets, kd->comm, PETSC_ERR_ORDER, "distilvpr: frozen targets from a smaller batch");
    PetscCall(PetscFree(m->targets));
    PetscCall(PetscMalloc1(3 * n * n, &m->targets));
    m->cap = n;
  }
  PetscCall(ackd_kd_gather(st->in->student_embedding, Ds, n, st->sel, &xs));
  PetscCall(ackd_kd_gather(st->in->teacher_embedding, D, n, st->sel, &xt));
  PetscCall(PetscMalloc1(n * D, &y));
  PetscCall(PetscCalloc2(n * D, &gy, n * Ds, &gxs));
  if (m->proj >= 0)
    PetscCall(ackd_kd_linear(xs, n, Ds, kd->params.values + m->proj, D, y));
  else
    PetscCall(PetscArraycpy(y, xs, n * D));

  PetscCall(ackd_kd_rkd_distance(y, xt, n, D, D, cg, gy, &ld));
  PetscCall(ackd_kd_rkd_angle(y, xt, n, D, D, cg, gy, &la));
  PetscCall(geodesic(y, xt, n, D, c, cg, gy, &lg));
  PetscCall(st2ss(y, xt, n, D, c, cx, kd->freeze_targets, m->targets, gy, lx));

  if (m->proj >= 0)
    PetscCall(ackd_kd_linear_backward(xs, n, Ds, kd->params.values + m->proj, D, gy, gxs, st->g_params + m->proj));
  else
    PetscCall(PetscArraycpy(gxs, gy, n * D));
  for (PetscInt s = 0; s < n; s++)
    for (PetscInt k = 0; k < Ds; k++) st->g_emb[st->sel[s] * Ds + k] += gxs[s * Ds + k];
  *value = st->share * (m->rkdg * (ld + la + lg) + m->st2ss * (lx[0] + lx[1] + lx[2]));
  PetscCall(PetscFree2(gy, gxs));
  PetscCall(PetscFree(y));
  PetscCall(PetscFree(xs));
  PetscCall(PetscFree(xt));
  PetscFunctionReturn(0);
}

static PetscErrorCode destroy(AckdKDObj kd)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree(((DistilVPR *)kd->data)->targets));
  PetscFunctionReturn(0);
}

const KDMethod ackd_kd_distilvpr = {.destroy = destroy,
                                    .name    = "distilvpr",
                                    .help    = "DistilVPR: RKD-G + cross-agent st2ss (Euclidean, cosine, Poincaré)",
                                    .needs   = KD_NEEDS_EMBEDDING,
                                    .create  = create,
                                    .options = options,
                                    .setup   = setup,
                                    .loss    = loss};
