/* One full training step of a backbone (forward, cross-entropy, backward,
 * Adam), timed: prints "ackd model=NAME img_s=X" per model, the median over
 * the timed steps. bench/train/train.py runs it beside PyTorch.
 *
 *   bench_train -models resnet18,mobilenetv2 -batch 64 -bands 10 -size 64 -classes 10 -threads 2 -steps 10 */
#include <ackd/nn.h>
#include <stdlib.h>
#include <string.h>

static int compare_doubles(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static PetscErrorCode bench_model(AckdEngine *engine, AckdArch arch, PetscInt batch, PetscInt bands, PetscInt size,
                                  PetscInt classes, PetscInt warmup, PetscInt steps)
{
  AckdModelConfig  config = {.arch = arch, .in_channels = bands, .classes = classes, .width = 1.0, .image_size = size};
  AckdModel        model;
  AckdParams      *params;
  AckdOptimizer    opt;
  AckdModelOutputs out;
  AckdTensor       x, dlogits;
  AckdRng          rng;
  PetscInt        *labels;
  double          *times, loss;

  PetscFunctionBeginUser;
  PetscCall(AckdModelCreate(PETSC_COMM_SELF, &model));
  PetscCall(AckdModelSetUp(model, &config, 1));
  PetscCall(AckdModelGetParams(model, &params));
  PetscCall(AckdOptimizerSetUp(&opt, ACKD_OPT_ADAM, params));
  PetscCall(AckdTensorAllocate(&x, batch, bands, size, size));
  PetscCall(AckdTensorAllocate(&dlogits, batch, classes, 1, 1));
  PetscCall(PetscMalloc2(batch, &labels, steps, &times));
  AckdRngInit(&rng, 3, 0, 0x62u);
  for (PetscInt i = 0; i < AckdTensorSize(&x); i++) x.data[i] = (float)AckdRngUniformRange(&rng, -1.0, 1.0);
  for (PetscInt b = 0; b < batch; b++) labels[b] = (PetscInt)AckdRngBelow(&rng, (uint32_t)classes);
  for (PetscInt s = -warmup; s < steps; s++) {
    double t0 = AckdTimeNow();
    PetscCall(AckdModelForward(model, engine, &x, &out));
    PetscCall(AckdCrossEntropy(&out.logits, labels, 0.0, &loss, &dlogits));
    PetscCall(AckdModelBackward(model, engine, &dlogits, NULL, NULL));
    PetscCall(AckdOptimizerStep(&opt, params, 1e-3));
    if (s >= 0) times[s] = AckdTimeNow() - t0;
  }
  qsort(times, (size_t)steps, sizeof *times, compare_doubles);
  double median = steps % 2 ? times[steps / 2] : 0.5 * (times[steps / 2 - 1] + times[steps / 2]);
  /* the fastest step too: on a shared machine it is the least disturbed one */
  PetscCall(PetscPrintf(PETSC_COMM_SELF, "ackd model=%s img_s=%.2f median_step_s=%.4f best_img_s=%.2f loss=%.4f\n",
                        AckdArchNames[arch], batch / median, median, batch / times[0], loss));
  PetscCall(PetscFree2(labels, times));
  PetscCall(AckdTensorFree(&x));
  PetscCall(AckdTensorFree(&dlogits));
  PetscCall(AckdOptimizerDestroy(&opt));
  PetscCall(AckdModelDestroy(&model));
  PetscFunctionReturn(0);
}

static PetscErrorCode run(void)
{
  PetscInt   batch = 64, bands = 10, size = 64, classes = 10, threads = 2, warmup = 2, steps = 10, nmodels = 8;
  char      *names[8];
  PetscBool  given;
  AckdEngine engine;

  PetscFunctionBeginUser;
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-batch", &batch, NULL));
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-bands", &bands, NULL));
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-size", &size, NULL));
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-classes", &classes, NULL));
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-threads", &threads, NULL));
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-warmup", &warmup, NULL));
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-steps", &steps, NULL));
  PetscCall(PetscOptionsGetStringArray(NULL, NULL, "-models", names, &nmodels, &given));
  PetscCheck(given && nmodels > 0, PETSC_COMM_SELF, PETSC_ERR_USER_INPUT,
             "bench_train: give -models NAME[,NAME...] (resnet18, resnet34, mobilenetv2, shufflenetv2, smallcnn, mlp)");
  PetscCheck(steps > 0, PETSC_COMM_SELF, PETSC_ERR_USER_INPUT, "bench_train: -steps must be positive");
  PetscCall(AckdEngineCreate(threads, &engine));
  PetscInt precision = ACKD_PRECISION_FP32;
  PetscCall(PetscOptionsGetEList(NULL, NULL, "-precision", AckdPrecisionNames, 2, &precision, NULL));
  PetscCall(AckdEngineSetPrecision(&engine, (AckdPrecision)precision));
  for (PetscInt i = 0; i < nmodels; i++) {
    PetscInt arch = -1;
    for (PetscInt a = 0; a < 6; a++)
      if (!strcmp(names[i], AckdArchNames[a])) arch = a;
    PetscCheck(arch >= 0, PETSC_COMM_SELF, PETSC_ERR_USER_INPUT, "bench_train: unknown model '%s'", names[i]);
    PetscCall(bench_model(&engine, (AckdArch)arch, batch, bands, size, classes, warmup, steps));
    PetscCall(PetscFree(names[i]));
  }
  PetscCall(AckdEngineDestroy(&engine));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  return AckdToolMain(argc, argv, "bench_train", run);
}
