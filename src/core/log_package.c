/* -log_view's classes and events, registered once per package as PETSc's own
 * packages do. Registering in every Create would add a class id per object:
 * PETSc looks events up by name, but not classes. */
#include <ackd/core.h>

enum { MAX_PACKAGES = 16 };

/* The packages registered in this PETSc session, so that a second
 * PetscInitialize in the same process registers them again. */
static AckdLogPackage *registered[MAX_PACKAGES];
static int             nregistered;

static PetscErrorCode forget_packages(void)
{
  PetscFunctionBeginUser;
  for (int i = 0; i < nregistered; i++) registered[i]->registered = PETSC_FALSE;
  nregistered = 0;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdLogPackageRegister(AckdLogPackage *package)
{
  PetscFunctionBeginUser;
  if (package->registered) PetscFunctionReturn(0);
  PetscCheck(package->nevents >= 0 && package->nevents <= ACKD_LOG_PACKAGE_MAX_EVENTS && nregistered < MAX_PACKAGES,
             PETSC_COMM_SELF, PETSC_ERR_PLIB, "log package %s: %d events, %d packages; raise the limits in core.h",
             package->name, package->nevents, nregistered);
  PetscCall(PetscClassIdRegister(package->name, &package->classid));
  for (int e = 0; e < package->nevents; e++)
    PetscCall(PetscLogEventRegister(package->event_names[e], package->classid, &package->events[e]));
  if (nregistered == 0) PetscCall(PetscRegisterFinalize(forget_packages));
  registered[nregistered++] = package;
  package->registered       = PETSC_TRUE;
  PetscFunctionReturn(0);
}
