/* Max, average and global-average pooling on oneDNN. Max pooling keeps the
 * argmax positions of its latest forward in a per-shape workspace, which its
 * backward scatters the gradient through. */
#include "nn/nn_private.h"

struct AckdPoolPlan {
  PetscInt         n, c, h, w, oh, ow, x_block, y_block;
  dnnl_primitive_t forward, backward;
  dnnl_memory_t    src, dst, diff_src, diff_dst, workspace; /* workspace: max pooling only, owns its buffer */
  PetscBool        forward_done;                            /* the workspace holds a forward's argmax */
};

PetscErrorCode AckdPoolSetUp(AckdPool *pool, const char *name, AckdPoolKind kind, PetscInt kernel, PetscInt stride,
                             PetscInt padding)
{
  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(pool, sizeof *pool));
  PetscCall(PetscStrncpy(pool->name, name, sizeof pool->name));
  pool->kind = kind;
  if (kind != ACKD_POOL_GLOBAL_AVG) {
    PetscCheck(kernel > 0 && stride > 0 && padding >= 0 && 2 * padding <= kernel, PETSC_COMM_SELF,
               PETSC_ERR_ARG_OUTOFRANGE,
               "layer %s: pooling needs kernel, stride > 0 and 0 <= padding <= kernel/2 (as PyTorch)", name);
    pool->kernel  = kernel;
    pool->stride  = stride;
    pool->padding = padding;
  }
  PetscFunctionReturn(0);
}

/* Global average pooling is a window the size of the image. */
static void window(const AckdPool *pool, const AckdTensor *x, PetscInt *kh, PetscInt *kw, PetscInt *s, PetscInt *p)
{
  if (pool->kind == ACKD_POOL_GLOBAL_AVG) {
    *kh = x->h;
    *kw = x->w;
    *s  = 1;
    *p  = 0;
  } else {
    *kh = *kw = pool->kernel;
    *s        = pool->stride;
    *p        = pool->padding;
  }
}

PetscErrorCode AckdPoolOutputShape(const AckdPool *pool, const AckdTensor *x, AckdTensor *y)
{
  PetscInt kh, kw, s, p;

  PetscFunctionBeginUser;
  window(pool, x, &kh, &kw, &s, &p);
  PetscInt oh = AckdNNOutputExtent(x->h, kh, s, p), ow = AckdNNOutputExtent(x->w, kw, s, p);
  PetscCheck(oh > 0 && ow > 0, PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ,
             "layer %s: input %" PetscInt_FMT "x%" PetscInt_FMT
             " is smaller than the pooling window; use larger images",
             pool->name, x->h, x->w);
  y->n = x->n;
  y->c = x->c;
  y->h = oh;
  y->w = ow;
  PetscFunctionReturn(0);
}

static PetscErrorCode plan_create(AckdPool *pool, AckdEngine *engine, const AckdTensor *x, const AckdTensor *y,
                                  AckdPoolPlan **out)
{
  AckdPoolPlan         *plan;
  dnnl_memory_desc_t    src, dst;
  dnnl_pooling_desc_t   desc;
  dnnl_primitive_desc_t forward_pd = NULL;
  PetscInt              kh, kw, s, p;
  const char           *name = pool->name;
  dnnl_alg_kind_t       alg  = pool->kind == ACKD_POOL_MAX ? dnnl_pooling_max : dnnl_pooling_avg_include_padding;

  PetscFunctionBeginUser;
  window(pool, x, &kh, &kw, &s, &p);
  dnnl_dims_t strides = {s, s}, kernel = {kh, kw}, pad_l = {p, p};
  dnnl_dims_t pad_r = {AckdNNRightPadding(x->h, y->h, kh, s, p), AckdNNRightPadding(x->w, y->w, kw, s, p)};
  PetscCall(PetscCalloc1(1, &plan));
  *plan = (AckdPoolPlan){.n       = x->n,
                         .c       = x->c,
                         .h       = x->h,
                         .w       = x->w,
                         .oh      = y->h,
                         .ow      = y->w,
                         .x_block = AckdNNBlock(x),
                         .y_block = AckdNNBlock(y)};
  PetscCall(AckdNNDescTensor(&src, x, name));
  /* a 1x1 output whose channels fill whole blocks is the same bytes plain or
   * blocked: describe it like the input, so the pooling kernel sees one layout */
  AckdTensor like = *y;
  if (y->h == 1 && y->w == 1 && y->c % AckdNNBlock(x) == 0 && AckdNNBlock(y) == 1) like.block = x->block;
  PetscCall(AckdNNDescTensor(&dst, &like, name));
  AckdCallDnnl(
      dnnl_pooling_forward_desc_init(&desc, dnnl_forward_training, alg, &src, &dst, strides, kernel, pad_l, pad_r),
      "layer %s: describing the forward pooling", name);
  PetscCall(AckdNNPrimitiveCreate(engine, &desc, NULL, &plan->forward, &forward_pd, name, "forward pooling"));
  PetscErrorCode            ierr = 0;
  const dnnl_memory_desc_t *ws   = dnnl_primitive_desc_query_md(forward_pd, dnnl_query_workspace_md, 0);
  if (ws && dnnl_memory_desc_get_size(ws) > 0) ierr = AckdNNMemoryAllocate(engine, ws, &plan->workspace, name);
  dnnl_status_t status = dnnl_pooling_backward_desc_init(&desc, alg, &src, &dst, strides, kernel, pad_l, pad_r);
  if (!ierr && status == dnnl_success)
    ierr = AckdNNPrimitiveCreate(engine, &desc, forward_pd, &plan->backward, NULL, name, "backward pooling");
  dnnl_primitive_desc_destroy(forward_pd);
  AckdCallDnnl(status, "layer %s: describing the backward pooling", name);
  PetscCall(ierr);
  PetscCall(AckdNNMemoryCreate(engine, &src, &plan->src, name));
  PetscCall(AckdNNMemoryCreate(engine, &src, &plan->diff_src, name));
  PetscCall(AckdNNMemoryCreate(engine, &dst, &plan->dst, name));
  PetscCall(AckdNNMemoryCreate(engine, &dst, &plan->diff_dst, name));
  *out = plan;
  PetscFunctionReturn(0);
}

