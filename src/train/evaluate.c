/* Scoring a trained model on a split: the validation of `train` and `distill`, the numbers of
 * `eval` (OA and the confusion matrix, or mAP and F1 on a multi-label collection). Rows are shared
 * out in contiguous blocks, so each rank reads a contiguous part of the node's copy. */
#include <ackd/train.h>
#include <math.h>

PetscErrorCode AckdSplitRows(MPI_Comm comm, AckdSharedDataset dataset, PetscInt split, PetscInt *nglobal,
                             PetscInt *nlocal, PetscInt **rows, PetscInt *first)
{
  const unsigned char *splits;
  PetscInt             count, c, h, w, n = 0;
  PetscMPIInt          rank, size;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCall(AckdSharedDatasetGetShape(dataset, &count, &c, &h, &w));
  PetscCall(AckdSharedDatasetGetArrays(dataset, NULL, NULL, &splits));
  for (PetscInt i = 0; i < count; i++) n += splits[i] == split;
  const PetscInt lo = n * rank / size, hi = n * (rank + 1) / size;
  PetscCall(PetscMalloc1(PetscMax(hi - lo, 1), rows));
  for (PetscInt i = 0, k = 0; i < count; i++) {
    if (splits[i] != split) continue;
    if (k >= lo && k < hi) (*rows)[k - lo] = i;
    k++;
  }
  *nglobal = n;
  *nlocal  = hi - lo;
  if (first) *first = lo;
  PetscFunctionReturn(0);
}

/* The first index of the largest of z[0..K): PyTorch's argmax on ties. */
static PetscInt argmax(const float *z, PetscInt K)
{
  PetscInt best = 0;
  for (PetscInt k = 1; k < K; k++)
    if (z[k] > z[best]) best = k;
  return best;
}

PetscInt AckdCountCorrect(const AckdTensor *logits, const PetscInt *labels)
{
  const PetscInt K       = logits->c * logits->h * logits->w;
  PetscInt       correct = 0;

  for (PetscInt i = 0; i < logits->n; i++) {
    correct += argmax(logits->data + i * K, K) == labels[i];
  }
  return correct;
}

typedef struct {
  const int      *labels;
  const PetscInt *rows;
  PetscInt        classes;
  double          loss, correct;
  PetscInt       *confusion, *predictions;
  float          *logits;
} ScoreCtx;

static PetscErrorCode score_batch(void *ctx, PetscInt first, PetscInt n, const AckdModelOutputs *out)
{
  ScoreCtx      *s = (ScoreCtx *)ctx;
  const PetscInt K = s->classes;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < n; i++) {
    const float   *z    = out->logits.data + i * K;
    const PetscInt y    = s->labels[s->rows[first + i]];
    const PetscInt best = argmax(z, K);
    const double   zmax = z[best];
    double         sum  = 0;
    for (PetscInt k = 0; k < K; k++) sum += exp((double)z[k] - zmax);
    if (y >= 0 && y < K) {
      s->loss += log(sum) + zmax - z[y];
      s->correct += best == y;
      if (s->confusion) s->confusion[y * K + best]++;
    }
    if (s->predictions) s->predictions[first + i] = best;
  }
  if (s->logits) PetscCall(PetscArraycpy(s->logits + first * K, out->logits.data, n * K));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdClassifierEvaluate(MPI_Comm comm, AckdModel model, AckdEngine *engine, AckdSharedDataset dataset,
                                      PetscInt split, PetscInt batch, PetscInt classes, AckdClassifierScore *score,
                                      PetscInt *predictions)
{
  PetscInt nglobal, nlocal, *rows;
  ScoreCtx s = {.classes = classes, .predictions = predictions, .logits = score->local_logits};
  double   sums[2];

  PetscFunctionBeginUser;
  PetscCall(AckdSharedDatasetGetArrays(dataset, NULL, &s.labels, NULL));
  PetscCall(AckdSplitRows(comm, dataset, split, &nglobal, &nlocal, &rows, NULL));
  s.rows = rows;
  if (score->confusion) {
    PetscCall(PetscArrayzero(score->confusion, classes * classes));
    s.confusion = score->confusion;
  }
  PetscCall(AckdModelPredictStoppable(model, engine, dataset, nlocal, rows, batch, score_batch, &s, score->stoppable,
                                      comm, &score->stopped));
  if (score->stopped) {
    PetscCall(PetscFree(rows));
    PetscFunctionReturn(0);
  }
  sums[0] = s.loss;
  sums[1] = s.correct;
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, sums, 2, MPI_DOUBLE, MPI_SUM, comm));
  if (score->confusion)
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, score->confusion, (int)(classes * classes), MPIU_INT, MPI_SUM, comm));
  score->count = nglobal;
  score->loss  = nglobal ? sums[0] / nglobal : NAN;
  score->oa    = nglobal ? sums[1] / nglobal : NAN;
  PetscCall(PetscFree(rows));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------- multi-label */

