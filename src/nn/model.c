/* Running a model: shape planning, one activation arena, forward in node
 * order, backward in reverse with gradient accumulation where a slot feeds
 * several nodes (residual shortcuts, ShuffleNet's split). */
#include "nn/model_private.h"
#include "nn/nn_private.h"
#include <string.h>

/* one forward and one backward event per node kind, named by AckdNodeOpsOf */
static AckdLogPackage nn_log = {.name = "ackd nn", .nevents = 2 * ACKD_NODE_KINDS};

static PetscLogEvent node_event(const AckdNode *node, int backward)
{
  return nn_log.events[2 * node->kind + backward];
}

const char *const AckdArchNames[] = {"resnet18", "resnet34", "mobilenetv2", "shufflenetv2", "smallcnn", "mlp"};

PetscErrorCode AckdModelCreate(MPI_Comm comm, AckdModel *model)
{
  PetscFunctionBeginUser;
  PetscCall(PetscNew(model));
  if (!nn_log.registered)
    for (int k = 0; k < ACKD_NODE_KINDS; k++)
      for (int d = 0; d < 2; d++) nn_log.event_names[2 * k + d] = AckdNodeOpsOf((AckdNodeKind)k)->events[d];
  PetscCall(AckdLogPackageRegister(&nn_log));
  (*model)->comm     = comm;
  (*model)->nslots   = 1;
  (*model)->training = PETSC_TRUE;
  (*model)->bn_comm  = MPI_COMM_NULL;
  PetscCall(AckdParamsCreate(&(*model)->params));
  PetscFunctionReturn(0);
}

