/* Checkpoint driver for checkpoint.sh:
 *   test_checkpoint write STEP [-ckpt_* options]   one checkpoint at STEP
 *   test_checkpoint read EXPECTED_STEP             the latest, verified value by value
 *   test_checkpoint mismatch                       a model of another shape is refused, every mismatch named
 *   test_checkpoint signal                         steps until SIGUSR1/SIGTERM, then checkpoint and exit 75
 * Every value is a closed-form function of (entry, index, step), so a reader
 * on any number of ranks knows what it must find. */
#include <ackd/ckpt.h>
#include <math.h>
#include <string.h>
#include <time.h>
#include "check.h"

#define ARCH "tiny-test-net"
enum { OPTIM = 1000 }; /* optimizer state: a flat vector sharded over ranks */

/* The model: parameters and buffers, each entry pointing into `values`. */
enum { NENTRIES = 7, NVALUES = 79 };
static const char *const NAMES[NENTRIES] = {
    "conv1.weight",           "conv1.bias", "layer1.0.bn.weight", "fc.weight", "fc.bias", "layer1.0.bn.running_mean",
    "layer1.0.bn.running_var"};
static const PetscInt SIZES[NENTRIES] = {27, 3, 3, 30, 10, 3, 3};

static void model_entries(float *values, AckdCkptEntry *entries)
{
  for (PetscInt e = 0, at = 0; e < NENTRIES; at += SIZES[e], e++)
    entries[e] = (AckdCkptEntry){.name = NAMES[e], .data = values + at, .size = SIZES[e]};
}

static float model_value(PetscInt i, PetscInt step)
{
  return (float)sin(0.1 * i + step);
}
static float optim_value(PetscInt i, PetscInt step)
{
  return (float)(i * 0.001 + step);
}

static void shard(PetscInt global, PetscMPIInt rank, PetscMPIInt size, PetscInt *lo, PetscInt *hi)
{
  *lo = global * rank / size;
  *hi = global * (rank + 1) / size;
}

static PetscErrorCode write_one(PetscInt step)
{
  AckdCkptWriter w;
  float          values[NVALUES], *optim;
  AckdCkptEntry  entries[NENTRIES];
  double         loss[64];
  PetscMPIInt    rank, size;
  PetscInt       lo, hi;

  PetscFunctionBeginUser;
  MPI_Comm_rank(PETSC_COMM_WORLD, &rank);
  MPI_Comm_size(PETSC_COMM_WORLD, &size);
  for (PetscInt i = 0; i < NVALUES; i++) values[i] = model_value(i, step);
  model_entries(values, entries);
  for (PetscInt i = 0; i < 64; i++) loss[i] = 1.0 / (1 + i);
  shard(OPTIM, rank, size, &lo, &hi);
  PetscCall(PetscMalloc1(hi - lo + 1, &optim));
  for (PetscInt i = lo; i < hi; i++) optim[i - lo] = optim_value(i, step);
  AckdCkptState state = {.epoch = step / 10, .step = step, .cursor = step % 10, .seed = 42};
  PetscCall(AckdCkptWriterCreate(PETSC_COMM_WORLD, ARCH, &w));
  PetscCall(AckdCkptWriterSetFromOptions(w));
  PetscCall(AckdCkptWriterBegin(w, &state));
  PetscCall(AckdCkptWriterWriteModel(w, "model", NENTRIES, entries));
  PetscCall(AckdCkptWriterWriteShard(w, "adam_m", OPTIM, lo, hi, optim, PETSC_FALSE));
  PetscCall(AckdCkptWriterWriteMetric(w, "train_loss", PetscMin(step, 64), loss));
  PetscCall(AckdCkptWriterCommit(w));
  PetscCall(AckdCkptWriterDestroy(&w));
  PetscCall(PetscFree(optim));
  PetscFunctionReturn(0);
}

