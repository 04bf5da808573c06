/* Scene augmentation. Remote-sensing scenes have no "up": every symmetry of
 * the square is an equally valid view of the ground, so the dihedral group D4
 * is the augmentation (rotations by 90° are a transpose plus a flip). The
 * choice is a counter-based draw keyed by the sample, never by the rank. */
#include <ackd/data.h>

enum { TAG_AUGMENT = 0x41554700u }; /* "AUG\0": a stream of its own */

void AckdAugmentApply(PetscInt t, PetscInt channels, PetscInt height, PetscInt width, const float *in, float *out)
{
  const PetscBool transpose = (PetscBool)((t & 4) && height == width);
  const PetscBool flip_x = (PetscBool)(t & 1), flip_y = (PetscBool)((t & 2) != 0);
  const PetscInt  plane = height * width;

  for (PetscInt c = 0; c < channels; c++) {
    const float *src = in + c * plane;
    float       *dst = out + c * plane;
    for (PetscInt y = 0; y < height; y++) {
      const PetscInt sy = flip_y ? height - 1 - y : y;
      for (PetscInt x = 0; x < width; x++) {
        const PetscInt sx  = flip_x ? width - 1 - x : x;
        dst[y * width + x] = transpose ? src[sx * width + sy] : src[sy * width + sx];
      }
    }
  }
}

PetscInt AckdAugmentScene(uint64_t seed, PetscInt epoch, PetscInt index, PetscInt channels, PetscInt height,
                          PetscInt width, const float *in, float *out)
{
  AckdRng rng;

  /* Sample indices stay below 2^40, so the epoch takes the stream index's top bits. */
  AckdRngInit(&rng, seed, ((uint64_t)epoch << 40) | (uint64_t)index, TAG_AUGMENT);
  const PetscInt t = (PetscInt)AckdRngBelow(&rng, height == width ? 8 : 4);
  AckdAugmentApply(t, channels, height, width, in, out);
  return t;
}
