/* Sample partitions: disjoint, covering, contiguous in rank order, and made of
 * whole statistics blocks so that statistics do not depend on the rank count. */
#include <ackd/data.h>
#include "check.h"

int main(int argc, char **argv)
{
  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  const PetscInt counts[] = {1, 255, 256, 257, 700, 1000, 65536, 100003};
  for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
    for (PetscMPIInt size = 1; size <= 9; size++) {
      PetscInt expect_lo = 0;
      for (PetscMPIInt rank = 0; rank < size; rank++) {
        PetscInt lo, hi;
        AckdDatasetPartition(counts[c], size, rank, &lo, &hi);
        CHECK(lo == expect_lo, "N=%d P=%d rank %d starts at %d, not %d", (int)counts[c], size, rank, (int)lo,
              (int)expect_lo);
        CHECK(hi >= lo, "N=%d P=%d rank %d has a negative range", (int)counts[c], size, rank);
        CHECK(lo % ACKD_DATASET_STATS_BLOCK == 0 || lo == counts[c], "rank %d starts inside a block", rank);
        expect_lo = hi;
      }
      CHECK(expect_lo == counts[c], "N=%d P=%d covers %d samples", (int)counts[c], size, (int)expect_lo);
    }
  }
  int failed = CHECK_REPORT("test_partition");
  PetscCall(PetscFinalize());
  return failed;
}
