/* An evaluation run (`ackd eval`): a checkpoint's accuracy (mAP and F1 on a multi-label
 * collection) on one split of a dataset. The network is rebuilt from what the checkpoint records
 * (architecture, width, bands, classes, modality), so it needs no model options. Writes the eval
 * file of docs/FORMATS.md and prints OA and per-class accuracy. */
#include <ackd/train.h>
#include <libgen.h>
#include <math.h>
#include <string.h>

struct _p_AckdEvaluation {
  MPI_Comm           comm;
  AckdLog            log;
  char               checkpoint[PETSC_MAX_PATH_LEN], data[PETSC_MAX_PATH_LEN], output[PETSC_MAX_PATH_LEN];
  char               modality[16], architecture[64], method[64], pair[16], role[32];
  PetscInt           split, batch, threads, debug_signal_after;
  AckdPrecision      precision;
  PetscBool          split_set, setup;
  AckdH5Settings     h5;
  AckdModelConfig    config;
  AckdModel          model;
  AckdEngine         engine;
  AckdSharedDataset  dataset;
  AckdCollectionInfo info;
};

static const char *const SPLITS[] = {"train", "val", "test"};

/* What the run was: the student's method, pair and role where its checkpoint records them, and the
 * arithmetic of this pass. */
static const char *const TAG_NAMES[] = {"method", "pair", "role", "precision"};
enum { NTAGS = 4 };

static PetscErrorCode write_tags(hid_t file, const char *const *tags)
{
  PetscFunctionBeginUser;
  for (int i = 0; i < NTAGS; i++)
    if (tags[i][0]) PetscCall(AckdH5AttrWriteString(file, TAG_NAMES[i], tags[i]));
  PetscFunctionReturn(0);
}

static PetscErrorCode write_eval(MPI_Comm comm, const char *path, const char *checkpoint, const char *data,
                                 const char *modality, PetscInt split, const char *architecture,
                                 const char *const *tags, const AckdCollectionInfo *info,
                                 const AckdClassifierScore *score, double mean_class, const double *per_class,
                                 const long long *per_class_count, PetscInt nlocal, PetscInt first,
                                 const PetscInt *rows, const PetscInt *predictions)
{
  AckdH5Settings h5 = {0};
  hid_t          file;
  const PetscInt K = info->classes;
  long long     *confusion, *index;
  int           *prediction;

  PetscFunctionBeginUser;
  PetscCall(AckdH5SettingsSetFromOptions(&h5));
  PetscCall(PetscMalloc3(K * K, &confusion, PetscMax(nlocal, 1), &index, PetscMax(nlocal, 1), &prediction));
  for (PetscInt i = 0; i < K * K; i++) confusion[i] = score->confusion[i];
  for (PetscInt i = 0; i < nlocal; i++) {
    index[i]      = rows[i];
    prediction[i] = (int)predictions[i];
  }
  PetscCall(AckdH5FileCreatePartial(comm, path, &h5, &file));
  PetscCall(AckdH5AttrWriteString(file, "ackd_format", ACKD_FORMAT_EVAL));
  PetscCall(AckdH5AttrWriteInt(file, "ackd_format_version", ACKD_FORMAT_EVAL_VERSION));
  PetscCall(AckdH5AttrWriteString(file, "ackd_version", ACKD_VERSION_STRING));
  PetscCall(AckdH5AttrWriteString(file, "checkpoint", checkpoint));
  PetscCall(AckdH5AttrWriteString(file, "data", data));
  PetscCall(AckdH5AttrWriteString(file, "modality", modality));
  PetscCall(AckdH5AttrWriteString(file, "split", SPLITS[split]));
  PetscCall(AckdH5AttrWriteString(file, "architecture", architecture));
  PetscCall(write_tags(file, tags));
  PetscCall(AckdH5AttrWriteInt(file, "count", score->count));
  PetscCall(AckdH5AttrWriteInt(file, "multilabel", 0));
  PetscCall(AckdH5AttrWriteReal(file, "oa", score->oa));
  PetscCall(AckdH5AttrWriteReal(file, "mean_class_accuracy", mean_class));
  hsize_t kk[2] = {(hsize_t)K, (hsize_t)K}, k1 = (hsize_t)K;
  PetscCall(AckdH5WriteSmall(comm, file, "confusion", H5T_NATIVE_LLONG, 2, kk, confusion));
  PetscCall(AckdH5WriteSmall(comm, file, "per_class_accuracy", H5T_NATIVE_DOUBLE, 1, &k1, per_class));
  PetscCall(AckdH5WriteSmall(comm, file, "per_class_count", H5T_NATIVE_LLONG, 1, &k1, per_class_count));
  PetscCall(AckdH5WriteStrings(comm, file, "classes", K, (const char *const *)info->class_names));
  /* Per-sample predictions: each rank writes its contiguous block of the split. */
  PetscCall(AckdH5WriteRows(comm, file, "prediction", H5T_NATIVE_INT, score->count, 0, first, nlocal, prediction));
  /* The logits, so that a model exported elsewhere (analysis/export_torch.py) can be checked against them. */
  PetscCall(
      AckdH5WriteRows(comm, file, "logits", H5T_NATIVE_FLOAT, score->count, K, first, nlocal, score->local_logits));
  PetscCall(AckdH5WriteRows(comm, file, "index", H5T_NATIVE_LLONG, score->count, 0, first, nlocal, index));
  PetscCall(AckdH5FileCommit(comm, &file, path));
  PetscCall(PetscFree3(confusion, index, prediction));
  PetscFunctionReturn(0);
}

