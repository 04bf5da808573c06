/* ackd core: the runtime every other module stands on.
 *
 * Errors are PETSc errors: every fallible call is wrapped in PetscCall, and the
 * AckdCallH5 / AckdCallDnnl macros below turn HDF5 and oneDNN failures into PETSc
 * errors that carry both ackd's context (which file, dataset or layer) and the
 * library's own description. MPI calls use PETSc's PetscCallMPI.
 */
#ifndef ACKD_CORE_H
#define ACKD_CORE_H

#include <petscsys.h>
#include <hdf5.h>
#include <stdint.h>

#define ACKD_VERSION_STRING "0.1.0"

/* Process exit codes, documented in docs/EXIT_CODES.md. */
typedef enum {
  ACKD_EXIT_OK    = 0,
  ACKD_EXIT_ERROR = 1, /* a run failed: bad input, I/O, numerical trouble */
  ACKD_EXIT_USAGE = 2  /* the command line itself is wrong: stage, option or value */
} AckdExitCode;

/* ---------------------------------------------------------------- errors */

/* Raise a PETSc error whose message is ackd's context followed by the innermost
 * HDF5 error description. Not called directly: use AckdCallH5. */
PetscErrorCode AckdH5Fail(const char *func, int line, const char *file, const char *fmt, ...)
    PETSC_ATTRIBUTE_FORMAT(4, 5);
PetscErrorCode AckdDnnlFail(int status, const char *func, int line, const char *file, const char *fmt, ...)
    PETSC_ATTRIBUTE_FORMAT(5, 6);

/* AckdCallH5(H5Dwrite(...), "writing %s in '%s'", name, path): any negative
 * herr_t or hid_t result becomes a PETSc error with that context. */
#define AckdCallH5(expr, ...)                                                                                          \
  do {                                                                                                                 \
    if ((expr) < 0) return AckdH5Fail(PETSC_FUNCTION_NAME, __LINE__, __FILE__, __VA_ARGS__);                           \
  } while (0)

/* The outcome of one write to a file every rank of comm has open, agreed by all of them: `status`
 * is this rank's result (0 on a rank that wrote nothing). On a failure anywhere, every rank raises
 * the same error (the first failing rank's, with HDF5's reason) at the same point, so no rank is
 * left waiting in a later collective of the file, and rank 0 removes the file when it is an ackd
 * temporary (NAME.part): nothing half-written keeps a name. Not called directly: use
 * AckdCallH5Agreed. */
PetscErrorCode AckdH5Agree(MPI_Comm comm, herr_t status, hid_t loc, const char *func, int line, const char *file,
                           const char *fmt, ...) PETSC_ATTRIBUTE_FORMAT(7, 8);

/* Gives up a file open on every rank of comm (loc: any object in it), collectively: rank 0 removes
 * it if it is an ackd temporary (NAME.part), and every rank raises `message`. The process must then
 * end without closing the file (AckdH5FileAbandoned). */
PetscErrorCode AckdH5FileAbandon(MPI_Comm comm, hid_t loc, const char *func, int line, const char *file,
                                 const char *message);

/* 1 once a file has been abandoned (a write failed, or no room was left to close it): it cannot be
 * closed collectively any more, so the process must end without MPI_Finalize, where HDF5 would
 * try (main.c). */
int AckdH5FileAbandoned(void);

/* AckdCallH5Agreed(comm, dset, rank == 0 ? H5Dwrite(...) : 0, "writing %s to '%s'", name, path) */
#define AckdCallH5Agreed(comm, loc, expr, ...)                                                                         \
  PetscCall(                                                                                                           \
      AckdH5Agree((comm), (herr_t)(expr) < 0 ? -1 : 0, (loc), PETSC_FUNCTION_NAME, __LINE__, __FILE__, __VA_ARGS__))

/* AckdCallDnnl(dnnl_primitive_create(...), "creating convolution %s", layer) */
#define AckdCallDnnl(expr, ...)                                                                                        \
  do {                                                                                                                 \
    int ackd_dnnl_status_ = (int)(expr);                                                                               \
    if (ackd_dnnl_status_ != 0)                                                                                        \
      return AckdDnnlFail(ackd_dnnl_status_, PETSC_FUNCTION_NAME, __LINE__, __FILE__, __VA_ARGS__);                    \
  } while (0)

