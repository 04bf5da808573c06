/* Which samples each rank trains on.
 *
 * The epoch's order is a seeded permutation of the training samples, cut
 * into global batches; each global batch is cut into P contiguous shares.
 * Nothing depends on P except the cut, so the union of the ranks' shares is
 * the same global batch for any P. */
#include <ackd/dist.h>

enum {
  TAG_EPOCH_ORDER = 0x0e0c /* RNG stream of the per-epoch shuffle */
};

struct _p_AckdBatchPlan {
  MPI_Comm    comm;
  PetscMPIInt rank, size;
  PetscInt    n, batch;
  PetscInt   *samples; /* the training samples, as given */
  PetscInt   *order;   /* this epoch's order: a permutation of samples */
  PetscInt   *perm;
  uint64_t    seed;
  PetscBool   drop_last;
};

PetscErrorCode AckdBatchPlanCreate(MPI_Comm comm, PetscInt nsamples, const PetscInt *samples, PetscInt global_batch,
                                   uint64_t seed, PetscBool drop_last, AckdBatchPlan *plan)
{
  AckdBatchPlan p;

  PetscFunctionBeginUser;
  PetscCheck(global_batch > 0, comm, PETSC_ERR_ARG_OUTOFRANGE, "global batch size must be positive, not %" PetscInt_FMT,
             global_batch);
  PetscCheck(nsamples > 0, comm, PETSC_ERR_ARG_OUTOFRANGE, "no training samples to plan batches for");
  PetscCall(PetscNew(&p));
  p->comm = comm;
  PetscCallMPI(MPI_Comm_rank(comm, &p->rank));
  PetscCallMPI(MPI_Comm_size(comm, &p->size));
  PetscCheck(global_batch >= p->size, comm, PETSC_ERR_ARG_OUTOFRANGE,
             "global batch %" PetscInt_FMT " is smaller than the %d ranks; use a batch of at least %d", global_batch,
             p->size, p->size);
  p->n         = nsamples;
  p->batch     = global_batch;
  p->seed      = seed;
  p->drop_last = drop_last;
  PetscCall(PetscMalloc3(nsamples, &p->samples, nsamples, &p->order, nsamples, &p->perm));
  PetscCall(PetscArraycpy(p->samples, samples, nsamples));
  PetscCall(AckdBatchPlanSetEpoch(p, 0));
  *plan = p;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdBatchPlanSetEpoch(AckdBatchPlan p, PetscInt epoch)
{
  AckdRng rng;

  PetscFunctionBeginUser;
  AckdRngInit(&rng, p->seed, (uint64_t)epoch, TAG_EPOCH_ORDER);
  AckdRngPermutation(&rng, p->n, p->perm);
  for (PetscInt i = 0; i < p->n; i++) p->order[i] = p->samples[p->perm[i]];
  PetscFunctionReturn(0);
}

PetscErrorCode AckdBatchPlanGetBatchCount(AckdBatchPlan p, PetscInt *nbatches)
{
  PetscFunctionBeginUser;
  *nbatches = p->drop_last ? p->n / p->batch : (p->n + p->batch - 1) / p->batch;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdBatchPlanGetLocal(AckdBatchPlan p, PetscInt b, PetscInt capacity, PetscInt *samples, PetscInt *count,
                                     PetscInt *global_count)
{
  PetscInt nbatches;

  PetscFunctionBeginUser;
  PetscCall(AckdBatchPlanGetBatchCount(p, &nbatches));
  PetscCheck(b >= 0 && b < nbatches, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "batch %" PetscInt_FMT " does not exist; the epoch has %" PetscInt_FMT, b, nbatches);
  PetscInt first = b * p->batch, global = PetscMin(p->batch, p->n - first);
  /* The last, smaller batch is cut like the others: shares differ by at most one sample. */
  PetscInt lo = global * p->rank / p->size, hi = global * (p->rank + 1) / p->size;
  PetscCheck(hi - lo <= capacity, PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ,
             "this rank's share of batch %" PetscInt_FMT " has %" PetscInt_FMT " samples, room for %" PetscInt_FMT, b,
             hi - lo, capacity);
  for (PetscInt i = lo; i < hi; i++) samples[i - lo] = p->order[first + i];
  *count        = hi - lo;
  *global_count = global;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdBatchPlanDestroy(AckdBatchPlan *plan)
{
  PetscFunctionBeginUser;
  if (!*plan) PetscFunctionReturn(0);
  PetscCall(PetscFree3((*plan)->samples, (*plan)->order, (*plan)->perm));
  PetscCall(PetscFree(*plan));
  PetscFunctionReturn(0);
}
