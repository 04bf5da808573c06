/* What the methods share: numerical pieces, accumulated in double (losses are
 * small differences of large sums, KL and covariances, and the gradient checks
 * compare against finite differences), the refusal of a teacher that lacks what
 * a method needs, and KD's default weights. Below kd.c and the methods both. */
#include "kd_impl.h"
#include <cblas.h>
#include <math.h>

void ackd_kd_log_softmax(const double *z, PetscInt K, double T, double *out)
{
  double max = z[0] / T, sum = 0.0;
  for (PetscInt k = 1; k < K; k++) max = PetscMax(max, z[k] / T);
  for (PetscInt k = 0; k < K; k++) sum += exp(z[k] / T - max);
  double lse = max + log(sum);
  for (PetscInt k = 0; k < K; k++) out[k] = z[k] / T - lse;
}

PetscErrorCode ackd_kd_resolve_warmup(AckdKDObj kd, const char *option, PetscInt paper, PetscInt paper_run,
                                      PetscInt *warmup)
{
  const PetscInt epochs = kd->dims.epochs;

  PetscFunctionBeginUser;
  if (*warmup < 0) {
    /* A warm-up fixed in epochs outlasts a short run, which then never reaches the method's full weight. */
    *warmup = epochs > 0 ? PetscMax(1, (PetscInt)PetscFloorReal((double)paper * epochs / paper_run + 0.5)) : paper;
    PetscFunctionReturn(0);
  }
  PetscCheck(epochs <= 0 || *warmup <= epochs, kd->comm, PETSC_ERR_USER_INPUT,
             "option %s: a warm-up of %" PetscInt_FMT " epochs is longer than the run's %" PetscInt_FMT
             "; give at most %" PetscInt_FMT " (or leave it out: %" PetscInt_FMT "/%" PetscInt_FMT " of the epochs)",
             option, *warmup, epochs, epochs, paper, paper_run);
  PetscFunctionReturn(0);
}

/* With p = softmax(zt/T), q = softmax(zs/T): KL = Σ p (log p - log q) and
 * dKL/dzs = (q - p)/T. The temperature derivative (CTKD learns T) goes through
 * both sides. */
double ackd_kd_kl_row(const double *zt, const double *zs, PetscInt K, double T, double coef, double *gzs, double *dT)
{
  double lp[K], lq[K], kl = 0.0;
  ackd_kd_log_softmax(zt, K, T, lp);
  ackd_kd_log_softmax(zs, K, T, lq);
  for (PetscInt k = 0; k < K; k++) kl += exp(lp[k]) * (lp[k] - lq[k]);
  if (gzs)
    for (PetscInt k = 0; k < K; k++) gzs[k] += coef * (exp(lq[k]) - exp(lp[k])) / T;
  if (dT) {
    /* KL(T) = Σ p_k (lp_k - lq_k); d lp_k/dT = -(zt_k - Ē_t)/T², d lq_k/dT = -(zs_k - Ē_s)/T²
     * with Ē_t = Σ p zt, Ē_s = Σ q zs; dp_k/dT = p_k d lp_k/dT. */
    double et = 0.0, es = 0.0, d = 0.0;
    for (PetscInt k = 0; k < K; k++) {
      et += exp(lp[k]) * zt[k];
      es += exp(lq[k]) * zs[k];
    }
    for (PetscInt k = 0; k < K; k++) {
      double p = exp(lp[k]), dlp = -(zt[k] - et) / (T * T), dlq = -(zs[k] - es) / (T * T);
      d += p * dlp * (lp[k] - lq[k]) + p * (dlp - dlq);
    }
    *dT += coef * d;
  }
  return kl;
}

/* X̄ = X - mean_rows X, C = X̄ᵀX̄ (d x d), into cov; xc receives X̄. */
static void centred_gram(const double *x, PetscInt n, PetscInt d, double *xc, double *cov)
{
  for (PetscInt j = 0; j < d; j++) {
    double m = 0.0;
    for (PetscInt i = 0; i < n; i++) m += x[i * d + j];
    m /= (double)n;
    for (PetscInt i = 0; i < n; i++) xc[i * d + j] = x[i * d + j] - m;
  }
  cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d, (int)d, (int)n, 1.0, xc, (int)d, xc, (int)d, 0.0, cov,
              (int)d);
}

