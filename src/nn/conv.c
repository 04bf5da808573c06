/* 2-D convolution (grouped, depthwise, strided, padded) on oneDNN. The
 * primitives for an input shape are created once and reused. Each primitive
 * picks its own memory layouts (format "any"): oneDNN's fast kernels work on
 * channel-blocked layouts, so the plan converts the plain NCHW tensors and
 * the PyTorch-layout weights in and out through ports (AckdNNPort), with
 * buffers allocated once per shape. */
#include "nn/nn_private.h"
#include <string.h>

struct AckdConvPlan {
  PetscInt         n, h, w, oh, ow, x_block, y_block; /* the input shape and both tensors' layouts */
  dnnl_primitive_t forward, backward_data, backward_weights;
  /* forward: src, weights -> dst; input gradient: diff_dst, weights -> diff_src;
   * weight gradient: src, diff_dst -> diff_weights (and diff_bias, plain) */
  AckdNNPort    f_src, f_wei, f_dst, d_diff_dst, d_wei, d_diff_src, w_src, w_diff_dst, w_diff_wei;
  dnnl_memory_t bias, diff_bias;
  /* Backward reuses conversions already made when the layouts agree: the
   * forward's converted input and weights (both unchanged between a step's
   * forward and backward) and the weight gradient's converted output gradient. */
  PetscBool   src_shared, diff_dst_shared, weights_shared;
  const void *forward_src; /* x->data of the latest forward */
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
  PetscInt shape[4] = {out_channels, in_channels / groups, kernel, kernel};
  PetscCall(AckdParamsAddShaped(params, pname, 4, shape, fan_in, ACKD_INIT_KAIMING_UNIFORM, &conv->weight));
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

/* The arithmetic of this layer under the engine's precision. Depthwise and grouped convolutions
 * stay float32: they do a few products per value moved, so their time is memory traffic, which
 * bf16 operands add to (the conversion of each input and output gradient) and do not shorten
 * (MobileNetV2, 64 x 64, one EPYC core: its depthwise layers took as long in bf16, and their
 * weight gradients 35% longer). */
static AckdPrecision layer_precision(const AckdConv *conv, const AckdEngine *engine)
{
  return conv->groups == 1 ? engine->precision : ACKD_PRECISION_FP32;
}

/* Whether oneDNN has a kernel other than its reference one (slow) for this
 * operation descriptor; the primitive descriptor is returned when asked. */
static PetscBool fast_kernel(AckdEngine *engine, const void *op_desc, const_dnnl_primitive_desc_t hint,
                             dnnl_primitive_desc_t *pd_out)
{
  dnnl_primitive_desc_t pd;
  const char           *impl = NULL;
  if (dnnl_primitive_desc_create(&pd, op_desc, NULL, engine->backend->engine, hint) != dnnl_success) return PETSC_FALSE;
  PetscBool fast =
      dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl && !strstr(impl, "ref");
  if (pd_out && fast)
    *pd_out = pd;
  else
    dnnl_primitive_desc_destroy(pd);
  return fast;
}

/* The descriptors of the three convolutions. In float32 all are f32. In bf16 the operands the
 * kernels multiply (input, weights, output gradient) are bf16, and what they accumulate into
 * (output, input gradient, weight gradient) stays f32: the only roundings are of the operands. */
typedef struct {
  dnnl_memory_desc_t src, dst, wei, bias;        /* the tensors' own layouts */
  dnnl_memory_desc_t src_any, dst_any, wei_any;  /* forward's operands and output */
  dnnl_memory_desc_t diff_dst_any, diff_src_any; /* the input gradient's */
  dnnl_memory_desc_t diff_wei_any;               /* the weight gradient's output */
  dnnl_dims_t        strides, pad_l, pad_r;
} ConvDescs;

/* `like`'s dimensions in type `type`, the layout left to the primitive. */
static PetscErrorCode any_layout(const dnnl_memory_desc_t *like, dnnl_data_type_t type, dnnl_memory_desc_t *md,
                                 const char *layer, const char *what)
{
  PetscFunctionBeginUser;
  AckdCallDnnl(dnnl_memory_desc_init_by_tag(md, like->ndims, like->dims, type, dnnl_format_tag_any),
               "layer %s: %s descriptor", layer, what);
  PetscFunctionReturn(0);
}

static PetscErrorCode descs_init(const AckdConv *conv, AckdPrecision precision, const AckdTensor *x,
                                 const AckdTensor *y, ConvDescs *d)
{
  const char      *name    = conv->name;
  dnnl_data_type_t operand = precision == ACKD_PRECISION_BF16 ? dnnl_bf16 : dnnl_f32;

  PetscFunctionBeginUser;
  PetscCall(AckdNNDescTensor(&d->src, x, name));
  PetscCall(AckdNNDescTensor(&d->dst, y, name));
  PetscCall(weights_desc(conv, &d->wei));
  PetscCall(AckdNNDescVector(&d->bias, conv->out_channels, name));
  PetscCall(any_layout(&d->src, operand, &d->src_any, name, "input"));
  PetscCall(any_layout(&d->wei, operand, &d->wei_any, name, "weight"));
  PetscCall(any_layout(&d->dst, operand, &d->diff_dst_any, name, "output gradient"));
  PetscCall(any_layout(&d->dst, dnnl_f32, &d->dst_any, name, "output"));
  PetscCall(any_layout(&d->src, dnnl_f32, &d->diff_src_any, name, "input gradient"));
  PetscCall(any_layout(&d->wei, dnnl_f32, &d->diff_wei_any, name, "weight gradient"));
  d->strides[0] = d->strides[1] = conv->stride;
  d->pad_l[0] = d->pad_l[1] = conv->padding;
  d->pad_r[0]               = AckdNNRightPadding(x->h, y->h, conv->kernel, conv->stride, conv->padding);
  d->pad_r[1]               = AckdNNRightPadding(x->w, y->w, conv->kernel, conv->stride, conv->padding);
  PetscFunctionReturn(0);
}

/* Fast kernels for all three convolutions on the tensors' own layouts (input,
 * output and their gradients): then no activation is ever converted. */
static PetscBool pinned_supported(const AckdConv *conv, AckdEngine *engine, const ConvDescs *d)
{
  dnnl_convolution_desc_t   desc;
  dnnl_primitive_desc_t     forward_pd = NULL;
  const dnnl_memory_desc_t *bias_md    = conv->has_bias ? &d->bias : NULL;
  PetscBool                 ok         = PETSC_FALSE;

  if (dnnl_convolution_forward_desc_init(&desc, dnnl_forward_training, dnnl_convolution_direct, &d->src, &d->wei_any,
                                         bias_md, &d->dst, d->strides, d->pad_l, d->pad_r) != dnnl_success ||
      !fast_kernel(engine, &desc, NULL, &forward_pd))
    return PETSC_FALSE;
  if (dnnl_convolution_backward_data_desc_init(&desc, dnnl_convolution_direct, &d->src, &d->wei_any, &d->dst,
                                               d->strides, d->pad_l, d->pad_r) == dnnl_success &&
      fast_kernel(engine, &desc, forward_pd, NULL) &&
      dnnl_convolution_backward_weights_desc_init(&desc, dnnl_convolution_direct, &d->src, &d->wei_any, bias_md,
                                                  &d->dst, d->strides, d->pad_l, d->pad_r) == dnnl_success &&
      fast_kernel(engine, &desc, forward_pd, NULL))
    ok = PETSC_TRUE;
  dnnl_primitive_desc_destroy(forward_pd);
  return ok;
}

PetscErrorCode AckdConvPreferredBlock(AckdConv *conv, AckdEngine *engine, const AckdTensor *x, PetscInt *block)
{
  AckdTensor              y = *x;
  ConvDescs               d;
  dnnl_convolution_desc_t desc;
  dnnl_primitive_desc_t   pd = NULL;

  PetscFunctionBeginUser;
  PetscCall(AckdConvOutputShape(conv, x, &y));
  y.block                       = 0;
  const AckdPrecision precision = layer_precision(conv, engine);
  PetscCall(descs_init(conv, precision, x, &y, &d));
  *block = 0;
  /* the input as it is (in bf16 converted anyway), the output as the fastest forward kernel wants it */
  const dnnl_memory_desc_t *src = precision == ACKD_PRECISION_FP32 ? &d.src : &d.src_any;
  if (dnnl_convolution_forward_desc_init(&desc, dnnl_forward_training, dnnl_convolution_direct, src, &d.wei_any,
                                         conv->has_bias ? &d.bias : NULL, &d.dst_any, d.strides, d.pad_l,
                                         d.pad_r) == dnnl_success &&
      fast_kernel(engine, &desc, NULL, &pd)) {
    *block = PetscMax(0, AckdNNBlockOf(dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0)));
    dnnl_primitive_desc_destroy(pd);
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode plan_create(AckdConv *conv, AckdEngine *engine, const AckdTensor *x, const AckdTensor *y,
                                  AckdConvPlan **out)
{
  AckdConvPlan           *plan;
  ConvDescs               d;
  dnnl_convolution_desc_t desc;
  dnnl_primitive_desc_t   forward_pd = NULL, data_pd = NULL, weights_pd = NULL;
  const char             *name = conv->name;

  PetscFunctionBeginUser;
  PetscCall(PetscCalloc1(1, &plan));
  plan->n                       = x->n;
  plan->h                       = x->h;
  plan->w                       = x->w;
  plan->oh                      = y->h;
  plan->ow                      = y->w;
  plan->x_block                 = AckdNNBlock(x);
  plan->y_block                 = AckdNNBlock(y);
  const AckdPrecision precision = layer_precision(conv, engine);
  PetscCall(descs_init(conv, precision, x, y, &d));
  const dnnl_memory_desc_t *bias_md = conv->has_bias ? &d.bias : NULL;
  dnnl_memory_desc_t       *src = &d.src, *dst = &d.dst, *wei = &d.wei;
  dnnl_memory_desc_t       *src_any = &d.src_any, *dst_any = &d.dst_any, *wei_any = &d.wei_any;
  dnnl_memory_desc_t       *diff_src_any = &d.diff_src_any, *diff_dst_any = &d.diff_dst_any;
  /* pinned only between blocked layouts: on plain NCHW the kernels oneDNN 2.6
   * offers for pinned layouts gave wrong evaluation-mode gradients (ResNet-18
   * width 0.25, 16x16, batch 12: 2e-3 against PyTorch), where choosing
   * layouts and converting, as before, is right; and only in float32, where
   * the tensors' own type is the operands' */
  if (precision == ACKD_PRECISION_FP32 && AckdNNBlock(x) > 1 && AckdNNBlock(y) > 1 &&
      pinned_supported(conv, engine, &d)) {
    src_any = diff_src_any = &d.src;
    dst_any = diff_dst_any = &d.dst;
  }

  PetscErrorCode ierr = 0;
  AckdCallDnnl(dnnl_convolution_forward_desc_init(&desc, dnnl_forward_training, dnnl_convolution_direct, src_any,
                                                  wei_any, bias_md, dst_any, d.strides, d.pad_l, d.pad_r),
               "layer %s: describing the forward convolution", name);
  PetscCall(AckdNNPrimitiveCreate(engine, &desc, NULL, &plan->forward, &forward_pd, name, "forward convolution"));
  dnnl_status_t status = dnnl_convolution_backward_data_desc_init(&desc, dnnl_convolution_direct, diff_src_any, wei_any,
                                                                  diff_dst_any, d.strides, d.pad_l, d.pad_r);
  if (status == dnnl_success)
    ierr = AckdNNPrimitiveCreate(engine, &desc, forward_pd, &plan->backward_data, &data_pd, name,
                                 "input-gradient convolution");
  if (status == dnnl_success && !ierr) {
    status = dnnl_convolution_backward_weights_desc_init(&desc, dnnl_convolution_direct, src_any, &d.diff_wei_any,
                                                         bias_md, diff_dst_any, d.strides, d.pad_l, d.pad_r);
    if (status == dnnl_success)
      ierr = AckdNNPrimitiveCreate(engine, &desc, forward_pd, &plan->backward_weights, &weights_pd, name,
                                   "weight-gradient convolution");
  }
  if (status == dnnl_success && !ierr) {
    ierr = AckdNNPortCreate(engine, src, forward_pd, dnnl_query_src_md, PETSC_FALSE, &plan->f_src, name);
    if (!ierr) ierr = AckdNNPortCreate(engine, wei, forward_pd, dnnl_query_weights_md, PETSC_FALSE, &plan->f_wei, name);
    if (!ierr) ierr = AckdNNPortCreate(engine, dst, forward_pd, dnnl_query_dst_md, PETSC_TRUE, &plan->f_dst, name);
    if (!ierr)
      ierr = AckdNNPortCreate(engine, dst, data_pd, dnnl_query_diff_dst_md, PETSC_FALSE, &plan->d_diff_dst, name);
    if (!ierr) ierr = AckdNNPortCreate(engine, wei, data_pd, dnnl_query_weights_md, PETSC_FALSE, &plan->d_wei, name);
    if (!ierr)
      ierr = AckdNNPortCreate(engine, src, data_pd, dnnl_query_diff_src_md, PETSC_TRUE, &plan->d_diff_src, name);
    if (!ierr) ierr = AckdNNPortCreate(engine, src, weights_pd, dnnl_query_src_md, PETSC_FALSE, &plan->w_src, name);
    if (!ierr)
      ierr = AckdNNPortCreate(engine, dst, weights_pd, dnnl_query_diff_dst_md, PETSC_FALSE, &plan->w_diff_dst, name);
    if (!ierr)
      ierr = AckdNNPortCreate(engine, wei, weights_pd, dnnl_query_diff_weights_md, PETSC_TRUE, &plan->w_diff_wei, name);
  }
  if (!ierr && status == dnnl_success) {
    plan->src_shared = plan->f_src.inner && plan->w_src.inner &&
                       dnnl_memory_desc_equal(dnnl_primitive_desc_query_md(forward_pd, dnnl_query_src_md, 0),
                                              dnnl_primitive_desc_query_md(weights_pd, dnnl_query_src_md, 0));
    plan->weights_shared = plan->f_wei.inner && plan->d_wei.inner &&
                           dnnl_memory_desc_equal(dnnl_primitive_desc_query_md(forward_pd, dnnl_query_weights_md, 0),
                                                  dnnl_primitive_desc_query_md(data_pd, dnnl_query_weights_md, 0));
    plan->diff_dst_shared = plan->w_diff_dst.inner && plan->d_diff_dst.inner &&
                            dnnl_memory_desc_equal(dnnl_primitive_desc_query_md(weights_pd, dnnl_query_diff_dst_md, 0),
                                                   dnnl_primitive_desc_query_md(data_pd, dnnl_query_diff_dst_md, 0));
  }
  if (forward_pd) dnnl_primitive_desc_destroy(forward_pd);
  if (data_pd) dnnl_primitive_desc_destroy(data_pd);
  if (weights_pd) dnnl_primitive_desc_destroy(weights_pd);
  AckdCallDnnl(status, "layer %s: describing the backward convolutions", name);
  PetscCall(ierr);
  if (conv->has_bias) {
    PetscCall(AckdNNMemoryCreate(engine, &d.bias, &plan->bias, name));
    PetscCall(AckdNNMemoryCreate(engine, &d.bias, &plan->diff_bias, name));
  }
  *out = plan;
  PetscFunctionReturn(0);
}

static void plan_destroy(AckdConvPlan **plan)
{
  AckdConvPlan *p = *plan;
  if (!p) return;
  AckdNNPrimitiveDestroy(&p->forward);
  AckdNNPrimitiveDestroy(&p->backward_data);
  AckdNNPrimitiveDestroy(&p->backward_weights);
  AckdNNPort *ports[] = {&p->f_src,      &p->f_wei, &p->f_dst,      &p->d_diff_dst, &p->d_wei,
                         &p->d_diff_src, &p->w_src, &p->w_diff_dst, &p->w_diff_wei};
  for (size_t i = 0; i < sizeof ports / sizeof ports[0]; i++) AckdNNPortDestroy(ports[i]);
  AckdNNMemoryDestroy(&p->bias);
  AckdNNMemoryDestroy(&p->diff_bias);
  PetscFree(p);
  *plan = NULL;
}

static void destroy_cached(void *plan)
{
  AckdConvPlan *p = plan;
  plan_destroy(&p);
}

static PetscErrorCode plan_get(AckdConv *conv, AckdEngine *engine, const AckdTensor *x, PetscInt y_block,
                               AckdConvPlan **plan)
{
  AckdTensor y = *x;

  const AckdNNPlanKey key = {
      x->n, x->c, x->h, x->w, AckdNNBlock(x), PetscMax(1, y_block), layer_precision(conv, engine)};

  PetscFunctionBeginUser;
  *plan = AckdNNPlanCacheFind(&conv->plans, &key);
  if (*plan) PetscFunctionReturn(0);
  PetscCall(AckdConvOutputShape(conv, x, &y));
  y.block             = y_block;
  const PetscInt slot = AckdNNPlanCacheSlot(&conv->plans, &key, destroy_cached);
  PetscCall(plan_create(conv, engine, x, &y, plan));
  conv->plans.plan[slot] = *plan;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdConvForward(AckdConv *conv, AckdEngine *engine, const AckdTensor *x, AckdTensor *y)
{
  AckdConvPlan   *plan;
  float          *values = conv->params->values;
  dnnl_exec_arg_t args[4];

  PetscFunctionBeginUser;
  PetscCall(AckdConvOutputShape(conv, x, y));
  PetscCall(plan_get(conv, engine, x, y->block, &plan));
  args[0].arg = DNNL_ARG_SRC;
  args[1].arg = DNNL_ARG_WEIGHTS;
  args[2].arg = DNNL_ARG_DST;
  args[3].arg = DNNL_ARG_BIAS;
  PetscCall(AckdNNPortBind(engine, &plan->f_src, x->data, &args[0].memory, conv->name));
  plan->forward_src = x->data;
  PetscCall(AckdNNPortBind(engine, &plan->f_wei, values + conv->weight, &args[1].memory, conv->name));
  PetscCall(AckdNNPortBind(engine, &plan->f_dst, y->data, &args[2].memory, conv->name));
  args[3].memory = plan->bias;
  if (conv->has_bias) PetscCall(AckdNNMemoryBind(plan->bias, values + conv->bias, conv->name));
  PetscCall(AckdNNExecute(engine, plan->forward, conv->has_bias ? 4 : 3, args, conv->name, "forward convolution"));
  PetscCall(AckdNNPortFinish(engine, &plan->f_dst, conv->name));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdConvBackward(AckdConv *conv, AckdEngine *engine, const AckdTensor *x, const AckdTensor *dy,
                                AckdTensor *dx)
{
  AckdConvPlan   *plan;
  float          *values = conv->params->values, *grads = conv->params->grads;
  dnnl_exec_arg_t wargs[4], dargs[3];

  PetscFunctionBeginUser;
  PetscCall(plan_get(conv, engine, x, dy->block, &plan));
  PetscCheck(dy->n == plan->n && dy->c == conv->out_channels && dy->h == plan->oh && dy->w == plan->ow, PETSC_COMM_SELF,
             PETSC_ERR_ARG_SIZ, "layer %s: output gradient shape does not match the output", conv->name);
  wargs[0].arg = DNNL_ARG_SRC;
  wargs[1].arg = DNNL_ARG_DIFF_DST;
  wargs[2].arg = DNNL_ARG_DIFF_WEIGHTS;
  wargs[3].arg = DNNL_ARG_DIFF_BIAS;
  if (plan->src_shared && plan->forward_src == x->data)
    wargs[0].memory = plan->f_src.inner;
  else
    PetscCall(AckdNNPortBind(engine, &plan->w_src, x->data, &wargs[0].memory, conv->name));
  PetscCall(AckdNNPortBind(engine, &plan->w_diff_dst, dy->data, &wargs[1].memory, conv->name));
  PetscCall(AckdNNPortBind(engine, &plan->w_diff_wei, grads + conv->weight, &wargs[2].memory, conv->name));
  wargs[3].memory = plan->diff_bias;
  if (conv->has_bias) PetscCall(AckdNNMemoryBind(plan->diff_bias, grads + conv->bias, conv->name));
  PetscCall(AckdNNExecute(engine, plan->backward_weights, conv->has_bias ? 4 : 3, wargs, conv->name,
                          "weight-gradient convolution"));
  PetscCall(AckdNNPortFinish(engine, &plan->w_diff_wei, conv->name));
  if (dx) {
    *dx          = AckdTensorLike(dx->data, x);
    dargs[0].arg = DNNL_ARG_DIFF_DST;
    dargs[1].arg = DNNL_ARG_WEIGHTS;
    dargs[2].arg = DNNL_ARG_DIFF_SRC;
    if (plan->diff_dst_shared)
      dargs[0].memory = plan->w_diff_dst.inner;
    else
      PetscCall(AckdNNPortBind(engine, &plan->d_diff_dst, dy->data, &dargs[0].memory, conv->name));
    if (plan->weights_shared && plan->forward_src == x->data)
      dargs[1].memory = plan->f_wei.inner;
    else
      PetscCall(AckdNNPortBind(engine, &plan->d_wei, values + conv->weight, &dargs[1].memory, conv->name));
    PetscCall(AckdNNPortBind(engine, &plan->d_diff_src, dx->data, &dargs[2].memory, conv->name));
    PetscCall(AckdNNExecute(engine, plan->backward_data, 3, dargs, conv->name, "input-gradient convolution"));
    PetscCall(AckdNNPortFinish(engine, &plan->d_diff_src, conv->name));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdConvDestroy(AckdConv *conv)
{
  PetscFunctionBeginUser;
  AckdNNPlanCacheClear(&conv->plans, destroy_cached);
  PetscFunctionReturn(0);
}
