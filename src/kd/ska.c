/* SemBridge's Semantic-aware Knowledge Alignment (docs/DESIGN.md §2).
 *
 * Per modality, on the layer-4 tokens Z (N x C) of each sample: an attention
 * plan π_h = softmax(Q_h K_hᵀ / sqrt(d)) (8 heads, Q = Z Wqᵀ, K = Z Wkᵀ, no
 * bias; only Q and K enter the plan, so no value or output projection is
 * declared); token weights w_n = (1/H) Σ_h Σ_i π_h[i, n] (the mean over
 * queries, scaled so the weights average 1: s below makes the scale immaterial);
 * s = |mean_n Z_n| / |mean_n w_n Z_n|; Z̃ = s w ⊙ Z.
 *   L_ot1 = CORAL(Z̃_T, Z̃_S) over all tokens of the samples that have a teacher,
 *   L_ot2 = CORAL(g_T, g_S) over their pooled embeddings,
 * CORAL(S, T) = mean((C_S - C_T)²) / (4d), C = X̄ᵀX̄. When the widths differ, a
 * learned linear map (no bias) takes the student's tokens / embeddings to the
 * teacher's width first.
 *
 * -ska_plan sinkhorn replaces L_ot1 by an explicit cross-modal plan: per sample,
 * entropic OT between the student's tokens (masses w_s / N_s) and the teacher's
 * (w_t / N_t), cost 2 - 2 cos between (projected) tokens, both marginals
 * enforced (log-domain Sinkhorn); L_ot1 = mean over samples of the dual value
 * ⟨f, a⟩ + ⟨g, b⟩. By the envelope theorem its gradients are π* for the cost
 * and the potentials f, g for the masses: nothing is differentiated through
 * the iterations.
 *
 * Precision: the maps' products are single-precision GEMMs and the plans are computed in double
 * from their results; the projections' forward and CORAL follow -ska_precision (single by
 * default, checked against double by unit.kd.ska_precision; docs/KD.md, "Cost and precision"). */
#include "kd_impl.h"
#include <cblas.h>
#include <math.h>

static const char *const plans[] = {"attention", "sinkhorn"}, *const precisions[] = {"single", "double"},
                         *const map_precisions[] = {"single", "bf16"};

PetscErrorCode ackd_ska_options(AckdKDObj kd, PetscOptionItems *PetscOptionsObject)
{
  PetscInt choice = kd->ska.sinkhorn ? 1 : 0, precision = kd->ska.exact ? 1 : 0;

  PetscFunctionBeginUser;
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-ska_heads", "SKA: attention heads of each modality's plan",
                           &kd->ska.heads, 1, 1024, NULL));
  PetscCall(AckdOptionsChoice(PetscOptionsObject, "-ska_plan",
                              "SKA's token alignment: attention (per-modality plans + CORAL, the paper) or sinkhorn "
                              "(entropic OT between student and teacher tokens)",
                              plans, 2, &choice, NULL));
  kd->ska.sinkhorn = choice == 1 ? PETSC_TRUE : PETSC_FALSE;
  PetscCall(AckdOptionsChoice(PetscOptionsObject, "-ska_precision",
                              "SKA: CORAL and the projections to the teacher's width in single precision, or in "
                              "double (slower; the reference the single path is tested against)",
                              precisions, 2, &precision, NULL));
  kd->ska.exact = precision == 1 ? PETSC_TRUE : PETSC_FALSE;
  PetscInt maps = kd->ska.maps_bf16 ? 1 : 0;
  PetscCall(AckdOptionsChoice(PetscOptionsObject, "-ska_maps_precision",
                              "SKA: the query and key maps' products (forward and backward) on single-precision or "
                              "bfloat16 operands, summed in single either way; bf16 needs AVX512_BF16 or AMX and "
                              "takes about a third off their time there (docs/KD.md, \"Cost and precision\")",
                              map_precisions, 2, &maps, NULL));
  kd->ska.maps_bf16 = maps == 1 ? PETSC_TRUE : PETSC_FALSE;
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-ska_sinkhorn_eps", "SKA sinkhorn: entropic regularisation",
                            &kd->ska.sinkhorn_eps, 1e-4, 1e3, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-ska_sinkhorn_it", "SKA sinkhorn: iterations", &kd->ska.sinkhorn_it, 1,
                           1000000, NULL));
  PetscFunctionReturn(0);
}

static PetscErrorCode add_square(AckdKDObj kd, const char *name, PetscInt rows, PetscInt cols, PetscInt *offset)
{
  PetscInt shape[2] = {rows, cols};

  PetscFunctionBeginUser;
  PetscCall(AckdParamsAddShaped(&kd->params, name, 2, shape, cols, ACKD_INIT_KAIMING_UNIFORM, offset));
  PetscFunctionReturn(0);
}

