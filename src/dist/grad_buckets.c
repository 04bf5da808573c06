/* Gradient exchange in buckets, overlapped with backward.
 *
 * Backward produces gradients from the last layer to the first, so buckets
 * are cut in that order: the first bucket to complete is the first to go on
 * the wire, while backward carries on with earlier layers. Each bucket is a
 * contiguous range of the gradient buffer, reduced in place. */
#include <ackd/dist.h>

typedef struct {
  PetscInt    start, count; /* range in the gradient buffer */
  PetscInt    layers, done; /* how many layers it holds, how many have finished */
  MPI_Request request;
} Bucket;

struct _p_AckdGradBuckets {
  MPI_Comm         comm;
  float           *grad;
  PetscInt         total; /* end of the last layer's range */
  AckdGradExchange mode;
  PetscInt         nbuckets;
  Bucket          *buckets;
  PetscInt        *bucket_of; /* layer -> bucket */
  double           blocked;   /* seconds spent in blocking communication */
};

PetscErrorCode AckdGradBucketsCreate(MPI_Comm comm, float *grad, PetscInt nlayers, const PetscInt *offset,
                                     const PetscInt *size, PetscInt bucket_bytes, AckdGradExchange mode,
                                     AckdGradBuckets *buckets)
{
  AckdGradBuckets g;

  PetscFunctionBeginUser;
  PetscCheck(nlayers > 0, comm, PETSC_ERR_ARG_OUTOFRANGE, "no layers to exchange gradients for");
  PetscCheck(bucket_bytes > 0, comm, PETSC_ERR_USER_INPUT, "bucket size must be positive, not %" PetscInt_FMT,
             bucket_bytes);
  for (PetscInt l = 1; l < nlayers; l++)
    PetscCheck(offset[l] >= offset[l - 1] + size[l - 1], comm, PETSC_ERR_ARG_WRONG,
               "layer %" PetscInt_FMT " overlaps layer %" PetscInt_FMT
               " in the gradient buffer; give layers in buffer order",
               l, l - 1);
  PetscCall(PetscNew(&g));
  g->comm  = comm;
  g->grad  = grad;
  g->mode  = mode;
  g->total = offset[nlayers - 1] + size[nlayers - 1];
  PetscCall(PetscCalloc1(nlayers, &g->buckets));
  PetscCall(PetscMalloc1(nlayers, &g->bucket_of));
  PetscInt limit = PetscMax(1, bucket_bytes / (PetscInt)sizeof(float));
  for (PetscInt l = nlayers - 1; l >= 0; l--) {
    Bucket *b = &g->buckets[g->nbuckets];
    if (b->layers > 0 && b->count >= limit) b = &g->buckets[++g->nbuckets]; /* current bucket is full */
    /* Ranges grow downwards: the bucket starts at its earliest layer, and
     * covers any gap between layers (gaps hold no gradients, only zeros). */
    PetscInt end = b->layers ? b->start + b->count : offset[l] + size[l];
    b->start     = offset[l];
    b->count     = end - offset[l];
    b->layers++;
    b->request      = MPI_REQUEST_NULL;
    g->bucket_of[l] = g->nbuckets;
  }
  g->nbuckets++;
  *buckets = g;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdGradBucketsGetBucketCount(AckdGradBuckets g, PetscInt *nbuckets)
{
  PetscFunctionBeginUser;
  *nbuckets = g->nbuckets;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdGradBucketsLayerDone(AckdGradBuckets g, PetscInt layer)
{
  Bucket *b = &g->buckets[g->bucket_of[layer]];

  PetscFunctionBeginUser;
  b->done++;
  PetscCheck(b->done <= b->layers, PETSC_COMM_SELF, PETSC_ERR_ARG_WRONGSTATE,
             "layer %" PetscInt_FMT " reported done twice in one step", layer);
  if (g->mode == ACKD_GRAD_OVERLAPPED && b->done == b->layers)
    PetscCallMPI(
        MPI_Iallreduce(MPI_IN_PLACE, g->grad + b->start, (int)b->count, MPI_FLOAT, MPI_SUM, g->comm, &b->request));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdGradBucketsProgress(AckdGradBuckets g)
{
  PetscFunctionBeginUser;
  /* Open MPI advances non-blocking collectives only inside MPI calls. */
  for (PetscInt i = 0; i < g->nbuckets; i++) {
    int flag;
    if (g->buckets[i].request != MPI_REQUEST_NULL)
      PetscCallMPI(MPI_Test(&g->buckets[i].request, &flag, MPI_STATUS_IGNORE));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdGradBucketsWait(AckdGradBuckets g)
{
  double t0 = AckdTimeNow();

  PetscFunctionBeginUser;
  if (g->mode == ACKD_GRAD_FUSED) {
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, g->grad, (int)g->total, MPI_FLOAT, MPI_SUM, g->comm));
  } else {
    for (PetscInt i = 0; i < g->nbuckets; i++) {
      Bucket *b = &g->buckets[i];
      PetscCheck(b->done == b->layers, PETSC_COMM_SELF, PETSC_ERR_ARG_WRONGSTATE,
                 "bucket %" PetscInt_FMT " still waits for %" PetscInt_FMT
                 " layer(s): every layer must report done before the step",
                 i, b->layers - b->done);
      PetscCallMPI(MPI_Wait(&b->request, MPI_STATUS_IGNORE));
    }
  }
  for (PetscInt i = 0; i < g->nbuckets; i++) g->buckets[i].done = 0;
  g->blocked += AckdTimeNow() - t0;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdGradBucketsGetBlockedTime(AckdGradBuckets g, double *seconds)
{
  PetscFunctionBeginUser;
  *seconds = g->blocked;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdGradBucketsDestroy(AckdGradBuckets *buckets)
{
  PetscFunctionBeginUser;
  if (!*buckets) PetscFunctionReturn(0);
  PetscCall(PetscFree((*buckets)->buckets));
  PetscCall(PetscFree((*buckets)->bucket_of));
  PetscCall(PetscFree(*buckets));
  PetscFunctionReturn(0);
}
