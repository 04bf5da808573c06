/* Every KD loss on small random inputs: each gradient (student logits,
 * embedding, tokens, the method's own parameters) against central finite
 * differences of the total loss, then everything written to HDF5 for
 * torch_kd.py, which recomputes the same formulas in PyTorch.
 *
 * Finite differences: the loss is accumulated in double, inputs are float32,
 * so each step is the float actually representable (x ± h rounded), h = 1e-3;
 * a gradient passes when |fd - g| <= 1e-3 max(|g|, rms of the tensor's g) + 1e-9.
 * SemBridge's cases run SKA at -ska_precision double: its single path (the default) rounds the
 * loss to float, which finite differences would divide by 2h; unit.kd.ska_precision holds the
 * single path to the double one. */
#include "kd/kd_impl.h"
#include "../nn/parity_io.h"
#include <math.h>

typedef struct {
  const char *name, *options;
  PetscInt    epoch, teacher_tokens;
  PetscBool   reversed_params;   /* CTKD: the temperature gets -dL/dθ (gradient reversal) */
  PetscInt    negatives;         /* CRD: its -crd_negatives, to write the drawn indices for torch_kd.py */
  const char *teacher_classes;   /* "1" where the teacher has the student's class, per class; NULL: all */
  PetscInt    teacher_embedding; /* D_t; 0: DT */
  PetscInt    student_tokens;    /* N_s; 0: NS */
} Case;