PetscErrorCode ackd_ska_setup(AckdKDObj kd)
{
  KDSka   *ska = &kd->ska;
  PetscInt Cs = kd->dims.student_channels, Ct = kd->dims.teacher_channels, Ds = kd->dims.student_embedding,
           Dt = kd->dims.teacher_embedding;

  PetscFunctionBeginUser;
  PetscCheck(Cs % ska->heads == 0 && Ct % ska->heads == 0, kd->comm, PETSC_ERR_USER_INPUT,
             "option -ska_heads: %" PetscInt_FMT " heads do not divide the token widths %" PetscInt_FMT
             " (student) and %" PetscInt_FMT " (teacher)",
             ska->heads, Cs, Ct);
  /* A side known to end in one token has a constant plan (Side): weights that nothing reads would
   * only cost the optimizer and the gradient exchange, and sit in checkpoints at their random init. */
  ska->wq_s = ska->wk_s = ska->wq_t = ska->wk_t = ska->proj_tok = ska->proj_emb = -1;
  if (kd->dims.student_tokens != 1) {
    PetscCall(add_square(kd, "ska.student_attention.q_proj.weight", Cs, Cs, &ska->wq_s));
    PetscCall(add_square(kd, "ska.student_attention.k_proj.weight", Cs, Cs, &ska->wk_s));
  }
  if (kd->dims.teacher_tokens != 1) {
    PetscCall(add_square(kd, "ska.teacher_attention.q_proj.weight", Ct, Ct, &ska->wq_t));
    PetscCall(add_square(kd, "ska.teacher_attention.k_proj.weight", Ct, Ct, &ska->wk_t));
  }
  if (ska->maps_bf16) {
    PetscCheck(AckdEngineHasBF16(), kd->comm, PETSC_ERR_USER_INPUT,
               "option -ska_maps_precision bf16 needs a CPU with AVX512_BF16 or AMX, which this one lacks; use "
               "-ska_maps_precision single");
    if (!ska->gemm) PetscCall(AckdGemmBF16Create(&ska->gemm));
  }
  /* declared one after the other: one range (alignment may leave gaps, whose gradients stay 0) */
  ska->maps_lo = ska->wq_s >= 0 ? ska->wq_s : ska->wq_t;
  ska->maps_hi = ska->wk_t >= 0 ? ska->wk_t + Ct * Ct : (ska->wk_s >= 0 ? ska->wk_s + Cs * Cs : -1);
  if (Cs != Ct) PetscCall(add_square(kd, "ska.token_projection.weight", Ct, Cs, &ska->proj_tok));
  if (Ds != Dt) PetscCall(add_square(kd, "ska.embedding_projection.weight", Dt, Ds, &ska->proj_emb));
  PetscFunctionReturn(0);
}

/* One sample of one modality: its plan, weights and rescaling, kept for the backward.
 * Q and K point into the batch's projections (one GEMM per weight for all samples), kept in
 * single precision as the GEMMs leave them; the plan is computed from them in double.
 * With one token the plan is softmax over one key, 1 whatever Q and K are, and its
 * derivative is 0: Q and K are then NULL, never computed, and get no gradient. The
 * result is the same to the bit (w = 1, s = 1, and the plan's backward would add 0). */
typedef struct {
  PetscInt     N, C, H;
  const float *z;               /* the sample's tokens (not owned) */
  double      *zt;              /* Z̃: the sample's rows of the batch's (not owned) */
  double      *p, *w;           /* plans (H, N, N), weights */
  float       *q, *k, *dq, *dk; /* Q, K and their gradients (not owned); dQ, dK summed in double */
  double       s, mnorm2, unorm2, *m, *u;
} Side;

/* Sample `index` of the batch, tokens z: its rows of the batch's Z̃, Q, K and their gradients
 * (N x C each; no Q, K with one token). */
static PetscErrorCode side_alloc(Side *sd, PetscInt N, PetscInt C, PetscInt H, PetscInt index, const float *z,
                                 double *zt, float *q, float *k, float *dq, float *dk)
{
  PetscFunctionBeginUser;
  sd->N  = N;
  sd->C  = C;
  sd->H  = H;
  sd->z  = z;
  sd->zt = zt + index * N * C;
  if (N > 1) {
    sd->q  = q + index * N * C;
    sd->k  = k + index * N * C;
    sd->dq = dq + index * N * C;
    sd->dk = dk + index * N * C;
  }
  PetscCall(PetscMalloc4(H * N * N, &sd->p, N, &sd->w, C, &sd->m, C, &sd->u));
  PetscFunctionReturn(0);
}

static PetscErrorCode side_free(Side *sd)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree4(sd->p, sd->w, sd->m, sd->u));
  PetscFunctionReturn(0);
}

/* The selected samples' tokens (N x C each), contiguous: the rows of the maps' GEMMs. */
static PetscErrorCode gather_tokens(const AckdTensor *tokens, const PetscInt *sel, PetscInt n, PetscInt N, PetscInt C,
                                    float *z)
{
  PetscFunctionBeginUser;
  for (PetscInt s = 0; s < n; s++) PetscCall(PetscArraycpy(z + s * N * C, tokens->data + sel[s] * N * C, N * C));
  PetscFunctionReturn(0);
}

/* An operand of the maps' products: its floats, and under -ska_maps_precision bf16 the same
 * rounded once per step, however many products read it. */
typedef struct {
  const float    *single;
  const uint16_t *bf16;
} Operand;

/* One product of the maps, C = op(A) op(B) + beta C on contiguous operands, at
 * -ska_maps_precision's: single-precision GEMMs (the plan's logits need ~1e-6, not 1e-16), or
 * bf16 operands where the user traded ~4e-3 of each product for a third of its time. */
