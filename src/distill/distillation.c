/* A distillation run (`ackd distill`): the student on /rgb learns from the frozen teacher through
 * a KD method (-kd_method, with -sembridge for SKA and DynM), data parallel
 * and resumable like `train`.
 *
 * What the teacher contributes, per student sample: the plan-weighted
 * mixture of its matched teachers' gallery logits and embeddings (the match
 * file of `ackd match`, re-matched by DynM at the adjust epochs); and, for the
 * methods that compare feature maps (SKA, AT, FitNet on tokens, MNF), the
 * layer-4 tokens of its best teacher sample, from a forward pass of the
 * frozen teacher checkpoint.
 *
 * M2S (docs/KD.md, "SemBridge"): a multi-label teacher (its gallery's labels are
 * (N_t, K_ms)) teaches the single-label student; -kd_teacher_multilabel is
 * then set, and each teacher sample takes, for DynM's class blocks, its
 * highest-scoring positive label that maps to a student class (docs/FORMATS.md). */
#include <ackd/distill.h>
#include <ackd/kd.h>
#include <ackd/ot.h>
#include <ackd/train.h>
#include <math.h>

/* DynM's matching at each adjust epoch (AckdMatchStatistics), NaN in the other epochs. */
enum { DYNM_CHANGED, DYNM_DISTINCT, DYNM_HUB, DYNM_OWN_CLASS, NDYNM };
static const char *const DYNM_VALUES[NDYNM] = {"dynm_changed", "dynm_distinct_teachers", "dynm_largest_hub",
                                               "dynm_own_class_probability"};

/* DistillTeacherTokens: the frozen teacher's layer-4 tokens (the cache's one pass over the MS
 * images, then each step's gather, or each step's teacher forward without the cache);
 * DistillDynM: DynM's re-matchings (the student's predictions and the OT solve). */
static AckdLogPackage distill_log = {
    .name = "ackd distill", .nevents = 2, .event_names = {"DistillTeacherTokens", "DistillDynM"}};

struct _p_AckdDistillation {
  MPI_Comm           comm;
  AckdTrainer        trainer;
  AckdModel          student, teacher; /* teacher: only when tokens are needed */
  AckdModelConfig    config;
  AckdSharedDataset  rgb, ms;
  AckdCollectionInfo info, ms_info;
  AckdKD             kd;
  AckdTeacherTargets targets;
  PetscInt           eval_batch, nstudent, *student_rows;
  PetscBool          dynm, dynm_class_blocks, tokens;
  PetscBool          kd_params;   /* the method has parameters of its own (the "kd" group) */
  AckdTeacherTokens  token_cache; /* the teacher's tokens of every MS image, or NULL: a forward per step */
  PetscInt           teacher_T, teacher_C;
  PetscInt           dynm_e0, dynm_delta, dynm_growth;
  char               data[PETSC_MAX_PATH_LEN], method[64], pair[16];
  PetscBool          sembridge;
  /* per-step buffers */
  float     *t_logits, *t_embedding, *weight, *ms_images, *t_tokens; /* t_tokens: from the token cache */
  PetscInt  *teacher_row, capacity, *student_of_row, *samples;
  AckdTensor d_logits, d_embedding, d_tokens;
  PetscInt   embedding_dim, token_count, token_channels; /* the student's output shapes */
  float      empty[1];
  /* the options, read by AckdDistillationSetFromOptions */
  AckdH5Settings h5;
  char           gallery[PETSC_MAX_PATH_LEN], match[PETSC_MAX_PATH_LEN], teacher_path[PETSC_MAX_PATH_LEN];
  char           init[PETSC_MAX_PATH_LEN];
  PetscInt       topk, tokens_choice;
  PetscBool      have_data, dynm_set, use_token_cache, ml_gallery, ml_option, ml_set, setup;
};
typedef struct _p_AckdDistillation DistillContext;

static PetscErrorCode grow(DistillContext *c, PetscInt n, const AckdModelOutputs *out)
{
  PetscInt K = c->config.classes, D = 0, count, ch, h, w;

  PetscFunctionBeginUser;
  PetscCall(AckdTeacherTargetsGetSizes(c->targets, NULL, NULL, NULL, &D));
  if (n > c->capacity) {
    /* MS images for a teacher forward per step, or the cached tokens of the batch's teachers. */
    const PetscBool forward = (PetscBool)(c->ms && !c->token_cache);
    PetscCall(PetscFree6(c->t_logits, c->t_embedding, c->weight, c->teacher_row, c->ms_images, c->t_tokens));
    PetscCall(AckdSharedDatasetGetShape(c->ms ? c->ms : c->rgb, &count, &ch, &h, &w));
    PetscCall(PetscMalloc6(n * K, &c->t_logits, PetscMax(n * D, 1), &c->t_embedding, n, &c->weight, n, &c->teacher_row,
                           forward ? (size_t)n * ch * h * w : 1, &c->ms_images,
                           c->token_cache ? (size_t)n * c->teacher_T * c->teacher_C : 1, &c->t_tokens));
    c->capacity = n;
  }
  /* Gradient buffers follow the student's output shapes. */
  const AckdTensor *shapes[3] = {&out->logits, &out->embedding, &out->tokens};
  AckdTensor       *grads[3]  = {&c->d_logits, &c->d_embedding, &c->d_tokens};
  for (int i = 0; i < 3; i++) {
    if (AckdTensorSize(grads[i]) < AckdTensorSize(shapes[i])) {
      PetscCall(AckdTensorFree(grads[i]));
      PetscCall(AckdTensorAllocate(grads[i], shapes[i]->n, shapes[i]->c, shapes[i]->h, shapes[i]->w));
    }
    *grads[i] = AckdTensorView(grads[i]->data, shapes[i]->n, shapes[i]->c, shapes[i]->h, shapes[i]->w);
  }
  PetscFunctionReturn(0);
}

