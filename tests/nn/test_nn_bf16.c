/* bf16 convolutions (-precision bf16) against a second implementation: a direct convolution in
 * double of the operands rounded to bfloat16 (round to nearest even), the rounding the
 * precision promises and the only one. The products of two bf16 values are exact in float32,
 * so what separates oneDNN's result from that reference is float32 accumulation: at most
 * (K + 2) u |terms| for K terms, u = 2^-24 (Higham's gamma bound, the bias and the conversion
 * of a plain result included). An operand not rounded, or rounded another way, is off by about
 * 2^-9 of a term, three orders above that bound, which the test checks it can see: the float32
 * convolution of the same inputs must lie outside the bound somewhere.
 *
 * Depthwise and grouped convolutions stay float32 under bf16 (src/nn/conv.c says why): theirs must
 * be bitwise the float32 engine's.
 *
 * AckdGemmBF16 (SKA's maps under -ska_maps_precision bf16) is held to the same reference.
 *
 * On a CPU without AVX512_BF16 or AMX the precision and the GEMM must be refused, and that is checked
 * instead of the arithmetic; ackd's own rounding (the ports' conversion) is checked on every CPU. */
#include <ackd/nn.h>
#include <ackd/core.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "../check.h"
#include "nn/nn_private.h"

typedef struct {
  const char *name;
  PetscInt    cin, cout, k, s, p, g, n, h, w, block; /* block: the tensors' channel block (1: plain NCHW) */
  PetscBool   bias;
} Spec;

static float round_bf16(float v)
{
  uint32_t u;
  memcpy(&u, &v, sizeof u);
  u += 0x7fffu + ((u >> 16) & 1u); /* to nearest, ties to even */
  u &= 0xffff0000u;
  memcpy(&v, &u, sizeof v);
  return v;
}

/* A tensor in channel block `block` (1: plain), its channels rounded up to whole blocks; the
 * padding stays zero. */
static PetscErrorCode tensor_alloc(AckdTensor *t, PetscInt n, PetscInt c, PetscInt h, PetscInt w, PetscInt block)
{
  PetscFunctionBeginUser;
  PetscCall(AckdTensorAllocate(t, n, (c + block - 1) / block * block, h, w));
  t->c     = c;
  t->block = block > 1 ? block : 0;
  PetscFunctionReturn(0);
}

static PetscErrorCode tensor_make(AckdTensor *t, PetscInt n, PetscInt c, PetscInt h, PetscInt w, PetscInt block,
                                  AckdRng *rng)
{
  PetscFunctionBeginUser;
  PetscCall(tensor_alloc(t, n, c, h, w, block));
  for (PetscInt s = 0; s < n; s++)
    for (PetscInt ch = 0; ch < c; ch++)
      for (PetscInt p = 0; p < h * w; p++) t->data[AckdNNOffset(t, s, ch, p)] = (float)AckdRngUniformRange(rng, -1, 1);
  PetscFunctionReturn(0);
}

/* Largest |got - want| / bound over a tensor, and whether `other` (the float32 result) exceeds the
 * bound anywhere: the proof that the operands were rounded at all. */
typedef struct {
  double worst, other_worst;
} Gap;

static void gap_add(Gap *g, double got, double want, double bound, double other)
{
  g->worst       = PetscMax(g->worst, fabs(got - want) / bound);
  g->other_worst = PetscMax(g->other_worst, fabs(other - want) / bound);
}

static void gap_check(const char *spec, const char *what, Gap g)
{
  printf("  %-24s %-16s error/bound %.3f, float32's %.1f\n", spec, what, g.worst, g.other_worst);
  CHECK(g.worst <= 1.0, "%s: %s off the bf16 reference by %.2f times the accumulation bound", spec, what, g.worst);
  CHECK(g.other_worst > 1.0, "%s: %s in float32 is within the bf16 bound: the test cannot see the rounding", spec,
        what);
}

/* One engine's run of a layer: its output, input gradient and (in params.grads) parameter gradients. */
typedef struct {
  AckdParams params;
  AckdConv   conv;
  AckdTensor y, dx;
} Run;

