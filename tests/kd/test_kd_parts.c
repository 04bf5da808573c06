/* SemBridge's parts outside AckdKDLoss, and the interface's refusals:
 *   - DynM's schedule: (30, 30, 5) gives 30, 60, 95, 135, 180 and nothing else;
 *   - the SSM projection head (training mode, dropout on) and the SSM loss:
 *     gradients against central finite differences; the head in float32 with
 *     step 1e-2 and |fd - g| <= 2e-3 max(|g|, rms g), the loss (double inside)
 *     with step 1e-3 and 1e-4 max(|g|, rms g);
 *   - both written to HDF5 for torch_ssm.py (PyTorch parity);
 *   - a token method with a gallery-only teacher refuses in one line naming
 *     the method, as does -sembridge's SKA;
 *   - which options make distill run the teacher for its tokens, and the option
 *     prefixes the method table gives the distill stage. */
#include "kd/kd_impl.h"
#include "../nn/parity_io.h"
#include <math.h>
#include <string.h>

static PetscErrorCode expect(PetscBool cond, const char *what)
{
  PetscFunctionBeginUser;
  PetscCheck(cond, PETSC_COMM_SELF, PETSC_ERR_PLIB, "%s", what);
  PetscFunctionReturn(0);
}

static PetscErrorCode test_dynm(void)
{
  PetscInt  epochs[16], n, want[] = {30, 60, 95, 135, 180};
  PetscBool adjust;

  PetscFunctionBeginUser;
  PetscCall(AckdDynMAdjustEpochs(30, 30, 5, 200, 16, epochs, &n));
  PetscCall(expect(n == 5, "DynM (30, 30, 5) up to 200: 5 adjust epochs"));
  for (PetscInt i = 0; i < n; i++) PetscCall(expect(epochs[i] == want[i], "DynM (30, 30, 5): 30, 60, 95, 135, 180"));
  for (PetscInt e = 0, k = 0; e <= 200; e++) {
    PetscCall(AckdDynMIsAdjustEpoch(30, 30, 5, e, &adjust));
    PetscCall(expect(adjust == (k < 5 && e == want[k]), "AckdDynMIsAdjustEpoch agrees with the list"));
    if (k < 5 && e == want[k]) k++;
  }
  PetscCall(AckdDynMAdjustEpochs(30, 30, 5, 200, 3, epochs, &n));
  PetscCall(expect(n == 3 && epochs[2] == 95, "DynM list stops at its capacity"));
  PetscCall(AckdDynMAdjustEpochs(10, 10, 0, 45, 16, epochs, &n));
  PetscCall(expect(n == 4 && epochs[3] == 40, "DynM without growth: every 10 epochs"));
  PetscCall(PetscPrintf(PETSC_COMM_SELF, "dynm: 30 60 95 135 180 ok\n"));
  PetscFunctionReturn(0);
}

static double dot(const float *a, const float *b, PetscInt n)
{
  double s = 0.0;
  for (PetscInt i = 0; i < n; i++) s += (double)a[i] * b[i];
  return s;
}

static PetscErrorCode compare_fd(const char *what, const float *g, const double *fd, PetscInt n, double rtol,
                                 double *worst, PetscBool *ok)
{
  double rms = 0.0;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < n; i++) rms += (double)g[i] * g[i];
  rms = sqrt(rms / n);
  for (PetscInt i = 0; i < n; i++) {
    double scale = PetscMax(PetscMax(fabs(g[i]), rms), 1e-12), err = fabs(fd[i] - g[i]);
    *worst = PetscMax(*worst, err / scale);
    if (!(err <= rtol * scale)) {
      if (*ok)
        PetscCall(
            PetscPrintf(PETSC_COMM_SELF, "  %s[%" PetscInt_FMT "]: %.8g vs fd %.8g\n", what, i, (double)g[i], fd[i]));
      *ok = PETSC_FALSE;
    }
  }
  PetscFunctionReturn(0);
}

enum { HB = 5, HIN = 12, HOUT = 8 };

static PetscErrorCode head_loss(AckdSSMHead *head, AckdEngine *eng, AckdTensor *x, AckdTensor *e, const float *r,
                                double *v)
{
  PetscFunctionBeginUser;
  PetscCall(AckdSSMHeadForward(head, eng, x, e));
  *v = dot(e->data, r, HB * HOUT);
  PetscFunctionReturn(0);
}

