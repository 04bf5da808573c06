/* Helpers private to src/nn: oneDNN plumbing shared by the layers built on it. */
#ifndef ACKD_NN_PRIVATE_H
#define ACKD_NN_PRIVATE_H

#include <ackd/nn.h>
#include <dnnl.h>

/* The compute backend behind AckdEngine: oneDNN's CPU engine and the stream its primitives run on.
 * Only src/nn sees it. */
struct _p_AckdBackend {
  dnnl_engine_t engine;
  dnnl_stream_t stream;
};

/* The descriptor of a tensor's layout (plain, nChw8c or nChw16c). */
PetscErrorCode AckdNNDescTensor(dnnl_memory_desc_t *md, const AckdTensor *t, const char *layer);
/* The block of a primitive's chosen layout for a 4-D tensor: 0 for plain
 * NCHW, 8 or 16 for nChw8c/nChw16c, -1 for any other. */
PetscInt AckdNNBlockOf(const dnnl_memory_desc_t *md);
/* A 1-D float32 descriptor (per-channel vectors, biases). */
PetscErrorCode AckdNNDescVector(dnnl_memory_desc_t *md, PetscInt size, const char *layer);
/* Memory without a buffer: the handle is pointed at the caller's data at every
 * execution, so a plan holds no copy of any tensor. */
PetscErrorCode AckdNNMemoryCreate(AckdEngine *engine, const dnnl_memory_desc_t *md, dnnl_memory_t *mem,
                                  const char *layer);
/* Memory that owns its buffer (workspaces). */
PetscErrorCode AckdNNMemoryAllocate(AckdEngine *engine, const dnnl_memory_desc_t *md, dnnl_memory_t *mem,
                                    const char *layer);
PetscErrorCode AckdNNMemoryBind(dnnl_memory_t mem, const void *data, const char *layer);
void           AckdNNMemoryDestroy(dnnl_memory_t *mem);
/* Creates the primitive for an operation descriptor; *pd is kept when the
 * caller needs it as a hint for backward primitives, else pass NULL. */
PetscErrorCode AckdNNPrimitiveCreate(AckdEngine *engine, const void *op_desc, const_dnnl_primitive_desc_t hint,
                                     dnnl_primitive_t *prim, dnnl_primitive_desc_t *pd, const char *layer,
                                     const char *what);
void           AckdNNPrimitiveDestroy(dnnl_primitive_t *prim);
PetscErrorCode AckdNNExecute(AckdEngine *engine, dnnl_primitive_t prim, int nargs, const dnnl_exec_arg_t *args,
                             const char *layer, const char *what);
/* A primitive's argument in the layout the primitive prefers. `user` wraps the
 * caller's plain NCHW buffer; when the primitive chose another layout
 * (oneDNN's blocked formats, where its fast kernels live), `inner` owns a
 * buffer in that layout, allocated once with the plan, and `reorder` converts:
 * user -> inner before the primitive for inputs, inner -> user after it for
 * outputs. */
typedef struct {
  dnnl_memory_t    user, inner;
  dnnl_primitive_t reorder;
  PetscBool        output;
  size_t           round_bf16; /* instead of reorder: this many floats rounded to bf16 in place of layout */
} AckdNNPort;

/* `what` is the query of the primitive's chosen descriptor, e.g. dnnl_query_src_md. */
PetscErrorCode AckdNNPortCreate(AckdEngine *engine, const dnnl_memory_desc_t *user_md, const_dnnl_primitive_desc_t pd,
                                dnnl_query_t what, PetscBool output, AckdNNPort *port, const char *layer);
/* Binds the caller's buffer and returns the memory to hand to the primitive
 * (for an input, already converted). */
PetscErrorCode AckdNNPortBind(AckdEngine *engine, AckdNNPort *port, const void *data, dnnl_memory_t *mem,
                              const char *layer);
/* After the primitive ran: converts an output back to the caller's layout. */
PetscErrorCode AckdNNPortFinish(AckdEngine *engine, AckdNNPort *port, const char *layer);
void           AckdNNPortDestroy(AckdNNPort *port);

/* The plan cached under key, or NULL. */
void *AckdNNPlanCacheFind(const AckdNNPlanCache *cache, const AckdNNPlanKey *key);
/* The slot for a new plan under key: a free one, else the oldest, whose plan goes to destroy
 * first. The slot's plan is NULL (never found) until the caller stores the plan it made. */
PetscInt AckdNNPlanCacheSlot(AckdNNPlanCache *cache, const AckdNNPlanKey *key, void (*destroy)(void *));
void     AckdNNPlanCacheClear(AckdNNPlanCache *cache, void (*destroy)(void *));

/* Channel block of a tensor's layout (1: plain NCHW) and its channel count
 * rounded up to whole blocks. */
static inline PetscInt AckdNNBlock(const AckdTensor *t)
{
  return t->block > 1 ? t->block : 1;
}
/* Where element (s, c, p) of a tensor lives, p = h W + w: plain is block 1. */
static inline PetscInt AckdNNOffset(const AckdTensor *t, PetscInt s, PetscInt c, PetscInt p)
{
  PetscInt b = AckdNNBlock(t), hw = t->h * t->w, cpad = (t->c + b - 1) / b * b;
  return (s * cpad + c / b * b) * hw + p * b + c % b;
}
static inline PetscInt AckdNNPaddedChannels(const AckdTensor *t)
{
  PetscInt b = AckdNNBlock(t);
  return (t->c + b - 1) / b * b;
}

/* The output block a convolution's primitive prefers for input x (its layout
 * included): the layout a model gives the convolution's output slot. */
PetscErrorCode AckdConvPreferredBlock(AckdConv *conv, AckdEngine *engine, const AckdTensor *x, PetscInt *block);

/* to[s, to_start + i*to_stride] (+)= from[s, from_start + i*from_stride] for
 * i < count, every sample and pixel, between any two layouts. */
void AckdNNCopyChannels(const AckdTensor *from, PetscInt from_start, AckdTensor *to, PetscInt to_start, PetscInt count,
                        PetscInt from_stride, PetscInt to_stride, PetscBool add);

/* Batch norm's training mode on ackd's own kernels (batchnorm_train.c), for
 * synchronised batch norm (statistics reduced over bn->comm) and for
 * channel-blocked layouts: whether they serve this input, and the pair, which
 * can fuse a following activation `act` (ACKD_ACT_RELU or ACKD_ACT_RELU6; -1:
 * none): forward then writes the activation's output y, and backward takes
 * the gradient with respect to y (the activation's mask it recomputes from x). */
PetscBool      AckdBatchNormOwnKernel(const AckdBatchNorm *bn, const AckdTensor *x);
PetscErrorCode AckdBatchNormTrainForward(AckdBatchNorm *bn, const AckdTensor *x, AckdTensor *y, PetscInt act);
PetscErrorCode AckdBatchNormTrainBackward(AckdBatchNorm *bn, const AckdTensor *x, const AckdTensor *dy, AckdTensor *dx,
                                          PetscInt act);

/* Output extent of a strided window, as PyTorch (floor), and the right
 * padding oneDNN needs to produce exactly that extent. */
static inline PetscInt AckdNNOutputExtent(PetscInt in, PetscInt kernel, PetscInt stride, PetscInt pad)
{
  return (in + 2 * pad - kernel) / stride + 1;
}
static inline PetscInt AckdNNRightPadding(PetscInt in, PetscInt out, PetscInt kernel, PetscInt stride, PetscInt pad)
{
  return (out - 1) * stride + kernel - in - pad;
}

#endif
