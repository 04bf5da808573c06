/* -kd_method rkd: relational KD (Park et al., CVPR 2019) on the pooled
 * embeddings of the local batch's samples that have a teacher, as PyTorch DDP
 * computes it per rank:
 *   distance: d_ij = |x_i - x_j| / mean_{d > 0} d, Huber(d_s - d_t) averaged over all n² pairs;
 *   angle: ⟨e_ba, e_ca⟩ with e_ba = normalize(x_b - x_a), Huber averaged over all n³ triples;
 *   25 distance + 50 angle. Embedding widths may differ. */
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

/* Pairwise distances normalised by their mean over distinct pairs; returns the mean. */
static double distances(const double *x, PetscInt n, PetscInt D, double *d)
{
  double   sum = 0.0;
  PetscInt cnt = 0;
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt j = 0; j < n; j++) {
      double acc = 0.0;
      for (PetscInt k = 0; k < D && i != j; k++) acc += (x[i * D + k] - x[j * D + k]) * (x[i * D + k] - x[j * D + k]);
      d[i * n + j] = sqrt(acc);
      if (d[i * n + j] > 0) {
        sum += d[i * n + j];
        cnt++;
      }
    }
  double mean = cnt ? sum / cnt : 1.0;
  for (PetscInt k = 0; k < n * n; k++) d[k] /= mean;
  return mean;
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

static PetscErrorCode loss(AckdKDObj kd, const KDStep *st, double coef, double *value)
{
  RKD     *m = (RKD *)kd->data;
  PetscInt n = st->nsel, Ds = kd->dims.student_embedding, Dt = kd->dims.teacher_embedding;
  double  *xs, *xt, *ds, *dt, *g, *us, *ut, *as, *at, *gx, *du, *len_s, *len_t, mean_s, ld = 0.0, la = 0.0, gd = 0.0;
  double   cd, ca;

  PetscFunctionBeginUser;
  *value = 0.0;
  if (n < 2) PetscFunctionReturn(0);
  PetscCall(ackd_kd_gather(st->in->student_embedding, Ds, n, st->sel, &xs));
  PetscCall(ackd_kd_gather(st->in->teacher_embedding, Dt, n, st->sel, &xt));
  PetscCall(PetscMalloc5(n * n, &ds, n * n, &dt, n * n, &g, n * Ds, &gx, n * Ds, &du));
  PetscCall(PetscMalloc6(n * Ds, &us, n * Dt, &ut, n * n, &as, n * n, &at, n, &len_s, n, &len_t));
  PetscCall(PetscArrayzero(gx, n * Ds));
  cd = m->distance * st->share;
  ca = m->angle * st->share;

  /* distance: d(loss)/d d̂_ij = h'_ij / n², then through the mean's normalisation */
  mean_s = distances(xs, n, Ds, ds);
  distances(xt, n, Dt, dt);
  PetscInt cnt = 0;
  for (PetscInt k = 0; k < n * n; k++) {
    double h;
    ld += ackd_kd_huber(ds[k] - dt[k], &h) / (double)(n * n);
    g[k] = h / (double)(n * n);
    gd += g[k] * ds[k];
    cnt += ds[k] > 0;
  }
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt j = 0; j < n; j++) {
      double raw = ds[i * n + j] * mean_s, dd;
      if (!(raw > 0)) continue;
      dd = coef * cd * (g[i * n + j] - gd / (double)cnt) / mean_s;
      for (PetscInt k = 0; k < Ds; k++) {
        double dir = (xs[i * Ds + k] - xs[j * Ds + k]) / raw;
        gx[i * Ds + k] += dd * dir;
        gx[j * Ds + k] -= dd * dir;
      }
    }

  /* angle, anchor by anchor: A = U Uᵀ, dU = (G + Gᵀ) U, dv_b = (dU_b - u_b (u_b·dU_b)) / |v_b| */
  for (PetscInt a = 0; a < n; a++) {
    directions(xs, n, Ds, a, us, len_s);
    directions(xt, n, Dt, a, ut, len_t);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)Ds, 1.0, us, (int)Ds, us, (int)Ds, 0.0,
                as, (int)n);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)Dt, 1.0, ut, (int)Dt, ut, (int)Dt, 0.0,
                at, (int)n);
    for (PetscInt k = 0; k < n * n; k++) {
      double h;
      la += ackd_kd_huber(as[k] - at[k], &h) / (double)(n * n * n);
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
        double dv = coef * ca * (du[b * Ds + k] - us[b * Ds + k] * dot) / len_s[b];
        gx[b * Ds + k] += dv;
        gx[a * Ds + k] -= dv;
      }
    }
  }
  for (PetscInt s = 0; s < n; s++)
    for (PetscInt k = 0; k < Ds; k++) st->g_emb[st->sel[s] * Ds + k] += gx[s * Ds + k];
  *value = cd * ld + ca * la;
  PetscCall(PetscFree5(ds, dt, g, gx, du));
  PetscCall(PetscFree6(us, ut, as, at, len_s, len_t));
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
