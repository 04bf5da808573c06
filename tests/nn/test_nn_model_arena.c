/* A model's activation arenas across batch shapes (model.c): a model that has taken a training
 * step at one batch size and an evaluation pass at a larger one, and whose arenas are then filled
 * with NaN, gives for a training step at a third batch size the logits and parameter gradients of
 * a fresh model of the same seed that saw only that step. A layer that read anything a previous
 * plan left (a padding lane of a blocked slot, a gradient slot before its first write) would carry
 * the NaN into them. MobileNetV2 at width 0.5 has slots whose channel counts (8, 12, 24, ...) do
 * not fill oneDNN's blocks of 16, and ShuffleNetV2's split and concat write channel by channel.
 * Then the inference arena (AckdModelInfer), whose slots are shared by liveness, for every
 * architecture. */
#include "nn/model_private.h"
#include "nn/nn_private.h"
#include "check.h"
#include <math.h>

static PetscErrorCode random_tensor(AckdTensor *t, PetscInt n, PetscInt c, PetscInt hw, uint64_t seed)
{
  AckdRng rng;

  PetscFunctionBeginUser;
  PetscCall(AckdTensorAllocate(t, n, c, hw, hw));
  AckdRngInit(&rng, seed, 0, 7);
  for (PetscInt i = 0; i < AckdTensorSize(t); i++) t->data[i] = (float)AckdRngUniformRange(&rng, -1, 1);
  PetscFunctionReturn(0);
}

/* One training step at batch 4: the logits and the parameter gradients, copied out. */
static PetscErrorCode step(AckdModel m, AckdEngine *engine, const AckdTensor *x, const AckdTensor *dl, float *logits,
                           float *grads)
{
  AckdModelOutputs out;
  AckdParams      *params;

  PetscFunctionBeginUser;
  PetscCall(AckdModelForward(m, engine, x, &out));
  PetscCall(PetscArraycpy(logits, out.logits.data, AckdTensorSize(&out.logits)));
  PetscCall(AckdModelBackward(m, engine, dl, NULL, NULL));
  PetscCall(AckdModelGetParams(m, &params));
  PetscCall(PetscArraycpy(grads, params->grads, params->size));
  PetscFunctionReturn(0);
}

static PetscErrorCode check_arch(AckdEngine *engine, AckdArch arch)
{
  const PetscInt   bands = 3, classes = 7, hw = 32;
  AckdModelConfig  config = {.arch = arch, .in_channels = bands, .classes = classes, .width = 0.5, .image_size = hw};
  AckdModel        used, fresh;
  AckdParams      *params;
  AckdModelOutputs out;
  AckdTensor       x6, x9, x4, dl6, dl4;
  float           *logits[2], *grads[2];
  const char      *name = AckdArchNames[arch];

  PetscFunctionBeginUser;
  PetscCall(AckdModelCreate(PETSC_COMM_SELF, &used));
  PetscCall(AckdModelSetUp(used, &config, 5));
  PetscCall(AckdModelCreate(PETSC_COMM_SELF, &fresh));
  PetscCall(AckdModelSetUp(fresh, &config, 5));
  PetscCall(random_tensor(&x6, 6, bands, hw, 1));
  PetscCall(random_tensor(&x9, 9, bands, hw, 2));
  PetscCall(random_tensor(&x4, 4, bands, hw, 3));
  PetscCall(random_tensor(&dl6, 6, classes, 1, 4));
  PetscCall(random_tensor(&dl4, 4, classes, 1, 5));
  PetscCall(AckdModelGetParams(used, &params));
  for (int k = 0; k < 2; k++) PetscCall(PetscMalloc2(4 * classes, &logits[k], params->size, &grads[k]));

  PetscCall(AckdModelForward(used, engine, &x6, &out));
  PetscCall(AckdModelBackward(used, engine, &dl6, NULL, NULL));
  PetscCall(AckdModelSetTraining(used, PETSC_FALSE));
  PetscCall(AckdModelForward(used, engine, &x9, &out));
  PetscCall(AckdModelSetTraining(used, PETSC_TRUE));
  for (PetscInt i = 0; i < used->arena_capacity; i++) used->arena[i] = NAN;
  for (PetscInt i = 0; i < used->grad_arena_capacity; i++) used->grad_arena[i] = NAN;
  PetscCall(step(used, engine, &x4, &dl4, logits[0], grads[0]));
  PetscCall(step(fresh, engine, &x4, &dl4, logits[1], grads[1]));

  double scale = 0.0, worst = 0.0, gscale = 0.0, gworst = 0.0;
  for (PetscInt i = 0; i < 4 * classes; i++) {
    scale = PetscMax(scale, fabs(logits[1][i]));
    worst = isfinite(logits[0][i]) ? PetscMax(worst, fabs(logits[0][i] - logits[1][i])) : INFINITY;
  }
  for (PetscInt i = 0; i < params->size; i++) {
    gscale = PetscMax(gscale, fabs(grads[1][i]));
    gworst = isfinite(grads[0][i]) ? PetscMax(gworst, fabs(grads[0][i] - grads[1][i])) : INFINITY;
  }
  /* the same arithmetic on the same kernels: only the order of OpenMP's reductions may differ */
  CHECK(worst <= 1e-5 * scale, "%s: logits differ from a fresh model's by %g (largest %g)", name, worst, scale);
  CHECK(gworst <= 1e-4 * gscale, "%s: parameter gradients differ from a fresh model's by %g (largest %g)", name, gworst,
        gscale);

  for (int k = 0; k < 2; k++) PetscCall(PetscFree2(logits[k], grads[k]));
  AckdTensor *t[] = {&x6, &x9, &x4, &dl6, &dl4};
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) PetscCall(AckdTensorFree(t[i]));
  PetscCall(AckdModelDestroy(&used));
  PetscCall(AckdModelDestroy(&fresh));
  PetscFunctionReturn(0);
}