typedef struct {
  float         score;
  unsigned char positive;
} Ranked;

static int by_decreasing_score(const void *a, const void *b)
{
  const float x = ((const Ranked *)a)->score, y = ((const Ranked *)b)->score;
  return (x < y) - (x > y);
}

PetscErrorCode AckdAveragePrecision(PetscInt n, const float *scores, PetscInt stride, const unsigned char *labels,
                                    PetscInt label_stride, double *ap)
{
  Ranked  *r;
  PetscInt npos = 0, tp = 0;
  double   sum = 0;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(PetscMax(n, 1), &r));
  for (PetscInt i = 0; i < n; i++) {
    r[i].score    = scores[i * stride];
    r[i].positive = labels[i * label_stride] != 0;
    npos += r[i].positive;
  }
  qsort(r, (size_t)n, sizeof *r, by_decreasing_score);
  /* Tied scores form one threshold: their positives all get the precision at the end of the group. */
  for (PetscInt lo = 0; lo < n;) {
    PetscInt hi = lo, group = 0;
    while (hi < n && r[hi].score == r[lo].score) group += r[hi++].positive;
    tp += group;
    sum += group * ((double)tp / (double)hi);
    lo = hi;
  }
  *ap = npos ? sum / npos : NAN;
  PetscCall(PetscFree(r));
  PetscFunctionReturn(0);
}

typedef struct {
  const unsigned char *labels;
  const PetscInt      *rows;
  PetscInt             classes;
  double               loss;
  float               *scores;
} MultilabelCtx;

