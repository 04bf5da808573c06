/* -kd_method mnf: Modality Noise Filter + Contrastive Semantic Calibration
 * (the unconstrained-videos cross-modal KD; docs/KD.md), with a
 * frozen teacher. a = the teacher's features (the modality whose
 * modality-specific content is filtered), v = the student's; layer-4 tokens
 * when the teacher gives them (N_t, N_s tokens), else the pooled embeddings
 * (one token each). The student is mapped to the teacher's width C by a learned
 * linear map (no bias) when the widths differ. Over the samples that have a
 * teacher (batch-level, B/N):
 *   gate   g = σ(W2 ReLU(BN(W1 [a_n; v̄])) + b2) per teacher token, â = g ⊙ a,
 *          BN with the statistics of the local rows (training mode, affine);
 *   attention: 2 heads, queries from v, keys and values from â (no bias),
 *          u_i = mean over the student's tokens of the output: the filtered
 *          teacher as the student's tokens see it;
 *   triplet: ŝ = normalize(v̄), û = normalize(u), d_ij = |ŝ_i - û_j|,
 *          L_tri = mean over i ≠ j of [m + d_ii - d_ij]_+ (batch-all negatives), m = 0.2;
 *   CSC:   c_ij = ŝ_i·û_j, τ_ij = sg(c_ij) + θ, L_csc = mean_i -log softmax_j(c_ij / τ_ij)[i];
 *   L_mnf = λ_tri L_tri + λ_csc L_csc.
 * Everything below the teacher's inputs gets a gradient: the student's
 * tokens (or embedding), the projection, the gate, the attention. */
#include "kd_impl.h"
#include <cblas.h>
#include <math.h>

static const char *const features[] = {"auto", "tokens", "embedding"};

typedef struct {
  PetscReal margin, theta, triplet, csc;
  PetscInt  heads, hidden, feature; /* feature: 0 auto, 1 tokens, 2 embedding (resolved in setup) */
  PetscBool tokens;
  PetscInt  cin, C; /* the student's width, the common (teacher's) width */
  PetscInt  proj, w1, gamma, beta, w2, b2, wq, wk, wv, wo;
  double   *tau; /* τ_ij of the latest unfrozen call (freeze_targets) */
  PetscInt  cap;
} MNF;

static PetscErrorCode create(AckdKDObj kd)
{
  MNF *m;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&m));
  m->margin  = 0.2;
  m->theta   = 1.1;
  m->triplet = 1.0;
  m->csc     = 1.0;
  m->heads   = 2;
  kd->data   = m;
  PetscFunctionReturn(0);
}

static PetscErrorCode options(AckdKDObj kd, PetscOptionItems *PetscOptionsObject)
{
  MNF *m = (MNF *)kd->data;

  PetscFunctionBeginUser;
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-mnf_margin", "MNF: margin of the triplet loss", &m->margin, 0.0, 1e3,
                            NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-mnf_theta",
                            "MNF: CSC's temperature offset, tau_ij = sg(cos) + theta (> 1 keeps every tau > 0)",
                            &m->theta, 1.0, 1e3, NULL));
  if (!(m->theta > 1.0)) {
    char text[64];
    snprintf(text, sizeof text, "%g", (double)m->theta);
    SETERRQ(kd->comm, PETSC_ERR_USER_INPUT,
            "option -mnf_theta: %s leaves tau_ij = cos + theta <= 0 for opposite pairs; use a value > 1", text);
  }
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-mnf_triplet_weight", "MNF: weight of the triplet loss", &m->triplet,
                            0.0, 1e6, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-mnf_csc_weight", "MNF: weight of the contrastive calibration",
                            &m->csc, 0.0, 1e6, NULL));
  PetscCall(
      AckdOptionsInt(PetscOptionsObject, "-mnf_heads", "MNF: heads of the cross-attention", &m->heads, 1, 1024, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-mnf_hidden", "MNF: hidden width of the gate (0: the common width)",
                           &m->hidden, 0, 1 << 20, NULL));
  PetscCall(AckdOptionsChoice(PetscOptionsObject, "-mnf_feature",
                              "MNF's features: auto (tokens when the teacher gives them, else embeddings), tokens or "
                              "embedding",
                              features, 3, &m->feature, NULL));
  PetscFunctionReturn(0);
}

