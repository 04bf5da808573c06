/* The self-supervised matcher (`ackd ssm`; docs/DESIGN.md §2, item 2),
 * trained data parallel on the MS collection, then the embeddings that
 * `ackd match` reads.
 *
 * Two encoders see the same augmented MS image: one all its bands, the other
 * its pseudo-RGB (three MS bands, -ssm_rgb_bands). Each pooled embedding goes
 * through its own projection head, and the soft-target contrastive loss pulls
 * the two views of an image together. Afterwards every MS training sample is
 * embedded with the MS encoder (the teacher side) and every real RGB training
 * sample with the encoder trained on pseudo-RGB (the student side): that the
 * real RGB images go through the pseudo-RGB encoder is the method. Each
 * collection's bands are first standardised by its own statistics
 * (-ssm_standardize): the pseudo-RGB is reflectance, the RGB camera's values
 * are display values, and an encoder trained on one unit retrieves nothing of
 * a student's own ground from the other (docs/RESULTS.md, "The true pairs").
 *
 * Checkpoint groups: ms_encoder, rgb_encoder (the encoders' state_dicts) and
 * heads (ms_head.*, rgb_head.*). Output: DIR/embeddings.h5, docs/FORMATS.md. */
#include <ackd/ckpt.h>
#include <ackd/kd.h>
#include <ackd/train.h>
#include <ctype.h>
#include <math.h>
#include <sys/stat.h>

/* Dropout tags of the two heads: apart from any model's own. */
enum { SSM_TAG_MS_HEAD = 0x53534d01, SSM_TAG_RGB_HEAD = 0x53534d02 };

struct _p_AckdMatcher {
  MPI_Comm           comm;
  AckdTrainer        trainer;
  AckdModel          ms_model, rgb_model;
  AckdModelConfig    ms_config, rgb_config;
  AckdParams         heads;
  AckdSSMHead        ms_head, rgb_head;
  AckdSharedDataset  ms_data, rgb_data;
  AckdCollectionInfo ms_info, rgb_info;
  PetscInt           bands[3]; /* 0-based MS bands of the pseudo-RGB's R, G, B */
  PetscInt           dim, eval_batch;
  double             tau, head_dropout;
  float             *pseudo, *e_ms, *e_rgb, *de_ms, *de_rgb, *dx_ms, *dx_rgb;
  PetscInt           capacity, global_capacity, embedding; /* rows the buffers hold; the encoders' embedding width */
  PetscBool          local_loss;
  PetscBool          standardize; /* each collection's bands by its own statistics (-ssm_standardize) */
  char               data[PETSC_MAX_PATH_LEN];
  /* the options, read by AckdMatcherSetFromOptions */
  PetscInt       given[16], ngiven; /* -ssm_rgb_bands: room for more than 3, a count error rather than truncation */
  PetscBool      have_data, setup;
  AckdH5Settings h5;
};
typedef struct _p_AckdMatcher SSMContext;

/* ---------------------------------------------------------------- pseudo-RGB bands */

/* The bands' names and wavelengths as the dataset records them (either may be absent). */
static PetscErrorCode read_band_metadata(MPI_Comm comm, const char *path, PetscInt nbands, char (*names)[16],
                                         double *wavelength, PetscBool *have_names, PetscBool *have_wavelength)
{
  AckdH5Settings h5 = {0};
  hid_t          file, dset, type;

  PetscFunctionBeginUser;
  *have_names = *have_wavelength = PETSC_FALSE;
  PetscCall(AckdH5SettingsSetFromOptions(&h5));
  PetscCall(AckdH5FileOpenRead(comm, path, &h5, &file));
  if (H5Lexists(file, "ms/bands", H5P_DEFAULT) > 0) {
    AckdCallH5(dset = H5Dopen2(file, "ms/bands", H5P_DEFAULT), "'%s': opening /ms/bands", path);
    AckdCallH5(type = H5Tcopy(H5T_C_S1), "string type");
    AckdCallH5(H5Tset_size(type, 16), "string size");
    /* Longer names than 16 bytes are cut: none that identifies a colour is. */
    AckdCallH5(H5Dread(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, names), "'%s': reading /ms/bands", path);
    for (PetscInt b = 0; b < nbands; b++) names[b][15] = 0;
    H5Tclose(type);
    H5Dclose(dset);
    *have_names = PETSC_TRUE;
  }
  if (H5Lexists(file, "ms/wavelength_nm", H5P_DEFAULT) > 0) {
    AckdCallH5(dset = H5Dopen2(file, "ms/wavelength_nm", H5P_DEFAULT), "'%s': opening /ms/wavelength_nm", path);
    AckdCallH5(H5Dread(dset, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, wavelength),
               "'%s': reading /ms/wavelength_nm", path);
    H5Dclose(dset);
    *have_wavelength = PETSC_TRUE;
  }
  PetscCall(AckdH5FileClose(&file, path));
  PetscFunctionReturn(0);
}