/* dvalue/dC_S = G = 2 (C_S - C_T) / (4 d³) (symmetric), and since the columns of
 * X̄ sum to zero the centring passes the gradient through unchanged:
 * d/dX_S = 2 X̄_S G, d/dX_T = -2 X̄_T G. */
PetscErrorCode ackd_kd_coral(const double *s, PetscInt ns, const double *t, PetscInt nt, PetscInt d, double coef,
                             double *gs, double *gt, double *value)
{
  double *xs, *xt, *cs, *ct;
  double  norm = 4.0 * (double)d * (double)d * (double)d;

  PetscFunctionBeginUser;
  *value = 0.0;
  if (ns < 1 || nt < 1) PetscFunctionReturn(0);
  PetscCall(PetscMalloc4(ns * d, &xs, nt * d, &xt, d * d, &cs, d * d, &ct));
  centred_gram(s, ns, d, xs, cs);
  centred_gram(t, nt, d, xt, ct);
  for (PetscInt k = 0; k < d * d; k++) {
    double diff = cs[k] - ct[k];
    *value += diff * diff;
    cs[k] = 2.0 * diff / norm; /* cs now holds G */
  }
  *value /= norm;
  if (gs)
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)ns, (int)d, (int)d, 2.0 * coef, xs, (int)d, cs, (int)d,
                1.0, gs, (int)d);
  if (gt)
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nt, (int)d, (int)d, -2.0 * coef, xt, (int)d, cs, (int)d,
                1.0, gt, (int)d);
  PetscCall(PetscFree4(xs, xt, cs, ct));
  PetscFunctionReturn(0);
}

/* X̄ = X - mean_rows X in single precision (the means summed in double), C = X̄ᵀX̄ by SGEMM. */
static ACKD_CPU_CLONES PetscErrorCode centred_gram_single(const double *x, PetscInt n, PetscInt d, float *xc,
                                                          float *cov)
{
  PetscFunctionBeginUser;
  for (PetscInt j = 0; j < d; j++) {
    double m = 0.0;
    for (PetscInt i = 0; i < n; i++) m += x[i * d + j];
    m /= (double)n;
    for (PetscInt i = 0; i < n; i++) xc[i * d + j] = (float)(x[i * d + j] - m);
  }
  PetscCall(AckdSgemm('T', 'N', d, d, n, 1.0f, xc, d, xc, d, 0.0f, cov, d));
  PetscFunctionReturn(0);
}

/* ackd_kd_coral with its four products in single precision. The covariances' entries are
 * n-term float sums, within n u of Σ|x̄_i||x̄_j| (n u = 7.6e-6 at SKA's 128 rows, the typical
 * error sqrt(n) u ~ 7e-7); the squared differences are summed in double. The loss and
 * gradients then carry that relative error times |C| / |C_S - C_T|: small while the two
 * sides' covariances differ by a fraction of their size, which SKA's CORAL never closes
 * beyond (its loss falls by a factor of tens over a run, not of millions). */
PetscErrorCode ackd_kd_coral_single(const double *s, PetscInt ns, const double *t, PetscInt nt, PetscInt d, double coef,
                                    double *gs, double *gt, double *value)
{
  float *xs, *xt, *cs, *ct, *gx;
  double norm = 4.0 * (double)d * (double)d * (double)d, acc = 0.0;

  PetscFunctionBeginUser;
  *value = 0.0;
  if (ns < 1 || nt < 1) PetscFunctionReturn(0);
  PetscCall(PetscMalloc5(ns * d, &xs, nt * d, &xt, d * d, &cs, d * d, &ct, PetscMax(ns, nt) * d, &gx));
  PetscCall(centred_gram_single(s, ns, d, xs, cs));
  PetscCall(centred_gram_single(t, nt, d, xt, ct));
  for (PetscInt k = 0; k < d * d; k++) {
    double diff = (double)cs[k] - (double)ct[k];
    acc += diff * diff;
    cs[k] = (float)(2.0 * diff / norm); /* cs now holds G */
  }
  *value = acc / norm;
  if (gs) {
    PetscCall(AckdSgemm('N', 'N', ns, d, d, (float)(2.0 * coef), xs, d, cs, d, 0.0f, gx, d));
    for (PetscInt k = 0; k < ns * d; k++) gs[k] += gx[k];
  }
  if (gt) {
    PetscCall(AckdSgemm('N', 'N', nt, d, d, (float)(-2.0 * coef), xt, d, cs, d, 0.0f, gx, d));
    for (PetscInt k = 0; k < nt * d; k++) gt[k] += gx[k];
  }
  PetscCall(PetscFree5(xs, xt, cs, ct, gx));
  PetscFunctionReturn(0);
}

