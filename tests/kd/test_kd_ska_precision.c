/* SKA's single-precision path (-ska_precision single, the default) against its double path,
 * which unit.kd.losses checks against finite differences and PyTorch: the same inputs and
 * parameters at the study's sizes (32 samples of a 2 x 2 grid, student tokens of 512 channels,
 * teacher tokens of 128, embeddings 512 and 128), for the attention plan, the Sinkhorn plan and
 * one token per sample.
 *
 * The bound: the single path adds float rounding to three products in series (the projection to
 * the teacher's width, the covariances, the gradients' products), each within K u of its exact
 * value normwise for inner dimensions K <= 512 (K u = 3.1e-5, u = 2^-24), and the covariances'
 * difference carries it times |C| / |C_S - C_T|, about 1 for two unrelated modalities. So the
 * SKA term and every gradient must agree within 1e-4 normwise; the measured differences are
 * printed (their typical size is sqrt(K) u, about 1e-6). They must also differ: a path that is
 * bitwise the double one is not the single path. On CPUs with AVX512_BF16 or AMX, the maps'
 * products in bfloat16 (-ska_maps_precision bf16) are held to their own bound (BF16_BOUND). */
#include "kd/kd_impl.h"
#include <math.h>

enum { B = 32, N = 4, CS = 512, CT = 128, K = 10 };

/* -ska_maps_precision bf16 rounds both operands of each map product to bfloat16 (unit roundoff
 * u = 2^-8) and sums in float: every term of a product is within 2u of its exact value, so a
 * product whose terms do not cancel is within 2u normwise. The maps' gradients dW = dYᵀ Z sum
 * non-negative tokens against signed gradients, where the sums cancel and the terms' rounding
 * errors, of random sign, partly do too: 1.2u is typical (printed). The bound, 5u = 2e-2, is
 * the terms' 2u with room for that cancellation, and the SKA term and the input gradients,
 * which the maps reach only through the plan's weights, are far inside it; a product left in
 * single precision (bitwise the single path: refused below) or with an operand read in the
 * wrong order (an error of order 1) fails. */
static const double BF16_BOUND = 5.0 / 256.0;

typedef struct {
  AckdTensor  zs, es, ts, et, tt;
  PetscInt    labels[B];
  PetscInt    tokens;
  const char *options;
} Inputs;

typedef struct {
  AckdTensor      d_logits, d_embedding, d_tokens;
  double          ska;     /* the SKA term */
  float          *grads;   /* the method's parameter gradients */
  AckdParamEntry *entries; /* their names, offsets and sizes */
  PetscInt        nentries;
} Result;

/* The study's sizes; seed 5 gives every path the same parameters. */
static AckdKDDims study_dims(PetscInt tokens)
{
  return (AckdKDDims){.classes           = K,
                      .student_embedding = CS,
                      .student_channels  = CS,
                      .student_tokens    = tokens,
                      .teacher_embedding = CT,
                      .teacher_channels  = CT,
                      .teacher_tokens    = tokens,
                      .seed              = 5};
}

static PetscErrorCode run(const Inputs *x, const char *precision, Result *r)
{
  AckdKD        kd;
  AckdKDDims    dims;
  AckdKDInputs  in  = {0};
  AckdKDOutputs out = {0};
  AckdParams   *params;
  char          options[256];

  PetscFunctionBeginUser;
  PetscCall(PetscSNPrintf(options, sizeof options, "%s %s", x->options, precision));
  PetscCall(PetscOptionsClear(NULL));
  PetscCall(PetscOptionsInsertString(NULL, options));
  PetscCall(AckdKDCreate(PETSC_COMM_SELF, &kd));
  PetscCall(AckdKDSetFromOptions(kd));
  dims = study_dims(x->tokens);
  PetscCall(AckdKDSetUp(kd, &dims));
  PetscCall(AckdTensorAllocate(&r->d_logits, B, K, 1, 1));
  PetscCall(AckdTensorAllocate(&r->d_embedding, B, CS, 1, 1));
  PetscCall(AckdTensorAllocate(&r->d_tokens, B, 1, x->tokens, CS));
  in.batch             = B;
  in.global_batch      = B;
  in.student_logits    = &x->zs;
  in.student_embedding = &x->es;
  in.student_tokens    = &x->ts;
  in.teacher_embedding = &x->et;
  in.teacher_tokens    = &x->tt;
  in.labels            = x->labels;
  out.d_logits         = &r->d_logits;
  out.d_embedding      = &r->d_embedding;
  out.d_tokens         = &r->d_tokens;
  PetscCall(AckdKDLoss(kd, &in, &out));
  r->ska = NAN;
  for (PetscInt t = 0; t < out.nterms; t++)
    if (!strcmp(out.names[t], "ska")) r->ska = out.values[t];
  PetscCall(AckdKDGetParams(kd, &params));
  PetscCall(PetscMalloc1(params->size, &r->grads));
  PetscCall(PetscArraycpy(r->grads, params->grads, params->size));
  r->nentries = params->nparams;
  PetscCall(PetscMalloc1(params->nparams, &r->entries));
  PetscCall(PetscArraycpy(r->entries, params->params, params->nparams));
  PetscCall(AckdKDDestroy(&kd));
  PetscFunctionReturn(0);
}

