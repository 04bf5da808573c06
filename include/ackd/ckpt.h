/* ackd ckpt: checkpoints that survive being killed at any moment.
 *
 * A checkpoint is one parallel HDF5 file (docs/DESIGN.md §5):
 *   /                    attrs ackd_format="checkpoint", version, architecture, step, epoch
 *   /model/<layer>/<p>   parameters and buffers (replicated: rank 0 writes them)
 *   /optim/<name>        optimizer state as flat vectors; each rank writes the
 *                        slice it owns (sharded) or rank 0 writes all (replicated)
 *   /state               attrs epoch, step, seed, cursor (the data position)
 *   /metrics/<name>      histories, one float64 per epoch
 *   /options             attr text: every option in force
 *   / attrs dataset, teacher_gallery: one line each on what the run read besides its options
 *                        (AckdTrainerAddInputRecord); a resume with another is refused
 * It is written as DIR/ckpt_<step>.h5.part and renamed when complete, so a
 * kill leaves at most a .part file behind; the last K checkpoints are kept.
 * Reading picks the newest checkpoint that opens and validates, warning
 * about any newer one it had to skip.
 */
#ifndef ACKD_CKPT_H
#define ACKD_CKPT_H

#include <ackd/core.h>

#define ACKD_FORMAT_CHECKPOINT         "checkpoint"
#define ACKD_FORMAT_CHECKPOINT_VERSION 1

/* The root attributes that record a run's inputs (what it was trained on, for `ackd inspect`). */
#define ACKD_CKPT_INPUT_DATASET         "dataset"
#define ACKD_CKPT_INPUT_TEACHER_GALLERY "teacher_gallery"

/* Exit code of a run stopped by SIGUSR1 or SIGTERM after writing a
 * checkpoint: EX_TEMPFAIL, "try again", which job scripts requeue on. */
#define ACKD_EXIT_CHECKPOINTED 75

/* One named array of a model: a parameter ("conv1.weight" becomes
 * /model/conv1/weight) or a buffer (running statistics). A model is written
 * and read as one list, so the reader can tell what is missing and what is
 * left over. */
typedef struct {
  const char *name;
  float      *data;  /* read into; only read from when writing */
  PetscInt    size;  /* floats */
  PetscInt    ndims; /* 0: a plain vector; else its shape, recorded as the attribute "shape" */
  PetscInt    dims[4];
} AckdCkptEntry;

typedef struct {
  PetscInt epoch, step, cursor; /* cursor: position within the epoch */
  PetscInt seed;
} AckdCkptState;

/* ---------------------------------------------------------------- writing */

typedef struct _p_AckdCkptWriter *AckdCkptWriter;

/* Collective. Options: -ckpt_dir, -ckpt_keep K, -ckpt_every_steps N,
 * -ckpt_every_epochs N, and the fault injection -ckpt_debug_kill_after N
 * (the process kills itself with SIGKILL after writing N entries of the next
 * checkpoint: for testing that a kill mid-write loses nothing). */
PetscErrorCode AckdCkptWriterCreate(MPI_Comm comm, const char *architecture, AckdCkptWriter *writer);
/* Options are read as -<prefix>ckpt_dir etc., so each stage of a pipeline
 * options file has its own; the directory set here is the default. */
PetscErrorCode AckdCkptWriterSetOptionsPrefix(AckdCkptWriter writer, const char *prefix);
PetscErrorCode AckdCkptWriterSetDirectory(AckdCkptWriter writer, const char *dir);
/* What the root attribute `architecture` records, and resume checks. */
PetscErrorCode AckdCkptWriterSetArchitecture(AckdCkptWriter writer, const char *architecture);
PetscErrorCode AckdCkptWriterSetFromOptions(AckdCkptWriter writer);
PetscErrorCode AckdCkptWriterGetDirectory(AckdCkptWriter writer, const char **dir);
/* Whether the schedule asks for a checkpoint after this step / epoch. */
PetscErrorCode AckdCkptWriterIsDue(AckdCkptWriter writer, const AckdCkptState *state, PetscBool end_of_epoch,
                                   PetscBool *due);

/* One checkpoint, assembled and committed: Begin, Write* in the same order
 * on every rank, Commit. */
