/* Writes one model's weights, input and outputs and gradients, in training
 * and then evaluation mode, for torch_model_parity.py.
 *
 *   test_nn_model_parity -arch resnet18 -width 1 -bands 10 -classes 7 -size 64 -batch 4 [-small_input] -output F.h5
 *
 * The loss is a random linear functional of all three outputs (logits,
 * embedding, tokens), so every gradient path into the backbone is exercised.
 * Groups: / (attributes: the configuration), /param, /buffer_before, /x, and
 * per mode (train, eval): d_logits, d_embedding, d_tokens, logits, embedding,
 * tokens, grad/<name>, buffer_after/<name>. Without batch norm (the MLP) the
 * buffer groups are empty. */
#include <ackd/nn.h>
#include <string.h>
#include "parity_io.h"

static PetscErrorCode random_like(AckdRng *rng, const AckdTensor *like, AckdTensor *t)
{
  PetscFunctionBeginUser;
  PetscCall(AckdTensorAllocate(t, like->n, like->c, like->h, like->w));
  for (PetscInt i = 0; i < AckdTensorSize(t); i++) t->data[i] = (float)AckdRngUniformRange(rng, -1.0, 1.0);
  PetscFunctionReturn(0);
}

static PetscErrorCode run_mode(hid_t file, AckdModel model, AckdEngine *engine, const AckdTensor *x, PetscBool training,
                               AckdRng *rng)
{
  AckdModelOutputs out;
  AckdParams      *params;
  AckdTensor       dl, de, dt;
  hid_t            g;
  const char      *mode = training ? "train" : "eval";

  PetscFunctionBeginUser;
  PetscCall(AckdModelGetParams(model, &params));
  PetscCall(AckdModelSetTraining(model, training));
  PetscCall(AckdModelForward(model, engine, x, &out));
  PetscCall(random_like(rng, &out.logits, &dl));
  PetscCall(random_like(rng, &out.embedding, &de));
  PetscCall(random_like(rng, &out.tokens, &dt));
  PetscCall(AckdModelBackward(model, engine, &dl, &de, &dt));
  AckdCallH5(g = H5Gcreate2(file, mode, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "creating group %s", mode);
  PetscCall(write_tensor(g, "d_logits", &dl));
  PetscCall(write_tensor(g, "d_embedding", &de));
  PetscCall(write_tensor(g, "d_tokens", &dt));
  PetscCall(write_tensor(g, "logits", &out.logits));
  PetscCall(write_tensor(g, "embedding", &out.embedding));
  PetscCall(write_tensor(g, "tokens", &out.tokens));
  PetscCall(write_entries(g, "grad", params->params, params->nparams, params->grads));
  PetscCall(write_entries(g, "buffer_after", params->buffers, params->nbuffers, params->buffer_values));
  H5Gclose(g);
  PetscCall(AckdTensorFree(&dl));
  PetscCall(AckdTensorFree(&de));
  PetscCall(AckdTensorFree(&dt));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  AckdModelConfig config = {.arch = ACKD_ARCH_RESNET18, .in_channels = 10, .classes = 7, .width = 1.0};
  PetscInt        size = 64, batch = 4, arch = 0;
  char            output[PETSC_MAX_PATH_LEN] = "model_parity.h5";
  AckdEngine      engine;
  AckdModel       model;
  AckdParams     *params;
  AckdTensor      x;
  AckdRng         rng;
  hid_t           file;

  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  PetscCall(PetscOptionsGetEList(NULL, NULL, "-arch", AckdArchNames, 6, &arch, NULL));
  config.arch = (AckdArch)arch;
  PetscCall(PetscOptionsGetReal(NULL, NULL, "-width", &config.width, NULL));
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-bands", &config.in_channels, NULL));
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-classes", &config.classes, NULL));
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-size", &size, NULL));
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-batch", &batch, NULL));
  PetscCall(PetscOptionsGetBool(NULL, NULL, "-small_input", &config.small_input, NULL));
  PetscCall(PetscOptionsGetString(NULL, NULL, "-output", output, sizeof output, NULL));
  /* MobileNetV2's dropout stays 0 here: PyTorch cannot draw ackd's masks */
  config.image_size = size;

  PetscCall(AckdEngineCreate(1, &engine));
  PetscCall(AckdModelCreate(PETSC_COMM_SELF, &model));
  PetscCall(AckdModelSetUp(model, &config, 42));
  PetscCall(AckdModelGetParams(model, &params));
  AckdRngInit(&rng, 5, 0, 0x6d70u);
  /* running statistics away from (0, 1), so evaluation mode is not trivial */
  for (PetscInt i = 0; i < params->nbuffers; i++) {
    AckdParamEntry *e = &params->buffers[i];
    for (PetscInt j = 0; j < e->size; j++)
      params->buffer_values[e->offset + j] = (float)AckdRngUniformRange(&rng, e->init == ACKD_INIT_ONES ? 0.5 : -0.2,
                                                                        e->init == ACKD_INIT_ONES ? 1.5 : 0.2);
  }
  PetscCall(AckdTensorAllocate(&x, batch, config.in_channels, size, size));
  for (PetscInt i = 0; i < AckdTensorSize(&x); i++) x.data[i] = (float)AckdRngUniformRange(&rng, -1.0, 1.0);

  AckdCallH5(file = H5Fcreate(output, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "creating '%s'", output);
  PetscCall(AckdH5AttrWriteString(file, "arch", AckdArchNames[config.arch]));
  PetscCall(AckdH5AttrWriteReal(file, "width", config.width));
  PetscCall(AckdH5AttrWriteInt(file, "bands", config.in_channels));
  PetscCall(AckdH5AttrWriteInt(file, "classes", config.classes));
  PetscCall(AckdH5AttrWriteInt(file, "small_input", config.small_input));
  PetscCall(write_tensor(file, "x", &x));
  PetscCall(write_entries(file, "param", params->params, params->nparams, params->values));
  PetscCall(write_entries(file, "buffer_before", params->buffers, params->nbuffers, params->buffer_values));
  PetscCall(run_mode(file, model, &engine, &x, PETSC_TRUE, &rng));
  PetscCall(run_mode(file, model, &engine, &x, PETSC_FALSE, &rng));
  H5Fclose(file);

  PetscCall(AckdTensorFree(&x));
  PetscCall(AckdModelDestroy(&model));
  PetscCall(AckdEngineDestroy(&engine));
  PetscCall(PetscFinalize());
  return 0;
}
