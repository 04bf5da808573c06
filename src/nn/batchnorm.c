/* Batch normalisation on oneDNN, in PyTorch's two modes: training (batch
 * statistics, running statistics updated with momentum and the unbiased
 * variance) and evaluation (running statistics, as constants in backward). */
#include "nn/nn_private.h"

struct AckdBatchNormPlan {
  PetscInt         n, h, w, block;
  dnnl_primitive_t forward_train, forward_eval, backward_train, backward_eval;
  dnnl_memory_t    src, dst, scale, shift, mean, variance, diff_src, diff_dst, diff_scale, diff_shift;
  float           *batch_mean, *batch_variance; /* of the latest training forward, for its backward */
  PetscBool        have_batch_statistics;
};

PetscErrorCode AckdBatchNormSetUp(AckdBatchNorm *bn, AckdParams *params, const char *name, PetscInt channels)
{
  char pname[ACKD_NN_NAME_LEN + 16];

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(bn, sizeof *bn));
  PetscCall(PetscStrncpy(bn->name, name, sizeof bn->name));
  PetscCheck(channels > 0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE, "layer %s: channels must be positive", name);
  bn->channels = channels;
  bn->eps      = 1e-5;
  bn->momentum = 0.1;
  bn->training = PETSC_TRUE;
  bn->params   = params;
  bn->comm     = MPI_COMM_NULL;
  PetscCall(PetscSNPrintf(pname, sizeof pname, "%s.weight", name));
  PetscCall(AckdParamsAdd(params, pname, channels, 0, ACKD_INIT_ONES, &bn->weight));
  PetscCall(PetscSNPrintf(pname, sizeof pname, "%s.bias", name));
  PetscCall(AckdParamsAdd(params, pname, channels, 0, ACKD_INIT_ZEROS, &bn->bias));
  PetscCall(PetscSNPrintf(pname, sizeof pname, "%s.running_mean", name));
  PetscCall(AckdParamsAddBuffer(params, pname, channels, ACKD_INIT_ZEROS, &bn->running_mean));
  PetscCall(PetscSNPrintf(pname, sizeof pname, "%s.running_var", name));
  PetscCall(AckdParamsAddBuffer(params, pname, channels, ACKD_INIT_ONES, &bn->running_var));
  PetscFunctionReturn(0);
}

/* One forward/backward primitive pair; `global` selects the running statistics. */
static PetscErrorCode pair_create(AckdBatchNorm *bn, AckdEngine *engine, const dnnl_memory_desc_t *data,
                                  PetscBool global, dnnl_primitive_t *forward, dnnl_primitive_t *backward)
{
  dnnl_batch_normalization_desc_t desc;
  dnnl_primitive_desc_t           forward_pd = NULL;
  unsigned                        flags      = dnnl_use_scale | dnnl_use_shift | (global ? dnnl_use_global_stats : 0);
  const char *what = global ? "batch norm with running statistics" : "batch norm with batch statistics";

  PetscFunctionBeginUser;
  AckdCallDnnl(dnnl_batch_normalization_forward_desc_init(&desc, dnnl_forward_training, data, (float)bn->eps, flags),
               "layer %s: describing the forward %s", bn->name, what);
  PetscCall(AckdNNPrimitiveCreate(engine, &desc, NULL, forward, &forward_pd, bn->name, what));
  dnnl_status_t status =
      dnnl_batch_normalization_backward_desc_init(&desc, dnnl_backward, data, data, (float)bn->eps, flags);
  PetscErrorCode ierr = 0;
  if (status == dnnl_success) ierr = AckdNNPrimitiveCreate(engine, &desc, forward_pd, backward, NULL, bn->name, what);
  dnnl_primitive_desc_destroy(forward_pd);
  AckdCallDnnl(status, "layer %s: describing the backward %s", bn->name, what);
  PetscCall(ierr);
  PetscFunctionReturn(0);
}

