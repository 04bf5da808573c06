/* DynM's re-matching schedule: e_t = e0 + Σ_{i=1..t} (Δe + e_μ (i - 1)), so the
 * gap between re-matchings grows by e_μ each time (docs/KD.md, "SemBridge"). */
#include <ackd/kd.h>

PetscErrorCode AckdDynMIsAdjustEpoch(PetscInt e0, PetscInt delta, PetscInt growth, PetscInt epoch, PetscBool *adjust)
{
  PetscFunctionBeginUser;
  PetscCheck(delta > 0 && growth >= 0, PETSC_COMM_SELF, PETSC_ERR_USER_INPUT,
             "DynM schedule: the interval (%" PetscInt_FMT ") must be positive and its growth (%" PetscInt_FMT
             ") non-negative",
             delta, growth);
  *adjust = PETSC_FALSE;
  for (PetscInt t = 0, e = e0; e <= epoch; t++) {
    if (e == epoch) *adjust = PETSC_TRUE;
    e += delta + growth * t; /* e_{t+1} = e_t + Δe + e_μ t */
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdDynMAdjustEpochs(PetscInt e0, PetscInt delta, PetscInt growth, PetscInt last, PetscInt capacity,
                                    PetscInt *epochs, PetscInt *n)
{
  PetscFunctionBeginUser;
  PetscCheck(delta > 0 && growth >= 0, PETSC_COMM_SELF, PETSC_ERR_USER_INPUT,
             "DynM schedule: the interval (%" PetscInt_FMT ") must be positive and its growth (%" PetscInt_FMT
             ") non-negative",
             delta, growth);
  *n = 0;
  for (PetscInt t = 0, e = e0; e <= last && *n < capacity; t++) {
    epochs[(*n)++] = e;
    e += delta + growth * t;
  }
  PetscFunctionReturn(0);
}
