/* Times checkpoint writes of a ResNet-34-sized model through AckdCkptWriter:
 * 21.8 M parameters (replicated, rank 0 writes them) and Adam's two moments
 * (sharded, each rank writes its slice), committed durably (fsync, rename).
 * Prints one "seconds=S bytes=B" line per repetition on rank 0. */
#include <ackd/ckpt.h>
#include <string.h>

static PetscErrorCode run(void)
{
  PetscFunctionBeginUser;
  PetscInt    params = 21797672, layers = 110, reps = 3; /* ResNet-34's parameter count */
  PetscMPIInt rank, size;
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-bench_params", &params, NULL));
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-bench_reps", &reps, NULL));
  MPI_Comm_rank(PETSC_COMM_WORLD, &rank);
  MPI_Comm_size(PETSC_COMM_WORLD, &size);

  float         *model, *m, *v;
  AckdCkptEntry *entries;
  char(*names)[32];
  PetscInt lo = (PetscInt)((long long)params * rank / size), hi = (PetscInt)((long long)params * (rank + 1) / size);
  PetscCall(PetscMalloc3(params, &model, hi - lo + 1, &m, hi - lo + 1, &v));
  PetscCall(PetscMalloc2(layers, &entries, layers, &names));
  for (PetscInt i = 0; i < params; i++) model[i] = (float)(i % 1000) * 1e-3f;
  for (PetscInt i = 0; i < hi - lo; i++) m[i] = v[i] = (float)i;
  for (PetscInt l = 0; l < layers; l++) {
    PetscInt a = (PetscInt)((long long)params * l / layers), b = (PetscInt)((long long)params * (l + 1) / layers);
    snprintf(names[l], sizeof names[l], "layer%" PetscInt_FMT ".weight", l);
    entries[l] = (AckdCkptEntry){.name = names[l], .data = model + a, .size = b - a};
  }
  AckdCkptWriter w;
  PetscCall(AckdCkptWriterCreate(PETSC_COMM_WORLD, "resnet34-sized", &w));
  PetscCall(AckdCkptWriterSetFromOptions(w));
  for (PetscInt r = 0; r < reps; r++) {
    AckdCkptState state = {.epoch = 0, .step = r + 1, .cursor = 0, .seed = 0};
    PetscCallMPI(MPI_Barrier(PETSC_COMM_WORLD));
    double t0 = AckdTimeNow();
    PetscCall(AckdCkptWriterBegin(w, &state));
    PetscCall(AckdCkptWriterWriteModel(w, "model", layers, entries));
    PetscCall(AckdCkptWriterWriteShard(w, "adam_m", params, lo, hi, m, PETSC_FALSE));
    PetscCall(AckdCkptWriterWriteShard(w, "adam_v", params, lo, hi, v, PETSC_FALSE));
    PetscCall(AckdCkptWriterCommit(w));
    double seconds = AckdTimeNow() - t0;
    if (rank == 0) printf("seconds=%.6f bytes=%lld\n", seconds, 3LL * (long long)params * (long long)sizeof(float));
  }
  PetscCall(AckdCkptWriterDestroy(&w));
  PetscCall(PetscFree2(entries, names));
  PetscCall(PetscFree3(model, m, v));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  return AckdToolMain(argc, argv, "bench_ckpt_write", run);
}