static void plan_destroy(AckdPoolPlan **plan)
{
  AckdPoolPlan *p = *plan;
  if (!p) return;
  AckdNNPrimitiveDestroy(&p->forward);
  AckdNNPrimitiveDestroy(&p->backward);
  dnnl_memory_t *mems[] = {&p->src, &p->dst, &p->diff_src, &p->diff_dst, &p->workspace};
  for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++) AckdNNMemoryDestroy(mems[i]);
  PetscFree(p);
  *plan = NULL;
}

static void destroy_cached(void *plan)
{
  AckdPoolPlan *p = plan;
  plan_destroy(&p);
}

static PetscErrorCode plan_get(AckdPool *pool, AckdEngine *engine, const AckdTensor *x, PetscInt y_block,
                               AckdPoolPlan **plan)
{
  AckdTensor y = *x;

  /* float32 at every engine precision */
  const AckdNNPlanKey key = {x->n, x->c, x->h, x->w, AckdNNBlock(x), PetscMax(1, y_block), ACKD_PRECISION_FP32};

  PetscFunctionBeginUser;
  *plan = AckdNNPlanCacheFind(&pool->plans, &key);
  if (*plan) PetscFunctionReturn(0);
  PetscCall(AckdPoolOutputShape(pool, x, &y));
  y.block             = y_block;
  const PetscInt slot = AckdNNPlanCacheSlot(&pool->plans, &key, destroy_cached);
  PetscCall(plan_create(pool, engine, x, &y, plan));
  pool->plans.plan[slot] = *plan;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdPoolForward(AckdPool *pool, AckdEngine *engine, const AckdTensor *x, AckdTensor *y)
{
  AckdPoolPlan *plan;

  PetscFunctionBeginUser;
  PetscCall(AckdPoolOutputShape(pool, x, y));
  PetscCall(plan_get(pool, engine, x, y->block, &plan));
  PetscCall(AckdNNMemoryBind(plan->src, x->data, pool->name));
  PetscCall(AckdNNMemoryBind(plan->dst, y->data, pool->name));
  dnnl_exec_arg_t args[3] = {
      {DNNL_ARG_SRC, plan->src}, {DNNL_ARG_DST, plan->dst}, {DNNL_ARG_WORKSPACE, plan->workspace}};
  PetscCall(AckdNNExecute(engine, plan->forward, plan->workspace ? 3 : 2, args, pool->name, "forward pooling"));
  plan->forward_done = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdPoolBackward(AckdPool *pool, AckdEngine *engine, const AckdTensor *x, const AckdTensor *dy,
                                AckdTensor *dx)
{
  AckdPoolPlan *plan;

  PetscFunctionBeginUser;
  if (!dx) PetscFunctionReturn(0);
  PetscCall(plan_get(pool, engine, x, dy->block, &plan));
  PetscCheck(dy->n == plan->n && dy->c == plan->c && dy->h == plan->oh && dy->w == plan->ow, PETSC_COMM_SELF,
             PETSC_ERR_ARG_SIZ, "layer %s: output gradient shape does not match the output", pool->name);
  PetscCheck(!plan->workspace || plan->forward_done, PETSC_COMM_SELF, PETSC_ERR_ORDER,
             "layer %s: max-pooling backward without a forward of this shape before it", pool->name);
  *dx = AckdTensorLike(dx->data, x);
  PetscCall(AckdNNMemoryBind(plan->diff_dst, dy->data, pool->name));
  PetscCall(AckdNNMemoryBind(plan->diff_src, dx->data, pool->name));
  dnnl_exec_arg_t args[3] = {
      {DNNL_ARG_DIFF_DST, plan->diff_dst}, {DNNL_ARG_DIFF_SRC, plan->diff_src}, {DNNL_ARG_WORKSPACE, plan->workspace}};
  PetscCall(AckdNNExecute(engine, plan->backward, plan->workspace ? 3 : 2, args, pool->name, "backward pooling"));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdPoolDestroy(AckdPool *pool)
{
  PetscFunctionBeginUser;
  AckdNNPlanCacheClear(&pool->plans, destroy_cached);
  PetscFunctionReturn(0);
}
