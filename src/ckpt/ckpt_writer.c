/* Writing checkpoints: collective parallel HDF5 into a .part file, renamed
 * into place when complete, then the oldest beyond the last K deleted. */
#include "ckpt_private.h"
#include <signal.h>
#include <string.h>
#include <unistd.h>

struct _p_AckdCkptWriter {
  MPI_Comm       comm;
  char           architecture[128], prefix[64];
  char           dir[PETSC_MAX_PATH_LEN];
  char           path[PETSC_MAX_PATH_LEN];
  PetscInt       keep, every_steps, every_epochs, kill_after, written;
  AckdH5Settings h5;
  AckdCkptState  state;
  PetscBool      named; /* this checkpoint has its own name (BeginAt): no keep-K pruning */
  hid_t          file, dxpl;
};

PetscErrorCode AckdCkptWriterCreate(MPI_Comm comm, const char *architecture, AckdCkptWriter *writer)
{
  AckdCkptWriter w;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&w));
  w->comm = comm;
  PetscCall(PetscStrncpy(w->architecture, architecture, sizeof w->architecture));
  PetscCall(PetscStrncpy(w->dir, "checkpoints", sizeof w->dir));
  w->keep         = 3;
  w->every_epochs = 1;
  w->file         = H5I_INVALID_HID;
  *writer         = w;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCkptWriterSetOptionsPrefix(AckdCkptWriter w, const char *prefix)
{
  PetscFunctionBeginUser;
  PetscCall(PetscStrncpy(w->prefix, prefix ? prefix : "", sizeof w->prefix));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCkptWriterSetArchitecture(AckdCkptWriter w, const char *architecture)
{
  PetscFunctionBeginUser;
  PetscCall(PetscStrncpy(w->architecture, architecture, sizeof w->architecture));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCkptWriterSetDirectory(AckdCkptWriter w, const char *dir)
{
  PetscFunctionBeginUser;
  PetscCall(PetscStrncpy(w->dir, dir, sizeof w->dir));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCkptWriterSetFromOptions(AckdCkptWriter w)
{
  PetscFunctionBeginUser;
  PetscOptionsBegin(w->comm, w->prefix[0] ? w->prefix : NULL, "Checkpoints", NULL);
  PetscCall(AckdOptionsString(PetscOptionsObject, "-ckpt_dir", "Directory of the run's checkpoints", w->dir,
                              sizeof w->dir, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-ckpt_keep", "How many of the newest checkpoints to keep", &w->keep, 1,
                           1000000, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-ckpt_every_steps", "Write a checkpoint every N steps (0: never)",
                           &w->every_steps, 0, PETSC_MAX_INT, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-ckpt_every_epochs", "Write a checkpoint every N epochs (0: never)",
                           &w->every_epochs, 0, PETSC_MAX_INT, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-ckpt_debug_kill_after",
                           "Fault injection: SIGKILL this process after N entries of the next checkpoint (0: off)",
                           &w->kill_after, 0, PETSC_MAX_INT, NULL));
  PetscOptionsEnd();
  PetscCall(AckdH5SettingsSetFromOptions(&w->h5));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCkptWriterGetDirectory(AckdCkptWriter w, const char **dir)
{
  PetscFunctionBeginUser;
  *dir = w->dir;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCkptWriterIsDue(AckdCkptWriter w, const AckdCkptState *s, PetscBool end_of_epoch, PetscBool *due)
{
  PetscFunctionBeginUser;
  *due = (PetscBool)((w->every_steps > 0 && s->step > 0 && s->step % w->every_steps == 0) ||
                     (end_of_epoch && w->every_epochs > 0 && (s->epoch + 1) % w->every_epochs == 0));
  PetscFunctionReturn(0);
}

/* Counts what was written; the fault injection fires here, mid-file. */
static void entry_written(AckdCkptWriter w)
{
  if (w->kill_after > 0 && ++w->written == w->kill_after) raise(SIGKILL);
}

static PetscErrorCode begin_file(AckdCkptWriter w, const AckdCkptState *s)
{
  char *options;
  hid_t state;

  PetscFunctionBeginUser;
  PetscCall(AckdH5FileCreatePartial(w->comm, w->path, &w->h5, &w->file));
  AckdCallH5(w->dxpl = H5Pcreate(H5P_DATASET_XFER), "transfer property list");
  AckdCallH5(H5Pset_dxpl_mpio(w->dxpl, H5FD_MPIO_COLLECTIVE), "collective transfer");
  PetscCall(AckdH5AttrWriteString(w->file, "ackd_format", ACKD_FORMAT_CHECKPOINT));
  PetscCall(AckdH5AttrWriteInt(w->file, "ackd_format_version", ACKD_FORMAT_CHECKPOINT_VERSION));
  PetscCall(AckdH5AttrWriteString(w->file, "ackd_version", ACKD_VERSION_STRING));
  PetscCall(AckdH5AttrWriteString(w->file, "architecture", w->architecture));
  AckdCallH5(state = H5Gcreate2(w->file, "state", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "creating /state");
  PetscCall(AckdH5AttrWriteInt(state, "epoch", s->epoch));
  PetscCall(AckdH5AttrWriteInt(state, "step", s->step));
  PetscCall(AckdH5AttrWriteInt(state, "cursor", s->cursor));
  PetscCall(AckdH5AttrWriteInt(state, "seed", s->seed));
  H5Gclose(state);
  PetscCall(AckdOptionsToString(&options));
  PetscCall(AckdH5AttrWriteString(w->file, "options", options));
  PetscCall(PetscFree(options));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCkptWriterBegin(AckdCkptWriter w, const AckdCkptState *s)
{
  PetscFunctionBeginUser;
  PetscCheck(w->file < 0, PETSC_COMM_SELF, PETSC_ERR_ARG_WRONGSTATE, "a checkpoint is already being written");
  {
    char option[96];
    snprintf(option, sizeof option, "-%sckpt_dir", w->prefix);
    PetscCall(AckdDirectoryCreate(w->comm, w->dir, option));
  }
  w->state   = *s;
  w->written = 0;
  w->named   = PETSC_FALSE;
  AckdCkptPath(w->dir, s->step, w->path, sizeof w->path);
  PetscCall(begin_file(w, s));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCkptWriterBeginAt(AckdCkptWriter w, const char *path, const AckdCkptState *s)
{
  PetscFunctionBeginUser;
  PetscCheck(w->file < 0, PETSC_COMM_SELF, PETSC_ERR_ARG_WRONGSTATE, "a checkpoint is already being written");
  w->state   = *s;
  w->written = 0;
  w->named   = PETSC_TRUE;
  PetscCall(PetscStrncpy(w->path, path, sizeof w->path));
  PetscCall(begin_file(w, s));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCkptWriterGetFile(AckdCkptWriter w, hid_t *file)
{
  PetscFunctionBeginUser;
  PetscCheck(w->file >= 0, PETSC_COMM_SELF, PETSC_ERR_ARG_WRONGSTATE, "no checkpoint is being written");
  *file = w->file;
  PetscFunctionReturn(0);
}

/* A 1-D float dataset at `path`, creating the groups on the way. */
static PetscErrorCode create_vector(hid_t file, const char *path, PetscInt n, hid_t type, hid_t *dset)
{
  hid_t   space, lcpl;
  hsize_t dims = (hsize_t)n;

  PetscFunctionBeginUser;
  AckdCallH5(lcpl = H5Pcreate(H5P_LINK_CREATE), "link property list");
  AckdCallH5(H5Pset_create_intermediate_group(lcpl, 1), "intermediate groups");
  /* An empty history (no epoch finished yet) is a null dataspace: HDF5 has no zero-length simple one. */
  if (n == 0)
    AckdCallH5(space = H5Screate(H5S_NULL), "dataspace of %s", path);
  else
    AckdCallH5(space = H5Screate_simple(1, &dims, NULL), "dataspace of %s", path);
  AckdCallH5(*dset = H5Dcreate2(file, path, type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT), "creating %s", path);
  H5Sclose(space);
  H5Pclose(lcpl);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCkptWriterWriteModel(AckdCkptWriter w, const char *group, PetscInt n, const AckdCkptEntry *entries)
{
  PetscMPIInt rank;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(w->comm, &rank));
  for (PetscInt i = 0; i < n; i++) {
    char  path[512];
    hid_t dset;
    PetscCheck(entries[i].size > 0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
               "model entry '%s' has %" PetscInt_FMT " values; a checkpointed array must hold at least one",
               entries[i].name, entries[i].size);
    AckdCkptEntryPath(group, entries[i].name, path, sizeof path);
    PetscCall(create_vector(w->file, path, entries[i].size, H5T_NATIVE_FLOAT, &dset));
    /* The flat vector is what the reader checks; the shape is for people and scripts (h5py reshape). */
    if (entries[i].ndims > 0) PetscCall(AckdH5AttrWriteIntArray(dset, "shape", entries[i].ndims, entries[i].dims));
    /* Replicated values: one writer is enough, the others only take part in the creation. */
    AckdCallH5Agreed(w->comm, dset,
                     rank == 0 ? H5Dwrite(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, entries[i].data) : 0,
                     "writing %s to '%s'", path, w->path);
    H5Dclose(dset);
    entry_written(w);
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCkptWriterWriteShard(AckdCkptWriter w, const char *name, PetscInt global, PetscInt lo, PetscInt hi,
                                        const float *values, PetscBool replicated)
{
  PetscMPIInt rank;
  char        path[512];
  hid_t       dset, fspace, mspace;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(w->comm, &rank));
  if (replicated && rank != 0) lo = hi = 0;
  PetscCheck(0 <= lo && lo <= hi && hi <= global, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "shard [%" PetscInt_FMT ", %" PetscInt_FMT ") of %s is outside its %" PetscInt_FMT " values", lo, hi, name,
             global);
  snprintf(path, sizeof path, "/optim/%s", name);
  PetscCall(create_vector(w->file, path, global, H5T_NATIVE_FLOAT, &dset));
  PetscCall(AckdH5SelectRows(dset, lo, hi - lo, &fspace, &mspace));
  /* Each owner writes its slice, collectively: sharded optimizer state is written by its owners. */
  AckdCallH5Agreed(w->comm, dset, H5Dwrite(dset, H5T_NATIVE_FLOAT, mspace, fspace, w->dxpl, values),
                   "writing %s to '%s'", path, w->path);
  H5Sclose(mspace);
  H5Sclose(fspace);
  H5Dclose(dset);
  entry_written(w);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCkptWriterWriteMetric(AckdCkptWriter w, const char *name, PetscInt n, const double *values)
{
  char        path[512];
  hid_t       dset;
  PetscMPIInt rank;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(w->comm, &rank));
  snprintf(path, sizeof path, "/metrics/%s", name);
  PetscCall(create_vector(w->file, path, n, H5T_NATIVE_DOUBLE, &dset));
  AckdCallH5Agreed(w->comm, dset,
                   rank == 0 && n > 0 ? H5Dwrite(dset, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, values) : 0,
                   "writing %s to '%s'", path, w->path);
  H5Dclose(dset);
  PetscFunctionReturn(0);
}

/* Deletes complete checkpoints beyond the newest K, and .part files older
 * than the one just committed (left by killed runs). */
static PetscErrorCode prune(AckdCkptWriter w)
{
  PetscInt *steps, n;
  char      path[PETSC_MAX_PATH_LEN + 16];

  PetscFunctionBeginUser;
  PetscCall(AckdCkptList(w->dir, PETSC_FALSE, &steps, &n));
  for (PetscInt i = w->keep; i < n; i++) {
    AckdCkptPath(w->dir, steps[i], path, sizeof path);
    unlink(path);
  }
  PetscCall(PetscFree(steps));
  PetscCall(AckdCkptList(w->dir, PETSC_TRUE, &steps, &n));
  for (PetscInt i = 0; i < n; i++) {
    if (steps[i] >= w->state.step) continue;
    AckdCkptPath(w->dir, steps[i], path, sizeof path);
    PetscCall(PetscStrlcat(path, ".part", sizeof path));
    unlink(path);
  }
  PetscCall(PetscFree(steps));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCkptWriterCommit(AckdCkptWriter w)
{
  PetscMPIInt rank;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(w->comm, &rank));
  H5Pclose(w->dxpl);
  PetscCall(AckdH5FileCommit(w->comm, &w->file, w->path));
  w->file = H5I_INVALID_HID;
  if (rank == 0 && !w->named) PetscCall(prune(w));
  PetscCallMPI(MPI_Barrier(w->comm));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCkptWriterDestroy(AckdCkptWriter *writer)
{
  PetscFunctionBeginUser;
  if (!*writer) PetscFunctionReturn(0);
  if ((*writer)->file >= 0) H5Fclose((*writer)->file); /* abandoned mid-write: the .part stays behind */
  PetscCall(PetscFree(*writer));
  PetscFunctionReturn(0);
}