static PetscErrorCode plan_create(AckdBatchNorm *bn, AckdEngine *engine, const AckdTensor *x, AckdBatchNormPlan **out)
{
  AckdBatchNormPlan *plan;
  dnnl_memory_desc_t data, vec;
  const char        *name = bn->name;

  PetscFunctionBeginUser;
  PetscCall(PetscCalloc1(1, &plan));
  plan->n     = x->n;
  plan->h     = x->h;
  plan->w     = x->w;
  plan->block = AckdNNBlock(x);
  PetscCall(PetscMalloc2(bn->channels, &plan->batch_mean, bn->channels, &plan->batch_variance));
  PetscCall(AckdNNDescTensor(&data, x, name));
  PetscCall(AckdNNDescVector(&vec, bn->channels, name));
  PetscCall(pair_create(bn, engine, &data, PETSC_FALSE, &plan->forward_train, &plan->backward_train));
  PetscCall(pair_create(bn, engine, &data, PETSC_TRUE, &plan->forward_eval, &plan->backward_eval));
  dnnl_memory_t *datas[] = {&plan->src, &plan->dst, &plan->diff_src, &plan->diff_dst};
  dnnl_memory_t *vecs[]  = {&plan->scale,    &plan->shift,      &plan->mean,
                            &plan->variance, &plan->diff_scale, &plan->diff_shift};
  for (size_t i = 0; i < sizeof datas / sizeof datas[0]; i++)
    PetscCall(AckdNNMemoryCreate(engine, &data, datas[i], name));
  for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++) PetscCall(AckdNNMemoryCreate(engine, &vec, vecs[i], name));
  *out = plan;
  PetscFunctionReturn(0);
}

static void plan_destroy(AckdBatchNormPlan **plan)
{
  AckdBatchNormPlan *p = *plan;
  if (!p) return;
  AckdNNPrimitiveDestroy(&p->forward_train);
  AckdNNPrimitiveDestroy(&p->forward_eval);
  AckdNNPrimitiveDestroy(&p->backward_train);
  AckdNNPrimitiveDestroy(&p->backward_eval);
  dnnl_memory_t *mems[] = {&p->src,      &p->dst,      &p->scale,    &p->shift,      &p->mean,
                           &p->variance, &p->diff_src, &p->diff_dst, &p->diff_scale, &p->diff_shift};
  for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++) AckdNNMemoryDestroy(mems[i]);
  PetscFree2(p->batch_mean, p->batch_variance);
  PetscFree(p);
  *plan = NULL;
}

static void destroy_cached(void *plan)
{
  AckdBatchNormPlan *p = plan;
  plan_destroy(&p);
}

static PetscErrorCode plan_get(AckdBatchNorm *bn, AckdEngine *engine, const AckdTensor *x, AckdBatchNormPlan **plan)
{
  PetscFunctionBeginUser;
  PetscCheck(x->c == bn->channels, PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ,
             "layer %s: input has %" PetscInt_FMT " channels, the layer expects %" PetscInt_FMT, bn->name, x->c,
             bn->channels);
  const AckdNNPlanKey key = {x->n, x->c, x->h, x->w, AckdNNBlock(x), AckdNNBlock(x), ACKD_PRECISION_FP32};
  /* float32 at every engine precision: statistics in bf16 would lose the small variances */
  *plan = AckdNNPlanCacheFind(&bn->plans, &key);
  if (*plan) PetscFunctionReturn(0);
  const PetscInt slot = AckdNNPlanCacheSlot(&bn->plans, &key, destroy_cached);
  PetscCall(plan_create(bn, engine, x, plan));
  bn->plans.plan[slot] = *plan;
  PetscFunctionReturn(0);
}

