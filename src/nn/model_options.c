/* A model's architecture options, read under a prefix so that a stage with a
 * teacher and a student sets both from one options file. */
#include <ackd/nn.h>

PetscErrorCode AckdModelConfigSetFromOptions(MPI_Comm comm, const char *prefix, AckdModelConfig *config)
{
  PetscInt  arch  = (PetscInt)config->arch;
  PetscReal width = config->width > 0 ? config->width : 1.0, dropout = config->dropout;

  PetscFunctionBeginUser;
  PetscOptionsBegin(comm, prefix, "ackd model", NULL);
  PetscCall(AckdOptionsChoice(PetscOptionsObject, "-arch",
                              "Backbone: resnet18, resnet34 (7x7 stem), mobilenetv2 (last_channel 512), shufflenetv2 "
                              "(x0.5, conv5 1024, Linear 1024->512), smallcnn, mlp",
                              AckdArchNames, ACKD_ARCH_MLP + 1, &arch, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-width", "Channel multiplier (1 is the paper's network)", &width, 1e-3,
                            16.0, NULL));
  PetscCall(AckdOptionsBool(PetscOptionsObject, "-small_input",
                            "ResNet stem for small images: 3x3 stride 1, no max pooling", &config->small_input, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-dropout",
                            "Classifier dropout probability (MobileNetV2; torchvision uses 0.2)", &dropout, 0.0, 0.99,
                            NULL));
  PetscOptionsEnd();
  config->arch    = (AckdArch)arch;
  config->width   = width;
  config->dropout = dropout;
  PetscFunctionReturn(0);
}
