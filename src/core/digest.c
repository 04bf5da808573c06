/* FNV-1a (Fowler, Noll, Vo), 64 bits: one multiply and one xor per byte. Fast enough for the
 * labels of a collection or a gallery's logits, which is all it digests. */
#include <ackd/core.h>

uint64_t AckdDigest(uint64_t digest, const void *bytes, size_t n)
{
  const unsigned char *b = bytes;
  for (size_t i = 0; i < n; i++) digest = (digest ^ b[i]) * 0x100000001b3ULL;
  return digest;
}
