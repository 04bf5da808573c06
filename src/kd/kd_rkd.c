/* -kd_method rkd: relational KD (Park et al., CVPR 2019) on the pooled
 * embeddings of the local batch's samples that have a teacher, as PyTorch DDP
 * computes it per rank:
 *   distance: d_ij = |x_i - x_j| / mean_{d > 0} d, Huber(d_s - d_t) averaged over all n² pairs;
 *   angle: ⟨e_ba, e_ca⟩ with e_ba = normalize(x_b - x_a), Huber averaged over all n³ triples;
 *   25 distance + 50 angle. Embedding widths may differ. The two terms are shared with
 * DistilVPR's RKD-G (kd_distilvpr.c). */
#include "kd_impl.h"
#include <cblas.h>
#include <math.h>

typedef struct {
  PetscReal distance, angle;
} RKD;

static PetscErrorCode create(AckdKDObj kd)
{
  RKD *m;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&m));
  m->distance = 25.0;
  m->angle    = 50.0;
  kd->data    = m;
  PetscFunctionReturn(0);
}

static PetscErrorCode options(AckdKDObj kd, PetscOptionItems *PetscOptionsObject)
{
  RKD *m = (RKD *)kd->data;

  PetscFunctionBeginUser;
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-rkd_distance", "RKD: weight of the distance term", &m->distance, 0.0,
                            1e9, NULL));
  PetscCall(
      AckdOptionsReal(PetscOptionsObject, "-rkd_angle", "RKD: weight of the angle term", &m->angle, 0.0, 1e9, NULL));
  PetscFunctionReturn(0);
}

/* Mean of the positive entries: the diagonal, and coincident samples, do not shrink the scale. */
static double positive_mean(const double *d, PetscInt count, PetscInt *npositive)
{
  double sum = 0.0;

  *npositive = 0;
  for (PetscInt k = 0; k < count; k++)
    if (d[k] > 0) {
      sum += d[k];
      (*npositive)++;
    }
  return *npositive ? sum / *npositive : 1.0;
}

/* With d̂ = d / m, m = mean_{d > 0} d: dL/dd_kl = (g_kl - Σ g_ij d̂_ij / count) / m on the
 * positive entries, g = dL/dd̂; a zero entry is a norm at 0, which passes no gradient on. */
double ackd_kd_rkd_normalised_huber(const double *ds, const double *dt, PetscInt n, double coef, double *gds)
{
  PetscInt cs, ct;
  double   ms = positive_mean(ds, n * n, &cs), mt = positive_mean(dt, n * n, &ct), value = 0.0, gd = 0.0;

  for (PetscInt k = 0; k < n * n; k++) {
    double h;
    value += ackd_kd_huber(ds[k] / ms - dt[k] / mt, &h) / (double)(n * n);
    if (!gds) continue;
    gds[k] = h / (double)(n * n);
    gd += gds[k] * ds[k] / ms;
  }
  for (PetscInt k = 0; gds && k < n * n; k++) gds[k] = ds[k] > 0 ? coef * (gds[k] - gd / (double)cs) / ms : 0.0;
  return value;
}

static void pairwise_distances(const double *x, PetscInt n, PetscInt D, double *d)
{
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt j = 0; j < n; j++) {
      double acc = 0.0;
      for (PetscInt k = 0; k < D && i != j; k++) acc += (x[i * D + k] - x[j * D + k]) * (x[i * D + k] - x[j * D + k]);
      d[i * n + j] = sqrt(acc);
    }
}

PetscErrorCode ackd_kd_rkd_distance(const double *xs, const double *xt, PetscInt n, PetscInt Ds, PetscInt Dt,
                                    double coef, double *gx, double *value)
{
  double *ds, *dt, *g;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc3(n * n, &ds, n * n, &dt, n * n, &g));
  pairwise_distances(xs, n, Ds, ds);
  pairwise_distances(xt, n, Dt, dt);
  *value = ackd_kd_rkd_normalised_huber(ds, dt, n, coef, g);
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt j = 0; j < n; j++) {
      if (!(ds[i * n + j] > 0)) continue;
      for (PetscInt k = 0; k < Ds; k++) {
        double dir = (xs[i * Ds + k] - xs[j * Ds + k]) / ds[i * n + j];
        gx[i * Ds + k] += g[i * n + j] * dir;
        gx[j * Ds + k] -= g[i * n + j] * dir;
      }
    }
  PetscCall(PetscFree3(ds, dt, g));
  PetscFunctionReturn(0);
}

