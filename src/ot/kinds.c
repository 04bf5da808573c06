/* The cost and solver kinds: their names, as options, match files and state files spell them
 * (in the order of AckdOTCostKind and AckdOTSolverKind), and which solvers can stop and resume. */
#include "ot_impl.h"

const char *const AckdOTCostKinds[]   = {"sqeuclidean", "cosine", "kl"};
const char *const AckdOTSolverKinds[] = {"sinkhorn", "unbalanced", "argmin", "exact", "semidual", "auction"};

PetscBool AckdOTResumable(AckdOT ot)
{
  return (PetscBool)(ot->solver == ACKD_OT_SOLVER_SINKHORN || ot->solver == ACKD_OT_SOLVER_UNBALANCED);
}
