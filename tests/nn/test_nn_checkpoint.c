/* Model tensors to HDF5 and back (docs/DESIGN.md §5 /model/<layer>/<tensor>, with
 * PyTorch's shapes): a round trip restores every value and running statistic
 * bit for bit, and a file of another architecture or width is refused with
 * one line naming the tensor and the options to check. check_checkpoint.py
 * then compares the file's names and shapes with torchvision's state_dict. */
#include <ackd/nn.h>
#include <string.h>
#include "check.h"

static PetscErrorCode build(AckdArch arch, double width, uint64_t seed, AckdModel *model, AckdParams **params)
{
  AckdModelConfig config = {.arch = arch, .in_channels = 10, .classes = 7, .width = width};

  PetscFunctionBeginUser;
  PetscCall(AckdModelCreate(PETSC_COMM_SELF, model));
  PetscCall(AckdModelSetUp(*model, &config, seed));
  PetscCall(AckdModelGetParams(*model, params));
  PetscFunctionReturn(0);
}

static PetscErrorCode expect_refusal(hid_t file, AckdArch arch, double width, const char *fragment)
{
  AckdModel       model;
  AckdParams     *params;
  AckdErrorRecord record;

  PetscFunctionBeginUser;
  PetscCall(build(arch, width, 1, &model, &params));
  memset(&record, 0, sizeof record);
  PetscCall(PetscPushErrorHandler(AckdErrorHandler, &record));
  PetscErrorCode ierr = AckdParamsLoad(params, file, "model");
  PetscCall(PetscPopErrorHandler());
  CHECK(ierr != 0, "loading into %s width %g must fail", AckdArchNames[arch], width);
  CHECK(strstr(record.message, fragment) != NULL, "message '%s' lacks '%s'", record.message, fragment);
  printf("%s width %g -> %s\n", AckdArchNames[arch], width, record.message);
  PetscCall(AckdModelDestroy(&model));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  AckdModel   saved, loaded;
  AckdParams *a, *b;
  AckdRng     rng;
  hid_t       file;

  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  PetscCheck(argc >= 2, PETSC_COMM_WORLD, PETSC_ERR_USER_INPUT, "usage: test_nn_checkpoint OUT.h5");
  PetscCall(build(ACKD_ARCH_RESNET18, 0.25, 1, &saved, &a));
  AckdRngInit(&rng, 4, 0, 0x636bu);
  for (PetscInt i = 0; i < a->buffer_size; i++) a->buffer_values[i] = (float)AckdRngUniform(&rng);
  AckdCallH5(file = H5Fcreate(argv[1], H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "creating '%s'", argv[1]);
  PetscCall(AckdParamsSave(a, PETSC_COMM_SELF, file, "model"));
  H5Fclose(file);

  PetscCall(build(ACKD_ARCH_RESNET18, 0.25, 2, &loaded, &b));
  AckdCallH5(file = H5Fopen(argv[1], H5F_ACC_RDONLY, H5P_DEFAULT), "opening '%s'", argv[1]);
  PetscCall(AckdParamsLoad(b, file, "model"));
  CHECK(!memcmp(a->values, b->values, sizeof(float) * a->size), "parameters differ after the round trip");
  CHECK(!memcmp(a->buffer_values, b->buffer_values, sizeof(float) * a->buffer_size),
        "running statistics differ after the round trip");
  PetscCall(expect_refusal(file, ACKD_ARCH_RESNET34, 0.25, "/model/layer1.2.conv1/weight is missing"));
  PetscCall(expect_refusal(file, ACKD_ARCH_RESNET18, 0.5, "/model/conv1/weight has another shape than the model's"));
  H5Fclose(file);
  PetscCall(AckdModelDestroy(&saved));
  PetscCall(AckdModelDestroy(&loaded));
  int failed = CHECK_REPORT("nn model tensors to HDF5 and back");
  PetscCall(PetscFinalize());
  return failed;
}
