/* Teacher targets: the matching table (student sample -> top-k teacher
 * samples with plan weights) and the gallery it indexes, turned into the
 * per-sample targets a KD loss consumes, and DynM's re-matching of the table
 * by distributed OT on the KL cost.
 *
 * A multi-label (M2S) gallery, labels (N_t, K_ms): each teacher sample
 * takes one student class for the class blocks of DynM's re-matching
 * (AckdMultilabelStudentClass: its dominant class's where the gallery
 * records it, else by its logits), and its KL cost uses the
 * teacher's targets log σ(z), as -kd_teacher_multilabel does.
 *
 * Class spaces: the teacher's logits live over K_ms classes, the student's
 * over K. A teacher logit moves to the student's class it maps to; a student
 * class with no teacher counterpart gets a logit far below the others
 * (probability ~0 at any temperature used), which keeps every method's
 * arithmetic finite. */
#include <ackd/kd.h>
#include <ackd/ot.h>
#include <math.h>
#include <stdio.h>

struct _p_AckdTeacherTargets {
  MPI_Comm  comm;
  PetscInt  nstudent, nteacher, classes, ms_classes, dim, k;
  PetscBool multilabel;     /* the gallery's labels are (N_t, K_ms): an M2S teacher */
  float    *logits;         /* N_t x K, projected into the student's classes */
  float    *embedding;      /* N_t x D, NULL if the gallery has none */
  PetscInt *teacher_rows;   /* dataset row (in /ms) of each teacher sample */
  int      *teacher_labels; /* in the student's classes, -1: none */
  int      *student_labels;
  PetscInt *student_of_row; /* dataset row of /rgb -> student sample, -1 outside the training split */
  PetscInt  nrows;
  float    *index, *weight; /* N_s x k */
};

static const char GalleryRemedy[] = "write the gallery again with ackd train (or in the layout of docs/FORMATS.md)";
static const char MatchRemedy[]   = "write the match file again with ackd match";

/* Rank 0 reads, everyone receives: the gallery is read once per run. `remedy` ends the refusal of a
 * missing or misshapen dataset. */
static PetscErrorCode read_matrix(MPI_Comm comm, hid_t file, const char *name, const char *path, const char *remedy,
                                  hid_t type, size_t elem, PetscInt *rows, PetscInt *cols, void **data,
                                  PetscBool required)
{
  PetscMPIInt rank;
  long long   dims[3] = {0, 0, -1}; /* rows, columns, the dataset's rank (-1: no such dataset) */

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  *data = NULL;
  if (rank == 0 && H5Lexists(file, name, H5P_DEFAULT) > 0) {
    AckdH5Shape shape;
    PetscCall(AckdH5DatasetShape(file, name, path, &shape));
    dims[0] = (long long)shape.dims[0];
    dims[1] = shape.rank < 2 ? 1 : (long long)shape.dims[1]; /* a vector is one column */
    dims[2] = shape.rank;
  }
  PetscCallMPI(MPI_Bcast(dims, 3, MPI_LONG_LONG, 0, comm));
  /* Checked on every rank after the broadcast, so that no rank waits for rank 0's data below. The
   * buffer holds rows x columns and H5Dread fills the whole dataset: a third dimension overruns it. */
  PetscCheck(dims[2] < 0 || dims[2] == 1 || dims[2] == 2, comm, PETSC_ERR_FILE_UNEXPECTED,
             "'%s': %s has %lld dimensions, not 1 or 2; %s", path, name, dims[2], remedy);
  PetscCheck(dims[0] > 0 || !required, comm, PETSC_ERR_FILE_UNEXPECTED, "'%s' has no %s; %s", path, name, remedy);
  *rows = (PetscInt)dims[0];
  *cols = (PetscInt)dims[1];
  if (!dims[0]) PetscFunctionReturn(0);
  PetscCall(PetscMalloc(elem * (size_t)(dims[0] * dims[1]), data));
  if (rank == 0) {
    hid_t dset;
    AckdCallH5(dset = H5Dopen2(file, name, H5P_DEFAULT), "'%s': opening %s", path, name);
    AckdCallH5(H5Dread(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, *data), "'%s': reading %s", path, name);
    H5Dclose(dset);
  }
  PetscCallMPI(MPI_Bcast(*data, (int)(elem * (size_t)(dims[0] * dims[1])), MPI_BYTE, 0, comm));
  PetscFunctionReturn(0);
}