static const Case cases[] = {
    {"none", "-kd_method none", 0, 4, PETSC_FALSE, 0, NULL, 0, 0},
    {"kd", "-kd_method kd", 0, 4, PETSC_FALSE, 0, NULL, 0, 0},
    {"kd_sembridge", "-kd_method kd -sembridge -ska_precision double", 0, 9, PETSC_FALSE, 0, NULL, 0, 0},
    {"kd_sembridge_sinkhorn", "-kd_method kd -sembridge -ska_precision double -ska_plan sinkhorn -ska_sinkhorn_it 300",
     0, 9, PETSC_FALSE, 0, NULL, 0, 0},
    {"logits", "-kd_method logits", 0, 4, PETSC_FALSE, 0, NULL, 0, 0},
    {"fitnet", "-kd_method fitnet", 0, 4, PETSC_FALSE, 0, NULL, 0, 0},
    {"fitnet_embedding", "-kd_method fitnet -fitnet_feature embedding", 0, 4, PETSC_FALSE, 0, NULL, 0, 0},
    {"at", "-kd_method at", 0, 4, PETSC_FALSE, 0, NULL, 0, 0},
    {"rkd", "-kd_method rkd", 0, 4, PETSC_FALSE, 0, NULL, 0, 0},
    {"dkd", "-kd_method dkd", 4, 4, PETSC_FALSE, 0, NULL, 0, 0},
    {"dkd_sembridge", "-kd_method dkd -sembridge -ska_precision double", 30, 9, PETSC_FALSE, 0, NULL, 0, 0},
    {"ctkd", "-kd_method ctkd", 12, 4, PETSC_TRUE, 0, NULL, 0, 0},
    {"lskd", "-kd_method lskd", 0, 4, PETSC_FALSE, 0, NULL, 0, 0},
    {"clip", "-kd_method clip -clip_dim 4", 0, 4, PETSC_FALSE, 0, NULL, 0, 0},
    {"kd_m2s_reliability", "-kd_method kd -kd_teacher_multilabel -kd_reliability", 0, 4, PETSC_FALSE, 0, NULL, 0, 0},
    {"c2kd", "-kd_method c2kd", 0, 4, PETSC_FALSE, 0, NULL, 0, 0},
    {"c2kd_t2", "-kd_method c2kd -c2kd_temperature 2 -kd_teacher_multilabel", 0, 4, PETSC_FALSE, 0, NULL, 0, 0},
    {"crd", "-kd_method crd -crd_dim 4 -crd_negatives 7 -crd_tau 0.5", 3, 4, PETSC_FALSE, 7, NULL, 0, 0},
    {"mnf", "-kd_method mnf", 0, 5, PETSC_FALSE, 0, NULL, 0, 0},
    {"mnf_embedding", "-kd_method mnf -mnf_feature embedding -mnf_hidden 5 -mnf_theta 1.5", 0, 4, PETSC_FALSE, 0, NULL,
     0, 0},
    /* partial class overlap: classes 2 and 4 are the student's alone */
    {"kd_partial", "-kd_method kd", 0, 4, PETSC_FALSE, 0, "11010", 0, 0},
    {"kd_partial_sembridge", "-kd_method kd -sembridge -ska_precision double", 0, 9, PETSC_FALSE, 0, "11010", 0, 0},
    {"kd_partial_whole_simplex", "-kd_method kd -kd_shared_classes false", 0, 4, PETSC_FALSE, 0, "11010", 0, 0},
    {"logits_partial", "-kd_method logits", 0, 4, PETSC_FALSE, 0, "11010", 0, 0},
    {"dkd_partial", "-kd_method dkd", 4, 4, PETSC_FALSE, 0, "11010", 0, 0},
    {"ctkd_partial", "-kd_method ctkd", 12, 4, PETSC_TRUE, 0, "11010", 0, 0},
    {"lskd_partial", "-kd_method lskd", 0, 4, PETSC_FALSE, 0, "11010", 0, 0},
    {"kd_reliability_partial", "-kd_method kd -kd_reliability", 0, 4, PETSC_FALSE, 0, "01110", 0, 0},
    {"rkd_partial", "-kd_method rkd", 0, 4, PETSC_FALSE, 0, "11010", 0, 0},
    {"dkd_one_shared_class", "-kd_method dkd", 4, 4, PETSC_FALSE, 0, "01000", 0, 0},
    /* D_s 8 -> D_t 6 through the projection; then equal widths at c = 2.5, where two of the five
     * raw student rows lie beyond the ball's margin (projected onto it) and three of the ten
     * student pairs reach artanh's clamp, none within a finite-difference step of either edge */
    {"distilvpr", "-kd_method distilvpr", 0, 4, PETSC_FALSE, 0, NULL, 0, 0},
    {"distilvpr_ball_edge",
     "-kd_method distilvpr -distilvpr_curvature 2.5 -distilvpr_rkdg_weight 1 -distilvpr_st2ss_weight 0.5", 0, 4,
     PETSC_FALSE, 0, NULL, 8, 0},
    {"distilvpr_partial", "-kd_method distilvpr", 0, 4, PETSC_FALSE, 0, "11010", 0, 0},
    /* one layer-4 token on each side (a 32 x 32 scene): SKA skips its constant plan (last, so
     * that the cases above keep their seeds) */
    {"kd_sembridge_one_token", "-kd_method kd -sembridge -ska_precision double", 0, 1, PETSC_FALSE, 0, NULL, 0, 1},
    {"kd_sembridge_sinkhorn_one_token", "-kd_method kd -sembridge -ska_precision double -ska_plan sinkhorn", 0, 1,
     PETSC_FALSE, 0, NULL, 0, 1},
    /* a hint term on top of a method (-kd_hint_weight), with its own regressor */
    {"kd_sembridge_hint", "-kd_method kd -sembridge -ska_precision double -kd_hint_weight 0.3", 0, 4, PETSC_FALSE, 0,
     NULL, 0, 0},
    {"kd_partial_sembridge_hint", "-kd_method kd -sembridge -ska_precision double -kd_hint_weight 0.3", 0, 4,
     PETSC_FALSE, 0, "11010", 0, 0},
    {"dkd_hint_embedding", "-kd_method dkd -kd_hint_weight 2 -kd_hint_feature embedding", 4, 4, PETSC_FALSE, 0, NULL, 0,
     0},
};

enum { B = 6, K = 5, DS = 8, DT = 6, CS = 16, CT = 8, NS = 4, NSAMPLES = 20 };

typedef struct {
  AckdKD       kd;
  AckdKDInputs in;
  AckdTensor   zs, es, ts, zt, et, tt, dz, de, dt;
  float       *state, *state0; /* the method's memory and its value before the step (restored before every call) */
  PetscInt     nstate;
} Problem;

static PetscErrorCode total(Problem *p, double *value)
{
  AckdKDOutputs out = {0};

  PetscFunctionBeginUser;
  if (p->nstate) PetscCall(PetscArraycpy(p->state, p->state0, p->nstate));
  PetscCall(AckdKDLoss(p->kd, &p->in, &out));
  *value = out.total;
  PetscFunctionReturn(0);
}

