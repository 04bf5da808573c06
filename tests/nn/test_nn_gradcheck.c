/* Finite-difference gradient checks of every nn layer: input gradients and
 * parameter gradients against central differences of a random linear
 * functional of the output, L(x) = sum_i r_i y_i(x), whose output gradient
 * is r.
 *
 * Tolerances. The layers compute in float32, so the differences are taken in
 * float32 too (the loss itself is summed in double). With step h = 1e-2 on
 * inputs of order 1, the rounding noise of L is about sqrt(#outputs) * 6e-8,
 * i.e. ~1e-4 of a typical gradient after division by 2h; the truncation error
 * h^2/6 * f''' is zero for the layers linear in each coordinate (convolution,
 * linear, pooling, channel ops, dropout) and ~2e-5 for the curved ones (batch
 * norm, layer norm, GELU). Each component must satisfy
 *     |fd - analytic| <= tol * max(|analytic|, rms(analytic gradient)),
 * the rms floor keeping components near zero from failing on noise alone.
 * TOLERANCE = 1e-3 for every layer: 5-10x the largest errors observed
 * (1.8e-4 for attention, whose softmax is the most curved, 1.1e-4 for
 * average pooling, whose many small outputs carry the most rounding) and
 * still far below the error of any wrong term, which is of order 1. Kinks are kept out of reach of
 * the step: ReLU inputs sit at least 0.05 away from 0 and 6, and max-pooling
 * inputs are distinct values 0.03 apart. */
#include <ackd/nn.h>
#include <math.h>
#include "check.h"

enum { SCRATCH = 1 << 14, SAMPLES = 24 };
static const double STEP = 1e-2, TOLERANCE = 1e-3;

typedef struct Case Case;
struct Case {
  const char *name;
  double      tol;
  AckdEngine *engine;
  AckdParams  params;
  AckdTensor  x;
  PetscErrorCode (*forward)(Case *, const AckdTensor *x, AckdTensor *y);
  PetscErrorCode (*backward)(Case *, const AckdTensor *x, const AckdTensor *dy, AckdTensor *dx);
  /* the layer under test */
  AckdConv           conv;
  AckdBatchNorm      bn;
  AckdPool           pool;
  AckdLinear         linear;
  AckdDropout        dropout;
  AckdLayerNorm      ln;
  AckdAttention      att;
  AckdActivationKind act;
  PetscInt           groups;
  float             *tmp, *tmp2; /* scratch for composite cases */
};

/* ---------------------------------------------------------------- layer adapters */

