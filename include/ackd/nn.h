/* ackd nn: the neural-network engine (layers as forward/backward pairs).
 *
 * Conventions shared by every layer:
 *   - Activations are float32, NCHW, contiguous (AckdTensor). A token sequence
 *     (B, T, D) is stored as n = B, c = 1, h = T, w = D, so that its last
 *     dimension is the feature dimension, as in PyTorch. Inside a model,
 *     convolution, batch norm, pooling, activations and the channel plumbing
 *     also take oneDNN's channel-blocked layouts (block 8 or 16: nChw8c,
 *     nChw16c), so that no conversion runs between layers; every model output
 *     is plain NCHW.
 *   - A model's parameters live in one contiguous buffer and their gradients in
 *     another with the same layout (AckdParams). Layers hold offsets into them,
 *     never their own copies, so an optimizer or an allreduce sees one vector.
 *   - AckdXSetUp declares a layer's parameters; AckdParamsSetUp then allocates
 *     the buffers; AckdParamsInitialize draws PyTorch's default initialisation.
 *   - AckdXForward(layer, engine, x, y) writes y, which the caller allocated
 *     (AckdXOutputShape gives its shape). AckdXBackward(layer, engine, x, y, dy,
 *     dx) *overwrites* dx (skipped when dx is NULL) and *overwrites* the layer's
 *     parameter gradients: each parameter is used once per step, so no layer
 *     needs accumulation; a model that sums gradients (residual branches) does so
 *     explicitly with AckdTensorAccumulate.
 *   - Layers built on oneDNN (convolution, batch norm, pooling) create their
 *     primitives on the first call with a new input shape and reuse them for
 *     every later call with that shape (a small per-layer plan cache).
 */
#ifndef ACKD_NN_H
#define ACKD_NN_H

#include <ackd/core.h>

enum {
  ACKD_NN_NAME_LEN = 96, /* "layer4.1.downsample.1.running_mean" fits */
  ACKD_NN_PLANS    = 4   /* input shapes a layer keeps primitives for: train, last partial batch, eval, ... */
};

/* ---------------------------------------------------------------- tensors */

typedef struct {
  PetscInt n, c, h, w;
  float   *data;
  /* 0 (or 1): plain NCHW. 8 or 16: channel-blocked (N, ceil(C/b), H, W, b),
   * oneDNN's nChw8c/nChw16c, the channels beyond C zero. */
  PetscInt block;
} AckdTensor;

/* Logical elements: n c h w. */
static inline PetscInt AckdTensorSize(const AckdTensor *t)
{
  return t->n * t->c * t->h * t->w;
}
/* Floats the tensor occupies, channel padding of a blocked layout included. */
static inline PetscInt AckdTensorStorage(const AckdTensor *t)
{
  PetscInt b = t->block > 1 ? t->block : 1;
  return t->n * ((t->c + b - 1) / b * b) * t->h * t->w;
}
/* A plain NCHW tensor of the given shape over existing memory. */
AckdTensor AckdTensorView(float *data, PetscInt n, PetscInt c, PetscInt h, PetscInt w);
/* `like`'s shape and layout over `data`. */
AckdTensor     AckdTensorLike(float *data, const AckdTensor *like);
PetscErrorCode AckdTensorAllocate(AckdTensor *t, PetscInt n, PetscInt c, PetscInt h, PetscInt w);
PetscErrorCode AckdTensorFree(AckdTensor *t);
/* dst += src (same number of elements and layout): gradients of a value used twice. */
PetscErrorCode AckdTensorAccumulate(AckdTensor *dst, const AckdTensor *src);
/* C = alpha op(A) op(B) + beta C in single precision, row-major, op 'N' or 'T'
 * (cblas_sgemm's arguments in BLAS's character form), on oneDNN's JIT kernels:
 * they use AVX-512 where the CPU has it, where Debian's OpenBLAS 0.3.21 runs
 * its AVX2 (Haswell) kernel, and so run ~1.8x faster there (1280 x 1280 x 128
 * on the EPYC, one thread: 180-215 against 95-105 GFLOP/s). Threads: the
 * engine's OpenMP count. */
