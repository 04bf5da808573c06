/* ackd distill: the RGB student learns from the frozen MS teacher through a KD method, data
 * parallel and resumable (src/distill/distillation.c; docs/KD.md has the losses).
 *
 *   AckdDistillationCreate(comm, &d);
 *   AckdDistillationSetFromOptions(d);    -distill_*, -student_*, -kd_*, -sembridge, -ska_*, -dynm_*,
 *                                         and the trainer's -distill_ options
 *   AckdDistillationSetUp(d);             datasets, teacher targets and tokens, the student, the KD object
 *   AckdDistillationRun(d, &stopped);     collective; stopped: checkpointed on a stop request (exit 75)
 *   AckdDistillationDestroy(&d); */
#ifndef ACKD_DISTILL_H
#define ACKD_DISTILL_H

#include <ackd/core.h>

typedef struct _p_AckdDistillation *AckdDistillation;

PetscErrorCode AckdDistillationCreate(MPI_Comm comm, AckdDistillation *distillation);
PetscErrorCode AckdDistillationSetFromOptions(AckdDistillation distillation);
PetscErrorCode AckdDistillationSetUp(AckdDistillation distillation);
PetscErrorCode AckdDistillationRun(AckdDistillation distillation, PetscBool *stopped);
PetscErrorCode AckdDistillationDestroy(AckdDistillation *distillation);

#endif
