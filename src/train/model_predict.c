/* A model run over a dataset's rows in batches, in evaluation mode: the pass that validation,
 * eval, the teacher gallery, the matcher's embeddings and DynM's re-matching share. */
#include <ackd/ckpt.h>
#include <ackd/train.h>

PetscErrorCode AckdModelProbe(AckdModel model, AckdEngine *engine, AckdSharedDataset dataset, AckdModelOutputs *out)
{
  PetscInt count, c, h, w, row0 = 0;
  float   *one;

  PetscFunctionBeginUser;
  PetscCall(AckdSharedDatasetGetShape(dataset, &count, &c, &h, &w));
  PetscCall(PetscMalloc1(c * h * w, &one));
  PetscCall(AckdSharedDatasetReadImages(dataset, 1, &row0, one));
  AckdTensor x = AckdTensorView(one, 1, c, h, w);
  PetscCall(AckdModelSetTraining(model, PETSC_FALSE));
  PetscCall(AckdModelForward(model, engine, &x, out));
  PetscCall(PetscFree(one));
  PetscFunctionReturn(0);
}

/* A stoppable pass leaves its loop at the first batch after this rank's stop signal. The loop
 * holds no collective call (each rank reads its own rows), so ranks may leave it at different
 * batches; a collective AckdStopRequested after it decides for all of them (*stopped, collective
 * on comm when stoppable). */
PetscErrorCode AckdModelPredictStoppable(AckdModel model, AckdEngine *engine, AckdSharedDataset dataset, PetscInt nrows,
                                         const PetscInt *rows, PetscInt batch, AckdPredictVisit visit, void *ctx,
                                         PetscBool stoppable, MPI_Comm comm, PetscBool *stopped)
{
  PetscInt count, c, h, w;
  float   *images;

  PetscFunctionBeginUser;
  PetscCall(AckdSharedDatasetGetShape(dataset, &count, &c, &h, &w));
  const PetscInt sample = c * h * w;
  PetscCall(PetscMalloc1((size_t)batch * sample, &images));
  PetscCall(AckdModelSetTraining(model, PETSC_FALSE));
  for (PetscInt first = 0; first < nrows && !(stoppable && AckdStopSignalled()); first += batch) {
    const PetscInt   n = PetscMin(batch, nrows - first);
    AckdModelOutputs out;
    PetscCall(AckdSharedDatasetReadImages(dataset, n, rows + first, images));
    AckdTensor x = AckdTensorView(images, n, c, h, w);
    PetscCall(AckdModelInfer(model, engine, &x, &out));
    PetscCall(visit(ctx, first, n, &out));
  }
  PetscCall(AckdModelSetTraining(model, PETSC_TRUE));
  PetscCall(PetscFree(images));
  *stopped = PETSC_FALSE;
  if (stoppable) PetscCall(AckdStopRequested(comm, stopped));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdModelPredict(AckdModel model, AckdEngine *engine, AckdSharedDataset dataset, PetscInt nrows,
                                const PetscInt *rows, PetscInt batch, AckdPredictVisit visit, void *ctx)
{
  PetscBool stopped;

  PetscFunctionBeginUser;
  PetscCall(AckdModelPredictStoppable(model, engine, dataset, nrows, rows, batch, visit, ctx, PETSC_FALSE,
                                      MPI_COMM_SELF, &stopped));
  PetscFunctionReturn(0);
}