/* The runtime keeps the first error message so that main() can print it as one
 * line; -traceback restores PETSc's full stack for debugging. */
typedef struct {
  char           message[1024];
  PetscErrorCode code;
  PetscBool      traceback;
} AckdErrorRecord;

PetscErrorCode AckdErrorHandler(MPI_Comm comm, int line, const char *func, const char *file, PetscErrorCode n,
                                PetscErrorType p, const char *mess, void *ctx);

/* Ends a run collectively without ever hanging: ranks agree on the outcome if
 * they can, exactly one rank prints the first error as a single line, and a
 * rank whose peers never arrive (they are stuck in a collective it left)
 * aborts the whole job after `grace_seconds`. Returns the process exit code. */
int AckdFinish(MPI_Comm comm, const char *stage, PetscErrorCode status, const AckdErrorRecord *record,
               double grace_seconds);
/* The main() of a program beside ackd (the benchmarks): PETSc started, `body` run under ackd's
 * error handler, the end as ackd's own (AckdFinish): an error is one line naming `name`, and a
 * failing rank never leaves the others hanging. Returns the exit code. */
int AckdToolMain(int argc, char **argv, const char *name, PetscErrorCode (*body)(void));

/* ---------------------------------------------------------------- logging */

/* Rank-0 informational output on stdout; silenced by -quiet. */
typedef struct {
  MPI_Comm  comm;
  PetscBool quiet;
} AckdLog;

PetscErrorCode AckdLogSetUp(AckdLog *log, MPI_Comm comm);
PetscErrorCode AckdLogInfo(const AckdLog *log, const char *fmt, ...) PETSC_ATTRIBUTE_FORMAT(2, 3);
/* Rank-0 output that is the stage's result (eval's accuracy): printed even with -quiet. */
PetscErrorCode AckdLogResult(const AckdLog *log, const char *fmt, ...) PETSC_ATTRIBUTE_FORMAT(2, 3);
/* Warnings go to stderr on rank 0 whatever -quiet says. */
PetscErrorCode AckdLogWarn(const AckdLog *log, const char *fmt, ...) PETSC_ATTRIBUTE_FORMAT(2, 3);

/* A package's -log_view class and events, registered once per process at the first
 * AckdLogPackageRegister (PETSc's XXXInitializePackage); later calls only read the ids.
 * Each package is one static instance beside the objects that log into it:
 *   static AckdLogPackage kd_log = {.name = "ackd kd", .nevents = 2, .event_names = {"KDLoss", "KDSka"}};
 *   PetscCall(AckdLogPackageRegister(&kd_log));   ... kd_log.events[0] */
#define ACKD_LOG_PACKAGE_MAX_EVENTS 32
typedef struct {
  const char   *name;
  int           nevents;
  const char   *event_names[ACKD_LOG_PACKAGE_MAX_EVENTS];
  PetscBool     registered;
  PetscClassId  classid;
  PetscLogEvent events[ACKD_LOG_PACKAGE_MAX_EVENTS];
} AckdLogPackage;

PetscErrorCode AckdLogPackageRegister(AckdLogPackage *package);

/* ---------------------------------------------------------------- progress */

/* A progress bar on rank 0's stderr. It draws only on a terminal and never
 * more often than every `min_interval` seconds, so it costs nothing in batch
 * jobs whose output goes to a file. */
typedef struct {
  char        label[48];
  PetscInt    total, done;
  double      start, last_draw, min_interval;
  PetscBool   active; /* rank 0, a TTY, and not -quiet */
  PetscInt    draws;  /* how often it was drawn: the throttle is tested on it */
  const char *unit;
} AckdProgress;

/* unit NULL: the bar shows the fraction done and the ETA only, for work
 * measured in parts of `total` rather than counted items. */
PetscErrorCode AckdProgressBegin(AckdProgress *bar, const AckdLog *log, const char *label, PetscInt total,
                                 const char *unit);
PetscErrorCode AckdProgressUpdate(AckdProgress *bar, PetscInt done);
PetscErrorCode AckdProgressEnd(AckdProgress *bar);
/* The text of one bar, without drawing it; exposed so it can be tested. */
void AckdProgressFormat(const AckdProgress *bar, double now, char *line, size_t len);

/* ---------------------------------------------------------------- memory */

/* Bytes this process may use: physical memory, or a control group's limit
 * (a batch job's, cgroup v1 or v2) where that is lower. */
