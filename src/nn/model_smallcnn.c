/* A small CNN for quick experiments and tests: three conv-BN-ReLU stages
 * (32, 64, 128 channels times the width), 2x2 max pooling between them,
 * global average pooling, one linear classifier. */
#include "nn/model_private.h"

PetscErrorCode AckdModelBuildSmallCNN(AckdModel m)
{
  PetscInt c1 = AckdModelScaled(m, 32), c2 = AckdModelScaled(m, 64), c3 = AckdModelScaled(m, 128), s;

  PetscFunctionBeginUser;
  PetscCall(
      AckdModelAddConvBN(m, "conv1", "bn1", 0, m->config.in_channels, c1, 3, 1, 1, 1, PETSC_TRUE, ACKD_ACT_RELU, &s));
  PetscCall(AckdModelAddPool(m, "pool1", ACKD_POOL_MAX, s, 2, 2, 0, &s));
  PetscCall(AckdModelAddConvBN(m, "conv2", "bn2", s, c1, c2, 3, 1, 1, 1, PETSC_TRUE, ACKD_ACT_RELU, &s));
  PetscCall(AckdModelAddPool(m, "pool2", ACKD_POOL_MAX, s, 2, 2, 0, &s));
  PetscCall(AckdModelAddConvBN(m, "conv3", "bn3", s, c2, c3, 3, 1, 1, 1, PETSC_TRUE, ACKD_ACT_RELU, &s));
  PetscCall(AckdModelAddTokens(m, s, &m->slot_tokens));
  PetscCall(AckdModelAddPool(m, "avgpool", ACKD_POOL_GLOBAL_AVG, s, 0, 0, 0, &m->slot_embedding));
  PetscCall(AckdModelAddLinear(m, "fc", m->slot_embedding, c3, m->config.classes, PETSC_TRUE, &m->slot_logits));
  PetscFunctionReturn(0);
}
