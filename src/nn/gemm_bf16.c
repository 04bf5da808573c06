/* C = op(A) op(B) with bfloat16 operands and float32 sums: oneDNN's matmul (include/ackd/nn.h
 * says when to use it). oneDNN 2.6 has no bf16 GEMM call, so each shape gets a matmul plan,
 * kept in a plan cache per pair of transpositions as a layer keeps its plans per input shape:
 * a plan costs a JIT compile, a call only the binding of its three buffers. A transposed
 * operand is described by its strides, not copied: the brgemm kernels read either order. */
#include "nn/nn_private.h"

typedef struct {
  dnnl_primitive_t primitive;
  dnnl_memory_t    a, b, c; /* bound to the caller's buffers at each call */
} Plan;

struct _p_AckdGemmBF16 {
  AckdEngine      engine;
  AckdNNPlanCache plans[2][2]; /* [transa == 'T'][transb == 'T'], keyed by (m, n, k) */
};

static const char *const GEMM = "bf16 GEMM";

static void plan_destroy(void *plan)
{
  Plan *p = plan;
  AckdNNPrimitiveDestroy(&p->primitive);
  AckdNNMemoryDestroy(&p->a);
  AckdNNMemoryDestroy(&p->b);
  AckdNNMemoryDestroy(&p->c);
  PetscFree(p);
}

PetscErrorCode AckdGemmBF16Create(AckdGemmBF16 *gemm)
{
  AckdGemmBF16 g;

  PetscFunctionBeginUser;
  PetscCheck(AckdEngineHasBF16(), PETSC_COMM_SELF, PETSC_ERR_SUP,
             "bf16 GEMM needs a CPU with AVX512_BF16 or AMX, which this one lacks");
  PetscCall(PetscNew(&g));
  PetscCall(AckdEngineCreate(0, &g->engine)); /* 0: the thread count in force, unchanged */
  *gemm = g;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdGemmBF16Destroy(AckdGemmBF16 *gemm)
{
  PetscFunctionBeginUser;
  if (!*gemm) PetscFunctionReturn(0);
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) AckdNNPlanCacheClear(&(*gemm)->plans[ta][tb], plan_destroy);
  PetscCall(AckdEngineDestroy(&(*gemm)->engine));
  PetscCall(PetscFree(*gemm));
  PetscFunctionReturn(0);
}

/* A rows x cols operand stored row-major, or its transpose stored row-major. */
static PetscErrorCode operand_desc(dnnl_memory_desc_t *md, PetscInt rows, PetscInt cols, char trans,
                                   dnnl_data_type_t type)
{
  dnnl_dims_t dims = {rows, cols}, strides = {cols, 1};

  PetscFunctionBeginUser;
  if (trans == 'T') {
    strides[0] = 1;
    strides[1] = rows;
  }
  AckdCallDnnl(dnnl_memory_desc_init_by_strides(md, 2, dims, type, strides),
               "describing a %" PetscInt_FMT " x %" PetscInt_FMT " bf16 GEMM operand", rows, cols);
  PetscFunctionReturn(0);
}

static PetscErrorCode plan_create(AckdGemmBF16 g, char transa, char transb, PetscInt m, PetscInt n, PetscInt k,
                                  Plan **plan)
{
  dnnl_memory_desc_t a, b, c;
  dnnl_matmul_desc_t desc;
  Plan              *p;

  PetscFunctionBeginUser;
  PetscCall(operand_desc(&a, m, k, transa, dnnl_bf16));
  PetscCall(operand_desc(&b, k, n, transb, dnnl_bf16));
  PetscCall(operand_desc(&c, m, n, 'N', dnnl_f32));
  AckdCallDnnl(dnnl_matmul_desc_init(&desc, &a, &b, NULL, &c), "describing a bf16 GEMM");
  PetscCall(PetscNew(&p));
  PetscCall(AckdNNPrimitiveCreate(&g->engine, &desc, NULL, &p->primitive, NULL, GEMM, "matmul"));
  PetscCall(AckdNNMemoryCreate(&g->engine, &a, &p->a, GEMM));
  PetscCall(AckdNNMemoryCreate(&g->engine, &b, &p->b, GEMM));
  PetscCall(AckdNNMemoryCreate(&g->engine, &c, &p->c, GEMM));
  *plan = p;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdGemmBF16Multiply(AckdGemmBF16 g, char transa, char transb, PetscInt m, PetscInt n, PetscInt k,
                                    const uint16_t *A, const uint16_t *B, float *C)
{
  PetscFunctionBeginUser;
  PetscCheck((transa == 'N' || transa == 'T') && (transb == 'N' || transb == 'T'), PETSC_COMM_SELF, PETSC_ERR_ARG_WRONG,
             "bf16 GEMM: op '%c%c'; each must be 'N' or 'T'", transa, transb);
  if (m == 0 || n == 0) PetscFunctionReturn(0);
  if (k == 0) { /* an empty sum */
    PetscCall(PetscArrayzero(C, m * n));
    PetscFunctionReturn(0);
  }
  AckdNNPlanCache    *cache = &g->plans[transa == 'T'][transb == 'T'];
  const AckdNNPlanKey key   = {.n = m, .c = n, .h = k};
  Plan               *p     = AckdNNPlanCacheFind(cache, &key);
  if (!p) {
    const PetscInt slot = AckdNNPlanCacheSlot(cache, &key, plan_destroy);
    PetscCall(plan_create(g, transa, transb, m, n, k, &p));
    cache->plan[slot] = p;
  }
  PetscCall(AckdNNMemoryBind(p->a, A, GEMM));
  PetscCall(AckdNNMemoryBind(p->b, B, GEMM));
  PetscCall(AckdNNMemoryBind(p->c, C, GEMM));
  dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, p->a}, {DNNL_ARG_WEIGHTS, p->b}, {DNNL_ARG_DST, p->c}};
  PetscCall(AckdNNExecute(&g->engine, p->primitive, 3, args, GEMM, "matmul"));
  PetscFunctionReturn(0);
}