PetscErrorCode ackd_kd_gather(const AckdTensor *t, PetscInt per_sample, PetscInt n, const PetscInt *sel, double **out)
{
  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(PetscMax(n * per_sample, 1), out));
  for (PetscInt i = 0; i < n; i++) {
    const float *row = t->data + (sel ? sel[i] : i) * per_sample;
    for (PetscInt k = 0; k < per_sample; k++) (*out)[i * per_sample + k] = row[k];
  }
  PetscFunctionReturn(0);
}

/* W arrives in float (the parameter buffer); a double copy lets BLAS do the
 * products at SKA's and FitNet's sizes (B·N rows x 512 x 512). */
static PetscErrorCode to_double(const float *W, PetscInt n, double **w)
{
  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(PetscMax(n, 1), w));
  for (PetscInt i = 0; i < n; i++) (*w)[i] = W[i];
  PetscFunctionReturn(0);
}

PetscErrorCode ackd_kd_linear(const double *x, PetscInt n, PetscInt in, const float *W, PetscInt out, double *y)
{
  double *w;

  PetscFunctionBeginUser;
  PetscCall(to_double(W, out * in, &w));
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)out, (int)in, 1.0, x, (int)in, w, (int)in, 0.0, y,
              (int)out);
  PetscCall(PetscFree(w));
  PetscFunctionReturn(0);
}

/* The double operands of a single-precision product, rounded. */
static ACKD_CPU_CLONES void to_single(const double *x, PetscInt n, float *y)
{
  for (PetscInt i = 0; i < n; i++) y[i] = (float)x[i];
}

/* ackd_kd_linear by SGEMM: x rounded to float (W is float already), y = the float product. */
PetscErrorCode ackd_kd_linear_single(const double *x, PetscInt n, PetscInt in, const float *W, PetscInt out, double *y)
{
  float *xf, *yf;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc2(PetscMax(n * in, 1), &xf, PetscMax(n * out, 1), &yf));
  to_single(x, n * in, xf);
  PetscCall(AckdSgemm('N', 'T', n, out, in, 1.0f, xf, in, W, in, 0.0f, yf, out));
  for (PetscInt i = 0; i < n * out; i++) y[i] = yf[i];
  PetscCall(PetscFree2(xf, yf));
  PetscFunctionReturn(0);
}

/* The backward of y = x Wᵀ in single precision (SKA's projections to the teacher's width at either
 * -ska_precision, as its query and key maps): gx += dy W, gW += dyᵀ x. For SKA these two
 * products (128 x 512 x 128 each per step and rank for the study's pair) ran at a quarter of
 * SGEMM's rate in double. A K-term float sum carries a normwise error near sqrt(K) u (1.4e-6 at
 * K = 512) and at most K u = 3e-5 of |dy| |W|, under the finite-difference (1e-3) and PyTorch
 * (1e-4) tolerances. Only the forward follows -ska_precision: the loss's value is what finite
 * differences divide by their step, where float rounding of y shows as 1e-3 errors. */
PetscErrorCode ackd_kd_linear_single_backward(const double *x, PetscInt n, PetscInt in, const float *W, PetscInt out,
                                              const double *dy, double *gx, double *gW)
{
  float *xf, *dyf, *gxf, *gWf;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc4(n * in, &xf, n * out, &dyf, n * in, &gxf, out * in, &gWf));
  to_single(x, n * in, xf);
  to_single(dy, n * out, dyf);
  PetscCall(AckdSgemm('N', 'N', n, in, out, 1.0f, dyf, out, W, in, 0.0f, gxf, in));
  PetscCall(AckdSgemm('T', 'N', out, in, n, 1.0f, dyf, out, xf, in, 0.0f, gWf, in));
  for (PetscInt i = 0; i < n * in; i++) gx[i] += gxf[i];
  for (PetscInt i = 0; i < out * in; i++) gW[i] += gWf[i];
  PetscCall(PetscFree4(xf, dyf, gxf, gWf));
  PetscFunctionReturn(0);
}