static PetscErrorCode test_head(AckdEngine *eng, hid_t file, PetscBool *ok)
{
  AckdParams  params;
  AckdSSMHead head;
  AckdTensor  x, e, de, dx;
  AckdRng     rng;
  float      *pg;
  double     *fd, worst = 0.0, vp = 0.0, vm = 0.0;
  hid_t       grp;

  PetscFunctionBeginUser;
  PetscCall(AckdParamsCreate(&params));
  PetscCall(AckdSSMHeadSetUp(&head, &params, "rgb_head", HIN, HOUT, 0.1, 5, 3));
  PetscCall(AckdParamsSetUp(&params));
  PetscCall(AckdParamsInitialize(&params, 21));
  PetscCall(AckdTensorAllocate(&x, HB, HIN, 1, 1));
  PetscCall(AckdTensorAllocate(&e, HB, HOUT, 1, 1));
  PetscCall(AckdTensorAllocate(&de, HB, HOUT, 1, 1));
  PetscCall(AckdTensorAllocate(&dx, HB, HIN, 1, 1));
  AckdRngInit(&rng, 3, 0, 0);
  for (PetscInt i = 0; i < HB * HIN; i++) x.data[i] = (float)AckdRngNormal(&rng);
  for (PetscInt i = 0; i < HB * HOUT; i++) de.data[i] = (float)AckdRngNormal(&rng);
  /* LayerNorm's affine at random values so that its gradients are not trivial */
  for (PetscInt i = head.norm.weight; i < head.norm.weight + 2 * HOUT; i++)
    params.values[i] = (float)AckdRngUniformRange(&rng, 0.5, 1.5);
  PetscCall(AckdSSMHeadSetTraining(&head, PETSC_TRUE, 7, 100));
  PetscCall(AckdSSMHeadForward(&head, eng, &x, &e));
  PetscCall(AckdSSMHeadBackward(&head, eng, &x, &de, &dx));
  PetscCall(PetscMalloc2(params.size, &pg, PetscMax(params.size, HB * HIN), &fd));
  PetscCall(PetscArraycpy(pg, params.grads, params.size));

  AckdCallH5(grp = H5Gcreate2(file, "head", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "creating head");
  {
    float    mask[HB * HOUT];
    PetscInt n = HB * HOUT;
    for (PetscInt i = 0; i < n; i++) mask[i] = head.dropout.mask[i] ? 1.0f : 0.0f;
    PetscCall(write_array(grp, "mask", mask, 1, &n));
  }
  PetscCall(write_tensor(grp, "x", &x));
  PetscCall(write_tensor(grp, "e", &e));
  PetscCall(write_tensor(grp, "de", &de));
  PetscCall(write_tensor(grp, "dx", &dx));
  PetscCall(write_entries(grp, "params", params.params, params.nparams, params.values));
  PetscCall(write_entries(grp, "grads", params.params, params.nparams, pg));
  H5Gclose(grp);

  /* the same dropout masks on every evaluation: same (seed, tag, step, samples) */
  for (PetscInt i = 0; i < HB * HIN; i++) {
    float x0 = x.data[i], xp = (float)(x0 + 1e-2), xm = (float)(x0 - 1e-2);
    x.data[i] = xp;
    PetscCall(head_loss(&head, eng, &x, &e, de.data, &vp));
    x.data[i] = xm;
    PetscCall(head_loss(&head, eng, &x, &e, de.data, &vm));
    x.data[i] = x0;
    fd[i]     = (vp - vm) / ((double)xp - xm);
  }
  PetscCall(compare_fd("ssm head dx", dx.data, fd, HB * HIN, 2e-3, &worst, ok));
  for (PetscInt i = 0; i < params.size; i++) {
    float p0 = params.values[i], pp = (float)(p0 + 1e-2), pm = (float)(p0 - 1e-2);
    params.values[i] = pp;
    PetscCall(head_loss(&head, eng, &x, &e, de.data, &vp));
    params.values[i] = pm;
    PetscCall(head_loss(&head, eng, &x, &e, de.data, &vm));
    params.values[i] = p0;
    fd[i]            = (vp - vm) / ((double)pp - pm);
  }
  PetscCall(compare_fd("ssm head params", pg, fd, params.size, 2e-3, &worst, ok));
  PetscCall(
      PetscPrintf(PETSC_COMM_SELF, "ssm head: %" PetscInt_FMT " params, worst fd error %.2e\n", params.size, worst));
  PetscCall(PetscFree2(pg, fd));
  PetscCall(AckdTensorFree(&x));
  PetscCall(AckdTensorFree(&e));
  PetscCall(AckdTensorFree(&de));
  PetscCall(AckdTensorFree(&dx));
  PetscCall(AckdSSMHeadDestroy(&head));
  PetscCall(AckdParamsDestroy(&params));
  PetscFunctionReturn(0);
}

static PetscErrorCode test_ssm_loss(double tau, double scale, const char *name, hid_t file, PetscBool *ok)
{
  enum { B = 6, D = 5 };
  AckdTensor er, em, gr, gm;
  AckdRng    rng;
  double     loss, fd[B * D], worst = 0.0, vp = 0.0, vm = 0.0;
  hid_t      grp;

  PetscFunctionBeginUser;
  PetscCall(AckdTensorAllocate(&er, B, D, 1, 1));
  PetscCall(AckdTensorAllocate(&em, B, D, 1, 1));
  PetscCall(AckdTensorAllocate(&gr, B, D, 1, 1));
  PetscCall(AckdTensorAllocate(&gm, B, D, 1, 1));
  AckdRngInit(&rng, 4, 0, 0);
  for (PetscInt i = 0; i < B * D; i++) {
    er.data[i] = (float)AckdRngNormal(&rng);
    em.data[i] = (float)AckdRngNormal(&rng);
  }
  PetscCall(AckdSSMLoss(&er, &em, tau, scale, &loss, &gr, &gm));
  AckdCallH5(grp = H5Gcreate2(file, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "creating %s", name);
  PetscCall(AckdH5AttrWriteReal(grp, "tau", tau));
  PetscCall(AckdH5AttrWriteReal(grp, "scale", scale));
  PetscCall(AckdH5AttrWriteReal(grp, "loss", loss));
  PetscCall(write_tensor(grp, "e_rgb", &er));
  PetscCall(write_tensor(grp, "e_ms", &em));
  PetscCall(write_tensor(grp, "d_rgb", &gr));
  PetscCall(write_tensor(grp, "d_ms", &gm));
  H5Gclose(grp);
  AckdTensor *side[2] = {&er, &em}, *grad[2] = {&gr, &gm};
  for (int s = 0; s < 2; s++) {
    for (PetscInt i = 0; i < B * D; i++) {
      float x0 = side[s]->data[i], xp = (float)(x0 + 1e-3), xm = (float)(x0 - 1e-3);
      side[s]->data[i] = xp;
      PetscCall(AckdSSMLoss(&er, &em, tau, scale, &vp, NULL, NULL));
      side[s]->data[i] = xm;
      PetscCall(AckdSSMLoss(&er, &em, tau, scale, &vm, NULL, NULL));
      side[s]->data[i] = x0;
      fd[i]            = (vp - vm) / ((double)xp - xm);
    }
    PetscCall(compare_fd(s ? "ssm loss d_ms" : "ssm loss d_rgb", grad[s]->data, fd, B * D, 1e-4, &worst, ok));
  }
  PetscCall(PetscPrintf(PETSC_COMM_SELF, "%s: loss %.6f, worst fd error %.2e\n", name, loss, worst));
  PetscCall(AckdTensorFree(&er));
  PetscCall(AckdTensorFree(&em));
  PetscCall(AckdTensorFree(&gr));
  PetscCall(AckdTensorFree(&gm));
  PetscFunctionReturn(0);
}

/* SetUp must fail with PETSC_ERR_USER_INPUT and a message containing `needle`. */
static PetscErrorCode expect_refusal(const char *options, const char *needle)
{
  AckdKD          kd;
  AckdKDDims      dims   = {.classes           = 4,
                            .student_embedding = 8,
                            .student_channels  = 8,
                            .teacher_embedding = 8,
                            .teacher_channels  = 0,
                            .teacher_logits    = PETSC_TRUE};
  AckdErrorRecord record = {0};
  PetscErrorCode  status;
  char           *found;

  PetscFunctionBeginUser;
  PetscCall(PetscOptionsClear(NULL));
  PetscCall(PetscOptionsInsertString(NULL, options));
  PetscCall(AckdKDCreate(PETSC_COMM_SELF, &kd));
  PetscCall(AckdKDSetFromOptions(kd));
  PetscCall(PetscPushErrorHandler(AckdErrorHandler, &record));
  status = AckdKDSetUp(kd, &dims);
  PetscCall(PetscPopErrorHandler());
  PetscCall(PetscStrstr(record.message, needle, &found));
  PetscCheck(status == PETSC_ERR_USER_INPUT && found, PETSC_COMM_SELF, PETSC_ERR_PLIB,
             "'%s' with a gallery-only teacher: code %d, message '%s'", options, (int)status, record.message);
  PetscCall(PetscPrintf(PETSC_COMM_SELF, "refused: %s\n", record.message));
  PetscCall(AckdKDDestroy(&kd));
  PetscFunctionReturn(0);
}

/* Whether the options' loss asks for the teacher's tokens (distill then runs the frozen teacher). */
static PetscErrorCode expect_tokens(const char *options, PetscBool want)
{
  AckdKD    kd;
  PetscBool wants;

  PetscFunctionBeginUser;
  PetscCall(PetscOptionsClear(NULL));
  PetscCall(PetscOptionsInsertString(NULL, options));
  PetscCall(AckdKDCreate(PETSC_COMM_SELF, &kd));
  PetscCall(AckdKDSetFromOptions(kd));
  PetscCall(AckdKDWantsTeacherTokens(kd, &wants));
  PetscCheck(wants == want, PETSC_COMM_SELF, PETSC_ERR_PLIB, "'%s': wants the teacher's tokens %d, expected %d",
             options, (int)wants, (int)want);
  PetscCall(AckdKDDestroy(&kd));
  PetscFunctionReturn(0);
}

static PetscErrorCode test_method_table(void)
{
  const char *prefixes = AckdKDOptionPrefixes();
  char       *found;

  PetscFunctionBeginUser;
  PetscCall(expect_tokens("-kd_method none", PETSC_FALSE));
  PetscCall(expect_tokens("-kd_method kd", PETSC_FALSE));
  PetscCall(expect_tokens("-kd_method kd -sembridge", PETSC_TRUE));
  PetscCall(expect_tokens("-kd_method kd -sembridge -ska_weight 0", PETSC_FALSE));
  PetscCall(expect_tokens("-kd_method at", PETSC_TRUE));
  PetscCall(expect_tokens("-kd_method fitnet", PETSC_TRUE));
  PetscCall(expect_tokens("-kd_method fitnet -fitnet_feature embedding", PETSC_FALSE));
  PetscCall(expect_tokens("-kd_method mnf", PETSC_TRUE)); /* auto: tokens when the teacher has them */
  PetscCall(expect_tokens("-kd_method mnf -mnf_feature embedding", PETSC_FALSE));
  PetscCall(expect_tokens("-kd_method rkd", PETSC_FALSE));
  PetscCall(expect_tokens("-kd_method kd -kd_hint_weight 0.3", PETSC_TRUE));
  PetscCall(expect_tokens("-kd_method kd -kd_hint_weight 0.3 -kd_hint_feature embedding", PETSC_FALSE));
  for (PetscInt i = 0; ackd_kd_methods[i]; i++) {
    char prefix[64];
    if (!ackd_kd_methods[i]->options) continue;
    PetscCall(PetscSNPrintf(prefix, sizeof prefix, " %s_", ackd_kd_methods[i]->name));
    PetscCall(PetscStrstr(prefixes, strcmp(ackd_kd_methods[i]->name, "kd") ? prefix : "kd_", &found));
    PetscCall(expect(found != NULL, "every method with options has its prefix in AckdKDOptionPrefixes"));
  }
  PetscCall(PetscStrstr(prefixes, "none_", &found));
  PetscCall(expect(found == NULL, "a method without options adds no prefix"));
  PetscCall(PetscPrintf(PETSC_COMM_SELF, "method table: teacher tokens and prefixes (%s) ok\n", prefixes));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  AckdEngine eng;
  hid_t      file;
  PetscBool  ok = PETSC_TRUE;

  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  PetscCheck(argc > 1, PETSC_COMM_SELF, PETSC_ERR_USER_INPUT, "usage: test_kd_parts OUTPUT.h5");
  PetscCall(AckdEngineCreate(1, &eng));
  AckdCallH5(file = H5Fcreate(argv[1], H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "creating %s", argv[1]);
  PetscCall(test_dynm());
  PetscCall(test_head(&eng, file, &ok));
  PetscCall(test_ssm_loss(1.0, 1.0, "ssm_loss_tau1", file, &ok));
  PetscCall(test_ssm_loss(0.5, 0.25, "ssm_loss_tau0.5", file, &ok));
  H5Fclose(file);
  PetscCall(expect_refusal("-kd_method at", "-kd_method at needs the teacher's layer-4 tokens"));
  PetscCall(expect_refusal("-kd_method fitnet",
                           "-kd_method fitnet needs the teacher's layer-4 tokens, which a gallery does not hold; "
                           "distill from a teacher checkpoint, or use -fitnet_feature embedding"));
  PetscCall(expect_refusal("-kd_method kd -sembridge", "or use -ska_weight 0"));
  PetscCall(
      expect_refusal("-kd_method mnf -mnf_feature tokens",
                     "-kd_method mnf -mnf_feature tokens needs the teacher's layer-4 tokens, which a gallery does "
                     "not hold; distill from a teacher checkpoint, or use -mnf_feature embedding"));
  PetscCall(expect_refusal("-kd_method kd -kd_hint_weight 0.3",
                           "-kd_hint_weight needs the teacher's layer-4 tokens, which a gallery does not hold; "
                           "distill from a teacher checkpoint, or use -kd_hint_feature embedding"));
  PetscCall(expect_refusal("-kd_method fitnet -fitnet_feature embedding -kd_hint_weight 1",
                           "-kd_hint_weight with -kd_method fitnet: FitNet is the hint already"));
  PetscCall(test_method_table());
  PetscCall(PetscOptionsClear(NULL));
  PetscCall(AckdEngineDestroy(&eng));
  PetscCheck(ok, PETSC_COMM_SELF, PETSC_ERR_PLIB, "a gradient disagrees with finite differences (see above)");
  PetscCall(PetscFinalize());
  return 0;
}
