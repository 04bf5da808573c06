/* A supervised training run (`ackd train`): one network on one modality, data
 * parallel: the teacher on /ms (role teacher) or the no-KD student baseline
 * on /rgb (role student), with cross-entropy on the labels or on each scene's
 * cover fractions, or BCE-with-logits on a multi-label collection (validated
 * by mAP). The model options come under the role's prefix
 * (-teacher_arch, -student_arch, ...), the loop's under -train_. A teacher
 * run ends by writing its gallery (the best model's outputs on every
 * teacher sample) for `distill`. */
#include <ackd/train.h>
#include <math.h>
#include <string.h>

static const char *const ROLES[] = {"teacher", "student"};
/* What the cross-entropy aims at: the label, or the share of the scene each class covers. */
typedef enum { TARGETS_LABELS, TARGETS_COVER_FRACTIONS } Targets;
static const char *const TARGETS[] = {"labels", "cover_fractions"};

struct _p_AckdTraining {
  MPI_Comm           comm;
  AckdTrainer        trainer;
  AckdModel          model;
  AckdModelConfig    config;
  AckdSharedDataset  dataset;
  AckdCollectionInfo info;
  double             smoothing;
  PetscInt           eval_batch;
  AckdTensor         d_logits;
  float              empty[1];
  float             *targets; /* multi-label: the local batch's 0/1 targets; cover fractions: its shares */
  PetscInt           targets_capacity;
  const char        *modality, *role;
  char               data[PETSC_MAX_PATH_LEN];
  /* the options, read by AckdTrainingSetFromOptions */
  PetscInt       role_choice; /* index in ROLES */
  PetscInt       targets_choice;
  const float   *fractions; /* the collection's (count, K) cover fractions, when they are the targets */
  PetscBool      gallery, have_data, setup;
  AckdH5Settings h5;
  char           init[PETSC_MAX_PATH_LEN];
};
typedef struct _p_AckdTraining TrainContext;

static PetscErrorCode reserve_targets(TrainContext *c, PetscInt n)
{
  PetscFunctionBeginUser;
  if (c->targets_capacity < n) {
    PetscCall(PetscFree(c->targets));
    PetscCall(PetscMalloc1(n, &c->targets));
    c->targets_capacity = n;
  }
  PetscFunctionReturn(0);
}

/* Multi-label: BCE with logits, the mean over the local B x K entries (scaled to the global batch by
 * the caller, like cross-entropy); `correct` gains each sample's fraction of labels predicted right
 * (σ(z) > 0.5), so train_accuracy is the per-label (Hamming) accuracy. */
static PetscErrorCode multilabel_loss(TrainContext *c, const AckdTrainBatch *b, const AckdTensor *logits, double *loss,
                                      AckdTensor *d_logits, double *correct)
{
  const PetscInt       K = c->config.classes;
  const unsigned char *labels;
  PetscInt             columns;

  PetscFunctionBeginUser;
  PetscCall(AckdSharedDatasetGetMultilabels(c->dataset, &columns, &labels));
  PetscCall(reserve_targets(c, b->nlocal * K));
  for (PetscInt i = 0; i < b->nlocal; i++) {
    PetscInt right = 0;
    for (PetscInt k = 0; k < K; k++) {
      const PetscBool positive = (PetscBool)(labels[b->rows[i] * columns + k] != 0);
      c->targets[i * K + k]    = positive ? 1.0f : 0.0f;
      right += (logits->data[i * K + k] > 0) == positive;
    }
    *correct += (double)right / (double)K;
  }
  PetscCall(AckdBCEWithLogits(logits, c->targets, loss, d_logits));
  PetscFunctionReturn(0);
}

