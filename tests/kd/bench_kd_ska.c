/* Milliseconds per AckdKDLoss call with SemBridge's SKA (-kd_method none
 * -sembridge, the attention plan): bench_kd_ska B N C [reps [Ct]]; tokens (B, N, C)
 * for the student and (B, N, Ct) for the teacher (Ct = C unless given; the study's
 * MobileNetV2 x0.5 student and ResNet-34 x0.25 teacher: C = 1280, Ct = 128), 8 heads.
 * Prints one line per size. */
#include <ackd/kd.h>

int main(int argc, char **argv)
{
  AckdKD         kd;
  AckdKDDims     dims = {0};
  AckdKDInputs   in   = {0};
  AckdKDOutputs  out  = {0};
  AckdTensor     zs, es, ts, tt, et, dz, de, dt;
  AckdRng        rng;
  PetscInt       B, N, C, Ct, reps = 5, *labels;
  PetscLogDouble t0, t1;

  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  PetscCheck(argc >= 4, PETSC_COMM_SELF, PETSC_ERR_USER_INPUT, "usage: bench_kd_ska B N C [reps]");
  B = atoi(argv[1]);
  N = atoi(argv[2]);
  C = atoi(argv[3]);
  if (argc > 4) reps = atoi(argv[4]);
  Ct                     = argc > 5 ? atoi(argv[5]) : C;
  dims.classes           = 10;
  dims.student_embedding = C;
  dims.student_channels  = C;
  dims.student_tokens    = N;
  dims.teacher_embedding = Ct;
  dims.teacher_channels  = Ct;
  dims.teacher_tokens    = N;
  dims.seed              = 1;
  PetscCall(AckdKDCreate(PETSC_COMM_SELF, &kd));
  PetscCall(AckdKDSetMethod(kd, "none", PETSC_TRUE));
  PetscCall(AckdKDSetUp(kd, &dims));
  PetscCall(AckdTensorAllocate(&zs, B, 10, 1, 1));
  PetscCall(AckdTensorAllocate(&es, B, C, 1, 1));
  PetscCall(AckdTensorAllocate(&et, B, Ct, 1, 1));
  PetscCall(AckdTensorAllocate(&ts, B, 1, N, C));
  PetscCall(AckdTensorAllocate(&tt, B, 1, N, Ct));
  PetscCall(AckdTensorAllocate(&dz, B, 10, 1, 1));
  PetscCall(AckdTensorAllocate(&de, B, C, 1, 1));
  PetscCall(AckdTensorAllocate(&dt, B, 1, N, C));
  PetscCall(PetscMalloc1(B, &labels));
  AckdRngInit(&rng, 3, 0, 0);
  for (PetscInt i = 0; i < B * 10; i++) zs.data[i] = (float)AckdRngNormal(&rng);
  for (PetscInt i = 0; i < B * C; i++) es.data[i] = (float)AckdRngNormal(&rng);
  for (PetscInt i = 0; i < B * Ct; i++) et.data[i] = (float)AckdRngNormal(&rng);
  for (PetscInt i = 0; i < B * N * C; i++) ts.data[i] = (float)AckdRngUniform(&rng);
  for (PetscInt i = 0; i < B * N * Ct; i++) tt.data[i] = (float)AckdRngUniform(&rng);
  for (PetscInt i = 0; i < B; i++) labels[i] = i % 10;
  in.batch             = B;
  in.global_batch      = B;
  in.student_logits    = &zs;
  in.student_embedding = &es;
  in.student_tokens    = &ts;
  in.teacher_embedding = &et;
  in.teacher_tokens    = &tt;
  in.labels            = labels;
  out.d_logits         = &dz;
  out.d_embedding      = &de;
  out.d_tokens         = &dt;
  PetscCall(AckdKDLoss(kd, &in, &out)); /* warm-up */
  PetscCall(PetscTime(&t0));
  for (PetscInt r = 0; r < reps; r++) PetscCall(AckdKDLoss(kd, &in, &out));
  PetscCall(PetscTime(&t1));
  PetscCall(PetscPrintf(PETSC_COMM_SELF,
                        "ska B=%" PetscInt_FMT " N=%" PetscInt_FMT " C=%" PetscInt_FMT " Ct=%" PetscInt_FMT
                        " heads=8: %.2f ms per call (total %.6e)\n",
                        B, N, C, Ct, 1e3 * (t1 - t0) / (double)reps, out.total));
  AckdTensor *all[] = {&zs, &es, &et, &ts, &tt, &dz, &de, &dt};
  for (int k = 0; k < 8; k++) PetscCall(AckdTensorFree(all[k]));
  PetscCall(PetscFree(labels));
  PetscCall(AckdKDDestroy(&kd));
  PetscCall(PetscFinalize());
  return 0;
}
