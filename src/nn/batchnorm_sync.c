/* Synchronised batch norm (training mode): the batch is the global one, split
 * over the ranks of bn->comm. Forward reduces per-channel sums and sums of
 * squares (in double, so E[x²] − E[x]² loses nothing that float32 data
 * carries) together with the element count; backward reduces Σdy and Σdy·x̂,
 * which are also the local weight and bias gradients:
 *   dx = γ·rstd/N · (N·dy − Σ_global dy − x̂ · Σ_global dy·x̂).
 * Every rank calls both, including a rank with an empty local batch, so the
 * collectives match. */
#include "nn/nn_private.h"
#include <math.h>

/* Channel c of sample s: its H·W elements, `stride` floats apart. */
static inline const float *channel_at(const AckdTensor *t, PetscInt s, PetscInt c, PetscInt *stride)
{
  PetscInt b = AckdNNBlock(t), hw = t->h * t->w, cpad = AckdNNPaddedChannels(t);
  *stride = b;
  return t->data + (s * cpad + c / b * b) * hw + c % b;
}

static PetscErrorCode sync_buffers(AckdBatchNorm *bn)
{
  PetscFunctionBeginUser;
  if (!bn->sync_mean)
    PetscCall(
        PetscMalloc3(bn->channels, &bn->sync_mean, bn->channels, &bn->sync_rstd, 2 * bn->channels + 1, &bn->sync_sums));
  PetscFunctionReturn(0);
}

/* Per-channel local sums of f(a, b) over a (and b), in double. */
static void local_sums(const AckdTensor *x, const AckdTensor *dy, const double *mean, const double *rstd, double *sums,
                       PetscInt channels)
{
  PetscInt hw = x->h * x->w;
#pragma omp parallel for schedule(static)
  for (PetscInt c = 0; c < channels; c++) {
    double s1 = 0.0, s2 = 0.0;
    for (PetscInt s = 0; s < x->n; s++) {
      PetscInt     stride;
      const float *px = channel_at(x, s, c, &stride);
      if (!dy) {
        for (PetscInt p = 0; p < hw; p++) {
          double v = px[p * stride];
          s1 += v;
          s2 += v * v;
        }
      } else {
        const float *pg = channel_at(dy, s, c, &stride);
        double       m = mean[c], r = rstd[c];
        for (PetscInt p = 0; p < hw; p++) {
          double g = pg[p * stride];
          s1 += g;
          s2 += g * (px[p * stride] - m) * r;
        }
      }
    }
    sums[c]            = s1;
    sums[channels + c] = s2;
  }
}

PetscErrorCode AckdBatchNormSyncForward(AckdBatchNorm *bn, const AckdTensor *x, AckdTensor *y)
{
  PetscInt C = bn->channels, hw = x->h * x->w;
  float   *values = bn->params->values, *buffers = bn->params->buffer_values;

  PetscFunctionBeginUser;
  PetscCall(sync_buffers(bn));
  double *sums = bn->sync_sums;
  local_sums(x, NULL, NULL, NULL, sums, C);
  sums[2 * C] = (double)(x->n * hw);
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, sums, (int)(2 * C + 1), MPI_DOUBLE, MPI_SUM, bn->comm));
  double count = sums[2 * C];
  PetscCheck(count > 0, PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ,
             "layer %s: synchronised batch norm over an empty global batch; give at least one sample", bn->name);
  bn->sync_count = count;
  double m = bn->momentum, unbias = count > 1 ? count / (count - 1) : 1.0;
  float *rm = buffers + bn->running_mean, *rv = buffers + bn->running_var;
  for (PetscInt c = 0; c < C; c++) {
    double mean = sums[c] / count, var = PetscMax(sums[C + c] / count - mean * mean, 0.0);
    bn->sync_mean[c] = mean;
    bn->sync_rstd[c] = 1.0 / sqrt(var + bn->eps);
    rm[c]            = (float)((1.0 - m) * rm[c] + m * mean);
    rv[c]            = (float)((1.0 - m) * rv[c] + m * unbias * var);
  }
  bn->sync_ready     = PETSC_TRUE;
  const float *gamma = values + bn->weight, *beta = values + bn->bias;
#pragma omp parallel for schedule(static)
  for (PetscInt c = 0; c < C; c++) {
    float a = (float)(gamma[c] * bn->sync_rstd[c]),
          b = (float)(beta[c] - bn->sync_mean[c] * gamma[c] * bn->sync_rstd[c]);
    for (PetscInt s = 0; s < x->n; s++) {
      PetscInt     stride;
      const float *px = channel_at(x, s, c, &stride);
      float       *py = (float *)channel_at(y, s, c, &stride);
      for (PetscInt p = 0; p < hw; p++) py[p * stride] = px[p * stride] * a + b;
    }
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdBatchNormSyncBackward(AckdBatchNorm *bn, const AckdTensor *x, const AckdTensor *dy, AckdTensor *dx)
{
  PetscInt C = bn->channels, hw = x->h * x->w;
  float   *values = bn->params->values, *grads = bn->params->grads;

  PetscFunctionBeginUser;
  PetscCheck(bn->sync_ready, PETSC_COMM_SELF, PETSC_ERR_ORDER,
             "layer %s: training-mode backward without a training-mode forward of this shape before it", bn->name);
  double *sums = bn->sync_sums;
  local_sums(x, dy, bn->sync_mean, bn->sync_rstd, sums, C);
  /* the parameter gradients are this rank's share; the gradient allreduce adds them up */
  for (PetscInt c = 0; c < C; c++) {
    grads[bn->weight + c] = (float)sums[C + c];
    grads[bn->bias + c]   = (float)sums[c];
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, sums, (int)(2 * C), MPI_DOUBLE, MPI_SUM, bn->comm));
  const float *gamma = values + bn->weight;
  double       count = bn->sync_count;
#pragma omp parallel for schedule(static)
  for (PetscInt c = 0; c < C; c++) {
    double r = bn->sync_rstd[c], k = gamma[c] * r;
    float  a = (float)k, mdy = (float)(sums[c] / count), mdx = (float)(sums[C + c] / count);
    float  mu = (float)bn->sync_mean[c], rs = (float)r;
    for (PetscInt s = 0; s < x->n; s++) {
      PetscInt     stride;
      const float *px = channel_at(x, s, c, &stride), *pg = channel_at(dy, s, c, &stride);
      float       *pd = (float *)channel_at(dx, s, c, &stride);
      for (PetscInt p = 0; p < hw; p++) {
        float xhat     = (px[p * stride] - mu) * rs;
        pd[p * stride] = a * (pg[p * stride] - mdy - xhat * mdx);
      }
    }
  }
  PetscFunctionReturn(0);
}