static PetscErrorCode run_conv(const Spec *s, AckdEngine *engine, const AckdTensor *x, const AckdTensor *dy,
                               const float *values, Run *r)
{
  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(r, sizeof *r));
  PetscCall(AckdParamsCreate(&r->params));
  PetscCall(AckdConvSetUp(&r->conv, &r->params, "conv", s->cin, s->cout, s->k, s->s, s->p, s->g, s->bias));
  PetscCall(AckdParamsSetUp(&r->params));
  PetscCall(PetscArraycpy(r->params.values, values, r->params.size));
  PetscCall(AckdParamsZeroGrad(&r->params));
  AckdTensor shape;
  PetscCall(AckdConvOutputShape(&r->conv, x, &shape));
  PetscCall(tensor_alloc(&r->y, shape.n, shape.c, shape.h, shape.w, s->block));
  PetscCall(tensor_alloc(&r->dx, x->n, x->c, x->h, x->w, s->block));
  PetscCall(AckdConvForward(&r->conv, engine, x, &r->y));
  PetscCall(AckdConvBackward(&r->conv, engine, x, dy, &r->dx));
  PetscFunctionReturn(0);
}

static PetscErrorCode run_free(Run *r)
{
  PetscFunctionBeginUser;
  PetscCall(AckdConvDestroy(&r->conv));
  PetscCall(AckdTensorFree(&r->y));
  PetscCall(AckdTensorFree(&r->dx));
  PetscCall(AckdParamsDestroy(&r->params));
  PetscFunctionReturn(0);
}

/* One layer's runs: the same parameters, input and output gradient through both engines. */
typedef struct {
  const Spec *s;
  AckdParams  layout;
  AckdConv    conv;
  AckdTensor  x, dy, shape;
  Run         lo, hi; /* bf16 and float32 */
} Case;

static PetscErrorCode case_run(const Spec *s, AckdEngine *fp32, AckdEngine *bf16, AckdRng *rng, Case *c)
{
  PetscFunctionBeginUser;
  c->s = s;
  /* the parameters drawn once, PyTorch's initialisation, shared by both runs */
  PetscCall(AckdParamsCreate(&c->layout));
  PetscCall(AckdConvSetUp(&c->conv, &c->layout, "conv", s->cin, s->cout, s->k, s->s, s->p, s->g, s->bias));
  PetscCall(AckdParamsSetUp(&c->layout));
  PetscCall(AckdParamsInitialize(&c->layout, 7));
  if (s->bias)
    for (PetscInt o = 0; o < s->cout; o++)
      c->layout.values[c->conv.bias + o] = (float)AckdRngUniformRange(rng, -0.5, 0.5);
  PetscCall(tensor_make(&c->x, s->n, s->cin, s->h, s->w, s->block, rng));
  PetscCall(AckdConvOutputShape(&c->conv, &c->x, &c->shape));
  PetscCall(tensor_make(&c->dy, c->shape.n, c->shape.c, c->shape.h, c->shape.w, s->block, rng));
  PetscCall(run_conv(s, bf16, &c->x, &c->dy, c->layout.values, &c->lo));
  PetscCall(run_conv(s, fp32, &c->x, &c->dy, c->layout.values, &c->hi));
  PetscFunctionReturn(0);
}

static PetscErrorCode case_free(Case *c)
{
  PetscFunctionBeginUser;
  PetscCall(run_free(&c->lo));
  PetscCall(run_free(&c->hi));
  PetscCall(AckdConvDestroy(&c->conv));
  PetscCall(AckdParamsDestroy(&c->layout));
  PetscCall(AckdTensorFree(&c->x));
  PetscCall(AckdTensorFree(&c->dy));
  PetscFunctionReturn(0);
}

/* A grouped or depthwise layer: bitwise the float32 engine's. */
static void check_stays_float32(const Case *c)
{
  PetscBool same = !memcmp(c->lo.y.data, c->hi.y.data, AckdTensorStorage(&c->lo.y) * sizeof(float)) &&
                   !memcmp(c->lo.dx.data, c->hi.dx.data, AckdTensorStorage(&c->lo.dx) * sizeof(float)) &&
                   !memcmp(c->lo.params.grads, c->hi.params.grads, c->lo.params.size * sizeof(float));
  printf("  %-24s stays float32: %s\n", c->s->name, same ? "bitwise the float32 engine's" : "it does not");
  CHECK(same, "%s: a grouped convolution under bf16 is not bitwise float32's", c->s->name);
}

