/* Bucketed, overlapped gradient sums against an independent sum: every
 * rank's gradients are gathered and added in double in rank order. Layers of
 * uneven sizes with gaps, small buckets so there are several, layers
 * reported in backward order with progress calls in between; then the fused
 * mode, and a step taken before all layers reported. */
#include <ackd/dist.h>
#include <math.h>
#include <string.h>
#include "check.h"

enum { LAYERS = 7 };
static const PetscInt SIZE[LAYERS] = {300, 5, 1200, 64, 1, 900, 37};

static void fill(float *grad, PetscInt total, PetscMPIInt rank, PetscInt step)
{
  AckdRng rng;
  AckdRngInit(&rng, 9, (uint64_t)rank, (uint32_t)step);
  for (PetscInt i = 0; i < total; i++) grad[i] = (float)AckdRngNormal(&rng);
}

static double max_rel_error(const float *got, const double *want, PetscInt n)
{
  double worst = 0;
  for (PetscInt i = 0; i < n; i++) worst = PetscMax(worst, fabs(got[i] - want[i]) / PetscMax(1.0, fabs(want[i])));
  return worst;
}

int main(int argc, char **argv)
{
  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  PetscMPIInt rank, size;
  PetscInt    offset[LAYERS], total = 0;
  MPI_Comm_rank(PETSC_COMM_WORLD, &rank);
  MPI_Comm_size(PETSC_COMM_WORLD, &size);
  for (PetscInt l = 0; l < LAYERS; l++) {
    offset[l] = total;
    total += SIZE[l] + (l % 2); /* gaps between some layers */
  }
  float  *grad, *everyone;
  double *want;
  PetscCall(PetscMalloc3(total, &grad, (size_t)total * size, &everyone, total, &want));

  AckdGradExchange modes[2] = {ACKD_GRAD_OVERLAPPED, ACKD_GRAD_FUSED};
  for (int m = 0; m < 2; m++) {
    AckdGradBuckets buckets;
    PetscInt        nbuckets;
    PetscCall(AckdGradBucketsCreate(PETSC_COMM_WORLD, grad, LAYERS, offset, SIZE, 2048, modes[m], &buckets));
    PetscCall(AckdGradBucketsGetBucketCount(buckets, &nbuckets));
    CHECK(nbuckets == 3, "2 KiB buckets over these layers: %d buckets, expected 3", (int)nbuckets);
    for (PetscInt step = 0; step < 3; step++) {
      fill(grad, total, rank, step);
      for (PetscInt l = 0; l < LAYERS; l++) /* gaps carry no gradient */
        for (PetscInt i = offset[l] + SIZE[l]; i < (l + 1 < LAYERS ? offset[l + 1] : total); i++) grad[i] = 0;
      MPI_Allgather(grad, (int)total, MPI_FLOAT, everyone, (int)total, MPI_FLOAT, PETSC_COMM_WORLD);
      for (PetscInt i = 0; i < total; i++) {
        want[i] = 0;
        for (PetscMPIInt r = 0; r < size; r++) want[i] += everyone[(size_t)r * total + i];
      }
      for (PetscInt l = LAYERS - 1; l >= 0; l--) {
        PetscCall(AckdGradBucketsLayerDone(buckets, l));
        PetscCall(AckdGradBucketsProgress(buckets));
      }
      PetscCall(AckdGradBucketsWait(buckets));
      double err = max_rel_error(grad, want, total);
      CHECK(err < 1e-6, "%s step %d: relative error %.3g against the gathered sum",
            modes[m] == ACKD_GRAD_FUSED ? "fused" : "overlapped", (int)step, err);
    }
    /* A step before every layer reported is a programming error, named as such. */
    if (modes[m] == ACKD_GRAD_OVERLAPPED && size == 1) {
      AckdErrorRecord record;
      memset(&record, 0, sizeof record);
      PetscCall(AckdGradBucketsLayerDone(buckets, LAYERS - 1));
      PetscPushErrorHandler(AckdErrorHandler, &record);
      PetscErrorCode ierr = AckdGradBucketsWait(buckets);
      PetscPopErrorHandler();
      CHECK(ierr != 0 && strstr(record.message, "still waits for"), "early step: '%s'", record.message);
    }
    PetscCall(AckdGradBucketsDestroy(&buckets));
  }
  PetscCall(PetscFree3(grad, everyone, want));
  int failed = CHECK_REPORT("test_grad_buckets");
  PetscCall(PetscFinalize());
  return failed;
}
