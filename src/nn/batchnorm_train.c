/* Batch norm's training mode on ackd's own kernels, for two cases oneDNN's
 * primitive does not cover: synchronised batch norm (the batch is the global
 * one, split over the ranks of bn->comm) and activations in a channel-blocked
 * layout (what a model keeps between convolutions; oneDNN 2.6's blocked
 * training kernel disagreed with PyTorch and its own plain kernel here).
 *
 * Forward: per-channel Σx and Σx² in double (so E[x²] − E[x]² keeps every
 * digit float32 data carries, far beyond what eps = 1e-5 resolves) and the
 * element count, one MPI_Allreduce when synchronised. Backward: Σdy and
 * Σdy·x̂, which are also this rank's weight and bias gradients, one more
 * allreduce, then dx = γ·rstd/N · (N·dy − Σdy − x̂ · Σdy·x̂). Every rank calls
 * both, an empty local batch included, so the collectives match.
 *
 * A ReLU or ReLU6 that follows can run inside these kernels (the model fuses
 * them in training mode): forward clamps the output, backward masks the
 * output gradient where the value before clamping is not strictly inside
 * (0, hi), which is where the activation's derivative is 0 (PyTorch's
 * convention at the kinks). A whole pass over the activations disappears each
 * way, and the backward reads x, not the stored output, for its mask.
 *
 * The loops see a tensor as (n, Cpad/b, H·W, b) with b = 1 for plain NCHW:
 * the innermost run is one pixel's b channels (vectorised), or for plain
 * tensors the pixels of one channel. Output channels beyond C get zero. */
#include "nn/nn_private.h"
#include <math.h>

static PetscErrorCode buffers(AckdBatchNorm *bn, PetscInt cpad)
{
  PetscFunctionBeginUser;
  if (bn->train_capacity < cpad) {
    PetscCall(PetscFree4(bn->train_mean, bn->train_rstd, bn->train_sums, bn->train_coef));
    PetscCall(PetscCalloc4(cpad, &bn->train_mean, cpad, &bn->train_rstd, 2 * cpad + 1, &bn->train_sums, 6 * cpad,
                           &bn->train_coef));
    bn->train_capacity = cpad;
  }
  PetscFunctionReturn(0);
}

/* The value a fused forward clamps, and whether the activation passes the
 * gradient there (strictly inside (0, hi): PyTorch's convention at the kinks).
 * The backward recomputes it from x with the forward's coefficients instead of
 * reading the stored output: one stream of activations less in each of its
 * passes. Forward and backward evaluate it through this one function, and the
 * file is compiled without floating-point contraction, so the recomputed mask
 * is the forward's bit for bit. */
static inline float pre_activation(float scale, float x, float mean, float shift)
{
  return scale * (x - mean) + shift;
}

static inline int passes_gradient(float t, float hi)
{
  return (t > 0.0f) & (t < hi); /* no short circuit: a branch here would stop the loops vectorising */
}

/* One (sample, channel block)'s coefficients, one lane per channel of the
 * block: A, B, M, D of the affine map and the fused forward's scale and shift
 * (fa, fd) for the activation mask, whose mean is M. */
typedef struct {
  float A[16], B[16], M[16], D[16], fa[16], fd[16];
} Lanes;

/* Per-lane sums over one (sample, channel block): u1[j] = Σ_p u, u2[j] =
 * Σ_p u·v, where u = a, v = a (forward), or u = b (masked where the fused
 * activation passed no gradient), v = (a − M[j])·B[j] (backward). `bs` lanes
 * of consecutive channels per pixel (bs = 1: one channel's pixels). A constant
 * bs after inlining lets each loop vectorise. */
static inline void sums_lanes(const float *pa, const float *pb, PetscBool masked, float hi, const Lanes *k, PetscInt hw,
                              PetscInt bs, double *restrict u1, double *restrict u2)
{
  const float *M = k->M, *B = k->B, *fa = k->fa, *fd = k->fd;
  for (PetscInt j = 0; j < bs; j++) u1[j] = u2[j] = 0.0;
  if (!pb)
    for (PetscInt p = 0; p < hw; p++)
#pragma omp simd
      for (PetscInt j = 0; j < bs; j++) {
        double v = pa[p * bs + j];
        u1[j] += v;
        u2[j] += v * v;
      }
  else if (masked)
    for (PetscInt p = 0; p < hw; p++)
#pragma omp simd
      for (PetscInt j = 0; j < bs; j++) {
        float  x = pa[p * bs + j], dy = pb[p * bs + j]; /* loaded unconditionally, then selected */
        float  kept = passes_gradient(pre_activation(fa[j], x, M[j], fd[j]), hi) ? dy : 0.0f;
        double g    = kept;
        u1[j] += g;
        u2[j] += g * ((x - M[j]) * B[j]);
      }
  else
    for (PetscInt p = 0; p < hw; p++)
#pragma omp simd
      for (PetscInt j = 0; j < bs; j++) {
        double g = pb[p * bs + j];
        u1[j] += g;
        u2[j] += g * ((pa[p * bs + j] - M[j]) * B[j]);
      }
}