static PetscErrorCode check_against_reference(const Case *c)
{
  const Spec *s = c->s;

  PetscFunctionBeginUser;
  /* the reference: every term of all three convolutions once, with its magnitude */
  PetscInt cin_g = s->cin / s->g, cout_g = s->cout / s->g, k = s->k, oh = c->shape.h, ow = c->shape.w;
  PetscInt ny = s->n * s->cout * oh * ow, nx = s->n * s->cin * s->h * s->w, nw = s->cout * cin_g * k * k;
  double  *y, *ym, *dx, *dxm, *dw, *dwm, *db, *dbm;
  PetscCall(PetscCalloc4(ny, &y, ny, &ym, nx, &dx, nx, &dxm));
  PetscCall(PetscCalloc4(nw, &dw, nw, &dwm, s->cout, &db, s->cout, &dbm));
  const float *wv = c->layout.values + c->conv.weight;
  for (PetscInt n = 0; n < s->n; n++)
    for (PetscInt o = 0; o < s->cout; o++)
      for (PetscInt i = 0; i < oh; i++)
        for (PetscInt j = 0; j < ow; j++) {
          PetscInt yi = ((n * s->cout + o) * oh + i) * ow + j;
          double   g  = round_bf16(c->dy.data[AckdNNOffset(&c->dy, n, o, i * ow + j)]);
          db[o] += g;
          dbm[o] += fabs(g);
          for (PetscInt ci = 0; ci < cin_g; ci++) {
            PetscInt ch = o / cout_g * cin_g + ci;
            for (PetscInt a = 0; a < k; a++)
              for (PetscInt b = 0; b < k; b++) {
                PetscInt ih = i * s->s - s->p + a, iw = j * s->s - s->p + b;
                if (ih < 0 || ih >= s->h || iw < 0 || iw >= s->w) continue;
                PetscInt wi = ((o * cin_g + ci) * k + a) * k + b, xi = ((n * s->cin + ch) * s->h + ih) * s->w + iw;
                double   xv = round_bf16(c->x.data[AckdNNOffset(&c->x, n, ch, ih * s->w + iw)]), w = round_bf16(wv[wi]);
                y[yi] += xv * w;
                ym[yi] += fabs(xv * w);
                dx[xi] += g * w;
                dxm[xi] += fabs(g * w);
                dw[wi] += g * xv;
                dwm[wi] += fabs(g * xv);
              }
          }
        }

  const double u = ldexp(1.0, -24), tiny = 1e-30;
  Gap          gy = {0}, gx = {0}, gw = {0}, gb = {0};
  for (PetscInt n = 0; n < s->n; n++)
    for (PetscInt o = 0; o < s->cout; o++)
      for (PetscInt p = 0; p < oh * ow; p++) {
        PetscInt yi = (n * s->cout + o) * oh * ow + p, at = AckdNNOffset(&c->lo.y, n, o, p);
        double   bias = s->bias ? c->layout.values[c->conv.bias + o] : 0;
        gap_add(&gy, c->lo.y.data[at], y[yi] + bias, (cin_g * k * k + 2) * u * (ym[yi] + fabs(bias)) + tiny,
                c->hi.y.data[at]);
      }
  for (PetscInt n = 0; n < s->n; n++)
    for (PetscInt ch = 0; ch < s->cin; ch++)
      for (PetscInt p = 0; p < s->h * s->w; p++) {
        PetscInt xi = (n * s->cin + ch) * s->h * s->w + p, at = AckdNNOffset(&c->lo.dx, n, ch, p);
        gap_add(&gx, c->lo.dx.data[at], dx[xi], (cout_g * k * k + 2) * u * dxm[xi] + tiny, c->hi.dx.data[at]);
      }
  PetscInt terms = s->n * oh * ow;
  for (PetscInt i = 0; i < nw; i++)
    gap_add(&gw, c->lo.params.grads[c->conv.weight + i], dw[i], (terms + 2) * u * dwm[i] + tiny,
            c->hi.params.grads[c->conv.weight + i]);
  if (s->bias)
    for (PetscInt o = 0; o < s->cout; o++)
      gap_add(&gb, c->lo.params.grads[c->conv.bias + o], db[o], (terms + 2) * u * dbm[o] + tiny,
              c->hi.params.grads[c->conv.bias + o]);
  gap_check(s->name, "output", gy);
  gap_check(s->name, "input gradient", gx);
  gap_check(s->name, "weight gradient", gw);
  if (s->bias) gap_check(s->name, "bias gradient", gb);

  PetscCall(PetscFree4(y, ym, dx, dxm));
  PetscCall(PetscFree4(dw, dwm, db, dbm));
  PetscFunctionReturn(0);
}