/* Central differences on every element of `x` against the analytic g. */
static PetscErrorCode check(Problem *p, const char *what, float *x, PetscInt n, const float *g, double sign,
                            double *worst, PetscBool *ok)
{
  double rms = 0.0, gmax = 0.0;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < n; i++) {
    rms += (double)g[i] * g[i];
    gmax = PetscMax(gmax, fabs(g[i]));
  }
  rms = sqrt(rms / PetscMax(n, 1));
  for (PetscInt i = 0; i < n; i++) {
    float  x0 = x[i], xp = (float)(x0 + 1e-3), xm = (float)(x0 - 1e-3);
    double fp = 0.0, fm = 0.0, fd, err, tol;
    x[i] = xp;
    PetscCall(total(p, &fp));
    x[i] = xm;
    PetscCall(total(p, &fm));
    x[i]   = x0;
    fd     = sign * (fp - fm) / ((double)xp - (double)xm);
    err    = fabs(fd - g[i]);
    tol    = 1e-3 * PetscMax(fabs(g[i]), rms) + 1e-9;
    *worst = PetscMax(*worst, err / PetscMax(PetscMax(fabs(g[i]), rms), 1e-12));
    if (!(err <= tol)) {
      if (*ok)
        PetscCall(PetscPrintf(PETSC_COMM_SELF, "  %s[%" PetscInt_FMT "]: analytic %.8g, finite differences %.8g\n",
                              what, i, (double)g[i], fd));
      *ok = PETSC_FALSE;
    }
  }
  (void)gmax;
  PetscFunctionReturn(0);
}

static void fill(AckdRng *rng, float *x, PetscInt n, double scale)
{
  for (PetscInt i = 0; i < n; i++) x[i] = (float)(scale * AckdRngNormal(rng));
}

