/* 2-D convolution (grouped, depthwise, strided, padded) on oneDNN. The
 * primitives for an input shape are created once and reused; their memory
 * objects carry no buffers and are pointed at the caller's tensors and at the
 * model's parameter and gradient buffers at each call. */
#include "nn/nn_private.h"

struct AckdConvPlan {
  PetscInt         n, h, w, oh, ow;
  dnnl_primitive_t forward, backward_data, backward_weights;
  dnnl_memory_t    src, weights, bias, dst, diff_src, diff_weights, diff_bias, diff_dst;
};

PetscErrorCode AckdConvSetUp(AckdConv *conv, AckdParams *params, const char *name, PetscInt in_channels,
                             PetscInt out_channels, PetscInt kernel, PetscInt stride, PetscInt padding, PetscInt groups,
                             PetscBool bias)
{
  char pname[ACKD_NN_NAME_LEN + 8];

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(conv, sizeof *conv));
  PetscCall(PetscStrncpy(conv->name, name, sizeof conv->name));
  PetscCheck(in_channels > 0 && out_channels > 0 && kernel > 0 && stride > 0 && padding >= 0 && groups > 0,
             PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "layer %s: channels, kernel, stride and groups must be positive and padding non-negative", name);
  PetscCheck(in_channels % groups == 0 && out_channels % groups == 0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "layer %s: %" PetscInt_FMT " groups do not divide %" PetscInt_FMT " input and %" PetscInt_FMT
             " output channels; use a common divisor",
             name, groups, in_channels, out_channels);
  conv->in_channels  = in_channels;
  conv->out_channels = out_channels;
  conv->kernel       = kernel;
  conv->stride       = stride;
  conv->padding      = padding;
  conv->groups       = groups;
  conv->has_bias     = bias;
  conv->params       = params;
  PetscInt fan_in    = in_channels / groups * kernel * kernel;
  PetscCall(PetscSNPrintf(pname, sizeof pname, "%s.weight", name));
  PetscCall(AckdParamsAdd(params, pname, out_channels * fan_in, fan_in, ACKD_INIT_KAIMING_UNIFORM, &conv->weight));
  conv->bias = -1;
  if (bias) {
    PetscCall(PetscSNPrintf(pname, sizeof pname, "%s.bias", name));
    PetscCall(AckdParamsAdd(params, pname, out_channels, fan_in, ACKD_INIT_FAN_IN_UNIFORM, &conv->bias));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdConvOutputShape(const AckdConv *conv, const AckdTensor *x, AckdTensor *y)
{
  PetscFunctionBeginUser;
  PetscCheck(x->c == conv->in_channels, PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ,
             "layer %s: input has %" PetscInt_FMT " channels, the layer expects %" PetscInt_FMT, conv->name, x->c,
             conv->in_channels);
  PetscInt oh = AckdNNOutputExtent(x->h, conv->kernel, conv->stride, conv->padding);
  PetscInt ow = AckdNNOutputExtent(x->w, conv->kernel, conv->stride, conv->padding);
  PetscCheck(oh > 0 && ow > 0, PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ,
             "layer %s: input %" PetscInt_FMT "x%" PetscInt_FMT " is smaller than the %" PetscInt_FMT "x%" PetscInt_FMT
             " kernel; use larger images or the small-input stem",
             conv->name, x->h, x->w, conv->kernel, conv->kernel);
  y->n = x->n;
  y->c = conv->out_channels;
  y->h = oh;
  y->w = ow;
  PetscFunctionReturn(0);
}

static PetscErrorCode weights_desc(const AckdConv *conv, dnnl_memory_desc_t *md)
{
  PetscInt g = conv->groups, k = conv->kernel;

  PetscFunctionBeginUser;
  /* PyTorch's (O, I/g, kH, kW) is, byte for byte, oneDNN's goihw with O split
   * as (g, O/g): the gradient buffer receives PyTorch's layout directly. */
  if (g == 1) {
    dnnl_dims_t dims = {conv->out_channels, conv->in_channels, k, k};
    AckdCallDnnl(dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, dnnl_oihw), "layer %s: weight descriptor",
                 conv->name);
  } else {
    dnnl_dims_t dims = {g, conv->out_channels / g, conv->in_channels / g, k, k};
    AckdCallDnnl(dnnl_memory_desc_init_by_tag(md, 5, dims, dnnl_f32, dnnl_goihw), "layer %s: grouped weight descriptor",
                 conv->name);
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode plan_create(AckdConv *conv, AckdEngine *engine, const AckdTensor *x, const AckdTensor *y,
                                  AckdConvPlan **out)
{
  AckdConvPlan           *plan;
  dnnl_memory_desc_t      src, dst, wei, bias;
  dnnl_convolution_desc_t desc;
  dnnl_primitive_desc_t   forward_pd = NULL;
  const char             *name       = conv->name;
  dnnl_dims_t             strides    = {conv->stride, conv->stride};
  dnnl_dims_t             pad_l      = {conv->padding, conv->padding};
  dnnl_dims_t             pad_r      = {AckdNNRightPadding(x->h, y->h, conv->kernel, conv->stride, conv->padding),
                                        AckdNNRightPadding(x->w, y->w, conv->kernel, conv->stride, conv->padding)};

  PetscFunctionBeginUser;
  PetscCall(PetscCalloc1(1, &plan));
  plan->n  = x->n;
  plan->h  = x->h;
  plan->w  = x->w;
  plan->oh = y->h;
  plan->ow = y->w;
  PetscCall(AckdNNDescNCHW(&src, x->n, x->c, x->h, x->w, name));
  PetscCall(AckdNNDescNCHW(&dst, y->n, y->c, y->h, y->w, name));
  PetscCall(weights_desc(conv, &wei));
  PetscCall(AckdNNDescVector(&bias, conv->out_channels, name));
  const dnnl_memory_desc_t *bias_md = conv->has_bias ? &bias : NULL;

  AckdCallDnnl(dnnl_convolution_forward_desc_init(&desc, dnnl_forward_training, dnnl_convolution_direct, &src, &wei,
                                                  bias_md, &dst, strides, pad_l, pad_r),
               "layer %s: describing the forward convolution", name);
  PetscCall(AckdNNPrimitiveCreate(engine, &desc, NULL, &plan->forward, &forward_pd, name, "forward convolution"));
  AckdCallDnnl(
      dnnl_convolution_backward_data_desc_init(&desc, dnnl_convolution_direct, &src, &wei, &dst, strides, pad_l, pad_r),
      "layer %s: describing the input-gradient convolution", name);
  PetscErrorCode ierr =
      AckdNNPrimitiveCreate(engine, &desc, forward_pd, &plan->backward_data, NULL, name, "input-gradient convolution");
  if (!ierr) {
    AckdCallDnnl(dnnl_convolution_backward_weights_desc_init(&desc, dnnl_convolution_direct, &src, &wei, bias_md, &dst,
                                                             strides, pad_l, pad_r),
                 "layer %s: describing the weight-gradient convolution", name);
    ierr = AckdNNPrimitiveCreate(engine, &desc, forward_pd, &plan->backward_weights, NULL, name,
                                 "weight-gradient convolution");
  }
  dnnl_primitive_desc_destroy(forward_pd);
  PetscCall(ierr);

  PetscCall(AckdNNMemoryCreate(engine, &src, &plan->src, name));
  PetscCall(AckdNNMemoryCreate(engine, &src, &plan->diff_src, name));
  PetscCall(AckdNNMemoryCreate(engine, &dst, &plan->dst, name));
  PetscCall(AckdNNMemoryCreate(engine, &dst, &plan->diff_dst, name));
  PetscCall(AckdNNMemoryCreate(engine, &wei, &plan->weights, name));
  PetscCall(AckdNNMemoryCreate(engine, &wei, &plan->diff_weights, name));
  if (conv->has_bias) {
    PetscCall(AckdNNMemoryCreate(engine, &bias, &plan->bias, name));
    PetscCall(AckdNNMemoryCreate(engine, &bias, &plan->diff_bias, name));
  }
  *out = plan;
  PetscFunctionReturn(0);
}

static void plan_destroy(AckdConvPlan **plan)
{
  if (!*plan) return;
  AckdNNPrimitiveDestroy(&(*plan)->forward);
  AckdNNPrimitiveDestroy(&(*plan)->backward_data);
  AckdNNPrimitiveDestroy(&(*plan)->backward_weights);
  dnnl_memory_t *mems[] = {&(*plan)->src,      &(*plan)->weights,      &(*plan)->bias,      &(*plan)->dst,
                           &(*plan)->diff_src, &(*plan)->diff_weights, &(*plan)->diff_bias, &(*plan)->diff_dst};
  for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++) AckdNNMemoryDestroy(mems[i]);
  PetscFree(*plan);
  *plan = NULL;
}

static PetscErrorCode plan_get(AckdConv *conv, AckdEngine *engine, const AckdTensor *x, AckdConvPlan **plan)
{
  AckdTensor y;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < conv->nplans; i++) {
    AckdConvPlan *p = conv->plans[i];
    if (p->n == x->n && p->h == x->h && p->w == x->w) {
      *plan = p;
      PetscFunctionReturn(0);
    }
  }
  PetscCall(AckdConvOutputShape(conv, x, &y));
  PetscInt slot = AckdNNPlanSlot(&conv->nplans, &conv->next_evicted);
  plan_destroy(&conv->plans[slot]);
  PetscCall(plan_create(conv, engine, x, &y, &conv->plans[slot]));
  *plan = conv->plans[slot];
  PetscFunctionReturn(0);
}