/* ackd's own conversion (the ports' when only the type changes): ties, the range's ends and NaN
 * by their bit patterns, and a million random floats against round_bf16 above. */
static PetscErrorCode check_rounding(AckdRng *rng)
{
  const uint32_t cases[][2] = {
      {0x3f800000u, 0x3f80u}, /* 1 */
      {0x3f808000u, 0x3f80u}, /* 1 + 2^-8: a tie, to the even 1 */
      {0x3f818000u, 0x3f82u}, /* a tie, to the even neighbour above */
      {0x3f808001u, 0x3f81u}, /* just above a tie */
      {0xbf808001u, 0xbf81u}, /* the same, negative */
      {0x7f7fffffu, 0x7f80u}, /* the largest float rounds to infinity, as to nearest must */
      {0x7f800000u, 0x7f80u}, /* infinity */
      {0x7fc00000u, 0x7fc0u}, /* a quiet NaN */
      {0x7f800001u, 0x7fc0u}, /* a signalling NaN whose payload would carry it to infinity */
      {0x00018000u, 0x0002u}, /* a subnormal tie */
  };
  const size_t n = 1 << 20;
  float       *from;
  uint16_t    *to, one;
  size_t       wrong = 0;

  PetscFunctionBeginUser;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    float f;
    memcpy(&f, &cases[i][0], sizeof f);
    AckdRoundBF16(&f, &one, 1);
    CHECK(one == cases[i][1], "0x%08x rounds to 0x%04x, not 0x%04x", cases[i][0], one, cases[i][1]);
  }
  PetscCall(PetscMalloc2(n, &from, n, &to));
  for (size_t i = 0; i < n; i++) from[i] = (float)AckdRngUniformRange(rng, -4, 4);
  AckdRoundBF16(from, to, n);
  for (size_t i = 0; i < n; i++) {
    float    r = round_bf16(from[i]);
    uint32_t u;
    memcpy(&u, &r, sizeof u);
    wrong += to[i] != (uint16_t)(u >> 16);
  }
  printf("  rounding to bf16: %zu special values, %zu random ones, %zu differ\n", sizeof cases / sizeof cases[0], n,
         wrong);
  CHECK(wrong == 0, "%zu of %zu random floats rounded otherwise than to nearest even", wrong, n);
  PetscCall(PetscFree2(from, to));
  PetscFunctionReturn(0);
}

/* AckdGemmBF16 against the same reference as the convolutions: the product in double of the
 * operands rounded to bf16, within (k + 2) u of the terms' magnitudes. Every transposition, odd
 * sizes, C's old values overwritten, and more shapes than its plan slots (the
 * first shape again after they were all replaced). The single-precision product of the unrounded
 * operands must fall outside that bound somewhere: the operands really are rounded. */
