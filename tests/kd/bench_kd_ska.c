/* Milliseconds per AckdKDLoss call with SemBridge's SKA (-kd_method none
 * -sembridge, the attention plan): bench_kd_ska B N C [reps [Ct]] [SKA options, e.g.
 * -ska_maps_precision bf16]; tokens (B, N, C)
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
  /* SKA alone unless the command line says otherwise (e.g. -ska_maps_precision bf16) */
  PetscBool given;
  PetscCall(PetscOptionsHasName(NULL, NULL, "-kd_method", &given));
  if (!given) PetscCall(PetscOptionsSetValue(NULL, "-kd_method", "none"));
  PetscCall(PetscOptionsHasName(NULL, NULL, "-sembridge", &given));
  if (!given) PetscCall(PetscOptionsSetValue(NULL, "-sembridge", "true"));
  PetscCall(AckdKDCreate(PETSC_COMM_SELF, &kd));
  PetscCall(AckdKDSetFromOptions(kd));
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
  {
    /* The floor in the same run: the query and key maps' products, as oneDNN's SGEMM does them
     * alone: forward, dZ and dW per map on the student's side, forward and dW on the frozen
     * teacher's (its tokens get no gradient). SKA is this plus everything else it does. */
    const PetscInt rows = B * N, widths[2] = {C, Ct};
    float         *a, *w, *y;
    PetscCall(
        PetscCalloc3(rows * PetscMax(C, Ct), &a, PetscMax(C, Ct) * PetscMax(C, Ct), &w, rows * PetscMax(C, Ct), &y));
    PetscCall(PetscTime(&t0));
    for (PetscInt r = 0; r < reps; r++)
      for (int side = 0; side < 2 && N > 1; side++) {
        const PetscInt c = widths[side];
        for (int map = 0; map < 2; map++) {
          PetscCall(AckdSgemm('N', 'T', rows, c, c, 1.0f, a, c, w, c, 0.0f, y, c));
          if (side == 0) PetscCall(AckdSgemm('N', 'N', rows, c, c, 1.0f, a, c, w, c, 0.0f, y, c));
          PetscCall(AckdSgemm('T', 'N', c, c, rows, 1.0f, a, c, y, c, 0.0f, w, c));
        }
      }
    PetscCall(PetscTime(&t1));
    const double flops = N > 1 ? 4.0 * (double)rows * (3.0 * C * C + 2.0 * Ct * Ct) : 0.0;
    PetscCall(PetscPrintf(PETSC_COMM_SELF, "floor: the maps' 10 SGEMMs alone %.2f ms per call (%.1f GFLOP/s)\n",
                          1e3 * (t1 - t0) / (double)reps, flops * (double)reps / PetscMax(t1 - t0, 1e-12) * 1e-9));
    PetscCall(PetscFree3(a, w, y));
  }
  AckdTensor *all[] = {&zs, &es, &et, &ts, &tt, &dz, &de, &dt};
  for (int k = 0; k < 8; k++) PetscCall(AckdTensorFree(all[k]));
  PetscCall(PetscFree(labels));
  PetscCall(AckdKDDestroy(&kd));
  PetscCall(PetscFinalize());
  return 0;
}
