/* What `ackd inspect` prints for a checkpoint. */
#include "ckpt_private.h"
#include <string.h>

typedef struct {
  FILE    *out;
  PetscInt arrays, values;
} Tally;

static herr_t tally_dataset(hid_t obj, const char *name, const H5O_info_t *info, void *ctx)
{
  Tally *t = ctx;
  if (info->type != H5O_TYPE_DATASET) return 0;
  hid_t dset = H5Dopen2(obj, name, H5P_DEFAULT);
  if (dset < 0) return -1;
  hid_t    space = H5Dget_space(dset);
  hssize_t n     = H5Sget_simple_extent_npoints(space);
  H5Sclose(space);
  H5Dclose(dset);
  t->arrays++;
  t->values += (PetscInt)n;
  return 0;
}

static PetscErrorCode summarize_group(hid_t file, const char *group, const char *label, FILE *out)
{
  Tally t = {out, 0, 0};
  hid_t g;

  PetscFunctionBeginUser;
  if (H5Lexists(file, group, H5P_DEFAULT) <= 0) PetscFunctionReturn(0);
  AckdCallH5(g = H5Gopen2(file, group, H5P_DEFAULT), "opening /%s", group);
  AckdCallH5(H5Ovisit(g, H5_INDEX_NAME, H5_ITER_NATIVE, tally_dataset, &t), "listing /%s", group);
  H5Gclose(g);
  fprintf(out, "%-10s %" PetscInt_FMT " arrays, %" PetscInt_FMT " values (%.1f MB as float32)\n", label, t.arrays,
          t.values, 4e-6 * (double)t.values);
  PetscFunctionReturn(0);
}

typedef struct {
  FILE *out;
  hid_t group;
} MetricPrinter;

static herr_t print_metric(hid_t group, const char *name, const H5L_info_t *info, void *ctx)
{
  MetricPrinter *m    = ctx;
  hid_t          dset = H5Dopen2(group, name, H5P_DEFAULT);
  if (dset < 0) return -1;
  hid_t    space = H5Dget_space(dset);
  hssize_t n     = H5Sget_simple_extent_npoints(space);
  H5Sclose(space);
  double last = 0;
  if (n > 0) {
    hsize_t start = (hsize_t)(n - 1), count = 1;
    hid_t   fs = H5Dget_space(dset), ms = H5Screate_simple(1, &count, NULL);
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &count, NULL);
    H5Dread(dset, H5T_NATIVE_DOUBLE, ms, fs, H5P_DEFAULT, &last);
    H5Sclose(ms);
    H5Sclose(fs);
  }
  H5Dclose(dset);
  if (n > 0)
    fprintf(m->out, "  %-20s %lld values, last %.6g\n", name, (long long)n, last);
  else
    fprintf(m->out, "  %-20s empty\n", name);
  return 0;
}

PetscErrorCode AckdCkptSummarize(MPI_Comm comm, hid_t file, const char *path, FILE *out)
{
  PetscMPIInt rank;
  char        arch[128] = "", version[32] = "";
  PetscInt    epoch = 0, step = 0, cursor = 0, seed = 0;
  hid_t       state;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  if (rank != 0) PetscFunctionReturn(0);
  PetscCall(AckdH5AttrReadString(file, "architecture", arch, sizeof arch, NULL));
  PetscCall(AckdH5AttrReadString(file, "ackd_version", version, sizeof version, NULL));
  PetscCheck(H5Lexists(file, "state", H5P_DEFAULT) > 0, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED,
             "'%s' is a checkpoint without /state; it is damaged", path);
  AckdCallH5(state = H5Gopen2(file, "state", H5P_DEFAULT), "opening /state");
  PetscCall(AckdH5AttrReadInt(state, "epoch", &epoch, NULL));
  PetscCall(AckdH5AttrReadInt(state, "step", &step, NULL));
  PetscCall(AckdH5AttrReadInt(state, "cursor", &cursor, NULL));
  PetscCall(AckdH5AttrReadInt(state, "seed", &seed, NULL));
  H5Gclose(state);
  fprintf(out, "%s: ackd checkpoint (format version %d) of a '%s' model, written by ackd %s\n", path,
          ACKD_FORMAT_CHECKPOINT_VERSION, arch, version);
  fprintf(out,
          "state      epoch %" PetscInt_FMT ", step %" PetscInt_FMT ", cursor %" PetscInt_FMT ", seed %" PetscInt_FMT
          "\n",
          epoch, step, cursor, seed);
  /* What the run read (the trainer's input records), so that a checkpoint says what it was trained on. */
  static const char *const records[][2] = {{ACKD_CKPT_INPUT_DATASET, "dataset"},
                                           {ACKD_CKPT_INPUT_TEACHER_GALLERY, "teacher"}};
  for (size_t i = 0; i < sizeof records / sizeof records[0]; i++) {
    char      record[256];
    PetscBool found;
    PetscCall(AckdH5AttrReadString(file, records[i][0], record, sizeof record, &found));
    if (found) fprintf(out, "%-10s %s\n", records[i][1], record);
  }
  PetscCall(summarize_group(file, "model", "model", out));
  PetscCall(summarize_group(file, "optim", "optimizer", out));
  if (H5Lexists(file, "metrics", H5P_DEFAULT) > 0) {
    MetricPrinter m;
    fprintf(out, "metrics\n");
    AckdCallH5(m.group = H5Gopen2(file, "metrics", H5P_DEFAULT), "opening /metrics");
    m.out = out;
    AckdCallH5(H5Literate(m.group, H5_INDEX_NAME, H5_ITER_INC, NULL, print_metric, &m), "listing /metrics");
    H5Gclose(m.group);
  }
  char *options;
  PetscCall(PetscMalloc1(65536, &options));
  PetscCall(AckdH5AttrReadString(file, "options", options, 65536, NULL));
  fprintf(out, "options    %s\n", options);
  PetscCall(PetscFree(options));
  fflush(out);
  PetscFunctionReturn(0);
}