PetscErrorCode AckdSgemm(char transa, char transb, PetscInt m, PetscInt n, PetscInt k, float alpha, const float *A,
                         PetscInt lda, const float *B, PetscInt ldb, float beta, float *C, PetscInt ldc);

/* to[i] = from[i] rounded to bfloat16 (to nearest, ties to even; NaN stays NaN), at memory speed. */
void AckdRoundBF16(const float *from, uint16_t *to, size_t count);

/* C = op(A) op(B) (operands contiguous, row-major, op 'N' or 'T') on bfloat16 operands
 * (AckdRoundBF16) with the products summed in float32: oneDNN's matmul on AVX512_BF16 or AMX,
 * faster than AckdSgemm there (SKA's maps: docs/PERFORMANCE.md). The caller rounds each operand
 * once however many products read it. Against the unrounded operands each term then carries a
 * relative error of up to 2^-7, against 2^-24 sqrt(k) for a whole entry in single precision: for
 * products whose inputs are already approximate (SKA's attention maps, -ska_maps_precision).
 * Refused in one line on CPUs without bf16 instructions. Keeps plans per shape, as a layer does
 * (AckdNNPlanCache). */
typedef struct _p_AckdGemmBF16 *AckdGemmBF16;

PetscErrorCode AckdGemmBF16Create(AckdGemmBF16 *gemm);
PetscErrorCode AckdGemmBF16Multiply(AckdGemmBF16 gemm, char transa, char transb, PetscInt m, PetscInt n, PetscInt k,
                                    const uint16_t *A, const uint16_t *B, float *C);
PetscErrorCode AckdGemmBF16Destroy(AckdGemmBF16 *gemm);

/* ---------------------------------------------------------------- engine */

/* The compute backend every layer executes on (oneDNN's CPU engine and stream, src/nn/engine.c),
 * opaque above src/nn: the layers' callers pass it along and never see the library behind it, so
 * another backend is a matter for src/nn alone. And the thread count shared by oneDNN (OpenMP),
 * OpenBLAS and ackd's own loops. */
typedef struct _p_AckdBackend *AckdBackend;

/* The arithmetic of the convolutions, the layers that hold nearly all of a backbone's products.
 * bf16: their inputs, weights and output gradients are rounded to bfloat16 on the way into
 * oneDNN's kernels, which accumulate in float32; the weight gradients, the parameters (the
 * optimizer's master copy), batch norm, pooling, the classifier and every loss stay float32.
 * It is PyTorch's CPU autocast for these layers. Only on CPUs with AVX512_BF16 (or AMX), where
 * oneDNN has bf16 kernels in hardware; elsewhere setting it is refused (docs/NN.md). */
typedef enum { ACKD_PRECISION_FP32, ACKD_PRECISION_BF16 } AckdPrecision;
extern const char *const AckdPrecisionNames[];

typedef struct {
  AckdBackend   backend;
  PetscInt      threads;
  AckdPrecision precision; /* ACKD_PRECISION_FP32 unless set */
} AckdEngine;

/* threads <= 0 keeps the runtime's default (OMP_NUM_THREADS). */
PetscErrorCode AckdEngineCreate(PetscInt threads, AckdEngine *engine);
/* Refused in one line on a CPU without bf16 instructions. Set before the first forward: layers
 * keep their plans per precision, so changing it later costs new plans, not wrong results. */
PetscErrorCode AckdEngineSetPrecision(AckdEngine *engine, AckdPrecision precision);
/* Whether this CPU runs bf16 convolutions in hardware (AVX512_BF16 or AMX). */
PetscBool AckdEngineHasBF16(void);
/* The option -<prefix><name> (name without its dash, e.g. "precision" under the prefix "train_")
 * choosing the convolutions' arithmetic, inside a PetscOptionsBegin block. bf16 on a CPU without
 * the instructions is a command-line fault (exit 2) naming the option, raised before any data is
 * read; -help only lists it. */