/* Rows u_b = normalize(x_b - x_a) (zero for b = a); lengths into len. */
static void directions(const double *x, PetscInt n, PetscInt D, PetscInt a, double *u, double *len)
{
  for (PetscInt b = 0; b < n; b++) {
    double acc = 0.0;
    for (PetscInt k = 0; k < D; k++) {
      u[b * D + k] = x[b * D + k] - x[a * D + k];
      acc += u[b * D + k] * u[b * D + k];
    }
    len[b] = PetscMax(sqrt(acc), 1e-12);
    for (PetscInt k = 0; k < D; k++) u[b * D + k] /= len[b];
  }
}

/* Anchor by anchor: A = U Uᵀ, dU = (G + Gᵀ) U, dv_b = (dU_b - u_b (u_b·dU_b)) / |v_b|. */
PetscErrorCode ackd_kd_rkd_angle(const double *xs, const double *xt, PetscInt n, PetscInt Ds, PetscInt Dt, double coef,
                                 double *gx, double *value)
{
  double *us, *ut, *as, *at, *g, *du, *len_s, *len_t;

  PetscFunctionBeginUser;
  *value = 0.0;
  PetscCall(PetscMalloc6(n * Ds, &us, n * Dt, &ut, n * n, &as, n * n, &at, n, &len_s, n, &len_t));
  PetscCall(PetscMalloc2(n * n, &g, n * Ds, &du));
  for (PetscInt a = 0; a < n; a++) {
    directions(xs, n, Ds, a, us, len_s);
    directions(xt, n, Dt, a, ut, len_t);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)Ds, 1.0, us, (int)Ds, us, (int)Ds, 0.0,
                as, (int)n);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)Dt, 1.0, ut, (int)Dt, ut, (int)Dt, 0.0,
                at, (int)n);
    for (PetscInt k = 0; k < n * n; k++) {
      double h;
      *value += ackd_kd_huber(as[k] - at[k], &h) / (double)(n * n * n);
      g[k] = h / (double)(n * n * n);
    }
    for (PetscInt b = 0; b < n; b++)
      for (PetscInt c = b; c < n; c++) {
        double sym   = g[b * n + c] + g[c * n + b];
        g[b * n + c] = g[c * n + b] = sym;
      }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)Ds, (int)n, 1.0, g, (int)n, us, (int)Ds, 0.0,
                du, (int)Ds);
    for (PetscInt b = 0; b < n; b++) {
      double dot = 0.0;
      if (b == a) continue; /* x_a - x_a is zero: its two contributions cancel */
      for (PetscInt k = 0; k < Ds; k++) dot += us[b * Ds + k] * du[b * Ds + k];
      for (PetscInt k = 0; k < Ds; k++) {
        double dv = coef * (du[b * Ds + k] - us[b * Ds + k] * dot) / len_s[b];
        gx[b * Ds + k] += dv;
        gx[a * Ds + k] -= dv;
      }
    }
  }
  PetscCall(PetscFree6(us, ut, as, at, len_s, len_t));
  PetscCall(PetscFree2(g, du));
  PetscFunctionReturn(0);
}

static PetscErrorCode loss(AckdKDObj kd, const KDStep *st, double coef, double *value)
{
  RKD     *m = (RKD *)kd->data;
  PetscInt n = st->nsel, Ds = kd->dims.student_embedding, Dt = kd->dims.teacher_embedding;
  double  *xs, *xt, *gx, ld, la;
  double   cd = m->distance * st->share, ca = m->angle * st->share;

  PetscFunctionBeginUser;
  *value = 0.0;
  if (n < 2) PetscFunctionReturn(0);
  PetscCall(ackd_kd_gather(st->in->student_embedding, Ds, n, st->sel, &xs));
  PetscCall(ackd_kd_gather(st->in->teacher_embedding, Dt, n, st->sel, &xt));
  PetscCall(PetscCalloc1(n * Ds, &gx));
  PetscCall(ackd_kd_rkd_distance(xs, xt, n, Ds, Dt, coef * cd, gx, &ld));
  PetscCall(ackd_kd_rkd_angle(xs, xt, n, Ds, Dt, coef * ca, gx, &la));
  for (PetscInt s = 0; s < n; s++)
    for (PetscInt k = 0; k < Ds; k++) st->g_emb[st->sel[s] * Ds + k] += gx[s * Ds + k];
  *value = cd * ld + ca * la;
  PetscCall(PetscFree(gx));
  PetscCall(PetscFree(xs));
  PetscCall(PetscFree(xt));
  PetscFunctionReturn(0);
}

const KDMethod ackd_kd_rkd = {.name    = "rkd",
                              .help    = "relational KD: distance and angle",
                              .needs   = KD_NEEDS_EMBEDDING,
                              .create  = create,
                              .options = options,
                              .loss    = loss};