static PetscErrorCode maps_gemm(const KDSka *ska, char ta, char tb, PetscInt m, PetscInt n, PetscInt k, Operand A,
                                Operand B, float beta, float *C)
{
  PetscFunctionBeginUser;
  if (!ska->maps_bf16) {
    PetscCall(AckdSgemm(ta, tb, m, n, k, 1.0f, A.single, ta == 'N' ? k : m, B.single, tb == 'N' ? n : k, beta, C, n));
  } else if (beta == 0.0f) {
    PetscCall(AckdGemmBF16Multiply(ska->gemm, ta, tb, m, n, k, A.bf16, B.bf16, C));
  } else { /* the one accumulating product, dZ += dK Wk: summed here, as SGEMM's beta = 1 sums */
    float *AB;
    PetscCall(PetscMalloc1(m * n, &AB));
    PetscCall(AckdGemmBF16Multiply(ska->gemm, ta, tb, m, n, k, A.bf16, B.bf16, AB));
    for (PetscInt i = 0; i < m * n; i++) C[i] += AB[i];
    PetscCall(PetscFree(AB));
  }
  PetscFunctionReturn(0);
}

/* One side's operands of the maps' products (rows x C tokens, the C x C maps), kept from the
 * forward for the backward; their bf16 copies (NULL unless -ska_maps_precision bf16). */
typedef struct {
  const float *z, *wq, *wk;
  uint16_t    *zb, *wqb, *wkb;
} MapInputs;

static PetscErrorCode map_inputs_create(const KDSka *ska, const float *z, PetscInt rows, PetscInt C, const float *wq,
                                        const float *wk, MapInputs *in)
{
  PetscFunctionBeginUser;
  *in = (MapInputs){.z = z, .wq = wq, .wk = wk};
  if (!ska->maps_bf16 || rows == 0) PetscFunctionReturn(0);
  PetscCall(PetscMalloc3(rows * C, &in->zb, C * C, &in->wqb, C * C, &in->wkb));
  AckdRoundBF16(z, in->zb, (size_t)(rows * C));
  AckdRoundBF16(wq, in->wqb, (size_t)(C * C));
  AckdRoundBF16(wk, in->wkb, (size_t)(C * C));
  PetscFunctionReturn(0);
}

static PetscErrorCode map_inputs_free(MapInputs *in)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree3(in->zb, in->wqb, in->wkb));
  PetscFunctionReturn(0);
}

/* Q = Z Wqᵀ, K = Z Wkᵀ for the rows of every selected sample at once (z: gather_tokens). */
static PetscErrorCode project(const KDSka *ska, const MapInputs *in, PetscInt rows, PetscInt C, float *q, float *k)
{
  Operand z = {in->z, in->zb}, wq = {in->wq, in->wqb}, wk = {in->wk, in->wkb};

  PetscFunctionBeginUser;
  PetscCall(maps_gemm(ska, 'N', 'T', rows, C, C, z, wq, 0.0f, q));
  PetscCall(maps_gemm(ska, 'N', 'T', rows, C, C, z, wk, 0.0f, k));
  PetscFunctionReturn(0);
}

static ACKD_CPU_CLONES void side_forward(Side *sd)
{
  PetscInt N = sd->N, C = sd->C, H = sd->H, d = C / H;
  double   scale = 1.0 / sqrt((double)d);
  for (PetscInt n = 0; n < N; n++) sd->w[n] = sd->q ? 0.0 : 1.0;
  for (PetscInt h = 0; sd->q && h < H; h++) {
    double *p = sd->p + h * N * N;
    /* N x N x d per head (4 x 4 x 64 on a 2 x 2 grid): loops, where a BLAS call would spend
     * more on packing than on the products; a vector reduction, not one chain of d additions. */
    for (PetscInt i = 0; i < N; i++)
      for (PetscInt j = 0; j < N; j++) {
        const float *q = sd->q + i * C + h * d, *k = sd->k + j * C + h * d;
        double       dot = 0.0;
#pragma omp simd reduction(+ : dot)
        for (PetscInt c = 0; c < d; c++) dot += (double)q[c] * k[c];
        p[i * N + j] = scale * dot;
      }
    for (PetscInt i = 0; i < N; i++) {
      double *row = p + i * N, max = row[0], sum = 0.0;
      for (PetscInt j = 1; j < N; j++) max = PetscMax(max, row[j]);
      for (PetscInt j = 0; j < N; j++) sum += (row[j] = exp(row[j] - max));
      for (PetscInt j = 0; j < N; j++) {
        row[j] /= sum;
        sd->w[j] += row[j] / (double)H;
      }
    }
  }
  for (PetscInt c = 0; c < C; c++) sd->m[c] = sd->u[c] = 0.0;
  for (PetscInt n = 0; n < N; n++)
    for (PetscInt c = 0; c < C; c++) {
      sd->m[c] += sd->z[n * C + c];
      sd->u[c] += sd->w[n] * sd->z[n * C + c];
    }
  for (PetscInt c = 0; c < C; c++) {
    sd->m[c] /= (double)N;
    sd->u[c] /= (double)N;
  }
  double mnorm2 = 0.0, unorm2 = 0.0;
#pragma omp simd reduction(+ : mnorm2, unorm2)
  for (PetscInt c = 0; c < C; c++) {
    mnorm2 += sd->m[c] * sd->m[c];
    unorm2 += sd->u[c] * sd->u[c];
  }
  sd->mnorm2 = mnorm2;
  sd->unorm2 = unorm2;
  sd->s      = sqrt(sd->mnorm2 / PetscMax(sd->unorm2, 1e-300));
  for (PetscInt n = 0; n < N; n++)
    for (PetscInt c = 0; c < C; c++) sd->zt[n * C + c] = sd->s * sd->w[n] * sd->z[n * C + c];
}

/* Back through the plan: dw (N) -> dQ, dK (N x C, overwritten, each entry summed in double and
 * rounded once for the SGEMMs of project_backward, which run once for the whole batch). */
