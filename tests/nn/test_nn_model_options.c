/* Architecture options under a prefix: two models configured from one options
 * database, defaults kept when an option is absent, and a bad value named in
 * a one-line error with the valid choices. Also: every architecture builds
 * with odd band and class counts, and its three outputs have the documented
 * shapes. */
#include <ackd/nn.h>
#include <string.h>
#include "check.h"

static PetscErrorCode check_shapes(AckdEngine *engine, AckdArch arch, PetscInt d_expected)
{
  AckdModelConfig  config = {.arch = arch, .in_channels = 13, .classes = 3, .width = 0.25, .image_size = 32};
  AckdModel        model;
  AckdModelOutputs out;
  AckdTensor       x;

  PetscFunctionBeginUser;
  PetscCall(AckdModelCreate(PETSC_COMM_SELF, &model));
  PetscCall(AckdModelSetUp(model, &config, 9));
  PetscCall(AckdTensorAllocate(&x, 2, 13, 32, 32));
  PetscCall(AckdModelForward(model, engine, &x, &out));
  CHECK(out.logits.n == 2 && out.logits.c == 3 && out.logits.h == 1 && out.logits.w == 1, "%s logits shape",
        AckdArchNames[arch]);
  CHECK(out.embedding.n == 2 && out.embedding.c == d_expected && out.embedding.h == 1,
        "%s embedding has %" PetscInt_FMT " features, expected %" PetscInt_FMT, AckdArchNames[arch], out.embedding.c,
        d_expected);
  CHECK(out.tokens.n == 2 && out.tokens.c == 1 && out.tokens.h >= 1, "%s tokens shape", AckdArchNames[arch]);
  PetscCall(AckdTensorFree(&x));
  PetscCall(AckdModelDestroy(&model));
  PetscFunctionReturn(0);
}

static PetscErrorCode read_bad_arch(void)
{
  AckdModelConfig config = {.arch = ACKD_ARCH_RESNET18};

  PetscFunctionBeginUser;
  PetscCall(PetscOptionsSetValue(NULL, "-bad_arch", "resnet50"));
  PetscCall(AckdModelConfigSetFromOptions(PETSC_COMM_SELF, "bad_", &config));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  AckdModelConfig teacher = {.arch = ACKD_ARCH_RESNET18, .width = 1.0}, student = teacher;
  AckdEngine      engine;
  AckdErrorRecord record;

  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  PetscCall(PetscOptionsSetValue(NULL, "-teacher_arch", "resnet34"));
  PetscCall(PetscOptionsSetValue(NULL, "-student_arch", "mobilenetv2"));
  PetscCall(PetscOptionsSetValue(NULL, "-student_width", "0.5"));
  PetscCall(AckdModelConfigSetFromOptions(PETSC_COMM_SELF, "teacher_", &teacher));
  PetscCall(AckdModelConfigSetFromOptions(PETSC_COMM_SELF, "student_", &student));
  CHECK(teacher.arch == ACKD_ARCH_RESNET34 && teacher.width == 1.0, "teacher: %s width %g", AckdArchNames[teacher.arch],
        teacher.width);
  CHECK(student.arch == ACKD_ARCH_MOBILENETV2 && student.width == 0.5, "student: %s width %g",
        AckdArchNames[student.arch], student.width);

  memset(&record, 0, sizeof record);
  PetscCall(PetscPushErrorHandler(AckdErrorHandler, &record));
  PetscErrorCode ierr = read_bad_arch();
  PetscCall(PetscPopErrorHandler());
  CHECK(ierr == PETSC_ERR_USER_INPUT, "a bad architecture must be a user-input error");
  CHECK(strstr(record.message, "option -bad_arch: 'resnet50' is not one of: resnet18, resnet34, mobilenetv2") != NULL,
        "message '%s'", record.message);

  /* embedding sizes at width 0.25: ResNet 512/4, MobileNetV2 keeps 512, ShuffleNet 512/4, small CNN 128/4, MLP 512/4 */
  PetscCall(AckdEngineCreate(1, &engine));
  const AckdArch archs[]     = {ACKD_ARCH_RESNET18,     ACKD_ARCH_RESNET34, ACKD_ARCH_MOBILENETV2,
                                ACKD_ARCH_SHUFFLENETV2, ACKD_ARCH_SMALLCNN, ACKD_ARCH_MLP};
  const PetscInt embedding[] = {128, 128, 512, 128, 32, 128};
  for (int i = 0; i < 6; i++) PetscCall(check_shapes(&engine, archs[i], embedding[i]));
  PetscCall(AckdEngineDestroy(&engine));
  int failed = CHECK_REPORT("nn model options and shapes");
  PetscCall(PetscFinalize());
  return failed;
}