static PetscErrorCode check_finite(MPI_Comm comm, const float *x, PetscInt n, const char *what, const char *path)
{
  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < n; i++)
    PetscCheck(isfinite(x[i]), comm, PETSC_ERR_FILE_UNEXPECTED,
               "%s in '%s' holds a non-finite value at entry %" PetscInt_FMT "; recompute the gallery", what, path, i);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTeacherTargetsCreate(MPI_Comm comm, const char *gallery, const int *ms_to_rgb, PetscInt ms_classes,
                                        PetscInt classes, PetscInt nstudent, const PetscInt *student_rows,
                                        const int *student_labels, AckdTeacherTargets *targets)
{
  AckdTeacherTargets t;
  AckdH5Settings     h5 = {0};
  hid_t              file;
  PetscInt           rows, cols, erows, ecols, irows, icols, lrows, lcols, drows = 0, dcols = 0;
  float             *raw;
  long long         *index;
  int               *labels, *dominant;
  int                label_dims = 1;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&t));
  t->comm       = comm;
  t->classes    = classes;
  t->ms_classes = ms_classes;
  t->nstudent   = nstudent;
  PetscCall(AckdH5SettingsSetFromOptions(&h5));
  PetscCall(AckdH5FileOpenRead(comm, gallery, &h5, &file));
  PetscCall(read_matrix(comm, file, "gallery/logits", gallery, GalleryRemedy, H5T_NATIVE_FLOAT, sizeof(float), &rows,
                        &cols, (void **)&raw, PETSC_TRUE));
  PetscCall(read_matrix(comm, file, "gallery/embedding", gallery, GalleryRemedy, H5T_NATIVE_FLOAT, sizeof(float),
                        &erows, &ecols, (void **)&t->embedding, PETSC_FALSE));
  PetscCall(read_matrix(comm, file, "gallery/index", gallery, GalleryRemedy, H5T_NATIVE_LLONG, sizeof(long long),
                        &irows, &icols, (void **)&index, PETSC_TRUE));
  PetscCall(read_matrix(comm, file, "gallery/labels", gallery, GalleryRemedy, H5T_NATIVE_INT, sizeof(int), &lrows,
                        &lcols, (void **)&labels, PETSC_TRUE));
  PetscCall(read_matrix(comm, file, "gallery/dominant_class", gallery, GalleryRemedy, H5T_NATIVE_INT, sizeof(int),
                        &drows, &dcols, (void **)&dominant, PETSC_FALSE));
  {
    PetscMPIInt rank;
    PetscCallMPI(MPI_Comm_rank(comm, &rank));
    if (rank == 0 && H5Lexists(file, "gallery/labels", H5P_DEFAULT) > 0) {
      AckdH5Shape shape;
      PetscCall(AckdH5DatasetShape(file, "gallery/labels", gallery, &shape));
      label_dims = shape.rank;
    }
    PetscCallMPI(MPI_Bcast(&label_dims, 1, MPI_INT, 0, comm));
  }
  PetscCall(AckdH5FileClose(&file, gallery));
  const PetscBool multilabel = (PetscBool)(label_dims == 2);
  PetscCheck(!multilabel || lcols == ms_classes, comm, PETSC_ERR_USER_INPUT,
             "gallery '%s' has multi-label labels over %" PetscInt_FMT
             " classes but the dataset's MS collection has %" PetscInt_FMT
             "; use the gallery of a teacher trained on this dataset",
             gallery, lcols, ms_classes);
  t->multilabel = multilabel;
  PetscCheck(cols == ms_classes, comm, PETSC_ERR_USER_INPUT,
             "gallery '%s' has logits over %" PetscInt_FMT " classes but the dataset's MS collection has %" PetscInt_FMT
             "; use the gallery of a teacher trained on this dataset",
             gallery, cols, ms_classes);
  PetscCheck((!t->embedding || erows == rows) && irows == rows && lrows == rows && (multilabel || lcols == 1), comm,
             PETSC_ERR_FILE_UNEXPECTED, "gallery '%s': logits, embedding, index and labels differ in their row counts",
             gallery);
  PetscCheck(icols == 1, comm, PETSC_ERR_FILE_UNEXPECTED,
             "'%s': gallery/index has %" PetscInt_FMT " columns, not 1 (a dataset row per teacher); %s", gallery, icols,
             GalleryRemedy);
  PetscCheck(!dominant || (multilabel && drows == rows && dcols == 1), comm, PETSC_ERR_FILE_UNEXPECTED,
             "gallery '%s': dominant_class needs multi-label labels and one entry per row; recompute the gallery",
             gallery);
  PetscCall(check_finite(comm, raw, rows * cols, "gallery/logits", gallery));
  if (t->embedding) PetscCall(check_finite(comm, t->embedding, rows * ecols, "gallery/embedding", gallery));
  t->nteacher = rows;
  t->dim      = t->embedding ? ecols : 0;

  /* Teacher logits into the student's classes. */
  unsigned char *positive;
  PetscCall(PetscMalloc1(PetscMax(cols, 1), &positive));
  PetscCall(PetscMalloc3(rows * classes, &t->logits, rows, &t->teacher_rows, rows, &t->teacher_labels));
  for (PetscInt j = 0; j < rows; j++) {
    const float *z   = raw + j * cols;
    float       *out = t->logits + j * classes;
    float        low = z[0];
    for (PetscInt c = 1; c < cols; c++) low = PetscMin(low, z[c]);
    for (PetscInt c = 0; c < classes; c++) out[c] = low - 50.0f;
    for (PetscInt c = 0; c < cols; c++)
      if (ms_to_rgb[c] >= 0 && ms_to_rgb[c] < classes) out[ms_to_rgb[c]] = z[c];
    t->teacher_rows[j] = (PetscInt)index[j];
    if (multilabel) {
      const int y = dominant ? dominant[j] : -1;
      PetscCheck(!dominant || (y >= 0 && y < ms_classes && labels[j * cols + y]), comm, PETSC_ERR_FILE_UNEXPECTED,
                 "gallery '%s': dominant_class[%" PetscInt_FMT "] = %d is not one of the row's positive labels; "
                 "recompute the gallery",
                 gallery, j, y);
      for (PetscInt c = 0; c < cols; c++) positive[c] = labels[j * cols + c] != 0;
      t->teacher_labels[j] = AckdMultilabelStudentClass(cols, positive, y, z, ms_to_rgb, classes);
    } else
      t->teacher_labels[j] = labels[j] >= 0 && labels[j] < ms_classes ? ms_to_rgb[labels[j]] : -1;
  }
  PetscCall(PetscFree(positive));
  PetscCall(PetscFree(raw));
  PetscCall(PetscFree(index));
  PetscCall(PetscFree(labels));
  PetscCall(PetscFree(dominant));

  PetscInt maxrow = 0;
  for (PetscInt s = 0; s < nstudent; s++) maxrow = PetscMax(maxrow, student_rows[s] + 1);
  t->nrows = maxrow;
  PetscCall(PetscMalloc2(PetscMax(maxrow, 1), &t->student_of_row, PetscMax(nstudent, 1), &t->student_labels));
  for (PetscInt r = 0; r < maxrow; r++) t->student_of_row[r] = -1;
  for (PetscInt s = 0; s < nstudent; s++) {
    t->student_of_row[student_rows[s]] = s;
    t->student_labels[s]               = student_labels[s];
  }
  *targets = t;
  PetscFunctionReturn(0);
}

