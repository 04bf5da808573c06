/* Reading a dataset file back: schema validation and the `inspect` summary. */
#include <ackd/data.h>
#include <string.h>

static const char *const COLLECTIONS[] = {"ms", "rgb"};

typedef struct {
  PetscInt count, channels, height, width, nclasses, label_columns;
} Shape;

static PetscErrorCode dataset_dims(hid_t group, const char *group_name, const char *name, const char *path,
                                   int want_rank_lo, int want_rank_hi, hsize_t dims[4], int *rank)
{
  char        where[128];
  AckdH5Shape shape;

  PetscFunctionBeginUser;
  htri_t exists = H5Lexists(group, name, H5P_DEFAULT);
  PetscCheck(
      exists > 0, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED,
      "'%s': dataset /%s/%s is missing; the file is not a complete ackd dataset (write it again with synth or curate)",
      path, group_name, name);
  /* Named from the root, which the group resolves as well, so that its errors name the collection. */
  PetscCall(PetscSNPrintf(where, sizeof where, "/%s/%s", group_name, name));
  PetscCall(AckdH5DatasetShape(group, where, path, &shape));
  *rank = shape.rank;
  PetscCheck(*rank >= want_rank_lo && *rank <= want_rank_hi, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED,
             "'%s': /%s/%s has %d dimensions, expected %d", path, group_name, name, *rank, want_rank_lo);
  PetscCall(PetscArraycpy(dims, shape.dims, *rank));
  PetscFunctionReturn(0);
}

static PetscErrorCode collection_shape(hid_t file, const char *name, const char *path, Shape *shape)
{
  hid_t   group;
  hsize_t d[4];
  int     rank;

  PetscFunctionBeginUser;
  /* An error here ends the run, so the group handle is not worth unwinding. */
  AckdCallH5(group = H5Gopen2(file, name, H5P_DEFAULT), "'%s': opening /%s", path, name);
  PetscCall(dataset_dims(group, name, "images", path, 4, 4, d, &rank));
  shape->count    = (PetscInt)d[0];
  shape->channels = (PetscInt)d[1];
  shape->height   = (PetscInt)d[2];
  shape->width    = (PetscInt)d[3];
  PetscCall(dataset_dims(group, name, "labels", path, 1, 2, d, &rank));
  shape->label_columns = rank == 2 ? (PetscInt)d[1] : 0;
  PetscCheck((PetscInt)d[0] == shape->count, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED,
             "'%s': /%s/labels has %llu rows but /%s/images has %" PetscInt_FMT " samples; the file is damaged", path,
             name, (unsigned long long)d[0], name, shape->count);
  PetscCall(dataset_dims(group, name, "split", path, 1, 1, d, &rank));
  PetscCheck((PetscInt)d[0] == shape->count, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED,
             "'%s': /%s/split has %llu rows but /%s/images has %" PetscInt_FMT " samples; the file is damaged", path,
             name, (unsigned long long)d[0], name, shape->count);
  PetscCall(dataset_dims(group, name, "classes", path, 1, 1, d, &rank));
  shape->nclasses = (PetscInt)d[0];
  PetscInt  declared;
  PetscBool found;
  /* Readers size the names by the attribute and read the dataset whole. */
  PetscCall(AckdH5AttrReadInt(group, "classes", &declared, &found));
  PetscCheck(!found || declared == shape->nclasses, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED,
             "'%s': /%s/classes holds %" PetscInt_FMT
             " names but the collection's 'classes' attribute says %" PetscInt_FMT
             "; write the dataset again with ackd synth or ackd curate",
             path, name, shape->nclasses, declared);
  PetscCall(dataset_dims(group, name, "bands", path, 1, 1, d, &rank));
  PetscCheck((PetscInt)d[0] == shape->channels, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED,
             "'%s': /%s/bands names %llu bands but the images have %" PetscInt_FMT " channels; the file is damaged",
             path, name, (unsigned long long)d[0], shape->channels);
  H5Gclose(group);
  PetscFunctionReturn(0);
}

