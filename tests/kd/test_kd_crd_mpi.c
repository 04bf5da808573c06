/* CRD under data parallelism: a global batch split over the ranks gives the
 * same summed loss and gradients' sum as one rank holding the whole batch, and
 * every rank ends the step with the same memory as that single rank (two steps,
 * so the second is scored against a memory the first updated). */
#include <ackd/kd.h>
#include <math.h>

enum { NG = 10, K = 4, DS = 6, DT = 5, NSAMPLES = 24, STEPS = 2 };

static PetscErrorCode make(MPI_Comm comm, AckdKD *kd)
{
  AckdKDDims dims = {0};

  PetscFunctionBeginUser;
  dims.classes           = K;
  dims.student_embedding = DS;
  dims.student_channels  = 4;
  dims.teacher_embedding = DT;
  dims.teacher_logits    = PETSC_TRUE;
  dims.seed              = 5;
  dims.student_samples   = NSAMPLES;
  PetscCall(AckdKDCreate(comm, kd));
  PetscCall(AckdKDSetMethod(*kd, "crd", PETSC_FALSE));
  PetscCall(AckdKDSetFromOptions(*kd));
  PetscCall(AckdKDSetUp(*kd, &dims));
  PetscFunctionReturn(0);
}

/* Rows [lo, hi) of the global batch at `step`; returns the total and the summed d_embedding. */
static PetscErrorCode run(AckdKD kd, PetscInt step, PetscInt lo, PetscInt hi, double *total, double *gsum)
{
  PetscInt      B = hi - lo, labels[NG], samples[NG];
  float         weight[NG];
  AckdTensor    zs, es, zt, et, de;
  AckdKDInputs  in  = {0};
  AckdKDOutputs out = {0};
  AckdRng       rng;

  PetscFunctionBeginUser;
  PetscCall(AckdTensorAllocate(&zs, B, K, 1, 1));
  PetscCall(AckdTensorAllocate(&es, B, DS, 1, 1));
  PetscCall(AckdTensorAllocate(&zt, B, K, 1, 1));
  PetscCall(AckdTensorAllocate(&et, B, DT, 1, 1));
  PetscCall(AckdTensorAllocate(&de, B, DS, 1, 1));
  for (PetscInt i = lo; i < hi; i++) {
    PetscInt r = i - lo;
    AckdRngInit(&rng, 99, (uint64_t)(step * NG + i), 3);
    for (PetscInt k = 0; k < K; k++) zs.data[r * K + k] = (float)AckdRngNormal(&rng);
    for (PetscInt k = 0; k < K; k++) zt.data[r * K + k] = (float)AckdRngNormal(&rng);
    for (PetscInt k = 0; k < DS; k++) es.data[r * DS + k] = (float)AckdRngNormal(&rng);
    for (PetscInt k = 0; k < DT; k++) et.data[r * DT + k] = (float)AckdRngNormal(&rng);
    labels[r]  = i % K;
    weight[r]  = i == 3 ? 0.0f : 1.0f;
    samples[r] = (7 * i + 5 * step) % NSAMPLES;
  }
  in.batch             = B;
  in.global_batch      = NG;
  in.step              = step;
  in.student_logits    = &zs;
  in.student_embedding = &es;
  in.teacher_logits    = &zt;
  in.teacher_embedding = &et;
  in.labels            = labels;
  in.weight            = weight;
  in.samples           = samples;
  out.d_embedding      = &de;
  PetscCall(AckdKDLoss(kd, &in, &out));
  *total = out.total;
  *gsum  = 0.0;
  for (PetscInt k = 0; k < B * DS; k++) *gsum += fabs(de.data[k]);
  AckdTensor *all[] = {&zs, &es, &zt, &et, &de};
  for (int k = 0; k < 5; k++) PetscCall(AckdTensorFree(all[k]));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  AckdKD      par, ref;
  PetscMPIInt rank, size;
  float      *mp, *mr, *m0;
  PetscInt    np, nr;
  double      worst = 0.0, spread = 0.0;

  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  PetscCallMPI(MPI_Comm_rank(PETSC_COMM_WORLD, &rank));
  PetscCallMPI(MPI_Comm_size(PETSC_COMM_WORLD, &size));
  PetscCall(make(PETSC_COMM_WORLD, &par));
  PetscCall(make(PETSC_COMM_SELF, &ref));
  PetscCall(AckdKDGetState(par, &mp, &np));
  PetscCall(AckdKDGetState(ref, &mr, &nr));
  PetscCheck(np == nr && np == 2 * NSAMPLES * 128, PETSC_COMM_SELF, PETSC_ERR_PLIB, "memory size %" PetscInt_FMT, np);
  for (PetscInt step = 0; step < STEPS; step++) {
    PetscInt lo = NG * rank / size, hi = NG * (rank + 1) / size;
    double   t, g, tsum, gsumv, tr, gr;
    PetscCall(run(par, step, lo, hi, &t, &g));
    PetscCallMPI(MPI_Allreduce(&t, &tsum, 1, MPI_DOUBLE, MPI_SUM, PETSC_COMM_WORLD));
    PetscCallMPI(MPI_Allreduce(&g, &gsumv, 1, MPI_DOUBLE, MPI_SUM, PETSC_COMM_WORLD));
    PetscCall(run(ref, step, 0, NG, &tr, &gr));
    worst = PetscMax(worst, fabs(tsum - tr) / fabs(tr));
    worst = PetscMax(worst, fabs(gsumv - gr) / fabs(gr));
    for (PetscInt k = 0; k < np; k++) spread = PetscMax(spread, fabs((double)mp[k] - mr[k]));
  }
  /* every rank holds rank 0's memory, bit for bit */
  PetscCall(PetscMalloc1(np, &m0));
  PetscCall(PetscArraycpy(m0, mp, np));
  PetscCallMPI(MPI_Bcast(m0, (PetscMPIInt)np, MPI_FLOAT, 0, PETSC_COMM_WORLD));
  for (PetscInt k = 0; k < np; k++)
    PetscCheck(m0[k] == mp[k], PETSC_COMM_SELF, PETSC_ERR_PLIB,
               "rank %d's memory differs from rank 0's at %" PetscInt_FMT, rank, k);
  PetscCall(PetscPrintf(PETSC_COMM_WORLD,
                        "crd on %d ranks: loss and gradient vs one rank %.2e relative, memory %.2e absolute\n", size,
                        worst, spread));
  PetscCheck(worst < 1e-6 && spread < 1e-6, PETSC_COMM_SELF, PETSC_ERR_PLIB, "the split changes CRD's result");
  PetscCall(PetscFree(m0));
  PetscCall(AckdKDDestroy(&par));
  PetscCall(AckdKDDestroy(&ref));
  PetscCall(PetscFinalize());
  return 0;
}