static PetscErrorCode run_case(const Case *c, PetscInt index, hid_t file, PetscBool *all_ok)
{
  Problem       p    = {0};
  AckdKDDims    dims = {0};
  AckdKDOutputs out  = {0};
  AckdParams   *params;
  AckdRng       rng;
  PetscInt      labels[B], samples[B], nt = c->teacher_tokens, ns = c->student_tokens ? c->student_tokens : NS,
                                  Dt = c->teacher_embedding ? c->teacher_embedding : DT;
  float     weight[B], *g;
  double    worst = 0.0;
  PetscBool ok    = PETSC_TRUE;
  hid_t     grp;
  char      gname[64];

  PetscFunctionBeginUser;
  PetscCall(PetscOptionsClear(NULL));
  PetscCall(PetscOptionsInsertString(NULL, c->options));
  PetscCall(AckdKDCreate(PETSC_COMM_SELF, &p.kd));
  PetscCall(AckdKDSetFromOptions(p.kd));
  dims.classes           = K;
  dims.student_embedding = DS;
  dims.student_channels  = CS;
  dims.student_tokens    = ns;
  dims.teacher_embedding = Dt;
  dims.teacher_channels  = CT;
  dims.teacher_tokens    = nt;
  dims.teacher_logits    = PETSC_TRUE;
  dims.seed              = 11 + (uint64_t)index;
  dims.student_samples   = NSAMPLES;
  unsigned char teacher_classes[K];
  if (c->teacher_classes) {
    for (PetscInt k = 0; k < K; k++) teacher_classes[k] = c->teacher_classes[k] == '1';
    dims.teacher_classes = teacher_classes;
  }
  PetscCall(AckdKDSetUp(p.kd, &dims));
  PetscCall(AckdKDGetState(p.kd, &p.state, &p.nstate));
  PetscCall(AckdKDGetParams(p.kd, &params));
  /* weights and FitNet's regressor at a scale where every term matters */
  AckdRngInit(&rng, 7, (uint64_t)index, 1);
  PetscCall(AckdTensorAllocate(&p.zs, B, K, 1, 1));
  PetscCall(AckdTensorAllocate(&p.es, B, DS, 1, 1));
  PetscCall(AckdTensorAllocate(&p.ts, B, 1, ns, CS));
  PetscCall(AckdTensorAllocate(&p.zt, B, K, 1, 1));
  PetscCall(AckdTensorAllocate(&p.et, B, Dt, 1, 1));
  PetscCall(AckdTensorAllocate(&p.tt, B, 1, nt, CT));
  PetscCall(AckdTensorAllocate(&p.dz, B, K, 1, 1));
  PetscCall(AckdTensorAllocate(&p.de, B, DS, 1, 1));
  PetscCall(AckdTensorAllocate(&p.dt, B, 1, ns, CS));
  fill(&rng, p.zs.data, B * K, 2.0);
  fill(&rng, p.es.data, B * DS, 1.0);
  fill(&rng, p.ts.data, B * ns * CS, 1.0);
  fill(&rng, p.zt.data, B * K, 2.0);
  fill(&rng, p.et.data, B * Dt, 1.0);
  fill(&rng, p.tt.data, B * nt * CT, 1.0);
  for (PetscInt i = 0; i < B; i++) {
    labels[i]  = (PetscInt)AckdRngBelow(&rng, K);
    weight[i]  = (float)AckdRngUniformRange(&rng, 0.2, 1.0);
    samples[i] = 3 * i + 1;
  }
  if (p.nstate) {
    /* a memory that has seen training: unit rows near the batch's, not the uniform start */
    for (PetscInt k = 0; k < p.nstate; k++) p.state[k] = (float)(0.5 * AckdRngNormal(&rng));
    PetscCall(PetscMalloc1(p.nstate, &p.state0));
    PetscCall(PetscArraycpy(p.state0, p.state, p.nstate));
  }
  weight[2]              = 0.0f; /* a student sample without a matched teacher */
  p.in.batch             = B;
  p.in.global_batch      = 2 * B; /* as the first of two ranks */
  p.in.epoch             = c->epoch;
  p.in.student_logits    = &p.zs;
  p.in.student_embedding = &p.es;
  p.in.student_tokens    = &p.ts;
  p.in.teacher_logits    = &p.zt;
  p.in.teacher_embedding = &p.et;
  p.in.teacher_tokens    = &p.tt;
  p.in.labels            = labels;
  p.in.weight            = weight;
  p.in.samples           = samples;
  p.in.step              = 5;
  out.d_logits           = &p.dz;
  out.d_embedding        = &p.de;
  out.d_tokens           = &p.dt;
  PetscCall(AckdKDLoss(p.kd, &p.in, &out));
  if (p.nstate) {
    float   *after;
    PetscInt n[1] = {p.nstate}, nn[1] = {B * c->negatives}, *neg;
    float   *negf;
    PetscCall(PetscMalloc3(p.nstate, &after, B * c->negatives, &neg, B * c->negatives, &negf));
    PetscCall(PetscArraycpy(after, p.state, p.nstate));
    for (PetscInt i = 0; i < B; i++)
      ackd_kd_crd_negatives(dims.seed, c->epoch, p.in.step, samples[i], NSAMPLES, c->negatives, neg + i * c->negatives);
    for (PetscInt k = 0; k < B * c->negatives; k++) negf[k] = (float)neg[k];
    PetscCall(PetscSNPrintf(gname, sizeof gname, "%02d_%s", (int)index, c->name));
    AckdCallH5(grp = H5Gcreate2(file, gname, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "creating %s", gname);
    PetscCall(write_array(grp, "state_before", p.state0, 1, n));
    PetscCall(write_array(grp, "state_after", after, 1, n));
    PetscCall(write_array(grp, "negatives", negf, 1, nn));
    H5Gclose(grp);
    PetscCall(PetscFree3(after, neg, negf));
  }

  p.kd->freeze_targets = PETSC_TRUE; /* stop-gradient targets stay those of this call */
  PetscCall(PetscMalloc1(PetscMax(params->size, 1), &g));
  PetscCall(PetscArraycpy(g, params->grads, params->size));
  PetscCall(check(&p, "d_logits", p.zs.data, B * K, p.dz.data, 1.0, &worst, &ok));
  PetscCall(check(&p, "d_embedding", p.es.data, B * DS, p.de.data, 1.0, &worst, &ok));
  PetscCall(check(&p, "d_tokens", p.ts.data, B * ns * CS, p.dt.data, 1.0, &worst, &ok));
  PetscCall(check(&p, "params", params->values, params->size, g, c->reversed_params ? -1.0 : 1.0, &worst, &ok));
  PetscCall(PetscPrintf(PETSC_COMM_SELF, "%-24s total %10.6f  %2" PetscInt_FMT " params  worst fd error %.2e  %s\n",
                        c->name, out.total, params->size, worst, ok ? "ok" : "FAILED"));
  if (!ok) *all_ok = PETSC_FALSE;

  /* for torch_kd.py: inputs, settings, terms, gradients, parameters */
  PetscCall(PetscSNPrintf(gname, sizeof gname, "%02d_%s", (int)index, c->name));
  if (p.nstate)
    AckdCallH5(grp = H5Gopen2(file, gname, H5P_DEFAULT), "opening %s", gname);
  else
    AckdCallH5(grp = H5Gcreate2(file, gname, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "creating %s", gname);
  PetscCall(AckdH5AttrWriteString(grp, "options", c->options));
  if (c->teacher_classes) PetscCall(AckdH5AttrWriteString(grp, "teacher_classes", c->teacher_classes));
  PetscCall(AckdH5AttrWriteInt(grp, "epoch", c->epoch));
  PetscCall(AckdH5AttrWriteInt(grp, "global_batch", p.in.global_batch));
  PetscCall(write_tensor(grp, "student_logits", &p.zs));
  PetscCall(write_tensor(grp, "student_embedding", &p.es));
  PetscCall(write_tensor(grp, "student_tokens", &p.ts));
  PetscCall(write_tensor(grp, "teacher_logits", &p.zt));
  PetscCall(write_tensor(grp, "teacher_embedding", &p.et));
  PetscCall(write_tensor(grp, "teacher_tokens", &p.tt));
  {
    float    lab[B], smp[B], terms[ACKD_KD_MAX_TERMS], w[ACKD_KD_MAX_TERMS], tot = (float)out.total;
    PetscInt nb = B, nterms = out.nterms, one = 1;
    char     names[256] = "";
    for (PetscInt i = 0; i < B; i++) {
      lab[i] = (float)labels[i];
      smp[i] = (float)samples[i];
    }
    PetscCall(write_array(grp, "labels", lab, 1, &nb));
    PetscCall(write_array(grp, "samples", smp, 1, &nb));
    PetscCall(AckdH5AttrWriteInt(grp, "step", p.in.step));
    PetscCall(write_array(grp, "weight", weight, 1, &nb));
    for (PetscInt t = 0; t < out.nterms; t++) {
      terms[t] = (float)out.values[t];
      w[t]     = (float)out.weights[t];
      PetscCall(PetscStrlcat(names, out.names[t], sizeof names));
      if (t + 1 < out.nterms) PetscCall(PetscStrlcat(names, ",", sizeof names));
    }
    PetscCall(write_array(grp, "terms", terms, 1, &nterms));
    PetscCall(write_array(grp, "term_weights", w, 1, &nterms));
    PetscCall(write_array(grp, "total", &tot, 1, &one));
    PetscCall(AckdH5AttrWriteString(grp, "term_names", names));
  }
  PetscCall(write_tensor(grp, "d_logits", &p.dz));
  PetscCall(write_tensor(grp, "d_embedding", &p.de));
  PetscCall(write_tensor(grp, "d_tokens", &p.dt));
  PetscCall(write_entries(grp, "params", params->params, params->nparams, params->values));
  PetscCall(write_entries(grp, "grads", params->params, params->nparams, g));
  H5Gclose(grp);

  PetscCall(PetscFree(g));
  PetscCall(PetscFree(p.state0));
  AckdTensor *all[] = {&p.zs, &p.es, &p.ts, &p.zt, &p.et, &p.tt, &p.dz, &p.de, &p.dt};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) PetscCall(AckdTensorFree(all[i]));
  PetscCall(AckdKDDestroy(&p.kd));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  hid_t     file;
  PetscBool ok = PETSC_TRUE;

  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  PetscCheck(argc > 1, PETSC_COMM_SELF, PETSC_ERR_USER_INPUT, "usage: test_kd_losses OUTPUT.h5");
  AckdCallH5(file = H5Fcreate(argv[1], H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "creating %s", argv[1]);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) PetscCall(run_case(&cases[i], (PetscInt)i, file, &ok));
  H5Fclose(file);
  PetscCall(PetscOptionsClear(NULL));
  PetscCheck(ok, PETSC_COMM_SELF, PETSC_ERR_PLIB, "a gradient disagrees with finite differences (see above)");
  PetscCall(PetscFinalize());
  return 0;
}
