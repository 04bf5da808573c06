/* Batch plans on P ranks against the same plan computed alone: for every
 * batch, the ranks' shares, concatenated in rank order, are exactly the
 * global batch of a one-rank run. 103 samples in batches of 10 leave a last
 * batch of 3, which 4 ranks must split (one of them gets nothing). */
#include <ackd/dist.h>
#include "check.h"

int main(int argc, char **argv)
{
  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  enum { N = 103, B = 10, EPOCHS = 3 };
  PetscMPIInt   rank, size;
  PetscInt      samples[N], mine[B], all[B], ref[B];
  AckdBatchPlan plan, alone;

  MPI_Comm_rank(PETSC_COMM_WORLD, &rank);
  MPI_Comm_size(PETSC_COMM_WORLD, &size);
  for (PetscInt i = 0; i < N; i++) samples[i] = 1000 + 3 * i; /* global indices of the training split */
  PetscCall(AckdBatchPlanCreate(PETSC_COMM_WORLD, N, samples, B, 42, PETSC_FALSE, &plan));
  PetscCall(AckdBatchPlanCreate(PETSC_COMM_SELF, N, samples, B, 42, PETSC_FALSE, &alone));
  PetscInt first_of_epoch[EPOCHS];
  for (PetscInt e = 0; e < EPOCHS; e++) {
    PetscInt nb, nb_alone, seen[N] = {0};
    PetscCall(AckdBatchPlanSetEpoch(plan, e));
    PetscCall(AckdBatchPlanSetEpoch(alone, e));
    PetscCall(AckdBatchPlanGetBatchCount(plan, &nb));
    PetscCall(AckdBatchPlanGetBatchCount(alone, &nb_alone));
    CHECK(nb == 11 && nb_alone == 11, "103 samples in batches of 10 make 11 batches, not %d", (int)nb);
    for (PetscInt b = 0; b < nb; b++) {
      PetscInt    count, global, count_alone, global_alone;
      PetscMPIInt counts[64], displs[64];
      PetscCall(AckdBatchPlanGetLocal(plan, b, B, mine, &count, &global));
      PetscCall(AckdBatchPlanGetLocal(alone, b, B, ref, &count_alone, &global_alone));
      PetscMPIInt c = (PetscMPIInt)count;
      MPI_Allgather(&c, 1, MPI_INT, counts, 1, MPI_INT, PETSC_COMM_WORLD);
      displs[0] = 0;
      for (PetscMPIInt r = 1; r < size; r++) displs[r] = displs[r - 1] + counts[r - 1];
      MPI_Allgatherv(mine, c, MPIU_INT, all, counts, displs, MPIU_INT, PETSC_COMM_WORLD);
      CHECK(global == global_alone && displs[size - 1] + counts[size - 1] == global, "batch %d sizes", (int)b);
      for (PetscInt i = 0; i < global; i++) {
        CHECK(all[i] == ref[i], "epoch %d batch %d position %d: %d on %d ranks, %d alone", (int)e, (int)b, (int)i,
              (int)all[i], size, (int)ref[i]);
        PetscInt k = (all[i] - 1000) / 3;
        if (k >= 0 && k < N) seen[k]++;
      }
      if (b == 0) first_of_epoch[e] = all[0];
    }
    for (PetscInt k = 0; k < N; k++)
      CHECK(seen[k] == 1, "epoch %d shows sample %d %d times", (int)e, (int)k, (int)seen[k]);
  }
  CHECK(first_of_epoch[0] != first_of_epoch[1] || first_of_epoch[1] != first_of_epoch[2], "epochs must be reshuffled");
  PetscCall(AckdBatchPlanDestroy(&plan));
  PetscCall(AckdBatchPlanDestroy(&alone));
  int failed = CHECK_REPORT("test_batch_plan");
  PetscCall(PetscFinalize());
  return failed;
}
