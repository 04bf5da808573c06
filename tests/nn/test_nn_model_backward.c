/* The model's backward bookkeeping: the gradient-ready callback reports each
 * layer's range as soon as it is final, in decreasing order, covering every
 * parameter exactly once (what a bucketed allreduce relies on); a layer the
 * loss does not reach gets a zero gradient, not the previous step's; and a
 * layer whose backward needs its forward's state (batch statistics, argmax)
 * refuses to run without it instead of using garbage. */
#include <ackd/nn.h>
#include <string.h>
#include "check.h"

static PetscErrorCode backward_without_forward(AckdEngine *engine, PetscBool pool)
{
  AckdParams    params;
  AckdBatchNorm bn;
  AckdPool      mp;
  AckdTensor    x, dy, dx;

  PetscFunctionBeginUser;
  PetscCall(AckdParamsCreate(&params));
  PetscCall(AckdBatchNormSetUp(&bn, &params, "bn", 3));
  PetscCall(AckdPoolSetUp(&mp, "maxpool", ACKD_POOL_MAX, 2, 2, 0));
  PetscCall(AckdParamsSetUp(&params));
  PetscCall(AckdTensorAllocate(&x, 2, 3, 4, 4));
  PetscCall(AckdTensorAllocate(&dy, 2, 3, 4, 4));
  PetscCall(AckdTensorAllocate(&dx, 2, 3, 4, 4));
  PetscErrorCode ierr;
  if (pool) {
    dy.h = dy.w = 2;
    ierr        = AckdPoolBackward(&mp, engine, &x, &dy, &dx);
  } else
    ierr = AckdBatchNormBackward(&bn, engine, &x, &dy, &dx);
  PetscCall(AckdBatchNormDestroy(&bn));
  PetscCall(AckdPoolDestroy(&mp));
  PetscCall(AckdParamsDestroy(&params));
  PetscCall(AckdTensorFree(&x));
  PetscCall(AckdTensorFree(&dy));
  PetscCall(AckdTensorFree(&dx));
  PetscCall(ierr);
  PetscFunctionReturn(0);
}

static void expect_order_error(AckdEngine *engine, PetscBool pool, const char *fragment)
{
  AckdErrorRecord record;
  memset(&record, 0, sizeof record);
  PetscPushErrorHandler(AckdErrorHandler, &record);
  PetscErrorCode ierr = backward_without_forward(engine, pool);
  PetscPopErrorHandler();
  CHECK(ierr == PETSC_ERR_ORDER, "%s: backward without forward must fail", fragment);
  CHECK(strstr(record.message, fragment) != NULL, "message '%s' lacks '%s'", record.message, fragment);
}

typedef struct {
  PetscInt  last_begin, count, size;
  PetscInt *covered;
} Ranges;

static PetscErrorCode record_range(void *ctx, PetscInt begin, PetscInt end)
{
  Ranges *r = ctx;

  PetscFunctionBeginUser;
  CHECK(begin < end && end <= r->size, "range [%" PetscInt_FMT ", %" PetscInt_FMT ") outside the buffer", begin, end);
  CHECK(end <= r->last_begin, "range [%" PetscInt_FMT ", %" PetscInt_FMT ") after one starting at %" PetscInt_FMT,
        begin, end, r->last_begin);
  for (PetscInt i = begin; i < end && i < r->size; i++) r->covered[i]++;
  r->last_begin = begin;
  r->count++;
  PetscFunctionReturn(0);
}

