/* What the checkpoint writer and reader share (internal to src/ckpt). */
#ifndef ACKD_CKPT_PRIVATE_H
#define ACKD_CKPT_PRIVATE_H

#include <ackd/ckpt.h>

/* DIR/ckpt_<step>.h5, zero-padded so names sort by step. */
void AckdCkptPath(const char *dir, PetscInt step, char *path, size_t len);

/* Steps of the checkpoints in `dir`, newest first (rank-local): complete
 * ones (ckpt_<step>.h5), or with `partial` the leftovers of killed writes. */
PetscErrorCode AckdCkptList(const char *dir, PetscBool partial, PetscInt **steps, PetscInt *n);

/* "conv1.weight" -> "/model/conv1/weight": the last dot separates layer and parameter. */
void AckdCkptEntryPath(const char *group, const char *name, char *path, size_t len);

#endif