PetscErrorCode ackd_kd_linear_backward(const double *x, PetscInt n, PetscInt in, const float *W, PetscInt out,
                                       const double *dy, double *gx, double *gW)
{
  PetscFunctionBeginUser;
  if (gx) {
    double *w;
    PetscCall(to_double(W, out * in, &w));
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)in, (int)out, 1.0, dy, (int)out, w, (int)in,
                1.0, gx, (int)in);
    PetscCall(PetscFree(w));
  }
  if (gW)
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)out, (int)in, (int)n, 1.0, dy, (int)out, x, (int)in, 1.0,
                gW, (int)in);
  PetscFunctionReturn(0);
}

void ackd_kd_normalise(double *x, PetscInt n, PetscInt d, double *len)
{
  for (PetscInt i = 0; i < n; i++) {
    double acc = 0.0;
    for (PetscInt k = 0; k < d; k++) acc += x[i * d + k] * x[i * d + k];
    len[i] = PetscMax(sqrt(acc), 1e-12);
    for (PetscInt k = 0; k < d; k++) x[i * d + k] /= len[i];
  }
}

/* d/dy of y/|y| given d/dx̂: (g - x̂ (x̂·g)) / |y|. */
void ackd_kd_normalise_backward(const double *xh, PetscInt n, PetscInt d, const double *len, double *g)
{
  for (PetscInt i = 0; i < n; i++) {
    double dot = 0.0;
    for (PetscInt k = 0; k < d; k++) dot += xh[i * d + k] * g[i * d + k];
    for (PetscInt k = 0; k < d; k++) g[i * d + k] = (g[i * d + k] - xh[i * d + k] * dot) / len[i];
  }
}

PetscErrorCode ackd_kd_add_linear(AckdKDObj kd, const char *name, PetscInt out, PetscInt in, PetscInt *w, PetscInt *b)
{
  PetscInt shape[2] = {out, in};
  char     full[ACKD_NN_NAME_LEN];

  PetscFunctionBeginUser;
  PetscCall(PetscSNPrintf(full, sizeof full, "%s.weight", name));
  PetscCall(AckdParamsAddShaped(&kd->params, full, 2, shape, in, ACKD_INIT_KAIMING_UNIFORM, w));
  PetscCall(PetscSNPrintf(full, sizeof full, "%s.bias", name));
  PetscCall(AckdParamsAdd(&kd->params, full, out, in, ACKD_INIT_FAN_IN_UNIFORM, b));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------- what the methods share with kd.c */

PetscErrorCode ackd_kd_refuse_missing(AckdKD kd, unsigned needs, const char *who, const char *fix)
{
  PetscFunctionBeginUser;
  PetscCheck(!(needs & KD_NEEDS_LOGITS) || kd->dims.teacher_logits, kd->comm, PETSC_ERR_USER_INPUT,
             "%s needs the teacher's logits but the teacher gives none; use a gallery with /gallery/logits or a "
             "teacher checkpoint",
             who);
  PetscCheck(!(needs & KD_NEEDS_EMBEDDING) || kd->dims.teacher_embedding > 0, kd->comm, PETSC_ERR_USER_INPUT,
             "%s needs the teacher's embedding but the teacher gives none; use a gallery with /gallery/embedding or a "
             "teacher checkpoint",
             who);
  PetscCheck(!(needs & KD_NEEDS_TOKENS) || kd->dims.teacher_channels > 0, kd->comm, PETSC_ERR_USER_INPUT,
             "%s needs the teacher's layer-4 tokens, which a gallery does not hold; %s", who,
             fix ? fix : "distill from a teacher checkpoint, or choose kd, dkd, lskd, logits or rkd");
  PetscFunctionReturn(0);
}

void ackd_kd_alpha_weights(double alpha, double *ce, double *kd)
{
  *ce = 1.0 - alpha;
  *kd = alpha;
}

double ackd_kd_full_label_share(AckdKDObj kd)
{
  (void)kd;
  return 1.0;
}
