/* ReLU, ReLU6 and GELU (exact, erf form), elementwise. Memory-bound loops:
 * plain C with OpenMP is as fast as a library call and needs no plan. */
#include <ackd/nn.h>
#include <math.h>

static const double INV_SQRT2 = 0.70710678118654752440, INV_SQRT_2PI = 0.39894228040143267794;

static PetscErrorCode check_same_size(const AckdTensor *a, const AckdTensor *b, const char *what)
{
  PetscFunctionBeginUser;
  PetscCheck(AckdTensorStorage(a) == AckdTensorStorage(b), PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ,
             "%s: tensors of %" PetscInt_FMT " and %" PetscInt_FMT " elements; the shapes must agree", what,
             AckdTensorStorage(a), AckdTensorStorage(b));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdActivationForward(AckdActivationKind kind, const AckdTensor *x, AckdTensor *y)
{
  PetscInt n = AckdTensorStorage(x); /* a blocked layout's zero padding stays zero */

  PetscFunctionBeginUser;
  *y               = AckdTensorLike(y->data, x);
  const float *in  = x->data; /* not restrict: y may alias x (in-place activation) */
  float       *out = y->data;
  switch (kind) {
  case ACKD_ACT_RELU:
#pragma omp parallel for simd schedule(static)
    for (PetscInt i = 0; i < n; i++) out[i] = in[i] > 0.0f ? in[i] : 0.0f;
    break;
  case ACKD_ACT_RELU6:
#pragma omp parallel for simd schedule(static)
    for (PetscInt i = 0; i < n; i++) out[i] = in[i] > 0.0f ? (in[i] < 6.0f ? in[i] : 6.0f) : 0.0f;
    break;
  case ACKD_ACT_GELU:
#pragma omp                   parallel for schedule(static)
    for (PetscInt i = 0; i < n; i++) out[i] = (float)(0.5 * in[i] * (1.0 + erf(in[i] * INV_SQRT2)));
    break;
                    }
                    PetscFunctionReturn(0);
}

/* At the kinks (0, and 6 for ReLU6) the derivative is taken as PyTorch does:
 * 0 at x = 0, and 0 at x = 6. */
PetscErrorCode AckdActivationBackward(AckdActivationKind kind, const AckdTensor *x, const AckdTensor *dy,
                                      AckdTensor *dx)
{
  PetscInt n = AckdTensorStorage(x); /* a blocked layout's zero padding stays zero */

  PetscFunctionBeginUser;
  PetscCall(check_same_size(x, dy, "activation backward"));
  if (!dx) PetscFunctionReturn(0);
  *dx                      = AckdTensorLike(dx->data, x);
  const float *restrict in = x->data;
  const float *g           = dy->data;
  float       *out         = dx->data; /* may alias dy */
  switch (kind) {
  /* the gradient is loaded whether kept or not: a conditional load would keep
   * the loops scalar */
  case ACKD_ACT_RELU:
#pragma omp parallel for simd schedule(static)
    for (PetscInt i = 0; i < n; i++) {
      float gi = g[i];
      out[i]   = in[i] > 0.0f ? gi : 0.0f;
    }
    break;
  case ACKD_ACT_RELU6:
#pragma omp parallel for simd schedule(static)
    for (PetscInt i = 0; i < n; i++) {
      float gi = g[i];
      out[i]   = (in[i] > 0.0f) & (in[i] < 6.0f) ? gi : 0.0f;
    }
    break;
  case ACKD_ACT_GELU:
#pragma omp                   parallel for schedule(static)
    for (PetscInt i = 0; i < n; i++) {
                        double v   = in[i];
                        double cdf = 0.5 * (1.0 + erf(v * INV_SQRT2));
                        out[i]     = (float)(g[i] * (cdf + v * INV_SQRT_2PI * exp(-0.5 * v * v)));
    }
    break;
                    }
                    PetscFunctionReturn(0);
}