static ACKD_CPU_CLONES void sums_block(const float *pa, const float *pb, PetscBool masked, float hi, const Lanes *k,
                                       PetscInt hw, PetscInt bs, double *u1, double *u2)
{
  if (bs == 16)
    sums_lanes(pa, pb, masked, hi, k, hw, 16, u1, u2);
  else if (bs == 8)
    sums_lanes(pa, pb, masked, hi, k, hw, 8, u1, u2);
  else {
    /* plain: the pixels of one channel are the lanes, folded at the end */
    double   v1[8], v2[8];
    PetscInt full = hw / 8 * 8;
    sums_lanes(pa, pb, masked, hi, k, full / 8, 8, v1, v2); /* every lane holds the one channel's coefficients */
    u1[0] = u2[0] = 0.0;
    for (int j = 0; j < 8; j++) {
      u1[0] += v1[j];
      u2[0] += v2[j];
    }
    double t1, t2;
    sums_lanes(pa + full, pb ? pb + full : NULL, masked, hi, k, hw - full, 1, &t1, &t2);
    u1[0] += t1;
    u2[0] += t2;
  }
}

/* A block's lanes from per-channel coefficients (padded channel index; NULL:
 * zero). Plain layouts (bs = 1) repeat the block's one channel in every lane. */
static void lanes_fill(Lanes *k, PetscInt c0, PetscInt bs, const double *A, const double *B, const double *M,
                       const double *D, const double *fa, const double *fd)
{
  for (PetscInt j = 0; j < 16; j++) {
    PetscInt c = c0 + (bs == 1 ? 0 : PetscMin(j, bs - 1));
    k->A[j]    = A ? (float)A[c] : 0.0f;
    k->B[j]    = B ? (float)B[c] : 0.0f;
    k->M[j]    = M ? (float)M[c] : 0.0f;
    k->D[j]    = D ? (float)D[c] : 0.0f;
    k->fa[j]   = fa ? (float)fa[c] : 0.0f;
    k->fd[j]   = fd ? (float)fd[c] : 0.0f;
  }
}

/* sums[c] = Σ u, sums[cpad + c] = Σ u·v over every sample and pixel, per
 * channel (padded channel index), for u = a and v = a (b NULL) or u = b and
 * v = (a − shift[c])·scale[c]; with `mask` (the fused forward's scale and
 * shift, cpad each) u is zero where the activation passed no gradient. */
static void channel_sums(const AckdTensor *a, const AckdTensor *b, const double *mask, float hi, const double *shift,
                         const double *scale, double *sums, PetscInt cpad)
{
  PetscInt     bs = AckdNNBlock(a), hw = a->h * a->w, nb = cpad / bs, n = a->n;
  const float *pa = a->data, *pb = b ? b->data : NULL;
  double      *s1 = sums, *s2 = sums + cpad;

  for (PetscInt c = 0; c < 2 * cpad; c++) sums[c] = 0.0;
#pragma omp parallel for collapse(2) schedule(static) reduction(+ : s1[:cpad], s2[:cpad])
  for (PetscInt s = 0; s < n; s++)
    for (PetscInt k = 0; k < nb; k++) {
      const PetscInt base = (s * nb + k) * hw * bs, c0 = k * bs;
      Lanes          lanes;
      double         u1[16], u2[16];
      lanes_fill(&lanes, c0, bs, NULL, scale, shift, NULL, mask, mask ? mask + cpad : NULL);
      sums_block(pa + base, pb ? pb + base : NULL, mask != NULL, hi, &lanes, hw, bs, u1, u2);
      for (PetscInt j = 0; j < bs; j++) {
        s1[c0 + j] += u1[j];
        s2[c0 + j] += u2[j];
      }
    }
}

/* out = A·u + B·(v − M) + D, u masked where the fused activation passed no
 * gradient (recomputed from v), or without v out = A·(u − M) + D, clamped to
 * [0, hi] if asked, over one (sample, channel block). Lanes as in sums_lanes. */