PetscErrorCode AckdOptionsPrecision(PetscOptionItems *PetscOptionsObject, MPI_Comm comm, const char *prefix,
                                    const char *name, AckdPrecision *precision);
PetscErrorCode AckdEngineDestroy(AckdEngine *engine);

/* ---------------------------------------------------------------- parameters */

typedef enum {
  ACKD_INIT_KAIMING_UNIFORM, /* conv/linear weight: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform, a = sqrt 5) */
  ACKD_INIT_FAN_IN_UNIFORM,  /* conv/linear bias: the same bound, PyTorch's default */
  ACKD_INIT_ONES,            /* norm scale, running variance */
  ACKD_INIT_ZEROS            /* norm shift, running mean */
} AckdInit;

typedef struct {
  char     name[ACKD_NN_NAME_LEN]; /* PyTorch's state_dict name, e.g. "layer1.0.conv1.weight" */
  PetscInt offset, size, fan_in;
  PetscInt ndims, dims[4]; /* PyTorch's shape, e.g. (O, I/groups, k, k) */
  AckdInit init;
} AckdParamEntry;

/* Trainable parameters (values + gradients, same layout) and buffers
 * (running statistics: values only), each one contiguous allocation. */
typedef struct {
  AckdParamEntry *params, *buffers;
  PetscInt        nparams, nbuffers, cap_params, cap_buffers;
  PetscInt        size, buffer_size; /* floats */
  float          *values, *grads, *buffer_values;
  PetscBool       setup;
} AckdParams;

PetscErrorCode AckdParamsCreate(AckdParams *params);
/* Declares a parameter (before AckdParamsSetUp) and returns its offset. */
PetscErrorCode AckdParamsAdd(AckdParams *params, const char *name, PetscInt size, PetscInt fan_in, AckdInit init,
                             PetscInt *offset);
/* The same with PyTorch's shape (ndims <= 4), which files record. */
PetscErrorCode AckdParamsAddShaped(AckdParams *params, const char *name, PetscInt ndims, const PetscInt *dims,
                                   PetscInt fan_in, AckdInit init, PetscInt *offset);
PetscErrorCode AckdParamsAddBuffer(AckdParams *params, const char *name, PetscInt size, AckdInit init,
                                   PetscInt *offset);
/* Allocates the buffers (values and buffers initialised, gradients zeroed). */
PetscErrorCode AckdParamsSetUp(AckdParams *params);
/* Redraws every parameter from PyTorch's defaults: a pure function of the seed
 * and the parameter's position, whatever the rank count. */
PetscErrorCode AckdParamsInitialize(AckdParams *params, uint64_t seed);
PetscErrorCode AckdParamsZeroGrad(AckdParams *params);
PetscErrorCode AckdParamsDestroy(AckdParams *params);
/* Every parameter and buffer as /<group>/<layer>/<tensor> with PyTorch's shape
 * (docs/DESIGN.md §5: "model/layer1.0.conv1/weight"), written by rank 0 with every
 * rank taking part in the creation; and read back, each tensor checked for
 * presence and shape. */
PetscErrorCode AckdParamsSave(const AckdParams *params, MPI_Comm comm, hid_t loc, const char *group);
PetscErrorCode AckdParamsLoad(AckdParams *params, hid_t loc, const char *group);
/* The entry named `name` (parameter or buffer), or an error naming it. */
PetscErrorCode AckdParamsFind(const AckdParams *params, const char *name, PetscBool *is_buffer,
                              const AckdParamEntry **entry);

/* ---------------------------------------------------------------- plan caches */

/* A layer's oneDNN plans, one per input shape and layout it has met (training batches, the last
 * partial batch, evaluation), the oldest replaced first when all ACKD_NN_PLANS are taken. */
typedef struct {
  PetscInt n, c, h, w, x_block, y_block, precision;
} AckdNNPlanKey;

typedef struct {
  AckdNNPlanKey key[ACKD_NN_PLANS];
  void         *plan[ACKD_NN_PLANS];
  PetscInt      count, next_evicted;
} AckdNNPlanCache;

/* ---------------------------------------------------------------- convolution */

