/* Losses, optimizers, gradient clipping and schedules.
 *
 * In C: the losses' gradients against central differences (step 1e-2 on
 * logits of order 1, loss in double: error ~1e-5 relative; tolerance 1e-3).
 * To HDF5 for torch_training.py: the losses' values and gradients, each
 * optimizer's parameters after five steps on a fixed gradient sequence, the
 * clipped gradients and norm, and each schedule's rate at every step. */
#include <ackd/nn.h>
#include <math.h>
#include "check.h"
#include "parity_io.h"

enum { B = 6, K = 5, STEPS = 5, SCHEDULE_STEPS = 40 };

typedef enum { LOSS_CE, LOSS_SOFT_CE, LOSS_BCE } LossKind;

static PetscErrorCode evaluate_loss(LossKind kind, AckdTensor *z, const PetscInt *labels, const float *targets,
                                    double *loss, AckdTensor *d)
{
  PetscFunctionBeginUser;
  if (kind == LOSS_CE) PetscCall(AckdCrossEntropy(z, labels, 0.1, loss, d));
  if (kind == LOSS_SOFT_CE) PetscCall(AckdSoftCrossEntropy(z, targets, 0.1, loss, d));
  if (kind == LOSS_BCE) PetscCall(AckdBCEWithLogits(z, targets, loss, d));
  PetscFunctionReturn(0);
}

static PetscErrorCode check_loss_gradient(const char *what, LossKind kind, AckdTensor *z, const PetscInt *labels,
                                          const float *targets)
{
  float        dbuf[B * K];
  AckdTensor   d = AckdTensorView(dbuf, B, K, 1, 1);
  double       loss, lp, lm, worst = 0.0;
  const double h = 1e-2;

  PetscFunctionBeginUser;
  PetscCall(evaluate_loss(kind, z, labels, targets, &loss, &d));
  double rms = 0.0;
  for (PetscInt i = 0; i < B * K; i++) rms += (double)dbuf[i] * dbuf[i];
  rms = sqrt(rms / (B * K));
  for (PetscInt i = 0; i < B * K; i++) {
    float saved = z->data[i];
    z->data[i]  = saved + (float)h;
    PetscCall(evaluate_loss(kind, z, labels, targets, &lp, NULL));
    z->data[i] = saved - (float)h;
    PetscCall(evaluate_loss(kind, z, labels, targets, &lm, NULL));
    z->data[i] = saved;
    double fd = (lp - lm) / (2 * h), err = fabs(fd - dbuf[i]) / PetscMax(fabs(dbuf[i]), rms);
    worst = PetscMax(worst, err);
    CHECK(err <= 1e-3, "%s logit %" PetscInt_FMT ": finite difference %.6g, analytic %.6g", what, i, fd,
          (double)dbuf[i]);
  }
  printf("%-14s worst relative error against finite differences %.1e (tolerance 1e-3)\n", what, worst);
  PetscFunctionReturn(0);
}