/* Marks each batch norm whose output only the ReLU/ReLU6 right after it reads. */
static PetscErrorCode find_fusable(AckdModel m)
{
  PetscInt *readers;

  PetscFunctionBeginUser;
  PetscCall(PetscCalloc1(m->nslots, &readers));
  for (PetscInt i = 0; i < m->nnodes; i++)
    for (int k = 0; k < 2; k++)
      if (m->nodes[i].in[k] >= 0) readers[m->nodes[i].in[k]]++;
  readers[m->slot_tokens]++;
  readers[m->slot_embedding]++;
  readers[m->slot_logits]++;
  for (PetscInt i = 0; i + 1 < m->nnodes; i++) {
    AckdNode *bn = &m->nodes[i], *act = &m->nodes[i + 1];
    bn->fusable = bn->kind == ACKD_NODE_BATCHNORM && act->kind == ACKD_NODE_ACTIVATION && act->in[0] == bn->out &&
                  readers[bn->out] == 1 && (act->activation == ACKD_ACT_RELU || act->activation == ACKD_ACT_RELU6);
  }
  PetscCall(PetscFree(readers));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdModelSetUp(AckdModel m, const AckdModelConfig *config, uint64_t seed)
{
  PetscFunctionBeginUser;
  PetscCheck(!m->setup, m->comm, PETSC_ERR_ORDER, "AckdModelSetUp called twice");
  PetscCheck(config->in_channels > 0 && config->classes > 0, m->comm, PETSC_ERR_USER_INPUT,
             "model %s: input bands and classes must be positive", AckdArchNames[config->arch]);
  PetscCheck(config->width > 0.0, m->comm, PETSC_ERR_USER_INPUT, "model %s: the width multiplier must be positive",
             AckdArchNames[config->arch]);
  m->config = *config;
  m->seed   = seed;
  switch (config->arch) {
  case ACKD_ARCH_RESNET18:
  case ACKD_ARCH_RESNET34:
    PetscCall(AckdModelBuildResNet(m));
    break;
  case ACKD_ARCH_MOBILENETV2:
    PetscCall(AckdModelBuildMobileNetV2(m));
    break;
  case ACKD_ARCH_SHUFFLENETV2:
    PetscCall(AckdModelBuildShuffleNetV2(m));
    break;
  case ACKD_ARCH_SMALLCNN:
    PetscCall(AckdModelBuildSmallCNN(m));
    break;
  case ACKD_ARCH_MLP:
    PetscCall(AckdModelBuildMLP(m));
    break;
  }
  PetscCall(AckdParamsSetUp(&m->params));
  PetscCall(AckdParamsInitialize(&m->params, seed));
  PetscCall(PetscCalloc3(m->nslots, &m->values, m->nslots, &m->grads, m->nslots, &m->grad_written));
  PetscCall(PetscMalloc1(PetscMax(m->nnodes, 1), &m->slot_offset));
  m->setup = PETSC_TRUE;
  PetscCall(find_fusable(m));
  PetscCall(AckdModelSetTraining(m, PETSC_TRUE));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdModelSetTraining(AckdModel m, PetscBool training)
{
  PetscFunctionBeginUser;
  m->training = training;
  for (PetscInt i = 0; i < m->nnodes; i++) {
    if (m->nodes[i].kind == ACKD_NODE_BATCHNORM) ((AckdBatchNorm *)m->nodes[i].layer)->training = training;
    if (m->nodes[i].kind == ACKD_NODE_DROPOUT) ((AckdDropout *)m->nodes[i].layer)->training = training;
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdModelSetBatchNormComm(AckdModel m, MPI_Comm comm)
{
  PetscFunctionBeginUser;
  if (m->bn_comm != MPI_COMM_NULL) PetscCallMPI(MPI_Comm_free(&m->bn_comm));
  /* a private duplicate: the statistics' reductions never match another
   * module's collectives (the gradient buckets) by accident */
  if (comm != MPI_COMM_NULL) PetscCallMPI(MPI_Comm_dup(comm, &m->bn_comm));
  for (PetscInt i = 0; i < m->nnodes; i++)
    if (m->nodes[i].kind == ACKD_NODE_BATCHNORM) ((AckdBatchNorm *)m->nodes[i].layer)->comm = m->bn_comm;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdModelSetStep(AckdModel m, PetscInt step, PetscInt sample_offset)
{
  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < m->nnodes; i++)
    if (m->nodes[i].kind == ACKD_NODE_DROPOUT) {
      AckdDropout *drop   = m->nodes[i].layer;
      drop->step          = step;
      drop->sample_offset = sample_offset;
    }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdModelGetParams(AckdModel m, AckdParams **params)
{
  PetscFunctionBeginUser;
  *params = &m->params;
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------- shapes */

/* A node's output shape and layout (AckdNodeOps.shape). Global pooling, linear layers, dropout and
 * tokens work on plain NCHW. `blocked` false: plain everywhere (the fallback if layouts would
 * clash). */
static PetscErrorCode node_output_shape(AckdModel m, AckdEngine *engine, const AckdNode *node, PetscBool blocked,
                                        AckdTensor *y)
{
  const AckdTensor  *x   = &m->values[node->in[0]];
  const AckdNodeOps *ops = AckdNodeOpsOf(node->kind);

  PetscFunctionBeginUser;
  *y = AckdTensorLike(NULL, x);
  if (ops->shape) PetscCall(ops->shape(m, engine, node, blocked, x, y));
  if (ops->plain_input && AckdNNBlock(x) != 1) y->block = -1;
  y->data = NULL;
  PetscFunctionReturn(0);
}

static PetscErrorCode plan_layouts(AckdModel m, AckdEngine *engine, PetscBool blocked, PetscBool *clash)
{
  PetscFunctionBeginUser;
  *clash = PETSC_FALSE;
  for (PetscInt i = 0; i < m->nnodes && !*clash; i++) {
    AckdNode *node = &m->nodes[i];
    PetscCall(node_output_shape(m, engine, node, blocked, &m->values[node->out]));
    *clash = m->values[node->out].block < 0;
  }
  PetscFunctionReturn(0);
}

/* Each node's output slot in an arena laid out for the current plan (slots in
 * node order, each starting on a 64-byte line), and the floats the arena needs. */
static void arena_offsets(AckdModel m)
{
  PetscInt total = 0;
  for (PetscInt i = 0; i < m->nnodes; i++) {
    m->slot_offset[i] = total;
    total += (AckdTensorStorage(&m->values[m->nodes[i].out]) + 15) / 16 * 16;
  }
  m->arena_size = total;
}

/* The same for an inference plan: node i's output is alive from its node (from the one before
 * when that one is a batch norm that may write it, fused with this activation) to the last node
 * that reads it, the returned outputs to the end; each goes at the lowest offset that overlaps
 * no output alive at the same time (first fit, in node order). */
static PetscErrorCode arena_offsets_live(AckdModel m)
{
  PetscInt *first, *last, *size, *order, n = m->nnodes;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc4(n, &first, n, &last, n, &size, n, &order));
  for (PetscInt i = 0; i < n; i++) {
    const PetscInt slot = m->nodes[i].out;
    first[i]            = i > 0 && m->nodes[i - 1].fusable ? i - 1 : i;
    last[i]             = i;
    size[i]             = (AckdTensorStorage(&m->values[slot]) + 15) / 16 * 16;
    if (slot == m->slot_tokens || slot == m->slot_embedding || slot == m->slot_logits) last[i] = n;
    for (PetscInt j = i + 1; j < n; j++)
      if (m->nodes[j].in[0] == slot || m->nodes[j].in[1] == slot) last[i] = PetscMax(last[i], j);
  }
  m->arena_size = 0;
  for (PetscInt i = 0; i < n; i++) {
    /* the outputs already placed that are alive with this one, by offset */
    PetscInt nlive = 0, offset = 0;
    for (PetscInt k = 0; k < i; k++)
      if (last[k] >= first[i]) order[nlive++] = k;
    for (PetscInt a = 1; a < nlive; a++)
      for (PetscInt b = a; b > 0 && m->slot_offset[order[b - 1]] > m->slot_offset[order[b]]; b--) {
        const PetscInt t = order[b];
        order[b]         = order[b - 1];
        order[b - 1]     = t;
      }
    for (PetscInt a = 0; a < nlive; a++) {
      const PetscInt k = order[a];
      if (offset + size[i] <= m->slot_offset[k]) break;
      offset = PetscMax(offset, m->slot_offset[k] + size[k]);
    }
    m->slot_offset[i] = offset;
    m->arena_size     = PetscMax(m->arena_size, offset + size[i]);
  }
  PetscCall(PetscFree4(first, last, size, order));
  PetscFunctionReturn(0);
}

/* A blocked tensor's channel padding (the lanes past C in its last channel
 * block) must read zero: kernels run over whole blocks. Layers write every
 * real channel, so the padding is all that a previous plan's leftovers could
 * spoil; zeroing only it keeps a change of batch shape (training, then
 * validation at another batch) from clearing the whole arena each time. */
static void zero_channel_padding(const AckdTensor *t)
{
  const PetscInt b = AckdNNBlock(t), cpad = AckdNNPaddedChannels(t), hw = t->h * t->w;
  if (b <= 1 || cpad == t->c) return;
  const PetscInt nb = cpad / b, first = t->c - (nb - 1) * b;
  for (PetscInt s = 0; s < t->n; s++) {
    float *last = t->data + (s * nb + nb - 1) * hw * b;
    for (PetscInt p = 0; p < hw; p++)
      for (PetscInt j = first; j < b; j++) last[p * b + j] = 0.0f;
  }
}

/* An arena of at least `size` floats, 64-byte aligned inside *memory (16 floats
 * more, so each slot starts on a line, as oneDNN's vector kernels like); grown
 * only when a larger batch arrives, so steady-state training allocates nothing. */
static PetscErrorCode arena_reserve(float **memory, float **arena, PetscInt *capacity, PetscInt size)
{
  PetscFunctionBeginUser;
  if (size <= *capacity) PetscFunctionReturn(0);
  PetscCall(PetscFree(*memory));
  PetscCall(PetscMalloc1(size + 16, memory));
  *arena    = (float *)(((uintptr_t)*memory + 63) & ~(uintptr_t)63);
  *capacity = size;
  PetscFunctionReturn(0);
}

/* Lays every slot's value out in one arena for this input shape, every slot its own or, for
 * `inference`, slots shared by liveness. Their gradients get theirs at the plan's first backward
 * (plan_gradients): prediction and validation passes, often at a larger batch than training's,
 * never hold a gradient arena. */
static PetscErrorCode plan(AckdModel m, AckdEngine *engine, const AckdTensor *x, PetscBool inference)
{
  PetscBool clash;

  PetscFunctionBeginUser;
  if (m->have_plan && m->planned[0] == x->n && m->planned[1] == x->c && m->planned[2] == x->h &&
      m->planned[3] == x->w && m->planned_inference == inference)
    PetscFunctionReturn(0);
  PetscCheck(x->c == m->config.in_channels, m->comm, PETSC_ERR_USER_INPUT,
             "model %s: images have %" PetscInt_FMT " bands, the model was built for %" PetscInt_FMT,
             AckdArchNames[m->config.arch], x->c, m->config.in_channels);
  PetscCheck(AckdNNBlock(x) == 1, m->comm, PETSC_ERR_ARG_WRONG, "model %s: images must be plain NCHW",
             AckdArchNames[m->config.arch]);
  m->values[0] = *x;
  PetscCall(plan_layouts(m, engine, PETSC_TRUE, &clash));
  if (clash) PetscCall(plan_layouts(m, engine, PETSC_FALSE, &clash));
  PetscCheck(!clash, m->comm, PETSC_ERR_PLIB, "model %s: no consistent layout", AckdArchNames[m->config.arch]);
  PetscInt largest = AckdTensorSize(x);
  for (PetscInt i = 0; i < m->nnodes; i++) largest = PetscMax(largest, AckdTensorStorage(&m->values[m->nodes[i].out]));
  if (inference)
    PetscCall(arena_offsets_live(m));
  else
    arena_offsets(m);
  PetscCall(arena_reserve(&m->arena_memory, &m->arena, &m->arena_capacity, m->arena_size));
  if (largest > m->scratch_capacity) {
    PetscCall(PetscFree(m->scratch));
    PetscCall(PetscMalloc1(largest, &m->scratch));
    m->scratch_capacity = largest;
  }
  for (PetscInt i = 0; i < m->nnodes; i++) {
    AckdTensor *v = &m->values[m->nodes[i].out];
    v->data       = m->arena + m->slot_offset[i];
    if (!inference) zero_channel_padding(v); /* an inference pass zeroes it at each node (forward) */
  }
  m->planned[0]        = x->n;
  m->planned[1]        = x->c;
  m->planned[2]        = x->h;
  m->planned[3]        = x->w;
  m->have_plan         = PETSC_TRUE;
  m->planned_inference = inference;
  m->grads_planned     = PETSC_FALSE;
  PetscFunctionReturn(0);
}

/* The gradients' arena, laid out as the values' (same offsets and layouts). */
static PetscErrorCode plan_gradients(AckdModel m)
{
  PetscFunctionBeginUser;
  if (m->grads_planned) PetscFunctionReturn(0);
  PetscCall(arena_reserve(&m->grad_arena_memory, &m->grad_arena, &m->grad_arena_capacity, m->arena_size));
  const AckdTensor *x = &m->values[0];
  m->grads[0]         = AckdTensorView(NULL, x->n, x->c, x->h, x->w);
  for (PetscInt i = 0; i < m->nnodes; i++) {
    AckdTensor *g = &m->grads[m->nodes[i].out];
    *g            = AckdTensorLike(m->grad_arena + m->slot_offset[i], &m->values[m->nodes[i].out]);
    zero_channel_padding(g);
  }
  m->grads_planned = PETSC_TRUE;
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------- forward */

static PetscErrorCode forward(AckdModel m, AckdEngine *engine, const AckdTensor *images, PetscBool inference,
                              AckdModelOutputs *outputs)
{
  PetscFunctionBeginUser;
  PetscCheck(m->setup, m->comm, PETSC_ERR_ORDER, "AckdModelForward before AckdModelSetUp");
  PetscCall(plan(m, engine, images, inference));
  m->values[0] = *images;
  for (PetscInt i = 0; i < m->nnodes; i++) {
    AckdNode   *node = &m->nodes[i];
    AckdTensor *x = &m->values[node->in[0]], *y = &m->values[node->out];
    /* an empty local batch: only batch norm has work, its share of the reductions */
    if (images->n == 0 && node->kind != ACKD_NODE_BATCHNORM) continue;
    if (i > 0 && m->nodes[i - 1].fused) continue; /* this activation ran inside the batch norm */
    node->fused = node->fusable && AckdBatchNormOwnKernel(node->layer, x);
    /* a shared slot's channel padding holds what its previous tenant left (the layers seen so far
     * write their outputs' padding too; nothing promises every kernel does) */
    if (inference) zero_channel_padding(node->fused ? &m->values[m->nodes[i + 1].out] : y);
    PetscCall(PetscLogEventBegin(node_event(node, 0), 0, 0, 0, 0));
    if (node->fused) {
      AckdNode *act = &m->nodes[i + 1];
      PetscCall(AckdBatchNormTrainForward(node->layer, x, &m->values[act->out], act->activation));
    } else
      PetscCall(AckdNodeOpsOf(node->kind)->forward(m, engine, node, x, y));
    PetscCall(PetscLogEventEnd(node_event(node, 0), 0, 0, 0, 0));
  }
  outputs->tokens    = m->values[m->slot_tokens];
  outputs->embedding = m->values[m->slot_embedding];
  outputs->logits    = m->values[m->slot_logits];
  PetscFunctionReturn(0);
}

PetscErrorCode AckdModelForward(AckdModel m, AckdEngine *engine, const AckdTensor *images, AckdModelOutputs *outputs)
{
  PetscFunctionBeginUser;
  PetscCall(forward(m, engine, images, PETSC_FALSE, outputs));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdModelInfer(AckdModel m, AckdEngine *engine, const AckdTensor *images, AckdModelOutputs *outputs)
{
  PetscFunctionBeginUser;
  PetscCheck(!m->training, m->comm, PETSC_ERR_ORDER,
             "AckdModelInfer in training mode: AckdModelSetTraining(false) first");
  PetscCall(forward(m, engine, images, PETSC_TRUE, outputs));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------- backward */

/* Where a node writes the gradient of its input `slot`: straight into the
 * slot's gradient if nothing has yet, else into scratch, to be added. */
static AckdTensor *gradient_target(AckdModel m, PetscInt slot, AckdTensor *scratch)
{
  if (slot == 0) return NULL; /* no gradient with respect to the images */
  if (!m->grad_written[slot]) return &m->grads[slot];
  const AckdTensor *g = &m->grads[slot];
  *scratch            = AckdTensorLike(m->scratch, g);
  /* scratch's channel padding holds whatever an earlier use left */
  if (AckdTensorStorage(g) != AckdTensorSize(g)) memset(m->scratch, 0, (size_t)AckdTensorStorage(g) * sizeof(float));
  return scratch;
}

static PetscErrorCode gradient_commit(AckdModel m, PetscInt slot, AckdTensor *target)
{
  PetscFunctionBeginUser;
  if (!target) PetscFunctionReturn(0);
  if (m->grad_written[slot]) PetscCall(AckdTensorAccumulate(&m->grads[slot], target));
  m->grad_written[slot] = PETSC_TRUE;
  PetscFunctionReturn(0);
}

static PetscErrorCode seed_gradient(AckdModel m, PetscInt slot, const AckdTensor *d, const char *what)
{
  PetscFunctionBeginUser;
  if (!d) PetscFunctionReturn(0);
  PetscCheck(AckdTensorSize(d) == AckdTensorSize(&m->grads[slot]), m->comm, PETSC_ERR_ARG_SIZ,
             "model %s: gradient of the %s has %" PetscInt_FMT " elements, the %s %" PetscInt_FMT,
             AckdArchNames[m->config.arch], what, AckdTensorSize(d), what, AckdTensorSize(&m->grads[slot]));
  PetscCall(PetscArraycpy(m->grads[slot].data, d->data, AckdTensorSize(d)));
  m->grad_written[slot] = PETSC_TRUE;
  PetscFunctionReturn(0);
}

/* The part of the parameter buffer a node's layer owns; empty if none. */
static void node_param_range(const AckdNode *node, PetscInt *begin, PetscInt *end)
{
  const AckdNodeOps *ops = AckdNodeOpsOf(node->kind);

  *begin = *end = 0;
  if (ops->params) ops->params(node, begin, end);
}

PetscErrorCode AckdModelSetGradientReady(AckdModel m, AckdGradientReady ready, void *ctx)
{
  PetscFunctionBeginUser;
  m->gradient_ready     = ready;
  m->gradient_ready_ctx = ctx;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdModelBackward(AckdModel m, AckdEngine *engine, const AckdTensor *d_logits,
                                 const AckdTensor *d_embedding, const AckdTensor *d_tokens)
{
  PetscFunctionBeginUser;
  PetscCheck(m->have_plan, m->comm, PETSC_ERR_ORDER, "AckdModelBackward before AckdModelForward");
  PetscCheck(!m->planned_inference, m->comm, PETSC_ERR_ORDER,
             "AckdModelBackward after AckdModelInfer, whose layers' outputs are overwritten: run AckdModelForward");
  PetscCall(plan_gradients(m));
  PetscBool empty = m->planned[0] == 0;
  PetscCall(PetscArrayzero(m->grad_written, m->nslots));
  PetscCall(seed_gradient(m, m->slot_logits, d_logits, "logits"));
  PetscCall(seed_gradient(m, m->slot_embedding, d_embedding, "embedding"));
  PetscCall(seed_gradient(m, m->slot_tokens, d_tokens, "tokens"));
  for (PetscInt i = m->nnodes - 1; i >= 0; i--) {
    AckdNode *node = &m->nodes[i];
    if (i > 0 && m->nodes[i - 1].fused) continue; /* its batch norm back-propagates through it */
    /* a fused batch norm starts from its activation's output and gradient */
    PetscInt    out = node->fused ? m->nodes[i + 1].out : node->out;
    AckdTensor *x = &m->values[node->in[0]], *dy = &m->grads[out], scratch;
    PetscInt    begin, end;
    node_param_range(node, &begin, &end);
    if (!m->grad_written[out]) {
      /* the loss does not reach this layer: its gradient is zero, not last step's */
      if (end > begin) PetscCall(PetscArrayzero(m->params.grads + begin, end - begin));
      if (end > begin && m->gradient_ready) PetscCall(m->gradient_ready(m->gradient_ready_ctx, begin, end));
      continue;
    }
    /* nodes with one input write its gradient; add, concat and slice deliver channels */
    const AckdNodeOps *ops    = AckdNodeOpsOf(node->kind);
    PetscBool          single = !ops->delivers;
    PetscCall(PetscLogEventBegin(node_event(node, 1), 0, 0, 0, 0));
    AckdTensor *dx = single ? gradient_target(m, node->in[0], &scratch) : NULL;
    if (empty && single && node->kind != ACKD_NODE_BATCHNORM) {
      /* no samples: zero parameter gradients, and the same slots marked as
       * reached as on the ranks with samples (batch norm runs: it has
       * reductions to join; the channel plumbing runs on empty tensors) */
      if (end > begin) PetscCall(PetscArrayzero(m->params.grads + begin, end - begin));
    } else
      PetscCall(ops->backward(m, engine, node, x, dy, dx));
    if (dx) PetscCall(gradient_commit(m, node->in[0], dx));
    PetscCall(PetscLogEventEnd(node_event(node, 1), 0, 0, 0, 0));
    if (end > begin && m->gradient_ready) PetscCall(m->gradient_ready(m->gradient_ready_ctx, begin, end));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdModelDestroy(AckdModel *model)
{
  AckdModel m = *model;

  PetscFunctionBeginUser;
  if (!m) PetscFunctionReturn(0);
  for (PetscInt i = 0; i < m->nnodes; i++) {
    AckdNode          *node = &m->nodes[i];
    const AckdNodeOps *ops  = AckdNodeOpsOf(node->kind);
    if (ops->destroy) PetscCall(ops->destroy(node->layer));
    PetscCall(PetscFree(node->layer));
  }
  PetscCall(PetscFree(m->nodes));
  PetscCall(PetscFree3(m->values, m->grads, m->grad_written));
  PetscCall(PetscFree(m->arena_memory));
  PetscCall(PetscFree(m->grad_arena_memory));
  PetscCall(PetscFree(m->slot_offset));
  PetscCall(PetscFree(m->scratch));
  if (m->bn_comm != MPI_COMM_NULL) PetscCallMPI(MPI_Comm_free(&m->bn_comm));
  if (m->params.setup) PetscCall(AckdParamsDestroy(&m->params));
  PetscCall(PetscFree(*model));
  PetscFunctionReturn(0);
}