/* The KD loss; then the method's own parameters (SKA's maps, a hint's regressor) have their
 * gradients, and their exchange goes on the wire while the student's backward runs. */
static PetscErrorCode kd_loss(DistillContext *c, const AckdKDInputs *in, AckdKDOutputs *out)
{
  PetscFunctionBeginUser;
  PetscCall(AckdKDLoss(c->kd, in, out));
  if (c->kd_params) PetscCall(AckdTrainerParamsReady(c->trainer, "kd"));
  PetscFunctionReturn(0);
}

static PetscErrorCode distill_step(void *ctx, AckdEngine *engine, const AckdTrainBatch *b, AckdTrainStepResult *r)
{
  DistillContext  *c = (DistillContext *)ctx;
  AckdModelOutputs out, tout;
  AckdKDOutputs    kout = {0};
  const PetscInt   K    = c->config.classes;
  PetscInt         D;

  PetscFunctionBeginUser;
  if (b->nlocal == 0) {
    /* No share of the last, uneven batch: the empty batch still goes through the student (synchronised
     * batch norm reduces over every rank) and the loss (CRD's memory update gathers every rank's rows),
     * with every input a full batch has and no rows, so the methods' checks see the same on every rank. */
    PetscCall(AckdTeacherTargetsGetSizes(c->targets, NULL, NULL, NULL, &D));
    AckdTensor   zl = AckdTensorView(c->empty, 0, K, 1, 1), ze = AckdTensorView(c->empty, 0, c->embedding_dim, 1, 1);
    AckdTensor   zt = AckdTensorView(c->empty, 0, 1, c->token_count, c->token_channels);
    AckdTensor   te = AckdTensorView(c->empty, 0, D, 1, 1);
    AckdTensor   tt = AckdTensorView(c->empty, 0, 1, c->teacher_T, c->teacher_C);
    AckdKDInputs in = {.batch             = 0,
                       .global_batch      = b->nglobal,
                       .epoch             = b->epoch,
                       .step              = b->step,
                       .student_logits    = &zl,
                       .student_embedding = &ze,
                       .student_tokens    = &zt,
                       .teacher_logits    = &zl,
                       .teacher_embedding = D ? &te : NULL,
                       .teacher_tokens    = c->tokens ? &tt : NULL,
                       .labels            = b->labels,
                       .samples           = c->samples,
                       .weight            = c->empty};
    kout.d_logits = kout.d_embedding = kout.d_tokens = NULL;
    PetscCall(AckdModelForward(c->student, engine, &b->images, &out));
    PetscCall(kd_loss(c, &in, &kout));
    PetscCall(AckdModelBackward(c->student, engine, &zl, &ze, &zt));
    PetscFunctionReturn(0);
  }
  PetscCall(AckdModelForward(c->student, engine, &b->images, &out));
  PetscCall(grow(c, b->nlocal, &out));
  PetscCall(AckdTeacherTargetsGetSizes(c->targets, NULL, NULL, NULL, &D));
  PetscCall(AckdTeacherTargetsGather(c->targets, b->nlocal, b->rows, c->t_logits, D ? c->t_embedding : NULL, c->weight,
                                     c->teacher_row));
  AckdTensor t_logits    = AckdTensorView(c->t_logits, b->nlocal, K, 1, 1);
  AckdTensor t_embedding = AckdTensorView(c->t_embedding, b->nlocal, D, 1, 1);
  AckdTensor t_tokens    = {0};
  if (c->tokens) {
    PetscCall(PetscLogEventBegin(distill_log.events[0], 0, 0, 0, 0));
    /* The frozen teacher's tokens of its best matched MS image (a sample without a teacher: its own row 0,
     * weight 0): computed once for every image, or by a forward of the teacher here. */
    for (PetscInt i = 0; i < b->nlocal; i++) c->teacher_row[i] = PetscMax(c->teacher_row[i], 0);
    if (c->token_cache) {
      PetscCall(AckdTeacherTokensGather(c->token_cache, b->nlocal, c->teacher_row, c->t_tokens));
      t_tokens = AckdTensorView(c->t_tokens, b->nlocal, 1, c->teacher_T, c->teacher_C);
    } else {
      PetscInt count, ch, h, w;
      PetscCall(AckdSharedDatasetGetShape(c->ms, &count, &ch, &h, &w));
      PetscCall(AckdSharedDatasetReadImages(c->ms, b->nlocal, c->teacher_row, c->ms_images));
      AckdTensor x = AckdTensorView(c->ms_images, b->nlocal, ch, h, w);
      PetscCall(AckdModelForward(c->teacher, engine, &x, &tout));
      t_tokens = tout.tokens;
    }
    PetscCall(PetscLogEventEnd(distill_log.events[0], 0, 0, 0, 0));
  }
  for (PetscInt i = 0; i < b->nlocal; i++) c->samples[i] = c->student_of_row[b->rows[i]];
  AckdKDInputs in  = {.batch             = b->nlocal,
                      .global_batch      = b->nglobal,
                      .epoch             = b->epoch,
                      .step              = b->step,
                      .samples           = c->samples,
                      .student_logits    = &out.logits,
                      .student_embedding = &out.embedding,
                      .student_tokens    = &out.tokens,
                      .teacher_logits    = &t_logits,
                      .teacher_embedding = D ? &t_embedding : NULL,
                      .teacher_tokens    = c->tokens ? &t_tokens : NULL,
                      .labels            = b->labels,
                      .weight            = c->weight};
  kout.d_logits    = &c->d_logits;
  kout.d_embedding = &c->d_embedding;
  kout.d_tokens    = &c->d_tokens;
  PetscCall(kd_loss(c, &in, &kout));
  r->loss = kout.total;
  for (PetscInt i = 0; i < kout.nterms; i++) r->terms[kout.metric[i]] += kout.values[i];
  r->correct = AckdCountCorrect(&out.logits, b->labels);
  PetscCall(AckdModelBackward(c->student, engine, &c->d_logits, &c->d_embedding, &c->d_tokens));
  PetscFunctionReturn(0);
}