static PetscErrorCode supervised_step(void *ctx, AckdEngine *engine, const AckdTrainBatch *b, AckdTrainStepResult *r)
{
  TrainContext    *c = (TrainContext *)ctx;
  AckdModelOutputs out;
  double           loss;
  const PetscInt   K = c->config.classes;

  PetscFunctionBeginUser;
  /* A rank without a share of the last, uneven batch still runs the empty
   * batch through: synchronised batch norm reduces over every rank, and the
   * backward leaves zero gradients. */
  PetscCall(AckdModelForward(c->model, engine, &b->images, &out));
  if (b->nlocal == 0) {
    AckdTensor none = AckdTensorView(c->empty, 0, K, 1, 1);
    PetscCall(AckdModelBackward(c->model, engine, &none, NULL, NULL));
    PetscFunctionReturn(0);
  }
  if (AckdTensorSize(&c->d_logits) < b->nlocal * K) {
    PetscCall(AckdTensorFree(&c->d_logits));
    PetscCall(AckdTensorAllocate(&c->d_logits, b->nlocal, K, 1, 1));
  }
  AckdTensor d_logits = AckdTensorView(c->d_logits.data, b->nlocal, K, 1, 1);
  if (c->info.multilabel) {
    PetscCall(multilabel_loss(c, b, &out.logits, &loss, &d_logits, &r->correct));
  } else if (c->fractions) {
    PetscCall(reserve_targets(c, b->nlocal * K));
    for (PetscInt i = 0; i < b->nlocal; i++)
      PetscCall(PetscArraycpy(c->targets + i * K, c->fractions + b->rows[i] * K, K));
    PetscCall(AckdSoftCrossEntropy(&out.logits, c->targets, c->smoothing, &loss, &d_logits));
    r->correct = AckdCountCorrect(&out.logits, b->labels); /* train_accuracy stays the label's */
  } else {
    PetscCall(AckdCrossEntropy(&out.logits, b->labels, c->smoothing, &loss, &d_logits));
    r->correct = AckdCountCorrect(&out.logits, b->labels);
  }
  /* The loss above is the local mean; the trainer wants this rank's share of the global mean. */
  const double share = (double)b->nlocal / (double)b->nglobal;
  for (PetscInt i = 0; i < b->nlocal * K; i++) d_logits.data[i] *= (float)share;
  r->loss = loss * share;
  PetscCall(AckdModelBackward(c->model, engine, &d_logits, NULL, NULL));
  PetscFunctionReturn(0);
}

static PetscErrorCode validate(void *ctx, AckdEngine *engine, PetscInt epoch, double *loss, double *score)
{
  TrainContext       *c = (TrainContext *)ctx;
  AckdClassifierScore s = {0};

  PetscFunctionBeginUser;
  (void)epoch;
  if (c->info.multilabel) { /* the score is the validation mAP */
    AckdMultilabelScore m = {0};
    PetscCall(
        AckdMultilabelEvaluate(c->comm, c->model, engine, c->dataset, 1, c->eval_batch, c->config.classes, &m, NULL));
    *loss  = m.loss;
    *score = m.map;
    PetscFunctionReturn(0);
  }
  PetscCall(
      AckdClassifierEvaluate(c->comm, c->model, engine, c->dataset, 1, c->eval_batch, c->config.classes, &s, NULL));
  *loss  = s.loss;
  *score = s.oa;
  PetscFunctionReturn(0);
}

static PetscErrorCode describe(void *ctx, hid_t file)
{
  TrainContext *c = (TrainContext *)ctx;

  PetscFunctionBeginUser;
  PetscCall(AckdModelConfigWrite(&c->config, file));
  PetscCall(AckdH5AttrWriteString(file, "modality", c->modality));
  PetscCall(AckdH5AttrWriteString(file, "data", c->data));
  PetscCall(AckdH5AttrWriteString(file, "targets", TARGETS[c->targets_choice]));
  /* The no-KD student is the baseline row of the results table. */
  if (!strcmp(c->role, "student")) PetscCall(AckdH5AttrWriteString(file, "method", "baseline"));
  PetscFunctionReturn(0);
}

