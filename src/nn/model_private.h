/* A model is a list of nodes in execution order, each a layer reading one or
 * two activation slots and writing one. The architecture files describe the
 * list (model_resnet.c, ...) through the builders (model_build.c); model.c runs
 * it forward and backward, through each kind's operations (model_nodes.c). */
#ifndef ACKD_NN_MODEL_PRIVATE_H
#define ACKD_NN_MODEL_PRIVATE_H

#include <ackd/nn.h>

typedef enum {
  ACKD_NODE_CONV,
  ACKD_NODE_BATCHNORM,
  ACKD_NODE_ACTIVATION,
  ACKD_NODE_POOL,
  ACKD_NODE_LINEAR,
  ACKD_NODE_DROPOUT,
  ACKD_NODE_ADD,     /* in[0] + in[1] */
  ACKD_NODE_CONCAT,  /* channels of in[0] then in[1] */
  ACKD_NODE_SLICE,   /* channels [start, start + count) of in[0] */
  ACKD_NODE_SHUFFLE, /* channel shuffle with `groups` */
  ACKD_NODE_TOKENS,  /* (B, C, H, W) -> (B, 1, HW, C) */
  ACKD_NODE_KINDS
} AckdNodeKind;

typedef struct {
  AckdNodeKind       kind;
  PetscInt           in[2], out; /* slots; in[1] = -1 for one input */
  void              *layer;      /* AckdConv, AckdBatchNorm, AckdPool, AckdLinear, AckdDropout */
  AckdActivationKind activation;
  PetscInt           start, count, groups;
  /* batch norm whose output feeds only the ReLU/ReLU6 node after it: in
   * training on ackd's kernels the two run as one (`fused`: this forward did) */
  PetscBool fusable, fused;
} AckdNode;

struct _p_AckdModel {
  MPI_Comm          comm;
  AckdModelConfig   config;
  AckdParams        params;
  AckdNode         *nodes;
  PetscInt          nnodes, cap_nodes;
  PetscInt          nslots; /* slot 0 is the input image batch */
  PetscInt          slot_tokens, slot_embedding, slot_logits;
  PetscBool         training, setup;
  MPI_Comm          bn_comm; /* synchronised batch norm (a duplicate), or MPI_COMM_NULL */
  uint64_t          seed;
  AckdGradientReady gradient_ready;
  void             *gradient_ready_ctx;
  /* activations and their gradients, one arena each, sized for `planned`; the gradients' is laid
   * out at the plan's first backward (grads_planned) */
  AckdTensor *values, *grads;
  PetscBool  *grad_written;                 /* during backward: the slot's gradient holds a first contribution */
  float      *arena, *grad_arena, *scratch; /* arenas: 64-byte aligned inside *_memory */
  float      *arena_memory, *grad_arena_memory;
  PetscInt   *slot_offset; /* node i's output slot in either arena */
  PetscInt    arena_size;  /* floats either arena needs for the plan */
  PetscInt    arena_capacity, grad_arena_capacity, scratch_capacity;
  PetscInt    planned[4]; /* input shape the slots are laid out for */
  PetscBool   have_plan, grads_planned;
  PetscBool   planned_inference; /* the plan's slots are shared by liveness (AckdModelInfer) */
};

/* What a kind of node does (model_nodes.c). Missing entries: the output has the input's shape and
 * layout (shape), the kind owns no parameters (params) or no layer object (destroy). */
typedef struct {
  const char *events[2]; /* -log_view's forward and backward events */
  /* y arrives as the input's shape and layout; block -1 gives up the blocked layouts */
  PetscErrorCode (*shape)(AckdModel, AckdEngine *, const AckdNode *, PetscBool blocked, const AckdTensor *x,
                          AckdTensor *y);
  PetscErrorCode (*forward)(AckdModel, AckdEngine *, const AckdNode *, const AckdTensor *x, AckdTensor *y);
  /* dx NULL: the input needs no gradient (the images); kinds that `deliver` write their inputs'
   * gradients channel by channel (model_nodes.c) and get dx NULL */
  PetscErrorCode (*backward)(AckdModel, AckdEngine *, const AckdNode *, const AckdTensor *x, const AckdTensor *dy,
                             AckdTensor *dx);
  void (*params)(const AckdNode *, PetscInt *begin, PetscInt *end); /* its range of the parameter buffer */
  PetscErrorCode (*destroy)(void *layer);
  PetscBool delivers;    /* add, concat, slice */
  PetscBool plain_input; /* reads plain rows (linear, dropout): a blocked input gives up blocking */
} AckdNodeOps;

const AckdNodeOps *AckdNodeOpsOf(AckdNodeKind kind);

/* Builders for the architecture files: each appends a node reading slot `in`
 * and returns the slot it writes. Channel counts are the builder's business. */
PetscErrorCode AckdModelAddConv(AckdModel m, const char *name, PetscInt in, PetscInt cin, PetscInt cout, PetscInt k,
                                PetscInt stride, PetscInt pad, PetscInt groups, PetscBool bias, PetscInt *out);
PetscErrorCode AckdModelAddBatchNorm(AckdModel m, const char *name, PetscInt in, PetscInt channels, PetscInt *out);
PetscErrorCode AckdModelAddActivation(AckdModel m, AckdActivationKind kind, PetscInt in, PetscInt *out);
PetscErrorCode AckdModelAddPool(AckdModel m, const char *name, AckdPoolKind kind, PetscInt in, PetscInt k,
                                PetscInt stride, PetscInt pad, PetscInt *out);
PetscErrorCode AckdModelAddLinear(AckdModel m, const char *name, PetscInt in, PetscInt fin, PetscInt fout,
                                  PetscBool bias, PetscInt *out);
PetscErrorCode AckdModelAddDropout(AckdModel m, const char *name, PetscInt in, double p, PetscInt *out);
PetscErrorCode AckdModelAddAdd(AckdModel m, PetscInt a, PetscInt b, PetscInt *out);
PetscErrorCode AckdModelAddConcat(AckdModel m, PetscInt a, PetscInt b, PetscInt *out);
PetscErrorCode AckdModelAddSlice(AckdModel m, PetscInt in, PetscInt start, PetscInt count, PetscInt *out);
PetscErrorCode AckdModelAddShuffle(AckdModel m, PetscInt in, PetscInt groups, PetscInt *out);
PetscErrorCode AckdModelAddTokens(AckdModel m, PetscInt in, PetscInt *out);

/* conv (no bias) -> batch norm [-> activation], the unit of every CNN here */
PetscErrorCode AckdModelAddConvBN(AckdModel m, const char *conv, const char *bn, PetscInt in, PetscInt cin,
                                  PetscInt cout, PetscInt k, PetscInt stride, PetscInt pad, PetscInt groups,
                                  PetscBool act, AckdActivationKind kind, PetscInt *out);

/* Channel count scaled by the width multiplier, at least 1. */
PetscInt AckdModelScaled(const AckdModel m, PetscInt channels);

PetscErrorCode AckdModelBuildResNet(AckdModel m);
PetscErrorCode AckdModelBuildMobileNetV2(AckdModel m);
PetscErrorCode AckdModelBuildShuffleNetV2(AckdModel m);
PetscErrorCode AckdModelBuildSmallCNN(AckdModel m);
PetscErrorCode AckdModelBuildMLP(AckdModel m);

#endif
