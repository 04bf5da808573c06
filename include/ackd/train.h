/* ackd train: the data-parallel training loop that `train`, `ssm` and
 * `distill` share, and the classifier evaluation that `train` and `eval` share.
 *
 * An AckdTrainer owns what every training stage needs the same way:
 *   - the data order: an AckdBatchPlan over the training split, a pure
 *     function of (seed, epoch), with scene augmentation drawn from
 *     (seed, epoch, global sample index);
 *   - the parameter groups (a model, a KD method's heads, ...), each one
 *     contiguous AckdParams with its optimizer, its gradient buckets
 *     (MPI_Iallreduce started from backward as layers finish) and its
 *     checkpoint group;
 *   - checkpoints and resume (src/ckpt), the stop request (SIGUSR1/SIGTERM:
 *     finish the step, checkpoint, exit 75), validation every epoch, the
 *     best model by validation score, metrics to HDF5, progress and logging.
 * The stage supplies one function: the forward, loss and backward of its
 * local share of a global batch.
 *
 *   AckdTrainerCreate(comm, &t);
 *   AckdTrainerSetOptionsPrefix(t, "train_");  -train_epochs, -train_lr, -train_ckpt_every_steps, ...
 *   AckdTrainerSetDataset(t, dataset);
 *   AckdTrainerAddModel(t, "model", model);     repeat for each parameter group
 *   AckdTrainerSetStep(t, step, ctx);
 *   AckdTrainerSetValidation(t, validate, ctx); optional
 *   AckdTrainerSetFromOptions(t);
 *   ... AckdStageReady ...
 *   AckdTrainerRun(t, &stopped);                stopped: exit with ACKD_EXIT_CHECKPOINTED
 *   AckdTrainerDestroy(&t);
 */
#ifndef ACKD_TRAIN_H
#define ACKD_TRAIN_H

#include <ackd/ckpt.h>
#include <ackd/data.h>
#include <ackd/dist.h>
#include <ackd/nn.h>

#define ACKD_FORMAT_METRICS         "metrics"
#define ACKD_FORMAT_METRICS_VERSION 1
/* `ackd eval`'s file: OA, the confusion matrix, per-sample predictions and logits (docs/FORMATS.md) */
#define ACKD_FORMAT_EVAL         "eval"
#define ACKD_FORMAT_EVAL_VERSION 1

enum { ACKD_TRAIN_MAX_TERMS = 8, ACKD_TRAIN_MAX_GROUPS = 6, ACKD_TRAIN_MAX_VALUES = 8, ACKD_TRAIN_MAX_INPUTS = 4 };

/* This rank's share of one global batch, as the step function sees it. */
typedef struct {
  PetscInt        epoch, step, batch; /* step: optimizer steps taken before this one */
  PetscInt        nlocal, nglobal;    /* samples here / in the whole global batch */
  PetscInt        sample_offset;      /* position of the first local sample in the global batch */
  const PetscInt *rows;               /* dataset rows of the local samples */
  const PetscInt *labels;             /* their labels (-1 in a multi-label collection: see
                                         AckdSharedDatasetGetMultilabels at `rows`) */
  AckdTensor images;                  /* (nlocal, C, H, W), augmented */
} AckdTrainBatch;

/* What a step reports, each value this rank's share of a global-batch mean
 * (a per-sample quantity summed over the local samples and divided by
 * nglobal), so that the sum over ranks is the global mean. */
typedef struct {
  double loss;
  double correct; /* samples classified right (a count, not divided); NaN: the step does not classify */
  double terms[ACKD_TRAIN_MAX_TERMS];
} AckdTrainStepResult;

/* Forward, loss and backward of the local share: leaves the gradients of
 * every group's parameters (normalised by nglobal) in their buffers. */
typedef PetscErrorCode (*AckdTrainStepFn)(void *ctx, AckdEngine *engine, const AckdTrainBatch *batch,
                                          AckdTrainStepResult *result);
/* Collective; the global validation loss and score (higher is better, e.g. OA). */
typedef PetscErrorCode (*AckdTrainValidateFn)(void *ctx, AckdEngine *engine, PetscInt epoch, double *loss,
                                              double *score);
/* Writes the caller's attributes (model configuration) on a checkpoint's root. */
typedef PetscErrorCode (*AckdTrainDescribeFn)(void *ctx, hid_t file);

typedef struct _p_AckdTrainer *AckdTrainer;

PetscErrorCode AckdTrainerCreate(MPI_Comm comm, AckdTrainer *trainer);
PetscErrorCode AckdTrainerSetOptionsPrefix(AckdTrainer trainer, const char *prefix);
/* Defaults the stage may set before SetFromOptions (the user's options win). */
PetscErrorCode AckdTrainerSetDefaults(AckdTrainer trainer, const char *directory, AckdOptimizerKind optimizer,
                                      double lr, PetscInt epochs, PetscInt batch);
