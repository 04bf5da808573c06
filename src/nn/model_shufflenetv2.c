/* ShuffleNetV2 x0.5 (Ma et al. 2018) as torchvision defines it, with the
 * paper's head: conv5 to 1024 channels, global average pooling, Linear
 * 1024 -> 512 (the embedding, torchvision's name `fc`), then a classifier
 * Linear 512 -> classes. No nonlinearity sits between the two linears: the
 * paper names none. The width multiplier scales every stage (kept even, for
 * the channel split). Tokens are conv5's feature map. */
#include "nn/model_private.h"

static PetscInt even_scaled(AckdModel m, PetscInt c)
{
  return 2 * PetscMax(1, (PetscInt)(c * m->config.width / 2.0 + 0.5));
}

/* branch1 (stride 2 only): depthwise 3x3 + BN, 1x1 + BN + ReLU.
 * branch2: 1x1 + BN + ReLU, depthwise 3x3 + BN, 1x1 + BN + ReLU.
 * stride 1: concat(first half, branch2(second half)); stride 2: concat(branch1(x), branch2(x)); then shuffle. */
static PetscErrorCode unit(AckdModel m, const char *prefix, PetscInt in, PetscInt inp, PetscInt oup, PetscInt stride,
                           PetscInt *out)
{
  char     a[ACKD_NN_NAME_LEN], b[ACKD_NN_NAME_LEN];
  PetscInt bf = oup / 2, left, right, s;

  PetscFunctionBeginUser;
  if (stride > 1) {
    PetscCall(PetscSNPrintf(a, sizeof a, "%s.branch1.0", prefix));
    PetscCall(PetscSNPrintf(b, sizeof b, "%s.branch1.1", prefix));
    PetscCall(AckdModelAddConvBN(m, a, b, in, inp, inp, 3, stride, 1, inp, PETSC_FALSE, ACKD_ACT_RELU, &s));
    PetscCall(PetscSNPrintf(a, sizeof a, "%s.branch1.2", prefix));
    PetscCall(PetscSNPrintf(b, sizeof b, "%s.branch1.3", prefix));
    PetscCall(AckdModelAddConvBN(m, a, b, s, inp, bf, 1, 1, 0, 1, PETSC_TRUE, ACKD_ACT_RELU, &left));
    right = in;
  } else {
    PetscCheck(inp == 2 * bf, m->comm, PETSC_ERR_PLIB, "unit %s: a stride-1 unit keeps its channel count", prefix);
    PetscCall(AckdModelAddSlice(m, in, 0, bf, &left));
    PetscCall(AckdModelAddSlice(m, in, bf, bf, &right));
  }
  PetscInt rin = stride > 1 ? inp : bf;
  PetscCall(PetscSNPrintf(a, sizeof a, "%s.branch2.0", prefix));
  PetscCall(PetscSNPrintf(b, sizeof b, "%s.branch2.1", prefix));
  PetscCall(AckdModelAddConvBN(m, a, b, right, rin, bf, 1, 1, 0, 1, PETSC_TRUE, ACKD_ACT_RELU, &s));
  PetscCall(PetscSNPrintf(a, sizeof a, "%s.branch2.3", prefix));
  PetscCall(PetscSNPrintf(b, sizeof b, "%s.branch2.4", prefix));
  PetscCall(AckdModelAddConvBN(m, a, b, s, bf, bf, 3, stride, 1, bf, PETSC_FALSE, ACKD_ACT_RELU, &s));
  PetscCall(PetscSNPrintf(a, sizeof a, "%s.branch2.5", prefix));
  PetscCall(PetscSNPrintf(b, sizeof b, "%s.branch2.6", prefix));
  PetscCall(AckdModelAddConvBN(m, a, b, s, bf, bf, 1, 1, 0, 1, PETSC_TRUE, ACKD_ACT_RELU, &s));
  PetscCall(AckdModelAddConcat(m, left, s, &s));
  PetscCall(AckdModelAddShuffle(m, s, 2, out));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdModelBuildShuffleNetV2(AckdModel m)
{
  const PetscInt repeats[3] = {4, 8, 4}, stage_channels[3] = {48, 96, 192};
  PetscInt       c     = AckdModelScaled(m, 24), s;
  PetscInt       conv5 = AckdModelScaled(m, 1024), embedding = AckdModelScaled(m, 512);

  PetscFunctionBeginUser;
  PetscCall(AckdModelAddConvBN(m, "conv1.0", "conv1.1", 0, m->config.in_channels, c, 3, 2, 1, 1, PETSC_TRUE,
                               ACKD_ACT_RELU, &s));
  PetscCall(AckdModelAddPool(m, "maxpool", ACKD_POOL_MAX, s, 3, 2, 1, &s));
  for (PetscInt stage = 0; stage < 3; stage++) {
    PetscInt oup = even_scaled(m, stage_channels[stage]);
    for (PetscInt i = 0; i < repeats[stage]; i++) {
      char prefix[32];
      PetscCall(PetscSNPrintf(prefix, sizeof prefix, "stage%" PetscInt_FMT ".%" PetscInt_FMT, stage + 2, i));
      PetscCall(unit(m, prefix, s, c, oup, i == 0 ? 2 : 1, &s));
      c = oup;
    }
  }
  PetscCall(AckdModelAddConvBN(m, "conv5.0", "conv5.1", s, c, conv5, 1, 1, 0, 1, PETSC_TRUE, ACKD_ACT_RELU, &s));
  PetscCall(AckdModelAddTokens(m, s, &m->slot_tokens));
  PetscCall(AckdModelAddPool(m, "avgpool", ACKD_POOL_GLOBAL_AVG, s, 0, 0, 0, &s));
  PetscCall(AckdModelAddLinear(m, "fc", s, conv5, embedding, PETSC_TRUE, &m->slot_embedding));
  PetscCall(AckdModelAddLinear(m, "classifier", m->slot_embedding, embedding, m->config.classes, PETSC_TRUE,
                               &m->slot_logits));
  PetscFunctionReturn(0);
}