/* Readers take the map's length for the MS class count and read it whole into that many entries. */
static PetscErrorCode validate_class_map(hid_t file, const char *path, PetscInt ms_classes)
{
  AckdH5Shape shape;

  PetscFunctionBeginUser;
  if (H5Lexists(file, "class_map", H5P_DEFAULT) <= 0 || H5Lexists(file, "class_map/ms_to_rgb", H5P_DEFAULT) <= 0)
    PetscFunctionReturn(0);
  PetscCall(AckdH5DatasetShape(file, "/class_map/ms_to_rgb", path, &shape));
  PetscCheck(shape.rank == 1, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED,
             "'%s': /class_map/ms_to_rgb has %d dimensions, not 1 (one RGB class per MS class); write the dataset "
             "again with ackd synth or ackd curate",
             path, shape.rank);
  PetscCheck(!ms_classes || shape.dims[0] == (hsize_t)ms_classes, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED,
             "'%s': /class_map/ms_to_rgb has %llu entries but /ms has %" PetscInt_FMT
             " classes (one RGB class per MS class); write the dataset again with ackd synth or ackd curate",
             path, (unsigned long long)shape.dims[0], ms_classes);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdDatasetValidate(hid_t file, const char *path)
{
  char      format[64];
  PetscBool found;
  PetscInt  version = 0, present = 0;

  PetscFunctionBeginUser;
  PetscCall(AckdH5AttrReadString(file, "ackd_format", format, sizeof format, &found));
  PetscCheck(found, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED,
             "'%s' is an HDF5 file but not one of ackd's (no ackd_format attribute)", path);
  PetscCheck(!strcmp(format, ACKD_FORMAT_DATASET), PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED,
             "'%s' is an ackd '%s' file, not a dataset", path, format);
  PetscCall(AckdH5AttrReadInt(file, "ackd_format_version", &version, NULL));
  PetscCheck(version >= 1 && version <= ACKD_FORMAT_DATASET_VERSION, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED,
             "'%s' is dataset format version %" PetscInt_FMT "; this ackd reads versions 1..%d (upgrade ackd)", path,
             version, ACKD_FORMAT_DATASET_VERSION);
  PetscInt ms_classes = 0;
  for (size_t k = 0; k < 2; k++) {
    if (H5Lexists(file, COLLECTIONS[k], H5P_DEFAULT) <= 0) continue;
    Shape shape;
    PetscCall(collection_shape(file, COLLECTIONS[k], path, &shape));
    if (k == 0) ms_classes = shape.nclasses;
    present++;
  }
  PetscCheck(present > 0, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED,
             "'%s' holds neither an /ms nor an /rgb collection; the file is not a complete ackd dataset", path);
  PetscCall(validate_class_map(file, path, ms_classes));
  PetscFunctionReturn(0);
}

static PetscErrorCode read_all(hid_t group, const char *name, hid_t memtype, void *buf)
{
  hid_t dset;

  PetscFunctionBeginUser;
  AckdCallH5(dset = H5Dopen2(group, name, H5P_DEFAULT), "opening %s", name);
  AckdCallH5(H5Dread(dset, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), "reading %s", name);
  H5Dclose(dset);
  PetscFunctionReturn(0);
}

/* Fixed-length string datasets into a table of `width`-byte rows. */
static PetscErrorCode read_strings(hid_t group, const char *name, PetscInt n, size_t width, char *rows)
{
  hid_t type;

  PetscFunctionBeginUser;
  AckdCallH5(type = H5Tcopy(H5T_C_S1), "string type");
  H5Tset_size(type, width);
  H5Tset_strpad(type, H5T_STR_NULLTERM);
  PetscErrorCode ierr = read_all(group, name, type, rows);
  H5Tclose(type);
  PetscCall(ierr);
  for (PetscInt i = 0; i < n; i++) rows[(i + 1) * width - 1] = '\0';
  PetscFunctionReturn(0);
}

enum { NAME_WIDTH = 48 };

/* A collection's cover fractions in one line: how much of a scene its label's class covers, and
 * how many scenes hold another class at all (docs/FORMATS.md). */
static PetscErrorCode summarize_fractions(hid_t group, PetscInt N, PetscInt K, const int *labels, FILE *out)
{
  hid_t       dset;
  AckdH5Shape shape;
  float      *rows;

  PetscFunctionBeginUser;
  if (H5Lexists(group, "cover_fractions", H5P_DEFAULT) <= 0) PetscFunctionReturn(0);
  AckdCallH5(dset = H5Dopen2(group, "cover_fractions", H5P_DEFAULT), "opening cover_fractions");
  PetscCall(AckdH5DatasetShapeOf(dset, NULL, "cover_fractions", &shape));
  AckdCallH5(H5Dclose(dset), "closing cover_fractions");
  if (shape.rank != 2 || shape.dims[0] != (hsize_t)N || shape.dims[1] != (hsize_t)K) {
    fprintf(out, "  cover fractions: a table that is not (%" PetscInt_FMT ", %" PetscInt_FMT ")\n", N, K);
    PetscFunctionReturn(0);
  }
  PetscCall(PetscMalloc1((size_t)PetscMax(N * K, 1), &rows));
  PetscCall(read_all(group, "cover_fractions", H5T_NATIVE_FLOAT, rows));
  double   own = 0.0, least = 1.0;
  PetscInt mixed = 0, counted = 0;
  for (PetscInt i = 0; i < N; i++) {
    const float *row   = rows + i * K;
    PetscBool    other = PETSC_FALSE;
    for (PetscInt k = 0; k < K; k++) other = (PetscBool)(other || (k != labels[i] && row[k] > 0.0f));
    mixed += other;
    if (labels[i] < 0 || labels[i] >= K) continue;
    own += row[labels[i]];
    least = PetscMin(least, (double)row[labels[i]]);
    counted++;
  }
  fprintf(out,
          "  cover fractions: the label's class covers %.3f of a scene on average (%.3f at least); %.1f%% of the "
          "scenes hold another class\n",
          own / PetscMax(counted, 1), least, 100.0 * (double)mixed / (double)PetscMax(N, 1));
  PetscCall(PetscFree(rows));
  PetscFunctionReturn(0);
}

static PetscErrorCode summarize_collection(hid_t file, const char *name, const char *path, FILE *out)
{
  Shape          shape;
  hid_t          group;
  unsigned char *multi  = NULL;
  int           *labels = NULL;
  unsigned char *split;
  char          *classes, *bands;
  PetscInt      *per_class, split_total[3] = {0, 0, 0};
  double        *stats;

  PetscFunctionBeginUser;
  PetscCall(collection_shape(file, name, path, &shape));
  AckdCallH5(group = H5Gopen2(file, name, H5P_DEFAULT), "opening /%s", name);
  PetscInt K = shape.nclasses, C = shape.channels, N = shape.count;
  PetscCall(PetscMalloc1(N, &split));
  PetscCall(PetscCalloc1(3 * (K + 1), &per_class)); /* last row: labels outside 0..K-1 */
  PetscCall(PetscMalloc2(K * NAME_WIDTH, &classes, C * NAME_WIDTH, &bands));
  PetscCall(PetscCalloc1(4 * C, &stats));
  PetscCall(read_all(group, "split", H5T_NATIVE_UCHAR, split));
  PetscCall(read_strings(group, "classes", K, NAME_WIDTH, classes));
  PetscCall(read_strings(group, "bands", C, NAME_WIDTH, bands));
  if (!shape.label_columns) {
    PetscCall(PetscMalloc1(N, &labels));
    PetscCall(read_all(group, "labels", H5T_NATIVE_INT, labels));
  } else {
    PetscCheck(shape.label_columns == K, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED,
               "'%s': /%s/labels has %" PetscInt_FMT " columns for %" PetscInt_FMT " classes; the file is damaged",
               path, name, shape.label_columns, K);
    PetscCall(PetscMalloc1((size_t)N * K, &multi));
    PetscCall(read_all(group, "labels", H5T_NATIVE_UCHAR, multi));
  }
  for (PetscInt i = 0; i < N; i++) {
    PetscInt s = split[i] <= 2 ? split[i] : 2;
    split_total[s]++;
    if (multi) { /* a sample counts once for every class it carries */
      for (PetscInt k = 0; k < K; k++) per_class[3 * k + s] += multi[i * K + k] != 0;
      continue;
    }
    PetscInt k = labels[i] >= 0 && labels[i] < K ? labels[i] : K;
    per_class[3 * k + s]++;
  }
  const char *stat_names[] = {"band_mean", "band_std", "band_min", "band_max"};
  PetscBool   have_stats   = PETSC_TRUE;
  for (int j = 0; j < 4 && have_stats; j++) {
    have_stats = (PetscBool)(H5Lexists(group, stat_names[j], H5P_DEFAULT) > 0);
    if (have_stats) PetscCall(read_all(group, stat_names[j], H5T_NATIVE_DOUBLE, stats + j * C));
  }
  char sensor[256] = "";
  PetscCall(AckdH5AttrReadString(group, "sensor", sensor, sizeof sensor, NULL));

  fprintf(out,
          "\n/%s  %" PetscInt_FMT " samples  %" PetscInt_FMT "x%" PetscInt_FMT "x%" PetscInt_FMT "  %" PetscInt_FMT
          " classes%s  train/val/test %" PetscInt_FMT "/%" PetscInt_FMT "/%" PetscInt_FMT "\n",
          name, N, C, shape.height, shape.width, K, shape.label_columns ? " (multi-label)" : "", split_total[0],
          split_total[1], split_total[2]);
  if (sensor[0]) fprintf(out, "  sensor: %s\n", sensor);
  if (labels || multi) {
    fprintf(out, "  %-3s %-28s %7s %7s %7s %7s%s\n", "id", "class", "total", "train", "val", "test",
            multi ? "   (samples carrying the class)" : "");
    for (PetscInt k = 0; k <= K; k++) {
      PetscInt *row = per_class + 3 * k;
      if (k == K && row[0] + row[1] + row[2] == 0) break;
      fprintf(out,
              "  %-3" PetscInt_FMT " %-28s %7" PetscInt_FMT " %7" PetscInt_FMT " %7" PetscInt_FMT " %7" PetscInt_FMT
              "\n",
              k, k < K ? classes + k * NAME_WIDTH : "(label out of range)", row[0] + row[1] + row[2], row[0], row[1],
              row[2]);
    }
  }
  if (labels) PetscCall(summarize_fractions(group, N, K, labels, out));
  H5Gclose(group);
  if (have_stats) {
    fprintf(out, "  %-8s %10s %10s %10s %10s   (training split)\n", "band", "mean", "std", "min", "max");
    for (PetscInt c = 0; c < C; c++)
      fprintf(out, "  %-8s %10.4f %10.4f %10.4f %10.4f\n", bands + c * NAME_WIDTH, stats[c], stats[C + c],
              stats[2 * C + c], stats[3 * C + c]);
  }
  PetscCall(PetscFree(stats));
  PetscCall(PetscFree2(classes, bands));
  PetscCall(PetscFree(per_class));
  PetscCall(PetscFree(labels));
  PetscCall(PetscFree(multi));
  PetscCall(PetscFree(split));
  PetscFunctionReturn(0);
}

static PetscErrorCode summarize_class_map(hid_t file, FILE *out)
{
  PetscInt shared = 0, ms_only = 0, rgb_only = 0;
  hid_t    group;

  PetscFunctionBeginUser;
  if (H5Lexists(file, "class_map", H5P_DEFAULT) <= 0) {
    fprintf(out, "\nclass map: none\n");
    PetscFunctionReturn(0);
  }
  AckdCallH5(group = H5Gopen2(file, "class_map", H5P_DEFAULT), "opening /class_map");
  PetscCall(AckdH5AttrReadInt(group, "shared", &shared, NULL));
  PetscCall(AckdH5AttrReadInt(group, "ms_only", &ms_only, NULL));
  PetscCall(AckdH5AttrReadInt(group, "rgb_only", &rgb_only, NULL));
  H5Gclose(group);
  fprintf(out, "\nclass map: %" PetscInt_FMT " shared, %" PetscInt_FMT " MS-only, %" PetscInt_FMT " RGB-only\n", shared,
          ms_only, rgb_only);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdDatasetSummarize(MPI_Comm comm, hid_t file, const char *path, FILE *out)
{
  PetscMPIInt rank;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  if (rank != 0) PetscFunctionReturn(0);
  PetscCall(AckdDatasetValidate(file, path));
  char        text[4096];
  const char *keys[] = {"generator", "ackd_version", "created_utc"};
  fprintf(out, "%s: ackd dataset (format version %d)", path, ACKD_FORMAT_DATASET_VERSION);
  for (int k = 0; k < 3; k++) {
    PetscBool found;
    PetscCall(AckdH5AttrReadString(file, keys[k], text, sizeof text, &found));
    if (found) fprintf(out, "  %s=%s", keys[k], text);
  }
  PetscInt  ranks;
  PetscBool found;
  PetscCall(AckdH5AttrReadInt(file, "mpi_ranks", &ranks, &found));
  if (found) fprintf(out, "  ranks=%" PetscInt_FMT, ranks);
  fprintf(out, "\n");
  PetscCall(AckdH5AttrReadString(file, "synth_parameters", text, sizeof text, &found));
  if (found) fprintf(out, "parameters: %s\n", text);
  for (size_t k = 0; k < 2; k++)
    if (H5Lexists(file, COLLECTIONS[k], H5P_DEFAULT) > 0)
      PetscCall(summarize_collection(file, COLLECTIONS[k], path, out));
  PetscCall(summarize_class_map(file, out));
  fflush(out);
  PetscFunctionReturn(0);
}