static PetscErrorCode validate(void *ctx, AckdEngine *engine, PetscInt epoch, double *loss, double *score)
{
  DistillContext     *c = (DistillContext *)ctx;
  AckdClassifierScore s = {0};

  PetscFunctionBeginUser;
  (void)epoch;
  PetscCall(AckdClassifierEvaluate(c->comm, c->student, engine, c->rgb, 1, c->eval_batch, c->config.classes, &s, NULL));
  *loss  = s.loss;
  *score = s.oa;
  PetscFunctionReturn(0);
}

typedef struct {
  float   *logits;
  PetscInt classes;
} LogitsCtx;

static PetscErrorCode keep_logits(void *ctx, PetscInt first, PetscInt n, const AckdModelOutputs *out)
{
  LogitsCtx *l = (LogitsCtx *)ctx;

  PetscFunctionBeginUser;
  PetscCall(PetscArraycpy(l->logits + first * l->classes, out->logits.data, n * l->classes));
  PetscFunctionReturn(0);
}

static PetscErrorCode record_statistics(DistillContext *c, const AckdMatchStatistics *st)
{
  PetscFunctionBeginUser;
  PetscCall(AckdTrainerSetEpochValue(c->trainer, DYNM_CHANGED, st->changed));
  PetscCall(AckdTrainerSetEpochValue(c->trainer, DYNM_DISTINCT, (double)st->distinct_teachers));
  PetscCall(AckdTrainerSetEpochValue(c->trainer, DYNM_HUB, (double)st->largest_hub));
  PetscCall(AckdTrainerSetEpochValue(c->trainer, DYNM_OWN_CLASS, st->own_class_probability));
  PetscFunctionReturn(0);
}

/* DynM: at its adjust epochs, every student sample is re-matched by the KL
 * between the current student's and the teachers' predictions. */