static ACKD_CPU_CLONES PetscErrorCode side_backward_weights(const Side *sd, const double *dw)
{
  float   *dq = sd->dq, *dk = sd->dk;
  PetscInt N = sd->N, C = sd->C, H = sd->H, d = C / H;
  double   scale = 1.0 / sqrt((double)d), *ds, *dqi, *dki;

  PetscFunctionBeginUser;
  if (!sd->q) PetscFunctionReturn(0);
  PetscCall(PetscMalloc3(N * N, &ds, d, &dqi, d, &dki));
  for (PetscInt h = 0; h < H; h++) {
    const double *p = sd->p + h * N * N;
    /* dπ[i, n] = dw_n / H; dS = π ⊙ (dπ - rowsum(dπ ⊙ π)) */
    for (PetscInt i = 0; i < N; i++) {
      double dot = 0.0;
      for (PetscInt j = 0; j < N; j++) dot += dw[j] / (double)H * p[i * N + j];
      for (PetscInt j = 0; j < N; j++) ds[i * N + j] = p[i * N + j] * (dw[j] / (double)H - dot) * scale;
    }
    /* dQ_h = dS K_h, dK_h = dSᵀ Q_h (N x d each) */
    for (PetscInt i = 0; i < N; i++) {
      for (PetscInt c = 0; c < d; c++) dqi[c] = dki[c] = 0.0;
      for (PetscInt j = 0; j < N; j++) {
        const double a = ds[i * N + j], b = ds[j * N + i];
        const float *kj = sd->k + j * C + h * d, *qj = sd->q + j * C + h * d;
        for (PetscInt c = 0; c < d; c++) {
          dqi[c] += a * kj[c];
          dki[c] += b * qj[c];
        }
      }
      for (PetscInt c = 0; c < d; c++) {
        dq[i * C + h * d + c] = (float)dqi[c];
        dk[i * C + h * d + c] = (float)dki[c];
      }
    }
  }
  PetscCall(PetscFree3(ds, dqi, dki));
  PetscFunctionReturn(0);
}

/* dZ (rows of the selected samples z, scattered into g_tok when not NULL) and dWq, dWk from the
 * batch's dQ, dK: one GEMM per product, in single precision as the forward's projections. These
 * are SKA's largest products (C x C weights: 512² for the study's MobileNetV2 x0.5), and their
 * inputs, the tokens and weights, are floats already; what the sum over rows loses in float,
 * about 1e-7 of the gradient's size per row, is far below the finite-difference and PyTorch
 * tolerances (1e-3, 1e-4), and the optimizer reads the gradient as a float anyway. dWq and dWk
 * are written, not added, straight into the parameter buffer's gradients (KDSka's maps range):
 * nothing else contributes to them, and a double copy cost a pass over 2 C² entries each way. */
static PetscErrorCode project_backward(const KDSka *ska, const MapInputs *in, PetscInt n, const PetscInt *sel,
                                       PetscInt N, PetscInt C, const float *dq, const float *dk, double *g_tok,
                                       float *gWq, float *gWk)
{
  const PetscInt rows = n * N;
  float         *gz;
  uint16_t      *dyb = NULL;
  Operand        z   = {in->z, in->zb};

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(rows * C, &gz));
  if (ska->maps_bf16) PetscCall(PetscMalloc1(rows * C, &dyb));
  for (int which = 0; which < 2; which++) {
    Operand dy = {which ? dk : dq, dyb}, w = {which ? in->wk : in->wq, which ? in->wkb : in->wqb};
    if (dyb) AckdRoundBF16(dy.single, dyb, (size_t)(rows * C));
    if (g_tok) /* dZ += dY W */
      PetscCall(maps_gemm(ska, 'N', 'N', rows, C, C, dy, w, which ? 1.0f : 0.0f, gz));
    /* dW = dYᵀ Z */
    PetscCall(maps_gemm(ska, 'T', 'N', C, C, rows, dy, z, 0.0f, which ? gWk : gWq));
  }
  if (g_tok)
    for (PetscInt s = 0; s < n; s++)
      for (PetscInt j = 0; j < N * C; j++) g_tok[sel[s] * N * C + j] += gz[s * N * C + j];
  PetscCall(PetscFree(gz));
  PetscCall(PetscFree(dyb));
  PetscFunctionReturn(0);
}

/* Back through Z̃ = s w ⊙ Z given dZ̃ (N x C). */
static ACKD_CPU_CLONES PetscErrorCode side_backward(const Side *sd, const double *dzt, double *dz)
{
  PetscInt N = sd->N, C = sd->C;
  double  *dw, dsc = 0.0, inv = 1.0 / (double)N;

  PetscFunctionBeginUser;
  PetscCall(PetscCalloc1(N, &dw));
  for (PetscInt n = 0; n < N; n++) {
    double dot = 0.0;
#pragma omp simd reduction(+ : dot)
    for (PetscInt c = 0; c < C; c++) dot += dzt[n * C + c] * sd->z[n * C + c];
    dw[n] = sd->s * dot;
    dsc += sd->w[n] * dot;
    if (dz)
      for (PetscInt c = 0; c < C; c++) dz[n * C + c] += sd->s * sd->w[n] * dzt[n * C + c];
  }
  /* s = |m| / |u|: ds/dm = s m / |m|², ds/du = -s u / |u|² */
  double am = dsc * sd->s / PetscMax(sd->mnorm2, 1e-300), au = -dsc * sd->s / PetscMax(sd->unorm2, 1e-300);
  for (PetscInt n = 0; n < N; n++) {
    double zu = 0.0;
#pragma omp simd reduction(+ : zu)
    for (PetscInt c = 0; c < C; c++) zu += sd->z[n * C + c] * sd->u[c];
    if (dz)
      for (PetscInt c = 0; c < C; c++) dz[n * C + c] += (am * sd->m[c] + au * sd->w[n] * sd->u[c]) * inv;
    dw[n] += au * zu * inv;
  }
  PetscCall(side_backward_weights(sd, dw));
  PetscCall(PetscFree(dw));
  PetscFunctionReturn(0);
}