PetscErrorCode AckdMemoryAvailable(double *bytes);
/* Collective: this rank's share of `fraction` of that memory, which the ranks of its node (the
 * ranks of comm that share memory with it) split evenly, each holding its own copy of what the
 * budget is for. The same bound on every rank of a node; ranks of other nodes see theirs. */
PetscErrorCode AckdMemoryShare(MPI_Comm comm, double fraction, double *bytes);
/* The smallest cgroup memory limit on the process's group and its ancestors,
 * INFINITY if none: proc_cgroup is a /proc/PID/cgroup listing, cgroup_root
 * where the hierarchies are mounted. Exposed so it can be tested. */
PetscErrorCode AckdMemoryCgroupLimit(const char *proc_cgroup, const char *cgroup_root, double *bytes);

/* ---------------------------------------------------------------- timers */

/* A hot loop compiled for AVX-512, AVX2 and baseline x86-64, one picked when
 * the program loads (the build targets baseline x86-64). The versions are
 * chosen by CPU feature level, never by model name: a model name such as
 * skylake-avx512 matches no AMD CPU, and virtual CPUs hide theirs. OpenMP
 * outlines a parallel loop's body into a function of its own, so the
 * attribute goes on a function the loop calls. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define ACKD_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define ACKD_CPU_CLONES
#endif

/* FNV-1a over 64 bits: tells one array from another (a regenerated dataset, another teacher's
 * gallery), not a cryptographic hash. Chain calls from ACKD_DIGEST_START. */
#define ACKD_DIGEST_START 0xcbf29ce484222325ULL
uint64_t AckdDigest(uint64_t digest, const void *bytes, size_t n);

double AckdTimeNow(void);         /* monotonic seconds */
void   AckdSleep(double seconds); /* the testing options' delays (-*_debug_*_delay) */

/* ---------------------------------------------------------------- RNG */

/* Philox4x32-10 (Salmon et al., SC'11): a counter-based generator. Every number
 * is a pure function of (seed, stream, counter), so any sample's randomness can
 * be recomputed on any rank in any order; this is what makes results
 * independent of the number of ranks.
 *
 * Counter words: ctr[0] counts 128-bit blocks within a stream, ctr[1] is the
 * 32-bit stream tag (a purpose or an epoch), ctr[2..3] the 64-bit stream index
 * (usually a global sample index). The key is the 64-bit seed. */
void AckdPhilox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

typedef struct {
  uint32_t key[2], ctr[4], block[4];
  int      used;         /* words of `block` already handed out */
  double   spare_normal; /* Box-Muller yields two normals at a time */
  int      have_spare;
} AckdRng;

void     AckdRngInit(AckdRng *rng, uint64_t seed, uint64_t index, uint32_t tag);
uint32_t AckdRngU32(AckdRng *rng);
double   AckdRngUniform(AckdRng *rng); /* [0, 1), 53 random bits */
double   AckdRngUniformRange(AckdRng *rng, double lo, double hi);
double   AckdRngNormal(AckdRng *rng);                                  /* N(0, 1) */
uint32_t AckdRngBelow(AckdRng *rng, uint32_t n);                       /* uniform on [0, n), unbiased */
void     AckdRngPermutation(AckdRng *rng, PetscInt n, PetscInt *perm); /* Fisher-Yates */

/* ---------------------------------------------------------------- options */

/* Typed option readers for use between PetscOptionsBegin/End. Unlike the bare
 * PETSc macros they name the option in every error, check ranges, and list the
 * valid choices, so a bad value is a one-line fix. */
PetscErrorCode AckdOptionsInt(PetscOptionItems *PetscOptionsObject, const char *name, const char *help, PetscInt *value,
                              PetscInt lo, PetscInt hi, PetscBool *set);
PetscErrorCode AckdOptionsReal(PetscOptionItems *PetscOptionsObject, const char *name, const char *help,
                               PetscReal *value, PetscReal lo, PetscReal hi, PetscBool *set);
PetscErrorCode AckdOptionsBool(PetscOptionItems *PetscOptionsObject, const char *name, const char *help,
                               PetscBool *value, PetscBool *set);
PetscErrorCode AckdOptionsString(PetscOptionItems *PetscOptionsObject, const char *name, const char *help, char *value,
                                 size_t len, PetscBool *set);
