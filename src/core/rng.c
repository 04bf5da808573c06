/* Philox4x32-10 and the sampling helpers built on it. */
#include <ackd/core.h>
#include <math.h>

enum { PHILOX_ROUNDS = 10 };

static const uint32_t PHILOX_M0 = 0xD2511F53u, PHILOX_M1 = 0xCD9E8D57u; /* round multipliers */
static const uint32_t PHILOX_W0 = 0x9E3779B9u, PHILOX_W1 = 0xBB67AE85u; /* key schedule (golden ratio, sqrt 3) */

static inline void philox_round(uint32_t ctr[4], const uint32_t key[2])
{
  uint64_t p0  = (uint64_t)PHILOX_M0 * ctr[0];
  uint64_t p1  = (uint64_t)PHILOX_M1 * ctr[2];
  uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
  uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
  uint32_t c1 = ctr[1], c3 = ctr[3];

  ctr[0] = hi1 ^ c1 ^ key[0];
  ctr[1] = lo1;
  ctr[2] = hi0 ^ c3 ^ key[1];
  ctr[3] = lo0;
}

void AckdPhilox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
  uint32_t x[4] = {ctr[0], ctr[1], ctr[2], ctr[3]};
  uint32_t k[2] = {key[0], key[1]};

  for (int r = 0; r < PHILOX_ROUNDS; r++) {
    if (r > 0) {
      k[0] += PHILOX_W0;
      k[1] += PHILOX_W1;
    }
    philox_round(x, k);
  }
  for (int i = 0; i < 4; i++) out[i] = x[i];
}

void AckdRngInit(AckdRng *rng, uint64_t seed, uint64_t index, uint32_t tag)
{
  rng->key[0]       = (uint32_t)seed;
  rng->key[1]       = (uint32_t)(seed >> 32);
  rng->ctr[0]       = 0;
  rng->ctr[1]       = tag;
  rng->ctr[2]       = (uint32_t)index;
  rng->ctr[3]       = (uint32_t)(index >> 32);
  rng->used         = 4; /* forces a block on first use */
  rng->have_spare   = 0;
  rng->spare_normal = 0.0;
}

uint32_t AckdRngU32(AckdRng *rng)
{
  if (rng->used == 4) {
    AckdPhilox4x32(rng->ctr, rng->key, rng->block);
    rng->ctr[0]++; /* 2^32 blocks (16 GiB of numbers) per stream is far beyond any sample's need */
    rng->used = 0;
  }
  return rng->block[rng->used++];
}

double AckdRngUniform(AckdRng *rng)
{
  uint64_t hi = AckdRngU32(rng) >> 5; /* 27 bits */
  uint64_t lo = AckdRngU32(rng) >> 6; /* 26 bits */
  return (double)((hi << 26) | lo) * 0x1.0p-53;
}

double AckdRngUniformRange(AckdRng *rng, double lo, double hi)
{
  return lo + (hi - lo) * AckdRngUniform(rng);
}

double AckdRngNormal(AckdRng *rng)
{
  if (rng->have_spare) {
    rng->have_spare = 0;
    return rng->spare_normal;
  }
  double u1         = 1.0 - AckdRngUniform(rng); /* (0, 1]: log stays finite */
  double u2         = AckdRngUniform(rng);
  double r          = sqrt(-2.0 * log(u1));
  rng->spare_normal = r * sin(2.0 * PETSC_PI * u2);
  rng->have_spare   = 1;
  return r * cos(2.0 * PETSC_PI * u2);
}

/* Lemire's multiply-and-reject: unbiased without a division in the common case. */
uint32_t AckdRngBelow(AckdRng *rng, uint32_t n)
{
  uint64_t m = (uint64_t)AckdRngU32(rng) * n;
  uint32_t l = (uint32_t)m;
  if (l < n) {
    uint32_t threshold = (uint32_t)(-n) % n;
    while (l < threshold) {
      m = (uint64_t)AckdRngU32(rng) * n;
      l = (uint32_t)m;
    }
  }
  return (uint32_t)(m >> 32);
}

void AckdRngPermutation(AckdRng *rng, PetscInt n, PetscInt *perm)
{
  for (PetscInt i = 0; i < n; i++) perm[i] = i;
  for (PetscInt i = n - 1; i > 0; i--) {
    PetscInt j = (PetscInt)AckdRngBelow(rng, (uint32_t)(i + 1));
    PetscInt t = perm[i];
    perm[i]    = perm[j];
    perm[j]    = t;
  }
}