static PetscErrorCode check_gemm(AckdRng *rng)
{
  const PetscInt M = 37, N = 29, K = 67;
  AckdGemmBF16   gemm;
  float         *a, *b, *c, *single;
  uint16_t      *ab, *bb;
  double         worst          = 0.0;
  PetscBool      single_outside = PETSC_FALSE;

  PetscFunctionBeginUser;
  PetscCall(AckdGemmBF16Create(&gemm));
  PetscCall(PetscMalloc5(M * K, &a, K * N, &b, M * N, &c, M * N, &single, M * K, &ab));
  PetscCall(PetscMalloc1(K * N, &bb));
  for (PetscInt i = 0; i < M * K; i++) a[i] = (float)AckdRngNormal(rng);
  for (PetscInt i = 0; i < K * N; i++) b[i] = (float)AckdRngNormal(rng);
  AckdRoundBF16(a, ab, (size_t)(M * K));
  AckdRoundBF16(b, bb, (size_t)(K * N));
  for (int pass = 0; pass < 2; pass++)
    for (int t = 0; t < 4; t++) {
      const char     ta = (t & 1) ? 'T' : 'N', tb = (t & 2) ? 'T' : 'N';
      const PetscInt m = pass ? M : M - 1 - t; /* the first pass also takes shapes of its own */
      for (PetscInt i = 0; i < m * N; i++) c[i] = (float)AckdRngNormal(rng); /* overwritten */
      PetscCall(AckdGemmBF16Multiply(gemm, ta, tb, m, N, K, ab, bb, c));
      PetscCall(AckdSgemm(ta, tb, m, N, K, 1.0f, a, ta == 'N' ? K : m, b, tb == 'N' ? N : K, 0.0f, single, N));
      for (PetscInt i = 0; i < m; i++)
        for (PetscInt j = 0; j < N; j++) {
          double exact = 0.0, size = 0.0;
          for (PetscInt l = 0; l < K; l++) {
            double x = round_bf16(ta == 'N' ? a[i * K + l] : a[l * m + i]);
            double y = round_bf16(tb == 'N' ? b[l * N + j] : b[j * K + l]);
            exact += x * y;
            size += fabs(x * y);
          }
          double bound = (double)(K + 2) * ldexp(1.0, -24) * size;
          worst        = PetscMax(worst, fabs(c[i * N + j] - exact) / bound);
          single_outside |= fabs(single[i * N + j] - exact) > bound;
        }
    }
  for (PetscInt extra = 0; extra < 40; extra++) { /* fill every plan slot, then the first shape again */
    PetscCall(AckdGemmBF16Multiply(gemm, 'N', 'N', 1 + extra, N, K, ab, bb, c));
  }
  PetscCall(AckdGemmBF16Multiply(gemm, 'N', 'N', M, N, K, ab, bb, c));
  for (PetscInt i = 0; i < M; i++)
    for (PetscInt j = 0; j < N; j++) {
      double exact = 0.0, size = 0.0;
      for (PetscInt l = 0; l < K; l++) {
        double x = round_bf16(a[i * K + l]), y = round_bf16(b[l * N + j]);
        exact += x * y;
        size += fabs(x * y);
      }
      worst = PetscMax(worst, fabs(c[i * N + j] - exact) / ((double)(K + 2) * ldexp(1.0, -24) * size));
    }
  printf("  bf16 GEMM: 8 products and a re-planned one, worst error %.2f of the float32-sum bound\n", worst);
  CHECK(worst <= 1.0, "bf16 GEMM off its reference by %.2f times the bound", worst);
  CHECK(single_outside, "the float32 GEMM of the unrounded operands is inside the bound: the test cannot see rounding");
  PetscCall(PetscFree5(a, b, c, single, ab));
  PetscCall(PetscFree(bb));
  PetscCall(AckdGemmBF16Destroy(&gemm));
  PetscFunctionReturn(0);
}

/* Whether /proc/cpuinfo lists a bf16 dot-product instruction: a second opinion on oneDNN's. */
static int cpuinfo_has_bf16(void)
{
  FILE *f = fopen("/proc/cpuinfo", "r");
  char  line[8192];
  int   found = -1;
  if (!f) return -1;
  while (found < 1 && fgets(line, sizeof line, f))
    if (!strncmp(line, "flags", 5)) found = strstr(line, " avx512_bf16") || strstr(line, " amx_bf16") ? 1 : 0;
  fclose(f);
  return found;
}

