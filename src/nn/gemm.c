/* Single-precision GEMM for ackd's own layers and losses, on oneDNN's JIT
 * kernels rather than OpenBLAS's (include/ackd/nn.h says why). */
#include <ackd/nn.h>
#include <dnnl.h>

PetscErrorCode AckdSgemm(char transa, char transb, PetscInt m, PetscInt n, PetscInt k, float alpha, const float *A,
                         PetscInt lda, const float *B, PetscInt ldb, float beta, float *C, PetscInt ldc)
{
  PetscFunctionBeginUser;
  if (m == 0 || n == 0) PetscFunctionReturn(0);
  AckdCallDnnl(dnnl_sgemm(transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc),
               "single-precision GEMM %c%c of %" PetscInt_FMT " x %" PetscInt_FMT " x %" PetscInt_FMT, transa, transb,
               m, n, k);
  PetscFunctionReturn(0);
}
