/* Binary cross-entropy with logits for multi-label targets, in the stable
 * form max(z, 0) - z t + log(1 + exp(-|z|)). */
#include <ackd/nn.h>
#include <math.h>

PetscErrorCode AckdBCEWithLogits(const AckdTensor *logits, const float *targets, double *loss, AckdTensor *d_logits)
{
  PetscInt n     = AckdTensorSize(logits);
  double   total = 0.0;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < n; i++) {
    double z = logits->data[i], t = targets[i];
    PetscCheck(t >= 0.0 && t <= 1.0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
               "binary cross-entropy: target %" PetscInt_FMT " is outside [0, 1]; check the multi-label matrix", i);
    total += PetscMax(z, 0.0) - z * t + log1p(exp(-fabs(z)));
    if (d_logits) d_logits->data[i] = (float)((1.0 / (1.0 + exp(-z)) - t) / n);
  }
  if (d_logits) *d_logits = AckdTensorView(d_logits->data, logits->n, logits->c, logits->h, logits->w);
  *loss = total / n;
  PetscFunctionReturn(0);
}
