/* AckdDigest against FNV-1a's published 64-bit test vectors (Fowler, Noll, Vo), and chaining: a
 * record digested in parts is the record digested whole. */
#include <ackd/core.h>
#include <string.h>
#include "check.h"

int main(int argc, char **argv)
{
  static const struct {
    const char *text;
    uint64_t    digest;
  } known[] = {{"", 0xcbf29ce484222325ULL}, {"a", 0xaf63dc4c8601ec8cULL}, {"foobar", 0x85944171f73967e8ULL}};

  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
    uint64_t got = AckdDigest(ACKD_DIGEST_START, known[i].text, strlen(known[i].text));
    CHECK(got == known[i].digest, "FNV-1a(\"%s\") = %016llx, expected %016llx", known[i].text, (unsigned long long)got,
          (unsigned long long)known[i].digest);
  }
  CHECK(AckdDigest(AckdDigest(ACKD_DIGEST_START, "foo", 3), "bar", 3) == 0x85944171f73967e8ULL,
        "digesting \"foo\" then \"bar\" = digesting \"foobar\"");
  const int labels[3] = {0, 1, 2}, swapped[3] = {1, 0, 2};
  CHECK(AckdDigest(ACKD_DIGEST_START, labels, sizeof labels) != AckdDigest(ACKD_DIGEST_START, swapped, sizeof swapped),
        "two labels swapped change the digest");
  int failed = check_failures ? CHECK_REPORT("test_digest") : 0;
  PetscCall(PetscFinalize());
  return failed;
}