PetscErrorCode AckdConvForward(AckdConv *conv, AckdEngine *engine, const AckdTensor *x, AckdTensor *y)
{
  AckdConvPlan *plan;
  float        *values = conv->params->values;

  PetscFunctionBeginUser;
  PetscCall(AckdConvOutputShape(conv, x, y));
  PetscCall(plan_get(conv, engine, x, &plan));
  PetscCall(AckdNNMemoryBind(plan->src, x->data, conv->name));
  PetscCall(AckdNNMemoryBind(plan->weights, values + conv->weight, conv->name));
  PetscCall(AckdNNMemoryBind(plan->dst, y->data, conv->name));
  dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, plan->src},
                             {DNNL_ARG_WEIGHTS, plan->weights},
                             {DNNL_ARG_DST, plan->dst},
                             {DNNL_ARG_BIAS, plan->bias}};
  if (conv->has_bias) PetscCall(AckdNNMemoryBind(plan->bias, values + conv->bias, conv->name));
  PetscCall(AckdNNExecute(engine, plan->forward, conv->has_bias ? 4 : 3, args, conv->name, "forward convolution"));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdConvBackward(AckdConv *conv, AckdEngine *engine, const AckdTensor *x, const AckdTensor *dy,
                                AckdTensor *dx)
{
  AckdConvPlan *plan;
  float        *values = conv->params->values, *grads = conv->params->grads;

  PetscFunctionBeginUser;
  PetscCall(plan_get(conv, engine, x, &plan));
  PetscCheck(dy->n == plan->n && dy->c == conv->out_channels && dy->h == plan->oh && dy->w == plan->ow, PETSC_COMM_SELF,
             PETSC_ERR_ARG_SIZ, "layer %s: output gradient shape does not match the output", conv->name);
  PetscCall(AckdNNMemoryBind(plan->src, x->data, conv->name));
  PetscCall(AckdNNMemoryBind(plan->diff_dst, dy->data, conv->name));
  PetscCall(AckdNNMemoryBind(plan->diff_weights, grads + conv->weight, conv->name));
  dnnl_exec_arg_t wargs[4] = {{DNNL_ARG_SRC, plan->src},
                              {DNNL_ARG_DIFF_DST, plan->diff_dst},
                              {DNNL_ARG_DIFF_WEIGHTS, plan->diff_weights},
                              {DNNL_ARG_DIFF_BIAS, plan->diff_bias}};
  if (conv->has_bias) PetscCall(AckdNNMemoryBind(plan->diff_bias, grads + conv->bias, conv->name));
  PetscCall(AckdNNExecute(engine, plan->backward_weights, conv->has_bias ? 4 : 3, wargs, conv->name,
                          "weight-gradient convolution"));
  if (dx) {
    *dx = AckdTensorView(dx->data, x->n, x->c, x->h, x->w);
    PetscCall(AckdNNMemoryBind(plan->weights, values + conv->weight, conv->name));
    PetscCall(AckdNNMemoryBind(plan->diff_src, dx->data, conv->name));
    dnnl_exec_arg_t dargs[3] = {
        {DNNL_ARG_DIFF_DST, plan->diff_dst}, {DNNL_ARG_WEIGHTS, plan->weights}, {DNNL_ARG_DIFF_SRC, plan->diff_src}};
    PetscCall(AckdNNExecute(engine, plan->backward_data, 3, dargs, conv->name, "input-gradient convolution"));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdConvDestroy(AckdConv *conv)
{
  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < conv->nplans; i++) plan_destroy(&conv->plans[i]);
  conv->nplans = 0;
  PetscFunctionReturn(0);
}
