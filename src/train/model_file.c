/* A model file: the attributes that say which network it holds, and its weights and batch-norm
 * statistics in checkpoint layout, read from a run's best.h5 (eval, the frozen teacher, the end
 * of train), or a starting point (-train_init, -distill_init): the network of another run to
 * fine-tune, or PyTorch weights that analysis/import_torch.py converted. */
#include <ackd/ckpt.h>
#include <ackd/train.h>
#include <string.h>

PetscErrorCode AckdModelConfigWrite(const AckdModelConfig *config, hid_t file)
{
  PetscFunctionBeginUser;
  PetscCall(AckdH5AttrWriteString(file, "model_architecture", AckdArchNames[config->arch]));
  PetscCall(AckdH5AttrWriteInt(file, "in_channels", config->in_channels));
  PetscCall(AckdH5AttrWriteInt(file, "classes", config->classes));
  PetscCall(AckdH5AttrWriteReal(file, "width", config->width));
  PetscCall(AckdH5AttrWriteInt(file, "small_input", config->small_input));
  PetscCall(AckdH5AttrWriteInt(file, "image_size", config->image_size));
  PetscCall(AckdH5AttrWriteReal(file, "dropout", config->dropout));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdModelConfigRead(MPI_Comm comm, hid_t file, const char *path, AckdModelConfig *config)
{
  char      arch[64];
  PetscBool found, ok = PETSC_TRUE, f;
  PetscInt  small = 0;

  PetscFunctionBeginUser;
  PetscCall(AckdH5AttrReadString(file, "model_architecture", arch, sizeof arch, &found));
  PetscCall(AckdH5AttrReadInt(file, "in_channels", &config->in_channels, &f));
  ok = (PetscBool)(ok && f);
  PetscCall(AckdH5AttrReadInt(file, "classes", &config->classes, &f));
  ok = (PetscBool)(ok && f);
  PetscCall(AckdH5AttrReadReal(file, "width", &config->width, &f));
  ok = (PetscBool)(ok && f);
  PetscCall(AckdH5AttrReadInt(file, "small_input", &small, &f));
  PetscCall(AckdH5AttrReadInt(file, "image_size", &config->image_size, &f));
  PetscCall(AckdH5AttrReadReal(file, "dropout", &config->dropout, &f));
  PetscCheck(found && ok, comm, PETSC_ERR_FILE_UNEXPECTED,
             "'%s' does not record its model (architecture, in_channels, classes, width); use a checkpoint written by "
             "ackd train, ssm or distill",
             path);
  config->small_input = (PetscBool)(small != 0);
  PetscInt i;
  for (i = 0; i <= ACKD_ARCH_MLP; i++)
    if (!strcmp(arch, AckdArchNames[i])) break;
  PetscCheck(i <= ACKD_ARCH_MLP, comm, PETSC_ERR_FILE_UNEXPECTED, "'%s' records the unknown architecture '%s'", path,
             arch);
  config->arch = (AckdArch)i;
  PetscFunctionReturn(0);
}

static void describe(const AckdModelConfig *c, char *text, size_t len)
{
  snprintf(text, len, "%s at width %g%s, %" PetscInt_FMT " bands, %" PetscInt_FMT " classes", AckdArchNames[c->arch],
           c->width, c->small_input ? " (small-input stem)" : "", c->in_channels, c->classes);
}

PetscErrorCode AckdModelReadCheckpoint(AckdCkptReader reader, AckdModel model)
{
  AckdParams    *params;
  AckdCkptEntry *entries;
  PetscInt       n;

  PetscFunctionBeginUser;
  PetscCall(AckdModelGetParams(model, &params));
  PetscCall(AckdParamsGetCheckpointEntries(params, &n, &entries));
  PetscCall(AckdCkptReaderReadModel(reader, "model", n, entries));
  PetscCall(PetscFree(entries));
  PetscFunctionReturn(0);
}

/* The file's recorded model is compared with the model first, so that a mismatch is named by what
 * differs (architecture, width, bands, classes) before any tensor is. */
PetscErrorCode AckdModelInitFromFile(MPI_Comm comm, AckdModel model, const AckdModelConfig *config, const char *path,
                                     const char *option)
{
  AckdCkptReader  r;
  hid_t           file;
  AckdModelConfig theirs = *config;
  char            mine_text[160], theirs_text[160];

  PetscFunctionBeginUser;
  PetscCall(AckdCkptReaderOpen(comm, path, NULL, &r));
  PetscCall(AckdCkptReaderGetFile(r, &file));
  PetscCall(AckdModelConfigRead(comm, file, path, &theirs));
  describe(config, mine_text, sizeof mine_text);
  describe(&theirs, theirs_text, sizeof theirs_text);
  PetscCheck(!strcmp(mine_text, theirs_text), comm, PETSC_ERR_USER_INPUT,
             "%s '%s' holds a %s; the model is a %s: convert the weights for this model (analysis/import_torch.py "
             "--arch --width --bands --classes) or set the model options to the file's",
             option, path, theirs_text, mine_text);
  PetscCall(AckdModelReadCheckpoint(r, model));
  PetscCall(AckdCkptReaderDestroy(&r));
  PetscFunctionReturn(0);
}
