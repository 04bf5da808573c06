/* Residual add and the channel plumbing of ShuffleNet: split, concat, shuffle.
 * Their gradients are the same operations run the other way (add's gradient
 * is dy for both inputs, split's is concat, shuffle's is the inverse shuffle),
 * so no separate backward functions exist. */
#include "nn/nn_private.h"
#include <string.h>

PetscErrorCode AckdAddForward(const AckdTensor *a, const AckdTensor *b, AckdTensor *y)
{
  PetscInt n = AckdTensorStorage(a);

  PetscFunctionBeginUser;
  PetscCheck(a->n == b->n && a->c == b->c && a->h == b->h && a->w == b->w && AckdNNBlock(a) == AckdNNBlock(b),
             PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ,
             "residual add: shapes (%" PetscInt_FMT ",%" PetscInt_FMT ",%" PetscInt_FMT ",%" PetscInt_FMT
             ") and (%" PetscInt_FMT ",%" PetscInt_FMT ",%" PetscInt_FMT ",%" PetscInt_FMT
             ") differ (or their layouts); the shortcut needs a projection",
             a->n, a->c, a->h, a->w, b->n, b->c, b->h, b->w);
  *y              = AckdTensorLike(y->data, a);
  const float *pa = a->data, *pb = b->data;
  float       *py = y->data;
#pragma omp parallel for simd schedule(static)
  for (PetscInt i = 0; i < n; i++) py[i] = pa[i] + pb[i];
  PetscFunctionReturn(0);
}

void AckdNNCopyChannels(const AckdTensor *from, PetscInt from_start, AckdTensor *to, PetscInt to_start, PetscInt count,
                        PetscInt from_stride, PetscInt to_stride, PetscBool add)
{
  PetscInt hw = from->h * from->w, bf = AckdNNBlock(from), bt = AckdNNBlock(to);
  if (bf == bt && from_start == 0 && to_start == 0 && count == from->c && count == to->c && from_stride == 1 &&
      to_stride == 1) {
    /* the whole tensor in one layout: padding included, one contiguous run */
    PetscInt     n   = AckdTensorStorage(from);
    const float *src = from->data;
    float       *dst = to->data;
    if (add) {
#pragma omp parallel for simd schedule(static)
      for (PetscInt i = 0; i < n; i++) dst[i] += src[i];
    } else {
#pragma omp parallel for simd schedule(static)
      for (PetscInt i = 0; i < n; i++) dst[i] = src[i];
    }
    return;
  }
  if (bf == 1 && bt == 1 && from_stride == 1 && to_stride == 1 && !add) {
    /* plain to plain: one contiguous run per sample */
#pragma omp parallel for schedule(static)
    for (PetscInt s = 0; s < from->n; s++)
      memcpy(to->data + AckdNNOffset(to, s, to_start, 0), from->data + AckdNNOffset(from, s, from_start, 0),
             (size_t)(count * hw) * sizeof(float));
    return;
  }
#pragma omp                   parallel for collapse(2) schedule(static)
  for (PetscInt s = 0; s < from->n; s++)
    for (PetscInt c = 0; c < count; c++) {
                        const float *src = from->data + AckdNNOffset(from, s, from_start + c * from_stride, 0);
                        float       *dst = to->data + AckdNNOffset(to, s, to_start + c * to_stride, 0);
                        if (add)
        for (PetscInt p = 0; p < hw; p++) dst[p * bt] += src[p * bf];
      else
        for (PetscInt p = 0; p < hw; p++) dst[p * bt] = src[p * bf];
    }
}

PetscErrorCode AckdChannelSplit(const AckdTensor *x, AckdTensor *a, AckdTensor *b)
{
  PetscInt ca = a->c, cb = x->c - a->c;

  PetscFunctionBeginUser;
  PetscCheck(ca > 0 && cb > 0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "channel split: %" PetscInt_FMT " of %" PetscInt_FMT " channels leaves one side empty", ca, x->c);
  a->n = b->n = x->n;
  b->c        = cb;
  a->h = b->h = x->h;
  a->w = b->w = x->w;
  AckdNNCopyChannels(x, 0, a, 0, ca, 1, 1, PETSC_FALSE);
  AckdNNCopyChannels(x, ca, b, 0, cb, 1, 1, PETSC_FALSE);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdChannelConcat(const AckdTensor *a, const AckdTensor *b, AckdTensor *y)
{
  PetscFunctionBeginUser;
  PetscCheck(a->n == b->n && a->h == b->h && a->w == b->w, PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ,
             "channel concat: the two inputs differ in batch or spatial size");
  y->n = a->n;
  y->c = a->c + b->c;
  y->h = a->h;
  y->w = a->w;
  AckdNNCopyChannels(a, 0, y, 0, a->c, 1, 1, PETSC_FALSE);
  AckdNNCopyChannels(b, 0, y, a->c, b->c, 1, 1, PETSC_FALSE);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdChannelShuffle(const AckdTensor *x, PetscInt groups, AckdTensor *y)
{
  PetscInt c = x->c;

  PetscFunctionBeginUser;
  PetscCheck(groups > 0 && c % groups == 0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "channel shuffle: %" PetscInt_FMT " groups do not divide %" PetscInt_FMT " channels", groups, c);
  PetscCheck(x->data != y->data, PETSC_COMM_SELF, PETSC_ERR_ARG_WRONG, "channel shuffle cannot run in place");
  y->n             = x->n;
  y->c             = c;
  y->h             = x->h;
  y->w             = x->w;
  PetscInt per_grp = c / groups;
  /* input channel g*per_grp + j lands on output channel j*groups + g */
  for (PetscInt g = 0; g < groups; g++) AckdNNCopyChannels(x, g * per_grp, y, g, per_grp, 1, groups, PETSC_FALSE);
  PetscFunctionReturn(0);
}
