/* Scene augmentation: its 8 transforms are exactly the dihedral group of the
 * square (built here independently from 90-degree rotations and one mirror),
 * the draw is a function of (seed, epoch, sample) only, and it is uniform. */
#include <ackd/data.h>
#include <string.h>
#include "check.h"

enum { S = 5, C = 2, N = C * S * S };

/* out = in rotated by 90 degrees counter-clockwise, per channel. */
static void rotate(const float *in, float *out)
{
  for (int c = 0; c < C; c++)
    for (int y = 0; y < S; y++)
      for (int x = 0; x < S; x++) out[c * S * S + y * S + x] = in[c * S * S + x * S + (S - 1 - y)];
}

static void mirror(const float *in, float *out)
{
  for (int c = 0; c < C; c++)
    for (int y = 0; y < S; y++)
      for (int x = 0; x < S; x++) out[c * S * S + y * S + x] = in[c * S * S + y * S + (S - 1 - x)];
}

int main(int argc, char **argv)
{
  float image[N], group[8][N], got[8][N], tmp[N];

  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  for (int i = 0; i < N; i++) image[i] = (float)i; /* no symmetry: all 8 images differ */
  memcpy(group[0], image, sizeof image);
  for (int k = 1; k < 4; k++) rotate(group[k - 1], group[k]);
  for (int k = 0; k < 4; k++) mirror(group[k], group[4 + k]);
  for (int t = 0; t < 8; t++) AckdAugmentApply(t, C, S, S, image, got[t]);
  for (int t = 0; t < 8; t++) {
    int matches = 0, same = 0;
    for (int g = 0; g < 8; g++) matches += !memcmp(got[t], group[g], sizeof tmp);
    for (int u = 0; u < 8; u++) same += !memcmp(got[t], got[u], sizeof tmp);
    CHECK(matches == 1, "transform %d is one element of the dihedral group (%d matches)", t, matches);
    CHECK(same == 1, "transform %d differs from the other seven", t);
  }
  CHECK(!memcmp(got[0], image, sizeof image), "transform 0 is the identity");

  PetscInt counts[8] = {0};
  for (PetscInt i = 0; i < 8000; i++) {
    PetscInt t = AckdAugmentScene(42, 3, i, C, S, S, image, tmp);
    counts[t]++;
    CHECK(AckdAugmentScene(42, 3, i, C, S, S, image, tmp) == t, "the draw for sample %d repeats", (int)i);
    CHECK(!memcmp(tmp, got[t], sizeof tmp), "the image of sample %d is transform %d's", (int)i, (int)t);
  }
  /* 1000 expected per transform; 5 standard deviations is about 150. */
  for (int t = 0; t < 8; t++)
    CHECK(counts[t] > 850 && counts[t] < 1150, "transform %d drawn %d times of 8000", t, (int)counts[t]);
  PetscInt differ = 0;
  for (PetscInt i = 0; i < 200; i++)
    differ += AckdAugmentScene(42, 3, i, C, S, S, image, tmp) != AckdAugmentScene(42, 4, i, C, S, S, image, tmp);
  CHECK(differ > 150, "another epoch draws other transforms (%d of 200 differ)", (int)differ);
  int failed = check_failures ? CHECK_REPORT("test_augment") : 0;
  PetscCall(PetscFinalize());
  return failed;
}
