/* Reading checkpoints back: the newest one that is intact, checked against
 * the model it is loaded into. */
#include "ckpt_private.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct _p_AckdCkptReader {
  MPI_Comm      comm;
  char          path[PETSC_MAX_PATH_LEN];
  hid_t         file;
  AckdCkptState state;
};

/* The first non-finite float in any dataset of a file (H5Ovisit callback); where names it. */
typedef struct {
  char group[16], where[256];
} NonFiniteSearch;

static herr_t find_nonfinite(hid_t root, const char *name, const H5O_info_t *info, void *data)
{
  NonFiniteSearch *search = data;
  herr_t           found  = 0;

  if (info->type != H5O_TYPE_DATASET) return 0;
  hid_t dset = H5Dopen2(root, name, H5P_DEFAULT);
  if (dset < 0) return -1;
  hid_t type = H5Dget_type(dset), space = H5Dget_space(dset);
  if (H5Tget_class(type) == H5T_FLOAT) {
    hssize_t n = H5Sget_simple_extent_npoints(space);
    float   *x = n > 0 ? malloc(sizeof(float) * (size_t)n) : NULL;
    if (n > 0 && (!x || H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0)) found = -1;
    for (hssize_t i = 0; !found && i < n; i++)
      if (!isfinite(x[i])) {
        snprintf(search->where, sizeof search->where, "/%s/%s[%lld]", search->group, name, (long long)i);
        found = 1;
      }
    free(x);
  }
  H5Sclose(space);
  H5Tclose(type);
  H5Dclose(dset);
  return found;
}

/* Rank 0 checks a candidate on its own: a damaged file must not take a
 * collective open down with it. Returns a reason, or "" when fine. */