/* The multi-label eval file: mAP and F1, per-class AP, and every sample's sigmoid scores (N, K) in
 * /score with its dataset row in /index, so that analysis can recompute any metric. */
static PetscErrorCode write_eval_multilabel(MPI_Comm comm, const char *path, const char *const *attrs,
                                            const char *const *tags, PetscInt split, const AckdCollectionInfo *info,
                                            const AckdMultilabelScore *score, PetscInt nlocal, PetscInt first,
                                            const PetscInt *rows, const float *scores)
{
  AckdH5Settings h5 = {0};
  hid_t          file;
  const PetscInt K = info->classes;
  long long     *index;

  PetscFunctionBeginUser;
  PetscCall(AckdH5SettingsSetFromOptions(&h5));
  PetscCall(PetscMalloc1(PetscMax(nlocal, 1), &index));
  for (PetscInt i = 0; i < nlocal; i++) index[i] = rows[i];
  PetscCall(AckdH5FileCreatePartial(comm, path, &h5, &file));
  PetscCall(AckdH5AttrWriteString(file, "ackd_format", ACKD_FORMAT_EVAL));
  PetscCall(AckdH5AttrWriteInt(file, "ackd_format_version", ACKD_FORMAT_EVAL_VERSION));
  PetscCall(AckdH5AttrWriteString(file, "ackd_version", ACKD_VERSION_STRING));
  const char *const attr_names[] = {"checkpoint", "data", "modality", "architecture"};
  for (int i = 0; i < 4; i++) PetscCall(AckdH5AttrWriteString(file, attr_names[i], attrs[i]));
  PetscCall(AckdH5AttrWriteString(file, "split", SPLITS[split]));
  PetscCall(write_tags(file, tags));
  PetscCall(AckdH5AttrWriteInt(file, "count", score->count));
  PetscCall(AckdH5AttrWriteInt(file, "multilabel", 1));
  PetscCall(AckdH5AttrWriteReal(file, "map", score->map));
  PetscCall(AckdH5AttrWriteReal(file, "f1_micro", score->f1_micro));
  PetscCall(AckdH5AttrWriteReal(file, "f1_macro", score->f1_macro));
  PetscCall(AckdH5AttrWriteReal(file, "threshold", 0.5));
  hsize_t k1 = (hsize_t)K;
  PetscCall(AckdH5WriteSmall(comm, file, "per_class_ap", H5T_NATIVE_DOUBLE, 1, &k1, score->per_class_ap));
  PetscCall(AckdH5WriteStrings(comm, file, "classes", K, (const char *const *)info->class_names));
  PetscCall(AckdH5WriteRows(comm, file, "score", H5T_NATIVE_FLOAT, score->count, K, first, nlocal, scores));
  PetscCall(AckdH5WriteRows(comm, file, "index", H5T_NATIVE_LLONG, score->count, 0, first, nlocal, index));
  PetscCall(AckdH5FileCommit(comm, &file, path));
  PetscCall(PetscFree(index));
  PetscFunctionReturn(0);
}