/* A comma-separated integer list; *n is the capacity on input, the count on output (0 when not given). */
PetscErrorCode AckdOptionsIntArray(PetscOptionItems *PetscOptionsObject, const char *name, const char *help,
                                   PetscInt *values, PetscInt *n, PetscInt lo, PetscInt hi, PetscBool *set);
PetscErrorCode AckdOptionsChoice(PetscOptionItems *PetscOptionsObject, const char *name, const char *help,
                                 const char *const *choices, PetscInt nchoices, PetscInt *value, PetscBool *set);

/* For -help (all false) and -help_all (true), before the stage reads its
 * options: ackd's readers then list their options as "-name <type> default D,
 * now V: meaning"; PETSc's own listing (the Tao, KSP and PC options of the
 * solvers ackd creates) is printed, through PETSc's -help, only when `all`. */
PetscErrorCode AckdOptionsHelpSetUp(PetscBool all);
/* Whether either was asked for: the stage then stops after reading its options. */
PetscErrorCode AckdOptionsHelpRequested(PetscBool *help);

/* Every option given must have been read by the stage: a typo such as
 * -epohcs is an error naming it, raised before any work starts. Options
 * starting with one of `foreign_prefixes` (space-separated, e.g.
 * "match_ distill_") belong to other stages of the same options file and
 * are let through. */
PetscErrorCode AckdOptionsCheckUnused(MPI_Comm comm, const char *stage, const char *foreign_prefixes);

/* All options in force as "-key value" text, for provenance attributes. */
PetscErrorCode AckdOptionsToString(char **text);

/* The options the stage read (those it was given and used, without the runtime's own such as
 * -quiet and -log_view, and without testing hooks, *debug_*) as "-key value" text: what a
 * checkpoint records so that a resumed run can say what changed. */
PetscErrorCode AckdOptionsStageString(char **text);
/* The differences from `before` (AckdOptionsStageString text) to the options the stage reads now,
 * as "-key now (was before)" items separated by "; ", or an empty string: *report is allocated. */
PetscErrorCode AckdOptionsDrift(const char *before, char **report);

/* ---------------------------------------------------------------- text files */

/* Collective: creates `dir` and any missing parents (mkdir -p) if it does not
 * exist, and checks that a file can be created in it; a failure names the
 * directory, the reason and `option`, the option that set it. */
PetscErrorCode AckdDirectoryCreate(MPI_Comm comm, const char *dir, const char *option);
/* Collective: the same for the directory an output file `path` will go to, before any work. */
PetscErrorCode AckdOutputFileCheck(MPI_Comm comm, const char *path, const char *option);

/* One run per output directory (src/core/dir_lock.c): DIR/.ackd.lock names the holder. Acquire
 * refuses, with one line naming the holder and `option`, while another run holds it; it takes over
 * a lock whose holder is provably gone (same host and its pid not running, or the same batch job
 * after a requeue), with a warning. Release removes it. Both collective. */
typedef struct {
  char      path[PETSC_MAX_PATH_LEN + 16];
  PetscBool held;
} AckdDirLock;
PetscErrorCode AckdDirLockAcquire(MPI_Comm comm, const char *dir, const char *option, AckdDirLock *lock);
PetscErrorCode AckdDirLockRelease(MPI_Comm comm, AckdDirLock *lock);

/* Collective: whether `path` can be read, asked by rank 0 alone and agreed by all. */
PetscErrorCode AckdFileReadable(MPI_Comm comm, const char *path, PetscBool *readable);
/* Not collective: fsyncs `from`, renames it to `to` and fsyncs the directory, so that after a
 * crash `to` holds the old file or the whole new one. Returns 0 (errno set) on failure. */
int AckdFileRenameDurable(const char *from, const char *to);

/* Collective: rank 0 reads a small text file, every rank receives it
 * NUL-terminated. `what` names the file's role in the error ("class map"). */
PetscErrorCode AckdReadTextFile(MPI_Comm comm, const char *path, const char *what, char **text);

/* ---------------------------------------------------------------- HDF5 */

/* File access shared by every writer and reader: MPI-IO, collective metadata,
 * alignment for parallel file systems, and optional file locking. */
typedef struct {
  PetscBool collective_metadata;
  PetscBool file_locking;
  PetscInt  alignment; /* bytes; objects at least this large start on a multiple of it */
  PetscBool streaming; /* training data read batch by batch from the file, not held in node memory */
} AckdH5Settings;

