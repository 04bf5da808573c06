/* SGD, Adam and AdamW with torch.optim's update rules, over the model's one
 * parameter buffer: a single fused loop, no per-tensor dispatch. The padding
 * between tensors holds zeros in values and gradients and stays zero. */
#include "nn/nn_private.h"
#include <math.h>

static AckdLogPackage optimizer_log = {.name = "ackd optimizer", .nevents = 1, .event_names = {"NNOptimizerStep"}};

const char *const AckdOptimizerNames[] = {"sgd", "adam", "adamw"};

PetscErrorCode AckdOptimizerSetUp(AckdOptimizer *opt, AckdOptimizerKind kind, const AckdParams *params)
{
  PetscFunctionBeginUser;
  PetscCheck(params->setup, PETSC_COMM_SELF, PETSC_ERR_ORDER, "optimizer set up before the model's parameters");
  PetscCall(PetscMemzero(opt, sizeof *opt));
  opt->kind         = kind;
  opt->beta1        = 0.9;
  opt->beta2        = 0.999;
  opt->eps          = 1e-8;
  opt->weight_decay = kind == ACKD_OPT_ADAMW ? 1e-2 : 0.0;
  opt->size         = params->size;
  PetscCall(PetscCalloc2(PetscMax(opt->size, 1), &opt->m, PetscMax(opt->size, 1), &opt->v));
  PetscCall(AckdLogPackageRegister(&optimizer_log));
  opt->event = optimizer_log.events[0];
  PetscFunctionReturn(0);
}

static void sgd_step(AckdOptimizer *opt, float *restrict p, const float *restrict g, PetscInt n, double lr)
{
  const float wd = (float)opt->weight_decay, mu = (float)opt->momentum, rate = (float)lr;
  float *restrict buf   = opt->m;
  const PetscBool first = opt->steps == 0;
#pragma omp parallel for simd schedule(static)
  for (PetscInt i = 0; i < n; i++) {
    float d = g[i] + wd * p[i];
    if (mu != 0.0f) {
      buf[i] = first ? d : mu * buf[i] + d; /* torch starts the buffer at the first gradient */
      d      = opt->nesterov ? d + mu * buf[i] : buf[i];
    }
    p[i] -= rate * d;
  }
}

static ACKD_CPU_CLONES void adam_chunk(float *restrict p, const float *restrict g, float *restrict m, float *restrict v,
                                       PetscInt lo, PetscInt hi, PetscBool decoupled, float shrink, float l2, float b1,
                                       float b2, float step_size, float sqrt_bc2, float eps)
{
  for (PetscInt i = lo; i < hi; i++) {
    if (decoupled) p[i] *= shrink;
    float d = g[i] + l2 * p[i];
    m[i]    = b1 * m[i] + (1.0f - b1) * d;
    v[i]    = b2 * v[i] + (1.0f - b2) * d * d;
    p[i] -= step_size * m[i] / (sqrtf(v[i]) / sqrt_bc2 + eps);
  }
}

static void adam_step(AckdOptimizer *opt, float *restrict p, const float *restrict g, PetscInt n, double lr)
{
  const PetscBool decoupled = opt->kind == ACKD_OPT_ADAMW;
  const double    t = (double)(opt->steps + 1), bc1 = 1.0 - pow(opt->beta1, t), bc2 = 1.0 - pow(opt->beta2, t);
  const float     b1 = (float)opt->beta1, b2 = (float)opt->beta2, eps = (float)opt->eps;
  const float     step_size = (float)(lr / bc1), sqrt_bc2 = (float)sqrt(bc2);
  const float     l2 = decoupled ? 0.0f : (float)opt->weight_decay, shrink = (float)(1.0 - lr * opt->weight_decay);
  float *restrict m = opt->m, *restrict v = opt->v;
  /* contiguous chunks of 4096, vectorised inside */
  PetscInt chunks = (n + 4095) / 4096;
#pragma omp parallel for schedule(static)
  for (PetscInt k = 0; k < chunks; k++)
    adam_chunk(p, g, m, v, k * 4096, PetscMin(n, (k + 1) * 4096), decoupled, shrink, l2, b1, b2, step_size, sqrt_bc2,
               eps);
}

PetscErrorCode AckdOptimizerStep(AckdOptimizer *opt, AckdParams *params, double lr)
{
  PetscFunctionBeginUser;
  PetscCheck(params->size == opt->size, PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ,
             "optimizer was set up for %" PetscInt_FMT " parameters, the model has %" PetscInt_FMT, opt->size,
             params->size);
  PetscCall(PetscLogEventBegin(opt->event, 0, 0, 0, 0));
  if (opt->kind == ACKD_OPT_SGD)
    sgd_step(opt, params->values, params->grads, params->size, lr);
  else
    adam_step(opt, params->values, params->grads, params->size, lr);
  opt->steps++;
  PetscCall(PetscLogEventEnd(opt->event, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOptimizerDestroy(AckdOptimizer *opt)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree2(opt->m, opt->v));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdClipGradNorm(AckdParams *params, double max_norm, double *norm)
{
  double sq = 0.0;
  float *g  = params->grads;

  PetscFunctionBeginUser;
#pragma omp                   parallel for reduction(+ : sq) schedule(static)
  for (PetscInt i = 0; i < params->size; i++) sq += (double)g[i] * g[i];
  *norm = sqrt(sq);
  /* torch: coefficient max_norm / (norm + 1e-6), clamped at 1 */
  double coef = max_norm / (*norm + 1e-6);
  if (coef < 1.0) {
                      float c = (float)coef;
#pragma omp parallel for simd schedule(static)
    for (PetscInt i = 0; i < params->size; i++) g[i] *= c;
  }
  PetscFunctionReturn(0);
}
