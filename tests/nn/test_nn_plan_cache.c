/* The layers' plan cache (dnnl_helpers.c): lookup by shape and layout, eviction of the oldest
 * when every slot is taken, each evicted or cleared plan destroyed exactly once; then a real
 * convolution fed more batch sizes than the cache holds, and the first again after its plan was
 * evicted, each output bitwise equal to a fresh layer's, which has no cache to go wrong. */
#include "nn/nn_private.h"
#include "check.h"
#include <string.h>

static int destroyed[16];

static void count_destroy(void *plan)
{
  destroyed[*(int *)plan]++;
}

static void test_cache_logic(void)
{
  AckdNNPlanCache cache = {0};
  int             plans[ACKD_NN_PLANS + 2];
  AckdNNPlanKey   keys[ACKD_NN_PLANS + 2];

  for (int i = 0; i < ACKD_NN_PLANS + 2; i++) {
    plans[i] = i;
    keys[i]  = (AckdNNPlanKey){.n = 8 + i, .c = 3, .h = 16, .w = 16, .x_block = 1, .y_block = 1};
  }
  for (int i = 0; i < ACKD_NN_PLANS; i++) {
    CHECK(!AckdNNPlanCacheFind(&cache, &keys[i]), "key %d found before its plan was stored", i);
    PetscInt slot = AckdNNPlanCacheSlot(&cache, &keys[i], count_destroy);
    CHECK(!AckdNNPlanCacheFind(&cache, &keys[i]), "key %d found before the caller stored its plan", i);
    cache.plan[slot] = &plans[i];
  }
  for (int i = 0; i < ACKD_NN_PLANS; i++)
    CHECK(AckdNNPlanCacheFind(&cache, &keys[i]) == &plans[i], "key %d finds its own plan", i);
  AckdNNPlanKey other = keys[0];
  other.y_block       = 16;
  CHECK(!AckdNNPlanCacheFind(&cache, &other), "another output layout is another plan");
  /* two more: the two oldest go, in order, each destroyed once */
  for (int i = ACKD_NN_PLANS; i < ACKD_NN_PLANS + 2; i++) {
    PetscInt slot    = AckdNNPlanCacheSlot(&cache, &keys[i], count_destroy);
    cache.plan[slot] = &plans[i];
  }
  CHECK(destroyed[0] == 1 && destroyed[1] == 1 && destroyed[2] == 0, "evicted: the two oldest (%d %d %d)", destroyed[0],
        destroyed[1], destroyed[2]);
  CHECK(!AckdNNPlanCacheFind(&cache, &keys[0]) && !AckdNNPlanCacheFind(&cache, &keys[1]), "evicted plans are gone");
  for (int i = 2; i < ACKD_NN_PLANS + 2; i++)
    CHECK(AckdNNPlanCacheFind(&cache, &keys[i]) == &plans[i], "key %d still finds its plan", i);
  AckdNNPlanCacheClear(&cache, count_destroy);
  for (int i = 0; i < ACKD_NN_PLANS + 2; i++) CHECK(destroyed[i] == 1, "plan %d destroyed %d times", i, destroyed[i]);
  CHECK(cache.count == 0, "cleared");
}

/* y = conv(x) for batch n through `conv`, and through a new layer on the same parameters. */
static PetscErrorCode compare_with_fresh(AckdEngine *engine, AckdConv *conv, PetscInt n)
{
  AckdConv   fresh;
  AckdTensor x, y, y_fresh;
  AckdRng    rng;

  PetscFunctionBeginUser;
  AckdRngInit(&rng, 100, (uint64_t)n, 0);
  PetscCall(AckdTensorAllocate(&x, n, 8, 12, 12));
  for (PetscInt i = 0; i < AckdTensorSize(&x); i++) x.data[i] = (float)AckdRngUniformRange(&rng, -1.0, 1.0);
  y = x;
  PetscCall(AckdConvOutputShape(conv, &x, &y));
  PetscCall(AckdTensorAllocate(&y, y.n, y.c, y.h, y.w));
  PetscCall(AckdTensorAllocate(&y_fresh, y.n, y.c, y.h, y.w));
  PetscCall(AckdConvForward(conv, engine, &x, &y));
  fresh = *conv;
  PetscCall(PetscMemzero(&fresh.plans, sizeof fresh.plans));
  PetscCall(AckdConvForward(&fresh, engine, &x, &y_fresh));
  CHECK(!memcmp(y.data, y_fresh.data, sizeof(float) * AckdTensorSize(&y)),
        "batch %" PetscInt_FMT ": the cached plan's output = a fresh layer's", n);
  PetscCall(AckdConvDestroy(&fresh));
  PetscCall(AckdTensorFree(&x));
  PetscCall(AckdTensorFree(&y));
  PetscCall(AckdTensorFree(&y_fresh));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  AckdEngine engine;
  AckdParams params;
  AckdConv   conv;

  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  test_cache_logic();
  PetscCall(AckdEngineCreate(1, &engine));
  PetscCall(AckdParamsCreate(&params));
  PetscCall(AckdConvSetUp(&conv, &params, "conv", 8, 16, 3, 1, 1, 1, PETSC_TRUE));
  PetscCall(AckdParamsSetUp(&params));
  PetscCall(AckdParamsInitialize(&params, 7));
  for (PetscInt n = 1; n <= ACKD_NN_PLANS + 2; n++) PetscCall(compare_with_fresh(&engine, &conv, n));
  PetscCall(compare_with_fresh(&engine, &conv, 1)); /* evicted above, made again */
  CHECK(conv.plans.count == ACKD_NN_PLANS, "the cache holds %d plans", ACKD_NN_PLANS);
  PetscCall(AckdConvDestroy(&conv));
  PetscCall(AckdParamsDestroy(&params));
  PetscCall(AckdEngineDestroy(&engine));
  int status = CHECK_REPORT("plan cache");
  PetscCall(PetscFinalize());
  return status;
}
