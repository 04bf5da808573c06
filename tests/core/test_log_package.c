/* -log_view's classes: creating an object again must not register its package's
 * class again (PETSc keeps every class id it hands out, and -log_view lists them),
 * and its events keep their ids. */
#include <ackd/core.h>
#include <ackd/data.h>
#include <ackd/kd.h>
#include <ackd/nn.h>
#include <ackd/ot.h>
#include "check.h"

static PetscErrorCode create_each(void)
{
  AckdModel model;
  AckdKD    kd;
  AckdOT    ot;
  AckdSynth synth;

  PetscFunctionBeginUser;
  PetscCall(AckdModelCreate(PETSC_COMM_WORLD, &model));
  PetscCall(AckdModelDestroy(&model));
  PetscCall(AckdKDCreate(PETSC_COMM_WORLD, &kd));
  PetscCall(AckdKDDestroy(&kd));
  PetscCall(AckdOTCreate(PETSC_COMM_WORLD, &ot));
  PetscCall(AckdOTDestroy(&ot));
  PetscCall(AckdSynthCreate(PETSC_COMM_WORLD, &synth));
  PetscCall(AckdSynthDestroy(&synth));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  PetscCall(create_each());
  PetscClassId after_first = PETSC_LARGEST_CLASSID;
  for (int i = 0; i < 3; i++) PetscCall(create_each());
  CHECK(PETSC_LARGEST_CLASSID == after_first, "creating the objects 3 more times registered %d more classes",
        (int)(PETSC_LARGEST_CLASSID - after_first));

  AckdLogPackage package = {.name = "ackd test", .nevents = 2, .event_names = {"TestA", "TestB"}}, again = package;
  PetscCall(AckdLogPackageRegister(&package));
  PetscCall(AckdLogPackageRegister(&package));
  CHECK(PETSC_LARGEST_CLASSID == after_first + 1, "one package, registered twice: %d classes",
        (int)(PETSC_LARGEST_CLASSID - after_first));
  PetscCall(AckdLogPackageRegister(&again)); /* a second instance of the same events: PETSc finds them by name */
  CHECK(again.events[0] == package.events[0] && again.events[1] == package.events[1] &&
            package.events[0] != package.events[1],
        "event ids %d %d, again %d %d", (int)package.events[0], (int)package.events[1], (int)again.events[0],
        (int)again.events[1]);
  int status = CHECK_REPORT("test_log_package");
  PetscCall(PetscFinalize());
  return status;
}