/* Entropic OT between masses a (n) and b (m) with cost C (n x m), log domain.
 * Returns ⟨f, a⟩ + ⟨g, b⟩; f, g are the potentials, plan the optimal π. */
static double sinkhorn(const double *a, PetscInt n, const double *b, PetscInt m, const double *C, double eps,
                       PetscInt iterations, double *f, double *g, double *plan)
{
  for (PetscInt i = 0; i < n; i++) f[i] = 0.0;
  for (PetscInt j = 0; j < m; j++) g[j] = 0.0;
  for (PetscInt it = 0; it < iterations; it++) {
    for (PetscInt i = 0; i < n; i++) {
      double max = -INFINITY, sum = 0.0;
      for (PetscInt j = 0; j < m; j++) max = PetscMax(max, log(b[j]) + (g[j] - C[i * m + j]) / eps);
      for (PetscInt j = 0; j < m; j++) sum += exp(log(b[j]) + (g[j] - C[i * m + j]) / eps - max);
      f[i] = -eps * (max + log(sum));
    }
    for (PetscInt j = 0; j < m; j++) {
      double max = -INFINITY, sum = 0.0;
      for (PetscInt i = 0; i < n; i++) max = PetscMax(max, log(a[i]) + (f[i] - C[i * m + j]) / eps);
      for (PetscInt i = 0; i < n; i++) sum += exp(log(a[i]) + (f[i] - C[i * m + j]) / eps - max);
      g[j] = -eps * (max + log(sum));
    }
  }
  double value = 0.0;
  for (PetscInt i = 0; i < n; i++) value += f[i] * a[i];
  for (PetscInt j = 0; j < m; j++) value += g[j] * b[j];
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt j = 0; j < m; j++) plan[i * m + j] = a[i] * b[j] * exp((f[i] + g[j] - C[i * m + j]) / eps);
  return value;
}

/* L_ot1 of the sinkhorn variant for one sample: x (Ns x Ct, projected student
 * tokens), y (Nt x Ct) teacher tokens, masses from the two sides' weights.
 * Adds coef * gradients to dx and to dw_s, dw_t (d/d weights). */
static PetscErrorCode sinkhorn_term(const KDSka *ska, const double *x, const Side *s, const double *y, const Side *t,
                                    PetscInt Ct, double coef, double *dx, double *dws, double *dwt, double *value)
{
  PetscInt Ns = s->N, Nt = t->N;
  double  *a, *b, *xn, *yn, *xl, *yl, *C, *P, *f, *g, *dxn;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc6(Ns, &a, Nt, &b, Ns * Ct, &xn, Nt * Ct, &yn, Ns, &xl, Nt, &yl));
  PetscCall(PetscMalloc5(Ns * Nt, &C, Ns * Nt, &P, Ns, &f, Nt, &g, Ct, &dxn));
  for (PetscInt i = 0; i < Ns; i++) a[i] = s->w[i] / (double)Ns;
  for (PetscInt j = 0; j < Nt; j++) b[j] = t->w[j] / (double)Nt;
  for (PetscInt i = 0; i < Ns; i++) {
    double acc = 0.0;
    for (PetscInt c = 0; c < Ct; c++) acc += x[i * Ct + c] * x[i * Ct + c];
    xl[i] = PetscMax(sqrt(acc), 1e-12);
    for (PetscInt c = 0; c < Ct; c++) xn[i * Ct + c] = x[i * Ct + c] / xl[i];
  }
  for (PetscInt j = 0; j < Nt; j++) {
    double acc = 0.0;
    for (PetscInt c = 0; c < Ct; c++) acc += y[j * Ct + c] * y[j * Ct + c];
    yl[j] = PetscMax(sqrt(acc), 1e-12);
    for (PetscInt c = 0; c < Ct; c++) yn[j * Ct + c] = y[j * Ct + c] / yl[j];
  }
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)Ns, (int)Nt, (int)Ct, -2.0, xn, (int)Ct, yn, (int)Ct, 0.0,
              C, (int)Nt);
  for (PetscInt k = 0; k < Ns * Nt; k++) C[k] += 2.0;
  *value = sinkhorn(a, Ns, b, Nt, C, ska->sinkhorn_eps, ska->sinkhorn_it, f, g, P);
  /* d/d a_i = f_i, a_i = w_i / Ns; d/d C = π, C = 2 - 2 x̂ ŷᵀ -> d x̂ = -2 π ŷ */
  for (PetscInt i = 0; i < Ns; i++) dws[i] += coef * f[i] / (double)Ns;
  for (PetscInt j = 0; j < Nt; j++) dwt[j] += coef * g[j] / (double)Nt;
  for (PetscInt i = 0; i < Ns; i++) {
    double dot = 0.0;
    for (PetscInt c = 0; c < Ct; c++) dxn[c] = 0.0;
    for (PetscInt j = 0; j < Nt; j++)
      for (PetscInt c = 0; c < Ct; c++) dxn[c] += -2.0 * coef * P[i * Nt + j] * yn[j * Ct + c];
    for (PetscInt c = 0; c < Ct; c++) dot += dxn[c] * xn[i * Ct + c];
    for (PetscInt c = 0; c < Ct; c++) dx[i * Ct + c] += (dxn[c] - xn[i * Ct + c] * dot) / xl[i];
  }
  PetscCall(PetscFree6(a, b, xn, yn, xl, yl));
  PetscCall(PetscFree5(C, P, f, g, dxn));
  PetscFunctionReturn(0);
}

