/* The data-parallel training loop shared by `train`, `ssm` and `distill`.
 *
 * Determinism is the design constraint: the batches come from (seed, epoch),
 * augmentation from (seed, epoch, sample), dropout from (seed, step, sample),
 * and everything else that changes during training (parameters, buffers,
 * optimizer moments and step counts, the position within the epoch, the
 * partial sums of the epoch's metrics, the best score so far) is in the
 * checkpoint. So a run stopped at any step and started again, with the same
 * number of ranks, ends bitwise where an uninterrupted run ends; with another
 * number of ranks only the summation order of the gradient allreduce differs. */
#include <ackd/train.h>
#include <ackd/data.h>
#include <math.h>
#include <signal.h>
#include <string.h>

/* Per-epoch histories, in this order, then the stage's terms. */
enum { M_EPOCH, M_STEP, M_LR, M_TRAIN_LOSS, M_TRAIN_ACCURACY, M_VAL_LOSS, M_VAL_SCORE, M_SECONDS, M_FIXED };
/* The running sums of the epoch in progress: they survive a stop mid-epoch. */
enum { P_LOSS, P_CORRECT, P_COUNT, P_SECONDS, P_TERMS, P_SIZE = P_TERMS + ACKD_TRAIN_MAX_TERMS };
/* What a step whose loss or gradient is not finite does (-PREFIXnonfinite). */
typedef enum { NONFINITE_STOP, NONFINITE_SKIP } NonFinite;
static const char *const NONFINITE_NAMES[] = {"stop", "skip"};

typedef struct {
  char            name[64];
  AckdParams     *params;
  AckdModel       model; /* NULL: parameters outside a model */
  AckdOptimizer   optimizer;
  AckdGradBuckets buckets;
  PetscInt        pending; /* parameter entries above this one have been handed to the buckets */
} Group;

struct _p_AckdTrainer {
  MPI_Comm    comm;
  PetscMPIInt rank, size;
  char        prefix[64];
  AckdLog     log;

  /* options */
  char              dir[PETSC_MAX_PATH_LEN];
  PetscInt          epochs, batch, max_steps, seed, threads, debug_signal_after, validate_every;
  double            debug_step_delay; /* testing: seconds each step waits after its update */
  AckdOptimizerKind optimizer;
  double            lr, weight_decay, default_weight_decay, momentum, beta1, beta2, clip, bucket_mb;
  PetscBool         nesterov, augment, sync_bn, drop_last, weight_decay_set, has_default_weight_decay, exchange_timing;
  AckdSchedule      schedule;
  AckdGradExchange  exchange;
  NonFinite         nonfinite;
  AckdPrecision     precision; /* the convolutions' arithmetic */

  /* what the stage plugged in */
  AckdSharedDataset   dataset;
  Group               groups[ACKD_TRAIN_MAX_GROUPS];
  PetscInt            ngroups;
  AckdTrainStepFn     step;
  void               *step_ctx;
  AckdTrainValidateFn validate;
  void               *validate_ctx;
  char                score_name[32], architecture[64], stage[32], role[32];
  AckdTrainDescribeFn describe;
  void               *describe_ctx;
  PetscInt            nterms, nvalues;
  char                term_names[ACKD_TRAIN_MAX_TERMS][32];
  char                value_names[ACKD_TRAIN_MAX_VALUES][32];
  AckdTrainEpochFn    epoch_hook;
  void               *epoch_ctx;
  PetscInt            nstates;
  struct {
    char     name[64];
    float   *data;
    PetscInt n;
  } states[ACKD_TRAIN_MAX_GROUPS];
  PetscInt ninputs; /* the stage's records (AckdTrainerAddInputRecord), then the dataset's (Run) */
  struct {
    char key[32], option[64], record[256];
  } inputs[ACKD_TRAIN_MAX_INPUTS + 1];

  /* built by Run */
  AckdEngine     engine;
  PetscBool      engine_ready;
  AckdCkptWriter writer;
  AckdBatchPlan  plan;
  PetscInt       ntrain, nbatches;
  PetscInt      *train_rows, *local_rows, *local_labels;
  float         *images, *scratch;
  float         *buffer_backup; /* -nonfinite skip: the running statistics before the step */
  AckdDirLock    lock;          /* the output directory's, held while Run works in it */
  PetscInt       skipped;       /* steps skipped for a non-finite loss or gradient, this process's run */

  /* state */
  AckdCkptState state;
  double        best_score, partial[P_SIZE];
  double        observed[ACKD_TRAIN_MAX_VALUES];           /* the epoch values recorded in the epoch in progress */
  double        step_seconds, images_done, blocked_warmup; /* this process's steps after its first, for the summary */
  PetscInt      best_epoch, nhistory;
  double       *history[M_FIXED + ACKD_TRAIN_MAX_TERMS + ACKD_TRAIN_MAX_VALUES];
};

static const char *const FIXED_METRICS[M_FIXED] = {"epoch",          "step",     "lr",        "train_loss",
                                                   "train_accuracy", "val_loss", "val_score", "seconds"};

static const char *metric_name(AckdTrainer t, PetscInt m)
{
  if (m == M_VAL_SCORE) return t->score_name;
  if (m < M_FIXED) return FIXED_METRICS[m];
  return m < M_FIXED + t->nterms ? t->term_names[m - M_FIXED] : t->value_names[m - M_FIXED - t->nterms];
}

static PetscInt metric_count(AckdTrainer t)
{
  return M_FIXED + t->nterms + t->nvalues;
}

static void clear_observed(AckdTrainer t)
{
  for (PetscInt k = 0; k < ACKD_TRAIN_MAX_VALUES; k++) t->observed[k] = NAN;
}

/* TrainStep: the stage's step (forward, loss, backward; the exchange overlaps it); TrainGradWait:
 * what is left of the gradient exchange after it; TrainValidate: the validation passes. */
static AckdLogPackage train_log = {
    .name = "ackd train", .nevents = 3, .event_names = {"TrainStep", "TrainGradWait", "TrainValidate"}};