static PetscErrorCode conv_f(Case *c, const AckdTensor *x, AckdTensor *y)
{
  return AckdConvForward(&c->conv, c->engine, x, y);
}
static PetscErrorCode conv_b(Case *c, const AckdTensor *x, const AckdTensor *dy, AckdTensor *dx)
{
  return AckdConvBackward(&c->conv, c->engine, x, dy, dx);
}
static PetscErrorCode bn_f(Case *c, const AckdTensor *x, AckdTensor *y)
{
  return AckdBatchNormForward(&c->bn, c->engine, x, y);
}
static PetscErrorCode bn_b(Case *c, const AckdTensor *x, const AckdTensor *dy, AckdTensor *dx)
{
  return AckdBatchNormBackward(&c->bn, c->engine, x, dy, dx);
}
static PetscErrorCode pool_f(Case *c, const AckdTensor *x, AckdTensor *y)
{
  return AckdPoolForward(&c->pool, c->engine, x, y);
}
static PetscErrorCode pool_b(Case *c, const AckdTensor *x, const AckdTensor *dy, AckdTensor *dx)
{
  return AckdPoolBackward(&c->pool, c->engine, x, dy, dx);
}
static PetscErrorCode act_f(Case *c, const AckdTensor *x, AckdTensor *y)
{
  return AckdActivationForward(c->act, x, y);
}
static PetscErrorCode act_b(Case *c, const AckdTensor *x, const AckdTensor *dy, AckdTensor *dx)
{
  return AckdActivationBackward(c->act, x, dy, dx);
}
static PetscErrorCode linear_f(Case *c, const AckdTensor *x, AckdTensor *y)
{
  return AckdLinearForward(&c->linear, c->engine, x, y);
}
static PetscErrorCode linear_b(Case *c, const AckdTensor *x, const AckdTensor *dy, AckdTensor *dx)
{
  return AckdLinearBackward(&c->linear, c->engine, x, dy, dx);
}
static PetscErrorCode dropout_f(Case *c, const AckdTensor *x, AckdTensor *y)
{
  return AckdDropoutForward(&c->dropout, x, y);
}
static PetscErrorCode dropout_b(Case *c, const AckdTensor *x, const AckdTensor *dy, AckdTensor *dx)
{
  return AckdDropoutBackward(&c->dropout, dy, dx);
}
static PetscErrorCode ln_f(Case *c, const AckdTensor *x, AckdTensor *y)
{
  return AckdLayerNormForward(&c->ln, x, y);
}
static PetscErrorCode ln_b(Case *c, const AckdTensor *x, const AckdTensor *dy, AckdTensor *dx)
{
  return AckdLayerNormBackward(&c->ln, x, dy, dx);
}
static PetscErrorCode attention_f(Case *c, const AckdTensor *x, AckdTensor *y)
{
  return AckdAttentionForward(&c->att, x, y);
}
static PetscErrorCode attention_b(Case *c, const AckdTensor *x, const AckdTensor *dy, AckdTensor *dx)
{
  return AckdAttentionBackward(&c->att, x, dy, dx);
}
static PetscErrorCode shuffle_f(Case *c, const AckdTensor *x, AckdTensor *y)
{
  return AckdChannelShuffle(x, c->groups, y);
}
static PetscErrorCode shuffle_b(Case *c, const AckdTensor *x, const AckdTensor *dy, AckdTensor *dx)
{
  return AckdChannelShuffle(dy, dy->c / c->groups, dx);
}
/* y = a + b with (a, b) = split(x): add, split and concat in one check. */
static PetscErrorCode split_add_f(Case *c, const AckdTensor *x, AckdTensor *y)
{
  AckdTensor a = {.data = c->tmp, .c = x->c / 2}, b = {.data = c->tmp2};

  PetscFunctionBeginUser;
  PetscCall(AckdChannelSplit(x, &a, &b));
  PetscCall(AckdAddForward(&a, &b, y));
  PetscFunctionReturn(0);
}
static PetscErrorCode split_add_b(Case *c, const AckdTensor *x, const AckdTensor *dy, AckdTensor *dx)
{
  PetscFunctionBeginUser;
  PetscCall(AckdChannelConcat(dy, dy, dx));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------- the check */

static void fill_uniform(AckdRng *rng, float *v, PetscInt n, double lo, double hi)
{
  for (PetscInt i = 0; i < n; i++) v[i] = (float)AckdRngUniformRange(rng, lo, hi);
}

/* Values bounded away from ReLU's and ReLU6's kinks. */
static void fill_away_from_kinks(AckdRng *rng, float *v, PetscInt n)
{
  for (PetscInt i = 0; i < n; i++) {
    double u;
    do u = AckdRngUniformRange(rng, -2.0, 7.0);
    while (fabs(u) < 0.05 || fabs(u - 6.0) < 0.05);
    v[i] = (float)u;
  }
}

/* Distinct values 0.03 apart, shuffled: every pooling window has a unique
 * maximum that a step of 1e-2 cannot displace. */
static void fill_distinct(AckdRng *rng, float *v, PetscInt n)
{
  PetscInt *perm = malloc(sizeof(PetscInt) * n);
  AckdRngPermutation(rng, n, perm);
  for (PetscInt i = 0; i < n; i++) v[i] = (float)(0.03 * (perm[i] - n / 2));
  free(perm);
}

static PetscErrorCode loss(Case *c, const float *r, PetscInt nout, float *ybuf, double *value)
{
  AckdTensor y = {.data = ybuf};

  PetscFunctionBeginUser;
  PetscCall(c->forward(c, &c->x, &y));
  PetscCheck(AckdTensorSize(&y) == nout, PETSC_COMM_SELF, PETSC_ERR_PLIB, "output size changed");
  double s = 0.0;
  for (PetscInt i = 0; i < nout; i++) s += (double)r[i] * ybuf[i];
  *value = s;
  PetscFunctionReturn(0);
}

/* Compares `analytic` (n values) with central differences of the entries of
 * `v` (the perturbed array), on SAMPLES evenly spread components. */
static PetscErrorCode compare(Case *c, const char *what, float *v, const float *analytic, PetscInt n, const float *r,
                              PetscInt nout, float *ybuf, double *worst)
{
  double rms = 0.0;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < n; i++) rms += (double)analytic[i] * analytic[i];
  rms = sqrt(rms / n);
  CHECK(rms > 0.0, "%s %s: the analytic gradient is identically zero", c->name, what);
  PetscInt stride = PetscMax(1, n / SAMPLES);
  for (PetscInt i = stride / 2; i < n; i += stride) {
    float  saved = v[i];
    double lp, lm;
    v[i] = (float)(saved + STEP);
    PetscCall(loss(c, r, nout, ybuf, &lp));
    v[i] = (float)(saved - STEP);
    PetscCall(loss(c, r, nout, ybuf, &lm));
    v[i]       = saved;
    double fd  = (lp - lm) / (2.0 * STEP);
    double err = fabs(fd - analytic[i]) / PetscMax(fabs(analytic[i]), rms);
    *worst     = PetscMax(*worst, err);
    CHECK(err <= c->tol, "%s %s[%" PetscInt_FMT "]: finite difference %.6g, analytic %.6g (error %.2e > %.1e)", c->name,
          what, i, fd, (double)analytic[i], err, c->tol);
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode run(Case *c, PetscBool check_input)
{
  float     *ybuf, *r, *dxbuf, *grads;
  AckdRng    rng;
  AckdTensor y     = {0}, dy, dx;
  double     worst = 0.0;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc3(SCRATCH, &ybuf, SCRATCH, &r, SCRATCH, &dxbuf));
  y.data = ybuf;
  PetscCall(c->forward(c, &c->x, &y));
  PetscInt nout = AckdTensorSize(&y);
  AckdRngInit(&rng, 7, 0, 0x52u);
  fill_uniform(&rng, r, nout, -1.0, 1.0);
  dy = AckdTensorView(r, y.n, y.c, y.h, y.w);
  dx = AckdTensorView(dxbuf, 0, 0, 0, 0);
  /* forward once more so that stateful layers (max pooling's argmax) match x */
  PetscCall(c->forward(c, &c->x, &y));
  PetscCall(c->backward(c, &c->x, &dy, &dx));
  PetscInt nparams = c->params.setup ? c->params.size : 0;
  PetscCall(PetscMalloc1(PetscMax(nparams, 1), &grads));
  if (nparams) PetscCall(PetscArraycpy(grads, c->params.grads, nparams));
  if (check_input) {
    PetscCall(compare(c, "input", c->x.data, dxbuf, AckdTensorSize(&c->x), r, nout, ybuf, &worst));
  }
  for (PetscInt p = 0; c->params.setup && p < c->params.nparams; p++) {
    const AckdParamEntry *e = &c->params.params[p];
    PetscCall(compare(c, e->name, c->params.values + e->offset, grads + e->offset, e->size, r, nout, ybuf, &worst));
  }
  printf("%-28s worst relative error %.2e (tolerance %.0e)\n", c->name, worst, c->tol);
  PetscCall(PetscFree(grads));
  PetscCall(PetscFree3(ybuf, r, dxbuf));
  PetscFunctionReturn(0);
}

static PetscErrorCode case_begin(Case *c, AckdEngine *engine, const char *name, double tol, PetscInt n, PetscInt ch,
                                 PetscInt h, PetscInt w)
{
  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(c, sizeof *c));
  c->name   = name;
  c->tol    = tol;
  c->engine = engine;
  PetscCall(AckdParamsCreate(&c->params));
  PetscCall(AckdTensorAllocate(&c->x, n, ch, h, w));
  PetscFunctionReturn(0);
}