static PetscErrorCode setup(AckdKDObj kd)
{
  MNF *m = (MNF *)kd->data;

  PetscFunctionBeginUser;
  if (m->feature == 1)
    PetscCall(ackd_kd_refuse_missing(kd, KD_NEEDS_TOKENS, "-kd_method mnf -mnf_feature tokens",
                                     "distill from a teacher checkpoint, or use -mnf_feature embedding"));
  m->tokens = (PetscBool)(m->feature == 1 || (m->feature == 0 && kd->dims.teacher_channels > 0));
  if (!m->tokens) PetscCall(ackd_kd_refuse_missing(kd, KD_NEEDS_EMBEDDING, "-kd_method mnf", NULL));
  m->cin = m->tokens ? kd->dims.student_channels : kd->dims.student_embedding;
  m->C   = m->tokens ? kd->dims.teacher_channels : kd->dims.teacher_embedding;
  if (!m->hidden) m->hidden = m->C;
  PetscCheck(m->C % m->heads == 0, kd->comm, PETSC_ERR_USER_INPUT,
             "option -mnf_heads: %" PetscInt_FMT " heads do not divide the teacher's %s width %" PetscInt_FMT, m->heads,
             m->tokens ? "token" : "embedding", m->C);
  m->proj = -1;
  {
    /* the weights without bias (Kaiming-uniform, as nn.Linear); fc1 has none because BN's mean removes it */
    struct {
      const char *name;
      PetscInt    out, in, *offset;
    } w[] = {{"mnf.student_projection.weight", m->C, m->cin, &m->proj},
             {"mnf.gate.fc1.weight", m->hidden, 2 * m->C, &m->w1},
             {"mnf.attention.q_proj.weight", m->C, m->C, &m->wq},
             {"mnf.attention.k_proj.weight", m->C, m->C, &m->wk},
             {"mnf.attention.v_proj.weight", m->C, m->C, &m->wv},
             {"mnf.attention.out_proj.weight", m->C, m->C, &m->wo}};
    for (PetscInt k = m->cin == m->C ? 1 : 0; k < (PetscInt)(sizeof w / sizeof w[0]); k++) {
      PetscInt shape[2] = {w[k].out, w[k].in};
      PetscCall(AckdParamsAddShaped(&kd->params, w[k].name, 2, shape, w[k].in, ACKD_INIT_KAIMING_UNIFORM, w[k].offset));
    }
  }
  PetscCall(AckdParamsAdd(&kd->params, "mnf.gate.bn.weight", m->hidden, m->hidden, ACKD_INIT_ONES, &m->gamma));
  PetscCall(AckdParamsAdd(&kd->params, "mnf.gate.bn.bias", m->hidden, m->hidden, ACKD_INIT_ZEROS, &m->beta));
  PetscCall(ackd_kd_add_linear(kd, "mnf.gate.fc2", m->C, m->hidden, &m->w2, &m->b2));
  PetscFunctionReturn(0);
}

/* y (rows x out) += b, and its backward gb += Σ_rows dy. */
static void add_bias(double *y, PetscInt rows, PetscInt out, const float *b)
{
  for (PetscInt r = 0; r < rows; r++)
    for (PetscInt k = 0; k < out; k++) y[r * out + k] += b[k];
}
static void bias_backward(const double *dy, PetscInt rows, PetscInt out, double *gb)
{
  for (PetscInt r = 0; r < rows; r++)
    for (PetscInt k = 0; k < out; k++) gb[k] += dy[r * out + k];
}

/* The activations of one forward, kept for the backward. R = n N_t gate rows. */
typedef struct {
  PetscInt n, Ns, Nt, R;
  double  *xs, *v, *vbar, *a, *x, *hn, *istd, *y, *g, *ah, *q, *k, *vv, *p, *pbar, *obar, *u, *sh, *uh, *ls, *lu;
} Fwd;

