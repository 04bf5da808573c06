/* Cross-entropy with label smoothing on logits (B, K): the softmax is shifted
 * by the row maximum, and the log-sum-exp accumulated in double, so large
 * logits neither overflow nor lose the small probabilities. */
#include <ackd/nn.h>
#include <math.h>

PetscErrorCode AckdCrossEntropy(const AckdTensor *logits, const PetscInt *labels, double smoothing, double *loss,
                                AckdTensor *d_logits)
{
  PetscInt B = logits->n, K = AckdTensorSize(logits) / PetscMax(logits->n, 1);
  double   total = 0.0;

  PetscFunctionBeginUser;
  PetscCheck(smoothing >= 0.0 && smoothing <= 1.0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "cross-entropy: label smoothing must be in [0, 1]");
  for (PetscInt b = 0; b < B; b++) {
    PetscCheck(labels[b] >= 0 && labels[b] < K, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
               "cross-entropy: label %" PetscInt_FMT " of sample %" PetscInt_FMT " is outside [0, %" PetscInt_FMT
               "); check the dataset's class count",
               labels[b], b, K);
    const float *z   = logits->data + b * K;
    double       max = z[0], sum = 0.0, mean_z = 0.0;
    for (PetscInt k = 1; k < K; k++) max = PetscMax(max, (double)z[k]);
    for (PetscInt k = 0; k < K; k++) {
      sum += exp(z[k] - max);
      mean_z += z[k];
    }
    mean_z /= K;
    double lse = max + log(sum);
    /* -sum_k t_k log p_k with t = (1 - s) onehot + s/K */
    total += (1.0 - smoothing) * (lse - z[labels[b]]) + smoothing * (lse - mean_z);
    if (d_logits) {
      float *d = d_logits->data + b * K;
      for (PetscInt k = 0; k < K; k++) {
        double target = smoothing / K + (k == labels[b] ? 1.0 - smoothing : 0.0);
        d[k]          = (float)((exp(z[k] - lse) - target) / B);
      }
    }
  }
  if (d_logits) *d_logits = AckdTensorView(d_logits->data, logits->n, logits->c, logits->h, logits->w);
  *loss = total / B;
  PetscFunctionReturn(0);
}