typedef struct AckdConvPlan AckdConvPlan; /* oneDNN primitives for one input shape */

typedef struct {
  char            name[ACKD_NN_NAME_LEN];
  PetscInt        in_channels, out_channels, kernel, stride, padding, groups;
  PetscBool       has_bias;
  PetscInt        weight, bias; /* offsets in params */
  AckdParams     *params;
  AckdNNPlanCache plans; /* of AckdConvPlan */
} AckdConv;

/* groups = in_channels = out_channels makes a depthwise convolution. */
PetscErrorCode AckdConvSetUp(AckdConv *conv, AckdParams *params, const char *name, PetscInt in_channels,
                             PetscInt out_channels, PetscInt kernel, PetscInt stride, PetscInt padding, PetscInt groups,
                             PetscBool bias);
PetscErrorCode AckdConvOutputShape(const AckdConv *conv, const AckdTensor *x, AckdTensor *y);
PetscErrorCode AckdConvForward(AckdConv *conv, AckdEngine *engine, const AckdTensor *x, AckdTensor *y);
/* x must hold what the latest forward with this shape saw (as in any training
 * step): the backward reuses that forward's converted copy of x. */
PetscErrorCode AckdConvBackward(AckdConv *conv, AckdEngine *engine, const AckdTensor *x, const AckdTensor *dy,
                                AckdTensor *dx);
PetscErrorCode AckdConvDestroy(AckdConv *conv);

/* ---------------------------------------------------------------- batch norm */

typedef struct AckdBatchNormPlan AckdBatchNormPlan;

typedef struct {
  char            name[ACKD_NN_NAME_LEN];
  PetscInt        channels;
  double          eps, momentum; /* PyTorch: 1e-5, 0.1 */
  PetscBool       training;      /* batch statistics and running-stat updates, as module.train() */
  PetscInt        weight, bias, running_mean, running_var;
  AckdParams     *params;
  AckdNNPlanCache plans; /* of AckdBatchNormPlan */
  /* Synchronised batch norm: with a communicator (not MPI_COMM_NULL, borrowed
   * from the model), training mode normalises with the statistics of the
   * global batch, the samples of every rank of `comm`. */
  MPI_Comm comm;
  /* ackd's own training-mode kernels (batchnorm_train.c: synchronised, or a
   * channel-blocked layout): statistics of the latest training forward */
  double   *train_mean, *train_rstd, *train_sums, *train_coef;
  double    train_count; /* elements per channel, over all ranks */
  PetscInt  train_capacity;
  PetscBool train_ready;
} AckdBatchNorm;

PetscErrorCode AckdBatchNormSetUp(AckdBatchNorm *bn, AckdParams *params, const char *name, PetscInt channels);
/* Forward and backward accept an empty batch (x->n = 0): a rank without a
 * share of an uneven global batch still takes part in the reductions of
 * synchronised batch norm, and its parameter gradients are zero. */
PetscErrorCode AckdBatchNormForward(AckdBatchNorm *bn, AckdEngine *engine, const AckdTensor *x, AckdTensor *y);
PetscErrorCode AckdBatchNormBackward(AckdBatchNorm *bn, AckdEngine *engine, const AckdTensor *x, const AckdTensor *dy,
                                     AckdTensor *dx);
PetscErrorCode AckdBatchNormDestroy(AckdBatchNorm *bn);

/* ---------------------------------------------------------------- pooling */

typedef enum { ACKD_POOL_MAX, ACKD_POOL_AVG, ACKD_POOL_GLOBAL_AVG } AckdPoolKind;

typedef struct AckdPoolPlan AckdPoolPlan;

typedef struct {
  char            name[ACKD_NN_NAME_LEN];
  AckdPoolKind    kind;
  PetscInt        kernel, stride, padding; /* unused for global average */
  AckdNNPlanCache plans;                   /* of AckdPoolPlan */
} AckdPool;

/* Average pooling counts padded zeros, as PyTorch's default (count_include_pad). */
PetscErrorCode AckdPoolSetUp(AckdPool *pool, const char *name, AckdPoolKind kind, PetscInt kernel, PetscInt stride,
                             PetscInt padding);