static PetscErrorCode read_latest(PetscInt expected)
{
  AckdCkptReader r;
  AckdCkptState  s;
  PetscBool      found;
  float          values[NVALUES], *optim;
  AckdCkptEntry  entries[NENTRIES];
  double         loss[64];
  PetscInt       lo, hi, n;
  PetscMPIInt    rank, size;
  char           dir[PETSC_MAX_PATH_LEN] = "checkpoints";

  PetscFunctionBeginUser;
  MPI_Comm_rank(PETSC_COMM_WORLD, &rank);
  MPI_Comm_size(PETSC_COMM_WORLD, &size);
  PetscCall(PetscOptionsGetString(NULL, NULL, "-ckpt_dir", dir, sizeof dir, NULL));
  PetscCall(AckdCkptReaderOpenLatest(PETSC_COMM_WORLD, dir, ARCH, &r, &found));
  CHECK(found, "no checkpoint found in %s", dir);
  if (!found) PetscFunctionReturn(0);
  PetscCall(AckdCkptReaderGetState(r, &s));
  CHECK(s.step == expected && s.epoch == expected / 10 && s.cursor == expected % 10 && s.seed == 42,
        "state step %d epoch %d cursor %d seed %d, expected step %d", (int)s.step, (int)s.epoch, (int)s.cursor,
        (int)s.seed, (int)expected);
  model_entries(values, entries);
  PetscCall(AckdCkptReaderReadModel(r, "model", NENTRIES, entries));
  for (PetscInt i = 0; i < NVALUES; i++) CHECK(values[i] == model_value(i, s.step), "model value %d", (int)i);
  /* Whatever P wrote it, this P reads its own slices. */
  shard(OPTIM, rank, size, &lo, &hi);
  PetscCall(PetscMalloc1(hi - lo + 1, &optim));
  PetscCall(AckdCkptReaderReadShard(r, "adam_m", OPTIM, lo, hi, optim));
  for (PetscInt i = lo; i < hi; i++) CHECK(optim[i - lo] == optim_value(i, s.step), "optimizer value %d", (int)i);
  PetscCall(AckdCkptReaderReadMetric(r, "train_loss", 64, &n, loss));
  CHECK(n == PetscMin(s.step, 64) && loss[n - 1] == 1.0 / n, "metric history of %d values", (int)n);
  PetscCall(PetscFree(optim));
  PetscCall(AckdCkptReaderDestroy(&r));
  PetscFunctionReturn(0);
}

static PetscErrorCode read_mismatched(void)
{
  float               model[82];
  const AckdCkptEntry other[] = {{.name = "conv1.weight", .data = model, .size = 27},
                                 {.name = "fc.weight", .data = model + 27, .size = 40},
                                 {.name = "fc.bias", .data = model + 67, .size = 10},
                                 {.name = "head.weight", .data = model + 77, .size = 5}};
  AckdCkptReader      r;
  PetscBool           found;
  char                dir[PETSC_MAX_PATH_LEN] = "checkpoints";
  AckdErrorRecord     record;

  PetscFunctionBeginUser;
  PetscCall(PetscOptionsGetString(NULL, NULL, "-ckpt_dir", dir, sizeof dir, NULL));
  PetscCall(AckdCkptReaderOpenLatest(PETSC_COMM_WORLD, dir, ARCH, &r, &found));
  memset(&record, 0, sizeof record);
  PetscPushErrorHandler(AckdErrorHandler, &record);
  PetscErrorCode ierr = AckdCkptReaderReadModel(r, "model", 4, other);
  PetscPopErrorHandler();
  printf("%s\n", record.message);
  CHECK(ierr != 0, "a model of another shape must be refused");
  const char *expect[] = {"does not fit the model (6 mismatches)",
                          "model/fc/weight has 30 values, the model 40",
                          "model/head/weight is missing",
                          "model/conv1/bias is not in the model",
                          "model/layer1.0.bn/weight is not in the model",
                          "model/layer1.0.bn/running_var is not in the model"};
  for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++)
    CHECK(strstr(record.message, expect[i]), "the message lacks '%s'", expect[i]);
  PetscCall(AckdCkptReaderDestroy(&r));
  PetscFunctionReturn(0);
}

/* A training loop in miniature: steps of 20 ms until asked to stop. */
static PetscErrorCode run_until_signal(int *code)
{
  PetscBool stop = PETSC_FALSE;
  PetscInt  step;

  PetscFunctionBeginUser;
  PetscCall(AckdStopRequestInstall());
  /* A signal before every rank has its handler would kill that rank: the script sends it only
   * after this line. */
  PetscCallMPI(MPI_Barrier(PETSC_COMM_WORLD));
  PetscCall(PetscPrintf(PETSC_COMM_WORLD, "ready for a signal\n"));
  PetscCheck(fflush(stdout) == 0, PETSC_COMM_SELF, PETSC_ERR_SYS, "cannot flush stdout");
  for (step = 1; step < 100000 && !stop; step++) {
    nanosleep(&(struct timespec){0, 20000000}, NULL);
    PetscCall(AckdStopRequested(PETSC_COMM_WORLD, &stop));
  }
  PetscCall(write_one(step));
  printf("stopped at step %d\n", (int)step);
  *code = ACKD_EXIT_CHECKPOINTED;
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  const char *mode = argc > 1 ? argv[1] : "";
  int         code = 0;
  if (!strcmp(mode, "write"))
    PetscCall(write_one(atoi(argv[2])));
  else if (!strcmp(mode, "read"))
    PetscCall(read_latest(atoi(argv[2])));
  else if (!strcmp(mode, "mismatch"))
    PetscCall(read_mismatched());
  else if (!strcmp(mode, "signal"))
    PetscCall(run_until_signal(&code));
  else {
    fprintf(stderr, "usage: test_checkpoint write STEP | read STEP | mismatch | signal\n");
    code = 2;
  }
  int failed = check_failures ? CHECK_REPORT("test_checkpoint") : 0;
  PetscCall(PetscFinalize());
  return failed ? failed : code;
}