/* Points mean/variance at the batch statistics (training) or the running ones. */
static PetscErrorCode bind_statistics(AckdBatchNorm *bn, AckdBatchNormPlan *plan)
{
  float *buffers = bn->params->buffer_values;

  PetscFunctionBeginUser;
  PetscCall(AckdNNMemoryBind(plan->mean, bn->training ? plan->batch_mean : buffers + bn->running_mean, bn->name));
  PetscCall(
      AckdNNMemoryBind(plan->variance, bn->training ? plan->batch_variance : buffers + bn->running_var, bn->name));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdBatchNormForward(AckdBatchNorm *bn, AckdEngine *engine, const AckdTensor *x, AckdTensor *y)
{
  AckdBatchNormPlan *plan;
  float             *values = bn->params->values;

  PetscFunctionBeginUser;
  PetscCheck(x->c == bn->channels, PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ,
             "layer %s: input has %" PetscInt_FMT " channels, the layer expects %" PetscInt_FMT, bn->name, x->c,
             bn->channels);
  *y = AckdTensorLike(y->data, x);
  if (x->n == 0 && bn->comm == MPI_COMM_NULL) PetscFunctionReturn(0); /* local statistics of nothing: no update */
  if (AckdBatchNormOwnKernel(bn, x)) {
    PetscCall(AckdBatchNormTrainForward(bn, x, y, -1));
    PetscFunctionReturn(0);
  }
  PetscCall(plan_get(bn, engine, x, &plan));
  PetscCall(AckdNNMemoryBind(plan->src, x->data, bn->name));
  PetscCall(AckdNNMemoryBind(plan->dst, y->data, bn->name));
  PetscCall(AckdNNMemoryBind(plan->scale, values + bn->weight, bn->name));
  PetscCall(AckdNNMemoryBind(plan->shift, values + bn->bias, bn->name));
  PetscCall(bind_statistics(bn, plan));
  dnnl_exec_arg_t args[6] = {{DNNL_ARG_SRC, plan->src},     {DNNL_ARG_DST, plan->dst},
                             {DNNL_ARG_SCALE, plan->scale}, {DNNL_ARG_SHIFT, plan->shift},
                             {DNNL_ARG_MEAN, plan->mean},   {DNNL_ARG_VARIANCE, plan->variance}};
  PetscCall(AckdNNExecute(engine, bn->training ? plan->forward_train : plan->forward_eval, 6, args, bn->name,
                          "forward batch norm"));
  plan->have_batch_statistics = bn->training;
  if (bn->training) {
    /* PyTorch updates the running variance with the unbiased batch variance. */
    float   *rm = bn->params->buffer_values + bn->running_mean, *rv = bn->params->buffer_values + bn->running_var;
    PetscInt count = x->n * x->h * x->w;
    double   m = bn->momentum, unbias = count > 1 ? (double)count / (double)(count - 1) : 1.0;
    for (PetscInt c = 0; c < bn->channels; c++) {
      rm[c] = (float)((1.0 - m) * rm[c] + m * plan->batch_mean[c]);
      rv[c] = (float)((1.0 - m) * rv[c] + m * unbias * plan->batch_variance[c]);
    }
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdBatchNormBackward(AckdBatchNorm *bn, AckdEngine *engine, const AckdTensor *x, const AckdTensor *dy,
                                     AckdTensor *dx)
{
  AckdBatchNormPlan *plan;
  float             *values = bn->params->values, *grads = bn->params->grads;

  PetscFunctionBeginUser;
  PetscCheck(dx, PETSC_COMM_SELF, PETSC_ERR_ARG_NULL,
             "layer %s: batch norm's backward needs an input-gradient buffer (oneDNN computes both at once)", bn->name);
  *dx = AckdTensorLike(dx->data, x);
  if (x->n == 0 && bn->comm == MPI_COMM_NULL) {
    PetscCall(PetscArrayzero(grads + bn->weight, bn->channels));
    PetscCall(PetscArrayzero(grads + bn->bias, bn->channels));
    PetscFunctionReturn(0);
  }
  if (AckdBatchNormOwnKernel(bn, x)) {
    PetscCall(AckdBatchNormTrainBackward(bn, x, dy, dx, -1));
    PetscFunctionReturn(0);
  }
  PetscCall(plan_get(bn, engine, x, &plan));
  PetscCheck(!bn->training || plan->have_batch_statistics, PETSC_COMM_SELF, PETSC_ERR_ORDER,
             "layer %s: training-mode backward without a training-mode forward of this shape before it", bn->name);
  PetscCall(AckdNNMemoryBind(plan->src, x->data, bn->name));
  PetscCall(AckdNNMemoryBind(plan->diff_dst, dy->data, bn->name));
  PetscCall(AckdNNMemoryBind(plan->diff_src, dx->data, bn->name));
  PetscCall(AckdNNMemoryBind(plan->scale, values + bn->weight, bn->name));
  PetscCall(AckdNNMemoryBind(plan->shift, values + bn->bias, bn->name));
  PetscCall(AckdNNMemoryBind(plan->diff_scale, grads + bn->weight, bn->name));
  PetscCall(AckdNNMemoryBind(plan->diff_shift, grads + bn->bias, bn->name));
  PetscCall(bind_statistics(bn, plan));
  dnnl_exec_arg_t args[9] = {{DNNL_ARG_SRC, plan->src},
                             {DNNL_ARG_DIFF_DST, plan->diff_dst},
                             {DNNL_ARG_DIFF_SRC, plan->diff_src},
                             {DNNL_ARG_SCALE, plan->scale},
                             {DNNL_ARG_SHIFT, plan->shift},
                             {DNNL_ARG_MEAN, plan->mean},
                             {DNNL_ARG_VARIANCE, plan->variance},
                             {DNNL_ARG_DIFF_SCALE, plan->diff_scale},
                             {DNNL_ARG_DIFF_SHIFT, plan->diff_shift}};
  PetscCall(AckdNNExecute(engine, bn->training ? plan->backward_train : plan->backward_eval, 9, args, bn->name,
                          "backward batch norm"));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdBatchNormDestroy(AckdBatchNorm *bn)
{
  PetscFunctionBeginUser;
  AckdNNPlanCacheClear(&bn->plans, destroy_cached);
  PetscCall(PetscFree4(bn->train_mean, bn->train_rstd, bn->train_sums, bn->train_coef));
  bn->train_capacity = 0;
  PetscFunctionReturn(0);
}