PetscErrorCode AckdPoolOutputShape(const AckdPool *pool, const AckdTensor *x, AckdTensor *y);
PetscErrorCode AckdPoolForward(AckdPool *pool, AckdEngine *engine, const AckdTensor *x, AckdTensor *y);
/* Max pooling's backward uses the argmax workspace of the latest forward call
 * with this input shape. */
PetscErrorCode AckdPoolBackward(AckdPool *pool, AckdEngine *engine, const AckdTensor *x, const AckdTensor *dy,
                                AckdTensor *dx);
PetscErrorCode AckdPoolDestroy(AckdPool *pool);

/* ---------------------------------------------------------------- activations */

typedef enum { ACKD_ACT_RELU, ACKD_ACT_RELU6, ACKD_ACT_GELU } AckdActivationKind;

/* y may alias x in forward; backward reads x (the input), so keep it. GELU is
 * the exact (erf) form, PyTorch's default. Any layout (y and dx take x's). */
PetscErrorCode AckdActivationForward(AckdActivationKind kind, const AckdTensor *x, AckdTensor *y);
PetscErrorCode AckdActivationBackward(AckdActivationKind kind, const AckdTensor *x, const AckdTensor *dy,
                                      AckdTensor *dx);

/* ---------------------------------------------------------------- linear */

/* y = x Wᵀ + b over rows of `in_features` contiguous floats: (B, C, 1, 1),
 * a flattened (B, C, H, W), or tokens (B, 1, T, D). */
typedef struct {
  char        name[ACKD_NN_NAME_LEN];
  PetscInt    in_features, out_features;
  PetscBool   has_bias;
  PetscInt    weight, bias;
  AckdParams *params;
} AckdLinear;

PetscErrorCode AckdLinearSetUp(AckdLinear *lin, AckdParams *params, const char *name, PetscInt in_features,
                               PetscInt out_features, PetscBool bias);
PetscErrorCode AckdLinearOutputShape(const AckdLinear *lin, const AckdTensor *x, AckdTensor *y);
PetscErrorCode AckdLinearForward(AckdLinear *lin, AckdEngine *engine, const AckdTensor *x, AckdTensor *y);
PetscErrorCode AckdLinearBackward(AckdLinear *lin, AckdEngine *engine, const AckdTensor *x, const AckdTensor *dy,
                                  AckdTensor *dx);

/* ---------------------------------------------------------------- dropout */

/* Element i of sample s in step t is kept with probability 1 - p, decided by
 * Philox(seed, tag, t) at counter (sample_offset + s) * per_sample + i: the
 * mask depends on the global sample index, not on the rank that computes it. */
typedef struct {
  char      name[ACKD_NN_NAME_LEN];
  double    p;
  PetscBool training;
  uint64_t  seed;
  uint32_t  tag;           /* distinguishes dropout layers */
  PetscInt  step;          /* set by the training loop before each forward */
  PetscInt  sample_offset; /* global index of the batch's first sample */
  uint8_t  *mask;          /* of the latest forward */
  PetscInt  mask_size, mask_capacity;
} AckdDropout;

PetscErrorCode AckdDropoutSetUp(AckdDropout *drop, const char *name, double p, uint64_t seed, uint32_t tag);
PetscErrorCode AckdDropoutForward(AckdDropout *drop, const AckdTensor *x, AckdTensor *y);
PetscErrorCode AckdDropoutBackward(AckdDropout *drop, const AckdTensor *dy, AckdTensor *dx);
PetscErrorCode AckdDropoutDestroy(AckdDropout *drop);

/* ---------------------------------------------------------------- channel ops */

/* Any layouts: add needs the same one on both sides and writes it; split,
 * concat and shuffle write the layout already set in their output tensors. */