/* The gate on every teacher token: â = σ(W2 ReLU(BN(W1 [a; v̄])) + b2) ⊙ a. */
static PetscErrorCode gate_forward(const MNF *m, const float *V, Fwd *f)
{
  PetscInt C = m->C, Hd = m->hidden, R = f->R;
  double  *h = f->y; /* W1 x, normalised in place into y below */

  PetscFunctionBeginUser;
  for (PetscInt r = 0; r < R; r++) {
    PetscInt i = r / f->Nt;
    for (PetscInt c = 0; c < C; c++) {
      f->x[r * 2 * C + c]     = f->a[r * C + c];
      f->x[r * 2 * C + C + c] = f->vbar[i * C + c];
    }
  }
  PetscCall(ackd_kd_linear(f->x, R, 2 * C, V + m->w1, Hd, h));
  for (PetscInt k = 0; k < Hd; k++) {
    double mean = 0.0, var = 0.0;
    for (PetscInt r = 0; r < R; r++) mean += h[r * Hd + k];
    mean /= (double)R;
    for (PetscInt r = 0; r < R; r++) var += (h[r * Hd + k] - mean) * (h[r * Hd + k] - mean);
    f->istd[k] = 1.0 / sqrt(var / (double)R + 1e-5); /* biased variance, eps 1e-5: PyTorch's BatchNorm */
    for (PetscInt r = 0; r < R; r++) {
      f->hn[r * Hd + k] = (h[r * Hd + k] - mean) * f->istd[k];
      f->y[r * Hd + k]  = V[m->gamma + k] * f->hn[r * Hd + k] + V[m->beta + k];
    }
  }
  {
    double *relu = f->ah; /* scratch until â is written */
    for (PetscInt e = 0; e < R * Hd; e++) relu[e] = PetscMax(f->y[e], 0.0);
    PetscCall(ackd_kd_linear(relu, R, Hd, V + m->w2, C, f->g));
  }
  add_bias(f->g, R, C, V + m->b2);
  for (PetscInt e = 0; e < R * C; e++) {
    f->g[e]  = 1.0 / (1.0 + exp(-f->g[e]));
    f->ah[e] = f->g[e] * f->a[e];
  }
  PetscFunctionReturn(0);
}

/* Per sample and head: P = softmax(Q_h K_hᵀ / sqrt(d)); the output pooled over
 * the student's tokens is Σ_m p̄_m V_h[m] with p̄ = mean over queries of P. */
static void attention_forward(const MNF *m, Fwd *f)
{
  PetscInt C = m->C, H = m->heads, dh = C / H, Ns = f->Ns, Nt = f->Nt;
  double   scale = 1.0 / sqrt((double)dh);

  for (PetscInt i = 0; i < f->n; i++)
    for (PetscInt hh = 0; hh < H; hh++) {
      double *P = f->p + ((i * H + hh) * Ns) * Nt, *pb = f->pbar + (i * H + hh) * Nt;
      for (PetscInt t = 0; t < Nt; t++) pb[t] = 0.0;
      for (PetscInt s = 0; s < Ns; s++) {
        const double *qs  = f->q + (i * Ns + s) * C + hh * dh;
        double        max = -INFINITY, sum = 0.0;
        for (PetscInt t = 0; t < Nt; t++) {
          const double *kt  = f->k + (i * Nt + t) * C + hh * dh;
          double        dot = 0.0;
          for (PetscInt c = 0; c < dh; c++) dot += qs[c] * kt[c];
          P[s * Nt + t] = dot * scale;
          max           = PetscMax(max, P[s * Nt + t]);
        }
        for (PetscInt t = 0; t < Nt; t++) sum += (P[s * Nt + t] = exp(P[s * Nt + t] - max));
        for (PetscInt t = 0; t < Nt; t++) pb[t] += (P[s * Nt + t] /= sum) / (double)Ns;
      }
      for (PetscInt c = 0; c < dh; c++) {
        double o = 0.0;
        for (PetscInt t = 0; t < Nt; t++) o += pb[t] * f->vv[(i * Nt + t) * C + hh * dh + c];
        f->obar[i * C + hh * dh + c] = o;
      }
    }
}

/* Backward of attention_forward given d obar: adds into dq, dk, dvv. */
static void attention_backward(const MNF *m, const Fwd *f, const double *dobar, double *dq, double *dk, double *dvv)
{
  PetscInt C = m->C, H = m->heads, dh = C / H, Ns = f->Ns, Nt = f->Nt;
  double   scale = 1.0 / sqrt((double)dh), dpb[Nt];

  for (PetscInt i = 0; i < f->n; i++)
    for (PetscInt hh = 0; hh < H; hh++) {
      const double *P = f->p + ((i * H + hh) * Ns) * Nt, *pb = f->pbar + (i * H + hh) * Nt;
      const double *go = dobar + i * C + hh * dh;
      for (PetscInt t = 0; t < Nt; t++) {
        const double *vt = f->vv + (i * Nt + t) * C + hh * dh;
        double       *gv = dvv + (i * Nt + t) * C + hh * dh, dot = 0.0;
        for (PetscInt c = 0; c < dh; c++) {
          gv[c] += pb[t] * go[c];
          dot += vt[c] * go[c];
        }
        dpb[t] = dot / (double)Ns; /* d/dP[s, t], the same for every query s */
      }
      for (PetscInt s = 0; s < Ns; s++) {
        const double *qs = f->q + (i * Ns + s) * C + hh * dh;
        double       *gq = dq + (i * Ns + s) * C + hh * dh, mean = 0.0;
        for (PetscInt t = 0; t < Nt; t++) mean += P[s * Nt + t] * dpb[t];
        for (PetscInt t = 0; t < Nt; t++) {
          double        ds = P[s * Nt + t] * (dpb[t] - mean) * scale;
          const double *kt = f->k + (i * Nt + t) * C + hh * dh;
          double       *gk = dk + (i * Nt + t) * C + hh * dh;
          for (PetscInt c = 0; c < dh; c++) {
            gq[c] += ds * kt[c];
            gk[c] += ds * qs[c];
          }
        }
      }
    }
}

