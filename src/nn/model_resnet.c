/* ResNet-18 and ResNet-34 (He et al. 2016) as torchvision defines them, with
 * any number of input bands, a width multiplier, and a small-input stem
 * (3x3 stride 1, no max pooling) for 32x32 images. Layer names are
 * torchvision's, so state_dicts exchange unchanged. */
#include "nn/model_private.h"

/* torchvision's BasicBlock: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)). */
static PetscErrorCode basic_block(AckdModel m, const char *prefix, PetscInt in, PetscInt cin, PetscInt planes,
                                  PetscInt stride, PetscInt *out)
{
  char     a[ACKD_NN_NAME_LEN], b[ACKD_NN_NAME_LEN];
  PetscInt s, shortcut = in;

  PetscFunctionBeginUser;
  PetscCall(PetscSNPrintf(a, sizeof a, "%s.conv1", prefix));
  PetscCall(PetscSNPrintf(b, sizeof b, "%s.bn1", prefix));
  PetscCall(AckdModelAddConvBN(m, a, b, in, cin, planes, 3, stride, 1, 1, PETSC_TRUE, ACKD_ACT_RELU, &s));
  PetscCall(PetscSNPrintf(a, sizeof a, "%s.conv2", prefix));
  PetscCall(PetscSNPrintf(b, sizeof b, "%s.bn2", prefix));
  PetscCall(AckdModelAddConvBN(m, a, b, s, planes, planes, 3, 1, 1, 1, PETSC_FALSE, ACKD_ACT_RELU, &s));
  if (stride != 1 || cin != planes) {
    PetscCall(PetscSNPrintf(a, sizeof a, "%s.downsample.0", prefix));
    PetscCall(PetscSNPrintf(b, sizeof b, "%s.downsample.1", prefix));
    PetscCall(AckdModelAddConvBN(m, a, b, in, cin, planes, 1, stride, 0, 1, PETSC_FALSE, ACKD_ACT_RELU, &shortcut));
  }
  PetscCall(AckdModelAddAdd(m, s, shortcut, &s));
  PetscCall(AckdModelAddActivation(m, ACKD_ACT_RELU, s, out));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdModelBuildResNet(AckdModel m)
{
  const PetscInt  blocks18[4] = {2, 2, 2, 2}, blocks34[4] = {3, 4, 6, 3};
  const PetscInt *blocks = m->config.arch == ACKD_ARCH_RESNET18 ? blocks18 : blocks34;
  PetscInt        s, c = AckdModelScaled(m, 64);

  PetscFunctionBeginUser;
  if (m->config.small_input) {
    PetscCall(
        AckdModelAddConvBN(m, "conv1", "bn1", 0, m->config.in_channels, c, 3, 1, 1, 1, PETSC_TRUE, ACKD_ACT_RELU, &s));
  } else {
    PetscCall(
        AckdModelAddConvBN(m, "conv1", "bn1", 0, m->config.in_channels, c, 7, 2, 3, 1, PETSC_TRUE, ACKD_ACT_RELU, &s));
    PetscCall(AckdModelAddPool(m, "maxpool", ACKD_POOL_MAX, s, 3, 2, 1, &s));
  }
  for (PetscInt layer = 0; layer < 4; layer++) {
    PetscInt planes = AckdModelScaled(m, 64 << layer);
    for (PetscInt b = 0; b < blocks[layer]; b++) {
      char prefix[32];
      PetscCall(PetscSNPrintf(prefix, sizeof prefix, "layer%" PetscInt_FMT ".%" PetscInt_FMT, layer + 1, b));
      PetscCall(basic_block(m, prefix, s, c, planes, (layer > 0 && b == 0) ? 2 : 1, &s));
      c = planes;
    }
  }
  PetscCall(AckdModelAddTokens(m, s, &m->slot_tokens));
  PetscCall(AckdModelAddPool(m, "avgpool", ACKD_POOL_GLOBAL_AVG, s, 0, 0, 0, &m->slot_embedding));
  PetscCall(AckdModelAddLinear(m, "fc", m->slot_embedding, c, m->config.classes, PETSC_TRUE, &m->slot_logits));
  PetscFunctionReturn(0);
}
