/* What each kind of node does: its output shape and layout, its forward and backward, the part
 * of the parameter buffer it owns, and its teardown. model.c walks the node list and calls these
 * through AckdNodeOpsOf; a new kind is one table row and its functions here. */
#include "nn/model_private.h"
#include "nn/nn_private.h"

/* ---------------------------------------------------------------- shapes */

/* Convolutions choose the channel-blocked layout their fastest kernel writes; what follows keeps
 * it (batch norm, activations, pooling, residual adds, the channel plumbing), so activations
 * stay blocked from one convolution to the next and nothing converts them. */
static PetscErrorCode conv_shape(AckdModel m, AckdEngine *engine, const AckdNode *node, PetscBool blocked,
                                 const AckdTensor *x, AckdTensor *y)
{
  PetscFunctionBeginUser;
  PetscCall(AckdConvOutputShape(node->layer, x, y));
  y->block = 0;
  if (blocked) PetscCall(AckdConvPreferredBlock(node->layer, engine, x, &y->block));
  PetscFunctionReturn(0);
}

static PetscErrorCode pool_shape(AckdModel m, AckdEngine *engine, const AckdNode *node, PetscBool blocked,
                                 const AckdTensor *x, AckdTensor *y)
{
  PetscFunctionBeginUser;
  PetscCall(AckdPoolOutputShape(node->layer, x, y));
  if (((AckdPool *)node->layer)->kind == ACKD_POOL_GLOBAL_AVG) y->block = 0;
  PetscFunctionReturn(0);
}

static PetscErrorCode linear_shape(AckdModel m, AckdEngine *engine, const AckdNode *node, PetscBool blocked,
                                   const AckdTensor *x, AckdTensor *y)
{
  PetscFunctionBeginUser;
  if (AckdNNBlock(x) == 1) PetscCall(AckdLinearOutputShape(node->layer, x, y));
  PetscFunctionReturn(0);
}

static PetscErrorCode add_shape(AckdModel m, AckdEngine *engine, const AckdNode *node, PetscBool blocked,
                                const AckdTensor *x, AckdTensor *y)
{
  PetscFunctionBeginUser;
  /* a shortcut in another layout than the residual branch: give up blocking */
  if (AckdNNBlock(x) != AckdNNBlock(&m->values[node->in[1]])) y->block = -1;
  PetscFunctionReturn(0);
}

static PetscErrorCode concat_shape(AckdModel m, AckdEngine *engine, const AckdNode *node, PetscBool blocked,
                                   const AckdTensor *x, AckdTensor *y)
{
  PetscFunctionBeginUser;
  y->c = x->c + m->values[node->in[1]].c;
  PetscFunctionReturn(0);
}

static PetscErrorCode slice_shape(AckdModel m, AckdEngine *engine, const AckdNode *node, PetscBool blocked,
                                  const AckdTensor *x, AckdTensor *y)
{
  PetscFunctionBeginUser;
  PetscCheck(node->start + node->count <= x->c, m->comm, PETSC_ERR_PLIB, "channel slice beyond the input");
  y->c = node->count;
  PetscFunctionReturn(0);
}