PetscErrorCode AckdTrainerCreate(MPI_Comm comm, AckdTrainer *trainer)
{
  AckdTrainer t;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&t));
  t->comm = comm;
  PetscCallMPI(MPI_Comm_rank(comm, &t->rank));
  PetscCallMPI(MPI_Comm_size(comm, &t->size));
  PetscCall(AckdLogSetUp(&t->log, comm));
  PetscCall(AckdLogPackageRegister(&train_log));
  PetscCall(PetscStrncpy(t->dir, "out/train", sizeof t->dir));
  PetscCall(PetscStrncpy(t->score_name, "val_oa", sizeof t->score_name));
  t->epochs         = 20;
  t->batch          = 64;
  t->optimizer      = ACKD_OPT_ADAM;
  t->lr             = 1e-3;
  t->momentum       = 0.9;
  t->beta1          = 0.9;
  t->beta2          = 0.999;
  t->augment        = PETSC_TRUE;
  t->validate_every = 1;
  t->bucket_mb      = ACKD_GRAD_BUCKET_BYTES_DEFAULT / 1048576.0;
  t->exchange       = ACKD_GRAD_OVERLAPPED;
  t->best_score     = -INFINITY;
  t->best_epoch     = -1;
  t->schedule = (AckdSchedule){.kind = ACKD_SCHEDULE_CONSTANT, .gamma = 0.1, .power = 1.0, .warmup_start_factor = 0.1};
  *trainer    = t;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTrainerSetOptionsPrefix(AckdTrainer t, const char *prefix)
{
  PetscFunctionBeginUser;
  PetscCall(PetscStrncpy(t->prefix, prefix, sizeof t->prefix));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTrainerSetDefaults(AckdTrainer t, const char *directory, AckdOptimizerKind optimizer, double lr,
                                      PetscInt epochs, PetscInt batch)
{
  PetscFunctionBeginUser;
  if (directory) PetscCall(PetscStrncpy(t->dir, directory, sizeof t->dir));
  t->optimizer = optimizer;
  t->lr        = lr;
  t->epochs    = epochs;
  t->batch     = batch;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTrainerSetDefaultWeightDecay(AckdTrainer t, double weight_decay)
{
  PetscFunctionBeginUser;
  t->default_weight_decay     = weight_decay;
  t->has_default_weight_decay = PETSC_TRUE;
  PetscFunctionReturn(0);
}

/* The weight decay when -PREFIXweight_decay is not given. */
static double default_weight_decay(AckdTrainer t, AckdOptimizerKind optimizer)
{
  if (t->has_default_weight_decay) return t->default_weight_decay;
  return optimizer == ACKD_OPT_ADAMW ? 1e-2 : 0.0;
}

static const char *const EXCHANGE_NAMES[] = {"overlapped", "fused"};

PetscErrorCode AckdTrainerSetFromOptions(AckdTrainer t)
{
  PetscInt  optimizer = t->optimizer, schedule = t->schedule.kind, exchange = t->exchange, nonfinite = t->nonfinite;
  PetscInt  nmilestones = 16;
  PetscReal wd          = default_weight_decay(t, t->optimizer);

  PetscFunctionBeginUser;
  PetscOptionsBegin(t->comm, t->prefix, "Training loop", NULL);
  PetscCall(AckdOptionsString(PetscOptionsObject, "-dir",
                              "Output directory: checkpoints/, best.h5, metrics.h5 (and the stage's own files)", t->dir,
                              sizeof t->dir, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-epochs", "Epochs to train", &t->epochs, 1, 1000000, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-batch", "Global batch size, split over the ranks", &t->batch, 1,
                           1 << 20, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-max_steps",
                           "Stop after this many optimizer steps in all (0: train every epoch)", &t->max_steps, 0,
                           PETSC_MAX_INT, NULL));
  PetscCall(
      AckdOptionsBool(PetscOptionsObject, "-drop_last", "Skip each epoch's final partial batch", &t->drop_last, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-seed", "Seed of the data order, augmentation and dropout", &t->seed, 0,
                           PETSC_MAX_INT, NULL));
  PetscCall(AckdOptionsBool(PetscOptionsObject, "-augment", "Scene augmentation: random flips and 90-degree rotations",
                            &t->augment, NULL));
  PetscCall(AckdOptionsChoice(PetscOptionsObject, "-optimizer", "Optimizer: sgd, adam, adamw", AckdOptimizerNames, 3,
                              &optimizer, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-lr", "Base learning rate", &t->lr, 0.0, 1e3, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-weight_decay",
                            "Weight decay (AdamW: decoupled; default 0, AdamW 0.01, unless the stage says otherwise)",
                            &wd, 0.0, 1e3, &t->weight_decay_set));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-momentum", "SGD momentum", &t->momentum, 0.0, 1.0, NULL));
  PetscCall(AckdOptionsBool(PetscOptionsObject, "-nesterov", "SGD: Nesterov momentum", &t->nesterov, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-beta1", "Adam beta1", &t->beta1, 0.0, 1.0, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-beta2", "Adam beta2", &t->beta2, 0.0, 1.0, NULL));
  PetscCall(AckdOptionsChoice(PetscOptionsObject, "-schedule", "Learning-rate schedule over epochs", AckdScheduleNames,
                              4, &schedule, NULL));
  PetscCall(AckdOptionsIntArray(PetscOptionsObject, "-milestones", "multistep: epochs where lr is multiplied by gamma",
                                t->schedule.milestones, &nmilestones, 1, PETSC_MAX_INT, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-gamma", "multistep: factor at each milestone", &t->schedule.gamma,
                            0.0, 1.0, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-eta_min", "cosine: final learning rate", &t->schedule.eta_min, 0.0,
                            1e3, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-power", "poly: exponent", &t->schedule.power, 0.0, 100.0, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-warmup", "Linear warm-up epochs (0: none)", &t->schedule.warmup, 0,
                           1000000, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-warmup_start_factor", "Warm-up: first epoch's fraction of lr",
                            &t->schedule.warmup_start_factor, 1e-6, 1.0, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-clip_grad", "Clip gradients to this global L2 norm (0: off)",
                            &t->clip, 0.0, 1e12, NULL));
  PetscCall(AckdOptionsChoice(PetscOptionsObject, "-grad_exchange",
                              "Gradient allreduce: overlapped (buckets during backward) or fused (one at the end)",
                              EXCHANGE_NAMES, 2, &exchange, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-bucket_mb", "Gradient bucket size in MiB (docs/SCALING.md)",
                            &t->bucket_mb, 0.001, 4096.0, NULL));
  PetscCall(AckdOptionsBool(PetscOptionsObject, "-sync_bn",
                            "Synchronised batch norm: statistics over the global batch, not each rank's share",
                            &t->sync_bn, NULL));
  PetscCall(AckdOptionsBool(PetscOptionsObject, "-exchange_timing",
                            "Measure the exposed gradient exchange: a barrier before the wait takes rank skew out of "
                            "it (bench/scaling; costs a barrier per step)",
                            &t->exchange_timing, NULL));
  PetscCall(AckdOptionsChoice(PetscOptionsObject, "-nonfinite",
                              "A step whose loss or gradient is NaN or Inf: stop (one line naming the step; the last "
                              "checkpoint stays the newest) or skip it (no update, a warning) and go on",
                              NONFINITE_NAMES, 2, &nonfinite, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-validate_every", "Validate every N epochs (and after the last)",
                           &t->validate_every, 1, 1000000, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-threads", "Threads per rank (0: OMP_NUM_THREADS)", &t->threads, 0,
                           1024, NULL));
  PetscCall(AckdOptionsPrecision(PetscOptionsObject, t->comm, t->prefix, "precision", &t->precision));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-debug_signal_after",
                           "Testing: rank 0 sends itself SIGTERM after N steps of this run (0: off)",
                           &t->debug_signal_after, 0, PETSC_MAX_INT, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-debug_step_delay",
                            "Testing: every step waits this many seconds after its update, so that a run lasts long "
                            "enough to be stopped or killed mid-way on any machine (its result is unchanged)",
                            &t->debug_step_delay, 0, 60, NULL));
  PetscOptionsEnd();
  t->optimizer            = (AckdOptimizerKind)optimizer;
  t->weight_decay         = t->weight_decay_set ? wd : default_weight_decay(t, t->optimizer);
  t->schedule.kind        = (AckdScheduleKind)schedule;
  t->schedule.nmilestones = nmilestones;
  t->schedule.base_lr     = t->lr;
  t->schedule.total       = t->epochs;
  t->exchange             = (AckdGradExchange)exchange;
  t->nonfinite            = (NonFinite)nonfinite;
  PetscCheck(t->schedule.kind != ACKD_SCHEDULE_MULTISTEP || nmilestones > 0, t->comm, PETSC_ERR_USER_INPUT,
             "option -%sschedule multistep needs -%smilestones E1,E2,...", t->prefix, t->prefix);
  {
    PetscMPIInt size;
    PetscBool   help;
    PetscCallMPI(MPI_Comm_size(t->comm, &size));
    PetscCall(AckdOptionsHelpRequested(&help));
    /* Every rank takes a share of every batch. A command-line fault (exit 2),
     * so it is reported here, before any data is read, naming the option. */
    PetscCheck(help || t->batch >= size, t->comm, PETSC_ERR_USER_INPUT,
               "option -%sbatch %" PetscInt_FMT " is smaller than the %d ranks (each rank takes a share of every "
               "batch); use -%sbatch %d or more, or fewer ranks",
               t->prefix, t->batch, size, t->prefix, size);
  }

  /* Created here so its options (-PREFIXckpt_keep, ...) are read and listed
   * with the trainer's; the architecture it records is set before Run. */
  char ckpt_dir[PETSC_MAX_PATH_LEN + 16];
  snprintf(ckpt_dir, sizeof ckpt_dir, "%s/checkpoints", t->dir);
  PetscCall(AckdCkptWriterCreate(t->comm, "model", &t->writer));
  PetscCall(AckdCkptWriterSetOptionsPrefix(t->writer, t->prefix));
  PetscCall(AckdCkptWriterSetDirectory(t->writer, ckpt_dir));
  PetscCall(AckdCkptWriterSetFromOptions(t->writer));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTrainerSetDataset(AckdTrainer t, AckdSharedDataset dataset)
{
  PetscFunctionBeginUser;
  t->dataset = dataset;
  PetscFunctionReturn(0);
}

static PetscErrorCode add_group(AckdTrainer t, const char *name, AckdParams *params, AckdModel model)
{
  PetscFunctionBeginUser;
  PetscCheck(t->ngroups < ACKD_TRAIN_MAX_GROUPS, t->comm, PETSC_ERR_ARG_OUTOFRANGE, "more than %d parameter groups",
             ACKD_TRAIN_MAX_GROUPS);
  Group *g = &t->groups[t->ngroups++];
  PetscCall(PetscStrncpy(g->name, name, sizeof g->name));
  g->params = params;
  g->model  = model;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTrainerAddModel(AckdTrainer t, const char *name, AckdModel model)
{
  AckdParams *params;

  PetscFunctionBeginUser;
  PetscCall(AckdModelGetParams(model, &params));
  PetscCall(add_group(t, name, params, model));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTrainerAddParams(AckdTrainer t, const char *name, AckdParams *params)
{
  PetscFunctionBeginUser;
  PetscCall(add_group(t, name, params, NULL));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTrainerSetStep(AckdTrainer t, AckdTrainStepFn step, void *ctx)
{
  PetscFunctionBeginUser;
  t->step     = step;
  t->step_ctx = ctx;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTrainerSetValidation(AckdTrainer t, AckdTrainValidateFn validate, const char *score_name, void *ctx)
{
  PetscFunctionBeginUser;
  t->validate     = validate;
  t->validate_ctx = ctx;
  PetscCall(PetscStrncpy(t->score_name, score_name, sizeof t->score_name));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTrainerSetDescription(AckdTrainer t, const char *architecture, const char *stage, const char *role,
                                         AckdTrainDescribeFn describe, void *ctx)
{
  PetscFunctionBeginUser;
  PetscCall(PetscStrncpy(t->architecture, architecture, sizeof t->architecture));
  PetscCall(PetscStrncpy(t->stage, stage, sizeof t->stage));
  PetscCall(PetscStrncpy(t->role, role, sizeof t->role));
  t->describe     = describe;
  t->describe_ctx = ctx;
  PetscFunctionReturn(0);
}

/* Callers keep within the array: the stage's records up to the limit, and one more slot for the dataset's. */
static PetscErrorCode add_input(AckdTrainer t, const char *key, const char *option, const char *record)
{
  PetscFunctionBeginUser;
  PetscCall(PetscStrncpy(t->inputs[t->ninputs].key, key, sizeof t->inputs[0].key));
  PetscCall(PetscStrncpy(t->inputs[t->ninputs].option, option, sizeof t->inputs[0].option));
  PetscCall(PetscStrncpy(t->inputs[t->ninputs].record, record, sizeof t->inputs[0].record));
  t->ninputs++;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTrainerAddInputRecord(AckdTrainer t, const char *key, const char *option, const char *record)
{
  PetscFunctionBeginUser;
  PetscCheck(t->ninputs < ACKD_TRAIN_MAX_INPUTS, t->comm, PETSC_ERR_PLIB,
             "more than %d input records; raise ACKD_TRAIN_MAX_INPUTS", ACKD_TRAIN_MAX_INPUTS);
  PetscCall(add_input(t, key, option, record));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTrainerSetEpochHook(AckdTrainer t, AckdTrainEpochFn hook, void *ctx)
{
  PetscFunctionBeginUser;
  t->epoch_hook = hook;
  t->epoch_ctx  = ctx;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTrainerAddState(AckdTrainer t, const char *name, float *data, PetscInt n)
{
  PetscFunctionBeginUser;
  PetscCheck(t->nstates < ACKD_TRAIN_MAX_GROUPS, t->comm, PETSC_ERR_ARG_OUTOFRANGE, "more than %d state vectors",
             ACKD_TRAIN_MAX_GROUPS);
  PetscCall(PetscStrncpy(t->states[t->nstates].name, name, sizeof t->states[0].name));
  t->states[t->nstates].data = data;
  t->states[t->nstates].n    = n;
  t->nstates++;
  PetscFunctionReturn(0);
}

/* The metric names a stage declares (its loss terms, its epoch values), `max` of them at most. */
static PetscErrorCode set_names(AckdTrainer t, const char *what, PetscInt n, const char *const *names, PetscInt max,
                                char (*dest)[32], PetscInt *count)
{
  PetscFunctionBeginUser;
  PetscCheck(n <= max, t->comm, PETSC_ERR_ARG_OUTOFRANGE, "at most %" PetscInt_FMT " %s", max, what);
  *count = n;
  for (PetscInt i = 0; i < n; i++) PetscCall(PetscStrncpy(dest[i], names[i], sizeof dest[i]));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTrainerSetTermNames(AckdTrainer t, PetscInt n, const char *const *names)
{
  PetscFunctionBeginUser;
  PetscCall(set_names(t, "loss terms", n, names, ACKD_TRAIN_MAX_TERMS, t->term_names, &t->nterms));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTrainerSetEpochValueNames(AckdTrainer t, PetscInt n, const char *const *names)
{
  PetscFunctionBeginUser;
  PetscCall(set_names(t, "epoch values", n, names, ACKD_TRAIN_MAX_VALUES, t->value_names, &t->nvalues));
  clear_observed(t);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTrainerSetEpochValue(AckdTrainer t, PetscInt index, double value)
{
  PetscFunctionBeginUser;
  PetscCheck(index >= 0 && index < t->nvalues, t->comm, PETSC_ERR_ARG_OUTOFRANGE,
             "epoch value %" PetscInt_FMT " of %" PetscInt_FMT " declared", index, t->nvalues);
  t->observed[index] = value;
  PetscFunctionReturn(0);
}

static PetscErrorCode ensure_engine(AckdTrainer t)
{
  PetscFunctionBeginUser;
  if (!t->engine_ready) {
    PetscCall(AckdEngineCreate(t->threads, &t->engine));
    PetscCall(AckdEngineSetPrecision(&t->engine, t->precision));
  }
  t->engine_ready = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTrainerGetEngine(AckdTrainer t, AckdEngine **engine)
{
  PetscFunctionBeginUser;
  PetscCall(ensure_engine(t));
  *engine = &t->engine;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTrainerGetEpochs(AckdTrainer t, PetscInt *epochs)
{
  PetscFunctionBeginUser;
  *epochs = t->epochs;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTrainerGetSeed(AckdTrainer t, PetscInt *seed)
{
  PetscFunctionBeginUser;
  *seed = t->seed;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTrainerGetDirectory(AckdTrainer t, const char **directory)
{
  PetscFunctionBeginUser;
  *directory = t->dir;
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------- gradient exchange */

/* The model reports finished gradient ranges in decreasing order; the
 * buckets want parameter entries, which sit in increasing offset order. */
static PetscErrorCode gradient_ready(void *ctx, PetscInt begin, PetscInt end)
{
  Group *g = (Group *)ctx;

  PetscFunctionBeginUser;
  (void)end;
  while (g->pending > 0 && g->params->params[g->pending - 1].offset >= begin) {
    g->pending--;
    PetscCall(AckdGradBucketsLayerDone(g->buckets, g->pending));
  }
  PetscCall(AckdGradBucketsProgress(g->buckets));
  PetscFunctionReturn(0);
}

static PetscErrorCode finish_group(Group *g)
{
  PetscFunctionBeginUser;
  while (g->pending > 0) PetscCall(AckdGradBucketsLayerDone(g->buckets, --g->pending));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTrainerParamsReady(AckdTrainer t, const char *name)
{
  PetscBool found = PETSC_FALSE;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < t->ngroups && !found; i++) {
    Group *g = &t->groups[i];
    PetscCall(PetscStrcmp(g->name, name, &found));
    if (!found) continue;
    PetscCheck(!g->model, t->comm, PETSC_ERR_ARG_WRONG,
               "group '%s' is a model's: its gradients are exchanged from its backward", name);
    PetscCall(finish_group(g));
    PetscCall(AckdGradBucketsProgress(g->buckets));
  }
  PetscCheck(found, t->comm, PETSC_ERR_ARG_WRONG, "no parameter group '%s' to exchange", name);
  PetscFunctionReturn(0);
}

static PetscErrorCode setup_groups(AckdTrainer t)
{
  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < t->ngroups; i++) {
    Group   *g = &t->groups[i];
    PetscInt n = g->params->nparams, *offset, *size;
    PetscCall(PetscMalloc2(n, &offset, n, &size));
    for (PetscInt e = 0; e < n; e++) {
      offset[e] = g->params->params[e].offset;
      size[e]   = g->params->params[e].size;
      PetscCheck(e == 0 || offset[e] > offset[e - 1], t->comm, PETSC_ERR_PLIB,
                 "parameters of group '%s' are not in buffer order", g->name);
    }
    PetscCall(AckdGradBucketsCreate(t->comm, g->params->grads, n, offset, size, (PetscInt)(t->bucket_mb * 1048576.0),
                                    t->exchange, &g->buckets));
    PetscCall(PetscFree2(offset, size));
    PetscCall(AckdOptimizerSetUp(&g->optimizer, t->optimizer, g->params));
    g->optimizer.weight_decay = t->weight_decay;
    g->optimizer.momentum     = t->optimizer == ACKD_OPT_SGD ? t->momentum : 0.0;
    g->optimizer.nesterov     = t->nesterov;
    g->optimizer.beta1        = t->beta1;
    g->optimizer.beta2        = t->beta2;
    if (g->model) {
      PetscCall(AckdModelSetGradientReady(g->model, gradient_ready, g));
      /* Also on one rank: the same kernels as on P ranks, so P = 1 is the reference of P > 1. */
      PetscCall(AckdModelSetBatchNormComm(g->model, t->sync_bn ? t->comm : MPI_COMM_NULL));
    }
  }
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------- checkpoints */

PetscErrorCode AckdParamsGetCheckpointEntries(AckdParams *params, PetscInt *n, AckdCkptEntry **entries)
{
  PetscFunctionBeginUser;
  *n = params->nparams + params->nbuffers;
  PetscCall(PetscMalloc1(PetscMax(*n, 1), entries));
  for (PetscInt i = 0; i < *n; i++) {
    PetscBool             buffer = (PetscBool)(i >= params->nparams);
    const AckdParamEntry *e      = buffer ? &params->buffers[i - params->nparams] : &params->params[i];
    AckdCkptEntry        *c      = &(*entries)[i];
    c->name                      = e->name;
    c->data                      = (buffer ? params->buffer_values : params->values) + e->offset;
    c->size                      = e->size;
    c->ndims                     = e->ndims;
    for (PetscInt d = 0; d < e->ndims && d < 4; d++) c->dims[d] = e->dims[d];
  }
  PetscFunctionReturn(0);
}

static void shard_range(AckdTrainer t, PetscInt n, PetscInt *lo, PetscInt *hi)
{
  *lo = n * t->rank / t->size;
  *hi = n * (t->rank + 1) / t->size;
}

/* The order of the group's parameters in its flat vectors (/optim/<group>.m and .v), as one
 * space-separated attribute: with the sizes of /model/..., it tells an analysis script which
 * slice of the Adam moments belongs to which tensor. */
static PetscErrorCode write_parameter_order(hid_t file, const Group *g)
{
  size_t len = 1;
  char  *text, name[96];

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < g->params->nparams; i++) len += strlen(g->params->params[i].name) + 1;
  PetscCall(PetscCalloc1(len, &text));
  for (PetscInt i = 0; i < g->params->nparams; i++) {
    if (i) strcat(text, " ");
    strcat(text, g->params->params[i].name);
  }
  snprintf(name, sizeof name, "parameter_order_%s", g->name);
  PetscCall(AckdH5AttrWriteString(file, name, text));
  PetscCall(PetscFree(text));
  PetscFunctionReturn(0);
}

/* The whole training state; `path` NULL: the next checkpoint in the rotation. */
static PetscErrorCode write_checkpoint(AckdTrainer t, const char *path)
{
  hid_t file;

  PetscFunctionBeginUser;
  if (path)
    PetscCall(AckdCkptWriterBeginAt(t->writer, path, &t->state));
  else
    PetscCall(AckdCkptWriterBegin(t->writer, &t->state));
  PetscCall(AckdCkptWriterGetFile(t->writer, &file));
  PetscCall(AckdH5AttrWriteInt(file, "epoch", t->state.epoch));
  PetscCall(AckdH5AttrWriteInt(file, "step", t->state.step));
  PetscCall(AckdH5AttrWriteString(file, "stage", t->stage));
  PetscCall(AckdH5AttrWriteString(file, "role", t->role));
  PetscCall(AckdH5AttrWriteReal(file, "best_score", t->best_score));
  PetscCall(AckdH5AttrWriteInt(file, "best_epoch", t->best_epoch));
  PetscCall(AckdH5AttrWriteInt(file, "mpi_ranks", t->size));
  PetscCall(AckdH5AttrWriteString(file, "precision", AckdPrecisionNames[t->precision]));
  {
    char *options;
    PetscCall(AckdOptionsStageString(&options));
    PetscCall(AckdH5AttrWriteString(file, "stage_options", options));
    PetscCall(PetscFree(options));
    for (PetscInt i = 0; i < t->ninputs; i++)
      PetscCall(AckdH5AttrWriteString(file, t->inputs[i].key, t->inputs[i].record));
  }
  if (t->describe) PetscCall(t->describe(t->describe_ctx, file));
  for (PetscInt i = 0; i < t->ngroups; i++) {
    Group         *g = &t->groups[i];
    AckdCkptEntry *entries;
    PetscInt       n, lo, hi;
    char           name[96];
    PetscCall(AckdParamsGetCheckpointEntries(g->params, &n, &entries));
    PetscCall(AckdCkptWriterWriteModel(t->writer, g->name, n, entries));
    PetscCall(PetscFree(entries));
    /* The moments are replicated; each rank writes a slice, so the write is parallel. */
    shard_range(t, g->optimizer.size, &lo, &hi);
    snprintf(name, sizeof name, "%s.m", g->name);
    PetscCall(AckdCkptWriterWriteShard(t->writer, name, g->optimizer.size, lo, hi, g->optimizer.m + lo, PETSC_FALSE));
    snprintf(name, sizeof name, "%s.v", g->name);
    PetscCall(AckdCkptWriterWriteShard(t->writer, name, g->optimizer.size, lo, hi, g->optimizer.v + lo, PETSC_FALSE));
    snprintf(name, sizeof name, "optimizer_steps_%s", g->name);
    PetscCall(AckdH5AttrWriteInt(file, name, g->optimizer.steps));
    PetscCall(write_parameter_order(file, g));
  }
  for (PetscInt i = 0; i < t->nstates; i++) {
    char name[96];
    snprintf(name, sizeof name, "state.%s", t->states[i].name);
    PetscCall(
        AckdCkptWriterWriteShard(t->writer, name, t->states[i].n, 0, t->states[i].n, t->states[i].data, PETSC_TRUE));
  }
  for (PetscInt m = 0; m < metric_count(t); m++)
    PetscCall(AckdCkptWriterWriteMetric(t->writer, metric_name(t, m), t->nhistory, t->history[m]));
  PetscCall(AckdCkptWriterWriteMetric(t->writer, "epoch_in_progress", P_SIZE, t->partial));
  if (t->nvalues) PetscCall(AckdCkptWriterWriteMetric(t->writer, "epoch_values_in_progress", t->nvalues, t->observed));
  PetscCall(AckdCkptWriterCommit(t->writer));
  PetscFunctionReturn(0);
}

static PetscErrorCode read_checkpoint(AckdTrainer t, AckdCkptReader r)
{
  hid_t     file;
  PetscInt  n;
  PetscBool found;
  char      name[96];

  PetscFunctionBeginUser;
  PetscCall(AckdCkptReaderGetState(r, &t->state));
  PetscCall(AckdCkptReaderGetFile(r, &file));
  /* Refused, not warned: the batch plan, the cursor and the model would carry on over other samples
   * (a dataset regenerated with another seed, re-curated, another collection) or another teacher's
   * targets. A checkpoint from before a record has none. */
  for (PetscInt i = 0; i < t->ninputs; i++) {
    char written[256] = "";
    PetscCall(AckdH5AttrReadString(file, t->inputs[i].key, written, sizeof written, &found));
    if (found) {
      const char *path;
      PetscCall(AckdCkptReaderGetPath(r, &path));
      PetscCheck(!strcmp(written, t->inputs[i].record), t->comm, PETSC_ERR_USER_INPUT,
                 "'%s' was written from another %s (%s) than this run's %s (%s); give the one it was trained with, "
                 "or another -%sdir",
                 path, t->inputs[i].option, written, t->inputs[i].option, t->inputs[i].record, t->prefix);
    }
  }
  for (PetscInt i = 0; i < t->ngroups; i++) {
    Group         *g = &t->groups[i];
    AckdCkptEntry *entries;
    PetscCall(AckdParamsGetCheckpointEntries(g->params, &n, &entries));
    PetscCall(AckdCkptReaderReadModel(r, g->name, n, entries));
    PetscCall(PetscFree(entries));
    snprintf(name, sizeof name, "%s.m", g->name);
    PetscCall(AckdCkptReaderReadShard(r, name, g->optimizer.size, 0, g->optimizer.size, g->optimizer.m));
    snprintf(name, sizeof name, "%s.v", g->name);
    PetscCall(AckdCkptReaderReadShard(r, name, g->optimizer.size, 0, g->optimizer.size, g->optimizer.v));
    snprintf(name, sizeof name, "optimizer_steps_%s", g->name);
    PetscCall(AckdH5AttrReadInt(file, name, &g->optimizer.steps, &found));
  }
  for (PetscInt i = 0; i < t->nstates; i++) {
    snprintf(name, sizeof name, "state.%s", t->states[i].name);
    PetscCall(AckdCkptReaderReadShard(r, name, t->states[i].n, 0, t->states[i].n, t->states[i].data));
  }
  PetscCall(AckdH5AttrReadReal(file, "best_score", &t->best_score, &found));
  PetscCall(AckdH5AttrReadInt(file, "best_epoch", &t->best_epoch, &found));
  /* Allowed (a bf16 run moved to a node without bf16 goes on in float32), but said: the run's
   * arithmetic changes at this step. A checkpoint from before the option was float32. */
  char written[16] = "fp32";
  PetscCall(AckdH5AttrReadString(file, "precision", written, sizeof written, &found));
  if (strcmp(written, AckdPrecisionNames[t->precision]))
    PetscCall(AckdLogWarn(&t->log,
                          "resuming at step %" PetscInt_FMT " with -%sprecision %s; the steps before it ran in %s\n",
                          t->state.step, t->prefix, AckdPrecisionNames[t->precision], written));
  /* Allowed (a requeued job whose options file was edited, a run extended by more epochs), but said,
   * once, naming each option: the steps before this one ran with the checkpoint's values. */
  {
    char *before, *drift;
    PetscCall(PetscCalloc1(65536, &before));
    PetscCall(AckdH5AttrReadString(file, "stage_options", before, 65536, &found));
    if (found) {
      PetscCall(AckdOptionsDrift(before, &drift));
      if (drift[0])
        PetscCall(AckdLogWarn(&t->log,
                              "resuming at step %" PetscInt_FMT " with options that differ from the checkpoint's: %s\n",
                              t->state.step, drift));
      PetscCall(PetscFree(drift));
    }
    PetscCall(PetscFree(before));
  }
  for (PetscInt m = 0; m < M_FIXED + t->nterms; m++) {
    PetscCall(AckdCkptReaderReadMetric(r, metric_name(t, m), t->epochs, &n, t->history[m]));
    t->nhistory = n;
  }
  /* Epoch values are observations, not state: a checkpoint written before the stage recorded
   * them resumes with NaN in the epochs it covers. */
  for (PetscInt m = M_FIXED + t->nterms; m < metric_count(t); m++) {
    PetscCall(AckdCkptReaderHasMetric(r, metric_name(t, m), &found));
    if (found)
      PetscCall(AckdCkptReaderReadMetric(r, metric_name(t, m), t->epochs, &n, t->history[m]));
    else
      for (PetscInt e = 0; e < t->nhistory; e++) t->history[m][e] = NAN;
  }
  PetscCall(AckdCkptReaderReadMetric(r, "epoch_in_progress", P_SIZE, &n, t->partial));
  found = PETSC_FALSE;
  if (t->nvalues) PetscCall(AckdCkptReaderHasMetric(r, "epoch_values_in_progress", &found));
  if (found) PetscCall(AckdCkptReaderReadMetric(r, "epoch_values_in_progress", t->nvalues, &n, t->observed));
  PetscFunctionReturn(0);
}

/* metrics.h5: the histories on their own, rewritten (whole, then renamed) after every epoch. */
static PetscErrorCode write_metrics(AckdTrainer t)
{
  char           path[PETSC_MAX_PATH_LEN + 16];
  hid_t          file;
  AckdH5Settings h5 = {0};

  PetscFunctionBeginUser;
  if (t->rank != 0) PetscFunctionReturn(0);
  snprintf(path, sizeof path, "%s/metrics.h5", t->dir);
  PetscCall(AckdH5FileCreatePartial(PETSC_COMM_SELF, path, &h5, &file));
  PetscCall(AckdH5AttrWriteString(file, "ackd_format", ACKD_FORMAT_METRICS));
  PetscCall(AckdH5AttrWriteInt(file, "ackd_format_version", ACKD_FORMAT_METRICS_VERSION));
  PetscCall(AckdH5AttrWriteString(file, "stage", t->stage));
  PetscCall(AckdH5AttrWriteString(file, "role", t->role));
  PetscCall(AckdH5AttrWriteString(file, "architecture", t->architecture));
  PetscCall(AckdH5AttrWriteInt(file, "best_epoch", t->best_epoch));
  PetscCall(AckdH5AttrWriteReal(file, "best_score", t->best_score));
  PetscCall(AckdH5AttrWriteString(file, "score", t->score_name));
  PetscCall(AckdH5AttrWriteString(file, "precision", AckdPrecisionNames[t->precision]));
  for (PetscInt m = 0; m < metric_count(t); m++) {
    hsize_t dims = (hsize_t)t->nhistory;
    if (t->nhistory > 0)
      PetscCall(AckdH5WriteSmall(PETSC_COMM_SELF, file, metric_name(t, m), H5T_NATIVE_DOUBLE, 1, &dims, t->history[m]));
  }
  PetscCall(AckdH5FileCommit(PETSC_COMM_SELF, &file, path));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------- one step */

static PetscErrorCode gather_batch(AckdTrainer t, PetscInt nlocal, AckdTensor *images)
{
  const int   *labels;
  const float *node; /* the node's copy of the images, NULL when streaming or standardised */
  PetscInt     count, c, h, w;

  PetscFunctionBeginUser;
  PetscCall(AckdSharedDatasetGetShape(t->dataset, &count, &c, &h, &w));
  PetscCall(AckdSharedDatasetGetArrays(t->dataset, &node, &labels, NULL));
  const PetscInt sample = c * h * w;
  /* From node memory the augmentation reads the images in place: one pass over the batch, not two. */
  if (!node) PetscCall(AckdSharedDatasetReadImages(t->dataset, nlocal, t->local_rows, t->scratch));
  for (PetscInt i = 0; i < nlocal; i++) {
    const float *src = node ? node + (size_t)t->local_rows[i] * sample : t->scratch + (size_t)i * sample;
    float       *dst = t->images + (size_t)i * sample;
    if (t->augment)
      AckdAugmentScene((uint64_t)t->seed, t->state.epoch, t->local_rows[i], c, h, w, src, dst);
    else
      PetscCall(PetscArraycpy(dst, src, sample));
    t->local_labels[i] = labels[t->local_rows[i]];
  }
  *images = AckdTensorView(t->images, nlocal, c, h, w);
  PetscFunctionReturn(0);
}

/* Σ x², in double lanes: one chain of n dependent additions ran at the adder's latency, about
 * 1 ms per step for SemBridge's 1.4 million parameters (student and SKA). */
static ACKD_CPU_CLONES double sum_squares(const float *x, PetscInt n)
{
  double sum = 0;
#pragma omp simd reduction(+ : sum)
  for (PetscInt j = 0; j < n; j++) sum += (double)x[j] * x[j];
  return sum;
}

/* The squared joint L2 norm of the gradients over every group: NaN or Inf when any is. */
static double gradient_norm2(AckdTrainer t)
{
  double sum = 0;
  for (PetscInt i = 0; i < t->ngroups; i++) sum += sum_squares(t->groups[i].params->grads, t->groups[i].params->size);
  return sum;
}

/* Scales to a joint L2 norm of at most -clip_grad, as torch.nn.utils.clip_grad_norm_ over all parameters. */
static PetscErrorCode clip_gradients(AckdTrainer t, double norm2)
{
  double norm = sqrt(norm2);

  PetscFunctionBeginUser;
  if (norm > t->clip) {
    const float scale = (float)(t->clip / (norm + 1e-6));
    for (PetscInt i = 0; i < t->ngroups; i++) {
      AckdParams *p = t->groups[i].params;
      for (PetscInt j = 0; j < p->size; j++) p->grads[j] *= scale;
    }
  }
  PetscFunctionReturn(0);
}

/* Without synchronised batch norm each rank's running statistics drift
 * apart; averaging them after every step keeps one model on every rank (and
 * what a checkpoint holds independent of which rank writes it). */
static PetscErrorCode average_buffers(AckdTrainer t)
{
  PetscFunctionBeginUser;
  if (t->size == 1 || t->sync_bn) PetscFunctionReturn(0);
  for (PetscInt i = 0; i < t->ngroups; i++) {
    AckdParams *p = t->groups[i].params;
    if (!p->buffer_size) continue;
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, p->buffer_values, (int)p->buffer_size, MPI_FLOAT, MPI_SUM, t->comm));
    const float inv = 1.0f / (float)t->size;
    for (PetscInt j = 0; j < p->buffer_size; j++) p->buffer_values[j] *= inv;
  }
  PetscFunctionReturn(0);
}

/* The running statistics a skipped step must not keep: the forward pass updated them already. */
static PetscErrorCode save_buffers(AckdTrainer t, PetscBool restore)
{
  PetscInt total = 0;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < t->ngroups; i++) total += t->groups[i].params->buffer_size;
  if (!total) PetscFunctionReturn(0);
  if (!t->buffer_backup) PetscCall(PetscMalloc1(total, &t->buffer_backup));
  float *at = t->buffer_backup;
  for (PetscInt i = 0; i < t->ngroups; i++) {
    AckdParams *p = t->groups[i].params;
    if (restore)
      PetscCall(PetscArraycpy(p->buffer_values, at, p->buffer_size));
    else
      PetscCall(PetscArraycpy(at, p->buffer_values, p->buffer_size));
    at += p->buffer_size;
  }
  PetscFunctionReturn(0);
}

/* A step whose loss or gradient is not finite would write NaN into every parameter, and from
 * there into every later checkpoint. All ranks decide alike: the flag travels with the batch's
 * figures in one allreduce. */
static PetscErrorCode refuse_nonfinite(AckdTrainer t, double *reduced)
{
  PetscFunctionBeginUser;
  PetscCheck(t->nonfinite == NONFINITE_SKIP, t->comm, PETSC_ERR_FP,
             "the %s at step %" PetscInt_FMT " (epoch %" PetscInt_FMT ") is NaN or Inf; training stopped before "
             "applying it, so the newest checkpoint in '%s/checkpoints' is the last good state. Check the inputs "
             "for extreme values, lower -%slr or set -%sclip_grad, or skip such steps with -%snonfinite skip",
             isfinite(reduced[P_LOSS]) ? "gradient" : "loss", t->state.step + 1, t->state.epoch + 1, t->dir, t->prefix,
             t->prefix, t->prefix);
  PetscCall(save_buffers(t, PETSC_TRUE));
  if (t->skipped++ < 10)
    PetscCall(AckdLogWarn(&t->log,
                          "step %" PetscInt_FMT " (epoch %" PetscInt_FMT
                          ") skipped: its loss or gradient is NaN or Inf (-%snonfinite skip)%s\n",
                          t->state.step + 1, t->state.epoch + 1, t->prefix,
                          t->skipped == 10 ? "; further skips are not reported" : ""));
  /* The epoch's averages leave the step out, as if its batch had been empty. */
  for (PetscInt k = 0; k < P_SIZE; k++) reduced[k] = 0.0;
  PetscFunctionReturn(0);
}

static PetscErrorCode train_step(AckdTrainer t, PetscInt b, double lr, double *reduced)
{
  AckdTrainStepResult result = {0};
  AckdTrainBatch      batch;
  PetscInt            nlocal, nglobal, offset = 0;

  PetscFunctionBeginUser;
  PetscCall(AckdBatchPlanGetLocal(t->plan, b, t->batch, t->local_rows, &nlocal, &nglobal));
  PetscCallMPI(MPI_Exscan(&nlocal, &offset, 1, MPIU_INT, MPI_SUM, t->comm));
  if (t->rank == 0) offset = 0;
  batch = (AckdTrainBatch){.epoch         = t->state.epoch,
                           .step          = t->state.step,
                           .batch         = b,
                           .nlocal        = nlocal,
                           .nglobal       = nglobal,
                           .sample_offset = offset,
                           .rows          = t->local_rows,
                           .labels        = t->local_labels};
  PetscCall(gather_batch(t, nlocal, &batch.images));
  if (t->nonfinite == NONFINITE_SKIP) PetscCall(save_buffers(t, PETSC_FALSE));
  for (PetscInt i = 0; i < t->ngroups; i++) {
    Group *g   = &t->groups[i];
    g->pending = g->params->nparams;
    if (!g->model) PetscCall(AckdParamsZeroGrad(g->params));
    if (g->model) PetscCall(AckdModelSetStep(g->model, t->state.step, offset));
  }
  /* A rank without a share of the last batch still runs the step: synchronised
   * batch norm and the buckets need every rank in their collectives. */
  PetscCall(PetscLogEventBegin(train_log.events[0], 0, 0, 0, 0));
  PetscCall(t->step(t->step_ctx, &t->engine, &batch, &result));
  PetscCall(PetscLogEventEnd(train_log.events[0], 0, 0, 0, 0));
  PetscCall(PetscLogEventBegin(train_log.events[1], 0, 0, 0, 0));
  for (PetscInt i = 0; i < t->ngroups; i++) PetscCall(finish_group(&t->groups[i]));
  if (t->exchange_timing) PetscCallMPI(MPI_Barrier(t->comm));
  for (PetscInt i = 0; i < t->ngroups; i++) PetscCall(AckdGradBucketsWait(t->groups[i].buckets));
  PetscCall(PetscLogEventEnd(train_log.events[1], 0, 0, 0, 0));

  /* Back from shares of a mean to sums over samples, so an epoch averages over its samples; the
   * last slot counts the ranks whose loss or gradient is not finite. */
  const double norm2             = gradient_norm2(t);
  double       local[P_SIZE + 1] = {0}, all[P_SIZE + 1];
  local[P_LOSS]                  = result.loss * nglobal;
  local[P_CORRECT]               = result.correct;
  local[P_COUNT]                 = nlocal;
  for (PetscInt k = 0; k < t->nterms; k++) local[P_TERMS + k] = result.terms[k] * nglobal;
  local[P_SIZE] = !isfinite(norm2) || !isfinite(local[P_LOSS]);
  PetscCallMPI(MPI_Allreduce(local, all, P_SIZE + 1, MPI_DOUBLE, MPI_SUM, t->comm));
  for (PetscInt k = 0; k < P_SIZE; k++) reduced[k] = all[k];
  if (all[P_SIZE] > 0)
    PetscCall(refuse_nonfinite(t, reduced));
  else {
    if (t->clip > 0) PetscCall(clip_gradients(t, norm2));
    for (PetscInt i = 0; i < t->ngroups; i++)
      PetscCall(AckdOptimizerStep(&t->groups[i].optimizer, t->groups[i].params, lr));
    PetscCall(average_buffers(t));
  }
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------- the loop */

static PetscErrorCode prepare(AckdTrainer t)
{
  const int           *labels;
  const unsigned char *split;
  PetscInt             count, c, h, w;

  PetscFunctionBeginUser;
  PetscCheck(t->dataset && t->step && t->ngroups > 0, t->comm, PETSC_ERR_ORDER,
             "the trainer needs a dataset, a step function and parameters before Run");
  PetscCall(ensure_engine(t));
  {
    char option[96];
    snprintf(option, sizeof option, "-%sdir", t->prefix);
    PetscCall(AckdDirectoryCreate(t->comm, t->dir, option));
    PetscCall(AckdDirLockAcquire(t->comm, t->dir, option, &t->lock));
  }
  PetscCall(AckdCkptWriterSetArchitecture(t->writer, t->architecture[0] ? t->architecture : "model"));
  {
    char option[96], record[256];
    snprintf(option, sizeof option, "-%sdata", t->prefix);
    PetscCall(AckdSharedDatasetDescribe(t->dataset, record, sizeof record));
    PetscCall(add_input(t, ACKD_CKPT_INPUT_DATASET, option, record));
  }
  PetscCall(AckdSharedDatasetGetShape(t->dataset, &count, &c, &h, &w));
  PetscCall(AckdSharedDatasetGetArrays(t->dataset, NULL, &labels, &split));
  PetscCall(PetscMalloc1(count, &t->train_rows));
  for (PetscInt i = 0; i < count; i++)
    if (split[i] == 0) t->train_rows[t->ntrain++] = i;
  PetscCheck(t->ntrain > 0, t->comm, PETSC_ERR_USER_INPUT,
             "the dataset has no training samples (split 0); re-create it with a training split");
  PetscCall(
      AckdBatchPlanCreate(t->comm, t->ntrain, t->train_rows, t->batch, (uint64_t)t->seed, t->drop_last, &t->plan));
  PetscCall(AckdBatchPlanGetBatchCount(t->plan, &t->nbatches));
  PetscCheck(t->nbatches > 0, t->comm, PETSC_ERR_USER_INPUT,
             "-%sbatch %" PetscInt_FMT " with -%sdrop_last leaves no batch of the %" PetscInt_FMT " training samples",
             t->prefix, t->batch, t->prefix, t->ntrain);
  PetscCall(PetscMalloc4(t->batch, &t->local_rows, t->batch, &t->local_labels, (size_t)t->batch * c * h * w, &t->images,
                         (size_t)t->batch * c * h * w, &t->scratch));
  for (PetscInt m = 0; m < metric_count(t); m++) PetscCall(PetscCalloc1(t->epochs + 1, &t->history[m]));
  PetscCall(setup_groups(t));
  PetscFunctionReturn(0);
}

static PetscErrorCode end_epoch(AckdTrainer t, double lr, PetscBool *improved)
{
  double val_loss = NAN, score = NAN;

  PetscFunctionBeginUser;
  *improved      = PETSC_FALSE;
  PetscBool last = (PetscBool)(t->state.epoch + 1 == t->epochs);
  if (t->validate && ((t->state.epoch + 1) % t->validate_every == 0 || last)) {
    PetscCall(PetscLogEventBegin(train_log.events[2], 0, 0, 0, 0));
    PetscCall(t->validate(t->validate_ctx, &t->engine, t->state.epoch, &val_loss, &score));
    PetscCall(PetscLogEventEnd(train_log.events[2], 0, 0, 0, 0));
    if (score > t->best_score) {
      t->best_score = score;
      t->best_epoch = t->state.epoch;
      *improved     = PETSC_TRUE;
    }
  }
  const double n                  = PetscMax(t->partial[P_COUNT], 1.0);
  PetscInt     e                  = t->nhistory++;
  t->history[M_EPOCH][e]          = t->state.epoch;
  t->history[M_STEP][e]           = t->state.step;
  t->history[M_LR][e]             = lr;
  t->history[M_TRAIN_LOSS][e]     = t->partial[P_LOSS] / n;
  t->history[M_TRAIN_ACCURACY][e] = t->partial[P_CORRECT] / n;
  t->history[M_VAL_LOSS][e]       = val_loss;
  t->history[M_VAL_SCORE][e]      = score;
  t->history[M_SECONDS][e]        = t->partial[P_SECONDS];
  for (PetscInt k = 0; k < t->nterms; k++) t->history[M_FIXED + k][e] = t->partial[P_TERMS + k] / n;
  for (PetscInt k = 0; k < t->nvalues; k++) t->history[M_FIXED + t->nterms + k][e] = t->observed[k];

  char line[512];
  int  at = snprintf(line, sizeof line, "epoch %3d/%d  loss %.4f", (int)t->state.epoch + 1, (int)t->epochs,
                     t->history[M_TRAIN_LOSS][e]);
  if (!isnan(t->history[M_TRAIN_ACCURACY][e])) /* a step that classifies nothing reports NaN */
    at += snprintf(line + at, sizeof line - at, "  acc %.4f", t->history[M_TRAIN_ACCURACY][e]);
  for (PetscInt k = 0; k < t->nterms && at < (int)sizeof line; k++)
    at += snprintf(line + at, sizeof line - at, "  %s %.4f", t->term_names[k], t->history[M_FIXED + k][e]);
  if (!isnan(score) && at < (int)sizeof line)
    at += snprintf(line + at, sizeof line - at, "  val_loss %.4f  %s %.4f%s", val_loss, t->score_name, score,
                   *improved ? " (best)" : "");
  if (at < (int)sizeof line)
    snprintf(line + at, sizeof line - at, "  lr %.3g  %.0f img/s", lr,
             t->partial[P_COUNT] / PetscMax(t->partial[P_SECONDS], 1e-9));
  PetscCall(AckdLogInfo(&t->log, "%s\n", line));
  PetscCall(PetscArrayzero(t->partial, P_SIZE));
  clear_observed(t);
  PetscFunctionReturn(0);
}

static PetscBool finished(AckdTrainer t)
{
  return (PetscBool)(t->state.epoch >= t->epochs || (t->max_steps > 0 && t->state.step >= t->max_steps));
}

/* Seconds this rank spent blocked in gradient exchanges, over every group. */
static PetscErrorCode blocked_time(AckdTrainer t, double *seconds)
{
  double b;

  PetscFunctionBeginUser;
  *seconds = 0;
  for (PetscInt i = 0; i < t->ngroups; i++) {
    PetscCall(AckdGradBucketsGetBlockedTime(t->groups[i].buckets, &b));
    *seconds += b;
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTrainerRun(AckdTrainer t, PetscBool *stopped)
{
  AckdCkptReader reader;
  PetscBool      found, stop = PETSC_FALSE, wrote_last = PETSC_FALSE;
  PetscInt       steps_here = 0;
  const char    *ckpt_dir;
  char           best_path[PETSC_MAX_PATH_LEN + 16];

  PetscFunctionBeginUser;
  *stopped = PETSC_FALSE;
  PetscCall(prepare(t));
  PetscCall(AckdStopRequestInstall());
  snprintf(best_path, sizeof best_path, "%s/best.h5", t->dir);
  t->state = (AckdCkptState){.epoch = 0, .step = 0, .cursor = 0, .seed = t->seed};
  PetscCall(AckdCkptWriterGetDirectory(t->writer, &ckpt_dir));
  PetscCall(
      AckdCkptReaderOpenLatest(t->comm, ckpt_dir, t->architecture[0] ? t->architecture : "model", &reader, &found));
  if (found) {
    const char *path;
    PetscCall(AckdCkptReaderGetPath(reader, &path));
    PetscCall(read_checkpoint(t, reader));
    PetscCall(AckdLogInfo(&t->log, "resuming from %s: epoch %d, step %d\n", path, (int)t->state.epoch + 1,
                          (int)t->state.step));
    PetscCall(AckdCkptReaderDestroy(&reader));
    PetscCheck(t->state.seed == t->seed, t->comm, PETSC_ERR_USER_INPUT,
               "the checkpoints in '%s' were written with -%sseed %" PetscInt_FMT ", not %" PetscInt_FMT
               "; use the same seed or another -%sdir",
               ckpt_dir, t->prefix, t->state.seed, t->seed, t->prefix);
  }
  if (finished(t)) {
    PetscCall(AckdLogInfo(&t->log, "training already complete in %s (epoch %d, step %d)\n", t->dir, (int)t->state.epoch,
                          (int)t->state.step));
    PetscCall(AckdDirLockRelease(t->comm, &t->lock));
    PetscFunctionReturn(0);
  }

  /* A signal during the set-up: nothing new to save, and the newest checkpoint (if any) is where the
   * same command goes on. */
  PetscCall(AckdStopRequested(t->comm, &stop));
  if (stop) {
    *stopped = PETSC_TRUE;
    PetscCall(AckdLogInfo(&t->log,
                          "stopped by a signal before step %d; nothing new to save, start the same command "
                          "to go on\n",
                          (int)t->state.step));
    PetscCall(AckdDirLockRelease(t->comm, &t->lock));
    PetscFunctionReturn(0);
  }
  while (!finished(t) && !stop) {
    const double lr = AckdScheduleLR(&t->schedule, t->state.epoch);
    AckdProgress bar;
    char         label[48];
    snprintf(label, sizeof label, "epoch %d/%d", (int)t->state.epoch + 1, (int)t->epochs);
    PetscCall(AckdBatchPlanSetEpoch(t->plan, t->state.epoch));
    if (t->epoch_hook && t->state.cursor == 0) PetscCall(t->epoch_hook(t->epoch_ctx, &t->engine, t->state.epoch));
    PetscCall(AckdProgressBegin(&bar, &t->log, label, t->nbatches, "batch"));
    while (t->state.cursor < t->nbatches && !stop && !finished(t)) {
      double reduced[P_SIZE] = {0}, t0 = AckdTimeNow();
      PetscCall(train_step(t, t->state.cursor, lr, reduced));
      t->state.step++;
      t->state.cursor++;
      steps_here++;
      for (PetscInt k = 0; k < P_SIZE; k++)
        if (k != P_SECONDS) t->partial[k] += reduced[k];
      t->partial[P_SECONDS] += AckdTimeNow() - t0;
      if (steps_here > 1) { /* the first step creates the kernels' primitives: not a steady-state figure */
        t->step_seconds += AckdTimeNow() - t0;
        t->images_done += reduced[P_COUNT];
      } else {
        PetscCall(blocked_time(t, &t->blocked_warmup));
      }
      AckdSleep(t->debug_step_delay);
      PetscCall(AckdProgressUpdate(&bar, t->state.cursor));
      if (t->debug_signal_after > 0 && steps_here == t->debug_signal_after && t->rank == 0) raise(SIGTERM);
      PetscCall(AckdStopRequested(t->comm, &stop));
      PetscBool due = PETSC_FALSE;
      if (t->state.cursor < t->nbatches) PetscCall(AckdCkptWriterIsDue(t->writer, &t->state, PETSC_FALSE, &due));
      wrote_last = PETSC_FALSE;
      if (due || (stop && t->state.cursor < t->nbatches)) {
        PetscCall(write_checkpoint(t, NULL));
        wrote_last = PETSC_TRUE;
      }
    }
    PetscCall(AckdProgressEnd(&bar));
    if (t->state.cursor < t->nbatches) break; /* stopped or max_steps inside the epoch */
    PetscBool improved, due;
    PetscCall(end_epoch(t, lr, &improved));
    t->state.epoch++;
    t->state.cursor = 0;
    if (improved) PetscCall(write_checkpoint(t, best_path));
    PetscCall(write_metrics(t));
    PetscCall(AckdCkptWriterIsDue(t->writer, &(AckdCkptState){.epoch = t->state.epoch - 1, .step = t->state.step},
                                  PETSC_TRUE, &due));
    wrote_last = PETSC_FALSE;
    if (due || stop || finished(t)) {
      PetscCall(write_checkpoint(t, NULL));
      wrote_last = PETSC_TRUE;
    }
  }
  /* The end, whichever way it came: the newest state is always on disk. */
  if (!wrote_last) PetscCall(write_checkpoint(t, NULL));
  /* Nothing validated (no validation, or -max_steps ended the run first): the last model stands in as the best. */
  if (t->best_epoch < 0 && finished(t)) PetscCall(write_checkpoint(t, best_path));
  if (steps_here > 1) {
    /* One machine-readable line, the steps after the first: bench/scaling reads it. The exchange time
     * is what backward did not hide. */
    double blocked;
    PetscCall(blocked_time(t, &blocked));
    blocked -= t->blocked_warmup;
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &blocked, 1, MPI_DOUBLE, MPI_MAX, t->comm));
    const PetscInt n = steps_here - 1;
    char           line[256];
    snprintf(line, sizeof line, "train summary: ranks=%d steps=%d img_s=%.2f step_ms=%.3f exchange_blocked_ms=%.3f",
             (int)t->size, (int)n, t->images_done / PetscMax(t->step_seconds, 1e-12), 1e3 * t->step_seconds / n,
             1e3 * blocked / n);
    PetscCall(AckdLogInfo(&t->log, "%s\n", line));
  }
  if (stop && !finished(t)) {
    *stopped = PETSC_TRUE;
    PetscCall(AckdLogInfo(&t->log,
                          "stopped by a signal at step %d; checkpoint written, start the same command to resume\n",
                          (int)t->state.step));
  }
  PetscCall(AckdDirLockRelease(t->comm, &t->lock));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTrainerDestroy(AckdTrainer *trainer)
{
  AckdTrainer t = *trainer;

  PetscFunctionBeginUser;
  if (!t) PetscFunctionReturn(0);
  for (PetscInt i = 0; i < t->ngroups; i++) {
    if (t->groups[i].buckets) PetscCall(AckdGradBucketsDestroy(&t->groups[i].buckets));
    if (t->groups[i].optimizer.m) PetscCall(AckdOptimizerDestroy(&t->groups[i].optimizer));
    if (t->groups[i].model) PetscCall(AckdModelSetGradientReady(t->groups[i].model, NULL, NULL));
  }
  for (PetscInt m = 0; m < M_FIXED + ACKD_TRAIN_MAX_TERMS + ACKD_TRAIN_MAX_VALUES; m++)
    PetscCall(PetscFree(t->history[m]));
  PetscCall(PetscFree4(t->local_rows, t->local_labels, t->images, t->scratch));
  PetscCall(PetscFree(t->buffer_backup));
  PetscCall(PetscFree(t->train_rows));
  if (t->plan) PetscCall(AckdBatchPlanDestroy(&t->plan));
  if (t->writer) PetscCall(AckdCkptWriterDestroy(&t->writer));
  if (t->engine_ready) PetscCall(AckdEngineDestroy(&t->engine));
  PetscCall(PetscFree(*trainer));
  PetscFunctionReturn(0);
}