static PetscErrorCode score_multilabel(void *ctx, PetscInt first, PetscInt n, const AckdModelOutputs *out)
{
  MultilabelCtx *s = (MultilabelCtx *)ctx;
  const PetscInt K = s->classes;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < n; i++) {
    const unsigned char *y = s->labels + s->rows[first + i] * K;
    for (PetscInt k = 0; k < K; k++) {
      const double z = out->logits.data[i * K + k];
      s->loss += PetscMax(z, 0.0) - z * (y[k] != 0) + log1p(exp(-fabs(z)));
      s->scores[(first + i) * K + k] = (float)(1.0 / (1.0 + exp(-z)));
    }
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdMultilabelEvaluate(MPI_Comm comm, AckdModel model, AckdEngine *engine, AckdSharedDataset dataset,
                                      PetscInt split, PetscInt batch, PetscInt classes, AckdMultilabelScore *score,
                                      float *local_scores)
{
  PetscInt             nglobal, nlocal, first, *rows, *all_rows, columns;
  const unsigned char *labels;
  MultilabelCtx        s = {.classes = classes};
  float               *all;
  PetscMPIInt          size;
  const PetscInt       K = classes;

  PetscFunctionBeginUser;
  PetscCall(AckdSharedDatasetGetMultilabels(dataset, &columns, &labels));
  PetscCheck(labels && columns == K, comm, PETSC_ERR_ARG_WRONG,
             "the collection is not multi-label over %" PetscInt_FMT " classes (it has %" PetscInt_FMT
             " label columns)",
             K, columns);
  PetscCall(AckdSplitRows(comm, dataset, split, &nglobal, &nlocal, &rows, &first));
  s.labels = labels;
  s.rows   = rows;
  PetscCall(PetscMalloc2(PetscMax(nglobal * K, 1), &all, PetscMax(nglobal, 1), &all_rows));
  s.scores = all + first * K;
  PetscCall(AckdModelPredictStoppable(model, engine, dataset, nlocal, rows, batch, score_multilabel, &s,
                                      score->stoppable, comm, &score->stopped));
  if (score->stopped) {
    PetscCall(PetscFree2(all, all_rows));
    PetscCall(PetscFree(rows));
    PetscFunctionReturn(0);
  }
  if (local_scores) PetscCall(PetscArraycpy(local_scores, s.scores, nlocal * K));
  /* Ranks hold contiguous blocks of the split in order: gather scores and rows in place. */
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscMPIInt *counts, *displs, mine = (PetscMPIInt)(nlocal * K), at = (PetscMPIInt)(first * K);
  PetscCall(PetscMalloc2(size, &counts, size, &displs));
  PetscCallMPI(MPI_Allgather(&mine, 1, MPI_INT, counts, 1, MPI_INT, comm));
  PetscCallMPI(MPI_Allgather(&at, 1, MPI_INT, displs, 1, MPI_INT, comm));
  PetscCallMPI(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, all, counts, displs, MPI_FLOAT, comm));
  mine = (PetscMPIInt)nlocal;
  at   = (PetscMPIInt)first;
  PetscCall(PetscArraycpy(all_rows + first, rows, nlocal));
  PetscCallMPI(MPI_Allgather(&mine, 1, MPI_INT, counts, 1, MPI_INT, comm));
  PetscCallMPI(MPI_Allgather(&at, 1, MPI_INT, displs, 1, MPI_INT, comm));
  PetscCallMPI(MPI_Allgatherv(MPI_IN_PLACE, 0, MPIU_INT, all_rows, counts, displs, MPIU_INT, comm));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &s.loss, 1, MPI_DOUBLE, MPI_SUM, comm));
  PetscCall(PetscFree2(counts, displs));

  /* Every rank now holds the whole split: the same numbers everywhere. */
  unsigned char *y;
  double         ap, map = 0, f1_macro = 0;
  long long      tp_all = 0, fp_all = 0, fn_all = 0;
  PetscInt       with_positives = 0, with_f1 = 0;
  PetscCall(PetscMalloc1(PetscMax(nglobal * K, 1), &y));
  for (PetscInt i = 0; i < nglobal; i++) PetscCall(PetscArraycpy(y + i * K, labels + all_rows[i] * K, K));
  for (PetscInt k = 0; k < K; k++) {
    long long tp = 0, fp = 0, fn = 0;
    PetscCall(AckdAveragePrecision(nglobal, all + k, K, y + k, K, &ap));
    if (score->per_class_ap) score->per_class_ap[k] = ap;
    if (!isnan(ap)) {
      map += ap;
      with_positives++;
    }
    for (PetscInt i = 0; i < nglobal; i++) {
      const PetscBool predicted = (PetscBool)(all[i * K + k] > 0.5f), positive = (PetscBool)(y[i * K + k] != 0);
      tp += predicted && positive;
      fp += predicted && !positive;
      fn += !predicted && positive;
    }
    if (tp + fp + fn > 0) {
      f1_macro += 2.0 * tp / (double)(2 * tp + fp + fn);
      with_f1++;
    }
    tp_all += tp;
    fp_all += fp;
    fn_all += fn;
  }
  score->count    = nglobal;
  score->loss     = nglobal ? s.loss / ((double)nglobal * K) : NAN;
  score->map      = with_positives ? map / with_positives : NAN;
  score->f1_macro = with_f1 ? f1_macro / with_f1 : NAN;
  score->f1_micro = tp_all + fp_all + fn_all ? 2.0 * tp_all / (double)(2 * tp_all + fp_all + fn_all) : NAN;
  PetscCall(PetscFree(y));
  PetscCall(PetscFree2(all, all_rows));
  PetscCall(PetscFree(rows));
  PetscFunctionReturn(0);
}