static PetscBool same_name(const char *a, const char *b)
{
  for (; *a && *b; a++, b++)
    if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return PETSC_FALSE;
  return (PetscBool)(*a == *b);
}

/* Red, green, blue among the MS bands: Sentinel-2's B4, B3, B2 by name, else
 * the bands nearest to their centre wavelengths, else 3, 2, 1. */
static PetscErrorCode choose_bands(SSMContext *c, char *how, size_t len)
{
  static const char *const S2_NAMES[3] = {"B4", "B3", "B2"};
  static const double      S2_NM[3]    = {665.0, 560.0, 490.0};
  const PetscInt           C           = c->ms_info.channels;
  char(*names)[16];
  double   *nm;
  PetscBool have_names, have_nm, found = PETSC_FALSE;

  PetscFunctionBeginUser;
  PetscCall(PetscCalloc2(C, &names, C, &nm));
  PetscCall(read_band_metadata(c->comm, c->data, C, names, nm, &have_names, &have_nm));
  if (have_names) {
    found = PETSC_TRUE;
    for (PetscInt k = 0; k < 3; k++) {
      c->bands[k] = -1;
      for (PetscInt b = 0; b < C; b++)
        if (same_name(names[b], S2_NAMES[k])) c->bands[k] = b;
      found = (PetscBool)(found && c->bands[k] >= 0);
    }
    if (found) snprintf(how, len, "Sentinel-2 B4, B3, B2 by band name");
  }
  if (!found && have_nm) {
    for (PetscInt k = 0; k < 3; k++) {
      c->bands[k] = 0;
      for (PetscInt b = 1; b < C; b++)
        if (fabs(nm[b] - S2_NM[k]) < fabs(nm[c->bands[k]] - S2_NM[k])) c->bands[k] = b;
    }
    found = (PetscBool)(c->bands[0] != c->bands[1] && c->bands[1] != c->bands[2] && c->bands[0] != c->bands[2]);
    if (found)
      snprintf(how, len, "nearest to 665, 560, 490 nm: %.0f, %.0f, %.0f nm", nm[c->bands[0]], nm[c->bands[1]],
               nm[c->bands[2]]);
  }
  if (!found) {
    for (PetscInt k = 0; k < 3; k++) c->bands[k] = 2 - k;
    snprintf(how, len, "no band name or wavelength identifies red, green, blue: the default; set -ssm_rgb_bands");
  }
  PetscCall(PetscFree2(names, nm));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------- training step */

static PetscErrorCode reserve(SSMContext *c, PetscInt rows, PetscInt global_rows, PetscInt plane)
{
  PetscFunctionBeginUser;
  if (rows > c->capacity) {
    PetscCall(PetscFree3(c->pseudo, c->dx_ms, c->dx_rgb));
    PetscCall(PetscMalloc3((size_t)rows * 3 * plane, &c->pseudo, rows * c->embedding, &c->dx_ms, rows * c->embedding,
                           &c->dx_rgb));
    c->capacity = rows;
  }
  if (global_rows > c->global_capacity) {
    PetscCall(PetscFree4(c->e_ms, c->e_rgb, c->de_ms, c->de_rgb));
    PetscCall(PetscMalloc4(global_rows * c->dim, &c->e_ms, global_rows * c->dim, &c->e_rgb, global_rows * c->dim,
                           &c->de_ms, global_rows * c->dim, &c->de_rgb));
    c->global_capacity = global_rows;
  }
  PetscFunctionReturn(0);
}

/* Every rank's rows of the two embeddings, in rank order, behind each other
 * in e_ms and e_rgb: the loss over the global batch, as one process sees it. */
static PetscErrorCode gather_embeddings(SSMContext *c, PetscInt nlocal)
{
  PetscMPIInt size, rank, mine = (PetscMPIInt)(nlocal * c->dim), *counts, *displs;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_size(c->comm, &size));
  PetscCallMPI(MPI_Comm_rank(c->comm, &rank));
  PetscCall(PetscMalloc2(size, &counts, size, &displs));
  PetscCallMPI(MPI_Allgather(&mine, 1, MPI_INT, counts, 1, MPI_INT, c->comm));
  displs[0] = 0;
  for (PetscMPIInt p = 1; p < size; p++) displs[p] = displs[p - 1] + counts[p - 1];
  PetscCallMPI(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, c->e_ms, counts, displs, MPI_FLOAT, c->comm));
  PetscCallMPI(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, c->e_rgb, counts, displs, MPI_FLOAT, c->comm));
  PetscCall(PetscFree2(counts, displs));
  PetscFunctionReturn(0);
}

