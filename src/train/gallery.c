/* The teacher gallery: what the frozen teacher says about every teacher
 * sample, computed once so that distillation never runs the teacher again
 * unless a method needs its tokens. */
#define _XOPEN_SOURCE 700 /* realpath is XSI: _POSIX_C_SOURCE alone leaves it undeclared */
#include <ackd/train.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  float   *logits, *embedding;
  PetscInt classes, dim;
} GalleryCtx;

static PetscErrorCode keep_outputs(void *ctx, PetscInt first, PetscInt n, const AckdModelOutputs *out)
{
  GalleryCtx *g = (GalleryCtx *)ctx;

  PetscFunctionBeginUser;
  PetscCall(PetscArraycpy(g->logits + first * g->classes, out->logits.data, n * g->classes));
  PetscCall(PetscArraycpy(g->embedding + first * g->dim, out->embedding.data, n * g->dim));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdGalleryWrite(MPI_Comm comm, AckdModel model, AckdEngine *engine, AckdSharedDataset dataset,
                                const AckdCollectionInfo *info, const char *path, const char *source)
{
  PetscInt       nglobal, nlocal, first, *rows, dim = 0;
  GalleryCtx     g  = {.classes = info->classes};
  AckdH5Settings h5 = {0};
  hid_t          file, group;
  const int     *labels;

  PetscFunctionBeginUser;
  PetscCall(AckdH5SettingsSetFromOptions(&h5));
  PetscCall(AckdSplitRows(comm, dataset, 0, &nglobal, &nlocal, &rows, &first));
  {
    /* One sample through the model tells the embedding width on every rank. */
    AckdModelOutputs out;
    PetscCall(AckdModelProbe(model, engine, dataset, &out));
    dim = out.embedding.c * out.embedding.h * out.embedding.w;
  }
  g.dim = dim;
  PetscCall(PetscMalloc2(PetscMax(nlocal, 1) * info->classes, &g.logits, PetscMax(nlocal, 1) * dim, &g.embedding));
  PetscCall(AckdModelPredict(model, engine, dataset, nlocal, rows, 128, keep_outputs, &g));

  long long           *index;
  int                 *local_labels;
  const unsigned char *multilabels;
  unsigned char       *local_multi;
  const int           *dominant;
  PetscInt             columns;
  PetscCall(AckdSharedDatasetGetArrays(dataset, NULL, &labels, NULL));
  PetscCall(AckdSharedDatasetGetMultilabels(dataset, &columns, &multilabels));
  PetscCall(AckdSharedDatasetGetDominant(dataset, &dominant));
  PetscCall(PetscMalloc3(PetscMax(nlocal, 1), &index, PetscMax(nlocal, 1), &local_labels, PetscMax(nlocal * columns, 1),
                         &local_multi));
  for (PetscInt i = 0; i < nlocal; i++) {
    index[i]        = rows[i];
    local_labels[i] = dominant ? dominant[rows[i]] : labels[rows[i]];
    if (multilabels) PetscCall(PetscArraycpy(local_multi + i * columns, multilabels + rows[i] * columns, columns));
  }

  PetscCall(AckdH5FileCreatePartial(comm, path, &h5, &file));
  PetscCall(AckdH5AttrWriteString(file, "ackd_format", ACKD_FORMAT_GALLERY));
  PetscCall(AckdH5AttrWriteInt(file, "ackd_format_version", ACKD_FORMAT_GALLERY_VERSION));
  PetscCall(AckdH5AttrWriteString(file, "ackd_version", ACKD_VERSION_STRING));
  PetscCall(AckdH5AttrWriteString(file, "source", source));
  PetscCall(AckdH5AttrWriteInt(file, "multilabel", multilabels != NULL));
  AckdCallH5(group = H5Gcreate2(file, "gallery", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "'%s': creating /gallery",
             path);
  PetscCall(AckdH5WriteRows(comm, group, "logits", H5T_NATIVE_FLOAT, nglobal, info->classes, first, nlocal, g.logits));
  PetscCall(AckdH5WriteRows(comm, group, "embedding", H5T_NATIVE_FLOAT, nglobal, dim, first, nlocal, g.embedding));
  if (multilabels) /* a multi-label teacher: its (N_t, K) 0/1 table, as in the dataset */
    PetscCall(AckdH5WriteRows(comm, group, "labels", H5T_NATIVE_UCHAR, nglobal, columns, first, nlocal, local_multi));
  else
    PetscCall(AckdH5WriteRows(comm, group, "labels", H5T_NATIVE_INT, nglobal, 0, first, nlocal, local_labels));
  if (multilabels && dominant) /* the class each sample stands for in the matching (docs/FORMATS.md) */
    PetscCall(AckdH5WriteRows(comm, group, "dominant_class", H5T_NATIVE_INT, nglobal, 0, first, nlocal, local_labels));
  PetscCall(AckdH5WriteRows(comm, group, "index", H5T_NATIVE_LLONG, nglobal, 0, first, nlocal, index));
  PetscCall(AckdH5WriteStrings(comm, group, "classes", info->classes, (const char *const *)info->class_names));
  H5Gclose(group);
  PetscCall(AckdH5FileCommit(comm, &file, path));
  PetscCall(PetscFree3(index, local_labels, local_multi));
  PetscCall(PetscFree2(g.logits, g.embedding));
  PetscCall(PetscFree(rows));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdGalleryIsMultilabel(MPI_Comm comm, const char *path, PetscBool *multilabel)
{
  AckdH5Settings h5 = {0};
  hid_t          file, dset, space;
  int            ndims = 1;

  PetscFunctionBeginUser;
  PetscCall(AckdH5SettingsSetFromOptions(&h5));
  PetscCall(AckdH5FileOpenRead(comm, path, &h5, &file));
  if (H5Lexists(file, "gallery", H5P_DEFAULT) > 0 && H5Lexists(file, "gallery/labels", H5P_DEFAULT) > 0) {
    AckdCallH5(dset = H5Dopen2(file, "gallery/labels", H5P_DEFAULT), "'%s': opening /gallery/labels", path);
    space = H5Dget_space(dset);
    ndims = H5Sget_simple_extent_ndims(space);
    H5Sclose(space);
    H5Dclose(dset);
  }
  PetscCall(AckdH5FileClose(&file, path));
  *multilabel = (PetscBool)(ndims == 2);
  PetscFunctionReturn(0);
}

typedef struct {
  char     architecture[64], data[PETSC_MAX_PATH_LEN];
  double   width;
  PetscInt classes, in_channels;
} TeacherFacts;

static PetscErrorCode read_facts(MPI_Comm comm, const char *path, TeacherFacts *f)
{
  AckdH5Settings h5 = {0};
  hid_t          file;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(f, sizeof *f));
  PetscCall(AckdH5FileOpenRead(comm, path, &h5, &file));
  PetscCall(AckdH5AttrReadString(file, "architecture", f->architecture, sizeof f->architecture, NULL));
  PetscCall(AckdH5AttrReadString(file, "data", f->data, sizeof f->data, NULL));
  PetscCall(AckdH5AttrReadReal(file, "width", &f->width, NULL));
  PetscCall(AckdH5AttrReadInt(file, "classes", &f->classes, NULL));
  PetscCall(AckdH5AttrReadInt(file, "in_channels", &f->in_channels, NULL));
  PetscCall(AckdH5FileClose(&file, path));
  PetscFunctionReturn(0);
}

/* The same file under two spellings (relative, absolute) is the same dataset. */
static PetscBool same_file(const char *a, const char *b)
{
  char ra[PATH_MAX], rb[PATH_MAX];
  if (!strcmp(a, b)) return PETSC_TRUE;
  if (realpath(a, ra) && realpath(b, rb)) return (PetscBool)!strcmp(ra, rb);
  return PETSC_FALSE;
}

PetscErrorCode AckdGalleryCheckTeacher(MPI_Comm comm, const char *gallery, const char *teacher, const char *option)
{
  AckdH5Settings h5 = {0};
  hid_t          file;
  char           source[PETSC_MAX_PATH_LEN] = "";
  PetscBool      found, readable;
  TeacherFacts   mine, theirs;

  PetscFunctionBeginUser;
  if (!teacher || !teacher[0]) PetscFunctionReturn(0);
  PetscCall(AckdH5FileOpenRead(comm, gallery, &h5, &file));
  PetscCall(AckdH5AttrReadString(file, "source", source, sizeof source, &found));
  PetscCall(AckdH5FileClose(&file, gallery));
  if (!found || !source[0] || same_file(teacher, source)) PetscFunctionReturn(0);
  /* A gallery from elsewhere (its source not here) cannot be compared. */
  PetscCall(AckdFileReadable(comm, source, &readable));
  if (!readable) PetscFunctionReturn(0);
  PetscCall(read_facts(comm, teacher, &mine));
  PetscCall(read_facts(comm, source, &theirs));
  /* The gallery's logits and the teacher's tokens must come from one network:
   * another architecture, width or dataset gives targets and tokens that disagree. */
  char what[64] = "";
  if (strcmp(mine.architecture, theirs.architecture) || fabs(mine.width - theirs.width) > 1e-9)
    snprintf(what, sizeof what, "architecture");
  else if (mine.classes != theirs.classes || mine.in_channels != theirs.in_channels ||
           (mine.data[0] && theirs.data[0] && !same_file(mine.data, theirs.data)))
    snprintf(what, sizeof what, "dataset");
  if (!what[0]) PetscFunctionReturn(0);
  char mine_text[128], theirs_text[128];
  snprintf(mine_text, sizeof mine_text, "%s (width %g)", mine.architecture, mine.width);
  snprintf(theirs_text, sizeof theirs_text, "%s (width %g)", theirs.architecture, theirs.width);
  SETERRQ(comm, PETSC_ERR_USER_INPUT,
          "option %s: '%s' is a %s trained on '%s', but gallery '%s' comes from '%s', a %s trained on '%s' (another "
          "%s); give %s '%s' (or leave it out), or a gallery written by that teacher",
          option, teacher, mine_text, mine.data, gallery, source, theirs_text, theirs.data, what, option, source);
}
