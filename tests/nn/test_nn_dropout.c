/* Dropout's masks: the keep rate matches 1 - p within binomial noise, kept
 * values are scaled by 1/(1-p), and a sample's mask depends only on (seed,
 * step, global sample index) — a batch split differently, as over ranks, gives
 * the same masks — while another step gives another mask. */
#include <ackd/nn.h>
#include <math.h>
#include "check.h"

enum { SAMPLES = 64, PER_SAMPLE = 3 * 8 * 8, HALF = SAMPLES / 2 };

int main(int argc, char **argv)
{
  AckdDropout  whole, part;
  AckdTensor   x, y, y2;
  const double p = 0.25;

  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  PetscCall(AckdTensorAllocate(&x, SAMPLES, 3, 8, 8));
  PetscCall(AckdTensorAllocate(&y, SAMPLES, 3, 8, 8));
  PetscCall(AckdTensorAllocate(&y2, SAMPLES, 3, 8, 8));
  for (PetscInt i = 0; i < AckdTensorSize(&x); i++) x.data[i] = 1.0f;
  PetscCall(AckdDropoutSetUp(&whole, "whole", p, 99, 3));
  PetscCall(AckdDropoutSetUp(&part, "part", p, 99, 3));
  whole.step = part.step = 5;

  PetscCall(AckdDropoutForward(&whole, &x, &y));
  PetscInt n = AckdTensorSize(&x), kept = 0, bad_scale = 0;
  for (PetscInt i = 0; i < n; i++) {
    if (y.data[i] != 0.0f) kept++;
    if (y.data[i] != 0.0f && fabsf(y.data[i] - (float)(1.0 / (1.0 - p))) > 1e-6f) bad_scale++;
  }
  double rate = (double)kept / n, sigma = sqrt(p * (1 - p) / n);
  CHECK(fabs(rate - (1 - p)) < 5 * sigma, "keep rate %.4f, expected %.4f +- %.4f", rate, 1 - p, 5 * sigma);
  CHECK(bad_scale == 0, "%" PetscInt_FMT " kept values not scaled by 1/(1-p)", bad_scale);

  /* the second half of the batch on its own, as another rank would see it */
  AckdTensor xh      = AckdTensorView(x.data + HALF * PER_SAMPLE, HALF, 3, 8, 8);
  AckdTensor yh      = AckdTensorView(y2.data, HALF, 3, 8, 8);
  part.sample_offset = HALF;
  PetscCall(AckdDropoutForward(&part, &xh, &yh));
  PetscInt differ = 0;
  for (PetscInt i = 0; i < HALF * PER_SAMPLE; i++) differ += y2.data[i] != y.data[HALF * PER_SAMPLE + i];
  CHECK(differ == 0, "%" PetscInt_FMT " mask entries depend on how the batch is split", differ);

  whole.step = 6;
  PetscCall(AckdDropoutForward(&whole, &x, &y2));
  differ = 0;
  for (PetscInt i = 0; i < n; i++) differ += (y2.data[i] != 0.0f) != (y.data[i] != 0.0f);
  CHECK(differ > n / 4, "step 6 reuses step 5's mask (%" PetscInt_FMT " of %" PetscInt_FMT " differ)", differ, n);

  whole.training = PETSC_FALSE;
  PetscCall(AckdDropoutForward(&whole, &x, &y2));
  differ = 0;
  for (PetscInt i = 0; i < n; i++) differ += y2.data[i] != 1.0f;
  CHECK(differ == 0, "evaluation mode must be the identity");

  PetscCall(AckdDropoutDestroy(&whole));
  PetscCall(AckdDropoutDestroy(&part));
  PetscCall(AckdTensorFree(&x));
  PetscCall(AckdTensorFree(&y));
  PetscCall(AckdTensorFree(&y2));
  int failed = CHECK_REPORT("nn dropout masks");
  PetscCall(PetscFinalize());
  return failed;
}
