/* Parallel HDF5 files: one place that decides how ackd opens, creates and
 * annotates them, so every stage behaves the same on a parallel file system. */
#include <ackd/core.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* Room beyond the metadata cache's contents that closing a file needs: the superblock, the free-space
 * and end-of-file bookkeeping HDF5 writes last. */
enum { CLOSE_MARGIN_BYTES = 64 * 1024 };

/* -h5_close_timeout and the room check's test switch: process-wide, as the file system is. */
static double    close_timeout   = 600;
static PetscBool skip_room_check = PETSC_FALSE;
static double    close_delay     = 0; /* testing: rank 1 comes to the close this late */

PetscErrorCode AckdH5SettingsSetFromOptions(AckdH5Settings *settings)
{
  PetscFunctionBeginUser;
  /* HDF5 honours HDF5_USE_FILE_LOCKING itself; the option makes the choice visible in -help. */
  const char *env               = getenv("HDF5_USE_FILE_LOCKING");
  settings->file_locking        = (PetscBool) !(env && (!strcmp(env, "FALSE") || !strcmp(env, "0")));
  settings->collective_metadata = PETSC_TRUE;
  /* Alignment pays on striped parallel file systems and costs space and
   * time elsewhere (measured: about 40% slower checkpoints on a local disk
   * at 1 MiB), so it is off unless the job sets the stripe size. */
  settings->alignment = 0;
  settings->streaming = PETSC_FALSE;
  PetscOptionsBegin(PETSC_COMM_WORLD, NULL, "HDF5 file access", NULL);
  PetscCall(AckdOptionsBool(PetscOptionsObject, "-h5_file_locking",
                            "Lock HDF5 files (turn off on file systems without POSIX locks, e.g. some Lustre mounts)",
                            &settings->file_locking, NULL));
  PetscCall(AckdOptionsBool(PetscOptionsObject, "-h5_collective_metadata",
                            "Collective metadata reads and writes (fewer metadata requests at scale)",
                            &settings->collective_metadata, NULL));
  PetscCall(AckdOptionsInt(
      PetscOptionsObject, "-h5_alignment",
      "Align objects of at least this many bytes to multiples of it: the stripe size on Lustre/GPFS (0: off)",
      &settings->alignment, 0, PETSC_MAX_INT, NULL));
  PetscCall(AckdOptionsBool(PetscOptionsObject, "-h5_streaming",
                            "Training stages read each batch's images from the dataset file instead of holding the "
                            "collection in node memory (collections larger than a node)",
                            &settings->streaming, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-h5_close_timeout",
                            "Seconds a file's final close may take before the run gives it up and ends (a full or "
                            "failing file system can leave it waiting forever)",
                            &close_timeout, 1, 1e9, NULL));
  PetscCall(AckdOptionsBool(PetscOptionsObject, "-h5_debug_skip_room_check",
                            "Testing: close files without first checking the file system has room", &skip_room_check,
                            NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-h5_debug_close_delay",
                            "Testing: rank 1 comes to each file's final close this many seconds late, so that the "
                            "others' close waits for it (the watchdog of -h5_close_timeout ends that wait)",
                            &close_delay, 0, 1e9, NULL));
  PetscOptionsEnd();
  PetscFunctionReturn(0);
}

static PetscErrorCode file_access(MPI_Comm comm, const AckdH5Settings *settings, hid_t *fapl)
{
  PetscFunctionBeginUser;
  /* ackd reports HDF5 errors itself, as single lines with context. */
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  AckdCallH5(*fapl = H5Pcreate(H5P_FILE_ACCESS), "creating a file-access property list");
  AckdCallH5(H5Pset_fapl_mpio(*fapl, comm, MPI_INFO_NULL), "selecting the MPI-IO driver");
  if (settings->collective_metadata) {
    AckdCallH5(H5Pset_all_coll_metadata_ops(*fapl, 1), "enabling collective metadata reads");
    AckdCallH5(H5Pset_coll_metadata_write(*fapl, 1), "enabling collective metadata writes");
  }
  if (settings->alignment > 0)
    AckdCallH5(H5Pset_alignment(*fapl, (hsize_t)settings->alignment, (hsize_t)settings->alignment),
               "setting alignment %" PetscInt_FMT, settings->alignment);
  AckdCallH5(H5Pset_file_locking(*fapl, settings->file_locking, 1), "setting file locking");
  PetscFunctionReturn(0);
}

