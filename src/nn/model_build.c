/* The builders the architecture files (model_resnet.c, ...) describe a network with: each
 * appends one node to the model's list. Running the list is model.c's business. */
#include "nn/model_private.h"
#include "nn/nn_private.h"

PetscInt AckdModelScaled(const AckdModel m, PetscInt channels)
{
  return PetscMax(1, (PetscInt)(channels * m->config.width + 0.5));
}

static PetscErrorCode add_node(AckdModel m, AckdNodeKind kind, PetscInt a, PetscInt b, void *layer, AckdNode **node)
{
  PetscFunctionBeginUser;
  if (m->nnodes == m->cap_nodes) {
    PetscInt  cap = m->cap_nodes ? 2 * m->cap_nodes : 64;
    AckdNode *grown;
    PetscCall(PetscCalloc1(cap, &grown));
    if (m->nnodes) PetscCall(PetscArraycpy(grown, m->nodes, m->nnodes));
    PetscCall(PetscFree(m->nodes));
    m->nodes     = grown;
    m->cap_nodes = cap;
  }
  AckdNode *n = &m->nodes[m->nnodes++];
  n->kind     = kind;
  n->in[0]    = a;
  n->in[1]    = b;
  n->out      = m->nslots++;
  n->layer    = layer;
  *node       = n;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdModelAddConv(AckdModel m, const char *name, PetscInt in, PetscInt cin, PetscInt cout, PetscInt k,
                                PetscInt stride, PetscInt pad, PetscInt groups, PetscBool bias, PetscInt *out)
{
  AckdConv *conv;
  AckdNode *node = NULL;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&conv));
  PetscCall(AckdConvSetUp(conv, &m->params, name, cin, cout, k, stride, pad, groups, bias));
  PetscCall(add_node(m, ACKD_NODE_CONV, in, -1, conv, &node));
  *out = node->out;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdModelAddBatchNorm(AckdModel m, const char *name, PetscInt in, PetscInt channels, PetscInt *out)
{
  AckdBatchNorm *bn;
  AckdNode      *node = NULL;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&bn));
  PetscCall(AckdBatchNormSetUp(bn, &m->params, name, channels));
  bn->comm = m->bn_comm; /* AckdModelSetBatchNormComm may come before or after AckdModelSetUp */
  PetscCall(add_node(m, ACKD_NODE_BATCHNORM, in, -1, bn, &node));
  *out = node->out;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdModelAddActivation(AckdModel m, AckdActivationKind kind, PetscInt in, PetscInt *out)
{
  AckdNode *node = NULL;

  PetscFunctionBeginUser;
  PetscCall(add_node(m, ACKD_NODE_ACTIVATION, in, -1, NULL, &node));
  node->activation = kind;
  *out             = node->out;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdModelAddPool(AckdModel m, const char *name, AckdPoolKind kind, PetscInt in, PetscInt k,
                                PetscInt stride, PetscInt pad, PetscInt *out)
{
  AckdPool *pool;
  AckdNode *node = NULL;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&pool));
  PetscCall(AckdPoolSetUp(pool, name, kind, k, stride, pad));
  PetscCall(add_node(m, ACKD_NODE_POOL, in, -1, pool, &node));
  *out = node->out;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdModelAddLinear(AckdModel m, const char *name, PetscInt in, PetscInt fin, PetscInt fout,
                                  PetscBool bias, PetscInt *out)
{
  AckdLinear *lin;
  AckdNode   *node = NULL;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&lin));
  PetscCall(AckdLinearSetUp(lin, &m->params, name, fin, fout, bias));
  PetscCall(add_node(m, ACKD_NODE_LINEAR, in, -1, lin, &node));
  *out = node->out;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdModelAddDropout(AckdModel m, const char *name, PetscInt in, double p, PetscInt *out)
{
  AckdDropout *drop;
  AckdNode    *node = NULL;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&drop));
  /* the node index tells this layer's masks from any other's */
  PetscCall(AckdDropoutSetUp(drop, name, p, m->seed, (uint32_t)m->nnodes));
  PetscCall(add_node(m, ACKD_NODE_DROPOUT, in, -1, drop, &node));
  *out = node->out;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdModelAddAdd(AckdModel m, PetscInt a, PetscInt b, PetscInt *out)
{
  AckdNode *node = NULL;

  PetscFunctionBeginUser;
  PetscCall(add_node(m, ACKD_NODE_ADD, a, b, NULL, &node));
  *out = node->out;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdModelAddConcat(AckdModel m, PetscInt a, PetscInt b, PetscInt *out)
{
  AckdNode *node = NULL;

  PetscFunctionBeginUser;
  PetscCall(add_node(m, ACKD_NODE_CONCAT, a, b, NULL, &node));
  *out = node->out;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdModelAddSlice(AckdModel m, PetscInt in, PetscInt start, PetscInt count, PetscInt *out)
{
  AckdNode *node = NULL;

  PetscFunctionBeginUser;
  PetscCall(add_node(m, ACKD_NODE_SLICE, in, -1, NULL, &node));
  node->start = start;
  node->count = count;
  *out        = node->out;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdModelAddShuffle(AckdModel m, PetscInt in, PetscInt groups, PetscInt *out)
{
  AckdNode *node = NULL;

  PetscFunctionBeginUser;
  PetscCall(add_node(m, ACKD_NODE_SHUFFLE, in, -1, NULL, &node));
  node->groups = groups;
  *out         = node->out;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdModelAddTokens(AckdModel m, PetscInt in, PetscInt *out)
{
  AckdNode *node = NULL;

  PetscFunctionBeginUser;
  PetscCall(add_node(m, ACKD_NODE_TOKENS, in, -1, NULL, &node));
  *out = node->out;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdModelAddConvBN(AckdModel m, const char *conv, const char *bn, PetscInt in, PetscInt cin,
                                  PetscInt cout, PetscInt k, PetscInt stride, PetscInt pad, PetscInt groups,
                                  PetscBool act, AckdActivationKind kind, PetscInt *out)
{
  PetscInt s = -1;

  PetscFunctionBeginUser;
  PetscCall(AckdModelAddConv(m, conv, in, cin, cout, k, stride, pad, groups, PETSC_FALSE, &s));
  PetscCall(AckdModelAddBatchNorm(m, bn, s, cout, &s));
  if (act) PetscCall(AckdModelAddActivation(m, kind, s, &s));
  *out = s;
  PetscFunctionReturn(0);
}