/* The projection to the teacher's width and CORAL, at -ska_precision's. */
static PetscErrorCode linear(const KDSka *ska, const double *x, PetscInt n, PetscInt in, const float *W, PetscInt out,
                             double *y)
{
  PetscFunctionBeginUser;
  if (ska->exact)
    PetscCall(ackd_kd_linear(x, n, in, W, out, y));
  else
    PetscCall(ackd_kd_linear_single(x, n, in, W, out, y));
  PetscFunctionReturn(0);
}

static PetscErrorCode coral(const KDSka *ska, const double *s, PetscInt ns, const double *t, PetscInt nt, PetscInt d,
                            double coef, double *gs, double *gt, double *value)
{
  PetscFunctionBeginUser;
  if (ska->exact)
    PetscCall(ackd_kd_coral(s, ns, t, nt, d, coef, gs, gt, value));
  else
    PetscCall(ackd_kd_coral_single(s, ns, t, nt, d, coef, gs, gt, value));
  PetscFunctionReturn(0);
}

/* The taught samples of one batch on both sides: each sample's plan and weights (Side), and Z̃ of
 * every sample's tokens with its gradient, rows of all samples one after the other. */
typedef struct {
  PetscInt n, Ns, Nt;           /* taught samples, tokens per sample of the student and the teacher */
  Side    *ss, *ts;             /* per sample */
  double  *xs, *xt, *gxs, *gxt; /* Z̃ (n Ns x Cs, n Nt x Ct) and d/dZ̃ */
} Sides;

/* L_ot1 = CORAL(Z̃_T, Z̃_S), the student's Z̃ at the teacher's width: into gxs, gxt and the
 * projection's gradient. */
static PetscErrorCode coral_tokens(AckdKDObj kd, const KDStep *st, Sides *b, double c, double *l1)
{
  const KDSka *ska = &kd->ska;
  PetscInt     Cs = kd->dims.student_channels, Ct = kd->dims.teacher_channels, rows = b->n * b->Ns;
  const float *V = kd->params.values;
  double      *ps, *gps;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(rows * Ct, &ps));
  PetscCall(PetscCalloc1(rows * Ct, &gps));
  if (ska->proj_tok >= 0)
    PetscCall(linear(ska, b->xs, rows, Cs, V + ska->proj_tok, Ct, ps));
  else
    PetscCall(PetscArraycpy(ps, b->xs, rows * Ct));
  PetscCall(coral(ska, ps, rows, b->xt, b->n * b->Nt, Ct, c, gps, b->gxt, l1));
  if (ska->proj_tok >= 0)
    PetscCall(ackd_kd_linear_single_backward(b->xs, rows, Cs, V + ska->proj_tok, Ct, gps, b->gxs,
                                             st->g_params + ska->proj_tok));
  else
    for (PetscInt k = 0; k < rows * Cs; k++) b->gxs[k] += gps[k];
  PetscCall(PetscFree(ps));
  PetscCall(PetscFree(gps));
  PetscFunctionReturn(0);
}

/* L_ot1 of -ska_plan sinkhorn: per sample, the plan between its raw (projected) tokens, the two
 * sides' weights as masses. Back to the weights (dQ, dK) and, through the projection, to the
 * student's tokens. */
static PetscErrorCode sinkhorn_tokens(AckdKDObj kd, const KDStep *st, Sides *b, double c, double *l1)
{
  const KDSka *ska = &kd->ska;
  PetscInt     n = b->n, Ns = b->Ns, Nt = b->Nt, Cs = kd->dims.student_channels, Ct = kd->dims.teacher_channels;
  const float *V = kd->params.values;
  double      *raw, *traw, *praw, *graw, *gpraw, *dws, *dwt;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc3(n * Ns * Ct, &praw, n * Ns * Cs, &graw, n * Ns * Ct, &gpraw));
  PetscCall(ackd_kd_gather(st->in->student_tokens, Ns * Cs, n, st->sel, &raw));
  PetscCall(ackd_kd_gather(st->in->teacher_tokens, Nt * Ct, n, st->sel, &traw));
  PetscCall(PetscMalloc2(Ns, &dws, Nt, &dwt));
  PetscCall(PetscArrayzero(graw, n * Ns * Cs));
  PetscCall(PetscArrayzero(gpraw, n * Ns * Ct));
  if (ska->proj_tok >= 0)
    PetscCall(linear(ska, raw, n * Ns, Cs, V + ska->proj_tok, Ct, praw));
  else
    PetscCall(PetscArraycpy(praw, raw, n * Ns * Ct));
  for (PetscInt k = 0; k < n; k++) {
    PetscCall(PetscArrayzero(dws, Ns));
    PetscCall(PetscArrayzero(dwt, Nt));
    double term = 0.0;
    PetscCall(sinkhorn_term(ska, praw + k * Ns * Ct, &b->ss[k], traw + k * Nt * Ct, &b->ts[k], Ct, c / (double)n,
                            gpraw + k * Ns * Ct, dws, dwt, &term));
    *l1 += term / (double)n;
    PetscCall(side_backward_weights(&b->ss[k], dws));
    PetscCall(side_backward_weights(&b->ts[k], dwt));
  }
  if (ska->proj_tok >= 0)
    PetscCall(ackd_kd_linear_single_backward(raw, n * Ns, Cs, V + ska->proj_tok, Ct, gpraw, graw,
                                             st->g_params + ska->proj_tok));
  else
    for (PetscInt k = 0; k < n * Ns * Cs; k++) graw[k] += gpraw[k];
  for (PetscInt k = 0; k < n; k++)
    for (PetscInt j = 0; j < Ns * Cs; j++) st->g_tok[st->sel[k] * Ns * Cs + j] += graw[k * Ns * Cs + j];
  PetscCall(PetscFree3(praw, graw, gpraw));
  PetscCall(PetscFree(raw));
  PetscCall(PetscFree(traw));
  PetscCall(PetscFree2(dws, dwt));
  PetscFunctionReturn(0);
}