static PetscErrorCode ssm_step(void *ctx, AckdEngine *engine, const AckdTrainBatch *b, AckdTrainStepResult *r)
{
  SSMContext      *c = (SSMContext *)ctx;
  AckdModelOutputs ms, rgb;
  const PetscInt   B = b->nlocal, N = b->nglobal, plane = b->images.h * b->images.w;
  /* Where this rank's rows sit in the embedding buffers: after the other ranks' with the global loss. */
  const PetscInt at = c->local_loss ? 0 : b->sample_offset, rows = c->local_loss ? B : N;
  double         loss;

  PetscFunctionBeginUser;
  PetscCall(reserve(c, PetscMax(B, 1), rows, plane));
  AckdTensor e_ms   = AckdTensorView(c->e_ms + at * c->dim, B, c->dim, 1, 1);
  AckdTensor e_rgb  = AckdTensorView(c->e_rgb + at * c->dim, B, c->dim, 1, 1);
  AckdTensor de_ms  = AckdTensorView(c->de_ms + at * c->dim, B, c->dim, 1, 1);
  AckdTensor de_rgb = AckdTensorView(c->de_rgb + at * c->dim, B, c->dim, 1, 1);
  AckdTensor dx_ms  = AckdTensorView(c->dx_ms, B, c->embedding, 1, 1);
  AckdTensor dx_rgb = AckdTensorView(c->dx_rgb, B, c->embedding, 1, 1);
  if (B > 0) {
    /* The pseudo-RGB of the augmented batch: the same augmentation for free. */
    for (PetscInt i = 0; i < B; i++)
      for (PetscInt k = 0; k < 3; k++)
        PetscCall(PetscArraycpy(c->pseudo + (i * 3 + k) * plane,
                                b->images.data + (i * b->images.c + c->bands[k]) * plane, plane));
    AckdTensor pseudo = AckdTensorView(c->pseudo, B, 3, b->images.h, b->images.w);
    PetscCall(AckdModelForward(c->ms_model, engine, &b->images, &ms));
    PetscCall(AckdModelForward(c->rgb_model, engine, &pseudo, &rgb));
    PetscCall(AckdSSMHeadSetTraining(&c->ms_head, PETSC_TRUE, b->step, b->sample_offset));
    PetscCall(AckdSSMHeadSetTraining(&c->rgb_head, PETSC_TRUE, b->step, b->sample_offset));
    PetscCall(AckdSSMHeadForward(&c->ms_head, engine, &ms.embedding, &e_ms));
    PetscCall(AckdSSMHeadForward(&c->rgb_head, engine, &rgb.embedding, &e_rgb));
  } else {
    /* An empty share still runs through both encoders: synchronised batch norm reduces over every rank. */
    AckdTensor none = AckdTensorView(c->pseudo, 0, 3, b->images.h, b->images.w);
    PetscCall(AckdModelForward(c->ms_model, engine, &b->images, &ms));
    PetscCall(AckdModelForward(c->rgb_model, engine, &none, &rgb));
  }
  if (c->local_loss) { /* DDP: this rank's batch, weighted B_local / N (kd.h) */
    if (B > 0) PetscCall(AckdSSMLoss(&e_rgb, &e_ms, c->tau, (double)B / (double)N, &loss, &de_rgb, &de_ms));
  } else {
    /* Every rank, even one without samples, takes part in the gather, then
     * computes the same global loss (a B x B problem, cheap) and keeps the
     * gradient rows of its samples: summed over ranks, the parameter
     * gradients are those of the global loss. */
    PetscCall(gather_embeddings(c, B));
    AckdTensor all_ms = AckdTensorView(c->e_ms, N, c->dim, 1, 1), all_rgb = AckdTensorView(c->e_rgb, N, c->dim, 1, 1);
    AckdTensor d_all_ms  = AckdTensorView(c->de_ms, N, c->dim, 1, 1);
    AckdTensor d_all_rgb = AckdTensorView(c->de_rgb, N, c->dim, 1, 1);
    PetscCall(AckdSSMLoss(&all_rgb, &all_ms, c->tau, 1.0, &loss, &d_all_rgb, &d_all_ms));
    loss *= (double)B / (double)N; /* this rank's share of the reported value */
  }
  if (B == 0) { /* empty share: zero encoder gradients, in group order (the trainer zeroes the heads') */
    PetscCall(AckdModelBackward(c->ms_model, engine, NULL, &dx_ms, NULL));
    PetscCall(AckdModelBackward(c->rgb_model, engine, NULL, &dx_rgb, NULL));
    PetscFunctionReturn(0);
  }
  r->loss    = loss;
  r->correct = NAN; /* SSM pairs samples, it classifies none: no accuracy line */
  PetscCall(AckdSSMHeadBackward(&c->ms_head, engine, &ms.embedding, &de_ms, &dx_ms));
  PetscCall(AckdSSMHeadBackward(&c->rgb_head, engine, &rgb.embedding, &de_rgb, &dx_rgb));
  /* In the trainer's group order (ms_encoder, then rgb_encoder): backward
   * starts each group's gradient allreduces, and a rank without samples
   * starts them in group order; collectives must match on every rank. */
  PetscCall(AckdModelBackward(c->ms_model, engine, NULL, &dx_ms, NULL));
  PetscCall(AckdModelBackward(c->rgb_model, engine, NULL, &dx_rgb, NULL));
  PetscFunctionReturn(0);
}