static PetscErrorCode write_losses(hid_t file, AckdRng *rng)
{
  float      z[B * K], d[B * K], targets[B * K], fractions[B * K];
  PetscInt   labels[B];
  int        labels32[B];
  AckdTensor logits = AckdTensorView(z, B, K, 1, 1), dl = AckdTensorView(d, B, K, 1, 1);
  double     loss;
  PetscInt   shape[2] = {B, K};
  hsize_t    n        = B;
  hid_t      g, space, dset;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < B * K; i++) z[i] = (float)AckdRngUniformRange(rng, -4.0, 4.0);
  for (PetscInt i = 0; i < B * K; i++) targets[i] = (float)(AckdRngU32(rng) % 2);
  targets[3] = 0.25f; /* soft targets too */
  for (PetscInt b = 0; b < B; b++) labels32[b] = (int)(labels[b] = (PetscInt)AckdRngBelow(rng, K));
  /* cover fractions: a main class and a neighbour's share of up to a half, as ackd synth writes
   * them, and one row that does not sum to one (PyTorch does not renormalise it either) */
  for (PetscInt i = 0; i < B * K; i++) fractions[i] = 0.0f;
  for (PetscInt b = 0; b < B; b++) {
    const float share                                    = (float)AckdRngUniformRange(rng, 0.0, 0.5);
    fractions[b * K + labels[b]]                         = 1.0f - share;
    fractions[b * K + (labels[b] + 1 + b % (K - 1)) % K] = share;
  }
  fractions[K + 2] += 0.3f;
  PetscCall(check_loss_gradient("cross-entropy", LOSS_CE, &logits, labels, NULL));
  PetscCall(check_loss_gradient("soft ce", LOSS_SOFT_CE, &logits, NULL, fractions));
  PetscCall(check_loss_gradient("bce", LOSS_BCE, &logits, NULL, targets));

  AckdCallH5(g = H5Gcreate2(file, "losses", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "creating /losses");
  PetscCall(write_array(g, "logits", z, 2, shape));
  PetscCall(write_array(g, "targets", targets, 2, shape));
  AckdCallH5(space = H5Screate_simple(1, &n, NULL), "labels dataspace");
  AckdCallH5(dset = H5Dcreate2(g, "labels", H5T_NATIVE_INT, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "labels");
  AckdCallH5(H5Dwrite(dset, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels32), "writing labels");
  H5Dclose(dset);
  H5Sclose(space);
  PetscCall(AckdCrossEntropy(&logits, labels, 0.1, &loss, &dl));
  PetscCall(AckdH5AttrWriteReal(g, "ce_smoothing", 0.1));
  PetscCall(AckdH5AttrWriteReal(g, "ce_loss", loss));
  PetscCall(write_array(g, "ce_grad", d, 2, shape));
  PetscCall(write_array(g, "fractions", fractions, 2, shape));
  PetscCall(AckdSoftCrossEntropy(&logits, fractions, 0.1, &loss, &dl));
  PetscCall(AckdH5AttrWriteReal(g, "soft_ce_loss", loss));
  PetscCall(write_array(g, "soft_ce_grad", d, 2, shape));
  PetscCall(AckdBCEWithLogits(&logits, targets, &loss, &dl));
  PetscCall(AckdH5AttrWriteReal(g, "bce_loss", loss));
  PetscCall(write_array(g, "bce_grad", d, 2, shape));
  H5Gclose(g);
  PetscFunctionReturn(0);
}

typedef struct {
  const char       *name;
  AckdOptimizerKind kind;
  double            lr, momentum, weight_decay;
  PetscBool         nesterov;
} OptSpec;

/* Two parameter tensors (7 x 3 and 5: the buffer has padding between them),
 * five steps on a fixed gradient sequence. */
static PetscErrorCode write_optimizers(hid_t file, AckdRng *rng)
{
  const OptSpec specs[] = {
      {"sgd", ACKD_OPT_SGD, 0.1, 0.0, 0.0, PETSC_FALSE},
      {"sgd_momentum", ACKD_OPT_SGD, 0.1, 0.9, 1e-2, PETSC_FALSE},
      {"sgd_nesterov", ACKD_OPT_SGD, 0.05, 0.9, 5e-4, PETSC_TRUE},
      {"adam", ACKD_OPT_ADAM, 1e-2, 0.0, 1e-3, PETSC_FALSE},
      {"adamw", ACKD_OPT_ADAMW, 1e-2, 0.0, 1e-2, PETSC_FALSE},
  };
  float    initial[26], grads[STEPS][26];
  PetscInt wshape[1] = {21}, bshape[1] = {5}, gshape[2] = {STEPS, 26};
  hid_t    g;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < 26; i++) initial[i] = (float)AckdRngUniformRange(rng, -1.0, 1.0);
  for (PetscInt s = 0; s < STEPS; s++)
    for (PetscInt i = 0; i < 26; i++) grads[s][i] = (float)AckdRngUniformRange(rng, -1.0, 1.0);
  AckdCallH5(g = H5Gcreate2(file, "optimizers", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "creating /optimizers");
  PetscCall(write_array(g, "initial", initial, 1, (PetscInt[]){26}));
  PetscCall(write_array(g, "grads", &grads[0][0], 2, gshape));
  for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
    AckdParams    params;
    AckdOptimizer opt;
    PetscInt      w, b;
    hid_t         sub;
    PetscCall(AckdParamsCreate(&params));
    PetscCall(AckdParamsAdd(&params, "w", 21, 3, ACKD_INIT_KAIMING_UNIFORM, &w));
    PetscCall(AckdParamsAdd(&params, "b", 5, 3, ACKD_INIT_FAN_IN_UNIFORM, &b));
    PetscCall(AckdParamsSetUp(&params));
    PetscCall(PetscArraycpy(params.values + w, initial, 21));
    PetscCall(PetscArraycpy(params.values + b, initial + 21, 5));
    PetscCall(AckdOptimizerSetUp(&opt, specs[k].kind, &params));
    opt.momentum     = specs[k].momentum;
    opt.weight_decay = specs[k].weight_decay;
    opt.nesterov     = specs[k].nesterov;
    for (PetscInt s = 0; s < STEPS; s++) {
      PetscCall(PetscArraycpy(params.grads + w, grads[s], 21));
      PetscCall(PetscArraycpy(params.grads + b, grads[s] + 21, 5));
      PetscCall(AckdOptimizerStep(&opt, &params, specs[k].lr));
    }
    AckdCallH5(sub = H5Gcreate2(g, specs[k].name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "optimizer group");
    PetscCall(AckdH5AttrWriteString(sub, "kind", AckdOptimizerNames[specs[k].kind]));
    PetscCall(AckdH5AttrWriteReal(sub, "lr", specs[k].lr));
    PetscCall(AckdH5AttrWriteReal(sub, "momentum", specs[k].momentum));
    PetscCall(AckdH5AttrWriteReal(sub, "weight_decay", specs[k].weight_decay));
    PetscCall(AckdH5AttrWriteInt(sub, "nesterov", specs[k].nesterov));
    PetscCall(write_array(sub, "w", params.values + w, 1, wshape));
    PetscCall(write_array(sub, "b", params.values + b, 1, bshape));
    H5Gclose(sub);
    PetscCall(AckdOptimizerDestroy(&opt));
    PetscCall(AckdParamsDestroy(&params));
  }
  /* clipping: the last gradient, to norm 1 */
  {
    AckdParams params;
    PetscInt   w;
    double     norm;
    PetscCall(AckdParamsCreate(&params));
    PetscCall(AckdParamsAdd(&params, "w", 26, 1, ACKD_INIT_ZEROS, &w));
    PetscCall(AckdParamsSetUp(&params));
    PetscCall(PetscArraycpy(params.grads + w, grads[STEPS - 1], 26));
    PetscCall(AckdClipGradNorm(&params, 1.0, &norm));
    PetscCall(AckdH5AttrWriteReal(g, "clip_norm", norm));
    PetscCall(write_array(g, "clipped", params.grads + w, 1, (PetscInt[]){26}));
    PetscCall(AckdParamsDestroy(&params));
  }
  H5Gclose(g);
  PetscFunctionReturn(0);
}

static PetscErrorCode write_schedules(hid_t file)
{
  const struct {
    const char  *name;
    AckdSchedule s;
  } specs[] = {
      {"constant", {.kind = ACKD_SCHEDULE_CONSTANT, .base_lr = 0.1, .total = SCHEDULE_STEPS}},
      {"multistep",
       {.kind        = ACKD_SCHEDULE_MULTISTEP,
        .base_lr     = 0.1,
        .gamma       = 0.2,
        .nmilestones = 3,
        .milestones  = {10, 20, 30},
        .total       = SCHEDULE_STEPS}},
      {"cosine", {.kind = ACKD_SCHEDULE_COSINE, .base_lr = 0.1, .eta_min = 1e-3, .total = SCHEDULE_STEPS}},
      {"poly", {.kind = ACKD_SCHEDULE_POLY, .base_lr = 0.1, .power = 0.9, .total = SCHEDULE_STEPS}},
      {"warmup_cosine",
       {.kind                = ACKD_SCHEDULE_COSINE,
        .base_lr             = 0.1,
        .total               = SCHEDULE_STEPS,
        .warmup              = 5,
        .warmup_start_factor = 0.1}},
  };
  double lr[SCHEDULE_STEPS];
  hid_t  g;

  PetscFunctionBeginUser;
  AckdCallH5(g = H5Gcreate2(file, "schedules", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "creating /schedules");
  for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
    hsize_t n = SCHEDULE_STEPS;
    hid_t   space, dset;
    for (PetscInt t = 0; t < SCHEDULE_STEPS; t++) lr[t] = AckdScheduleLR(&specs[k].s, t);
    AckdCallH5(space = H5Screate_simple(1, &n, NULL), "schedule dataspace");
    AckdCallH5(dset = H5Dcreate2(g, specs[k].name, H5T_NATIVE_DOUBLE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
               "schedule %s", specs[k].name);
    AckdCallH5(H5Dwrite(dset, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, lr), "writing %s", specs[k].name);
    H5Dclose(dset);
    H5Sclose(space);
  }
  H5Gclose(g);
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  AckdRng rng;
  hid_t   file;

  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  PetscCheck(argc >= 2, PETSC_COMM_WORLD, PETSC_ERR_USER_INPUT, "usage: test_nn_training OUT.h5");
  AckdRngInit(&rng, 77, 0, 0x7472u);
  AckdCallH5(file = H5Fcreate(argv[1], H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "creating '%s'", argv[1]);
  PetscCall(write_losses(file, &rng));
  PetscCall(write_optimizers(file, &rng));
  PetscCall(write_schedules(file));
  H5Fclose(file);
  int failed = CHECK_REPORT("nn losses (finite differences)");
  PetscCall(PetscFinalize());
  return failed;
}