/* The two losses on the cosine matrix cm (n x n) of ŝ and û; their gradient
 * d(λ_tri L_tri + λ_csc L_csc)/d cm into dc (overwritten). τ comes from cm, or
 * from the previous call when the targets are frozen (tests). */
static double calibration(AckdKDObj kd, MNF *m, PetscInt n, const double *cm, double *dc)
{
  double tri = 0.0, csc = 0.0, pairs = (double)(n * (n - 1));

  PetscArrayzero(dc, n * n);
  if (!kd->freeze_targets)
    for (PetscInt e = 0; e < n * n; e++) m->tau[e] = cm[e] + m->theta;
  for (PetscInt i = 0; i < n; i++) {
    double dii = sqrt(PetscMax(2.0 - 2.0 * cm[i * n + i], 0.0)), lg[n], max = -INFINITY, sum = 0.0, lse;
    for (PetscInt j = 0; j < n; j++) {
      double dij = sqrt(PetscMax(2.0 - 2.0 * cm[i * n + j], 0.0)), h = m->margin + dii - dij;
      if (j == i || h <= 0.0) continue;
      tri += h / pairs;
      /* d|ŝ - û|/dc = -1/|ŝ - û| on unit vectors */
      dc[i * n + i] -= m->triplet / pairs / PetscMax(dii, 1e-12);
      dc[i * n + j] += m->triplet / pairs / PetscMax(dij, 1e-12);
    }
    for (PetscInt j = 0; j < n; j++) {
      lg[j] = cm[i * n + j] / m->tau[i * n + j];
      max   = PetscMax(max, lg[j]);
    }
    for (PetscInt j = 0; j < n; j++) sum += exp(lg[j] - max);
    lse = max + log(sum);
    csc += (lse - lg[i]) / (double)n;
    for (PetscInt j = 0; j < n; j++)
      dc[i * n + j] += m->csc * (exp(lg[j] - lse) - (i == j)) / (double)n / m->tau[i * n + j];
  }
  return m->triplet * tri + m->csc * csc;
}