PetscErrorCode AckdAddForward(const AckdTensor *a, const AckdTensor *b, AckdTensor *y);
/* Channels [0, a->c) go to a, the rest to b; concat is its inverse. */
PetscErrorCode AckdChannelSplit(const AckdTensor *x, AckdTensor *a, AckdTensor *b);
PetscErrorCode AckdChannelConcat(const AckdTensor *a, const AckdTensor *b, AckdTensor *y);
/* ShuffleNet's shuffle: view (N, g, C/g, H, W), swap axes 1 and 2. Its
 * backward is the shuffle with C/g groups. */
PetscErrorCode AckdChannelShuffle(const AckdTensor *x, PetscInt groups, AckdTensor *y);

/* ---------------------------------------------------------------- layer norm */

typedef struct {
  char        name[ACKD_NN_NAME_LEN];
  PetscInt    features;
  double      eps;
  PetscInt    weight, bias;
  AckdParams *params;
  float      *mean, *rstd; /* per row, of the latest forward */
  PetscInt    rows_capacity;
} AckdLayerNorm;

PetscErrorCode AckdLayerNormSetUp(AckdLayerNorm *ln, AckdParams *params, const char *name, PetscInt features);
PetscErrorCode AckdLayerNormForward(AckdLayerNorm *ln, const AckdTensor *x, AckdTensor *y);
PetscErrorCode AckdLayerNormBackward(AckdLayerNorm *ln, const AckdTensor *x, const AckdTensor *dy, AckdTensor *dx);
PetscErrorCode AckdLayerNormDestroy(AckdLayerNorm *ln);

/* ---------------------------------------------------------------- attention */

/* Multi-head self-attention on token sequences (B, 1, T, D), as PyTorch's
 * nn.MultiheadAttention(D, heads, bias, batch_first=True)(x, x, x): packed
 * input projection in_proj_weight (3D, D), per-head softmax(Q Kᵀ / sqrt(D/H)) V,
 * output projection out_proj (D, D). `bias` switches both projections' biases
 * (SKA uses none). The attention plans of the latest forward are kept,
 * (B, H, T, T), for SKA's token weights. */
typedef struct {
  char        name[ACKD_NN_NAME_LEN];
  PetscInt    dim, heads;
  PetscBool   has_bias;
  PetscInt    in_weight, in_bias, out_weight, out_bias;
  AckdParams *params;
  float      *qkv, *attention, *context, *d_qkv, *d_context, *d_scores; /* of the latest forward / backward */
  PetscInt    tokens_capacity, plans_capacity, scores_capacity;
} AckdAttention;

PetscErrorCode AckdAttentionSetUp(AckdAttention *att, AckdParams *params, const char *name, PetscInt dim,
                                  PetscInt heads, PetscBool bias);
PetscErrorCode AckdAttentionForward(AckdAttention *att, const AckdTensor *x, AckdTensor *y);
PetscErrorCode AckdAttentionBackward(AckdAttention *att, const AckdTensor *x, const AckdTensor *dy, AckdTensor *dx);
PetscErrorCode AckdAttentionDestroy(AckdAttention *att);

/* ---------------------------------------------------------------- models */

typedef enum {
  ACKD_ARCH_RESNET18,
  ACKD_ARCH_RESNET34,
  ACKD_ARCH_MOBILENETV2,
  ACKD_ARCH_SHUFFLENETV2,
  ACKD_ARCH_SMALLCNN,
  ACKD_ARCH_MLP
} AckdArch;

extern const char *const AckdArchNames[]; /* "resnet18", ..., for options and files */

typedef struct {
  AckdArch  arch;
  PetscInt  in_channels, classes;
  double    width;       /* channel multiplier; 1 is the paper's network */
  PetscBool small_input; /* ResNet: 3x3 stride-1 stem without max pooling, for 32x32 inputs */
  PetscInt  image_size;  /* MLP only: input height = width */
  double    dropout;     /* MobileNetV2's classifier dropout (torchvision: 0.2); 0 disables */
} AckdModelConfig;

/* What every model returns (docs/DESIGN.md §2): views into the model's activation
 * memory, valid until its next forward call. */
typedef struct {
  AckdTensor tokens;    /* layer-4 tokens (B, 1, HW, C) */
  AckdTensor embedding; /* pooled embedding (B, D, 1, 1), D = 512 for the paper's networks */
  AckdTensor logits;    /* (B, classes, 1, 1) */
} AckdModelOutputs;