static PetscErrorCode eval_multilabel(MPI_Comm comm, AckdLog *log, AckdModel model, AckdEngine *engine,
                                      AckdSharedDataset dataset, const AckdCollectionInfo *info, PetscInt split,
                                      PetscInt batch, const char *output, const char *const *attrs,
                                      const char *const *tags, PetscBool *stopped)
{
  const PetscInt      K     = info->classes;
  AckdMultilabelScore score = {.stoppable = PETSC_TRUE};
  PetscInt            nglobal, nlocal, first, *rows;
  float              *scores;
  char                line[PETSC_MAX_PATH_LEN + 256];

  PetscFunctionBeginUser;
  PetscCall(AckdSplitRows(comm, dataset, split, &nglobal, &nlocal, &rows, &first));
  PetscCheck(nglobal > 0, comm, PETSC_ERR_USER_INPUT,
             "the %s split of /%s in '%s' is empty; choose another -eval_split", SPLITS[split], attrs[2], attrs[1]);
  PetscCall(PetscMalloc2(PetscMax(nlocal * K, 1), &scores, K, &score.per_class_ap));
  PetscCall(AckdMultilabelEvaluate(comm, model, engine, dataset, split, batch, K, &score, scores));
  *stopped = score.stopped;
  if (score.stopped) {
    PetscCall(PetscFree2(scores, score.per_class_ap));
    PetscCall(PetscFree(rows));
    PetscFunctionReturn(0);
  }
  PetscCall(write_eval_multilabel(comm, output, attrs, tags, split, info, &score, nlocal, first, rows, scores));
  snprintf(line, sizeof line,
           "%s on the %s split of /%s (%d samples, multi-label): mAP %.4f, F1 micro %.4f, F1 macro %.4f (sigmoid > "
           "0.5)",
           attrs[0], SPLITS[split], attrs[2], (int)score.count, score.map, score.f1_micro, score.f1_macro);
  PetscCall(AckdLogResult(log, "%s\n", line));
  for (PetscInt k = 0; k < K; k++) {
    snprintf(line, sizeof line, "  %-24s AP %6.4f", info->class_names[k], score.per_class_ap[k]);
    PetscCall(AckdLogResult(log, "%s\n", line));
  }
  PetscCall(AckdLogInfo(log, "wrote %s\n", output));
  PetscCall(PetscFree2(scores, score.per_class_ap));
  PetscCall(PetscFree(rows));
  PetscFunctionReturn(0);
}

/* A k-fold dataset (ackd curate's default, -curate_folds 5) holds its fold out
 * as the val split and has no test split: the default then evaluates val,
 * saying so; a test split asked for by name is refused with the way out. */
static PetscErrorCode choose_split(MPI_Comm comm, const AckdLog *log, AckdSharedDataset dataset, const char *data,
                                   const char *modality, PetscBool split_set, PetscInt *split)
{
  PetscInt count[3], nlocal, *rows;

  PetscFunctionBeginUser;
  for (PetscInt s = 0; s < 3; s++) {
    PetscCall(AckdSplitRows(comm, dataset, s, &count[s], &nlocal, &rows, NULL));
    PetscCall(PetscFree(rows));
  }
  if (count[*split] > 0) PetscFunctionReturn(0);
  if (*split == 2 && !split_set && count[1] > 0) {
    PetscCall(AckdLogInfo(log,
                          "'%s' has no test split (a k-fold dataset holds its fold out as val): evaluating the val "
                          "split; -eval_split chooses another\n",
                          data));
    *split = 1;
    PetscFunctionReturn(0);
  }
  PetscCheck(
      *split != 2 || count[1] == 0, comm, PETSC_ERR_USER_INPUT,
      "the test split of /%s in '%s' is empty (a k-fold dataset holds its fold out as val); use -eval_split val, "
      "or curate with -curate_folds 0 and fractions for a test split",
      modality, data);
  SETERRQ(comm, PETSC_ERR_USER_INPUT, "the %s split of /%s in '%s' is empty; choose another -eval_split",
          SPLITS[*split], modality, data);
}