/* Parameters drawn from PyTorch's defaults, then norms' scales and shifts
 * moved off 1 and 0 so that their gradients are not degenerate. */
static PetscErrorCode case_params(Case *c, AckdRng *rng)
{
  PetscFunctionBeginUser;
  PetscCall(AckdParamsSetUp(&c->params));
  PetscCall(AckdParamsInitialize(&c->params, 11));
  for (PetscInt p = 0; p < c->params.nparams; p++) {
    AckdParamEntry *e = &c->params.params[p];
    if (e->init == ACKD_INIT_ONES) fill_uniform(rng, c->params.values + e->offset, e->size, 0.5, 1.5);
    if (e->init == ACKD_INIT_ZEROS) fill_uniform(rng, c->params.values + e->offset, e->size, -0.5, 0.5);
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode case_end(Case *c)
{
  PetscFunctionBeginUser;
  PetscCall(AckdConvDestroy(&c->conv));
  PetscCall(AckdBatchNormDestroy(&c->bn));
  PetscCall(AckdPoolDestroy(&c->pool));
  PetscCall(AckdDropoutDestroy(&c->dropout));
  PetscCall(AckdLayerNormDestroy(&c->ln));
  PetscCall(AckdAttentionDestroy(&c->att));
  if (c->params.setup) PetscCall(AckdParamsDestroy(&c->params));
  PetscCall(AckdTensorFree(&c->x));
  PetscCall(PetscFree2(c->tmp, c->tmp2));
  PetscFunctionReturn(0);
}

typedef struct {
  const char *name;
  PetscInt    cin, cout, k, s, p, g, n, h, w;
  PetscBool   bias;
} ConvSpec;

static PetscErrorCode check_convolutions(AckdEngine *engine, AckdRng *rng)
{
  /* plain, grouped, depthwise, 1x1 stride-2 projection (negative right
   * padding in oneDNN's terms), the 7x7 stem on an odd size */
  const ConvSpec specs[] = {
      {"conv 3x3", 3, 4, 3, 1, 1, 1, 2, 7, 7, PETSC_TRUE},
      {"conv 3x3 s2 groups 2", 4, 6, 3, 2, 1, 2, 2, 8, 8, PETSC_FALSE},
      {"conv depthwise s2", 4, 4, 3, 2, 1, 4, 2, 9, 9, PETSC_FALSE},
      {"conv 1x1 s2", 4, 6, 1, 2, 0, 1, 2, 8, 8, PETSC_FALSE},
      {"conv 7x7 s2 stem", 3, 4, 7, 2, 3, 1, 2, 15, 15, PETSC_TRUE},
  };
  PetscFunctionBeginUser;
  for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
    const ConvSpec *s = &specs[i];
    Case            c;
    PetscCall(case_begin(&c, engine, s->name, TOLERANCE, s->n, s->cin, s->h, s->w));
    PetscCall(AckdConvSetUp(&c.conv, &c.params, "conv", s->cin, s->cout, s->k, s->s, s->p, s->g, s->bias));
    PetscCall(case_params(&c, rng));
    fill_uniform(rng, c.x.data, AckdTensorSize(&c.x), -1.0, 1.0);
    c.forward  = conv_f;
    c.backward = conv_b;
    PetscCall(run(&c, PETSC_TRUE));
    PetscCall(case_end(&c));
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode check_batchnorm(AckdEngine *engine, AckdRng *rng, PetscBool training)
{
  Case c;

  PetscFunctionBeginUser;
  PetscCall(case_begin(&c, engine, training ? "batchnorm train" : "batchnorm eval", TOLERANCE, 3, 5, 4, 4));
  PetscCall(AckdBatchNormSetUp(&c.bn, &c.params, "bn", 5));
  PetscCall(case_params(&c, rng));
  fill_uniform(rng, c.params.buffer_values + c.bn.running_mean, 5, -0.5, 0.5);
  fill_uniform(rng, c.params.buffer_values + c.bn.running_var, 5, 0.5, 1.5);
  fill_uniform(rng, c.x.data, AckdTensorSize(&c.x), -1.0, 1.5);
  c.bn.training = training;
  c.forward     = bn_f;
  c.backward    = bn_b;
  PetscCall(run(&c, PETSC_TRUE));
  PetscCall(case_end(&c));
  PetscFunctionReturn(0);
}

static PetscErrorCode check_pooling(AckdEngine *engine, AckdRng *rng)
{
  struct {
    const char  *name;
    AckdPoolKind kind;
    PetscInt     k, s, p, h;
  } specs[] = {
      {"maxpool 3x3 s2 p1 odd", ACKD_POOL_MAX, 3, 2, 1, 9}, {"maxpool 3x3 s2 p1 even", ACKD_POOL_MAX, 3, 2, 1, 8},
      {"maxpool 2x2 s2", ACKD_POOL_MAX, 2, 2, 0, 6},        {"avgpool 3x3 s2 p1", ACKD_POOL_AVG, 3, 2, 1, 9},
      {"global avgpool", ACKD_POOL_GLOBAL_AVG, 0, 0, 0, 5},
  };
  PetscFunctionBeginUser;
  for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
    Case c;
    PetscCall(case_begin(&c, engine, specs[i].name, TOLERANCE, 2, 3, specs[i].h, specs[i].h));
    PetscCall(AckdPoolSetUp(&c.pool, "pool", specs[i].kind, specs[i].k, specs[i].s, specs[i].p));
    fill_distinct(rng, c.x.data, AckdTensorSize(&c.x));
    c.forward  = pool_f;
    c.backward = pool_b;
    PetscCall(run(&c, PETSC_TRUE));
    PetscCall(case_end(&c));
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode check_activations(AckdEngine *engine, AckdRng *rng)
{
  const char        *names[] = {"relu", "relu6", "gelu"};
  AckdActivationKind kinds[] = {ACKD_ACT_RELU, ACKD_ACT_RELU6, ACKD_ACT_GELU};

  PetscFunctionBeginUser;
  for (int i = 0; i < 3; i++) {
    Case c;
    PetscCall(case_begin(&c, engine, names[i], TOLERANCE, 2, 3, 5, 5));
    if (kinds[i] == ACKD_ACT_GELU)
      fill_uniform(rng, c.x.data, AckdTensorSize(&c.x), -3.0, 3.0);
    else
      fill_away_from_kinks(rng, c.x.data, AckdTensorSize(&c.x));
    c.act      = kinds[i];
    c.forward  = act_f;
    c.backward = act_b;
    PetscCall(run(&c, PETSC_TRUE));
    PetscCall(case_end(&c));
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode check_linear_family(AckdEngine *engine, AckdRng *rng)
{
  Case c;

  PetscFunctionBeginUser;
  /* on flattened feature maps, and on the rows of a token sequence */
  PetscCall(case_begin(&c, engine, "linear flatten", TOLERANCE, 3, 4, 2, 2));
  PetscCall(AckdLinearSetUp(&c.linear, &c.params, "fc", 16, 5, PETSC_TRUE));
  PetscCall(case_params(&c, rng));
  fill_uniform(rng, c.x.data, AckdTensorSize(&c.x), -1.0, 1.0);
  c.forward  = linear_f;
  c.backward = linear_b;
  PetscCall(run(&c, PETSC_TRUE));
  PetscCall(case_end(&c));

  PetscCall(case_begin(&c, engine, "linear tokens", TOLERANCE, 2, 1, 3, 8));
  PetscCall(AckdLinearSetUp(&c.linear, &c.params, "proj", 8, 6, PETSC_FALSE));
  PetscCall(case_params(&c, rng));
  fill_uniform(rng, c.x.data, AckdTensorSize(&c.x), -1.0, 1.0);
  c.forward  = linear_f;
  c.backward = linear_b;
  PetscCall(run(&c, PETSC_TRUE));
  PetscCall(case_end(&c));

  PetscCall(case_begin(&c, engine, "layernorm tokens", TOLERANCE, 2, 1, 3, 8));
  PetscCall(AckdLayerNormSetUp(&c.ln, &c.params, "ln", 8));
  PetscCall(case_params(&c, rng));
  fill_uniform(rng, c.x.data, AckdTensorSize(&c.x), -1.0, 2.0);
  c.forward  = ln_f;
  c.backward = ln_b;
  PetscCall(run(&c, PETSC_TRUE));
  PetscCall(case_end(&c));

  PetscCall(case_begin(&c, engine, "attention 2 heads", TOLERANCE, 2, 1, 5, 8));
  PetscCall(AckdAttentionSetUp(&c.att, &c.params, "attn", 8, 2, PETSC_TRUE));
  PetscCall(case_params(&c, rng));
  fill_uniform(rng, c.x.data, AckdTensorSize(&c.x), -1.0, 1.0);
  c.forward  = attention_f;
  c.backward = attention_b;
  PetscCall(run(&c, PETSC_TRUE));
  PetscCall(case_end(&c));

  PetscCall(case_begin(&c, engine, "dropout p=0.3", TOLERANCE, 4, 3, 4, 4));
  PetscCall(AckdDropoutSetUp(&c.dropout, "drop", 0.3, 5, 1));
  c.dropout.step = 17;
  fill_uniform(rng, c.x.data, AckdTensorSize(&c.x), -1.0, 1.0);
  c.forward  = dropout_f;
  c.backward = dropout_b;
  PetscCall(run(&c, PETSC_TRUE));
  PetscCall(case_end(&c));
  PetscFunctionReturn(0);
}

static PetscErrorCode check_channel_ops(AckdEngine *engine, AckdRng *rng)
{
  Case c;

  PetscFunctionBeginUser;
  PetscCall(case_begin(&c, engine, "channel shuffle g=2", TOLERANCE, 2, 6, 3, 3));
  fill_uniform(rng, c.x.data, AckdTensorSize(&c.x), -1.0, 1.0);
  c.groups   = 2;
  c.forward  = shuffle_f;
  c.backward = shuffle_b;
  PetscCall(run(&c, PETSC_TRUE));
  PetscCall(case_end(&c));

  PetscCall(case_begin(&c, engine, "split + add + concat", TOLERANCE, 2, 6, 3, 3));
  PetscCall(PetscMalloc2(SCRATCH, &c.tmp, SCRATCH, &c.tmp2));
  fill_uniform(rng, c.x.data, AckdTensorSize(&c.x), -1.0, 1.0);
  c.forward  = split_add_f;
  c.backward = split_add_b;
  PetscCall(run(&c, PETSC_TRUE));
  PetscCall(case_end(&c));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  AckdEngine engine;
  AckdRng    rng;

  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  PetscCall(AckdEngineCreate(1, &engine));
  AckdRngInit(&rng, 2024, 0, 0x6763u);
  PetscCall(check_convolutions(&engine, &rng));
  PetscCall(check_batchnorm(&engine, &rng, PETSC_TRUE));
  PetscCall(check_batchnorm(&engine, &rng, PETSC_FALSE));
  PetscCall(check_pooling(&engine, &rng));
  PetscCall(check_activations(&engine, &rng));
  PetscCall(check_linear_family(&engine, &rng));
  PetscCall(check_channel_ops(&engine, &rng));
  PetscCall(AckdEngineDestroy(&engine));
  int failed = CHECK_REPORT("nn gradient checks");
  PetscCall(PetscFinalize());
  return failed;
}
