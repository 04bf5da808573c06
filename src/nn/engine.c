/* The oneDNN engine and stream, and the thread count of every compute library. */
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
  AckdCallDnnl(dnnl_engine_create(&engine->engine, dnnl_cpu, 0), "creating the oneDNN CPU engine");
  AckdCallDnnl(dnnl_stream_create(&engine->stream, engine->engine, dnnl_stream_default_flags),
               "creating the oneDNN stream");
  PetscFunctionReturn(0);
}

PetscErrorCode AckdEngineDestroy(AckdEngine *engine)
{
  PetscFunctionBeginUser;
  if (engine->stream) AckdCallDnnl(dnnl_stream_destroy(engine->stream), "destroying the oneDNN stream");
  if (engine->engine) AckdCallDnnl(dnnl_engine_destroy(engine->engine), "destroying the oneDNN engine");
  engine->stream = NULL;
  engine->engine = NULL;
  PetscFunctionReturn(0);
}