PetscErrorCode AckdH5SettingsSetFromOptions(AckdH5Settings *settings);
PetscErrorCode AckdH5FileCreate(MPI_Comm comm, const char *path, const AckdH5Settings *settings, hid_t *file);
/* Opens an existing file read-only; a missing, foreign or truncated file is an
 * error that names the path and what is wrong with it. */
PetscErrorCode AckdH5FileOpenRead(MPI_Comm comm, const char *path, const AckdH5Settings *settings, hid_t *file);
PetscErrorCode AckdH5FileClose(hid_t *file, const char *path);
/* Creates `path`.part for writing; AckdH5FileCommit closes and renames it, so
 * `path` is only ever absent, the previous file, or complete. */
PetscErrorCode AckdH5FileCreatePartial(MPI_Comm comm, const char *path, const AckdH5Settings *h5, hid_t *file);
PetscErrorCode AckdH5FileCommit(MPI_Comm comm, hid_t *file, const char *path);
/* Collective: closes a file of AckdH5FileCreatePartial and removes it (a stage stopped on request
 * before finishing it: nothing half-written keeps a name). */
PetscErrorCode AckdH5FileDiscard(MPI_Comm comm, hid_t *file, const char *path);

/* Selects rows [first, first + n) of `dset` (its first dimension counts rows)
 * and makes the matching memory space. With n = 0 both select nothing: a
 * rank with no rows still takes part in a collective transfer. */
PetscErrorCode AckdH5SelectRows(hid_t dset, PetscInt first, PetscInt n, hid_t *fspace, hid_t *mspace);

/* A dataset's rank and extents. dims holds H5S_MAX_RANK entries so that a file of any rank fits,
 * whatever rank the reader expects; entries past rank are 0. */
typedef struct {
  int     rank;
  hsize_t dims[H5S_MAX_RANK];
} AckdH5Shape;

/* The shape of dataset `name` under `loc`. Whether it exists is the caller's to check, with its
 * own message; `path` names the file in the error if it cannot be opened or read. */
PetscErrorCode AckdH5DatasetShape(hid_t loc, const char *name, const char *path, AckdH5Shape *shape);
/* The same for a dataset the caller holds open to read next; `path` may be NULL where the caller
 * does not know the file, and `name` then says enough. */
PetscErrorCode AckdH5DatasetShapeOf(hid_t dset, const char *path, const char *name, AckdH5Shape *shape);

/* Collective: creates `name` under `loc`, (nglobal) or (nglobal, columns)
 * when columns > 0, and writes this rank's rows [first, first + n) of it from
 * `data` in one collective transfer. `h5type` is the memory and file type. */
PetscErrorCode AckdH5WriteRows(MPI_Comm comm, hid_t loc, const char *name, hid_t h5type, PetscInt nglobal,
                               PetscInt columns, PetscInt first, PetscInt n, const void *data);

/* Attributes on any object (file, group or dataset). */
PetscErrorCode AckdH5AttrWriteString(hid_t obj, const char *name, const char *value);
PetscErrorCode AckdH5AttrWriteInt(hid_t obj, const char *name, PetscInt value);
PetscErrorCode AckdH5AttrWriteReal(hid_t obj, const char *name, double value);
/* A short 1-D integer attribute (n <= 16), e.g. a tensor's shape. */
PetscErrorCode AckdH5AttrWriteIntArray(hid_t obj, const char *name, PetscInt n, const PetscInt *values);
PetscErrorCode AckdH5AttrReadString(hid_t obj, const char *name, char *value, size_t len, PetscBool *found);
PetscErrorCode AckdH5AttrReadInt(hid_t obj, const char *name, PetscInt *value, PetscBool *found);
PetscErrorCode AckdH5AttrReadReal(hid_t obj, const char *name, double *value, PetscBool *found);

/* A small dataset written whole by rank 0 with every rank taking part in the
 * (collective) creation. `h5type` is the memory and file type. */
PetscErrorCode AckdH5WriteSmall(MPI_Comm comm, hid_t loc, const char *name, hid_t h5type, int rank, const hsize_t *dims,
                                const void *data);
/* Fixed-length string array, readable as bytes in h5py and as text in h5dump. */
PetscErrorCode AckdH5WriteStrings(MPI_Comm comm, hid_t loc, const char *name, PetscInt n, const char *const *strings);

#endif
