/* Inverted dropout with counter-based masks: element i of global sample s at
 * step t is kept iff Philox(key = seed, counter = (block, tag, t)) says so,
 * where block = ((s * per_sample + i) / 4) and the word is the remainder. The
 * mask is the same on any rank count and can be recomputed anywhere. */
#include <ackd/nn.h>

PetscErrorCode AckdDropoutSetUp(AckdDropout *drop, const char *name, double p, uint64_t seed, uint32_t tag)
{
  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(drop, sizeof *drop));
  PetscCall(PetscStrncpy(drop->name, name, sizeof drop->name));
  PetscCheck(p >= 0.0 && p < 1.0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "layer %s: dropout probability must be in [0, 1)", name);
  drop->p        = p;
  drop->seed     = seed;
  drop->tag      = tag;
  drop->training = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdDropoutForward(AckdDropout *drop, const AckdTensor *x, AckdTensor *y)
{
  PetscInt n = AckdTensorSize(x), per_sample = x->c * x->h * x->w;

  PetscFunctionBeginUser;
  /* the mask counts elements in NCHW order */
  PetscCheck(x->block <= 1, PETSC_COMM_SELF, PETSC_ERR_ARG_WRONG,
             "layer %s: dropout reads plain NCHW, not a channel-blocked layout", drop->name);
  *y = AckdTensorView(y->data, x->n, x->c, x->h, x->w);
  if (!drop->training || drop->p == 0.0) {
    if (y->data != x->data) PetscCall(PetscArraycpy(y->data, x->data, n));
    drop->mask_size = 0;
    PetscFunctionReturn(0);
  }
  if (n > drop->mask_capacity) {
    PetscCall(PetscFree(drop->mask));
    PetscCall(PetscMalloc1(n, &drop->mask));
    drop->mask_capacity = n;
  }
  drop->mask_size = n;
  /* keep iff u32 >= p * 2^32: an exact threshold on the raw word */
  uint32_t threshold = (uint32_t)(drop->p * 4294967296.0);
  float    scale     = (float)(1.0 / (1.0 - drop->p));
  uint32_t key[2]    = {(uint32_t)drop->seed, (uint32_t)(drop->seed >> 32)};
  uint64_t first     = (uint64_t)drop->sample_offset * (uint64_t)per_sample;
#pragma omp parallel for schedule(static)
  for (PetscInt i = 0; i < n; i++) {
    uint64_t g = first + (uint64_t)i, block = g / 4;
    uint32_t ctr[4] = {(uint32_t)block, drop->tag, (uint32_t)drop->step, (uint32_t)(block >> 32)}, out[4];
    AckdPhilox4x32(ctr, key, out);
    drop->mask[i] = out[g % 4] >= threshold;
    y->data[i]    = drop->mask[i] ? x->data[i] * scale : 0.0f;
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdDropoutBackward(AckdDropout *drop, const AckdTensor *dy, AckdTensor *dx)
{
  PetscInt n = AckdTensorSize(dy);

  PetscFunctionBeginUser;
  if (!dx) PetscFunctionReturn(0);
  *dx = AckdTensorView(dx->data, dy->n, dy->c, dy->h, dy->w);
  if (!drop->mask_size) {
    if (dx->data != dy->data) PetscCall(PetscArraycpy(dx->data, dy->data, n));
    PetscFunctionReturn(0);
  }
  PetscCheck(n == drop->mask_size, PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ,
             "layer %s: backward on %" PetscInt_FMT " elements after a forward on %" PetscInt_FMT, drop->name, n,
             drop->mask_size);
  float scale = (float)(1.0 / (1.0 - drop->p));
#pragma omp parallel for simd schedule(static)
  for (PetscInt i = 0; i < n; i++) dx->data[i] = drop->mask[i] ? dy->data[i] * scale : 0.0f;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdDropoutDestroy(AckdDropout *drop)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree(drop->mask));
  drop->mask_capacity = drop->mask_size = 0;
  PetscFunctionReturn(0);
}