/* Reads the architecture options under `prefix` (so one name serves teacher
 * and student: -teacher_arch resnet34 -student_arch mobilenetv2): -PREFIXarch,
 * -PREFIXwidth, -PREFIXsmall_input, -PREFIXdropout. The values already in
 * `config` are the defaults; bands and classes come from the dataset. */
PetscErrorCode AckdModelConfigSetFromOptions(MPI_Comm comm, const char *prefix, AckdModelConfig *config);

typedef struct _p_AckdModel *AckdModel;

PetscErrorCode AckdModelCreate(MPI_Comm comm, AckdModel *model);
/* Builds the network: declares its layers and parameters (PyTorch's
 * state_dict names) and draws PyTorch's default initialisation from `seed`. */
PetscErrorCode AckdModelSetUp(AckdModel model, const AckdModelConfig *config, uint64_t seed);
/* Synchronised batch norm for data-parallel training: with a communicator of
 * more than one rank, every batch-norm layer in training mode normalises with
 * the mean and variance of the global batch (the local batches of all ranks,
 * reduced with MPI_Allreduce together with the sample count), updates the
 * running statistics with them (unbiased global variance, as PyTorch on the
 * full batch) and back-propagates through the global statistics; its weight
 * and bias gradients stay local sums, for the gradient allreduce to add up.
 * MPI_COMM_NULL: local statistics (the default). A one-rank communicator runs
 * the same synchronised kernels as P ranks do, so that a run on 1 rank and on
 * P ranks compute the same arithmetic, not merely the same mathematics.
 * Collective on `comm` (duplicated); every rank then runs every forward and
 * backward, with an empty local batch if it has no samples. Evaluation mode is
 * unaffected. */
PetscErrorCode AckdModelSetBatchNormComm(AckdModel model, MPI_Comm comm);
/* Batch norm and dropout in training (true) or evaluation mode, as module.train(). */
PetscErrorCode AckdModelSetTraining(AckdModel model, PetscBool training);
PetscErrorCode AckdModelGetParams(AckdModel model, AckdParams **params);
/* Dropout masks are drawn from (seed, step, global sample index): the training
 * loop names the step and the global index of the local batch's first sample. */
PetscErrorCode AckdModelSetStep(AckdModel model, PetscInt step, PetscInt sample_offset);
/* Activation memory is sized on the first call with a batch shape and reused;
 * a larger batch grows it once. */
PetscErrorCode AckdModelForward(AckdModel model, AckdEngine *engine, const AckdTensor *images,
                                AckdModelOutputs *outputs);
/* A forward in evaluation mode for its outputs alone (prediction, validation, galleries): a
 * layer's output shares memory with others once no later layer reads it, so the activation
 * memory holds the largest set alive at once instead of every layer's output. No backward may
 * follow it (refused); AckdModelForward lays the memory out again for one. */
PetscErrorCode AckdModelInfer(AckdModel model, AckdEngine *engine, const AckdTensor *images, AckdModelOutputs *outputs);
/* Gradients of the loss with respect to the outputs (any may be NULL: that
 * output does not enter the loss) -> every parameter gradient (overwritten;
 * zero for layers the loss does not reach, e.g. the classifier when only the
 * tokens enter the loss). */
PetscErrorCode AckdModelBackward(AckdModel model, AckdEngine *engine, const AckdTensor *d_logits,
                                 const AckdTensor *d_embedding, const AckdTensor *d_tokens);
/* Called during AckdModelBackward as soon as a layer's parameter gradients are
 * final, with the range [begin, end) of the gradient buffer they occupy; the
 * ranges arrive in decreasing order and cover every parameter once. This is
 * where an overlapped, bucketed allreduce starts its MPI_Iallreduce. */
typedef PetscErrorCode (*AckdGradientReady)(void *ctx, PetscInt begin, PetscInt end);
PetscErrorCode AckdModelSetGradientReady(AckdModel model, AckdGradientReady ready, void *ctx);
PetscErrorCode AckdModelDestroy(AckdModel *model);