static PetscErrorCode rematch(void *ctx, AckdEngine *engine, PetscInt epoch)
{
  DistillContext *c = (DistillContext *)ctx;
  PetscBool       adjust;
  PetscInt        nglobal, nlocal, *rows, first;
  PetscMPIInt     size;
  AckdLog         log;

  PetscFunctionBeginUser;
  if (!c->dynm) PetscFunctionReturn(0);
  if (epoch == 0) { /* the matching of `ackd match`, the reference the adjust epochs are read against */
    AckdMatchStatistics st;
    PetscCall(AckdTeacherTargetsStatistics(c->targets, NULL, &st));
    PetscCall(record_statistics(c, &st));
    PetscFunctionReturn(0);
  }
  PetscCall(AckdDynMIsAdjustEpoch(c->dynm_e0, c->dynm_delta, c->dynm_growth, epoch, &adjust));
  if (!adjust) PetscFunctionReturn(0);
  PetscCall(PetscLogEventBegin(distill_log.events[1], 0, 0, 0, 0));
  const PetscInt K = c->config.classes;
  LogitsCtx      l = {.classes = K};
  PetscCall(AckdSplitRows(c->comm, c->rgb, 0, &nglobal, &nlocal, &rows, &first));
  PetscCall(PetscMalloc1(nglobal * K, &l.logits));
  PetscCall(AckdModelPredict(c->student, engine, c->rgb, nlocal, rows, c->eval_batch, keep_logits, &l));
  /* Contiguous blocks in rank order: gather in place into the full matrix. */
  PetscCallMPI(MPI_Comm_size(c->comm, &size));
  PetscMPIInt *counts, *displs;
  PetscCall(PetscMalloc2(size, &counts, size, &displs));
  PetscMPIInt mine = (PetscMPIInt)(nlocal * K), at = (PetscMPIInt)(first * K);
  PetscCallMPI(MPI_Allgather(&mine, 1, MPI_INT, counts, 1, MPI_INT, c->comm));
  PetscCallMPI(MPI_Allgather(&at, 1, MPI_INT, displs, 1, MPI_INT, c->comm));
  PetscCall(PetscArraymove(l.logits + first * K, l.logits, nlocal * K));
  PetscCallMPI(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, l.logits, counts, displs, MPI_FLOAT, c->comm));
  double              t0 = AckdTimeNow();
  PetscInt           *before;
  AckdMatchStatistics st;
  PetscCall(PetscMalloc1(PetscMax(c->nstudent, 1), &before));
  PetscCall(AckdTeacherTargetsGetTop1(c->targets, before));
  PetscCall(AckdTeacherTargetsRematch(c->targets, l.logits, c->dynm_class_blocks, "dynm_"));
  PetscCall(AckdTeacherTargetsStatistics(c->targets, before, &st));
  PetscCall(PetscFree(before));
  PetscCall(record_statistics(c, &st));
  PetscCall(AckdLogSetUp(&log, c->comm));
  char line[256];
  snprintf(line, sizeof line,
           "DynM: re-matched %d students at epoch %d in %.2f s: %.1f%% changed teacher, %d distinct top-1 teachers, "
           "the largest hub %d, teacher's probability of the student's class %.3f",
           (int)nglobal, (int)epoch + 1, AckdTimeNow() - t0, 100.0 * st.changed, (int)st.distinct_teachers,
           (int)st.largest_hub, st.own_class_probability);
  PetscCall(AckdLogInfo(&log, "%s\n", line));
  PetscCall(PetscFree2(counts, displs));
  PetscCall(PetscFree(l.logits));
  PetscCall(PetscFree(rows));
  PetscCall(PetscLogEventEnd(distill_log.events[1], 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

static PetscErrorCode describe(void *ctx, hid_t file)
{
  DistillContext *c = (DistillContext *)ctx;

  PetscFunctionBeginUser;
  PetscCall(AckdModelConfigWrite(&c->config, file));
  PetscCall(AckdH5AttrWriteString(file, "modality", "rgb"));
  PetscCall(AckdH5AttrWriteString(file, "data", c->data));
  PetscCall(AckdH5AttrWriteString(file, "method", c->method));
  PetscCall(AckdH5AttrWriteString(file, "pair", c->pair));
  PetscFunctionReturn(0);
}

static char arch_letter(AckdArch arch)
{
  switch (arch) {
  case ACKD_ARCH_RESNET18:
  case ACKD_ARCH_RESNET34:
    return 'R';
  case ACKD_ARCH_MOBILENETV2:
    return 'M';
  case ACKD_ARCH_SHUFFLENETV2:
    return 'S';
  case ACKD_ARCH_SMALLCNN:
    return 'C';
  default:
    return 'L';
  }
}

/* The frozen teacher from its checkpoint (the gallery's source by default). */
static PetscErrorCode load_teacher(DistillContext *c, const char *path, AckdModelConfig *config)
{
  AckdCkptReader r;
  hid_t          file;

  PetscFunctionBeginUser;
  PetscCall(AckdCkptReaderOpen(c->comm, path, NULL, &r));
  PetscCall(AckdCkptReaderGetFile(r, &file));
  PetscCall(AckdModelConfigRead(c->comm, file, path, config));
  PetscCall(AckdModelCreate(c->comm, &c->teacher));
  PetscCall(AckdModelSetUp(c->teacher, config, 0));
  PetscCall(AckdModelReadCheckpoint(r, c->teacher));
  PetscCall(AckdCkptReaderDestroy(&r));
  PetscCall(AckdModelSetTraining(c->teacher, PETSC_FALSE));
  PetscFunctionReturn(0);
}

static const char *const TOKEN_CHOICES[] = {"auto", "yes", "no"};

PetscErrorCode AckdDistillationCreate(MPI_Comm comm, AckdDistillation *distillation)
{
  DistillContext *c;

  PetscFunctionBeginUser;
  PetscCall(AckdLogPackageRegister(&distill_log));
  PetscCall(PetscNew(&c));
  c->comm              = comm;
  c->eval_batch        = 256;
  c->dynm_e0           = 30;
  c->dynm_delta        = 30;
  c->dynm_growth       = 5;
  c->dynm_class_blocks = PETSC_TRUE;
  c->use_token_cache   = PETSC_TRUE;
  *distillation        = c;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdDistillationSetFromOptions(AckdDistillation c)
{
  MPI_Comm comm = c->comm;
  char     dir[PETSC_MAX_PATH_LEN];

  PetscFunctionBeginUser;
  PetscOptionsBegin(comm, NULL, "ackd distill: the RGB student taught by the frozen MS teacher", NULL);
  PetscCall(AckdOptionsString(PetscOptionsObject, "-distill_data", "Dataset file (ackd synth or ackd curate)", c->data,
                              sizeof c->data, &c->have_data));
  PetscCall(AckdOptionsString(PetscOptionsObject, "-distill_gallery",
                              "Teacher gallery (ackd train's gallery.h5, or an external teacher's)", c->gallery,
                              sizeof c->gallery, NULL));
  PetscCall(AckdOptionsString(PetscOptionsObject, "-distill_match", "Match file of ackd match (student -> teachers)",
                              c->match, sizeof c->match, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-distill_topk",
                           "Teachers per student mixed into its targets (0: every column of the match file)", &c->topk,
                           0, 1024, NULL));
  PetscCall(AckdOptionsString(PetscOptionsObject, "-distill_teacher",
                              "Teacher checkpoint for token-level methods (default: the gallery's source)",
                              c->teacher_path, sizeof c->teacher_path, NULL));
  PetscCall(AckdOptionsString(PetscOptionsObject, "-distill_init",
                              "The student's starting weights: a file in checkpoint layout of the same model (e.g. "
                              "ackd train's no-KD student, or PyTorch weights converted by analysis/import_torch.py); "
                              "a resumed run takes its checkpoint's",
                              c->init, sizeof c->init, NULL));
  PetscCall(
      AckdOptionsChoice(PetscOptionsObject, "-distill_teacher_tokens",
                        "Run the frozen teacher for layer-4 tokens: auto (when SKA, AT, FitNet or MNF need them), "
                        "yes, no",
                        TOKEN_CHOICES, 3, &c->tokens_choice, NULL));
  PetscCall(AckdOptionsBool(PetscOptionsObject, "-distill_teacher_token_cache",
                            "Compute the frozen teacher's tokens of every MS image once, not at every step (off when "
                            "they would not fit in a quarter of the memory)",
                            &c->use_token_cache, NULL));
  PetscCall(AckdOptionsBool(PetscOptionsObject, "-dynm",
                            "DynM: re-match students at the adjust epochs (default: with -sembridge)", &c->dynm,
                            &c->dynm_set));
  PetscCall(
      AckdOptionsInt(PetscOptionsObject, "-dynm_e0", "DynM: first adjust epoch e0", &c->dynm_e0, 1, 1000000, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-dynm_delta", "DynM: epochs between the first adjustments (delta e)",
                           &c->dynm_delta, 1, 1000000, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-dynm_growth", "DynM: growth of the interval per adjustment (e_mu)",
                           &c->dynm_growth, 0, 1000000, NULL));
  PetscCall(AckdOptionsBool(PetscOptionsObject, "-dynm_class_blocks",
                            "DynM: re-match each student among the teachers of its labelled class only (false: among "
                            "all teachers, as -match_class_blocks false does)",
                            &c->dynm_class_blocks, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-distill_eval_batch", "Batch size of validation and re-matching passes",
                           &c->eval_batch, 1, 1 << 20, NULL));
  PetscOptionsEnd();
  /* M2S: a multi-label teacher's logits become targets through -kd_teacher_multilabel, which is then
   * on unless the user turned it off (refused below, once -help has had its say). */
  c->ml_gallery = c->ml_option = c->ml_set = PETSC_FALSE;
  if (c->gallery[0]) {
    PetscBool readable;
    PetscCall(AckdFileReadable(comm, c->gallery, &readable));
    if (readable) PetscCall(AckdGalleryIsMultilabel(comm, c->gallery, &c->ml_gallery));
  }
  PetscCall(PetscOptionsGetBool(NULL, NULL, "-kd_teacher_multilabel", &c->ml_option, &c->ml_set));
  if (c->ml_gallery && !c->ml_set) PetscCall(PetscOptionsSetValue(NULL, "-kd_teacher_multilabel", "1"));
  snprintf(dir, sizeof dir, "out/student");
  c->config = (AckdModelConfig){.arch = ACKD_ARCH_RESNET18, .width = 1.0};
  PetscCall(AckdModelConfigSetFromOptions(comm, "student_", &c->config));
  PetscCall(AckdKDCreate(comm, &c->kd));
  PetscCall(AckdKDSetFromOptions(c->kd));
  PetscCall(PetscOptionsGetBool(NULL, NULL, "-sembridge", &c->sembridge, NULL));
  if (!c->dynm_set) c->dynm = c->sembridge;
  {
    /* Listed by -help; the solver itself is built at each re-matching. */
    AckdOT ot;
    PetscCall(AckdOTCreate(comm, &ot));
    PetscCall(AckdOTSetOptionsPrefix(ot, "dynm_"));
    PetscCall(AckdOTSetFromOptions(ot));
    PetscCall(AckdOTDestroy(&ot));
  }
  PetscCall(AckdTrainerCreate(comm, &c->trainer));
  PetscCall(AckdTrainerSetOptionsPrefix(c->trainer, "distill_"));
  PetscCall(AckdTrainerSetDefaults(c->trainer, dir, ACKD_OPT_ADAM, 1e-3, 200, 256));
  PetscCall(AckdTrainerSetFromOptions(c->trainer));
  PetscCall(AckdH5SettingsSetFromOptions(&c->h5));
  PetscFunctionReturn(0);
}

/* The student, its samples (the RGB training split) and their teacher targets from the match file. */
static PetscErrorCode setup_student(AckdDistillation c, PetscInt seed)
{
  MPI_Comm comm = c->comm;

  PetscFunctionBeginUser;
  PetscCheck(c->have_data && c->data[0], comm, PETSC_ERR_USER_INPUT,
             "option -distill_data is required: the dataset file written by ackd synth or ackd curate");
  PetscCheck(c->gallery[0], comm, PETSC_ERR_USER_INPUT,
             "option -distill_gallery is required: the teacher gallery written by ackd train (DIR/gallery.h5)");
  PetscCheck(c->match[0], comm, PETSC_ERR_USER_INPUT,
             "option -distill_match is required: the match file written by ackd match");
  PetscCheck(!c->ml_gallery || !c->ml_set || c->ml_option, comm, PETSC_ERR_USER_INPUT,
             "gallery '%s' is of a multi-label teacher (labels (N_t, K)) but -kd_teacher_multilabel is off; drop the "
             "option (distill sets it for such a gallery)",
             c->gallery);
  PetscCall(
      AckdGalleryCheckTeacher(comm, c->gallery, c->teacher_path, "-distill_teacher")); /* the gallery's own teacher */

  const char *method;
  PetscCall(AckdKDGetMethodName(c->kd, &method));
  snprintf(c->method, sizeof c->method, "%s%s", method, c->sembridge ? "+sembridge" : "");
  PetscCall(AckdCollectionInfoRead(comm, c->data, "rgb", &c->info));
  PetscCall(AckdCollectionInfoRead(comm, c->data, "ms", &c->ms_info));
  PetscCheck(!c->info.multilabel, comm, PETSC_ERR_USER_INPUT,
             "/rgb in '%s' is multi-label, but the student is single-label by design (M2S: a multi-label teacher "
             "teaches a single-label student); give a dataset whose /rgb has one class per sample",
             c->data);
  PetscCheck(c->info.ms_to_rgb, comm, PETSC_ERR_USER_INPUT,
             "'%s' has no /class_map relating MS to RGB classes; curate it with a class map", c->data);
  c->config.in_channels = c->info.channels;
  c->config.classes     = c->info.classes;
  c->config.image_size  = c->info.height;
  PetscCall(AckdModelCreate(comm, &c->student));
  PetscCall(AckdModelSetUp(c->student, &c->config, (uint64_t)seed));
  if (c->init[0]) PetscCall(AckdModelInitFromFile(comm, c->student, &c->config, c->init, "-distill_init"));
  PetscCall(AckdSharedDatasetLoad(comm, c->data, "rgb", &c->h5, &c->rgb));

  /* The student samples: the RGB training split, in dataset order (docs/FORMATS.md). */
  {
    const int           *labels;
    const unsigned char *split;
    int                 *student_labels;
    PetscCall(AckdSharedDatasetGetArrays(c->rgb, NULL, &labels, &split));
    PetscCall(PetscMalloc1(c->info.count, &c->student_rows));
    PetscCall(PetscMalloc1(c->info.count, &c->student_of_row));
    PetscCall(PetscMalloc1(c->info.count, &student_labels));
    for (PetscInt i = 0; i < c->info.count; i++) {
      c->student_of_row[i] = split[i] == 0 ? c->nstudent : -1;
      if (split[i] == 0) {
        student_labels[c->nstudent]    = labels[i];
        c->student_rows[c->nstudent++] = i;
      }
    }
    PetscCall(AckdTeacherTargetsCreate(comm, c->gallery, c->info.ms_to_rgb, c->info.nms_classes, c->info.classes,
                                       c->nstudent, c->student_rows, student_labels, &c->targets));
    PetscCall(PetscFree(student_labels));
  }
  PetscCall(AckdTeacherTargetsLoadMatch(c->targets, c->match, c->topk));

  PetscFunctionReturn(0);
}

/* The frozen teacher when it can be read, and the MS images when its tokens are wanted. */
static PetscErrorCode setup_teacher(AckdDistillation c, AckdModelConfig *tconfig)
{
  MPI_Comm comm = c->comm;

  PetscFunctionBeginUser;
  /* Tokens, when the method compares feature maps: a forward of the frozen teacher. */
  c->tokens = c->tokens_choice == 1 ? PETSC_TRUE : PETSC_FALSE;
  if (c->tokens_choice == 0) PetscCall(AckdKDWantsTeacherTokens(c->kd, &c->tokens));
  const char *method;
  PetscCall(AckdKDGetMethodName(c->kd, &method));
  if (!c->teacher_path[0]) {
    AckdH5Settings gh5 = {0};
    hid_t          gfile;
    PetscBool      found;
    PetscCall(AckdH5FileOpenRead(comm, c->gallery, &gh5, &gfile));
    PetscCall(AckdH5AttrReadString(gfile, "source", c->teacher_path, sizeof c->teacher_path, &found));
    PetscCall(AckdH5FileClose(&gfile, c->gallery));
  }
  PetscBool teacher_readable = PETSC_FALSE;
  if (c->teacher_path[0]) PetscCall(AckdFileReadable(comm, c->teacher_path, &teacher_readable));
  PetscCheck(!c->tokens || teacher_readable, comm, PETSC_ERR_USER_INPUT,
             "-kd_method %s%s needs the teacher's layer-4 tokens: give -distill_teacher CHECKPOINT (the gallery names "
             "none that can be read), or -distill_teacher_tokens no with a method that needs none",
             method, c->sembridge ? " -sembridge" : "");
  PetscBool have_teacher = PETSC_FALSE;
  if (teacher_readable) {
    PetscCall(load_teacher(c, c->teacher_path, tconfig));
    have_teacher = PETSC_TRUE;
  }
  snprintf(c->pair, sizeof c->pair, "%c/%c", have_teacher ? arch_letter(tconfig->arch) : '?',
           arch_letter(c->config.arch));
  if (c->tokens) {
    PetscCall(AckdSharedDatasetLoad(comm, c->data, "ms", &c->h5, &c->ms));
    PetscCheck(tconfig->in_channels == c->ms_info.channels, comm, PETSC_ERR_USER_INPUT,
               "teacher '%s' takes %" PetscInt_FMT " bands but /ms in '%s' has %" PetscInt_FMT, c->teacher_path,
               tconfig->in_channels, c->data, c->ms_info.channels);
  }

  PetscFunctionReturn(0);
}

/* The networks' output shapes, from one sample of each, and the teacher's tokens of every MS image
 * when they are kept. */
static PetscErrorCode setup_tokens(AckdDistillation c, AckdModelOutputs *so)
{
  MPI_Comm comm = c->comm;

  AckdEngine      *engine;
  AckdModelOutputs to;

  PetscFunctionBeginUser;
  PetscCall(AckdTrainerGetEngine(c->trainer, &engine));
  PetscCall(AckdModelProbe(c->student, engine, c->rgb, so));
  PetscCall(AckdModelSetTraining(c->student, PETSC_TRUE));
  if (c->tokens) { /* the frozen teacher stays in evaluation mode */
    PetscCall(AckdModelProbe(c->teacher, engine, c->ms, &to));
    c->teacher_T = to.tokens.h;
    c->teacher_C = to.tokens.w;
    if (c->use_token_cache) {
      double t0 = AckdTimeNow();
      PetscCall(PetscLogEventBegin(distill_log.events[0], 0, 0, 0, 0));
      PetscCall(AckdTeacherTokensCreate(comm, c->teacher, engine, c->ms, c->teacher_T, c->teacher_C, &c->token_cache));
      PetscCall(PetscLogEventEnd(distill_log.events[0], 0, 0, 0, 0));
      AckdLog log;
      PetscCall(AckdLogSetUp(&log, comm));
      if (c->token_cache) {
        /* With its tokens kept, the teacher and its images have nothing left to do: they go. */
        PetscCall(AckdModelDestroy(&c->teacher));
        PetscCall(AckdSharedDatasetDestroy(&c->ms));
        PetscCall(AckdLogInfo(
            &log, "teacher tokens: %" PetscInt_FMT " x %" PetscInt_FMT " per MS image, computed once in %.2f s\n",
            c->teacher_T, c->teacher_C, AckdTimeNow() - t0));
      } else
        PetscCall(AckdLogInfo(
            &log, "teacher tokens: too large to keep for every MS image; the teacher runs at every step\n"));
    }
  }
  c->embedding_dim  = so->embedding.c;
  c->token_count    = so->tokens.h;
  c->token_channels = so->tokens.w;
  PetscFunctionReturn(0);
}

/* The KD object, for these shapes and this class overlap. */
static PetscErrorCode setup_kd(AckdDistillation c, const AckdModelOutputs *so, PetscInt seed)
{
  PetscInt       D_t = 0, epochs;
  unsigned char *teacher_classes;

  PetscFunctionBeginUser;
  PetscCall(AckdTeacherTargetsGetSizes(c->targets, NULL, NULL, NULL, &D_t));
  PetscCall(PetscMalloc1(PetscMax(c->nstudent, 1), &c->samples)); /* a local share never exceeds the training set */
  PetscCall(PetscCalloc1(c->config.classes, &teacher_classes));
  for (PetscInt m = 0; m < c->info.nms_classes; m++)
    if (c->info.ms_to_rgb[m] >= 0 && c->info.ms_to_rgb[m] < c->config.classes)
      teacher_classes[c->info.ms_to_rgb[m]] = 1;
  PetscCall(AckdTrainerGetEpochs(c->trainer, &epochs));
  AckdKDDims dims = {.classes           = c->config.classes,
                     .student_samples   = c->nstudent,
                     .student_embedding = so->embedding.c,
                     .student_channels  = so->tokens.w,
                     .student_tokens    = so->tokens.h,
                     .teacher_embedding = D_t,
                     .teacher_channels  = c->teacher_C,
                     .teacher_tokens    = c->teacher_T,
                     .teacher_logits    = PETSC_TRUE,
                     .seed              = (uint64_t)seed + 1,
                     .teacher_classes   = teacher_classes,
                     .epochs            = epochs};
  PetscCall(AckdKDSetUp(c->kd, &dims));
  PetscCall(PetscFree(teacher_classes));

  PetscFunctionReturn(0);
}

/* The trainer: what it optimises, checkpoints and calls at each step, validation and epoch. */
static PetscErrorCode setup_trainer(AckdDistillation c)
{
  AckdTrainer t = c->trainer;

  PetscFunctionBeginUser;
  AckdParams *kd_params;
  float      *table_index, *table_weight;
  PetscInt    k;
  PetscCall(AckdKDGetParams(c->kd, &kd_params));
  PetscCall(AckdTeacherTargetsGetTable(c->targets, &table_index, &table_weight));
  PetscCall(AckdTeacherTargetsGetSizes(c->targets, NULL, NULL, &k, NULL));
  PetscCall(AckdTrainerSetDataset(t, c->rgb));
  PetscCall(AckdTrainerAddModel(t, "model", c->student));
  c->kd_params = (PetscBool)(kd_params->nparams > 0);
  if (c->kd_params) PetscCall(AckdTrainerAddParams(t, "kd", kd_params));
  {
    float   *kd_state;
    PetscInt kd_state_size;
    PetscCall(AckdKDGetState(c->kd, &kd_state, &kd_state_size));
    if (kd_state_size > 0) PetscCall(AckdTrainerAddState(t, "kd", kd_state, kd_state_size)); /* CRD's memory */
  }
  {
    char gallery[256];
    PetscCall(AckdTeacherTargetsDescribe(c->targets, gallery, sizeof gallery));
    PetscCall(AckdTrainerAddInputRecord(t, ACKD_CKPT_INPUT_TEACHER_GALLERY, "-distill_gallery", gallery));
  }
  PetscCall(AckdTrainerAddState(t, "match_index", table_index, c->nstudent * k));
  PetscCall(AckdTrainerAddState(t, "match_weight", table_weight, c->nstudent * k));
  PetscCall(AckdTrainerSetStep(t, distill_step, c));
  PetscCall(AckdTrainerSetValidation(t, validate, "val_oa", c));
  PetscCall(AckdTrainerSetEpochHook(t, rematch, c));
  {
    const char *const *terms;
    PetscInt           nterms;
    PetscCall(AckdKDGetMetricNames(c->kd, &nterms, &terms));
    PetscCall(AckdTrainerSetTermNames(t, nterms, terms));
  }
  if (c->dynm) PetscCall(AckdTrainerSetEpochValueNames(t, NDYNM, DYNM_VALUES));
  PetscCall(AckdTrainerSetDescription(t, AckdArchNames[c->config.arch], "distill", "student", describe, c));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdDistillationSetUp(AckdDistillation c)
{
  AckdModelConfig  tconfig = {0};
  AckdModelOutputs so;
  PetscInt         seed;

  PetscFunctionBeginUser;
  if (c->setup) PetscFunctionReturn(0);
  PetscCall(AckdTrainerGetSeed(c->trainer, &seed));
  PetscCall(setup_student(c, seed));
  PetscCall(setup_teacher(c, &tconfig));
  PetscCall(setup_tokens(c, &so));
  PetscCall(setup_kd(c, &so, seed));
  PetscCall(setup_trainer(c));
  c->setup = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdDistillationRun(AckdDistillation c, PetscBool *stopped)
{
  PetscFunctionBeginUser;
  PetscCall(AckdDistillationSetUp(c));
  PetscCall(AckdTrainerRun(c->trainer, stopped));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdDistillationDestroy(AckdDistillation *distillation)
{
  DistillContext *c = *distillation;

  PetscFunctionBeginUser;
  if (!c) PetscFunctionReturn(0);
  PetscCall(AckdTrainerDestroy(&c->trainer));
  PetscCall(AckdKDDestroy(&c->kd));
  if (c->setup) {
    PetscCall(PetscFree6(c->t_logits, c->t_embedding, c->weight, c->teacher_row, c->ms_images, c->t_tokens));
    PetscCall(AckdTensorFree(&c->d_logits));
    PetscCall(AckdTensorFree(&c->d_embedding));
    PetscCall(AckdTensorFree(&c->d_tokens));
    PetscCall(AckdTeacherTargetsDestroy(&c->targets));
    PetscCall(PetscFree(c->student_rows));
    PetscCall(PetscFree(c->student_of_row));
    PetscCall(PetscFree(c->samples));
    if (c->ms) PetscCall(AckdSharedDatasetDestroy(&c->ms));
    PetscCall(AckdSharedDatasetDestroy(&c->rgb));
    if (c->teacher) PetscCall(AckdModelDestroy(&c->teacher));
    PetscCall(AckdTeacherTokensDestroy(&c->token_cache));
    PetscCall(AckdModelDestroy(&c->student));
    PetscCall(AckdCollectionInfoDestroy(&c->info));
    PetscCall(AckdCollectionInfoDestroy(&c->ms_info));
  }
  PetscCall(PetscFree(*distillation));
  PetscFunctionReturn(0);
}
