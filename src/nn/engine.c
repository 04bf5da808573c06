/* The oneDNN engine and stream, and the thread count of every compute library. */
#include "nn_private.h"
#include <ackd/nn.h>
#include <cblas.h>
#include <omp.h>

PetscErrorCode AckdEngineCreate(PetscInt threads, AckdEngine *engine)
{
  PetscFunctionBeginUser;
  engine->threads = threads;
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