static PetscErrorCode result_free(Result *r)
{
  PetscFunctionBeginUser;
  PetscCall(AckdTensorFree(&r->d_logits));
  PetscCall(AckdTensorFree(&r->d_embedding));
  PetscCall(AckdTensorFree(&r->d_tokens));
  PetscCall(PetscFree(r->grads));
  PetscCall(PetscFree(r->entries));
  PetscFunctionReturn(0);
}

/* |a - b| / |b| over n floats. */
static double normwise(const float *a, const float *b, PetscInt n)
{
  double diff = 0.0, ref = 0.0;
  for (PetscInt i = 0; i < n; i++) {
    diff += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    ref += (double)b[i] * b[i];
  }
  return sqrt(diff / PetscMax(ref, 1e-300));
}

/* One path's result (`mine`, run with `options`) against the double path's: the worst normwise
 * difference over the SKA term, the input gradients and every parameter gradient must be within
 * `bound`, and some must differ from `alt`'s, its neighbour's (a path bitwise equal to another is
 * not the path it claims to be). */
static PetscErrorCode compare(const char *name, const char *options, const Result *mine, const Result *exact,
                              const Result *alt, double bound, PetscBool *ok)
{
  double   worst  = 0.0, err;
  PetscInt differ = 0;

  PetscFunctionBeginUser;
  err   = fabs(mine->ska - exact->ska) / fabs(exact->ska);
  worst = err;
  PetscCall(PetscPrintf(PETSC_COMM_SELF, "%-10s %s: ska term %.9g (double %.9g, relative %.1e)\n", name, options,
                        mine->ska, exact->ska, err));
  const struct {
    const char       *what;
    const AckdTensor *a, *b, *c;
  } tensors[] = {{"d_embedding", &mine->d_embedding, &exact->d_embedding, &alt->d_embedding},
                 {"d_tokens", &mine->d_tokens, &exact->d_tokens, &alt->d_tokens}};
  for (size_t t = 0; t < sizeof tensors / sizeof tensors[0]; t++) {
    PetscInt n = AckdTensorSize(tensors[t].a);
    err        = normwise(tensors[t].a->data, tensors[t].b->data, n);
    worst      = PetscMax(worst, err);
    differ += memcmp(tensors[t].a->data, tensors[t].c->data, (size_t)n * sizeof(float)) != 0;
    PetscCall(PetscPrintf(PETSC_COMM_SELF, "%-10s %-40s normwise %.1e\n", name, tensors[t].what, err));
  }
  for (PetscInt p = 0; p < exact->nentries; p++) {
    const AckdParamEntry *e = &exact->entries[p];
    err                     = normwise(mine->grads + e->offset, exact->grads + e->offset, e->size);
    worst                   = PetscMax(worst, err);
    differ += memcmp(mine->grads + e->offset, alt->grads + e->offset, (size_t)e->size * sizeof(float)) != 0;
    PetscCall(PetscPrintf(PETSC_COMM_SELF, "%-10s %-40s normwise %.1e\n", name, e->name, err));
  }
  PetscCall(PetscPrintf(PETSC_COMM_SELF, "%-10s worst %.1e (bound %.0e)%s\n", name, worst, bound,
                        worst <= bound && differ ? ""
                        : differ                 ? "  FAILED"
                                                 : "  FAILED: the path agrees to the bit with its neighbour"));
  if (!(worst <= bound) || !differ) *ok = PETSC_FALSE;
  PetscFunctionReturn(0);
}

