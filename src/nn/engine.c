/* The oneDNN engine and stream, and the thread count of every compute library. */
#include "nn_private.h"
#include <ackd/nn.h>
#include <cblas.h>
#include <omp.h>

PetscErrorCode AckdEngineCreate(PetscInt threads, AckdEngine *engine)
{
  PetscFunctionBeginUser;
  engine->threads   = threads;
  engine->precision = ACKD_PRECISION_FP32;
  /* Debian's oneDNN threads with OpenMP (libgomp), which ackd's own loops
   * share; OpenBLAS is the pthread build and has its own setting. */
  if (threads > 0) {
    omp_set_num_threads((int)threads);
    openblas_set_num_threads((int)threads);
  } else
    engine->threads = omp_get_max_threads();
  PetscCall(PetscNew(&engine->backend));
  AckdCallDnnl(dnnl_engine_create(&engine->backend->engine, dnnl_cpu, 0), "creating the oneDNN CPU engine");
  AckdCallDnnl(dnnl_stream_create(&engine->backend->stream, engine->backend->engine, dnnl_stream_default_flags),
               "creating the oneDNN stream");
  PetscFunctionReturn(0);
}

const char *const AckdPrecisionNames[] = {"fp32", "bf16", "AckdPrecision", "ACKD_PRECISION_", NULL};

PetscBool AckdEngineHasBF16(void)
{
  /* oneDNN's ISA values nest: each includes the bits of the ones below it */
  dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
  return (isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16 ? PETSC_TRUE : PETSC_FALSE;
}

PetscErrorCode AckdEngineSetPrecision(AckdEngine *engine, AckdPrecision precision)
{
  PetscFunctionBeginUser;
  /* Without the instructions oneDNN emulates bf16 or falls back to reference kernels: slower
   * than float32 and not the arithmetic a user asked to measure. */
  PetscCheck(precision != ACKD_PRECISION_BF16 || AckdEngineHasBF16(), PETSC_COMM_SELF, PETSC_ERR_SUP,
             "-precision bf16 needs a CPU with AVX512_BF16 or AMX, which this one lacks; use -precision fp32");
  engine->precision = precision;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOptionsPrecision(PetscOptionItems *PetscOptionsObject, MPI_Comm comm, const char *prefix,
                                    const char *name, AckdPrecision *precision)
{
  PetscInt  choice = (PetscInt)*precision;
  PetscBool help;
  char      option[96];

  PetscFunctionBeginUser;
  snprintf(option, sizeof option, "-%s", name);
  PetscCall(AckdOptionsChoice(PetscOptionsObject, option,
                              "Dense convolutions' arithmetic: fp32, or bf16 operands accumulated in fp32 (the "
                              "weights, depthwise convolutions and all else stay fp32; CPUs with AVX512_BF16 or AMX; "
                              "docs/NN.md)",
                              AckdPrecisionNames, 2, &choice, NULL));
  *precision = (AckdPrecision)choice;
  PetscCall(AckdOptionsHelpRequested(&help));
  PetscCheck(help || *precision != ACKD_PRECISION_BF16 || AckdEngineHasBF16(), comm, PETSC_ERR_USER_INPUT,
             "option -%s%s bf16 needs a CPU with AVX512_BF16 or AMX, which this one lacks; use -%s%s fp32",
             prefix ? prefix : "", name, prefix ? prefix : "", name);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdEngineDestroy(AckdEngine *engine)
{
  PetscFunctionBeginUser;
  AckdBackend b = engine->backend;
  if (!b) PetscFunctionReturn(0);
  if (b->stream) AckdCallDnnl(dnnl_stream_destroy(b->stream), "destroying the oneDNN stream");
  if (b->engine) AckdCallDnnl(dnnl_engine_destroy(b->engine), "destroying the oneDNN engine");
  PetscCall(PetscFree(engine->backend));
  PetscFunctionReturn(0);
}