/* The best model (or the last, without a validation split) back into memory. */
static PetscErrorCode load_best(TrainContext *c, const char *dir, char *path, size_t len)
{
  AckdCkptReader r;

  PetscFunctionBeginUser;
  snprintf(path, len, "%s/best.h5", dir);
  PetscCall(AckdCkptReaderOpen(c->comm, path, AckdArchNames[c->config.arch], &r));
  PetscCall(AckdModelReadCheckpoint(r, c->model));
  PetscCall(AckdCkptReaderDestroy(&r));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTrainingCreate(MPI_Comm comm, AckdTraining *training)
{
  TrainContext *c;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&c));
  c->comm       = comm;
  c->eval_batch = 256;
  c->gallery    = PETSC_TRUE;
  *training     = c;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTrainingSetFromOptions(AckdTraining c)
{
  char prefix[32], dir[PETSC_MAX_PATH_LEN];

  PetscFunctionBeginUser;
  PetscOptionsBegin(c->comm, NULL, "ackd train: supervised training of the teacher (MS) or the no-KD student (RGB)",
                    NULL);
  PetscCall(AckdOptionsString(PetscOptionsObject, "-train_data", "Dataset file (ackd synth or ackd curate)", c->data,
                              sizeof c->data, &c->have_data));
  PetscCall(AckdOptionsChoice(PetscOptionsObject, "-train_role",
                              "teacher: on /ms, model options -teacher_*; student: the no-KD baseline on /rgb, "
                              "-student_*",
                              ROLES, 2, &c->role_choice, NULL));
  PetscCall(AckdOptionsChoice(PetscOptionsObject, "-train_targets",
                              "What cross-entropy aims at: labels, or cover_fractions, each scene's share of every "
                              "class (/<collection>/cover_fractions, as a land-cover map gives them); validation "
                              "scores the labels either way",
                              TARGETS, 2, &c->targets_choice, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-train_label_smoothing", "Cross-entropy label smoothing",
                            &c->smoothing, 0.0, 1.0, NULL));
  PetscCall(AckdOptionsString(PetscOptionsObject, "-train_init",
                              "Starting weights: a file in checkpoint layout of the same model (another run's "
                              "best.h5, or PyTorch weights converted by analysis/import_torch.py); a resumed run "
                              "takes its checkpoint's",
                              c->init, sizeof c->init, NULL));
  PetscCall(AckdOptionsBool(PetscOptionsObject, "-train_gallery",
                            "Teacher: write DIR/gallery.h5 (logits and embeddings of every MS training sample)",
                            &c->gallery, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-train_eval_batch", "Batch size of validation and gallery passes",
                           &c->eval_batch, 1, 1 << 20, NULL));
  PetscOptionsEnd();
  c->role     = ROLES[c->role_choice];
  c->modality = c->role_choice == 0 ? "ms" : "rgb";
  snprintf(prefix, sizeof prefix, "%s_", c->role);
  snprintf(dir, sizeof dir, "out/%s", c->role);
  c->config = (AckdModelConfig){.arch = c->role_choice == 0 ? ACKD_ARCH_RESNET34 : ACKD_ARCH_RESNET18, .width = 1.0};
  PetscCall(AckdModelConfigSetFromOptions(c->comm, prefix, &c->config));
  PetscCall(AckdTrainerCreate(c->comm, &c->trainer));
  PetscCall(AckdTrainerSetOptionsPrefix(c->trainer, "train_"));
  PetscCall(AckdTrainerSetDefaults(c->trainer, dir, ACKD_OPT_ADAM, 1e-3, 20, 64));
  PetscCall(AckdTrainerSetFromOptions(c->trainer));
  PetscCall(AckdH5SettingsSetFromOptions(&c->h5));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTrainingSetUp(AckdTraining c)
{
  MPI_Comm    comm = c->comm;
  AckdTrainer t    = c->trainer;
  PetscInt    seed;

  PetscFunctionBeginUser;
  if (c->setup) PetscFunctionReturn(0);
  PetscCheck(c->have_data && c->data[0], comm, PETSC_ERR_USER_INPUT,
             "option -train_data is required: the dataset file written by ackd synth or ackd curate");
  PetscCall(AckdCollectionInfoRead(comm, c->data, c->modality, &c->info));
  PetscCheck(!c->info.multilabel || c->smoothing == 0, comm, PETSC_ERR_USER_INPUT,
             "option -train_label_smoothing applies to cross-entropy, but /%s in '%s' is multi-label (BCE); drop it",
             c->modality, c->data);
  PetscCheck(!c->info.multilabel || c->targets_choice == TARGETS_LABELS, comm, PETSC_ERR_USER_INPUT,
             "-train_targets cover_fractions trains a softmax over the classes, but /%s in '%s' is multi-label "
             "(BCE on its 0/1 table); use its single-label file or drop -train_targets",
             c->modality, c->data);
  c->config.in_channels = c->info.channels;
  c->config.classes     = c->info.classes;
  c->config.image_size  = c->info.height;
  PetscCall(AckdTrainerGetSeed(t, &seed));
  PetscCall(AckdModelCreate(comm, &c->model));
  PetscCall(AckdModelSetUp(c->model, &c->config, (uint64_t)seed));
  if (c->init[0]) PetscCall(AckdModelInitFromFile(comm, c->model, &c->config, c->init, "-train_init"));
  PetscCall(AckdSharedDatasetLoad(comm, c->data, c->modality, &c->h5, &c->dataset));
  if (c->targets_choice == TARGETS_COVER_FRACTIONS)
    PetscCall(AckdSharedDatasetGetCoverFractions(comm, c->dataset, c->config.classes, &c->fractions));
  PetscCall(AckdTrainerSetDataset(t, c->dataset));
  PetscCall(AckdTrainerAddModel(t, "model", c->model));
  PetscCall(AckdTrainerSetStep(t, supervised_step, c));
  PetscCall(AckdTrainerSetValidation(t, validate, c->info.multilabel ? "val_map" : "val_oa", c));
  PetscCall(AckdTrainerSetDescription(t, AckdArchNames[c->config.arch], "train", c->role, describe, c));
  c->setup = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTrainingRun(AckdTraining c, PetscBool *stopped)
{
  PetscFunctionBeginUser;
  PetscCall(AckdTrainingSetUp(c));
  PetscCall(AckdTrainerRun(c->trainer, stopped));
  if (!*stopped && c->role_choice == 0 && c->gallery) {
    AckdEngine *engine;
    const char *out;
    char        best[PETSC_MAX_PATH_LEN + 16], path[PETSC_MAX_PATH_LEN + 16];
    AckdLog     log;
    PetscCall(AckdTrainerGetDirectory(c->trainer, &out));
    PetscCall(AckdTrainerGetEngine(c->trainer, &engine));
    PetscCall(load_best(c, out, best, sizeof best));
    snprintf(path, sizeof path, "%s/gallery.h5", out);
    PetscCall(AckdGalleryWrite(c->comm, c->model, engine, c->dataset, &c->info, path, best));
    PetscCall(AckdLogSetUp(&log, c->comm));
    PetscCall(AckdLogInfo(&log, "teacher gallery: %s\n", path));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTrainingDestroy(AckdTraining *training)
{
  TrainContext *c = *training;

  PetscFunctionBeginUser;
  if (!c) PetscFunctionReturn(0);
  PetscCall(AckdTrainerDestroy(&c->trainer));
  if (c->setup) {
    PetscCall(AckdTensorFree(&c->d_logits));
    PetscCall(PetscFree(c->targets));
    PetscCall(AckdSharedDatasetDestroy(&c->dataset));
    PetscCall(AckdModelDestroy(&c->model));
    PetscCall(AckdCollectionInfoDestroy(&c->info));
  }
  PetscCall(PetscFree(*training));
  PetscFunctionReturn(0);
}