/* ---------------------------------------------------------------- losses */

/* Mean cross-entropy over the batch, PyTorch's F.cross_entropy with
 * label_smoothing: the target is (1 - s) one-hot + s / K. logits (B, K, 1, 1);
 * writes the loss and, if d_logits is not NULL, its gradient. */
PetscErrorCode AckdCrossEntropy(const AckdTensor *logits, const PetscInt *labels, double smoothing, double *loss,
                                AckdTensor *d_logits);
/* The same against a distribution per sample, targets (B, K) (a scene's cover fractions):
 * PyTorch's F.cross_entropy with probability targets and label_smoothing, the target
 * (1 - s) t + s / K. */
PetscErrorCode AckdSoftCrossEntropy(const AckdTensor *logits, const float *targets, double smoothing, double *loss,
                                    AckdTensor *d_logits);
/* Mean binary cross-entropy with logits over all B x K entries (multi-label),
 * PyTorch's F.binary_cross_entropy_with_logits; targets in [0, 1]. */
PetscErrorCode AckdBCEWithLogits(const AckdTensor *logits, const float *targets, double *loss, AckdTensor *d_logits);

/* ---------------------------------------------------------------- optimizers */

typedef enum { ACKD_OPT_SGD, ACKD_OPT_ADAM, ACKD_OPT_ADAMW } AckdOptimizerKind;

extern const char *const AckdOptimizerNames[]; /* "sgd", "adam", "adamw" */

/* PyTorch's torch.optim semantics, applied to a model's whole parameter buffer
 * at once. SGD: momentum (dampening 0), Nesterov, L2 weight decay. Adam: L2
 * weight decay added to the gradient. AdamW: decoupled decay p *= 1 - lr wd. */
typedef struct {
  AckdOptimizerKind kind;
  double            momentum, weight_decay, beta1, beta2, eps;
  PetscBool         nesterov;
  PetscInt          steps; /* taken so far: Adam's bias correction */
  float            *m, *v; /* momentum / first moment, second moment */
  PetscInt          size;
  PetscLogEvent     event; /* NNOptimizerStep, for -log_view */
} AckdOptimizer;

/* Defaults as PyTorch: momentum 0, weight decay 0 (AdamW 0.01), betas (0.9, 0.999), eps 1e-8. */
PetscErrorCode AckdOptimizerSetUp(AckdOptimizer *opt, AckdOptimizerKind kind, const AckdParams *params);
PetscErrorCode AckdOptimizerStep(AckdOptimizer *opt, AckdParams *params, double lr);
PetscErrorCode AckdOptimizerDestroy(AckdOptimizer *opt);

/* Scales all gradients so that their global L2 norm is at most max_norm
 * (torch.nn.utils.clip_grad_norm_); returns the norm before clipping. */
PetscErrorCode AckdClipGradNorm(AckdParams *params, double max_norm, double *norm);

/* ---------------------------------------------------------------- schedules */

typedef enum {
  ACKD_SCHEDULE_CONSTANT,
  ACKD_SCHEDULE_MULTISTEP,
  ACKD_SCHEDULE_COSINE,
  ACKD_SCHEDULE_POLY
} AckdScheduleKind;

extern const char *const AckdScheduleNames[]; /* "constant", "multistep", "cosine", "poly" */

/* The learning rate at step t (an epoch or an iteration, as the caller
 * counts) of `total`, as torch.optim.lr_scheduler computes it in closed form:
 * MultiStepLR (gamma at each milestone), CosineAnnealingLR (T_max = total,
 * eta_min), PolynomialLR (power). A linear warm-up (LinearLR from
 * warmup_start_factor to 1 over warmup steps, chained) multiplies any of them. */
typedef struct {
  AckdScheduleKind kind;
  double           base_lr, gamma, eta_min, power, warmup_start_factor;
  PetscInt         total, warmup, nmilestones;
  PetscInt         milestones[16];
} AckdSchedule;

double AckdScheduleLR(const AckdSchedule *schedule, PetscInt t);

#endif
