/* C = op(A) op(B) + beta C with bfloat16 operands and float32 sums: oneDNN's matmul
 * (include/ackd/nn.h says when to use it). oneDNN 2.6 has no bf16 GEMM call, so each
 * shape gets a matmul plan, kept for the next call of that shape: a plan costs a JIT
 * compile, a call only the binding of its three buffers. A transposed operand is
 * described by its strides, not copied: the brgemm kernels read either order. */
#include "nn/nn_private.h"

enum {
  PLAN_SLOTS = 32 /* shapes kept; SKA's maps use six per distinct batch row count */
};

typedef struct {
  PetscInt         m, n, k;
  char             transa, transb;
  PetscBool        accumulate;
  dnnl_primitive_t primitive;
  dnnl_memory_t    a, b, c; /* bound to the caller's buffers at each call */
} Plan;

struct _p_AckdGemmBF16 {
  dnnl_engine_t engine;
  dnnl_stream_t stream;
  Plan          plan[PLAN_SLOTS];
  PetscInt      used, next; /* filled slots; the slot the next new shape replaces once all are */
};

PetscErrorCode AckdGemmBF16Create(AckdGemmBF16 *gemm)
{
  AckdGemmBF16 g;

  PetscFunctionBeginUser;
  PetscCheck(AckdEngineHasBF16(), PETSC_COMM_SELF, PETSC_ERR_SUP,
             "bf16 GEMM needs a CPU with AVX512_BF16 or AMX, which this one lacks");
  PetscCall(PetscNew(&g));
  AckdCallDnnl(dnnl_engine_create(&g->engine, dnnl_cpu, 0), "creating the bf16 GEMM's CPU engine");
  AckdCallDnnl(dnnl_stream_create(&g->stream, g->engine, dnnl_stream_default_flags), "creating the bf16 GEMM's stream");
  *gemm = g;
  PetscFunctionReturn(0);
}

static void plan_free(Plan *p)
{
  AckdNNPrimitiveDestroy(&p->primitive);
  AckdNNMemoryDestroy(&p->a);
  AckdNNMemoryDestroy(&p->b);
  AckdNNMemoryDestroy(&p->c);
}