static PetscErrorCode probe(const char *path, char *why, size_t len)
{
  PetscFunctionBeginUser;
  why[0] = '\0';
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file < 0) {
    snprintf(why, len, "it does not open (truncated or damaged)");
    H5Eclear2(H5E_DEFAULT);
    PetscFunctionReturn(0);
  }
  char      format[64] = "";
  PetscBool found      = PETSC_FALSE;
  if (H5Aexists(file, "ackd_format") > 0)
    PetscCall(AckdH5AttrReadString(file, "ackd_format", format, sizeof format, &found));
  if (!found || strcmp(format, ACKD_FORMAT_CHECKPOINT))
    snprintf(why, len, "it is not an ackd checkpoint");
  else if (H5Lexists(file, "state", H5P_DEFAULT) <= 0)
    snprintf(why, len, "it has no /state");
  else {
    /* A NaN written by a diverged step would spread into every run that resumes from it. */
    NonFiniteSearch   search   = {.where = ""};
    herr_t            status   = 0;
    const char *const groups[] = {"model", "optim", "state"}; /* not metrics: NaN marks an epoch not validated */
    for (size_t g = 0; g < sizeof groups / sizeof groups[0] && status == 0; g++) {
      if (H5Lexists(file, groups[g], H5P_DEFAULT) <= 0) continue;
      hid_t group = H5Gopen2(file, groups[g], H5P_DEFAULT);
      snprintf(search.group, sizeof search.group, "%s", groups[g]);
      status = group < 0 ? -1 : H5Ovisit(group, H5_INDEX_NAME, H5_ITER_NATIVE, find_nonfinite, &search);
      if (group >= 0) H5Gclose(group);
    }
    if (status > 0)
      snprintf(why, len, "%s is NaN or Inf", search.where);
    else if (status < 0)
      snprintf(why, len, "a dataset does not read back (damaged)");
  }
  H5Fclose(file);
  H5Eclear2(H5E_DEFAULT);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCkptReaderOpen(MPI_Comm comm, const char *path, const char *architecture, AckdCkptReader *reader)
{
  AckdCkptReader r;
  AckdH5Settings h5 = {.collective_metadata = PETSC_TRUE, .file_locking = PETSC_FALSE, .alignment = 0};
  char           arch[128];
  hid_t          state;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&r));
  r->comm = comm;
  PetscCall(PetscStrncpy(r->path, path, sizeof r->path));
  PetscCall(AckdH5FileOpenRead(comm, path, &h5, &r->file));
  {
    char      format[64] = "", source[PETSC_MAX_PATH_LEN] = "";
    PetscBool found;
    PetscCall(AckdH5AttrReadString(r->file, "ackd_format", format, sizeof format, &found));
    /* A gallery sits beside best.h5 and is an easy mistake: name it and its checkpoint. */
    if (found && !strcmp(format, "gallery")) {
      PetscCall(AckdH5AttrReadString(r->file, "source", source, sizeof source, &found));
      SETERRQ(
          comm, PETSC_ERR_USER_INPUT,
          "'%s' is a teacher gallery (ackd_format 'gallery'), not a checkpoint; give the checkpoint it came from%s%s%s",
          path, source[0] ? ", '" : " (DIR/best.h5)", source, source[0] ? "'" : "");
    }
    PetscCheck(!found || !strcmp(format, ACKD_FORMAT_CHECKPOINT), comm, PETSC_ERR_USER_INPUT,
               "'%s' is an ackd %s file, not a checkpoint; give a checkpoint (DIR/best.h5 of ackd train or distill)",
               path, format);
  }
  PetscCall(AckdH5AttrReadString(r->file, "architecture", arch, sizeof arch, NULL));
  PetscCheck(!architecture || !strcmp(arch, architecture), comm, PETSC_ERR_FILE_UNEXPECTED,
             "checkpoint '%s' is of a '%s' model, not '%s'; point -ckpt_dir elsewhere or start a new run", path, arch,
             architecture);
  AckdCallH5(state = H5Gopen2(r->file, "state", H5P_DEFAULT), "'%s': opening /state", path);
  PetscCall(AckdH5AttrReadInt(state, "epoch", &r->state.epoch, NULL));
  PetscCall(AckdH5AttrReadInt(state, "step", &r->state.step, NULL));
  PetscCall(AckdH5AttrReadInt(state, "cursor", &r->state.cursor, NULL));
  PetscCall(AckdH5AttrReadInt(state, "seed", &r->state.seed, NULL));
  H5Gclose(state);
  *reader = r;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCkptReaderOpenLatest(MPI_Comm comm, const char *dir, const char *architecture,
                                        AckdCkptReader *reader, PetscBool *found)
{
  PetscMPIInt rank;
  char        chosen[PETSC_MAX_PATH_LEN] = "";

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  if (rank == 0) {
    PetscInt *steps, n;
    PetscCall(AckdCkptList(dir, PETSC_FALSE, &steps, &n));
    for (PetscInt i = 0; i < n && !chosen[0]; i++) {
      char path[PETSC_MAX_PATH_LEN], why[320];
      AckdCkptPath(dir, steps[i], path, sizeof path);
      PetscCall(probe(path, why, sizeof why));
      if (!why[0])
        PetscCall(PetscStrncpy(chosen, path, sizeof chosen));
      else {
        fprintf(stderr, "ackd: warning: skipping checkpoint '%s': %s; trying the previous one\n", path, why);
        fflush(stderr);
      }
    }
    PetscCall(PetscFree(steps));
  }
  PetscCallMPI(MPI_Bcast(chosen, sizeof chosen, MPI_CHAR, 0, comm));
  *found  = (PetscBool)(chosen[0] != '\0');
  *reader = NULL;
  if (*found) PetscCall(AckdCkptReaderOpen(comm, chosen, architecture, reader));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCkptReaderGetPath(AckdCkptReader r, const char **path)
{
  PetscFunctionBeginUser;
  *path = r->path;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCkptReaderGetFile(AckdCkptReader r, hid_t *file)
{
  PetscFunctionBeginUser;
  *file = r->file;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCkptReaderGetState(AckdCkptReader r, AckdCkptState *state)
{
  PetscFunctionBeginUser;
  *state = r->state;
  PetscFunctionReturn(0);
}

static PetscErrorCode vector_length(hid_t file, const char *path, PetscInt *n)
{
  PetscFunctionBeginUser;
  *n = -1;
  /* H5Lexists on a/b/c needs a/b to exist: walk the path. */
  char partial[512];
  for (const char *p = strchr(path + 1, '/');; p = strchr(p + 1, '/')) {
    size_t len = p ? (size_t)(p - path) : strlen(path);
    snprintf(partial, sizeof partial, "%.*s", (int)len, path);
    if (H5Lexists(file, partial, H5P_DEFAULT) <= 0) PetscFunctionReturn(0);
    if (!p) break;
  }
  hid_t dset = H5Dopen2(file, path, H5P_DEFAULT);
  AckdCallH5(dset, "opening %s", path);
  hid_t space = H5Dget_space(dset);
  *n          = (PetscInt)H5Sget_simple_extent_npoints(space);
  H5Sclose(space);
  H5Dclose(dset);
  PetscFunctionReturn(0);
}

typedef struct {
  const AckdCkptEntry *entries;
  PetscInt             n;
  const char          *group;
  char                *report;
  size_t               len;
  PetscInt             problems;
} Unexpected;

/* Datasets in the file's group that the model does not have. */
static herr_t find_unexpected(hid_t obj, const char *name, const H5O_info_t *info, void *ctx)
{
  Unexpected *u = ctx;
  if (info->type != H5O_TYPE_DATASET) return 0;
  for (PetscInt i = 0; i < u->n; i++) {
    char path[512];
    AckdCkptEntryPath(u->group, u->entries[i].name, path, sizeof path);
    if (!strcmp(path + strlen(u->group) + 2, name)) return 0;
  }
  if (u->problems++ < 8) {
    size_t used = strlen(u->report);
    snprintf(u->report + used, u->len - used, "%s%s/%s is not in the model", used ? "; " : "", u->group, name);
  }
  return 0;
}

PetscErrorCode AckdCkptReaderReadModel(AckdCkptReader r, const char *group, PetscInt n, const AckdCkptEntry *entries)
{
  PetscMPIInt rank;
  char        report[2048] = "";
  Unexpected  u            = {entries, n, group, report, sizeof report, 0};

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(r->comm, &rank));
  /* Collect every mismatch before refusing, so one run shows the whole story. */
  for (PetscInt i = 0; i < n; i++) {
    char     path[512];
    PetscInt have;
    AckdCkptEntryPath(group, entries[i].name, path, sizeof path);
    PetscCall(vector_length(r->file, path, &have));
    if (have == entries[i].size) continue;
    if (u.problems++ < 8) {
      size_t used = strlen(report);
      if (have < 0)
        snprintf(report + used, sizeof report - used, "%s%s is missing", used ? "; " : "", path + 1);
      else
        snprintf(report + used, sizeof report - used, "%s%s has %" PetscInt_FMT " values, the model %" PetscInt_FMT,
                 used ? "; " : "", path + 1, have, entries[i].size);
    }
  }
  if (H5Lexists(r->file, group, H5P_DEFAULT) > 0) {
    hid_t g;
    AckdCallH5(g = H5Gopen2(r->file, group, H5P_DEFAULT), "opening /%s", group);
    AckdCallH5(H5Ovisit(g, H5_INDEX_NAME, H5_ITER_NATIVE, find_unexpected, &u), "listing /%s", group);
    H5Gclose(g);
  }
  PetscCheck(!u.problems, r->comm, PETSC_ERR_USER_INPUT,
             "checkpoint '%s' does not fit the model (%" PetscInt_FMT " mismatch%s): %s%s; give the model options it "
             "was written with, or start in another directory",
             r->path, u.problems, u.problems == 1 ? "" : "es", report, u.problems > 8 ? "; ..." : "");
  /* One reader, then a broadcast: P ranks reading the same bytes would only load the file system. */
  if (rank == 0)
    for (PetscInt i = 0; i < n; i++) {
      char  path[512];
      hid_t dset;
      AckdCkptEntryPath(group, entries[i].name, path, sizeof path);
      AckdCallH5(dset = H5Dopen2(r->file, path, H5P_DEFAULT), "opening %s", path);
      AckdCallH5(H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, entries[i].data),
                 "reading %s from '%s'", path, r->path);
      H5Dclose(dset);
    }
  for (PetscInt i = 0; i < n; i++)
    PetscCallMPI(MPI_Bcast(entries[i].data, (int)entries[i].size, MPI_FLOAT, 0, r->comm));
  /* Every rank holds the same values now, so each finds the same first bad entry. */
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt j = 0; j < entries[i].size; j++) {
      if (isfinite(entries[i].data[j])) continue;
      char path[512];
      AckdCkptEntryPath(group, entries[i].name, path, sizeof path);
      SETERRQ(r->comm, PETSC_ERR_FILE_UNEXPECTED,
              "checkpoint '%s': %s holds NaN or Inf (value %" PetscInt_FMT "); it cannot be loaded: use an earlier "
              "checkpoint of the run, or train again",
              r->path, path, j);
    }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCkptReaderReadShard(AckdCkptReader r, const char *name, PetscInt global, PetscInt lo, PetscInt hi,
                                       float *values)
{
  char     path[512];
  PetscInt have;
  hid_t    dset, fspace, mspace, dxpl;

  PetscFunctionBeginUser;
  snprintf(path, sizeof path, "/optim/%s", name);
  PetscCall(vector_length(r->file, path, &have));
  PetscCheck(have == global, r->comm, PETSC_ERR_FILE_UNEXPECTED,
             "checkpoint '%s': optimizer state %s has %" PetscInt_FMT " values, the run needs %" PetscInt_FMT, r->path,
             name, have, global);
  AckdCallH5(dset = H5Dopen2(r->file, path, H5P_DEFAULT), "opening %s", path);
  PetscCall(AckdH5SelectRows(dset, lo, hi - lo, &fspace, &mspace));
  AckdCallH5(dxpl = H5Pcreate(H5P_DATASET_XFER), "transfer property list");
  AckdCallH5(H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE), "collective transfer");
  AckdCallH5(H5Dread(dset, H5T_NATIVE_FLOAT, mspace, fspace, dxpl, values), "reading %s from '%s'", path, r->path);
  H5Pclose(dxpl);
  H5Sclose(mspace);
  H5Sclose(fspace);
  H5Dclose(dset);
  int bad = 0, any;
  for (PetscInt i = 0; i < hi - lo && !bad; i++) bad = !isfinite(values[i]);
  PetscCallMPI(MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, r->comm));
  PetscCheck(!any, r->comm, PETSC_ERR_FILE_UNEXPECTED,
             "checkpoint '%s': optimizer state %s holds NaN or Inf; it cannot be loaded: use an earlier checkpoint of "
             "the run, or train again",
             r->path, name);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCkptReaderHasMetric(AckdCkptReader r, const char *name, PetscBool *has)
{
  char     path[512];
  PetscInt n;

  PetscFunctionBeginUser;
  snprintf(path, sizeof path, "/metrics/%s", name);
  PetscCall(vector_length(r->file, path, &n));
  *has = (PetscBool)(n >= 0);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCkptReaderReadMetric(AckdCkptReader r, const char *name, PetscInt capacity, PetscInt *n,
                                        double *values)
{
  char  path[512];
  hid_t dset;

  PetscFunctionBeginUser;
  snprintf(path, sizeof path, "/metrics/%s", name);
  PetscCall(vector_length(r->file, path, n));
  PetscCheck(*n >= 0, r->comm, PETSC_ERR_FILE_UNEXPECTED, "checkpoint '%s' has no metric '%s'", r->path, name);
  PetscCheck(*n <= capacity, PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ,
             "metric %s has %" PetscInt_FMT " values, room for %" PetscInt_FMT, name, *n, capacity);
  AckdCallH5(dset = H5Dopen2(r->file, path, H5P_DEFAULT), "opening %s", path);
  if (*n > 0) AckdCallH5(H5Dread(dset, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, values), "reading %s", path);
  H5Dclose(dset);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCkptReaderDestroy(AckdCkptReader *reader)
{
  PetscFunctionBeginUser;
  if (!*reader) PetscFunctionReturn(0);
  PetscCall(AckdH5FileClose(&(*reader)->file, (*reader)->path));
  PetscCall(PetscFree(*reader));
  PetscFunctionReturn(0);
}