static inline void affine_lanes(float *restrict po, const float *pu, const float *pv, PetscBool masked, PetscBool clamp,
                                float hi, const Lanes *k, PetscInt hw, PetscInt bs)
{
  const float *A = k->A, *B = k->B, *M = k->M, *D = k->D, *fa = k->fa, *fd = k->fd;
  for (PetscInt p = 0; p < hw; p++) {
    const PetscInt q = p * bs;
    if (pv && masked)
#pragma omp simd
      for (PetscInt j = 0; j < bs; j++) {
        float x = pv[q + j], dy = pu[q + j];
        float g   = passes_gradient(pre_activation(fa[j], x, M[j], fd[j]), hi) ? dy : 0.0f;
        po[q + j] = A[j] * g + B[j] * (x - M[j]) + D[j];
      }
    else if (pv)
#pragma omp simd
      for (PetscInt j = 0; j < bs; j++) po[q + j] = A[j] * pu[q + j] + B[j] * (pv[q + j] - M[j]) + D[j];
    else if (clamp)
#pragma omp simd
      for (PetscInt j = 0; j < bs; j++) {
        float t   = pre_activation(A[j], pu[q + j], M[j], D[j]);
        po[q + j] = t > 0.0f ? (t < hi ? t : hi) : 0.0f;
      }
    else
#pragma omp simd
      for (PetscInt j = 0; j < bs; j++) po[q + j] = pre_activation(A[j], pu[q + j], M[j], D[j]);
  }
}

static ACKD_CPU_CLONES void affine_block(float *po, const float *pu, const float *pv, PetscBool masked, PetscBool clamp,
                                         float hi, const Lanes *k, PetscInt hw, PetscInt bs)
{
  if (bs == 16)
    affine_lanes(po, pu, pv, masked, clamp, hi, k, hw, 16);
  else if (bs == 8)
    affine_lanes(po, pu, pv, masked, clamp, hi, k, hw, 8);
  else {
    /* plain: 16 pixels of the one channel per step (coefficients replicated) */
    PetscInt full = hw / 16 * 16;
    affine_lanes(po, pu, pv, masked, clamp, hi, k, full / 16, 16);
    affine_lanes(po + full, pu + full, pv ? pv + full : NULL, masked, clamp, hi, k, hw - full, 1);
  }
}

/* out = A[c]·u + B[c]·(v − M[c]) + D[c], or without v out = A[c]·(u − M[c]) + D[c],
 * every element, padding included (its coefficients are zero); subtracting the
 * mean first keeps float32's digits when |mean| >> std. coef holds A, B, M, D
 * (cpad each) and, when `masked`, the fused forward's scale and shift after them. */
static void channel_affine(const AckdTensor *u, const AckdTensor *v, PetscBool masked, PetscBool clamp, float hi,
                           const double *coef, PetscInt cpad, AckdTensor *out)
{
  PetscInt     bs = AckdNNBlock(u), hw = u->h * u->w, nb = cpad / bs, n = u->n;
  const float *pu = u->data, *pv = v ? v->data : NULL;
  float       *po = out->data;

#pragma omp parallel for collapse(2) schedule(static)
  for (PetscInt s = 0; s < n; s++)
    for (PetscInt k = 0; k < nb; k++) {
      const PetscInt base = (s * nb + k) * hw * bs, c0 = k * bs;
      Lanes          lanes;
      lanes_fill(&lanes, c0, bs, coef, coef + cpad, coef + 2 * cpad, coef + 3 * cpad, masked ? coef + 4 * cpad : NULL,
                 masked ? coef + 5 * cpad : NULL);
      affine_block(po + base, pu + base, pv ? pv + base : NULL, masked, clamp, hi, &lanes, hw, bs);
    }
}

/* The activation's upper clamp: ReLU none, ReLU6 6. */
static float activation_hi(PetscInt act)
{
  return act == ACKD_ACT_RELU6 ? 6.0f : INFINITY;
}

PetscBool AckdBatchNormOwnKernel(const AckdBatchNorm *bn, const AckdTensor *x)
{
  return bn->training && (bn->comm != MPI_COMM_NULL || (AckdNNBlock(x) > 1 && x->n > 0)) ? PETSC_TRUE : PETSC_FALSE;
}