int main(int argc, char **argv)
{
  /* the layers of the four backbones: the stem on ten bands, a 3x3 body convolution, a 1x1
   * expansion and a strided depthwise one on channel-blocked tensors (the model's layouts), a
   * grouped one, a strided 3x3 on blocked tensors, and a 1x1 projection with stride 2 */
  const Spec specs[] = {
      {"stem 7x7 s2, 10 bands", 10, 16, 7, 2, 3, 1, 2, 17, 17, 1, PETSC_FALSE},
      {"3x3 16->32 bias", 16, 32, 3, 1, 1, 1, 3, 8, 8, 1, PETSC_TRUE},
      {"1x1 32->64 blocked", 32, 64, 1, 1, 0, 1, 2, 6, 6, 16, PETSC_FALSE},
      {"depthwise 3x3 s2 blocked", 32, 32, 3, 2, 1, 32, 2, 9, 9, 16, PETSC_FALSE},
      {"3x3 groups 2", 16, 16, 3, 1, 1, 2, 2, 7, 7, 1, PETSC_FALSE},
      {"3x3 s2 64->64 blocked", 64, 64, 3, 2, 1, 1, 2, 8, 8, 16, PETSC_FALSE},
      {"1x1 s2 projection", 16, 32, 1, 2, 0, 1, 2, 8, 8, 1, PETSC_FALSE},
  };
  AckdEngine fp32, bf16;
  AckdRng    rng;

  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  PetscCall(AckdEngineCreate(1, &fp32));
  PetscCall(AckdEngineCreate(1, &bf16));
  PetscBool has = AckdEngineHasBF16();
  int       cpu = cpuinfo_has_bf16();
  char      limit[64];
  PetscBool limited;
  PetscCall(PetscOptionsGetenv(PETSC_COMM_SELF, "ONEDNN_MAX_CPU_ISA", limit, sizeof limit, &limited));
  printf("oneDNN: bf16 %s; /proc/cpuinfo: %s\n", has ? "in hardware" : "not in hardware",
         cpu < 0 ? "unreadable"
         : cpu   ? "avx512_bf16 or amx_bf16"
                 : "neither avx512_bf16 nor amx_bf16");
  CHECK(cpu < 0 || limited || (cpu == 1) == (has == PETSC_TRUE),
        "oneDNN and /proc/cpuinfo disagree on bf16 (ONEDNN_MAX_CPU_ISA unset)");

  AckdRngInit(&rng, 2026, 0, 0xbf16u);
  PetscCall(check_rounding(&rng)); /* ackd's own loop: on every CPU */

  PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
  PetscErrorCode refused = AckdEngineSetPrecision(&bf16, ACKD_PRECISION_BF16);
  PetscCall(PetscPopErrorHandler());
  if (!has) {
    CHECK(refused == PETSC_ERR_SUP, "bf16 set on a CPU without it: error %d, not PETSC_ERR_SUP", (int)refused);
    CHECK(bf16.precision == ACKD_PRECISION_FP32, "a refused precision was kept");
    AckdGemmBF16 gemm = NULL;
    PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
    refused = AckdGemmBF16Create(&gemm);
    PetscCall(PetscPopErrorHandler());
    CHECK(refused == PETSC_ERR_SUP && !gemm, "a bf16 GEMM created on a CPU without bf16: error %d", (int)refused);
    printf("bf16 refused on this CPU, as it must be; the arithmetic is not checked here\n");
  } else {
    CHECK(!refused && bf16.precision == ACKD_PRECISION_BF16, "bf16 refused on a CPU that has it");
    PetscCall(check_gemm(&rng));
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
      Case c;
      PetscCall(case_run(&specs[i], &fp32, &bf16, &rng, &c));
      if (specs[i].g > 1)
        check_stays_float32(&c);
      else
        PetscCall(check_against_reference(&c));
      PetscCall(case_free(&c));
    }
  }
  PetscCall(AckdEngineDestroy(&fp32));
  PetscCall(AckdEngineDestroy(&bf16));
  int failed = CHECK_REPORT("bf16 convolutions against their double reference");
  PetscCall(PetscFinalize());
  return failed;
}