/* L_ot2 = CORAL on the taught samples' pooled embeddings, the student's at the teacher's width. */
static PetscErrorCode embedding_term(AckdKDObj kd, const KDStep *st, double c, double *l2)
{
  const KDSka *ska = &kd->ska;
  PetscInt     n = st->nsel, Ds = kd->dims.student_embedding, Dt = kd->dims.teacher_embedding;
  const float *V = kd->params.values;
  double      *es, *et, *ges, *pes, *gpes;

  PetscFunctionBeginUser;
  PetscCall(ackd_kd_gather(st->in->student_embedding, Ds, n, st->sel, &es));
  PetscCall(ackd_kd_gather(st->in->teacher_embedding, Dt, n, st->sel, &et));
  PetscCall(PetscCalloc3(n * Ds, &ges, n * Dt, &pes, n * Dt, &gpes));
  if (ska->proj_emb >= 0)
    PetscCall(linear(ska, es, n, Ds, V + ska->proj_emb, Dt, pes));
  else
    PetscCall(PetscArraycpy(pes, es, n * Dt));
  PetscCall(coral(ska, pes, n, et, n, Dt, c, gpes, NULL, l2));
  if (ska->proj_emb >= 0)
    PetscCall(
        ackd_kd_linear_single_backward(es, n, Ds, V + ska->proj_emb, Dt, gpes, ges, st->g_params + ska->proj_emb));
  else
    for (PetscInt k = 0; k < n * Ds; k++) ges[k] += gpes[k];
  for (PetscInt k = 0; k < n; k++)
    for (PetscInt j = 0; j < Ds; j++) st->g_emb[st->sel[k] * Ds + j] += ges[k * Ds + j];
  PetscCall(PetscFree3(ges, pes, gpes));
  PetscCall(PetscFree(es));
  PetscCall(PetscFree(et));
  PetscFunctionReturn(0);
}

