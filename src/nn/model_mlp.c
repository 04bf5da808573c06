/* A multilayer perceptron on flattened images: two hidden layers of 512
 * (times the width) with ReLU; the second hidden layer is the embedding, and
 * also the model's single token, since an MLP has no spatial map. */
#include "nn/model_private.h"

PetscErrorCode AckdModelBuildMLP(AckdModel m)
{
  PetscInt hidden = AckdModelScaled(m, 512), s;
  PetscInt inputs = m->config.in_channels * m->config.image_size * m->config.image_size;

  PetscFunctionBeginUser;
  PetscCheck(m->config.image_size > 0, m->comm, PETSC_ERR_USER_INPUT,
             "model mlp: the image size must be given (it fixes the input layer's width)");
  PetscCall(AckdModelAddLinear(m, "fc1", 0, inputs, hidden, PETSC_TRUE, &s));
  PetscCall(AckdModelAddActivation(m, ACKD_ACT_RELU, s, &s));
  PetscCall(AckdModelAddLinear(m, "fc2", s, hidden, hidden, PETSC_TRUE, &s));
  PetscCall(AckdModelAddActivation(m, ACKD_ACT_RELU, s, &m->slot_embedding));
  PetscCall(AckdModelAddTokens(m, m->slot_embedding, &m->slot_tokens));
  PetscCall(AckdModelAddLinear(m, "fc3", m->slot_embedding, hidden, m->config.classes, PETSC_TRUE, &m->slot_logits));
  PetscFunctionReturn(0);
}
