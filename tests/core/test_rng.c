/* Philox4x32-10 against Random123's published known answers, and the
 * sampling helpers against closed-form moments. */
#include <ackd/core.h>
#include <math.h>
#include "check.h"

/* tests/kat_vectors of Random123 (D. E. Shaw Research): counter, key, expected output. */
static const uint32_t KAT[][10] = {
    {0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c,
     0x9b00dbd8},
    {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e, 0xa20bc7c6,
     0x6d5451fd},
    {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb, 0x5001e420,
     0x24126ea1},
};

static void test_known_answers(void)
{
  for (size_t t = 0; t < sizeof KAT / sizeof KAT[0]; t++) {
    uint32_t out[4];
    AckdPhilox4x32(KAT[t], KAT[t] + 4, out);
    for (int i = 0; i < 4; i++)
      CHECK(out[i] == KAT[t][6 + i], "vector %zu word %d: got %08x, want %08x", t, i, out[i], KAT[t][6 + i]);
  }
}

/* The stream layout: seed is the key, (tag, index) sit in counter words 1..3. */
static void test_stream_layout(void)
{
  AckdRng  rng;
  uint32_t ctr[4] = {0, 7, 0x89abcdefu, 0x01234567u}, key[2] = {0x9abcdef0u, 0x12345678u}, out[4];
  AckdRngInit(&rng, 0x123456789abcdef0ull, 0x0123456789abcdefull, 7);
  AckdPhilox4x32(ctr, key, out);
  for (int i = 0; i < 4; i++) CHECK(AckdRngU32(&rng) == out[i], "word %d of block 0", i);
  ctr[0] = 1;
  AckdPhilox4x32(ctr, key, out);
  CHECK(AckdRngU32(&rng) == out[0], "first word of block 1");
}

static void test_pure_function(void)
{
  AckdRng a, b;
  AckdRngInit(&a, 42, 1000, 3);
  for (int i = 0; i < 37; i++) AckdRngNormal(&a);
  double later = AckdRngUniform(&a);
  AckdRngInit(&b, 42, 1000, 3);
  for (int i = 0; i < 37; i++) AckdRngNormal(&b);
  CHECK(AckdRngUniform(&b) == later, "re-initialised stream must repeat exactly");
  AckdRngInit(&b, 42, 1001, 3);
  CHECK(AckdRngU32(&b) != (AckdRngInit(&a, 42, 1000, 3), AckdRngU32(&a)), "neighbouring streams differ");
}

static void test_moments(void)
{
  const int n = 400000;
  AckdRng   rng;
  double    s1 = 0, s2 = 0, n1 = 0, n2 = 0, n4 = 0;
  AckdRngInit(&rng, 7, 0, 0);
  for (int i = 0; i < n; i++) {
    double u = AckdRngUniform(&rng), z = AckdRngNormal(&rng);
    CHECK(u >= 0 && u < 1, "uniform %g outside [0,1)", u);
    s1 += u;
    s2 += u * u;
    n1 += z;
    n2 += z * z;
    n4 += z * z * z * z;
  }
  /* Closed forms: U(0,1) mean 1/2, E[u^2] 1/3; N(0,1) mean 0, variance 1, kurtosis 3.
   * Tolerances are about 5 standard errors for n = 4e5. */
  CHECK(fabs(s1 / n - 0.5) < 5 * sqrt(1.0 / 12 / n), "uniform mean %g", s1 / n);
  CHECK(fabs(s2 / n - 1.0 / 3) < 5 * sqrt(4.0 / 45 / n), "uniform second moment %g", s2 / n);
  CHECK(fabs(n1 / n) < 5 * sqrt(1.0 / n), "normal mean %g", n1 / n);
  CHECK(fabs(n2 / n - 1) < 5 * sqrt(2.0 / n), "normal variance %g", n2 / n);
  CHECK(fabs(n4 / n - 3) < 5 * sqrt(96.0 / n), "normal fourth moment %g", n4 / n);
}

static void test_below_and_permutation(void)
{
  enum { K = 7, DRAWS = 70000 };
  AckdRng rng;
  int     hist[K] = {0};
  AckdRngInit(&rng, 11, 5, 9);
  for (int i = 0; i < DRAWS; i++) {
    uint32_t k = AckdRngBelow(&rng, K);
    CHECK(k < K, "AckdRngBelow(7) gave %u", k);
    hist[k < K ? k : 0]++;
  }
  double chi2 = 0, expect = (double)DRAWS / K;
  for (int k = 0; k < K; k++) chi2 += (hist[k] - expect) * (hist[k] - expect) / expect;
  CHECK(chi2 < 22.46, "chi-square %g over 6 degrees of freedom exceeds the 0.999 quantile", chi2);

  PetscInt perm[1000], seen[1000] = {0};
  AckdRngPermutation(&rng, 1000, perm);
  for (int i = 0; i < 1000; i++) seen[perm[i]]++;
  for (int i = 0; i < 1000; i++) CHECK(seen[i] == 1, "value %d appears %d times", i, (int)seen[i]);
}

int main(int argc, char **argv)
{
  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  test_known_answers();
  test_stream_layout();
  test_pure_function();
  test_moments();
  test_below_and_permutation();
  int failed = CHECK_REPORT("test_rng");
  PetscCall(PetscFinalize());
  return failed;
}