static PetscErrorCode loss(AckdKDObj kd, const KDStep *st, double coef, double *value)
{
  MNF                *m  = (MNF *)kd->data;
  const AckdKDInputs *in = st->in;
  const AckdTensor   *ts = m->tokens ? in->student_tokens : in->student_embedding;
  const AckdTensor   *tt = m->tokens ? in->teacher_tokens : in->teacher_embedding;
  const float        *V  = kd->params.values;
  double             *G = st->g_params, c = coef * st->share, *cm, *dc, *ds, *du, *dobar, *dq, *dk, *dvv, *dah;
  double             *dz, *dx, *dv, *dxs;
  PetscInt            n = st->nsel, C = m->C, Hd = m->hidden;
  Fwd                 f = {0};

  PetscFunctionBeginUser;
  *value = 0.0;
  PetscCheck(ts && tt, kd->comm, PETSC_ERR_ARG_NULL, "-kd_method mnf: this batch has no teacher or student %s",
             m->tokens ? "tokens" : "embedding");
  f.Ns = m->tokens ? ts->h : 1;
  f.Nt = m->tokens ? tt->h : 1;
  PetscCheck(AckdTensorSize(ts) == st->B * f.Ns * m->cin && AckdTensorSize(tt) == st->B * f.Nt * C, kd->comm,
             PETSC_ERR_ARG_SIZ,
             "-kd_method mnf: the %s are not %" PetscInt_FMT " (student) and %" PetscInt_FMT " (teacher) wide",
             m->tokens ? "tokens" : "embeddings", m->cin, C);
  if (n < 2) PetscFunctionReturn(0); /* no negative: nothing to contrast */
  f.n = n;
  f.R = n * f.Nt;
  if (n > m->cap) {
    PetscCheck(!kd->freeze_targets, kd->comm, PETSC_ERR_ORDER, "mnf: frozen targets from a smaller batch");
    PetscCall(PetscFree(m->tau));
    PetscCall(PetscMalloc1(n * n, &m->tau));
    m->cap = n;
  }
  PetscCall(ackd_kd_gather(ts, f.Ns * m->cin, n, st->sel, &f.xs));
  PetscCall(ackd_kd_gather(tt, f.Nt * C, n, st->sel, &f.a));
  PetscCall(PetscMalloc6(n * f.Ns * C, &f.v, n * C, &f.vbar, f.R * 2 * C, &f.x, f.R * Hd, &f.hn, Hd, &f.istd, f.R * Hd,
                         &f.y));
  PetscCall(PetscMalloc6(f.R * C, &f.g, f.R * PetscMax(C, Hd), &f.ah, n * f.Ns * C, &f.q, f.R * C, &f.k, f.R * C, &f.vv,
                         n * m->heads * f.Ns * f.Nt, &f.p));
  PetscCall(PetscMalloc6(n * m->heads * f.Nt, &f.pbar, n * C, &f.obar, n * C, &f.u, n * C, &f.sh, n, &f.ls, n, &f.lu));
  PetscCall(PetscMalloc4(n * n, &cm, n * n, &dc, n * C, &ds, n * C, &du));

  /* forward */
  if (m->proj >= 0)
    PetscCall(ackd_kd_linear(f.xs, n * f.Ns, m->cin, V + m->proj, C, f.v));
  else
    PetscCall(PetscArraycpy(f.v, f.xs, n * f.Ns * C));
  PetscCall(PetscArrayzero(f.vbar, n * C));
  for (PetscInt r = 0; r < n * f.Ns; r++)
    for (PetscInt k = 0; k < C; k++) f.vbar[(r / f.Ns) * C + k] += f.v[r * C + k] / (double)f.Ns;
  PetscCall(gate_forward(m, V, &f));
  PetscCall(ackd_kd_linear(f.v, n * f.Ns, C, V + m->wq, C, f.q));
  PetscCall(ackd_kd_linear(f.ah, f.R, C, V + m->wk, C, f.k));
  PetscCall(ackd_kd_linear(f.ah, f.R, C, V + m->wv, C, f.vv));
  attention_forward(m, &f);
  PetscCall(ackd_kd_linear(f.obar, n, C, V + m->wo, C, f.u));
  PetscCall(PetscArraycpy(f.sh, f.vbar, n * C));
  ackd_kd_normalise(f.sh, n, C, f.ls);
  ackd_kd_normalise(f.u, n, C, f.lu); /* u becomes û: only û and |u| enter the backward */
  f.uh = f.u;
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)C, 1.0, f.sh, (int)C, f.uh, (int)C, 0.0, cm,
              (int)n);
  *value = st->share * calibration(kd, m, n, cm, dc);

  /* backward, every gradient scaled by coef * B/N */
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)C, (int)n, c, dc, (int)n, f.uh, (int)C, 0.0, ds,
              (int)C);
  cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)C, (int)n, c, dc, (int)n, f.sh, (int)C, 0.0, du,
              (int)C);
  ackd_kd_normalise_backward(f.sh, n, C, f.ls, ds);
  ackd_kd_normalise_backward(f.uh, n, C, f.lu, du);
  PetscCall(PetscCalloc4(n * C, &dobar, n * f.Ns * C, &dq, f.R * C, &dk, f.R * C, &dvv));
  PetscCall(ackd_kd_linear_backward(f.obar, n, C, V + m->wo, C, du, dobar, G + m->wo));
  attention_backward(m, &f, dobar, dq, dk, dvv);
  PetscCall(PetscCalloc3(f.R * C, &dah, n * f.Ns * C, &dv, f.R * 2 * C, &dx));
  PetscCall(ackd_kd_linear_backward(f.v, n * f.Ns, C, V + m->wq, C, dq, dv, G + m->wq));
  PetscCall(ackd_kd_linear_backward(f.ah, f.R, C, V + m->wk, C, dk, dah, G + m->wk));
  PetscCall(ackd_kd_linear_backward(f.ah, f.R, C, V + m->wv, C, dvv, dah, G + m->wv));
  /* through â = g ⊙ a (a frozen) and the sigmoid: dz = dâ a g (1 - g), into dah */
  for (PetscInt e = 0; e < f.R * C; e++) dah[e] *= f.a[e] * f.g[e] * (1.0 - f.g[e]);
  dz = dah;
  bias_backward(dz, f.R, C, G + m->b2);
  {
    double *relu, *dy;
    PetscCall(PetscMalloc1(f.R * Hd, &relu));
    PetscCall(PetscCalloc1(f.R * Hd, &dy));
    for (PetscInt e = 0; e < f.R * Hd; e++) relu[e] = PetscMax(f.y[e], 0.0);
    PetscCall(ackd_kd_linear_backward(relu, f.R, Hd, V + m->w2, C, dz, dy, G + m->w2));
    /* ReLU, the affine part, then the normalisation with batch statistics:
     * dh = istd (dĥ - mean_r dĥ - ĥ mean_r(dĥ ĥ)) */
    for (PetscInt k = 0; k < Hd; k++) {
      double s1 = 0.0, s2 = 0.0;
      for (PetscInt r = 0; r < f.R; r++) {
        double g = f.y[r * Hd + k] > 0.0 ? dy[r * Hd + k] : 0.0;
        G[m->gamma + k] += g * f.hn[r * Hd + k];
        G[m->beta + k] += g;
        dy[r * Hd + k] = g * V[m->gamma + k];
        s1 += dy[r * Hd + k];
        s2 += dy[r * Hd + k] * f.hn[r * Hd + k];
      }
      s1 /= (double)f.R;
      s2 /= (double)f.R;
      for (PetscInt r = 0; r < f.R; r++) dy[r * Hd + k] = f.istd[k] * (dy[r * Hd + k] - s1 - f.hn[r * Hd + k] * s2);
    }
    PetscCall(ackd_kd_linear_backward(f.x, f.R, 2 * C, V + m->w1, Hd, dy, dx, G + m->w1));
    PetscCall(PetscFree(relu));
    PetscCall(PetscFree(dy));
  }
  /* v̄ enters the gate (second half of every row of x) and the anchor ŝ */
  for (PetscInt r = 0; r < f.R; r++)
    for (PetscInt k = 0; k < C; k++) ds[(r / f.Nt) * C + k] += dx[r * 2 * C + C + k];
  for (PetscInt r = 0; r < n * f.Ns; r++)
    for (PetscInt k = 0; k < C; k++) dv[r * C + k] += ds[(r / f.Ns) * C + k] / (double)f.Ns;
  if (m->proj >= 0) {
    PetscCall(PetscCalloc1(n * f.Ns * m->cin, &dxs));
    PetscCall(ackd_kd_linear_backward(f.xs, n * f.Ns, m->cin, V + m->proj, C, dv, dxs, G + m->proj));
  } else
    dxs = dv;
  {
    double  *gin = m->tokens ? st->g_tok : st->g_emb;
    PetscInt row = f.Ns * m->cin;
    for (PetscInt s = 0; s < n; s++)
      for (PetscInt k = 0; k < row; k++) gin[st->sel[s] * row + k] += dxs[s * row + k];
  }
  if (dxs != dv) PetscCall(PetscFree(dxs));
  PetscCall(PetscFree4(dobar, dq, dk, dvv));
  PetscCall(PetscFree3(dah, dv, dx));
  PetscCall(PetscFree4(cm, dc, ds, du));
  PetscCall(PetscFree6(f.v, f.vbar, f.x, f.hn, f.istd, f.y));
  PetscCall(PetscFree6(f.g, f.ah, f.q, f.k, f.vv, f.p));
  PetscCall(PetscFree6(f.pbar, f.obar, f.u, f.sh, f.ls, f.lu));
  PetscCall(PetscFree(f.xs));
  PetscCall(PetscFree(f.a));
  PetscFunctionReturn(0);
}

static PetscErrorCode destroy(AckdKDObj kd)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree(((MNF *)kd->data)->tau));
  PetscFunctionReturn(0);
}

/* auto takes the teacher's tokens when it has them */
static PetscBool wants_tokens(AckdKDObj kd)
{
  return (PetscBool)(((MNF *)kd->data)->feature != 2);
}

const KDMethod ackd_kd_mnf = {.destroy = destroy,
                              .name    = "mnf",
                              .help    = "MNF + CSC: noise-filter gate, cross-attention, triplet, calibrated contrast",
                              .needs   = 0, /* tokens or embeddings: checked in setup */
                              .create  = create,
                              .options = options,
                              .setup   = setup,
                              .loss    = loss,
                              .wants_tokens = wants_tokens};