/* The weight decay used when -PREFIXweight_decay is not given, before
 * SetFromOptions (otherwise: 0, and PyTorch's 0.01 for AdamW). */
PetscErrorCode AckdTrainerSetDefaultWeightDecay(AckdTrainer trainer, double weight_decay);
PetscErrorCode AckdTrainerSetFromOptions(AckdTrainer trainer);
/* The collection to train on; its split 0 is the training set. */
PetscErrorCode AckdTrainerSetDataset(AckdTrainer trainer, AckdSharedDataset dataset);
/* A model's parameters as a group (checkpoint group `name`): its gradients are
 * exchanged from backward, layer by layer, through the model's
 * gradient-ready callback. */
PetscErrorCode AckdTrainerAddModel(AckdTrainer trainer, const char *name, AckdModel model);
/* Parameters outside a model (a KD method's heads): exchanged after the step, or from the point
 * where the step calls AckdTrainerParamsReady. */
PetscErrorCode AckdTrainerAddParams(AckdTrainer trainer, const char *name, AckdParams *params);
/* Collective, from inside the step: the gradients of group `name` (AckdTrainerAddParams) are
 * final for this step, so their exchange starts now and overlaps the rest of the step (the
 * model's backward). Every rank calls it at the same point of its step, an empty batch too. */
PetscErrorCode AckdTrainerParamsReady(AckdTrainer trainer, const char *name);
PetscErrorCode AckdTrainerSetStep(AckdTrainer trainer, AckdTrainStepFn step, void *ctx);
PetscErrorCode AckdTrainerSetValidation(AckdTrainer trainer, AckdTrainValidateFn validate, const char *score_name,
                                        void *ctx);
PetscErrorCode AckdTrainerSetDescription(AckdTrainer trainer, const char *architecture, const char *stage,
                                         const char *role, AckdTrainDescribeFn describe, void *ctx);
/* Called collectively at the start of every epoch (not when a run resumes
 * inside an epoch: what the hook computed is restored from the checkpoint
 * through AckdTrainerAddState). DynM's re-matching lives here. */
typedef PetscErrorCode (*AckdTrainEpochFn)(void *ctx, AckdEngine *engine, PetscInt epoch);
PetscErrorCode AckdTrainerSetEpochHook(AckdTrainer trainer, AckdTrainEpochFn hook, void *ctx);
/* A replicated vector of the stage's (e.g. the current matching) that every
 * checkpoint holds as /optim/state.<name> and a resume reads back. */
PetscErrorCode AckdTrainerAddState(AckdTrainer trainer, const char *name, float *data, PetscInt n);
/* What the run reads besides its dataset and options, recorded in every checkpoint as the root
 * attribute `key` (e.g. "teacher_gallery", AckdTeacherTargetsDescribe's line): a resume whose
 * record differs is refused in one line naming `option`, as one on another dataset is. */
PetscErrorCode AckdTrainerAddInputRecord(AckdTrainer trainer, const char *key, const char *option, const char *record);
/* Names of the step's extra loss terms (metrics such as loss_kd). */
PetscErrorCode AckdTrainerSetTermNames(AckdTrainer trainer, PetscInt n, const char *const *names);
/* Names of values the stage observes once per epoch (DynM's matching statistics), set by the
 * epoch hook through AckdTrainerSetEpochValue. Each becomes a per-epoch metric beside the loss
 * terms, NaN in the epochs where nothing was recorded; a stop mid-epoch keeps the epoch's. */
PetscErrorCode AckdTrainerSetEpochValueNames(AckdTrainer trainer, PetscInt n, const char *const *names);
PetscErrorCode AckdTrainerSetEpochValue(AckdTrainer trainer, PetscInt index, double value);
PetscErrorCode AckdTrainerGetEngine(AckdTrainer trainer, AckdEngine **engine);
PetscErrorCode AckdTrainerGetDirectory(AckdTrainer trainer, const char **directory);
PetscErrorCode AckdTrainerGetSeed(AckdTrainer trainer, PetscInt *seed);
/* The epochs the run trains for (after SetFromOptions). */
PetscErrorCode AckdTrainerGetEpochs(AckdTrainer trainer, PetscInt *epochs);
/* Collective: resumes from the newest good checkpoint if there is one, trains
 * to the last epoch (or -PREFIXmax_steps), validating, keeping the best model
 * and writing metrics. *stopped: a stop was requested and a checkpoint was
 * written; the stage should exit with ACKD_EXIT_CHECKPOINTED. */
PetscErrorCode AckdTrainerRun(AckdTrainer trainer, PetscBool *stopped);
PetscErrorCode AckdTrainerDestroy(AckdTrainer *trainer);

/* ---------------------------------------------------------------- checkpoint <-> model */

