/* MobileNetV2 (Sandler et al. 2018) as torchvision defines it, with the
 * paper's last_channel of 512 instead of 1280, any number of input bands and
 * torchvision's width multiplier (channels rounded to multiples of 8). */
#include "nn/model_private.h"

/* torchvision's _make_divisible: nearest multiple of 8, never 10% below v. */
static PetscInt make_divisible(double v)
{
  const PetscInt divisor = 8;
  PetscInt       rounded = PetscMax(divisor, (PetscInt)(v + divisor / 2.0) / divisor * divisor);
  if (rounded < 0.9 * v) rounded += divisor;
  return rounded;
}

/* Expansion 1x1 (unless t = 1), depthwise 3x3, linear 1x1 projection; a
 * residual when the block keeps shape. Names follow torchvision's Sequential
 * indices, which shift by one when there is no expansion. */
static PetscErrorCode inverted_residual(AckdModel m, PetscInt index, PetscInt in, PetscInt inp, PetscInt oup,
                                        PetscInt stride, PetscInt t, PetscInt *out)
{
  char     a[ACKD_NN_NAME_LEN], b[ACKD_NN_NAME_LEN];
  PetscInt s = in, hidden = inp * t, k = 0;

  PetscFunctionBeginUser;
  if (t != 1) {
    PetscCall(PetscSNPrintf(a, sizeof a, "features.%" PetscInt_FMT ".conv.0.0", index));
    PetscCall(PetscSNPrintf(b, sizeof b, "features.%" PetscInt_FMT ".conv.0.1", index));
    PetscCall(AckdModelAddConvBN(m, a, b, s, inp, hidden, 1, 1, 0, 1, PETSC_TRUE, ACKD_ACT_RELU6, &s));
    k = 1;
  }
  PetscCall(PetscSNPrintf(a, sizeof a, "features.%" PetscInt_FMT ".conv.%" PetscInt_FMT ".0", index, k));
  PetscCall(PetscSNPrintf(b, sizeof b, "features.%" PetscInt_FMT ".conv.%" PetscInt_FMT ".1", index, k));
  PetscCall(AckdModelAddConvBN(m, a, b, s, hidden, hidden, 3, stride, 1, hidden, PETSC_TRUE, ACKD_ACT_RELU6, &s));
  PetscCall(PetscSNPrintf(a, sizeof a, "features.%" PetscInt_FMT ".conv.%" PetscInt_FMT, index, k + 1));
  PetscCall(PetscSNPrintf(b, sizeof b, "features.%" PetscInt_FMT ".conv.%" PetscInt_FMT, index, k + 2));
  PetscCall(AckdModelAddConvBN(m, a, b, s, hidden, oup, 1, 1, 0, 1, PETSC_FALSE, ACKD_ACT_RELU6, &s));
  if (stride == 1 && inp == oup) PetscCall(AckdModelAddAdd(m, in, s, &s));
  *out = s;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdModelBuildMobileNetV2(AckdModel m)
{
  /* expansion t, channels c, repeats n, first stride s: torchvision's table */
  const PetscInt settings[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                                   {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
  double         w              = m->config.width;
  PetscInt       c = make_divisible(32 * w), last = make_divisible(512 * PetscMax(1.0, w)), s, index = 1;
  char           a[32] = "features.0.0", b[32] = "features.0.1";

  PetscFunctionBeginUser;
  PetscCall(AckdModelAddConvBN(m, a, b, 0, m->config.in_channels, c, 3, 2, 1, 1, PETSC_TRUE, ACKD_ACT_RELU6, &s));
  for (int row = 0; row < 7; row++) {
    PetscInt oup = make_divisible(settings[row][1] * w);
    for (PetscInt i = 0; i < settings[row][2]; i++, index++) {
      PetscCall(inverted_residual(m, index, s, c, oup, i == 0 ? settings[row][3] : 1, settings[row][0], &s));
      c = oup;
    }
  }
  PetscCall(PetscSNPrintf(a, sizeof a, "features.%" PetscInt_FMT ".0", index));
  PetscCall(PetscSNPrintf(b, sizeof b, "features.%" PetscInt_FMT ".1", index));
  PetscCall(AckdModelAddConvBN(m, a, b, s, c, last, 1, 1, 0, 1, PETSC_TRUE, ACKD_ACT_RELU6, &s));
  PetscCall(AckdModelAddTokens(m, s, &m->slot_tokens));
  PetscCall(AckdModelAddPool(m, "avgpool", ACKD_POOL_GLOBAL_AVG, s, 0, 0, 0, &m->slot_embedding));
  s = m->slot_embedding;
  if (m->config.dropout > 0) PetscCall(AckdModelAddDropout(m, "classifier.0", s, m->config.dropout, &s));
  PetscCall(AckdModelAddLinear(m, "classifier.1", s, last, m->config.classes, PETSC_TRUE, &m->slot_logits));
  PetscFunctionReturn(0);
}