static PetscErrorCode check_model(AckdEngine *engine, AckdArch arch)
{
  AckdModelConfig  config = {.arch = arch, .in_channels = 4, .classes = 5, .width = 0.25, .image_size = 32};
  AckdModel        model;
  AckdParams      *params;
  AckdModelOutputs out;
  AckdTensor       x, dl, dt;
  Ranges           r = {0};
  AckdRng          rng;
  const char      *name = AckdArchNames[arch];

  PetscFunctionBeginUser;
  PetscCall(AckdModelCreate(PETSC_COMM_SELF, &model));
  PetscCall(AckdModelSetUp(model, &config, 3));
  PetscCall(AckdModelGetParams(model, &params));
  r.size       = params->size;
  r.last_begin = params->size;
  PetscCall(PetscCalloc1(params->size, &r.covered));
  PetscCall(AckdModelSetGradientReady(model, record_range, &r));
  PetscCall(AckdTensorAllocate(&x, 2, 4, 32, 32));
  AckdRngInit(&rng, 1, 0, 1);
  for (PetscInt i = 0; i < AckdTensorSize(&x); i++) x.data[i] = (float)AckdRngUniformRange(&rng, -1, 1);
  PetscCall(AckdModelForward(model, engine, &x, &out));
  PetscCall(AckdTensorAllocate(&dl, out.logits.n, out.logits.c, 1, 1));
  PetscCall(AckdTensorAllocate(&dt, out.tokens.n, out.tokens.c, out.tokens.h, out.tokens.w));
  for (PetscInt i = 0; i < AckdTensorSize(&dl); i++) dl.data[i] = 1.0f;
  for (PetscInt i = 0; i < AckdTensorSize(&dt); i++) dt.data[i] = 1.0f;
  PetscCall(AckdModelBackward(model, engine, &dl, NULL, NULL));
  PetscInt once = 0;
  for (PetscInt p = 0; p < params->nparams; p++) {
    const AckdParamEntry *e = &params->params[p];
    for (PetscInt i = 0; i < e->size; i++) once += r.covered[e->offset + i] == 1;
  }
  PetscInt total = 0;
  for (PetscInt p = 0; p < params->nparams; p++) total += params->params[p].size;
  CHECK(once == total, "%s: %" PetscInt_FMT " of %" PetscInt_FMT " parameters reported exactly once", name, once,
        total);

  /* now only the tokens enter the loss: the classifier's gradient must be zero */
  r.last_begin = params->size;
  PetscCall(AckdModelForward(model, engine, &x, &out));
  PetscCall(AckdModelBackward(model, engine, NULL, NULL, &dt));
  const char           *head = arch == ACKD_ARCH_MOBILENETV2 ? "classifier.1.weight" : "fc.weight";
  const AckdParamEntry *e;
  PetscCall(AckdParamsFind(params, arch == ACKD_ARCH_SHUFFLENETV2 ? "classifier.weight" : head, NULL, &e));
  PetscInt nonzero = 0;
  for (PetscInt i = 0; i < e->size; i++) nonzero += params->grads[e->offset + i] != 0.0f;
  CHECK(nonzero == 0, "%s: %s keeps %" PetscInt_FMT " stale gradient entries", name, e->name, nonzero);
  printf("%-12s %" PetscInt_FMT " gradient ranges, every parameter once; unreached classifier zeroed\n", name,
         r.count / 2);

  PetscCall(PetscFree(r.covered));
  PetscCall(AckdTensorFree(&x));
  PetscCall(AckdTensorFree(&dl));
  PetscCall(AckdTensorFree(&dt));
  PetscCall(AckdModelDestroy(&model));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  AckdEngine engine;

  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  PetscCall(AckdEngineCreate(1, &engine));
  PetscCall(check_model(&engine, ACKD_ARCH_RESNET18));
  PetscCall(check_model(&engine, ACKD_ARCH_MOBILENETV2));
  PetscCall(check_model(&engine, ACKD_ARCH_SHUFFLENETV2));
  expect_order_error(&engine, PETSC_FALSE, "layer bn: training-mode backward without a training-mode forward");
  expect_order_error(&engine, PETSC_TRUE, "layer maxpool: max-pooling backward without a forward");
  PetscCall(AckdEngineDestroy(&engine));
  int failed = CHECK_REPORT("nn model backward bookkeeping");
  PetscCall(PetscFinalize());
  return failed;
}