/* The classifier's eval file, and its result lines (printed with -quiet too, which silences only
 * progress and information). */
static PetscErrorCode report_classifier(MPI_Comm comm, AckdLog *log, const char *output, const char *checkpoint,
                                        const char *data, const char *modality, PetscInt split,
                                        const char *architecture, const char *const *tags,
                                        const AckdCollectionInfo *info, const AckdClassifierScore *score,
                                        PetscInt nlocal, PetscInt first, const PetscInt *rows,
                                        const PetscInt *predictions)
{
  const PetscInt K = info->classes;

  PetscFunctionBeginUser;
  double    *per_class, mean_class = 0;
  long long *per_class_count;
  PetscInt   present = 0;
  PetscCall(PetscMalloc2(K, &per_class, K, &per_class_count));
  for (PetscInt k = 0; k < K; k++) {
    long long total = 0;
    for (PetscInt j = 0; j < K; j++) total += score->confusion[k * K + j];
    per_class_count[k] = total;
    per_class[k]       = total ? (double)score->confusion[k * K + k] / (double)total : NAN;
    if (total) {
      mean_class += per_class[k];
      present++;
    }
  }
  mean_class = present ? mean_class / present : NAN;
  PetscCall(write_eval(comm, output, checkpoint, data, modality, split, architecture, tags, info, score, mean_class,
                       per_class, per_class_count, nlocal, first, rows, predictions));

  char line[PETSC_MAX_PATH_LEN + 256];
  snprintf(line, sizeof line, "%s on the %s split of /%s (%d samples): OA %.4f, mean class accuracy %.4f", checkpoint,
           SPLITS[split], modality, (int)score->count, score->oa, mean_class);
  PetscCall(AckdLogResult(log, "%s\n", line));
  for (PetscInt k = 0; k < K; k++) {
    snprintf(line, sizeof line, "  %-24s %6.4f  (%lld samples)", info->class_names[k], per_class[k],
             per_class_count[k]);
    PetscCall(AckdLogResult(log, "%s\n", line));
  }
  PetscCall(AckdLogInfo(log, "wrote %s\n", output));
  PetscCall(PetscFree2(per_class, per_class_count));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdEvaluationCreate(MPI_Comm comm, AckdEvaluation *evaluation)
{
  AckdEvaluation e;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&e));
  e->comm  = comm;
  e->split = 2;
  e->batch = 256;
  PetscCall(AckdLogSetUp(&e->log, comm));
  *evaluation = e;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdEvaluationSetFromOptions(AckdEvaluation e)
{
  PetscFunctionBeginUser;
  PetscOptionsBegin(e->comm, NULL, "ackd eval: a checkpoint's accuracy on a split", NULL);
  PetscCall(AckdOptionsString(PetscOptionsObject, "-eval_checkpoint",
                              "Checkpoint to evaluate (e.g. out/teacher/best.h5)", e->checkpoint, sizeof e->checkpoint,
                              NULL));
  PetscCall(AckdOptionsString(PetscOptionsObject, "-eval_data",
                              "Dataset file (default: the one the checkpoint was trained on)", e->data, sizeof e->data,
                              NULL));
  PetscCall(AckdOptionsChoice(PetscOptionsObject, "-eval_split",
                              "Split to evaluate: train, val, test (default test, or val when the dataset has no test "
                              "split, as k-fold datasets of curate)",
                              SPLITS, 3, &e->split, &e->split_set));
  PetscCall(AckdOptionsString(PetscOptionsObject, "-eval_output",
                              "Eval file to write (default: eval_<split>.h5 beside the checkpoint)", e->output,
                              sizeof e->output, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-eval_batch", "Batch size", &e->batch, 1, 1 << 20, NULL));
  PetscCall(AckdOptionsPrecision(PetscOptionsObject, e->comm, "", "eval_precision", &e->precision));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-eval_threads", "Threads per rank (0: OMP_NUM_THREADS)", &e->threads, 0,
                           1024, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-eval_debug_signal_after",
                           "Testing: rank 0 sends itself SIGTERM before its N-th batch (0: never)",
                           &e->debug_signal_after, 0, PETSC_MAX_INT, NULL));
  PetscOptionsEnd();
  PetscCall(AckdH5SettingsSetFromOptions(&e->h5));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdEvaluationSetUp(AckdEvaluation e)
{
  MPI_Comm       comm = e->comm;
  AckdCkptReader reader;
  PetscBool      found;
  hid_t          file;

  PetscFunctionBeginUser;
  if (e->setup) PetscFunctionReturn(0);
  PetscCheck(e->checkpoint[0], comm, PETSC_ERR_USER_INPUT,
             "option -eval_checkpoint is required: a checkpoint written by ackd train or ackd distill");
  PetscCall(AckdCkptReaderOpen(comm, e->checkpoint, NULL, &reader));
  PetscCall(AckdCkptReaderGetFile(reader, &file));
  PetscCall(AckdModelConfigRead(comm, file, e->checkpoint, &e->config));
  PetscCall(AckdH5AttrReadString(file, "modality", e->modality, sizeof e->modality, &found));
  PetscCheck(found, comm, PETSC_ERR_FILE_UNEXPECTED, "'%s' does not record its modality (ms or rgb)", e->checkpoint);
  PetscCall(AckdH5AttrReadString(file, "architecture", e->architecture, sizeof e->architecture, &found));
  /* What the results table groups by (analysis/results_table.py). */
  PetscCall(AckdH5AttrReadString(file, "method", e->method, sizeof e->method, &found));
  PetscCall(AckdH5AttrReadString(file, "pair", e->pair, sizeof e->pair, &found));
  PetscCall(AckdH5AttrReadString(file, "role", e->role, sizeof e->role, &found));
  if (!e->data[0]) {
    PetscCall(AckdH5AttrReadString(file, "data", e->data, sizeof e->data, &found));
    PetscCheck(found && e->data[0], comm, PETSC_ERR_USER_INPUT, "'%s' does not record its dataset; give -eval_data",
               e->checkpoint);
  }
  PetscCall(AckdCollectionInfoRead(comm, e->data, e->modality, &e->info));
  PetscCheck(
      e->info.channels == e->config.in_channels && e->info.classes == e->config.classes, comm, PETSC_ERR_USER_INPUT,
      "checkpoint '%s' takes %" PetscInt_FMT " bands and %" PetscInt_FMT " classes, but /%s in '%s' has %" PetscInt_FMT
      " and %" PetscInt_FMT "; evaluate it on the dataset it was trained for",
      e->checkpoint, e->config.in_channels, e->config.classes, e->modality, e->data, e->info.channels, e->info.classes);
  PetscCall(AckdModelCreate(comm, &e->model));
  PetscCall(AckdModelSetUp(e->model, &e->config, 0));
  PetscCall(AckdModelReadCheckpoint(reader, e->model));
  PetscCall(AckdCkptReaderDestroy(&reader));

  PetscCall(AckdEngineCreate(e->threads, &e->engine));
  PetscCall(AckdEngineSetPrecision(&e->engine, e->precision));
  PetscCall(AckdSharedDatasetLoad(comm, e->data, e->modality, &e->h5, &e->dataset));
  PetscCall(choose_split(comm, &e->log, e->dataset, e->data, e->modality, e->split_set, &e->split));
  if (!e->output[0]) {
    char dir[PETSC_MAX_PATH_LEN];
    PetscCall(PetscStrncpy(dir, e->checkpoint, sizeof dir));
    snprintf(e->output, sizeof e->output, "%s/eval_%s.h5", dirname(dir), SPLITS[e->split]);
  }
  PetscCall(AckdOutputFileCheck(comm, e->output, "-eval_output"));
  e->setup = PETSC_TRUE;
  PetscFunctionReturn(0);
}

static PetscErrorCode eval_classifier(AckdEvaluation e, const char *const *tags, PetscBool *stopped)
{
  MPI_Comm            comm  = e->comm;
  const PetscInt      K     = e->config.classes;
  AckdClassifierScore score = {.stoppable = PETSC_TRUE};
  PetscInt            nglobal, nlocal, first, *rows, *predictions;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(K * K, &score.confusion));
  PetscCall(AckdSplitRows(comm, e->dataset, e->split, &nglobal, &nlocal, &rows, &first));
  PetscCheck(nglobal > 0, comm, PETSC_ERR_USER_INPUT,
             "the %s split of /%s in '%s' is empty; choose another -eval_split", SPLITS[e->split], e->modality,
             e->data);
  PetscCall(PetscMalloc2(PetscMax(nlocal, 1), &predictions, PetscMax(nlocal * K, 1), &score.local_logits));
  PetscCall(AckdClassifierEvaluate(comm, e->model, &e->engine, e->dataset, e->split, e->batch, K, &score, predictions));
  *stopped = score.stopped;
  if (!score.stopped)
    PetscCall(report_classifier(comm, &e->log, e->output, e->checkpoint, e->data, e->modality, e->split,
                                e->architecture, tags, &e->info, &score, nlocal, first, rows, predictions));
  PetscCall(PetscFree2(predictions, score.local_logits));
  PetscCall(PetscFree(rows));
  PetscCall(PetscFree(score.confusion));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdEvaluationRun(AckdEvaluation e, PetscBool *stopped)
{
  PetscMPIInt rank;

  PetscFunctionBeginUser;
  PetscCall(AckdEvaluationSetUp(e));
  /* A stop request ends the pass at the next batch; nothing is written (a pass is cheap to repeat). */
  PetscCall(AckdStopRequestInstall());
  PetscCallMPI(MPI_Comm_rank(e->comm, &rank));
  if (rank == 0) AckdStopDebugSignalAfter(e->debug_signal_after);
  PetscCallMPI(MPI_Barrier(e->comm)); /* from the line below on, every rank honours a stop request */
  PetscCall(AckdLogInfo(&e->log, "eval: scoring the %s split of /%s\n", SPLITS[e->split], e->modality));
  const char *const tags[NTAGS] = {e->method, e->pair, e->role, AckdPrecisionNames[e->precision]};
  *stopped                      = PETSC_FALSE;
  if (e->info.multilabel) {
    const char *const attrs[] = {e->checkpoint, e->data, e->modality, e->architecture};
    PetscCall(eval_multilabel(e->comm, &e->log, e->model, &e->engine, e->dataset, &e->info, e->split, e->batch,
                              e->output, attrs, tags, stopped));
  } else
    PetscCall(eval_classifier(e, tags, stopped));
  if (*stopped)
    PetscCall(
        AckdLogInfo(&e->log, "eval: stopped by a signal; '%s' not written, run the same command again\n", e->output));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdEvaluationDestroy(AckdEvaluation *evaluation)
{
  AckdEvaluation e = *evaluation;

  PetscFunctionBeginUser;
  if (!e) PetscFunctionReturn(0);
  if (e->setup) {
    PetscCall(AckdSharedDatasetDestroy(&e->dataset));
    PetscCall(AckdEngineDestroy(&e->engine));
    PetscCall(AckdModelDestroy(&e->model));
    PetscCall(AckdCollectionInfoDestroy(&e->info));
  }
  PetscCall(PetscFree(*evaluation));
  PetscFunctionReturn(0);
}