PetscErrorCode AckdCkptWriterBegin(AckdCkptWriter writer, const AckdCkptState *state);
/* The same at a path of its own (the best model: DIR/best.h5), through
 * path.part and a rename, outside the keep-K rotation. */
PetscErrorCode AckdCkptWriterBeginAt(AckdCkptWriter writer, const char *path, const AckdCkptState *state);
/* The open file between Begin and Commit, for attributes of the caller's
 * (the model configuration that `ackd eval` rebuilds the network from). */
PetscErrorCode AckdCkptWriterGetFile(AckdCkptWriter writer, hid_t *file);
PetscErrorCode AckdCkptWriterWriteModel(AckdCkptWriter writer, const char *group, PetscInt n,
                                        const AckdCkptEntry *entries);
/* A flat vector of `global` floats of which this rank holds [lo, hi). With
 * replicated state pass lo = 0, hi = global on every rank. */
PetscErrorCode AckdCkptWriterWriteShard(AckdCkptWriter writer, const char *name, PetscInt global, PetscInt lo,
                                        PetscInt hi, const float *values, PetscBool replicated);
PetscErrorCode AckdCkptWriterWriteMetric(AckdCkptWriter writer, const char *name, PetscInt n, const double *values);
/* Renames the file into place and deletes checkpoints beyond the last K. */
PetscErrorCode AckdCkptWriterCommit(AckdCkptWriter writer);
PetscErrorCode AckdCkptWriterDestroy(AckdCkptWriter *writer);

/* ---------------------------------------------------------------- reading */

typedef struct _p_AckdCkptReader *AckdCkptReader;

/* Collective: the newest readable checkpoint in `dir`, or *found = false. */
PetscErrorCode AckdCkptReaderOpenLatest(MPI_Comm comm, const char *dir, const char *architecture,
                                        AckdCkptReader *reader, PetscBool *found);
PetscErrorCode AckdCkptReaderOpen(MPI_Comm comm, const char *path, const char *architecture, AckdCkptReader *reader);
PetscErrorCode AckdCkptReaderGetPath(AckdCkptReader reader, const char **path);
PetscErrorCode AckdCkptReaderGetState(AckdCkptReader reader, AckdCkptState *state);
PetscErrorCode AckdCkptReaderGetFile(AckdCkptReader reader, hid_t *file);
/* Fills the named ranges; any entry missing, unexpected or of another size
 * is an error listing every mismatch, so a checkpoint of another model or
 * width is refused with the reason. */
PetscErrorCode AckdCkptReaderReadModel(AckdCkptReader reader, const char *group, PetscInt n,
                                       const AckdCkptEntry *entries);
/* Reads [lo, hi) of a flat vector, whatever the rank count that wrote it. */
PetscErrorCode AckdCkptReaderReadShard(AckdCkptReader reader, const char *name, PetscInt global, PetscInt lo,
                                       PetscInt hi, float *values);
/* Whether the checkpoint holds metric `name` (a checkpoint of an older version may lack one). */
PetscErrorCode AckdCkptReaderHasMetric(AckdCkptReader reader, const char *name, PetscBool *has);
PetscErrorCode AckdCkptReaderReadMetric(AckdCkptReader reader, const char *name, PetscInt capacity, PetscInt *n,
                                        double *values);
PetscErrorCode AckdCkptReaderDestroy(AckdCkptReader *reader);

/* Prints a human summary of an open checkpoint file on rank 0 (`ackd inspect`). */
PetscErrorCode AckdCkptSummarize(MPI_Comm comm, hid_t file, const char *path, FILE *out);

/* ---------------------------------------------------------------- stopping */

/* SIGUSR1 (Slurm's --signal) and SIGTERM set a flag instead of killing the
 * process; the training loop polls it after each step, collectively, so all
 * ranks stop at the same step, checkpoint, and exit with
 * ACKD_EXIT_CHECKPOINTED. */
PetscErrorCode AckdStopRequestInstall(void);
PetscErrorCode AckdStopRequested(MPI_Comm comm, PetscBool *stop);
/* Not collective: whether this process has had a stop signal, for a loop whose ranks take
 * different numbers of turns; a collective AckdStopRequested after it decides for all. */
PetscBool AckdStopSignalled(void);
/* For tests: this process sends itself SIGTERM at its n-th AckdStopSignalled (0: never). */
void AckdStopDebugSignalAfter(PetscInt polls);

#endif