static PetscErrorCode describe(void *ctx, hid_t file)
{
  SSMContext *c           = (SSMContext *)ctx;
  PetscInt    one_based[] = {c->bands[0] + 1, c->bands[1] + 1, c->bands[2] + 1};

  PetscFunctionBeginUser;
  PetscCall(AckdModelConfigWrite(&c->ms_config, file));
  PetscCall(AckdH5AttrWriteString(file, "modality", "ms"));
  PetscCall(AckdH5AttrWriteString(file, "data", c->data));
  PetscCall(AckdH5AttrWriteIntArray(file, "rgb_bands", 3, one_based));
  PetscCall(AckdH5AttrWriteInt(file, "ssm_dim", c->dim));
  PetscCall(AckdH5AttrWriteReal(file, "ssm_tau", c->tau));
  PetscCall(AckdH5AttrWriteInt(file, "ssm_standardize", c->standardize));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------- set-up */

/* The encoder's pooled embedding width, from one image in evaluation mode. */
static PetscErrorCode embedding_width(AckdModel model, AckdEngine *engine, AckdSharedDataset dataset,
                                      const PetscInt *bands, PetscInt *width)
{
  PetscInt         count, C, H, W, row0 = 0;
  AckdModelOutputs out;
  float           *x, *all;

  PetscFunctionBeginUser;
  PetscCall(AckdSharedDatasetGetShape(dataset, &count, &C, &H, &W));
  PetscCall(PetscMalloc1(C * H * W, &all));
  PetscCall(AckdSharedDatasetReadImages(dataset, 1, &row0, all));
  const PetscInt nb = bands ? 3 : C;
  PetscCall(PetscMalloc1(nb * H * W, &x));
  for (PetscInt k = 0; k < nb; k++)
    PetscCall(PetscArraycpy(x + k * H * W, all + (bands ? bands[k] : k) * H * W, H * W));
  AckdTensor img = AckdTensorView(x, 1, nb, H, W);
  PetscCall(AckdModelSetTraining(model, PETSC_FALSE));
  PetscCall(AckdModelForward(model, engine, &img, &out));
  PetscCall(AckdModelSetTraining(model, PETSC_TRUE));
  *width = AckdTensorSize(&out.embedding);
  PetscCall(PetscFree(x));
  PetscCall(PetscFree(all));
  PetscFunctionReturn(0);
}

static PetscErrorCode build(SSMContext *c, AckdTrainer t)
{
  PetscInt    seed, dim_rgb;
  AckdEngine *engine;

  PetscFunctionBeginUser;
  PetscCall(AckdTrainerGetSeed(t, &seed));
  PetscCall(AckdTrainerGetEngine(t, &engine));
  c->ms_config.in_channels  = c->ms_info.channels;
  c->ms_config.classes      = c->ms_info.classes;
  c->ms_config.image_size   = c->ms_info.height;
  c->rgb_config             = c->ms_config;
  c->rgb_config.in_channels = 3;
  PetscCall(AckdModelCreate(c->comm, &c->ms_model));
  PetscCall(AckdModelSetUp(c->ms_model, &c->ms_config, (uint64_t)seed));
  PetscCall(AckdModelCreate(c->comm, &c->rgb_model));
  PetscCall(AckdModelSetUp(c->rgb_model, &c->rgb_config, (uint64_t)seed + 1));
  PetscCall(embedding_width(c->ms_model, engine, c->ms_data, NULL, &c->embedding));
  PetscCall(embedding_width(c->rgb_model, engine, c->ms_data, c->bands, &dim_rgb));
  PetscCheck(dim_rgb == c->embedding, c->comm, PETSC_ERR_PLIB, "the two encoders' embeddings differ in width");

  PetscCall(AckdParamsCreate(&c->heads));
  PetscCall(AckdSSMHeadSetUp(&c->ms_head, &c->heads, "ms_head", c->embedding, c->dim, c->head_dropout, (uint64_t)seed,
                             SSM_TAG_MS_HEAD));
  PetscCall(AckdSSMHeadSetUp(&c->rgb_head, &c->heads, "rgb_head", c->embedding, c->dim, c->head_dropout, (uint64_t)seed,
                             SSM_TAG_RGB_HEAD));
  PetscCall(AckdParamsSetUp(&c->heads));
  PetscCall(AckdParamsInitialize(&c->heads, (uint64_t)seed + 2));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------- embeddings */

typedef struct {
  AckdSSMHead *head;
  AckdEngine  *engine;
  float       *features;
  PetscInt     dim;
} EmbedContext;

static PetscErrorCode embed_batch(void *ctx, PetscInt first, PetscInt n, const AckdModelOutputs *out)
{
  EmbedContext *e = (EmbedContext *)ctx;
  AckdTensor    y = AckdTensorView(e->features + first * e->dim, n, e->dim, 1, 1);

  PetscFunctionBeginUser;
  PetscCall(AckdSSMHeadForward(e->head, e->engine, &out->embedding, &y));
  for (PetscInt i = 0; i < n; i++) { /* as F.normalize: x / max(|x|, 1e-12) */
    float *row = y.data + i * e->dim;
    double sum = 0;
    for (PetscInt k = 0; k < e->dim; k++) sum += (double)row[k] * row[k];
    const double inv = 1.0 / PetscMax(sqrt(sum), 1e-12);
    for (PetscInt k = 0; k < e->dim; k++) row[k] = (float)(row[k] * inv);
  }
  PetscFunctionReturn(0);
}

/* One side of the embeddings file: /NAME/features, labels, index; this rank writes its contiguous rows. */
typedef struct {
  const char *name, *collection;
  PetscInt    nglobal, first, n, dim;
  float      *features;
  int        *labels;
  long long  *index;
} Side;

static PetscErrorCode embed_side(SSMContext *c, AckdEngine *engine, AckdModel model, AckdSSMHead *head,
                                 AckdSharedDataset dataset, const int *label_map, PetscInt nmap, Side *s)
{
  PetscInt  *rows;
  const int *labels;

  PetscFunctionBeginUser;
  PetscCall(AckdSplitRows(c->comm, dataset, 0, &s->nglobal, &s->n, &rows, &s->first));
  s->dim = c->dim;
  PetscCall(PetscMalloc3(PetscMax(s->n, 1) * c->dim, &s->features, PetscMax(s->n, 1), &s->labels, PetscMax(s->n, 1),
                         &s->index));
  PetscCall(AckdSSMHeadSetTraining(head, PETSC_FALSE, 0, 0));
  EmbedContext e = {.head = head, .engine = engine, .features = s->features, .dim = c->dim};
  PetscCall(AckdModelPredict(model, engine, dataset, s->n, rows, c->eval_batch, embed_batch, &e));
  PetscCall(AckdSharedDatasetGetArrays(dataset, NULL, &labels, NULL));
  const unsigned char *multi;
  const int           *dominant;
  PetscInt             columns;
  PetscCall(AckdSharedDatasetGetMultilabels(dataset, &columns, &multi));
  PetscCall(AckdSharedDatasetGetDominant(dataset, &dominant));
  for (PetscInt i = 0; i < s->n; i++) {
    const int y = labels[rows[i]];
    s->index[i] = rows[i];
    if (multi && label_map) /* M2S: one student class per MS sample, without teacher scores (docs/FORMATS.md) */
      s->labels[i] =
          (int)AckdMultilabelStudentClass(PetscMin(columns, nmap), multi + rows[i] * columns,
                                          dominant ? dominant[rows[i]] : -1, NULL, label_map, c->rgb_info.classes);
    else if (label_map)
      s->labels[i] = y >= 0 && y < nmap ? label_map[y] : -1;
    else
      s->labels[i] = y;
  }
  PetscCall(PetscFree(rows));
  PetscFunctionReturn(0);
}

static PetscErrorCode write_side(MPI_Comm comm, hid_t file, const Side *s, const char *path)
{
  const struct {
    const char *name;
    hid_t       type;
    PetscInt    columns; /* 0: a vector */
    const void *data;
  } arrays[] = {{"features", H5T_NATIVE_FLOAT, s->dim, s->features},
                {"labels", H5T_NATIVE_INT, 0, s->labels},
                {"index", H5T_NATIVE_LLONG, 0, s->index}};
  hid_t group;

  PetscFunctionBeginUser;
  AckdCallH5(group = H5Gcreate2(file, s->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "'%s': creating /%s", path,
             s->name);
  PetscCall(AckdH5AttrWriteString(group, "collection", s->collection));
  for (size_t a = 0; a < sizeof arrays / sizeof arrays[0]; a++)
    PetscCall(AckdH5WriteRows(comm, group, arrays[a].name, arrays[a].type, s->nglobal, arrays[a].columns, s->first,
                              s->n, arrays[a].data));
  H5Gclose(group);
  PetscFunctionReturn(0);
}

/* Whether `path` exists and was modified after `than` (rank 0 decides). */
static PetscErrorCode is_newer(MPI_Comm comm, const char *path, const char *than, PetscBool *newer)
{
  PetscMPIInt rank;
  int         answer = 0;
  struct stat a, b;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  if (rank == 0 && !stat(path, &a) && !stat(than, &b))
    answer = a.st_mtim.tv_sec > b.st_mtim.tv_sec ||
             (a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec > b.st_mtim.tv_nsec);
  PetscCallMPI(MPI_Bcast(&answer, 1, MPI_INT, 0, comm));
  *newer = (PetscBool)answer;
  PetscFunctionReturn(0);
}

static PetscErrorCode write_embeddings(SSMContext *c, AckdEngine *engine, const char *dir)
{
  char           path[PETSC_MAX_PATH_LEN + 32], source[PETSC_MAX_PATH_LEN + 32];
  int           *ms_to_rgb;
  PetscInt       one_based[] = {c->bands[0] + 1, c->bands[1] + 1, c->bands[2] + 1};
  Side           teacher = {.name = "teacher", .collection = "ms"}, student = {.name = "student", .collection = "rgb"};
  AckdH5Settings h5 = {0};
  AckdLog        log;
  hid_t          file;
  PetscBool      current = PETSC_FALSE;
  const double   t0      = AckdTimeNow();

  PetscFunctionBeginUser;
  PetscCall(AckdLogSetUp(&log, c->comm));
  snprintf(path, sizeof path, "%s/embeddings.h5", dir);
  snprintf(source, sizeof source, "%s/best.h5", dir);
  PetscCall(is_newer(c->comm, path, source, &current));
  if (current) {
    PetscCall(AckdLogInfo(&log, "ssm embeddings: %s is newer than %s; nothing to do\n", path, source));
    PetscFunctionReturn(0);
  }
  /* MS labels into the student's class space (docs/FORMATS.md); without a class map, by class name. */
  PetscCall(PetscMalloc1(c->ms_info.classes, &ms_to_rgb));
  if (c->ms_info.ms_to_rgb && c->ms_info.nms_classes == c->ms_info.classes)
    PetscCall(PetscArraycpy(ms_to_rgb, c->ms_info.ms_to_rgb, c->ms_info.classes));
  else
    AckdClassMapByName(c->ms_info.classes, (const char *const *)c->ms_info.class_names, c->rgb_info.classes,
                       (const char *const *)c->rgb_info.class_names, ms_to_rgb);
  PetscCall(embed_side(c, engine, c->ms_model, &c->ms_head, c->ms_data, ms_to_rgb, c->ms_info.classes, &teacher));
  PetscCall(embed_side(c, engine, c->rgb_model, &c->rgb_head, c->rgb_data, NULL, 0, &student));

  PetscCall(AckdH5SettingsSetFromOptions(&h5));
  PetscCall(AckdH5FileCreatePartial(c->comm, path, &h5, &file));
  PetscCall(AckdH5AttrWriteString(file, "ackd_format", ACKD_FORMAT_EMBEDDINGS));
  PetscCall(AckdH5AttrWriteInt(file, "ackd_format_version", ACKD_FORMAT_EMBEDDINGS_VERSION));
  PetscCall(AckdH5AttrWriteString(file, "ackd_version", ACKD_VERSION_STRING));
  PetscCall(AckdH5AttrWriteString(file, "source", source));
  PetscCall(AckdH5AttrWriteString(file, "data", c->data));
  PetscCall(AckdH5AttrWriteString(file, "architecture", AckdArchNames[c->ms_config.arch]));
  PetscCall(AckdH5AttrWriteIntArray(file, "rgb_bands", 3, one_based));
  PetscCall(AckdH5AttrWriteInt(file, "standardized", c->standardize));
  PetscCall(write_side(c->comm, file, &student, path));
  PetscCall(write_side(c->comm, file, &teacher, path));
  PetscCall(AckdH5FileCommit(c->comm, &file, path));
  PetscCall(AckdLogInfo(&log, "ssm embeddings: %d MS (teacher) and %d RGB (student) samples, d = %d, in %.1f s: %s\n",
                        (int)teacher.nglobal, (int)student.nglobal, (int)c->dim, AckdTimeNow() - t0, path));
  PetscCall(PetscFree3(teacher.features, teacher.labels, teacher.index));
  PetscCall(PetscFree3(student.features, student.labels, student.index));
  PetscCall(PetscFree(ms_to_rgb));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------- the stage */

static PetscErrorCode check_inputs(SSMContext *c, const PetscInt *given, PetscInt ngiven)
{
  const PetscInt C = c->ms_info.channels;

  PetscFunctionBeginUser;
  PetscCheck(!c->rgb_info.multilabel, c->comm, PETSC_ERR_USER_INPUT,
             "/rgb in '%s' is multi-label, but the student is single-label by design (M2S: a multi-label teacher "
             "teaches a single-label student); give a dataset whose /rgb has one class per sample",
             c->data);
  PetscCheck(c->rgb_info.channels == 3, c->comm, PETSC_ERR_USER_INPUT,
             "/rgb in '%s' has %" PetscInt_FMT " bands; ackd ssm embeds RGB images with the pseudo-RGB encoder, "
             "so the RGB collection must have 3 bands",
             c->data, c->rgb_info.channels);
  PetscCheck(C >= 3, c->comm, PETSC_ERR_USER_INPUT,
             "/ms in '%s' has %" PetscInt_FMT " bands; the pseudo-RGB needs at least 3", c->data, C);
  PetscCheck(ngiven == 0 || ngiven == 3, c->comm, PETSC_ERR_USER_INPUT,
             "option -ssm_rgb_bands: %" PetscInt_FMT " values given; give 3 MS band numbers (1-based), red,green,blue",
             ngiven);
  for (PetscInt k = 0; k < ngiven; k++)
    PetscCheck(given[k] >= 1 && given[k] <= C, c->comm, PETSC_ERR_USER_INPUT,
               "option -ssm_rgb_bands: band %" PetscInt_FMT " is out of range; /ms in '%s' has bands 1..%" PetscInt_FMT,
               given[k], c->data, C);
  PetscCheck(c->ms_config.arch != ACKD_ARCH_MLP ||
                 (c->rgb_info.height == c->ms_info.height && c->rgb_info.width == c->ms_info.width),
             c->comm, PETSC_ERR_USER_INPUT,
             "-ssm_arch mlp needs RGB images of the MS images' size (%" PetscInt_FMT "x%" PetscInt_FMT
             ", RGB %" PetscInt_FMT "x%" PetscInt_FMT "); use a convolutional -ssm_arch",
             c->ms_info.height, c->ms_info.width, c->rgb_info.height, c->rgb_info.width);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdMatcherCreate(MPI_Comm comm, AckdMatcher *matcher)
{
  SSMContext *c;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&c));
  c->comm         = comm;
  c->dim          = 256;
  c->tau          = 1.0;
  c->head_dropout = 0.1;
  c->eval_batch   = 256;
  c->standardize  = PETSC_TRUE;
  *matcher        = c;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdMatcherSetFromOptions(AckdMatcher c)
{
  MPI_Comm comm = c->comm;

  PetscFunctionBeginUser;
  PetscOptionsBegin(comm, NULL, "ackd ssm: the self-supervised matcher (MS and pseudo-RGB encoders) and its embeddings",
                    NULL);
  PetscCall(AckdOptionsString(PetscOptionsObject, "-ssm_data", "Dataset file (ackd synth or ackd curate)", c->data,
                              sizeof c->data, &c->have_data));
  c->ngiven = (PetscInt)(sizeof c->given / sizeof c->given[0]); /* capacity in, count out */
  PetscCall(AckdOptionsIntArray(PetscOptionsObject, "-ssm_rgb_bands",
                                "MS bands (1-based) forming the pseudo-RGB's red,green,blue (default: B4,B3,B2 by band "
                                "name, else nearest to 665,560,490 nm, else 3,2,1)",
                                c->given, &c->ngiven, PETSC_MIN_INT, PETSC_MAX_INT, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-ssm_dim", "Projection heads' output dimension (512 -> 256)", &c->dim,
                           1, 1 << 16, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-ssm_head_dropout", "Projection heads' dropout probability",
                            &c->head_dropout, 0.0, 0.99, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-ssm_tau", "Temperature of the soft-target contrastive loss", &c->tau,
                            1e-6, 1e6, NULL));
  PetscCall(AckdOptionsBool(PetscOptionsObject, "-ssm_local_loss",
                            "Each rank's contrastive loss over its own share of the batch, weighted B_local/N, as "
                            "PyTorch DDP (fewer negatives; results depend on the rank count). Default: the loss over "
                            "the whole global batch, embeddings gathered from every rank",
                            &c->local_loss, NULL));
  PetscCall(AckdOptionsBool(PetscOptionsObject, "-ssm_standardize",
                            "Standardise each collection's bands by its own statistics (the dataset's band_mean and "
                            "band_std) before the encoders: the MS reflectances the pseudo-RGB is made of and the RGB "
                            "camera's values then meet in one unit",
                            &c->standardize, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-ssm_eval_batch", "Batch size of the embedding pass", &c->eval_batch, 1,
                           1 << 20, NULL));
  PetscOptionsEnd();
  c->ms_config = (AckdModelConfig){.arch = ACKD_ARCH_RESNET18, .width = 1.0};
  PetscCall(AckdModelConfigSetFromOptions(comm, "ssm_", &c->ms_config));
  PetscCall(AckdTrainerCreate(comm, &c->trainer));
  PetscCall(AckdTrainerSetOptionsPrefix(c->trainer, "ssm_"));
  PetscCall(AckdTrainerSetDefaults(c->trainer, "out/ssm", ACKD_OPT_ADAMW, 1e-3, 20, 64));
  PetscCall(AckdTrainerSetDefaultWeightDecay(c->trainer, 1e-3));
  PetscCall(AckdTrainerSetFromOptions(c->trainer));
  PetscCall(AckdH5SettingsSetFromOptions(&c->h5));
  PetscFunctionReturn(0);
}

/* A run of this directory trained on other inputs (another -ssm_standardize) would be resumed, or
 * found finished with its embeddings, as if it were this one: refused. A run from before the option
 * recorded none and had raw inputs. */
static PetscErrorCode check_run_inputs(SSMContext *c)
{
  const char *dir;
  char        path[PETSC_MAX_PATH_LEN + 16];
  PetscBool   readable, found;
  PetscInt    was = 0;
  hid_t       file;

  PetscFunctionBeginUser;
  PetscCall(AckdTrainerGetDirectory(c->trainer, &dir));
  snprintf(path, sizeof path, "%s/best.h5", dir);
  PetscCall(AckdFileReadable(c->comm, path, &readable));
  if (!readable) PetscFunctionReturn(0);
  PetscCall(AckdH5FileOpenRead(c->comm, path, &c->h5, &file));
  PetscCall(AckdH5AttrReadInt(file, "ssm_standardize", &was, &found));
  PetscCall(AckdH5FileClose(&file, path));
  PetscCheck((PetscBool)(was != 0) == c->standardize, c->comm, PETSC_ERR_USER_INPUT,
             "'%s' is a matcher trained with -ssm_standardize %s; run it with the same option, or give another "
             "-ssm_dir for this one",
             path, was ? "true" : "false");
  PetscFunctionReturn(0);
}

PetscErrorCode AckdMatcherSetUp(AckdMatcher c)
{
  MPI_Comm    comm = c->comm;
  AckdTrainer t    = c->trainer;
  AckdLog     log;
  char        how[160];

  PetscFunctionBeginUser;
  if (c->setup) PetscFunctionReturn(0);
  PetscCheck(c->have_data && c->data[0], comm, PETSC_ERR_USER_INPUT,
             "option -ssm_data is required: the dataset file written by ackd synth or ackd curate");
  PetscCall(AckdCollectionInfoRead(comm, c->data, "ms", &c->ms_info));
  PetscCall(AckdCollectionInfoRead(comm, c->data, "rgb", &c->rgb_info));
  PetscCall(check_inputs(c, c->given, c->ngiven));
  PetscCall(check_run_inputs(c));
  if (c->ngiven == 3) {
    for (PetscInt k = 0; k < 3; k++) c->bands[k] = c->given[k] - 1;
    snprintf(how, sizeof how, "-ssm_rgb_bands");
  } else
    PetscCall(choose_bands(c, how, sizeof how));
  PetscCall(AckdLogSetUp(&log, comm));
  PetscCall(AckdLogInfo(&log, "ssm: pseudo-RGB = MS bands %d,%d,%d (%s)\n", (int)c->bands[0] + 1, (int)c->bands[1] + 1,
                        (int)c->bands[2] + 1, how));
  PetscCall(AckdSharedDatasetLoad(comm, c->data, "ms", &c->h5, &c->ms_data));
  PetscCall(AckdSharedDatasetLoad(comm, c->data, "rgb", &c->h5, &c->rgb_data));
  if (c->standardize) {
    PetscCall(AckdSharedDatasetStandardize(c->ms_data));
    PetscCall(AckdSharedDatasetStandardize(c->rgb_data));
  }
  PetscCall(build(c, t));
  PetscCall(AckdTrainerSetDataset(t, c->ms_data));
  PetscCall(AckdTrainerAddModel(t, "ms_encoder", c->ms_model));
  PetscCall(AckdTrainerAddModel(t, "rgb_encoder", c->rgb_model));
  PetscCall(AckdTrainerAddParams(t, "heads", &c->heads));
  PetscCall(AckdTrainerSetStep(t, ssm_step, c));
  PetscCall(AckdTrainerSetDescription(t, AckdArchNames[c->ms_config.arch], "ssm", "matcher", describe, c));
  c->setup = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdMatcherRun(AckdMatcher c, PetscBool *stopped)
{
  PetscFunctionBeginUser;
  PetscCall(AckdMatcherSetUp(c));
  PetscCall(AckdTrainerRun(c->trainer, stopped));
  if (!*stopped) {
    AckdEngine *engine;
    const char *dir;
    PetscCall(AckdTrainerGetEngine(c->trainer, &engine));
    PetscCall(AckdTrainerGetDirectory(c->trainer, &dir));
    PetscCall(write_embeddings(c, engine, dir));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdMatcherDestroy(AckdMatcher *matcher)
{
  SSMContext *c = *matcher;

  PetscFunctionBeginUser;
  if (!c) PetscFunctionReturn(0);
  PetscCall(AckdTrainerDestroy(&c->trainer));
  if (c->setup) {
    PetscCall(PetscFree3(c->pseudo, c->dx_ms, c->dx_rgb));
    PetscCall(PetscFree4(c->e_ms, c->e_rgb, c->de_ms, c->de_rgb));
    PetscCall(AckdSSMHeadDestroy(&c->ms_head));
    PetscCall(AckdSSMHeadDestroy(&c->rgb_head));
    PetscCall(AckdParamsDestroy(&c->heads));
    PetscCall(AckdSharedDatasetDestroy(&c->ms_data));
    PetscCall(AckdSharedDatasetDestroy(&c->rgb_data));
    PetscCall(AckdModelDestroy(&c->ms_model));
    PetscCall(AckdModelDestroy(&c->rgb_model));
    PetscCall(AckdCollectionInfoDestroy(&c->ms_info));
    PetscCall(AckdCollectionInfoDestroy(&c->rgb_info));
  }
  PetscCall(PetscFree(*matcher));
  PetscFunctionReturn(0);
}