static PetscErrorCode inputs_create(PetscInt tokens, const char *options, Inputs *x)
{
  AckdRng rng;

  PetscFunctionBeginUser;
  x->tokens  = tokens;
  x->options = options;
  PetscCall(AckdTensorAllocate(&x->zs, B, K, 1, 1));
  PetscCall(AckdTensorAllocate(&x->es, B, CS, 1, 1));
  PetscCall(AckdTensorAllocate(&x->ts, B, 1, tokens, CS));
  PetscCall(AckdTensorAllocate(&x->et, B, CT, 1, 1));
  PetscCall(AckdTensorAllocate(&x->tt, B, 1, tokens, CT));
  AckdRngInit(&rng, 9, (uint64_t)tokens, 0);
  /* as after a ReLU: non-negative tokens, each embedding the mean of its sample's tokens */
  for (PetscInt i = 0; i < B * K; i++) x->zs.data[i] = (float)(2.0 * AckdRngNormal(&rng));
  for (PetscInt i = 0; i < B * tokens * CS; i++) x->ts.data[i] = (float)AckdRngUniform(&rng);
  for (PetscInt i = 0; i < B * tokens * CT; i++) x->tt.data[i] = (float)AckdRngUniform(&rng);
  for (PetscInt b = 0; b < B; b++) {
    for (PetscInt c = 0; c < CS; c++) {
      double m = 0.0;
      for (PetscInt n = 0; n < tokens; n++) m += x->ts.data[(b * tokens + n) * CS + c];
      x->es.data[b * CS + c] = (float)(m / (double)tokens);
    }
    for (PetscInt c = 0; c < CT; c++) {
      double m = 0.0;
      for (PetscInt n = 0; n < tokens; n++) m += x->tt.data[(b * tokens + n) * CT + c];
      x->et.data[b * CT + c] = (float)(m / (double)tokens);
    }
    x->labels[b] = b % K;
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode inputs_free(Inputs *x)
{
  PetscFunctionBeginUser;
  AckdTensor *all[] = {&x->zs, &x->es, &x->ts, &x->et, &x->tt};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) PetscCall(AckdTensorFree(all[i]));
  PetscFunctionReturn(0);
}

/* Without bf16 instructions (or with oneDNN capped below them, ONEDNN_MAX_CPU_ISA), asking for
 * the maps in bf16 must fail at set-up with a user-input error, not run emulated kernels. */
static PetscErrorCode check_refusal(PetscBool *ok)
{
  AckdKD         kd;
  AckdKDDims     dims = study_dims(N);
  PetscErrorCode code;

  PetscFunctionBeginUser;
  PetscCall(PetscOptionsClear(NULL));
  PetscCall(PetscOptionsInsertString(NULL, "-kd_method none -sembridge -ska_maps_precision bf16"));
  PetscCall(AckdKDCreate(PETSC_COMM_SELF, &kd));
  PetscCall(AckdKDSetFromOptions(kd));
  PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
  code = AckdKDSetUp(kd, &dims);
  PetscCall(PetscPopErrorHandler());
  PetscCall(PetscPrintf(PETSC_COMM_SELF, "no bf16: -ska_maps_precision bf16 %s\n",
                        code == PETSC_ERR_USER_INPUT ? "refused at set-up" : "FAILED: not refused as bad input"));
  if (code != PETSC_ERR_USER_INPUT) *ok = PETSC_FALSE;
  PetscCall(AckdKDDestroy(&kd));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  static const struct {
    const char *name, *options;
    PetscInt    tokens;
  } cases[]    = {{"attention", "-kd_method none -sembridge", N},
                  {"sinkhorn", "-kd_method none -sembridge -ska_plan sinkhorn", N},
                  {"one_token", "-kd_method none -sembridge", 1}};
  PetscBool ok = PETSC_TRUE;

  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    Inputs x;
    PetscCall(inputs_create(cases[c].tokens, cases[c].options, &x));
    Result single, exact, bf16;
    PetscCall(run(&x, "-ska_precision single", &single));
    PetscCall(run(&x, "-ska_precision double", &exact));
    PetscCall(compare(cases[c].name, "-ska_precision single", &single, &exact, &exact, 1e-4, &ok));
    if (cases[c].tokens > 1 && AckdEngineHasBF16()) {
      PetscCall(run(&x, "-ska_maps_precision bf16", &bf16));
      PetscCall(compare(cases[c].name, "-ska_maps_precision bf16", &bf16, &exact, &single, BF16_BOUND, &ok));
      PetscCall(result_free(&bf16));
    }
    PetscCall(result_free(&single));
    PetscCall(result_free(&exact));
    PetscCall(inputs_free(&x));
  }
  if (!AckdEngineHasBF16()) PetscCall(check_refusal(&ok));
  PetscCall(PetscOptionsClear(NULL));
  PetscCheck(ok, PETSC_COMM_SELF, PETSC_ERR_PLIB, "SKA's single path is not within its bound of the double path");
  PetscCall(PetscFinalize());
  return 0;
}
