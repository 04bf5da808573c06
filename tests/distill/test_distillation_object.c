/* The distill stage as a library object, without the executable: two AckdDistillation objects in
 * one process, one after the other, on the options of the command line, into
 * BASE/object_0 and BASE/object_1 (-object_base BASE). object_check.py compares both with
 * `ackd distill` run on the same options: a library stage that left part of its work to the
 * executable, or kept state between objects in one process (registrations, option reads, static
 * buffers), shows up as a difference. */
#include <ackd/distill.h>

int main(int argc, char **argv)
{
  char      base[PETSC_MAX_PATH_LEN], dir[PETSC_MAX_PATH_LEN];
  PetscBool set;

  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  PetscCall(PetscOptionsGetString(NULL, NULL, "-object_base", base, sizeof base, &set));
  PetscCheck(set, PETSC_COMM_WORLD, PETSC_ERR_USER_INPUT, "usage: test_distillation_object -object_base DIR OPTIONS");
  for (int run = 0; run < 2; run++) {
    AckdDistillation distillation;
    PetscBool        stopped;

    PetscCall(PetscSNPrintf(dir, sizeof dir, "%s/object_%d", base, run));
    PetscCall(PetscOptionsSetValue(NULL, "-distill_dir", dir));
    PetscCall(AckdDistillationCreate(PETSC_COMM_WORLD, &distillation));
    PetscCall(AckdDistillationSetFromOptions(distillation));
    PetscCall(AckdDistillationSetUp(distillation));
    PetscCall(AckdDistillationRun(distillation, &stopped));
    PetscCheck(!stopped, PETSC_COMM_WORLD, PETSC_ERR_PLIB, "run %d stopped without a stop request", run);
    PetscCall(AckdDistillationDestroy(&distillation));
  }
  PetscCall(PetscOptionsClearValue(NULL, "-object_base"));
  PetscCall(PetscFinalize());
  return 0;
}
