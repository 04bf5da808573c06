/* Cross-entropy on logits (B, K), against a class per sample or a distribution
 * over the classes (a scene's cover fractions), each with label smoothing. The
 * softmax is shifted by the row maximum, and the log-sum-exp accumulated in
 * double, so large logits neither overflow nor lose the small probabilities. */
#include <ackd/nn.h>
#include <math.h>

static double log_sum_exp(const float *z, PetscInt K)
{
  double max = z[0], sum = 0.0;
  for (PetscInt k = 1; k < K; k++) max = PetscMax(max, (double)z[k]);
  for (PetscInt k = 0; k < K; k++) sum += exp(z[k] - max);
  return max + log(sum);
}

/* The target of class k: (1 - s) t_k + s/K, with t the one-hot of the label or the given row. */
static double smoothed_target(const PetscInt *labels, const float *targets, PetscInt b, PetscInt k, PetscInt K,
                              double smoothing)
{
  const double t = labels ? (double)(k == labels[b]) : (double)targets[b * K + k];
  return (1.0 - smoothing) * t + smoothing / K;
}

/* -sum_k t'_k log p_k. The gradient keeps the factor sum_k t'_k, as PyTorch's does, so a target
 * row that does not sum to one is not silently renormalised. */
static PetscErrorCode cross_entropy(const AckdTensor *logits, const PetscInt *labels, const float *targets,
                                    double smoothing, double *loss, AckdTensor *d_logits)
{
  PetscInt B = logits->n, K = AckdTensorSize(logits) / PetscMax(logits->n, 1);
  double   total = 0.0;

  PetscFunctionBeginUser;
  PetscCheck(smoothing >= 0.0 && smoothing <= 1.0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "cross-entropy: label smoothing must be in [0, 1]");
  for (PetscInt b = 0; b < B; b++) {
    PetscCheck(!labels || (labels[b] >= 0 && labels[b] < K), PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
               "cross-entropy: label %" PetscInt_FMT " of sample %" PetscInt_FMT " is outside [0, %" PetscInt_FMT
               "); check the dataset's class count",
               labels ? labels[b] : 0, b, K);
    const float *z    = logits->data + b * K;
    const double lse  = log_sum_exp(z, K);
    double       mass = 0.0;
    for (PetscInt k = 0; k < K; k++) {
      const double target = smoothed_target(labels, targets, b, k, K, smoothing);
      mass += target;
      total += target * (lse - z[k]);
    }
    if (d_logits) {
      float *d = d_logits->data + b * K;
      for (PetscInt k = 0; k < K; k++)
        d[k] = (float)((mass * exp(z[k] - lse) - smoothed_target(labels, targets, b, k, K, smoothing)) / B);
    }
  }
  if (d_logits) *d_logits = AckdTensorView(d_logits->data, logits->n, logits->c, logits->h, logits->w);
  *loss = total / B;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCrossEntropy(const AckdTensor *logits, const PetscInt *labels, double smoothing, double *loss,
                                AckdTensor *d_logits)
{
  PetscFunctionBeginUser;
  PetscCall(cross_entropy(logits, labels, NULL, smoothing, loss, d_logits));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdSoftCrossEntropy(const AckdTensor *logits, const float *targets, double smoothing, double *loss,
                                    AckdTensor *d_logits)
{
  PetscFunctionBeginUser;
  PetscCall(cross_entropy(logits, NULL, targets, smoothing, loss, d_logits));
  PetscFunctionReturn(0);
}
