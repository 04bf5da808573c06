/* Seeded, stratified splits, shared by synth and curate.
 *
 * Within each class the members, in file order, are given positions by a
 * seeded permutation; positions decide the split. The assignment is a pure
 * function of (seed, labels), so every rank computes the same one. */
#include <ackd/data.h>

/* Members of class k, in index order, and their shuffled positions. */
static PetscErrorCode class_positions(PetscInt n, const PetscInt *label, PetscInt k, uint64_t seed, uint32_t tag,
                                      PetscInt *members, PetscInt *count, PetscInt *position)
{
  AckdRng rng;

  PetscFunctionBeginUser;
  *count = 0;
  for (PetscInt i = 0; i < n; i++)
    if (label[i] == k) members[(*count)++] = i;
  AckdRngInit(&rng, seed, (uint64_t)k, tag);
  AckdRngPermutation(&rng, *count, position);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdSplitStratified(PetscInt n, const PetscInt *label, PetscInt nclasses, const AckdSplitSettings *s,
                                   unsigned char *split)
{
  PetscInt *members, *position, count;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc2(n, &members, n, &position));
  for (PetscInt k = 0; k < nclasses; k++) {
    PetscCall(class_positions(n, label, k, s->seed, s->tag, members, &count, position));
    PetscInt n_train = (PetscInt)PetscFloorReal(s->train * (PetscReal)count + 0.5);
    PetscInt n_val   = PetscMin(count - n_train, (PetscInt)PetscFloorReal(s->val * (PetscReal)count + 0.5));
    for (PetscInt t = 0; t < count; t++) {
      PetscInt p = position[t];
      if (s->folds > 1) /* the paper's k-fold: fold `fold` validates, the others train */
        split[members[t]] = (p * s->folds / count == s->fold) ? ACKD_SPLIT_VAL : ACKD_SPLIT_TRAIN;
      else
        split[members[t]] = p < n_train ? ACKD_SPLIT_TRAIN : (p < n_train + n_val ? ACKD_SPLIT_VAL : ACKD_SPLIT_TEST);
    }
  }
  PetscCall(PetscFree2(members, position));
  PetscFunctionReturn(0);
}