static PetscErrorCode tokens_shape(AckdModel m, AckdEngine *engine, const AckdNode *node, PetscBool blocked,
                                   const AckdTensor *x, AckdTensor *y)
{
  PetscFunctionBeginUser;
  *y = AckdTensorView(NULL, x->n, 1, x->h * x->w, x->c);
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------- forward */

static PetscErrorCode conv_forward(AckdModel m, AckdEngine *engine, const AckdNode *node, const AckdTensor *x,
                                   AckdTensor *y)
{
  return AckdConvForward(node->layer, engine, x, y);
}

static PetscErrorCode batchnorm_forward(AckdModel m, AckdEngine *engine, const AckdNode *node, const AckdTensor *x,
                                        AckdTensor *y)
{
  return AckdBatchNormForward(node->layer, engine, x, y);
}

static PetscErrorCode activation_forward(AckdModel m, AckdEngine *engine, const AckdNode *node, const AckdTensor *x,
                                         AckdTensor *y)
{
  return AckdActivationForward(node->activation, x, y);
}

static PetscErrorCode pool_forward(AckdModel m, AckdEngine *engine, const AckdNode *node, const AckdTensor *x,
                                   AckdTensor *y)
{
  return AckdPoolForward(node->layer, engine, x, y);
}

static PetscErrorCode linear_forward(AckdModel m, AckdEngine *engine, const AckdNode *node, const AckdTensor *x,
                                     AckdTensor *y)
{
  return AckdLinearForward(node->layer, engine, x, y);
}

static PetscErrorCode dropout_forward(AckdModel m, AckdEngine *engine, const AckdNode *node, const AckdTensor *x,
                                      AckdTensor *y)
{
  return AckdDropoutForward(node->layer, x, y);
}

static PetscErrorCode add_forward(AckdModel m, AckdEngine *engine, const AckdNode *node, const AckdTensor *x,
                                  AckdTensor *y)
{
  return AckdAddForward(x, &m->values[node->in[1]], y);
}

static PetscErrorCode concat_forward(AckdModel m, AckdEngine *engine, const AckdNode *node, const AckdTensor *x,
                                     AckdTensor *y)
{
  return AckdChannelConcat(x, &m->values[node->in[1]], y);
}

static PetscErrorCode slice_forward(AckdModel m, AckdEngine *engine, const AckdNode *node, const AckdTensor *x,
                                    AckdTensor *y)
{
  AckdNNCopyChannels(x, node->start, y, 0, node->count, 1, 1, PETSC_FALSE);
  return 0;
}

static PetscErrorCode shuffle_forward(AckdModel m, AckdEngine *engine, const AckdNode *node, const AckdTensor *x,
                                      AckdTensor *y)
{
  return AckdChannelShuffle(x, node->groups, y);
}

/* (B, C, H, W) in any layout -> tokens (B, 1, HW, C), plain. */
static PetscErrorCode tokens_forward(AckdModel m, AckdEngine *engine, const AckdNode *node, const AckdTensor *x,
                                     AckdTensor *y)
{
  PetscInt hw = x->h * x->w, b = AckdNNBlock(x);
#pragma omp parallel for collapse(2) schedule(static)
  for (PetscInt n = 0; n < x->n; n++)
    for (PetscInt c = 0; c < x->c; c++) {
      const float *src = x->data + AckdNNOffset(x, n, c, 0);
      for (PetscInt p = 0; p < hw; p++) y->data[(n * hw + p) * x->c + c] = src[p * b];
    }
  return 0;
}

/* ---------------------------------------------------------------- backward */

static PetscErrorCode conv_backward(AckdModel m, AckdEngine *engine, const AckdNode *node, const AckdTensor *x,
                                    const AckdTensor *dy, AckdTensor *dx)
{
  return AckdConvBackward(node->layer, engine, x, dy, dx);
}

/* A fused batch norm (node->fused) back-propagates through the activation after it too: dy is
 * that activation's output gradient. */
static PetscErrorCode batchnorm_backward(AckdModel m, AckdEngine *engine, const AckdNode *node, const AckdTensor *x,
                                         const AckdTensor *dy, AckdTensor *dx)
{
  if (node->fused) {
    const AckdNode *act = node + 1;
    return AckdBatchNormTrainBackward(node->layer, x, dy, dx, act->activation);
  }
  return AckdBatchNormBackward(node->layer, engine, x, dy, dx);
}

static PetscErrorCode activation_backward(AckdModel m, AckdEngine *engine, const AckdNode *node, const AckdTensor *x,
                                          const AckdTensor *dy, AckdTensor *dx)
{
  return AckdActivationBackward(node->activation, x, dy, dx);
}

static PetscErrorCode pool_backward(AckdModel m, AckdEngine *engine, const AckdNode *node, const AckdTensor *x,
                                    const AckdTensor *dy, AckdTensor *dx)
{
  return AckdPoolBackward(node->layer, engine, x, dy, dx);
}

static PetscErrorCode linear_backward(AckdModel m, AckdEngine *engine, const AckdNode *node, const AckdTensor *x,
                                      const AckdTensor *dy, AckdTensor *dx)
{
  return AckdLinearBackward(node->layer, engine, x, dy, dx);
}

static PetscErrorCode dropout_backward(AckdModel m, AckdEngine *engine, const AckdNode *node, const AckdTensor *x,
                                       const AckdTensor *dy, AckdTensor *dx)
{
  return AckdDropoutBackward(node->layer, dy, dx);
}

static PetscErrorCode shuffle_backward(AckdModel m, AckdEngine *engine, const AckdNode *node, const AckdTensor *x,
                                       const AckdTensor *dy, AckdTensor *dx)
{
  return dx ? AckdChannelShuffle(dy, dy->c / node->groups, dx) : 0;
}

static PetscErrorCode tokens_backward(AckdModel m, AckdEngine *engine, const AckdNode *node, const AckdTensor *x,
                                      const AckdTensor *dy, AckdTensor *dx)
{
  if (!dx) return 0;
  PetscInt hw = dx->h * dx->w, b = AckdNNBlock(dx);
#pragma omp parallel for collapse(2) schedule(static)
  for (PetscInt n = 0; n < dx->n; n++)
    for (PetscInt c = 0; c < dx->c; c++) {
      float *dst = dx->data + AckdNNOffset(dx, n, c, 0);
      for (PetscInt p = 0; p < hw; p++) dst[p * b] = dy->data[(n * hw + p) * dx->c + c];
    }
  return 0;
}

/* The channel plumbing hands each input its channels of dy (dx is NULL for them): dy's channels
 * [dy_start, dy_start + count) into channels [slot_start, ...) of the gradient of `slot`, added
 * when another reader wrote it already. */
static PetscErrorCode deliver_channels(AckdModel m, PetscInt slot, const AckdTensor *dy, PetscInt dy_start,
                                       PetscInt slot_start, PetscInt count)
{
  PetscFunctionBeginUser;
  if (slot == 0) PetscFunctionReturn(0);
  AckdTensor *g = &m->grads[slot];
  if (!m->grad_written[slot] && count < g->c) PetscCall(PetscArrayzero(g->data, AckdTensorStorage(g)));
  AckdNNCopyChannels(dy, dy_start, g, slot_start, count, 1, 1, m->grad_written[slot]);
  m->grad_written[slot] = PETSC_TRUE;
  PetscFunctionReturn(0);
}

static PetscErrorCode add_backward(AckdModel m, AckdEngine *engine, const AckdNode *node, const AckdTensor *x,
                                   const AckdTensor *dy, AckdTensor *dx)
{
  PetscFunctionBeginUser;
  PetscCall(deliver_channels(m, node->in[0], dy, 0, 0, dy->c));
  PetscCall(deliver_channels(m, node->in[1], dy, 0, 0, dy->c));
  PetscFunctionReturn(0);
}

static PetscErrorCode concat_backward(AckdModel m, AckdEngine *engine, const AckdNode *node, const AckdTensor *x,
                                      const AckdTensor *dy, AckdTensor *dx)
{
  PetscFunctionBeginUser;
  PetscCall(deliver_channels(m, node->in[0], dy, 0, 0, x->c));
  PetscCall(deliver_channels(m, node->in[1], dy, x->c, 0, m->values[node->in[1]].c));
  PetscFunctionReturn(0);
}

static PetscErrorCode slice_backward(AckdModel m, AckdEngine *engine, const AckdNode *node, const AckdTensor *x,
                                     const AckdTensor *dy, AckdTensor *dx)
{
  return deliver_channels(m, node->in[0], dy, 0, node->start, node->count);
}

/* ---------------------------------------------------------------- parameters and teardown */

/* Weight, then bias: declared together, so contiguous up to alignment padding. */
static void conv_params(const AckdNode *node, PetscInt *begin, PetscInt *end)
{
  const AckdConv *c       = node->layer;
  PetscInt        weights = c->out_channels * (c->in_channels / c->groups) * c->kernel * c->kernel;
  *begin                  = c->weight;
  *end                    = c->has_bias ? c->bias + c->out_channels : c->weight + weights;
}

static void batchnorm_params(const AckdNode *node, PetscInt *begin, PetscInt *end)
{
  const AckdBatchNorm *b = node->layer;
  *begin                 = b->weight;
  *end                   = b->bias + b->channels;
}

static void linear_params(const AckdNode *node, PetscInt *begin, PetscInt *end)
{
  const AckdLinear *l = node->layer;
  *begin              = l->weight;
  *end                = l->has_bias ? l->bias + l->out_features : l->weight + l->out_features * l->in_features;
}

static PetscErrorCode conv_destroy(void *layer)
{
  return AckdConvDestroy(layer);
}

static PetscErrorCode batchnorm_destroy(void *layer)
{
  return AckdBatchNormDestroy(layer);
}

static PetscErrorCode pool_destroy(void *layer)
{
  return AckdPoolDestroy(layer);
}

static PetscErrorCode dropout_destroy(void *layer)
{
  return AckdDropoutDestroy(layer);
}

/* In AckdNodeKind's order. */
static const AckdNodeOps node_ops[ACKD_NODE_KINDS] = {
    {.events   = {"NNConvFwd", "NNConvBwd"},
     .shape    = conv_shape,
     .forward  = conv_forward,
     .backward = conv_backward,
     .params   = conv_params,
     .destroy  = conv_destroy},
    {.events   = {"NNBatchNormFwd", "NNBatchNormBwd"},
     .forward  = batchnorm_forward,
     .backward = batchnorm_backward,
     .params   = batchnorm_params,
     .destroy  = batchnorm_destroy},
    {.events = {"NNActivationFwd", "NNActivationBwd"}, .forward = activation_forward, .backward = activation_backward},
    {.events   = {"NNPoolFwd", "NNPoolBwd"},
     .shape    = pool_shape,
     .forward  = pool_forward,
     .backward = pool_backward,
     .destroy  = pool_destroy},
    {.events      = {"NNLinearFwd", "NNLinearBwd"},
     .shape       = linear_shape,
     .forward     = linear_forward,
     .backward    = linear_backward,
     .params      = linear_params,
     .plain_input = PETSC_TRUE},
    {.events      = {"NNDropoutFwd", "NNDropoutBwd"},
     .forward     = dropout_forward,
     .backward    = dropout_backward,
     .destroy     = dropout_destroy,
     .plain_input = PETSC_TRUE},
    {.events   = {"NNAddFwd", "NNAddBwd"},
     .shape    = add_shape,
     .forward  = add_forward,
     .backward = add_backward,
     .delivers = PETSC_TRUE},
    {.events   = {"NNConcatFwd", "NNConcatBwd"},
     .shape    = concat_shape,
     .forward  = concat_forward,
     .backward = concat_backward,
     .delivers = PETSC_TRUE},
    {.events   = {"NNSliceFwd", "NNSliceBwd"},
     .shape    = slice_shape,
     .forward  = slice_forward,
     .backward = slice_backward,
     .delivers = PETSC_TRUE},
    {.events = {"NNShuffleFwd", "NNShuffleBwd"}, .forward = shuffle_forward, .backward = shuffle_backward},
    {.events   = {"NNTokensFwd", "NNTokensBwd"},
     .shape    = tokens_shape,
     .forward  = tokens_forward,
     .backward = tokens_backward},
};

const AckdNodeOps *AckdNodeOpsOf(AckdNodeKind kind)
{
  return &node_ops[kind];
}
