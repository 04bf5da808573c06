/* Activation tensors: float32 NCHW views and the gradient accumulation that
 * residual branches need. */
#include <ackd/nn.h>

AckdTensor AckdTensorView(float *data, PetscInt n, PetscInt c, PetscInt h, PetscInt w)
{
  AckdTensor t = {n, c, h, w, data, 0};
  return t;
}

AckdTensor AckdTensorLike(float *data, const AckdTensor *like)
{
  AckdTensor t = *like;
  t.data       = data;
  return t;
}

PetscErrorCode AckdTensorAllocate(AckdTensor *t, PetscInt n, PetscInt c, PetscInt h, PetscInt w)
{
  PetscFunctionBeginUser;
  *t = AckdTensorView(NULL, n, c, h, w);
  PetscCall(PetscCalloc1(AckdTensorSize(t), &t->data));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTensorFree(AckdTensor *t)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree(t->data));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTensorAccumulate(AckdTensor *dst, const AckdTensor *src)
{
  PetscInt n = AckdTensorStorage(dst);

  PetscFunctionBeginUser;
  PetscCheck(n == AckdTensorStorage(src) && AckdTensorSize(dst) == AckdTensorSize(src), PETSC_COMM_SELF,
             PETSC_ERR_ARG_SIZ,
             "accumulating gradients: %" PetscInt_FMT " elements into %" PetscInt_FMT "; the shapes must agree",
             AckdTensorSize(src), n);
  float *restrict d       = dst->data;
  const float *restrict s = src->data;
#pragma omp parallel for simd schedule(static)
  for (PetscInt i = 0; i < n; i++) d[i] += s[i];
  PetscFunctionReturn(0);
}