PetscErrorCode AckdGemmBF16Destroy(AckdGemmBF16 *gemm)
{
  PetscFunctionBeginUser;
  if (!*gemm) PetscFunctionReturn(0);
  for (PetscInt i = 0; i < (*gemm)->used; i++) plan_free(&(*gemm)->plan[i]);
  if ((*gemm)->stream) dnnl_stream_destroy((*gemm)->stream);
  if ((*gemm)->engine) dnnl_engine_destroy((*gemm)->engine);
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

static PetscErrorCode plan_create(AckdGemmBF16 g, Plan *p)
{
  dnnl_memory_desc_t    a, b, c;
  dnnl_matmul_desc_t    desc;
  dnnl_primitive_attr_t attr = NULL;
  dnnl_post_ops_t       ops  = NULL;
  dnnl_primitive_desc_t pd;

  PetscFunctionBeginUser;
  PetscCall(operand_desc(&a, p->m, p->k, p->transa, dnnl_bf16));
  PetscCall(operand_desc(&b, p->k, p->n, p->transb, dnnl_bf16));
  PetscCall(operand_desc(&c, p->m, p->n, 'N', dnnl_f32));
  AckdCallDnnl(dnnl_matmul_desc_init(&desc, &a, &b, NULL, &c), "describing a bf16 GEMM");
  AckdCallDnnl(dnnl_primitive_attr_create(&attr), "creating a bf16 GEMM's attributes");
  if (p->accumulate) { /* C += A B: the sum post-op reads C before the kernel overwrites it */
    AckdCallDnnl(dnnl_post_ops_create(&ops), "creating a bf16 GEMM's post-ops");
    AckdCallDnnl(dnnl_post_ops_append_sum(ops, 1.0f), "adding the bf16 GEMM's accumulation");
    AckdCallDnnl(dnnl_primitive_attr_set_post_ops(attr, ops), "setting the bf16 GEMM's post-ops");
  }
  dnnl_status_t status = dnnl_primitive_desc_create(&pd, &desc, attr, g->engine, NULL);
  if (ops) dnnl_post_ops_destroy(ops);
  dnnl_primitive_attr_destroy(attr);
  AckdCallDnnl(status, "planning a bf16 GEMM of %" PetscInt_FMT " x %" PetscInt_FMT " x %" PetscInt_FMT, p->m, p->n,
               p->k);
  status = dnnl_primitive_create(&p->primitive, pd);
  dnnl_primitive_desc_destroy(pd);
  AckdCallDnnl(status, "compiling a bf16 GEMM");
  AckdCallDnnl(dnnl_memory_create(&p->a, &a, g->engine, DNNL_MEMORY_NONE), "describing a bf16 GEMM operand");
  AckdCallDnnl(dnnl_memory_create(&p->b, &b, g->engine, DNNL_MEMORY_NONE), "describing a bf16 GEMM operand");
  AckdCallDnnl(dnnl_memory_create(&p->c, &c, g->engine, DNNL_MEMORY_NONE), "describing a bf16 GEMM's result");
  PetscFunctionReturn(0);
}

static PetscErrorCode plan_find(AckdGemmBF16 g, char transa, char transb, PetscInt m, PetscInt n, PetscInt k,
                                PetscBool accumulate, Plan **plan)
{
  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < g->used; i++) {
    Plan *p = &g->plan[i];
    if (p->m == m && p->n == n && p->k == k && p->transa == transa && p->transb == transb &&
        p->accumulate == accumulate) {
      *plan = p;
      PetscFunctionReturn(0);
    }
  }
  Plan *p;
  if (g->used < PLAN_SLOTS)
    p = &g->plan[g->used++];
  else {
    p       = &g->plan[g->next];
    g->next = (g->next + 1) % PLAN_SLOTS;
    plan_free(p);
  }
  *p = (Plan){.m = m, .n = n, .k = k, .transa = transa, .transb = transb, .accumulate = accumulate};
  PetscCall(plan_create(g, p));
  *plan = p;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdGemmBF16Multiply(AckdGemmBF16 g, char transa, char transb, PetscInt m, PetscInt n, PetscInt k,
                                    const uint16_t *A, const uint16_t *B, float beta, float *C)
{
  Plan *p = NULL;

  PetscFunctionBeginUser;
  PetscCheck((transa == 'N' || transa == 'T') && (transb == 'N' || transb == 'T'), PETSC_COMM_SELF, PETSC_ERR_ARG_WRONG,
             "bf16 GEMM: op '%c%c'; each must be 'N' or 'T'", transa, transb);
  PetscCheck(beta == 0.0f || beta == 1.0f, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "bf16 GEMM: beta %g; only 0 (overwrite) and 1 (accumulate) are planned", (double)beta);
  if (m == 0 || n == 0) PetscFunctionReturn(0);
  if (k == 0) { /* an empty sum: C keeps its value or becomes 0, as in BLAS */
    if (beta == 0.0f) PetscCall(PetscArrayzero(C, m * n));
    PetscFunctionReturn(0);
  }
  PetscCall(plan_find(g, transa, transb, m, n, k, beta == 1.0f ? PETSC_TRUE : PETSC_FALSE, &p));
  /* oneDNN's handles are not const: the operands are only read */
  AckdCallDnnl(dnnl_memory_set_data_handle(p->a, (void *)A), "binding a bf16 GEMM operand");
  AckdCallDnnl(dnnl_memory_set_data_handle(p->b, (void *)B), "binding a bf16 GEMM operand");
  AckdCallDnnl(dnnl_memory_set_data_handle(p->c, C), "binding a bf16 GEMM's result");
  dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, p->a}, {DNNL_ARG_WEIGHTS, p->b}, {DNNL_ARG_DST, p->c}};
  AckdCallDnnl(dnnl_primitive_execute(p->primitive, g->stream, 3, args),
               "running a bf16 GEMM of %" PetscInt_FMT " x %" PetscInt_FMT " x %" PetscInt_FMT, m, n, k);
  AckdCallDnnl(dnnl_stream_wait(g->stream), "waiting for a bf16 GEMM");
  PetscFunctionReturn(0);
}