PetscErrorCode AckdH5FileCreate(MPI_Comm comm, const char *path, const AckdH5Settings *settings, hid_t *file)
{
  hid_t fapl;

  PetscFunctionBeginUser;
  PetscCall(file_access(comm, settings, &fapl));
  /* Checked before any other HDF5 call: each call clears the error stack that AckdCallH5 reports. */
  AckdCallH5(*file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl),
             "cannot create '%s'; check that its directory exists and is writable", path);
  H5Pclose(fapl);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdH5FileOpenRead(MPI_Comm comm, const char *path, const AckdH5Settings *settings, hid_t *file)
{
  PetscMPIInt rank;
  int         state = 0; /* 0 fine, 1 missing, 2 unreadable, 3 not HDF5 */

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  /* One rank probes the file system so a large job does not hit the metadata server P times. */
  if (rank == 0) {
    if (access(path, F_OK))
      state = 1;
    else if (access(path, R_OK))
      state = 2;
    else {
      H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
      htri_t is_h5 = H5Fis_hdf5(path);
      H5Eclear2(H5E_DEFAULT);
      if (is_h5 <= 0) state = 3;
    }
  }
  PetscCallMPI(MPI_Bcast(&state, 1, MPI_INT, 0, comm));
  PetscCheck(state != 1, comm, PETSC_ERR_FILE_OPEN, "file '%s' not found; check the path", path);
  PetscCheck(state != 2, comm, PETSC_ERR_FILE_OPEN, "file '%s' is not readable; check its permissions", path);
  PetscCheck(state != 3, comm, PETSC_ERR_FILE_UNEXPECTED,
             "'%s' is not an HDF5 file (wrong file, or its first bytes are corrupt)", path);

  hid_t fapl;
  PetscCall(file_access(comm, settings, &fapl));
  AckdCallH5(*file = H5Fopen(path, H5F_ACC_RDONLY, fapl), "cannot open '%s' (a truncated or damaged HDF5 file?)", path);
  H5Pclose(fapl);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdH5FileClose(hid_t *file, const char *path)
{
  PetscFunctionBeginUser;
  if (*file >= 0) AckdCallH5(H5Fclose(*file), "closing '%s'", path);
  *file = H5I_INVALID_HID;
  PetscFunctionReturn(0);
}

static void partial_name(const char *path, char *partial, size_t len)
{
  snprintf(partial, len, "%s.part", path);
}

/* The temporary name is predictable, so whatever stands there (a stale .part, or a link planted
 * to another file) is removed, not followed, and the name is created afresh, exclusively, by one
 * rank before every rank opens it: HDF5's truncating create would write through a symbolic link,
 * and the final rename would then move the link into the output's place. */
PetscErrorCode AckdH5FileCreatePartial(MPI_Comm comm, const char *path, const AckdH5Settings *h5, hid_t *file)
{
  char        partial[PETSC_MAX_PATH_LEN + 8];
  PetscMPIInt rank;
  int         error = 0;

  PetscFunctionBeginUser;
  partial_name(path, partial, sizeof partial);
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  if (rank == 0) {
    if (unlink(partial) && errno != ENOENT) error = errno;
    if (!error) {
      int fd = open(partial, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
      if (fd < 0)
        error = errno;
      else
        close(fd);
    }
  }
  PetscCallMPI(MPI_Bcast(&error, 1, MPI_INT, 0, comm));
  PetscCheck(!error, comm, PETSC_ERR_FILE_OPEN,
             "cannot create '%s' (%s); check that its directory exists and is writable", partial, strerror(error));
  PetscCall(AckdH5FileCreate(comm, partial, h5, file));
  PetscFunctionReturn(0);
}

/* A collective close can still hang when the file system fills after the room check below (or a
 * quota it cannot see runs out): a rank whose metadata write failed leaves the others at HDF5's
 * barrier. A watchdog thread bounds that wait: a close not done after -h5_close_timeout seconds
 * ends the process, rank 0 first removing the .part; mpirun then ends the other ranks. */
typedef struct {
  pthread_mutex_t lock;
  pthread_cond_t  finished;
  int             done, rank;
  const char     *partial;
} CloseWatch;

static void *watch_close(void *arg)
{
  CloseWatch     *w = arg;
  struct timespec deadline;
  int             done;

  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += (time_t)close_timeout;
  pthread_mutex_lock(&w->lock);
  while (!w->done && pthread_cond_timedwait(&w->finished, &w->lock, &deadline) != ETIMEDOUT) {}
  done = w->done;
  pthread_mutex_unlock(&w->lock);
  if (!done) {
    if (w->rank == 0)
      unlink(w->partial);
    else
      sleep(3); /* rank 0 speaks first; its end ends the others (one line, not one per rank) */
    fprintf(stderr,
            "ackd: error: closing '%s' has not finished after %g s (-h5_close_timeout): its file system is full, "
            "over quota or failing; the file is given up and the run ends\n",
            w->partial, close_timeout);
    fflush(stderr);
    _exit(ACKD_EXIT_ERROR);
  }
  return NULL;
}

static herr_t close_watched(hid_t file, int rank, const char *partial)
{
  CloseWatch w = {
      .lock = PTHREAD_MUTEX_INITIALIZER, .finished = PTHREAD_COND_INITIALIZER, .rank = rank, .partial = partial};
  pthread_t watcher;
  if (rank == 1) AckdSleep(close_delay); /* a rank held up elsewhere: its peers' collective close waits */
  int    watching = !pthread_create(&watcher, NULL, watch_close, &w);
  herr_t closed   = H5Fclose(file);
  if (watching) {
    pthread_mutex_lock(&w.lock);
    w.done = 1;
    pthread_cond_signal(&w.finished);
    pthread_mutex_unlock(&w.lock);
    pthread_join(watcher, NULL);
  }
  return closed;
}

PetscErrorCode AckdH5FileCommit(MPI_Comm comm, hid_t *file, const char *path)
{
  char        partial[PETSC_MAX_PATH_LEN + 8];
  PetscMPIInt rank;
  int         renamed = 0;

  PetscFunctionBeginUser;
  partial_name(path, partial, sizeof partial);
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  /* Closing flushes the metadata HDF5 still holds. If that write fails, it fails on the rank that
   * writes while the others wait at the flush's barrier: the close hangs. So the file is given up
   * instead when its file system lacks room for the metadata cache's contents. */
  {
    size_t max_size, min_clean, cached;
    int    entries, room = 1;
    AckdCallH5(H5Fget_mdc_size(*file, &max_size, &min_clean, &cached, &entries), "'%s': metadata cache size", partial);
    struct statvfs fs;
    if (rank == 0 && !skip_room_check && !statvfs(partial, &fs))
      room = (unsigned long long)fs.f_bavail * fs.f_frsize >= (unsigned long long)cached + CLOSE_MARGIN_BYTES;
    PetscCallMPI(MPI_Bcast(&room, 1, MPI_INT, 0, comm));
    if (!room) {
      char message[PETSC_MAX_PATH_LEN + 160];
      snprintf(message, sizeof message,
               "no room left to finish '%s' (its metadata needs about %zu KiB); free space on its file system", path,
               (cached + CLOSE_MARGIN_BYTES) / 1024);
      PetscCall(AckdH5FileAbandon(comm, *file, PETSC_FUNCTION_NAME, __LINE__, __FILE__, message));
    }
  }
  /* A failure of the close itself (some ranks only) is agreed, which also puts every rank's data
   * in the file before it gets its final name. */
  herr_t closed = close_watched(*file, rank, partial);
  *file         = H5I_INVALID_HID;
  {
    int failed = closed < 0, any;
    PetscCallMPI(MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, comm));
    if (any && rank == 0) unlink(partial);
    if (any)
      PetscCall(AckdH5Agree(comm, closed, H5I_INVALID_HID, PETSC_FUNCTION_NAME, __LINE__, __FILE__,
                            "closing '%s'; check the free space of its file system", partial));
  }
  if (rank == 0 && !(renamed = AckdFileRenameDurable(partial, path))) unlink(partial);
  PetscCallMPI(MPI_Bcast(&renamed, 1, MPI_INT, 0, comm));
  PetscCheck(renamed, comm, PETSC_ERR_FILE_WRITE,
             "cannot sync and rename '%s' to '%s'; check the directory's permissions and free space", partial, path);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdH5FileDiscard(MPI_Comm comm, hid_t *file, const char *path)
{
  char        partial[PETSC_MAX_PATH_LEN + 8];
  PetscMPIInt rank;

  PetscFunctionBeginUser;
  partial_name(path, partial, sizeof partial);
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCall(AckdH5FileClose(file, partial));
  PetscCallMPI(MPI_Barrier(comm)); /* closed everywhere before it goes */
  if (rank == 0) unlink(partial);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdH5SelectRows(hid_t dset, PetscInt first, PetscInt n, hid_t *fspace, hid_t *mspace)
{
  hsize_t dims[H5S_MAX_RANK], start[H5S_MAX_RANK] = {0}, one[H5S_MAX_RANK];

  PetscFunctionBeginUser;
  AckdCallH5(*fspace = H5Dget_space(dset), "dataspace of a dataset");
  int rank = H5Sget_simple_extent_ndims(*fspace);
  AckdCallH5(rank, "rank of a dataset");
  H5Sget_simple_extent_dims(*fspace, dims, NULL);
  for (int d = 0; d < rank; d++) one[d] = 1;
  start[0] = (hsize_t)first;
  dims[0]  = (hsize_t)n;
  if (n > 0) {
    AckdCallH5(H5Sselect_hyperslab(*fspace, H5S_SELECT_SET, start, NULL, dims, NULL),
               "selecting rows %" PetscInt_FMT "..%" PetscInt_FMT, first, first + n);
    AckdCallH5(*mspace = H5Screate_simple(rank, dims, NULL), "memory space of %" PetscInt_FMT " rows", n);
  } else {
    H5Sselect_none(*fspace);
    AckdCallH5(*mspace = H5Screate_simple(rank, one, NULL), "empty memory space");
    H5Sselect_none(*mspace);
  }
  PetscFunctionReturn(0);
}

/* Negative on a failure, with HDF5's error left for AckdCallH5 to report: nothing is called after
 * it, not even the close of the space, since any call clears the error. */
static herr_t read_shape(hid_t dset, AckdH5Shape *shape)
{
  hid_t space = H5Dget_space(dset);
  if (space < 0) return -1;
  shape->rank = H5Sget_simple_extent_ndims(space);
  if (shape->rank < 0 || H5Sget_simple_extent_dims(space, shape->dims, NULL) < 0) return -1;
  return H5Sclose(space);
}

PetscErrorCode AckdH5DatasetShapeOf(hid_t dset, const char *path, const char *name, AckdH5Shape *shape)
{
  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(shape, sizeof *shape));
  herr_t status = read_shape(dset, shape);
  if (path)
    AckdCallH5(status, "'%s': the shape of %s", path, name);
  else
    AckdCallH5(status, "the shape of %s", name);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdH5DatasetShape(hid_t loc, const char *name, const char *path, AckdH5Shape *shape)
{
  hid_t dset;

  PetscFunctionBeginUser;
  AckdCallH5(dset = H5Dopen2(loc, name, H5P_DEFAULT), "'%s': opening %s", path, name);
  PetscErrorCode ierr = AckdH5DatasetShapeOf(dset, path, name, shape);
  if (ierr) H5Dclose(dset); /* the error is raised already */
  PetscCall(ierr);
  AckdCallH5(H5Dclose(dset), "'%s': closing %s", path, name);
  PetscFunctionReturn(0);
}

static PetscErrorCode attr_write(hid_t obj, const char *name, hid_t type, const void *value)
{
  hid_t space, attr;

  PetscFunctionBeginUser;
  if (H5Aexists(obj, name) > 0) AckdCallH5(H5Adelete(obj, name), "replacing attribute '%s'", name);
  AckdCallH5(space = H5Screate(H5S_SCALAR), "attribute '%s'", name);
  AckdCallH5(attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT), "creating attribute '%s'", name);
  AckdCallH5(H5Awrite(attr, type, value), "writing attribute '%s'", name);
  H5Aclose(attr);
  H5Sclose(space);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdH5AttrWriteString(hid_t obj, const char *name, const char *value)
{
  hid_t type;

  PetscFunctionBeginUser;
  /* Variable-length UTF-8 so h5py returns str, not bytes. */
  AckdCallH5(type = H5Tcopy(H5T_C_S1), "string type");
  H5Tset_size(type, H5T_VARIABLE);
  H5Tset_cset(type, H5T_CSET_UTF8);
  PetscErrorCode ierr = attr_write(obj, name, type, &value);
  H5Tclose(type);
  PetscCall(ierr);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdH5WriteRows(MPI_Comm comm, hid_t loc, const char *name, hid_t h5type, PetscInt nglobal,
                               PetscInt columns, PetscInt first, PetscInt n, const void *data)
{
  hsize_t dims[2] = {(hsize_t)nglobal, (hsize_t)columns};
  hid_t   space, dset, fspace, mspace, dxpl;

  PetscFunctionBeginUser;
  AckdCallH5(space = H5Screate_simple(columns > 0 ? 2 : 1, dims, NULL), "dataspace of %s", name);
  AckdCallH5(dset = H5Dcreate2(loc, name, h5type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "creating %s", name);
  H5Sclose(space);
  PetscCall(AckdH5SelectRows(dset, first, n, &fspace, &mspace));
  AckdCallH5(dxpl = H5Pcreate(H5P_DATASET_XFER), "transfer property list");
  AckdCallH5(H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE), "collective transfer");
  AckdCallH5Agreed(comm, loc, H5Dwrite(dset, h5type, mspace, fspace, dxpl, data),
                   "writing rows %" PetscInt_FMT "..%" PetscInt_FMT " of %s", first, first + n, name);
  H5Pclose(dxpl);
  H5Sclose(mspace);
  H5Sclose(fspace);
  H5Dclose(dset);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdH5AttrWriteInt(hid_t obj, const char *name, PetscInt value)
{
  long long v = value;

  PetscFunctionBeginUser;
  PetscCall(attr_write(obj, name, H5T_NATIVE_LLONG, &v));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdH5AttrWriteIntArray(hid_t obj, const char *name, PetscInt n, const PetscInt *values)
{
  hid_t     space, attr;
  hsize_t   dims = (hsize_t)n;
  long long v[64];

  PetscFunctionBeginUser;
  PetscCheck(n > 0 && n <= 64, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "attribute '%s': %" PetscInt_FMT " values, 1 to 64 supported", name, n);
  for (PetscInt i = 0; i < n; i++) v[i] = values[i];
  if (H5Aexists(obj, name) > 0) AckdCallH5(H5Adelete(obj, name), "replacing attribute '%s'", name);
  AckdCallH5(space = H5Screate_simple(1, &dims, NULL), "attribute '%s'", name);
  AckdCallH5(attr = H5Acreate2(obj, name, H5T_NATIVE_LLONG, space, H5P_DEFAULT, H5P_DEFAULT), "creating attribute '%s'",
             name);
  AckdCallH5(H5Awrite(attr, H5T_NATIVE_LLONG, v), "writing attribute '%s'", name);
  H5Aclose(attr);
  H5Sclose(space);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdH5AttrWriteReal(hid_t obj, const char *name, double value)
{
  PetscFunctionBeginUser;
  PetscCall(attr_write(obj, name, H5T_NATIVE_DOUBLE, &value));
  PetscFunctionReturn(0);
}

static PetscErrorCode attr_open(hid_t obj, const char *name, hid_t *attr, PetscBool *found)
{
  PetscFunctionBeginUser;
  *attr      = H5I_INVALID_HID;
  htri_t has = H5Aexists(obj, name);
  AckdCallH5(has, "looking up attribute '%s'", name);
  if (found)
    *found = (PetscBool)(has > 0);
  else
    PetscCheck(has > 0, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED, "attribute '%s' is missing", name);
  if (has > 0) AckdCallH5(*attr = H5Aopen(obj, name, H5P_DEFAULT), "opening attribute '%s'", name);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdH5AttrReadString(hid_t obj, const char *name, char *value, size_t len, PetscBool *found)
{
  hid_t attr, ftype, mtype;

  PetscFunctionBeginUser;
  value[0] = '\0';
  PetscCall(attr_open(obj, name, &attr, found));
  if (attr < 0) PetscFunctionReturn(0);
  ftype = H5Aget_type(attr);
  PetscCheck(H5Tget_class(ftype) == H5T_STRING, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED,
             "attribute '%s' is not a string", name);
  mtype = H5Tcopy(H5T_C_S1);
  H5Tset_cset(mtype, H5Tget_cset(ftype)); /* HDF5 does not convert between ASCII and UTF-8 */
  if (H5Tis_variable_str(ftype) > 0) {
    char *text = NULL;
    H5Tset_size(mtype, H5T_VARIABLE);
    AckdCallH5(H5Aread(attr, mtype, &text), "reading attribute '%s'", name);
    if (text) snprintf(value, len, "%s", text);
    H5free_memory(text);
  } else {
    size_t n = H5Tget_size(ftype);
    char  *buf;
    PetscCall(PetscCalloc1(n + 1, &buf));
    H5Tset_size(mtype, n);
    AckdCallH5(H5Aread(attr, mtype, buf), "reading attribute '%s'", name);
    snprintf(value, len, "%s", buf);
    PetscCall(PetscFree(buf));
  }
  H5Tclose(mtype);
  H5Tclose(ftype);
  H5Aclose(attr);
  PetscFunctionReturn(0);
}

static PetscErrorCode attr_read_numeric(hid_t obj, const char *name, hid_t mtype, void *value, PetscBool *found)
{
  hid_t attr;

  PetscFunctionBeginUser;
  PetscCall(attr_open(obj, name, &attr, found));
  if (attr < 0) PetscFunctionReturn(0);
  hid_t    space = H5Aget_space(attr);
  hssize_t n     = H5Sget_simple_extent_npoints(space);
  H5Sclose(space);
  PetscCheck(n == 1, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED, "attribute '%s' should hold one value, has %lld", name,
             (long long)n);
  AckdCallH5(H5Aread(attr, mtype, value), "reading attribute '%s'", name);
  H5Aclose(attr);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdH5AttrReadInt(hid_t obj, const char *name, PetscInt *value, PetscBool *found)
{
  long long v = 0;

  PetscFunctionBeginUser;
  PetscCall(attr_read_numeric(obj, name, H5T_NATIVE_LLONG, &v, found));
  if (!found || *found) *value = (PetscInt)v;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdH5AttrReadReal(hid_t obj, const char *name, double *value, PetscBool *found)
{
  PetscFunctionBeginUser;
  PetscCall(attr_read_numeric(obj, name, H5T_NATIVE_DOUBLE, value, found));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdH5WriteSmall(MPI_Comm comm, hid_t loc, const char *name, hid_t h5type, int rank, const hsize_t *dims,
                                const void *data)
{
  PetscMPIInt r;
  hid_t       space, dset;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &r));
  AckdCallH5(space = H5Screate_simple(rank, dims, NULL), "dataspace of '%s'", name);
  AckdCallH5(dset = H5Dcreate2(loc, name, h5type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
             "creating dataset '%s'", name);
  /* Independent transfer: only rank 0 holds the data; the others need not take part. */
  AckdCallH5Agreed(comm, loc, r == 0 ? H5Dwrite(dset, h5type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) : 0,
                   "writing dataset '%s'", name);
  H5Dclose(dset);
  H5Sclose(space);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdH5WriteStrings(MPI_Comm comm, hid_t loc, const char *name, PetscInt n, const char *const *strings)
{
  size_t width = 1;
  char  *packed;
  hid_t  type;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < n; i++) width = PetscMax(width, strlen(strings[i]) + 1);
  PetscCall(PetscCalloc1((size_t)PetscMax(n, 1) * width, &packed));
  for (PetscInt i = 0; i < n; i++) memcpy(packed + (size_t)i * width, strings[i], strlen(strings[i]));
  AckdCallH5(type = H5Tcopy(H5T_C_S1), "string type of '%s'", name);
  H5Tset_size(type, width);
  H5Tset_strpad(type, H5T_STR_NULLTERM);
  hsize_t        dims = (hsize_t)n;
  PetscErrorCode ierr = AckdH5WriteSmall(comm, loc, name, type, 1, &dims, packed);
  H5Tclose(type);
  PetscCall(PetscFree(packed));
  PetscCall(ierr);
  PetscFunctionReturn(0);
}