PetscErrorCode AckdBatchNormTrainForward(AckdBatchNorm *bn, const AckdTensor *x, AckdTensor *y, PetscInt act)
{
  PetscInt     C = bn->channels, cpad = AckdNNPaddedChannels(x), hw = x->h * x->w;
  const float *gamma = bn->params->values + bn->weight, *beta = bn->params->values + bn->bias;
  float       *rm = bn->params->buffer_values + bn->running_mean, *rv = bn->params->buffer_values + bn->running_var;

  PetscFunctionBeginUser;
  PetscCheck(AckdNNBlock(x) <= 16, PETSC_COMM_SELF, PETSC_ERR_SUP, "layer %s: channel blocks above 16", bn->name);
  PetscCheck(act < 0 || act == ACKD_ACT_RELU || act == ACKD_ACT_RELU6, PETSC_COMM_SELF, PETSC_ERR_SUP,
             "layer %s: only ReLU and ReLU6 fuse into batch norm", bn->name);
  PetscCall(buffers(bn, cpad));
  double *sums = bn->train_sums, *coef = bn->train_coef;
  channel_sums(x, NULL, NULL, 0.0f, NULL, NULL, sums, cpad);
  /* the reduction wants [Σx (C), Σx² (C), count] contiguous */
  for (PetscInt c = 0; c < C; c++) sums[C + c] = sums[cpad + c];
  sums[2 * C] = (double)(x->n * hw);
  if (bn->comm != MPI_COMM_NULL)
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, sums, (int)(2 * C + 1), MPI_DOUBLE, MPI_SUM, bn->comm));
  double count = sums[2 * C];
  PetscCheck(count > 0, PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ,
             "layer %s: batch norm in training mode over an empty batch; give at least one sample", bn->name);
  bn->train_count = count;
  double m = bn->momentum, unbias = count > 1 ? count / (count - 1) : 1.0;
  for (PetscInt c = 0; c < 4 * cpad; c++) coef[c] = 0.0;
  for (PetscInt c = 0; c < C; c++) {
    double mean = sums[c] / count, var = PetscMax(sums[C + c] / count - mean * mean, 0.0);
    double rstd       = 1.0 / sqrt(var + bn->eps);
    bn->train_mean[c] = mean;
    bn->train_rstd[c] = rstd;
    /* PyTorch updates the running variance with the unbiased batch variance */
    rm[c]              = (float)((1.0 - m) * rm[c] + m * mean);
    rv[c]              = (float)((1.0 - m) * rv[c] + m * unbias * var);
    coef[c]            = gamma[c] * rstd;
    coef[2 * cpad + c] = mean;
    coef[3 * cpad + c] = beta[c];
  }
  bn->train_ready = PETSC_TRUE;
  *y              = AckdTensorLike(y->data, x);
  channel_affine(x, NULL, PETSC_FALSE, act >= 0, activation_hi(act), coef, cpad, y);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdBatchNormTrainBackward(AckdBatchNorm *bn, const AckdTensor *x, const AckdTensor *dy, AckdTensor *dx,
                                          PetscInt act)
{
  PetscInt     C = bn->channels, cpad = AckdNNPaddedChannels(x);
  const float *gamma = bn->params->values + bn->weight;
  float       *grads = bn->params->grads;

  PetscFunctionBeginUser;
  PetscCheck(bn->train_ready, PETSC_COMM_SELF, PETSC_ERR_ORDER,
             "layer %s: training-mode backward without a training-mode forward of this shape before it", bn->name);
  PetscCheck(AckdNNBlock(dy) == AckdNNBlock(x), PETSC_COMM_SELF, PETSC_ERR_ARG_WRONG,
             "layer %s: input and output gradient in different layouts", bn->name);
  double   *sums = bn->train_sums, *coef = bn->train_coef, *mask = act >= 0 ? coef + 4 * cpad : NULL;
  float     hi     = activation_hi(act);
  PetscBool masked = mask ? PETSC_TRUE : PETSC_FALSE;
  /* the fused forward's scale and shift, computed as it computed them */
  for (PetscInt c = 0; mask && c < 2 * cpad; c++) mask[c] = 0.0;
  for (PetscInt c = 0; mask && c < C; c++) {
    mask[c]        = gamma[c] * bn->train_rstd[c];
    mask[cpad + c] = bn->params->values[bn->bias + c];
  }
  channel_sums(x, dy, mask, hi, bn->train_mean, bn->train_rstd, sums, cpad);
  for (PetscInt c = 0; c < C; c++) sums[C + c] = sums[cpad + c];
  /* the parameter gradients are this rank's share; the gradient allreduce adds them up */
  for (PetscInt c = 0; c < C; c++) {
    grads[bn->weight + c] = (float)sums[C + c];
    grads[bn->bias + c]   = (float)sums[c];
  }
  if (bn->comm != MPI_COMM_NULL)
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, sums, (int)(2 * C), MPI_DOUBLE, MPI_SUM, bn->comm));
  /* dx = k (dy − Σdy/N − x̂ Σdy·x̂/N), x̂ = (x − μ) r, k = γ r: A dy + B (x − μ) + D */
  double count = bn->train_count;
  for (PetscInt c = 0; c < 4 * cpad; c++) coef[c] = 0.0;
  for (PetscInt c = 0; c < C; c++) {
    double r = bn->train_rstd[c], k = gamma[c] * r, mdy = sums[c] / count, mdx = sums[C + c] / count;
    coef[c]            = k;
    coef[cpad + c]     = -k * r * mdx;
    coef[2 * cpad + c] = bn->train_mean[c];
    coef[3 * cpad + c] = -k * mdy;
  }
  *dx = AckdTensorLike(dx->data, x);
  channel_affine(dy, x, masked, PETSC_FALSE, hi, coef, cpad, dx);
  PetscFunctionReturn(0);
}