PetscInt AckdMultilabelStudentClass(PetscInt ms_classes, const unsigned char *positive, PetscInt dominant,
                                    const float *score, const int *ms_to_rgb, PetscInt classes)
{
  PetscInt best = -1;

  if (dominant >= 0) { /* what covers most of the scene, even when another positive maps */
    const int to = dominant < ms_classes ? ms_to_rgb[dominant] : -1;
    return to >= 0 && to < classes ? to : -1;
  }

  for (PetscInt c = 0; c < ms_classes; c++) {
    if (!positive[c] || ms_to_rgb[c] < 0 || ms_to_rgb[c] >= classes) continue;
    if (best < 0 || (score && score[c] > score[best])) best = c;
  }
  return best < 0 ? -1 : ms_to_rgb[best];
}

static PetscErrorCode allocate_table(AckdTeacherTargets t, PetscInt k)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree2(t->index, t->weight));
  t->k = k;
  PetscCall(PetscMalloc2(PetscMax(t->nstudent * k, 1), &t->index, PetscMax(t->nstudent * k, 1), &t->weight));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTeacherTargetsLoadMatch(AckdTeacherTargets t, const char *path, PetscInt k)
{
  AckdH5Settings h5 = {0};
  hid_t          file;
  PetscInt       rows, cols, wrows, wcols;
  long long     *index;
  double        *weight;

  PetscFunctionBeginUser;
  PetscCall(AckdH5SettingsSetFromOptions(&h5));
  PetscCall(AckdH5FileOpenRead(t->comm, path, &h5, &file));
  PetscCall(read_matrix(t->comm, file, "match/teacher_index", path, MatchRemedy, H5T_NATIVE_LLONG, sizeof(long long),
                        &rows, &cols, (void **)&index, PETSC_TRUE));
  PetscCall(read_matrix(t->comm, file, "match/weight", path, MatchRemedy, H5T_NATIVE_DOUBLE, sizeof(double), &wrows,
                        &wcols, (void **)&weight, PETSC_TRUE));
  PetscCall(AckdH5FileClose(&file, path));
  PetscCheck(rows == t->nstudent && wrows == rows && wcols == cols, t->comm, PETSC_ERR_USER_INPUT,
             "match file '%s' has %" PetscInt_FMT " student rows but the dataset has %" PetscInt_FMT
             " RGB training samples; run ackd ssm and ackd match on this dataset",
             path, rows, t->nstudent);
  PetscCall(allocate_table(t, PetscMin(k > 0 ? k : cols, cols)));
  for (PetscInt s = 0; s < rows; s++)
    for (PetscInt j = 0; j < t->k; j++) {
      const long long i = index[s * cols + j];
      PetscCheck(i >= -1 && i < t->nteacher, t->comm, PETSC_ERR_USER_INPUT,
                 "match file '%s' names teacher %lld for student %" PetscInt_FMT " but the gallery has %" PetscInt_FMT
                 " teachers; match and gallery come from different datasets",
                 path, i, s, t->nteacher);
      PetscCheck(isfinite(weight[s * cols + j]), t->comm, PETSC_ERR_FILE_UNEXPECTED,
                 "match file '%s' holds a non-finite weight for student %" PetscInt_FMT, path, s);
      t->index[s * t->k + j]  = (float)i;
      t->weight[s * t->k + j] = i >= 0 ? (float)weight[s * cols + j] : 0.0f;
    }
  PetscCall(PetscFree(index));
  PetscCall(PetscFree(weight));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTeacherTargetsGetSizes(AckdTeacherTargets t, PetscInt *nstudent, PetscInt *nteacher, PetscInt *k,
                                          PetscInt *embedding)
{
  PetscFunctionBeginUser;
  if (nstudent) *nstudent = t->nstudent;
  if (nteacher) *nteacher = t->nteacher;
  if (k) *k = t->k;
  if (embedding) *embedding = t->dim;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTeacherTargetsGetTable(AckdTeacherTargets t, float **index, float **weight)
{
  PetscFunctionBeginUser;
  *index  = t->index;
  *weight = t->weight;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTeacherTargetsGather(AckdTeacherTargets t, PetscInt n, const PetscInt *rows, float *logits,
                                        float *embedding, float *weight, PetscInt *teacher_row)
{
  const PetscInt K = t->classes, D = t->dim;

  PetscFunctionBeginUser;
  PetscCheck(t->index, PETSC_COMM_SELF, PETSC_ERR_ORDER, "no matching loaded: give -distill_match");
  for (PetscInt i = 0; i < n; i++) {
    PetscInt s = rows[i] >= 0 && rows[i] < t->nrows ? t->student_of_row[rows[i]] : -1;
    PetscCheck(s >= 0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
               "dataset row %" PetscInt_FMT " is not a student sample", rows[i]);
    double   mass = 0;
    PetscInt best = -1;
    if (logits) PetscCall(PetscArrayzero(logits + i * K, K));
    if (embedding && D) PetscCall(PetscArrayzero(embedding + i * D, D));
    for (PetscInt j = 0; j < t->k; j++) {
      const PetscInt tj = (PetscInt)t->index[s * t->k + j];
      const float    w  = t->weight[s * t->k + j];
      if (tj < 0 || w <= 0) continue;
      mass += w;
      if (best < 0) best = tj; /* the table is sorted by decreasing weight */
    }
    for (PetscInt j = 0; j < t->k && mass > 0; j++) {
      const PetscInt tj = (PetscInt)t->index[s * t->k + j];
      const float    w  = (float)(t->weight[s * t->k + j] / mass);
      if (tj < 0 || w <= 0) continue;
      if (logits)
        for (PetscInt c = 0; c < K; c++) logits[i * K + c] += w * t->logits[tj * K + c];
      if (embedding)
        for (PetscInt d = 0; d < D; d++) embedding[i * D + d] += w * t->embedding[tj * D + d];
    }
    if (weight) weight[i] = mass > 0 ? 1.0f : 0.0f;
    if (teacher_row) teacher_row[i] = best >= 0 ? t->teacher_rows[best] : -1;
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTeacherTargetsRematch(AckdTeacherTargets t, const float *student_logits, PetscBool class_blocks,
                                         const char *prefix)
{
  AckdOT          ot;
  PetscInt        slo, shi, tlo, thi, k, nrows;
  const PetscInt *rows, *index;
  const double   *weight;
  double         *srows, *trows;
  PetscInt       *slabels, *tlabels;
  PetscMPIInt     size;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_size(t->comm, &size));
  PetscCall(AckdOTCreate(t->comm, &ot));
  PetscCall(AckdOTSetOptionsPrefix(ot, prefix));
  PetscCall(AckdOTSetCostKind(ot, ACKD_OT_COST_KL));
  /* Balanced entropic OT by default (the solver's own default): every teacher carries the same
   * mass, so no teacher becomes a hub. The paper's argmin of the cost per student (-dynm_solver
   * argmin) picks the teachers that already agree with the student; on the synthetic benchmark
   * it leaves ~100 distinct top-1 teachers of ~2800 and costs accuracy (docs/RESULTS.md). */
  PetscCall(AckdOTSetFromOptions(ot));
  PetscCall(AckdOTSetSizes(ot, t->nstudent, t->nteacher, t->classes));
  PetscCall(AckdOTSetUp(ot));
  PetscCall(AckdOTGetOwnedRows(ot, ACKD_OT_STUDENT, &slo, &shi));
  PetscCall(AckdOTGetOwnedRows(ot, ACKD_OT_TEACHER, &tlo, &thi));
  PetscCall(PetscMalloc4(PetscMax((shi - slo) * t->classes, 1), &srows, PetscMax((thi - tlo) * t->classes, 1), &trows,
                         t->nstudent, &slabels, t->nteacher, &tlabels));
  for (PetscInt i = 0; i < (shi - slo) * t->classes; i++) srows[i] = student_logits[slo * t->classes + i];
  /* A multi-label teacher's targets are softmax(log σ(z)/T) (-kd_teacher_multilabel): compare those. */
  for (PetscInt i = 0; i < (thi - tlo) * t->classes; i++) {
    const double z = t->logits[tlo * t->classes + i];
    trows[i]       = t->multilabel ? (z >= 0 ? -log1p(exp(-z)) : z - log1p(exp(z))) : z;
  }
  for (PetscInt s = 0; s < t->nstudent; s++) slabels[s] = t->student_labels[s];
  for (PetscInt j = 0; j < t->nteacher; j++) tlabels[j] = t->teacher_labels[j];
  {
    double *a, *b;
    PetscCall(PetscMalloc2(t->nstudent, &a, t->nteacher, &b));
    for (PetscInt s = 0; s < t->nstudent; s++) a[s] = 1.0;
    for (PetscInt j = 0; j < t->nteacher; j++) b[j] = 1.0;
    if (class_blocks) {
      /* Balanced plans move each class's student mass onto that class's teachers only. */
      PetscCall(AckdOTBalanceClassMasses(t->nstudent, slabels, a, t->nteacher, tlabels, b, NULL, NULL));
      PetscCall(AckdOTSetLabels(ot, slabels, tlabels));
    } else {
      /* A student's label does not choose its teachers: with noisy labels the teacher's prediction
       * may disagree with it, which is what it would teach. */
      AckdOTNormaliseMasses(t->nstudent, a);
      AckdOTNormaliseMasses(t->nteacher, b);
    }
    PetscCall(AckdOTSetMarginals(ot, a, b));
    PetscCall(PetscFree2(a, b));
  }
  PetscCall(AckdOTSetFeatures(ot, srows, trows));
  PetscCall(AckdOTSolve(ot));
  PetscCall(AckdOTGetTopK(ot, &k, &nrows, &rows, &index, &weight));

  /* Each student row is held by exactly one rank: gather them into the full table everywhere. */
  PetscInt    stride = 1 + 2 * k;
  double     *mine, *all;
  PetscMPIInt count = (PetscMPIInt)(nrows * stride), *counts, *displs;
  PetscCall(PetscMalloc1(PetscMax(count, 1), &mine));
  for (PetscInt r = 0; r < nrows; r++) {
    mine[r * stride] = (double)rows[r];
    for (PetscInt j = 0; j < k; j++) {
      mine[r * stride + 1 + j]     = (double)index[r * k + j];
      mine[r * stride + 1 + k + j] = weight[r * k + j];
    }
  }
  PetscCall(PetscMalloc3(size, &counts, size, &displs, t->nstudent * stride, &all));
  PetscCallMPI(MPI_Allgather(&count, 1, MPI_INT, counts, 1, MPI_INT, t->comm));
  displs[0] = 0;
  for (PetscMPIInt p = 1; p < size; p++) displs[p] = displs[p - 1] + counts[p - 1];
  PetscCheck(displs[size - 1] + counts[size - 1] == t->nstudent * stride, t->comm, PETSC_ERR_PLIB,
             "re-matching returned %d of %" PetscInt_FMT " student rows",
             (int)((displs[size - 1] + counts[size - 1]) / stride), t->nstudent);
  PetscCallMPI(MPI_Allgatherv(mine, count, MPI_DOUBLE, all, counts, displs, MPI_DOUBLE, t->comm));
  /* The table keeps its width (a checkpoint holds it by address and size): extra columns are empty. */
  if (!t->index) PetscCall(allocate_table(t, k));
  for (PetscInt r = 0; r < t->nstudent; r++) {
    const PetscInt s = (PetscInt)all[r * stride];
    for (PetscInt j = 0; j < t->k; j++) {
      const PetscBool have    = (PetscBool)(j < k && all[r * stride + 1 + j] >= 0);
      t->index[s * t->k + j]  = have ? (float)all[r * stride + 1 + j] : -1.0f;
      t->weight[s * t->k + j] = have ? (float)all[r * stride + 1 + k + j] : 0.0f;
    }
  }
  PetscCall(PetscFree3(counts, displs, all));
  PetscCall(PetscFree(mine));
  PetscCall(PetscFree4(srows, trows, slabels, tlabels));
  PetscCall(AckdOTDestroy(&ot));
  PetscFunctionReturn(0);
}

/* The table is sorted by decreasing weight: the first live column is the top-1. */
PetscErrorCode AckdTeacherTargetsGetTop1(AckdTeacherTargets t, PetscInt *top1)
{
  PetscFunctionBeginUser;
  for (PetscInt s = 0; s < t->nstudent; s++) {
    top1[s] = -1;
    for (PetscInt j = 0; j < t->k && top1[s] < 0; j++)
      if (t->index[s * t->k + j] >= 0 && t->weight[s * t->k + j] > 0) top1[s] = (PetscInt)t->index[s * t->k + j];
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTeacherTargetsStatistics(AckdTeacherTargets t, const PetscInt *previous, AckdMatchStatistics *st)
{
  PetscInt *top1, *count, changed = 0;
  double    own = 0.0;

  PetscFunctionBeginUser;
  PetscCheck(t->index, PETSC_COMM_SELF, PETSC_ERR_ORDER, "no matching loaded: give -distill_match");
  PetscCall(PetscMalloc1(PetscMax(t->nstudent, 1), &top1));
  PetscCall(PetscCalloc1(PetscMax(t->nteacher, 1), &count));
  PetscCall(AckdTeacherTargetsGetTop1(t, top1));
  *st = (AckdMatchStatistics){0};
  for (PetscInt s = 0; s < t->nstudent; s++) {
    const PetscInt j = top1[s], y = t->student_labels[s];
    if (j < 0) continue;
    st->matched++;
    if (count[j]++ == 0) st->distinct_teachers++;
    st->largest_hub = PetscMax(st->largest_hub, count[j]);
    if (previous && previous[s] != j) changed++;
    /* The projected logits hold min(z) - 50 on the classes the teacher lacks: ~0 after the softmax. */
    const float *z   = t->logits + j * t->classes;
    double       max = z[0], sum = 0.0;
    for (PetscInt c = 1; c < t->classes; c++) max = PetscMax(max, (double)z[c]);
    for (PetscInt c = 0; c < t->classes; c++) sum += exp((double)z[c] - max);
    if (y >= 0 && y < t->classes) own += exp((double)z[y] - max) / sum;
  }
  st->changed               = previous && st->matched ? (double)changed / (double)st->matched : NAN;
  st->own_class_probability = st->matched ? own / (double)st->matched : NAN;
  PetscCall(PetscFree(top1));
  PetscCall(PetscFree(count));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTeacherTargetsDescribe(AckdTeacherTargets t, char *text, size_t len)
{
  const size_t n = (size_t)t->nteacher;
  uint64_t     h = ACKD_DIGEST_START;

  PetscFunctionBeginUser;
  h = AckdDigest(h, t->logits, sizeof(float) * n * (size_t)t->classes);
  h = AckdDigest(h, t->teacher_rows, sizeof(PetscInt) * n);
  h = AckdDigest(h, t->teacher_labels, sizeof(int) * n);
  if (t->embedding) h = AckdDigest(h, t->embedding, sizeof(float) * n * (size_t)t->dim);
  snprintf(text, len, "%" PetscInt_FMT " teacher samples x %" PetscInt_FMT " classes, gallery %016llx", t->nteacher,
           t->classes, (unsigned long long)h);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTeacherTargetsDestroy(AckdTeacherTargets *targets)
{
  AckdTeacherTargets t = *targets;

  PetscFunctionBeginUser;
  if (!t) PetscFunctionReturn(0);
  PetscCall(PetscFree3(t->logits, t->teacher_rows, t->teacher_labels));
  PetscCall(PetscFree(t->embedding));
  PetscCall(PetscFree2(t->student_of_row, t->student_labels));
  PetscCall(PetscFree2(t->index, t->weight));
  PetscCall(PetscFree(*targets));
  PetscFunctionReturn(0);
}
