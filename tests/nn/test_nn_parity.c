/* Writes every layer's inputs, parameters, outputs and gradients to an HDF5
 * file for torch_parity.py, which loads the same weights and inputs into
 * PyTorch and compares (tests/nn/CMakeLists.txt runs the two in sequence).
 *
 * One group per case: attributes describe the layer (kind and its integer
 * settings), datasets hold x, y, dy (the output gradient fed to backward), dx,
 * param/<name>, grad/<name>, and for batch norm the running statistics before
 * and after the forward call (buffer_before/<name>, buffer_after/<name>).
 * Shapes are large enough for oneDNN to pick its optimised kernels. */
#include <ackd/nn.h>
#include <string.h>
#include "parity_io.h"

typedef struct {
  const char        *kind;
  PetscInt           cin, cout, k, s, p, g, n, h, w, bias, training;
  AckdPoolKind       pool;
  AckdActivationKind act;
} Spec;

static PetscErrorCode run_case(hid_t file, AckdEngine *engine, const char *name, const Spec *s, AckdRng *rng)
{
  AckdParams    params;
  AckdConv      conv;
  AckdBatchNorm bn;
  AckdPool      pool;
  AckdLinear    lin;
  AckdLayerNorm ln;
  AckdAttention att;
  AckdTensor    x, y, dy, dx;
  hid_t         group;
  const char   *k = s->kind;

  PetscFunctionBeginUser;
  PetscCall(AckdParamsCreate(&params));
  PetscCall(AckdTensorAllocate(&x, s->n, s->cin, s->h, s->w));
  y = x; /* shape first; buffers below */
  if (!strcmp(k, "conv")) {
    PetscCall(AckdConvSetUp(&conv, &params, "layer", s->cin, s->cout, s->k, s->s, s->p, s->g, (PetscBool)s->bias));
    PetscCall(AckdConvOutputShape(&conv, &x, &y));
  } else if (!strcmp(k, "batchnorm")) {
    PetscCall(AckdBatchNormSetUp(&bn, &params, "layer", s->cin));
    bn.training = (PetscBool)s->training;
  } else if (!strcmp(k, "pool")) {
    PetscCall(AckdPoolSetUp(&pool, "layer", s->pool, s->k, s->s, s->p));
    PetscCall(AckdPoolOutputShape(&pool, &x, &y));
  } else if (!strcmp(k, "linear")) {
    PetscCall(AckdLinearSetUp(&lin, &params, "layer", s->cin * s->h * s->w, s->cout, (PetscBool)s->bias));
    PetscCall(AckdLinearOutputShape(&lin, &x, &y));
  } else if (!strcmp(k, "layernorm")) {
    PetscCall(AckdLayerNormSetUp(&ln, &params, "layer", s->w));
  } else if (!strcmp(k, "attention")) {
    PetscCall(AckdAttentionSetUp(&att, &params, "layer", s->w, s->g, (PetscBool)s->bias));
  }
  PetscCall(AckdParamsSetUp(&params));
  PetscCall(AckdParamsInitialize(&params, 3));
  /* norms' scales and shifts and running statistics away from their defaults */
  for (PetscInt i = 0; i < params.nparams; i++) {
    AckdParamEntry *e = &params.params[i];
    if (e->init == ACKD_INIT_ONES || e->init == ACKD_INIT_ZEROS)
      for (PetscInt j = 0; j < e->size; j++)
        params.values[e->offset + j] = (float)AckdRngUniformRange(rng, e->init == ACKD_INIT_ONES ? 0.5 : -0.5, 1.5);
  }
  for (PetscInt i = 0; i < params.nbuffers; i++) {
    AckdParamEntry *e = &params.buffers[i];
    for (PetscInt j = 0; j < e->size; j++)
      params.buffer_values[e->offset + j] =
          (float)AckdRngUniformRange(rng, e->init == ACKD_INIT_ONES ? 0.5 : -0.5, 1.5);
  }
  for (PetscInt i = 0; i < AckdTensorSize(&x); i++)
    x.data[i] = (float)AckdRngUniformRange(rng, -2.0, 7.0); /* past ReLU6's upper kink */
  PetscCall(AckdTensorAllocate(&y, y.n, y.c, y.h, y.w));
  PetscCall(AckdTensorAllocate(&dy, y.n, y.c, y.h, y.w));
  PetscCall(AckdTensorAllocate(&dx, x.n, x.c, x.h, x.w));
  for (PetscInt i = 0; i < AckdTensorSize(&dy); i++) dy.data[i] = (float)AckdRngUniformRange(rng, -1.0, 1.0);

  AckdCallH5(group = H5Gcreate2(file, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "creating group %s", name);
  PetscCall(AckdH5AttrWriteString(group, "kind", k));
  const char *keys[]   = {"cin", "cout", "k", "s", "p", "g", "bias", "training", "pool", "act"};
  PetscInt    values[] = {s->cin,          s->cout, s->k, s->s, s->p, s->g, s->bias, s->training, (PetscInt)s->pool,
                          (PetscInt)s->act};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) PetscCall(AckdH5AttrWriteInt(group, keys[i], values[i]));
  PetscCall(write_tensor(group, "x", &x));
  PetscCall(write_tensor(group, "dy", &dy));
  PetscCall(write_entries(group, "param", params.params, params.nparams, params.values));
  PetscCall(write_entries(group, "buffer_before", params.buffers, params.nbuffers, params.buffer_values));

  if (!strcmp(k, "conv")) {
    PetscCall(AckdConvForward(&conv, engine, &x, &y));
    PetscCall(AckdConvBackward(&conv, engine, &x, &dy, &dx));
    PetscCall(AckdConvDestroy(&conv));
  } else if (!strcmp(k, "batchnorm")) {
    PetscCall(AckdBatchNormForward(&bn, engine, &x, &y));
    PetscCall(AckdBatchNormBackward(&bn, engine, &x, &dy, &dx));
    PetscCall(AckdBatchNormDestroy(&bn));
  } else if (!strcmp(k, "pool")) {
    PetscCall(AckdPoolForward(&pool, engine, &x, &y));
    PetscCall(AckdPoolBackward(&pool, engine, &x, &dy, &dx));
    PetscCall(AckdPoolDestroy(&pool));
  } else if (!strcmp(k, "activation")) {
    PetscCall(AckdActivationForward(s->act, &x, &y));
    PetscCall(AckdActivationBackward(s->act, &x, &dy, &dx));
  } else if (!strcmp(k, "linear")) {
    PetscCall(AckdLinearForward(&lin, engine, &x, &y));
    PetscCall(AckdLinearBackward(&lin, engine, &x, &dy, &dx));
  } else if (!strcmp(k, "layernorm")) {
    PetscCall(AckdLayerNormForward(&ln, &x, &y));
    PetscCall(AckdLayerNormBackward(&ln, &x, &dy, &dx));
    PetscCall(AckdLayerNormDestroy(&ln));
  } else if (!strcmp(k, "attention")) {
    PetscCall(AckdAttentionForward(&att, &x, &y));
    PetscCall(AckdAttentionBackward(&att, &x, &dy, &dx));
    PetscCall(AckdAttentionDestroy(&att));
  } else if (!strcmp(k, "shuffle")) {
    PetscCall(AckdChannelShuffle(&x, s->g, &y));
    PetscCall(AckdChannelShuffle(&dy, dy.c / s->g, &dx));
  }
  PetscCall(write_tensor(group, "y", &y));
  PetscCall(write_tensor(group, "dx", &dx));
  PetscCall(write_entries(group, "grad", params.params, params.nparams, params.grads));
  PetscCall(write_entries(group, "buffer_after", params.buffers, params.nbuffers, params.buffer_values));
  H5Gclose(group);
  PetscCall(AckdTensorFree(&x));
  PetscCall(AckdTensorFree(&y));
  PetscCall(AckdTensorFree(&dy));
  PetscCall(AckdTensorFree(&dx));
  PetscCall(AckdParamsDestroy(&params));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  AckdEngine engine;
  AckdRng    rng;
  hid_t      file;
  /*              kind          cin cout k  s  p  g   n   h   w  bias train pool                  act */
  const Spec specs[] = {
      {"conv", 16, 32, 3, 1, 1, 1, 4, 20, 20, 1, 1, ACKD_POOL_MAX, ACKD_ACT_RELU},
      {"conv", 10, 16, 7, 2, 3, 1, 2, 33, 33, 0, 1, ACKD_POOL_MAX, ACKD_ACT_RELU},
      {"conv", 32, 32, 3, 2, 1, 32, 4, 16, 16, 0, 1, ACKD_POOL_MAX, ACKD_ACT_RELU},
      {"conv", 24, 48, 3, 1, 1, 4, 2, 12, 12, 1, 1, ACKD_POOL_MAX, ACKD_ACT_RELU},
      {"conv", 32, 64, 1, 2, 0, 1, 4, 16, 16, 0, 1, ACKD_POOL_MAX, ACKD_ACT_RELU},
      {"batchnorm", 16, 16, 0, 0, 0, 0, 8, 10, 10, 0, 1, ACKD_POOL_MAX, ACKD_ACT_RELU},
      {"batchnorm", 16, 16, 0, 0, 0, 0, 8, 10, 10, 0, 0, ACKD_POOL_MAX, ACKD_ACT_RELU},
      {"pool", 8, 8, 3, 2, 1, 0, 4, 17, 17, 0, 1, ACKD_POOL_MAX, ACKD_ACT_RELU},
      {"pool", 8, 8, 3, 2, 1, 0, 4, 16, 16, 0, 1, ACKD_POOL_AVG, ACKD_ACT_RELU},
      {"pool", 8, 8, 0, 0, 0, 0, 4, 7, 7, 0, 1, ACKD_POOL_GLOBAL_AVG, ACKD_ACT_RELU},
      {"activation", 8, 8, 0, 0, 0, 0, 4, 9, 9, 0, 1, ACKD_POOL_MAX, ACKD_ACT_RELU},
      {"activation", 8, 8, 0, 0, 0, 0, 4, 9, 9, 0, 1, ACKD_POOL_MAX, ACKD_ACT_RELU6},
      {"activation", 8, 8, 0, 0, 0, 0, 4, 9, 9, 0, 1, ACKD_POOL_MAX, ACKD_ACT_GELU},
      {"linear", 64, 10, 0, 0, 0, 0, 8, 2, 2, 1, 1, ACKD_POOL_MAX, ACKD_ACT_RELU},
      {"layernorm", 1, 1, 0, 0, 0, 0, 4, 6, 32, 1, 1, ACKD_POOL_MAX, ACKD_ACT_RELU},
      {"shuffle", 24, 24, 0, 0, 0, 2, 2, 5, 5, 0, 1, ACKD_POOL_MAX, ACKD_ACT_RELU},
      {"attention", 1, 1, 0, 0, 0, 4, 3, 6, 16, 0, 1, ACKD_POOL_MAX, ACKD_ACT_RELU},
      {"attention", 1, 1, 0, 0, 0, 2, 2, 5, 8, 1, 1, ACKD_POOL_MAX, ACKD_ACT_RELU},
  };

  PetscCall(PetscInitialize(&argc, &argv, NULL, "usage: test_nn_parity OUT.h5"));
  PetscCheck(argc >= 2, PETSC_COMM_WORLD, PETSC_ERR_USER_INPUT, "usage: test_nn_parity OUT.h5");
  PetscCall(AckdEngineCreate(1, &engine));
  AckdRngInit(&rng, 31, 0, 0x7061u);
  AckdCallH5(file = H5Fcreate(argv[1], H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "creating '%s'", argv[1]);
  for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
    char name[32];
    PetscCall(PetscSNPrintf(name, sizeof name, "case%02d_%s", (int)i, specs[i].kind));
    PetscCall(run_case(file, &engine, name, &specs[i], &rng));
  }
  H5Fclose(file);
  PetscCall(AckdEngineDestroy(&engine));
  PetscCall(PetscFinalize());
  return 0;
}