PetscErrorCode ackd_ska_loss(AckdKDObj kd, const KDStep *st, double coef, double *value)
{
  KDSka       *ska = &kd->ska;
  PetscInt     n = st->nsel, Cs = kd->dims.student_channels, Ct = kd->dims.teacher_channels;
  PetscInt     Ns, Nt; /* tokens per sample */
  const float *V = kd->params.values;
  double       c = coef * st->share, l1 = 0.0, l2 = 0.0;
  float       *Gs = kd->params.grads;                               /* the maps' gradients, in single precision */
  float       *zs, *qs, *ks, *zt, *qt, *kt, *dqs, *dks, *dqt, *dkt; /* tokens, Q, K of the sides with a plan */
  MapInputs    ms = {0}, mt = {0};                                  /* the maps' operands of each side */
  Sides        b;

  PetscFunctionBeginUser;
  *value = 0.0;
  /* The maps' gradients are written, not added, by project_backward: a call that does not get
   * there writes zeros. */
  if (st->B == 0 || n < 1) { /* no share of an uneven last batch (no tokens to count), or no one taught */
    if (ska->maps_hi > ska->maps_lo) PetscCall(PetscArrayzero(Gs + ska->maps_lo, ska->maps_hi - ska->maps_lo));
    PetscFunctionReturn(0);
  }
  PetscCheck(st->in->student_tokens && st->in->teacher_tokens && st->in->student_embedding && st->in->teacher_embedding,
             kd->comm, PETSC_ERR_ARG_NULL, "-sembridge's SKA: this batch lacks tokens or embeddings");
  Ns = AckdTensorSize(st->in->student_tokens) / (st->B * Cs);
  Nt = AckdTensorSize(st->in->teacher_tokens) / (st->B * Ct);
  /* A 32 x 32 scene through a stride-32 backbone leaves one token: every attention weight is then
   * 1, and SKA aligns one feature vector per sample (docs/RESULTS.md, "SKA on one token"). */
  if (Ns == 1 && Nt == 1 && !ska->one_token_warned) {
    AckdLog log;
    ska->one_token_warned = PETSC_TRUE;
    PetscCall(AckdLogSetUp(&log, kd->comm));
    PetscCall(AckdLogWarn(&log, "SKA: both networks end in a layer-4 grid of 1 token per sample, so its attention "
                                "has nothing to weigh and its terms align one feature vector per sample (CORAL); "
                                "images of 64 x 64 or more give these backbones a 2 x 2 grid\n"));
  }
  PetscCheck((Ns == 1 || ska->wq_s >= 0) && (Nt == 1 || ska->wq_t >= 0), kd->comm, PETSC_ERR_PLIB,
             "SKA was set up for one layer-4 token per sample and got %" PetscInt_FMT " (student) and %" PetscInt_FMT
             " (teacher)",
             Ns, Nt);
  b = (Sides){.n = n, .Ns = Ns, .Nt = Nt};
  PetscCall(PetscCalloc2(n, &b.ss, n, &b.ts));
  PetscCall(PetscMalloc4(n * Ns * Cs, &b.xs, n * Nt * Ct, &b.xt, n * Ns * Cs, &b.gxs, n * Nt * Ct, &b.gxt));
  PetscCall(PetscArrayzero(b.gxs, n * Ns * Cs));
  PetscCall(PetscArrayzero(b.gxt, n * Nt * Ct));
  /* a side with one token has no plan to compute (Side) */
  PetscInt As = Ns > 1 ? n * Ns * Cs : 0, At = Nt > 1 ? n * Nt * Ct : 0;
  if (!As && ska->wq_s >= 0) PetscCall(PetscArrayzero(Gs + ska->wq_s, ska->wk_s + Cs * Cs - ska->wq_s));
  if (!At && ska->wq_t >= 0) PetscCall(PetscArrayzero(Gs + ska->wq_t, ska->wk_t + Ct * Ct - ska->wq_t));
  PetscCall(PetscMalloc6(As, &zs, As, &qs, As, &ks, At, &zt, At, &qt, At, &kt));
  PetscCall(PetscMalloc4(As, &dqs, As, &dks, At, &dqt, At, &dkt));
  PetscCall(PetscLogEventBegin(kd->event_ska_maps, 0, 0, 0, 0));
  if (As) {
    PetscCall(gather_tokens(st->in->student_tokens, st->sel, n, Ns, Cs, zs));
    PetscCall(map_inputs_create(ska, zs, n * Ns, Cs, V + ska->wq_s, V + ska->wk_s, &ms));
    PetscCall(project(ska, &ms, n * Ns, Cs, qs, ks));
  }
  if (At) {
    PetscCall(gather_tokens(st->in->teacher_tokens, st->sel, n, Nt, Ct, zt));
    PetscCall(map_inputs_create(ska, zt, n * Nt, Ct, V + ska->wq_t, V + ska->wk_t, &mt));
    PetscCall(project(ska, &mt, n * Nt, Ct, qt, kt));
  }
  PetscCall(PetscLogEventEnd(kd->event_ska_maps, 0, 0, 0, 0));
  for (PetscInt k = 0; k < n; k++) {
    PetscInt i = st->sel[k];
    PetscCall(side_alloc(&b.ss[k], Ns, Cs, ska->heads, k, st->in->student_tokens->data + i * Ns * Cs, b.xs, qs, ks, dqs,
                         dks));
    PetscCall(side_alloc(&b.ts[k], Nt, Ct, ska->heads, k, st->in->teacher_tokens->data + i * Nt * Ct, b.xt, qt, kt, dqt,
                         dkt));
    side_forward(&b.ss[k]);
    side_forward(&b.ts[k]);
  }

  if (!ska->sinkhorn) {
    PetscCall(PetscLogEventBegin(kd->event_ska_coral, 0, 0, 0, 0));
    PetscCall(coral_tokens(kd, st, &b, c, &l1));
    PetscCall(PetscLogEventEnd(kd->event_ska_coral, 0, 0, 0, 0));
    for (PetscInt k = 0; k < n; k++) {
      PetscCall(side_backward(&b.ss[k], b.gxs + k * Ns * Cs, st->g_tok + st->sel[k] * Ns * Cs));
      PetscCall(side_backward(&b.ts[k], b.gxt + k * Nt * Ct, NULL));
    }
  } else
    PetscCall(sinkhorn_tokens(kd, st, &b, c, &l1));

  PetscCall(PetscLogEventBegin(kd->event_ska_maps, 0, 0, 0, 0));
  if (As)
    PetscCall(project_backward(ska, &ms, n, st->sel, Ns, Cs, dqs, dks, st->g_tok, Gs + ska->wq_s, Gs + ska->wk_s));
  if (At) PetscCall(project_backward(ska, &mt, n, st->sel, Nt, Ct, dqt, dkt, NULL, Gs + ska->wq_t, Gs + ska->wk_t));
  PetscCall(PetscLogEventEnd(kd->event_ska_maps, 0, 0, 0, 0));
  PetscCall(map_inputs_free(&ms));
  PetscCall(map_inputs_free(&mt));
  PetscCall(PetscFree6(zs, qs, ks, zt, qt, kt));
  PetscCall(PetscFree4(dqs, dks, dqt, dkt));

  PetscCall(PetscLogEventBegin(kd->event_ska_coral, 0, 0, 0, 0));
  PetscCall(embedding_term(kd, st, c, &l2));
  PetscCall(PetscLogEventEnd(kd->event_ska_coral, 0, 0, 0, 0));

  *value = st->share * (l1 + l2);
  for (PetscInt k = 0; k < n; k++) {
    PetscCall(side_free(&b.ss[k]));
    PetscCall(side_free(&b.ts[k]));
  }
  PetscCall(PetscFree2(b.ss, b.ts));
  PetscCall(PetscFree4(b.xs, b.xt, b.gxs, b.gxt));
  PetscFunctionReturn(0);
}