/* AckdModelInfer against AckdModelForward in evaluation mode on the same batch, for every
 * architecture: the same outputs (the same kernels on the same layouts; outputs laid out where
 * earlier layers' outputs were, their channel padding written over by whatever lived there
 * before, and the arena filled with NaN first), in an arena that holds a fraction of the
 * forward's, and a backward after it refused. */
static PetscErrorCode check_infer(AckdEngine *engine, AckdArch arch)
{
  const PetscInt   bands = 3, classes = 7, hw = 32, n = 9;
  AckdModelConfig  config = {.arch = arch, .in_channels = bands, .classes = classes, .width = 0.5, .image_size = hw};
  AckdModel        m;
  AckdModelOutputs out;
  AckdTensor       x, dl;
  const char      *name = AckdArchNames[arch];
  float           *ref[3];
  PetscInt         sizes[3], full;

  PetscFunctionBeginUser;
  PetscCall(AckdModelCreate(PETSC_COMM_SELF, &m));
  PetscCall(AckdModelSetUp(m, &config, 5));
  PetscCall(random_tensor(&x, n, bands, hw, 11));
  PetscCall(random_tensor(&dl, n, classes, 1, 12));
  PetscCall(AckdModelSetTraining(m, PETSC_FALSE));
  PetscCall(AckdModelForward(m, engine, &x, &out));
  full                   = m->arena_size;
  const AckdTensor *o[3] = {&out.logits, &out.embedding, &out.tokens};
  for (int k = 0; k < 3; k++) {
    sizes[k] = AckdTensorSize(o[k]);
    PetscCall(PetscMalloc1(sizes[k], &ref[k]));
    PetscCall(PetscArraycpy(ref[k], o[k]->data, sizes[k]));
  }
  for (PetscInt i = 0; i < m->arena_capacity; i++) m->arena[i] = NAN;
  PetscCall(AckdModelInfer(m, engine, &x, &out));
  const AckdTensor *q[3] = {&out.logits, &out.embedding, &out.tokens};
  for (int k = 0; k < 3; k++) {
    double scale = 0.0, worst = 0.0;
    CHECK(AckdTensorSize(q[k]) == sizes[k], "%s: output %d has %d entries, not %d", name, k, (int)AckdTensorSize(q[k]),
          (int)sizes[k]);
    for (PetscInt i = 0; i < sizes[k]; i++) {
      scale = PetscMax(scale, fabs(ref[k][i]));
      worst = isfinite(q[k]->data[i]) ? PetscMax(worst, fabs(q[k]->data[i] - ref[k][i])) : INFINITY;
    }
    /* the same arithmetic on the same kernels: only the order of OpenMP's reductions may differ */
    CHECK(worst <= 1e-6 * scale, "%s: output %d of the inference pass differs from the forward's by %g (largest %g)",
          name, k, worst, scale);
  }
  CHECK(m->arena_size < full, "%s: the inference arena (%d floats) is not smaller than the forward's (%d)", name,
        (int)m->arena_size, (int)full);
  printf("%-14s inference arena %8d floats, forward's %9d (%.2f)\n", name, (int)m->arena_size, (int)full,
         (double)m->arena_size / (double)full);
  PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
  PetscErrorCode refused = AckdModelBackward(m, engine, &dl, NULL, NULL);
  PetscCall(PetscPopErrorHandler());
  CHECK(refused == PETSC_ERR_ORDER, "%s: a backward after AckdModelInfer gave error %d, not PETSC_ERR_ORDER", name,
        (int)refused);

  for (int k = 0; k < 3; k++) PetscCall(PetscFree(ref[k]));
  PetscCall(AckdTensorFree(&x));
  PetscCall(AckdTensorFree(&dl));
  PetscCall(AckdModelDestroy(&m));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  AckdEngine engine;

  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  PetscCall(AckdEngineCreate(1, &engine));
  PetscCall(check_arch(&engine, ACKD_ARCH_MOBILENETV2));
  PetscCall(check_arch(&engine, ACKD_ARCH_SHUFFLENETV2));
  PetscCall(check_arch(&engine, ACKD_ARCH_RESNET18));
  for (int arch = 0; arch <= ACKD_ARCH_MLP; arch++) PetscCall(check_infer(&engine, (AckdArch)arch));
  PetscCall(AckdEngineDestroy(&engine));
  int failed = CHECK_REPORT("model arenas across batch shapes");
  PetscCall(PetscFinalize());
  return failed;
}