/* Every parameter and buffer of `params` as checkpoint entries, with
 * PyTorch's shapes (free with PetscFree). */
PetscErrorCode AckdParamsGetCheckpointEntries(AckdParams *params, PetscInt *n, AckdCkptEntry **entries);
/* The model configuration recorded on a checkpoint's root, and back. */
PetscErrorCode AckdModelConfigWrite(const AckdModelConfig *config, hid_t file);
PetscErrorCode AckdModelConfigRead(MPI_Comm comm, hid_t file, const char *path, AckdModelConfig *config);
/* Collective: the model's weights and batch-norm statistics from an open checkpoint; a file of
 * another model is refused, naming every tensor that does not fit. */
PetscErrorCode AckdModelReadCheckpoint(AckdCkptReader reader, AckdModel model);
/* Collective: the model's weights and batch-norm statistics from `path`, a file in checkpoint
 * layout recording the same model (`config`); `option` names the option that gave the path in
 * the one-line refusal of a file of another model. */
PetscErrorCode AckdModelInitFromFile(MPI_Comm comm, AckdModel model, const AckdModelConfig *config, const char *path,
                                     const char *option);

/* ---------------------------------------------------------------- training */

/* `ackd train` as an object: one network trained on one modality, data parallel and resumable:
 * the teacher on /ms (-train_role teacher, model options -teacher_*), which ends by writing its
 * gallery, or the no-KD student on /rgb (-train_role student, -student_*).
 *   AckdTrainingCreate(comm, &t);
 *   AckdTrainingSetFromOptions(t);        -train_*, the role's model options, the trainer's -train_ options
 *   AckdTrainingSetUp(t);                 the dataset and the model
 *   AckdTrainingRun(t, &stopped);         collective; stopped: checkpointed on a stop request (exit 75)
 *   AckdTrainingDestroy(&t); */
typedef struct _p_AckdTraining *AckdTraining;

PetscErrorCode AckdTrainingCreate(MPI_Comm comm, AckdTraining *training);
PetscErrorCode AckdTrainingSetFromOptions(AckdTraining training);
PetscErrorCode AckdTrainingSetUp(AckdTraining training);
PetscErrorCode AckdTrainingRun(AckdTraining training, PetscBool *stopped);
PetscErrorCode AckdTrainingDestroy(AckdTraining *training);

/* ---------------------------------------------------------------- evaluation */

/* These AckdModel functions live here, not in nn.h: they read a dataset (dist), which nn may not
 * depend on (docs/DESIGN.md §3). */

/* Runs `model` in evaluation mode over `rows` (global dataset rows, this
 * rank's share) in batches, calling `visit` with each batch's outputs. */
typedef PetscErrorCode (*AckdPredictVisit)(void *ctx, PetscInt first, PetscInt n, const AckdModelOutputs *outputs);
PetscErrorCode AckdModelPredict(AckdModel model, AckdEngine *engine, AckdSharedDataset dataset, PetscInt nrows,
                                const PetscInt *rows, PetscInt batch, AckdPredictVisit visit, void *ctx);
/* The same, stoppable: it leaves its loop at the first batch after this rank's stop signal, then
 * decides for every rank of comm (*stopped, collective) whether the pass was stopped. */
PetscErrorCode AckdModelPredictStoppable(AckdModel model, AckdEngine *engine, AckdSharedDataset dataset, PetscInt nrows,
                                         const PetscInt *rows, PetscInt batch, AckdPredictVisit visit, void *ctx,
                                         PetscBool stoppable, MPI_Comm comm, PetscBool *stopped);

/* The shapes a model's outputs take on `dataset` (its first sample through
 * the model in evaluation mode): embedding width, token grid. Leaves the model
 * in evaluation mode; the data pointers in `outputs` are valid until the
 * next forward. */
PetscErrorCode AckdModelProbe(AckdModel model, AckdEngine *engine, AckdSharedDataset dataset,
                              AckdModelOutputs *outputs);

/* How many rows of logits (B, K, 1, 1) have their largest entry at the label. */
PetscInt AckdCountCorrect(const AckdTensor *logits, const PetscInt *labels);

/* Collective: the split's rows (0 train, 1 val, 2 test) shared out over the
 * ranks in contiguous blocks. *nglobal counts the whole split. */
PetscErrorCode AckdSplitRows(MPI_Comm comm, AckdSharedDataset dataset, PetscInt split, PetscInt *nglobal,
                             PetscInt *nlocal, PetscInt **rows, PetscInt *first);

/* Collective: mean cross-entropy, overall accuracy and (if not NULL) the
 * K x K confusion matrix (rows true class, columns prediction), every
 * prediction of this rank's rows and their logits. */
