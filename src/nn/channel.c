/* Residual add and the channel plumbing of ShuffleNet: split, concat, shuffle.
 * Their gradients are the same operations run the other way (add's gradient
 * is dy for both inputs, split's is concat, shuffle's is the inverse shuffle),
 * so no separate backward functions exist. */
#include <ackd/nn.h>

PetscErrorCode AckdAddForward(const AckdTensor *a, const AckdTensor *b, AckdTensor *y)
{
  PetscInt n = AckdTensorSize(a);

  PetscFunctionBeginUser;
  PetscCheck(a->n == b->n && a->c == b->c && a->h == b->h && a->w == b->w, PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ,
             "residual add: shapes (%" PetscInt_FMT ",%" PetscInt_FMT ",%" PetscInt_FMT ",%" PetscInt_FMT
             ") and (%" PetscInt_FMT ",%" PetscInt_FMT ",%" PetscInt_FMT ",%" PetscInt_FMT
             ") differ; the shortcut needs a projection",
             a->n, a->c, a->h, a->w, b->n, b->c, b->h, b->w);
  *y              = AckdTensorView(y->data, a->n, a->c, a->h, a->w);
  const float *pa = a->data, *pb = b->data;
  float       *py = y->data;
#pragma omp parallel for simd schedule(static)
  for (PetscInt i = 0; i < n; i++) py[i] = pa[i] + pb[i];
  PetscFunctionReturn(0);
}

PetscErrorCode AckdChannelSplit(const AckdTensor *x, AckdTensor *a, AckdTensor *b)
{
  PetscInt hw = x->h * x->w, ca = a->c, cb = x->c - a->c;

  PetscFunctionBeginUser;
  PetscCheck(ca > 0 && cb > 0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "channel split: %" PetscInt_FMT " of %" PetscInt_FMT " channels leaves one side empty", ca, x->c);
  *a = AckdTensorView(a->data, x->n, ca, x->h, x->w);
  *b = AckdTensorView(b->data, x->n, cb, x->h, x->w);
  for (PetscInt s = 0; s < x->n; s++) {
    PetscCall(PetscArraycpy(a->data + s * ca * hw, x->data + s * x->c * hw, ca * hw));
    PetscCall(PetscArraycpy(b->data + s * cb * hw, x->data + (s * x->c + ca) * hw, cb * hw));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdChannelConcat(const AckdTensor *a, const AckdTensor *b, AckdTensor *y)
{
  PetscInt hw = a->h * a->w, c = a->c + b->c;

  PetscFunctionBeginUser;
  PetscCheck(a->n == b->n && a->h == b->h && a->w == b->w, PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ,
             "channel concat: the two inputs differ in batch or spatial size");
  *y = AckdTensorView(y->data, a->n, c, a->h, a->w);
  for (PetscInt s = 0; s < a->n; s++) {
    PetscCall(PetscArraycpy(y->data + s * c * hw, a->data + s * a->c * hw, a->c * hw));
    PetscCall(PetscArraycpy(y->data + (s * c + a->c) * hw, b->data + s * b->c * hw, b->c * hw));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdChannelShuffle(const AckdTensor *x, PetscInt groups, AckdTensor *y)
{
  PetscInt hw = x->h * x->w, c = x->c;

  PetscFunctionBeginUser;
  PetscCheck(groups > 0 && c % groups == 0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "channel shuffle: %" PetscInt_FMT " groups do not divide %" PetscInt_FMT " channels", groups, c);
  PetscCheck(x->data != y->data, PETSC_COMM_SELF, PETSC_ERR_ARG_WRONG, "channel shuffle cannot run in place");
  *y               = AckdTensorView(y->data, x->n, c, x->h, x->w);
  PetscInt per_grp = c / groups;
  /* input channel g*per_grp + j lands on output channel j*groups + g */
  for (PetscInt s = 0; s < x->n; s++)
    for (PetscInt g = 0; g < groups; g++)
      for (PetscInt j = 0; j < per_grp; j++)
        PetscCall(PetscArraycpy(y->data + (s * c + j * groups + g) * hw, x->data + (s * c + g * per_grp + j) * hw, hw));
  PetscFunctionReturn(0);
}
