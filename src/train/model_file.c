/* A model's weights and batch-norm statistics from a file in checkpoint layout: a run's best.h5
 * (eval, the frozen teacher, the end of train), or a starting point (-train_init, -distill_init):
 * the network of another run to fine-tune, or PyTorch weights that analysis/import_torch.py
 * converted. */
#include <ackd/ckpt.h>
#include <ackd/train.h>

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