typedef struct {
  PetscInt  count;
  double    loss, oa;
  PetscInt *confusion;    /* K x K, on every rank */
  float    *local_logits; /* this rank's rows of the split x K, caller's memory, or NULL */
  PetscBool stoppable;    /* in: a stop signal (AckdStopRequestInstall) ends the pass early */
  PetscBool stopped;      /* out, the same on every rank: the pass ended early and the numbers mean nothing */
} AckdClassifierScore;
PetscErrorCode AckdClassifierEvaluate(MPI_Comm comm, AckdModel model, AckdEngine *engine, AckdSharedDataset dataset,
                                      PetscInt split, PetscInt batch, PetscInt classes, AckdClassifierScore *score,
                                      PetscInt *predictions);

/* Collective, for a multi-label collection ((N, K) 0/1 labels): the split's
 * mean binary cross-entropy with logits (over N x K), and from the sigmoid
 * scores s = σ(z) (float32, as stored by `eval`):
 *   map       mean over the classes with at least one positive of their AP;
 *   f1_micro  2TP / (2TP + FP + FN) over every (sample, class), predicted s > 0.5;
 *   f1_macro  mean of the per-class F1 over the classes where it is defined
 *             (TP + FP + FN > 0);
 *   per_class_ap (K, if not NULL): AP, NaN for a class without positives.
 * local_scores (if not NULL): the scores of this rank's rows of the split
 * (AckdSplitRows' block), nlocal x K. The numbers are the same on every rank. */
typedef struct {
  PetscInt  count;
  double    loss, map, f1_micro, f1_macro;
  double   *per_class_ap;       /* K, caller's memory, or NULL */
  PetscBool stoppable, stopped; /* as in AckdClassifierScore */
} AckdMultilabelScore;
PetscErrorCode AckdMultilabelEvaluate(MPI_Comm comm, AckdModel model, AckdEngine *engine, AckdSharedDataset dataset,
                                      PetscInt split, PetscInt batch, PetscInt classes, AckdMultilabelScore *score,
                                      float *local_scores);
/* Average precision of one class over n samples (scores[i * stride], labels
 * [i * label_stride] != 0 positive): the mean over the positives of the
 * precision at their rank by decreasing score, a group of tied scores counting
 * as one threshold (scikit-learn's average_precision_score). NaN without positives. */
PetscErrorCode AckdAveragePrecision(PetscInt n, const float *scores, PetscInt stride, const unsigned char *labels,
                                    PetscInt label_stride, double *ap);

/* ---------------------------------------------------------------- gallery */

#define ACKD_FORMAT_GALLERY         "gallery"
#define ACKD_FORMAT_GALLERY_VERSION 1

/* Collective: the frozen model's logits and pooled embeddings on every
 * training sample (split 0) of `dataset`, in dataset order, written as the
 * gallery file of docs/FORMATS.md (through path.part, renamed). */
PetscErrorCode AckdGalleryWrite(MPI_Comm comm, AckdModel model, AckdEngine *engine, AckdSharedDataset dataset,
                                const AckdCollectionInfo *info, const char *path, const char *source);
/* Collective: whether a gallery's teacher is multi-label (/gallery/labels is (N_t, K)). */
PetscErrorCode AckdGalleryIsMultilabel(MPI_Comm comm, const char *path, PetscBool *multilabel);
/* Collective: refuses (one line naming `option`) a teacher checkpoint of
 * another architecture, width or dataset than the checkpoint the gallery came
 * from (its `source` attribute); passes when `teacher` is empty or that source,
 * or when the source cannot be read to compare. */
PetscErrorCode AckdGalleryCheckTeacher(MPI_Comm comm, const char *gallery, const char *teacher, const char *option);

/* ---------------------------------------------------------------- evaluation */

/* `ackd eval` as an object: a checkpoint's accuracy (mAP and F1 on a multi-label collection) on
 * one split of a dataset, written as an eval file (ACKD_FORMAT_EVAL) and printed on rank 0.
 *   AckdEvaluationCreate(comm, &e);
 *   AckdEvaluationSetFromOptions(e);      -eval_checkpoint, -eval_data, -eval_split, -eval_output, ...
 *   AckdEvaluationSetUp(e);               the model from the checkpoint, the dataset, the split, the output
 *   AckdEvaluationRun(e, &stopped);       collective; a stop request ends it with nothing written
 *   AckdEvaluationDestroy(&e); */
typedef struct _p_AckdEvaluation *AckdEvaluation;

PetscErrorCode AckdEvaluationCreate(MPI_Comm comm, AckdEvaluation *evaluation);
PetscErrorCode AckdEvaluationSetFromOptions(AckdEvaluation evaluation);
PetscErrorCode AckdEvaluationSetUp(AckdEvaluation evaluation);
PetscErrorCode AckdEvaluationRun(AckdEvaluation evaluation, PetscBool *stopped);
PetscErrorCode AckdEvaluationDestroy(AckdEvaluation *evaluation);

#endif
