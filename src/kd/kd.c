/* The AckdKD object: lifecycle, options, the loss weights, and the step that
 * runs cross-entropy, the chosen method and SemBridge's SKA into one set of
 * gradients. The methods live one per file (kd_<method>.c), SKA in ska.c. */
#include "kd_impl.h"
#include <math.h>
#include <string.h>

/* KDSkaMaps: SKA's query and key maps, forward and backward (its largest products); KDSkaCoral:
 * the token and embedding projections and the two CORAL terms. */
static AckdLogPackage kd_log = {
    .name = "ackd kd", .nevents = 4, .event_names = {"KDLoss", "KDSka", "KDSkaMaps", "KDSkaCoral"}};

static PetscErrorCode select_method(AckdKD kd, const KDMethod *method);

PetscErrorCode AckdKDCreate(MPI_Comm comm, AckdKD *kd)
{
  AckdKD k;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&k));
  k->comm                = comm;
  k->ce_weight           = -1.0; /* -1: the method's (or SemBridge's) default, resolved in SetFromOptions/SetUp */
  k->kd_weight           = -1.0;
  k->ska_weight          = -1.0;
  k->ska.heads           = 8;
  k->ska.sinkhorn_eps    = 0.1;
  k->ska.sinkhorn_it     = 100;
  k->hint.option         = "-kd_hint_feature";
  k->shared_simplex      = PETSC_TRUE;
  k->unmatched_ce_weight = -1.0; /* -1: the taught samples' label weight, resolved with the others */
  PetscCall(AckdParamsCreate(&k->params));
  PetscCall(select_method(k, &ackd_kd_none));
  PetscCall(AckdLogPackageRegister(&kd_log));
  k->event_loss      = kd_log.events[0];
  k->event_ska       = kd_log.events[1];
  k->event_ska_maps  = kd_log.events[2];
  k->event_ska_coral = kd_log.events[3];
  *kd                = k;
  PetscFunctionReturn(0);
}

/* Replaces the method's state by the new method's defaults. */
static PetscErrorCode select_method(AckdKD kd, const KDMethod *method)
{
  PetscFunctionBeginUser;
  if (kd->method && kd->method->destroy) PetscCall(kd->method->destroy(kd));
  PetscCall(PetscFree(kd->data));
  kd->method = method;
  if (method->create) PetscCall(method->create(kd));
  PetscFunctionReturn(0);
}

static PetscErrorCode find_method(const char *name, const KDMethod **method)
{
  PetscFunctionBeginUser;
  *method = NULL;
  for (PetscInt i = 0; ackd_kd_methods[i]; i++) {
    PetscBool same;
    PetscCall(PetscStrcmp(name, ackd_kd_methods[i]->name, &same));
    if (same) *method = ackd_kd_methods[i];
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdKDSetMethod(AckdKD kd, const char *method, PetscBool sembridge)
{
  PetscFunctionBeginUser;
  PetscCheck(!kd->setup, kd->comm, PETSC_ERR_ORDER, "AckdKDSetMethod after AckdKDSetUp");
  const KDMethod *m;

  PetscCall(find_method(method, &m));
  PetscCheck(m, kd->comm, PETSC_ERR_USER_INPUT, "kd method '%s' is unknown; see -help for -kd_method", method);
  kd->sembridge = sembridge;
  PetscCall(select_method(kd, m));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdKDGetMethodName(AckdKD kd, const char **name)
{
  PetscFunctionBeginUser;
  *name = kd->method->name;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdKDWantsTeacherTokens(AckdKD kd, PetscBool *wants)
{
  PetscFunctionBeginUser;
  *wants =
      kd->method->wants_tokens ? kd->method->wants_tokens(kd) : (PetscBool)((kd->method->needs & KD_NEEDS_TOKENS) != 0);
  if (kd->sembridge && kd->ska_weight != 0) *wants = PETSC_TRUE;
  if (kd->hint_weight > 0 && !kd->hint.embedding) *wants = PETSC_TRUE;
  PetscFunctionReturn(0);
}

/* The metrics of AckdKDGetMetricNames, the hint's last. */
enum { METRIC_CE, METRIC_KD, METRIC_SKA, METRIC_SHARED_MASS, METRIC_HINT, NMETRICS };
static const char *const metric_names[NMETRICS] = {"loss_ce", "loss_kd", "loss_ska", "loss_shared_mass", "loss_hint"};

PetscErrorCode AckdKDGetMetricNames(AckdKD kd, PetscInt *n, const char *const **names)
{
  PetscFunctionBeginUser;
  *n     = kd->hint_weight > 0 ? NMETRICS : METRIC_HINT;
  *names = metric_names;
  PetscFunctionReturn(0);
}

const char *AckdKDOptionPrefixes(void)
{
  static char prefixes[512];

  if (!prefixes[0]) {
    size_t len = (size_t)snprintf(prefixes, sizeof prefixes, "kd_ sembridge ska_");
    for (PetscInt i = 0; ackd_kd_methods[i]; i++)
      if (ackd_kd_methods[i]->options && strcmp(ackd_kd_methods[i]->name, "kd") && len < sizeof prefixes)
        len += (size_t)snprintf(prefixes + len, sizeof prefixes - len, " %s_", ackd_kd_methods[i]->name);
  }
  return prefixes;
}

/* A sample without a teacher of its class learns from its label alone. Its cross-entropy gets the
 * whole label weight a taught sample has: the CE weight plus the part of the label the
 * distillation term stands in for. Then a class pulls on the network as hard whether or not the
 * teacher knows it; Adam's step size hides a common scale but not this ratio. */
static double label_weight(AckdKDObj kd)
{
  const double share = kd->method->label_share ? kd->method->label_share(kd) : 0.0;
  return kd->ce_weight + kd->kd_weight * share;
}

/* SemBridge's total as the authors code it: 0.3 CE + 0.4 KD + 0.3 * 0.01 (L_ot1 + L_ot2);
 * without it, each method's own mix (KD: (1 - alpha) CE + alpha T² KL). */
static void default_weights(AckdKD kd, double *ce, double *w_kd, double *ska)
{
  *ce = *w_kd = 1.0;
  if (kd->method->weights) kd->method->weights(kd, ce, w_kd);
  if (kd->sembridge) {
    *ce   = 0.3;
    *w_kd = 0.4;
  }
  *ska = kd->sembridge ? 0.3 * 0.01 : 0.0;
}

PetscErrorCode AckdKDSetFromOptions(AckdKD kd)
{
  PetscInt    choice = 0, n = 0;
  const char *names[64];
  double      ce, w_kd, ska;
  PetscBool   set;

  PetscFunctionBeginUser;
  PetscCheck(!kd->setup, kd->comm, PETSC_ERR_ORDER, "AckdKDSetFromOptions after AckdKDSetUp");
  for (n = 0; ackd_kd_methods[n]; n++) {
    names[n] = ackd_kd_methods[n]->name;
    if (ackd_kd_methods[n] == kd->method) choice = n;
  }
  PetscOptionsBegin(kd->comm, NULL, "Knowledge distillation (docs/KD.md)", NULL);
  PetscCall(AckdOptionsChoice(PetscOptionsObject, "-kd_method",
                              "The student's distillation loss (none: cross-entropy only; docs/KD.md has each)", names,
                              n, &choice, NULL));
  PetscCall(AckdOptionsBool(PetscOptionsObject, "-sembridge",
                            "SemBridge on top of the method: its loss weights (0.3 CE, 0.4 KD, 0.003 SKA) and SKA",
                            &kd->sembridge, NULL));
  PetscCall(select_method(kd, ackd_kd_methods[choice]));
  if (kd->method->options) PetscCall(kd->method->options(kd, PetscOptionsObject));
  default_weights(kd, &ce, &w_kd, &ska);
  if (kd->ce_weight < 0) kd->ce_weight = ce;
  if (kd->kd_weight < 0) kd->kd_weight = w_kd;
  if (kd->ska_weight < 0) kd->ska_weight = ska;
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-kd_ce_weight",
                            "Weight of the student's cross-entropy (default: the method's, 0.3 with -sembridge)",
                            &kd->ce_weight, 0.0, 1e6, &set));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-kd_weight",
                            "Weight of the method's distillation term (default: the method's, 0.4 with -sembridge)",
                            &kd->kd_weight, 0.0, 1e6, &set));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-kd_hint_weight",
                            "Weight of a hint term on top of the method: the mean squared error between the teacher's "
                            "layer-4 tokens and a learned linear map of the student's (FitNet's term, with its own "
                            "regressor); 0: none",
                            &kd->hint_weight, 0.0, 1e6, NULL));
  PetscCall(ackd_kd_hint_feature_option(PetscOptionsObject, "-kd_hint_feature", &kd->hint));
  if (kd->sembridge) {
    PetscCall(AckdOptionsReal(PetscOptionsObject, "-ska_weight",
                              "Weight of SKA's L_ot1 + L_ot2 (SemBridge: 0.3 * 0.01); 0 turns SKA off", &kd->ska_weight,
                              0.0, 1e6, &set));
    PetscCall(ackd_ska_options(kd, PetscOptionsObject));
  }
  PetscCall(AckdOptionsBool(PetscOptionsObject, "-kd_shared_classes",
                            "Under partial class overlap, logit methods (kd, logits, dkd, ctkd, lskd) compare teacher "
                            "and student on the classes both collections have, each renormalised over them; false: on "
                            "all the student's classes, which teaches the one-sided classes probability 0",
                            &kd->shared_simplex, NULL));
  {
    double unmatched = kd->unmatched_ce_weight < 0 ? label_weight(kd) : kd->unmatched_ce_weight;
    PetscCall(AckdOptionsReal(PetscOptionsObject, "-kd_unmatched_ce_weight",
                              "Cross-entropy weight of a sample with no teacher of its class (unmatched, or of a class "
                              "the teacher lacks); default: a taught sample's label weight, CE's plus the share of "
                              "the label the method's term stands in for (1 for kd, 0.3 + 0.4/T² with -sembridge)",
                              &unmatched, 0.0, 1e6, &set));
    if (set) kd->unmatched_ce_weight = unmatched;
  }
  PetscCall(AckdOptionsBool(PetscOptionsObject, "-kd_reliability",
                            "Scale each sample's distillation term by the matched teacher's probability of the "
                            "student's true class (cross-knowledge assessment)",
                            &kd->reliability, NULL));
  PetscCall(AckdOptionsBool(PetscOptionsObject, "-kd_teacher_multilabel",
                            "The teacher is multi-label (M2S): its logits become log sigmoid(z), so softmax(./T) "
                            "gives the normalised sigmoid^(1/T) as the student's soft targets",
                            &kd->teacher_multilabel, NULL));
  PetscOptionsEnd();
  PetscFunctionReturn(0);
}

PetscErrorCode AckdKDSetUp(AckdKD kd, const AckdKDDims *dims)
{
  char who[96];

  PetscFunctionBeginUser;
  PetscCheck(!kd->setup, kd->comm, PETSC_ERR_ORDER, "AckdKDSetUp called twice");
  PetscCheck(dims->classes > 0 && dims->student_embedding > 0 && dims->student_channels > 0, kd->comm,
             PETSC_ERR_ARG_OUTOFRANGE, "AckdKDSetUp: the student's classes, embedding and token channels must be set");
  kd->dims                 = *dims;
  kd->dims.teacher_classes = NULL; /* the caller's memory: kept as the lists below */
  if (dims->teacher_classes) {
    PetscInt K = dims->classes, n = 0;
    for (PetscInt c = 0; c < K; c++) n += dims->teacher_classes[c] != 0;
    if (n < K) {
      PetscCall(PetscMalloc2(PetscMax(n, 1), &kd->shared, K, &kd->sub_class));
      for (PetscInt c = 0; c < K; c++) {
        kd->sub_class[c] = dims->teacher_classes[c] ? kd->nshared : -1;
        if (dims->teacher_classes[c]) kd->shared[kd->nshared++] = c;
      }
    }
  }
  {
    double ce, w_kd, ska;
    default_weights(kd, &ce, &w_kd, &ska);
    if (kd->ce_weight < 0) kd->ce_weight = ce;
    if (kd->kd_weight < 0) kd->kd_weight = w_kd;
    if (kd->ska_weight < 0) kd->ska_weight = ska;
    if (kd->unmatched_ce_weight < 0) kd->unmatched_ce_weight = label_weight(kd);
  }
  PetscCall(PetscSNPrintf(who, sizeof who, "-kd_method %s", kd->method->name));
  PetscCall(ackd_kd_refuse_missing(kd, kd->method->needs, who, NULL));
  PetscCheck(!kd->reliability || dims->teacher_logits, kd->comm, PETSC_ERR_USER_INPUT,
             "-kd_reliability needs the teacher's logits but the teacher gives none; drop -kd_reliability");
  if (kd->method->setup) PetscCall(kd->method->setup(kd));
  if (kd->sembridge && kd->ska_weight > 0) {
    PetscCall(ackd_kd_refuse_missing(kd, KD_NEEDS_TOKENS | KD_NEEDS_EMBEDDING, "-sembridge's SKA",
                                     "distill from a teacher checkpoint, or use -ska_weight 0 (matching and weights "
                                     "without SKA)"));
    PetscCall(ackd_ska_setup(kd));
  }
  if (kd->hint_weight > 0) {
    PetscCheck(kd->method != &ackd_kd_fitnet, kd->comm, PETSC_ERR_USER_INPUT,
               "-kd_hint_weight with -kd_method fitnet: FitNet is the hint already; weigh it with -fitnet_beta");
    PetscCall(ackd_kd_hint_setup(kd, &kd->hint, "-kd_hint_weight", "hint"));
  }
  PetscCall(AckdParamsSetUp(&kd->params));
  PetscCall(AckdParamsInitialize(&kd->params, dims->seed));
  PetscCall(PetscMalloc1(PetscMax(kd->params.size, 1), &kd->g_params));
  kd->setup = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdKDGetParams(AckdKD kd, AckdParams **params)
{
  PetscFunctionBeginUser;
  PetscCheck(kd->setup, kd->comm, PETSC_ERR_ORDER, "AckdKDGetParams before AckdKDSetUp");
  *params = &kd->params;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdKDReliability(const AckdTensor *teacher_logits, const PetscInt *labels, PetscBool multilabel,
                                 float *r)
{
  PetscInt B = teacher_logits->n, K = AckdTensorSize(teacher_logits) / PetscMax(B, 1);

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < B; i++) {
    const float *z = teacher_logits->data + i * K;
    PetscCheck(labels[i] >= 0 && labels[i] < K, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
               "label %" PetscInt_FMT " of sample %" PetscInt_FMT " is outside the %" PetscInt_FMT " classes",
               labels[i], i, K);
    if (multilabel) {
      r[i] = (float)(1.0 / (1.0 + exp(-(double)z[labels[i]])));
    } else {
      double zz[K], lp[K];
      for (PetscInt k = 0; k < K; k++) zz[k] = z[k];
      ackd_kd_log_softmax(zz, K, 1.0, lp);
      r[i] = (float)exp(lp[labels[i]]);
    }
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode grow(double **buf, PetscInt *cap, PetscInt need)
{
  PetscFunctionBeginUser;
  if (need > *cap) {
    PetscCall(PetscFree(*buf));
    PetscCall(PetscMalloc1(need, buf));
    *cap = need;
  }
  PetscCall(PetscArrayzero(*buf, PetscMax(need, 0)));
  PetscFunctionReturn(0);
}

static PetscErrorCode check_rows(AckdKD kd, const AckdTensor *t, PetscInt B, const char *what)
{
  PetscFunctionBeginUser;
  if (t)
    PetscCheck(t->n == B, kd->comm, PETSC_ERR_ARG_SIZ,
               "AckdKDLoss: %s has %" PetscInt_FMT " rows, the batch %" PetscInt_FMT, what, t->n, B);
  PetscFunctionReturn(0);
}

static void add_term(AckdKDOutputs *out, const char *name, PetscInt metric, double value, double weight)
{
  out->metric[out->nterms]  = metric;
  out->names[out->nterms]   = name;
  out->values[out->nterms]  = value;
  out->weights[out->nterms] = weight;
  out->nterms++;
  out->total += weight * value;
}

static void to_float(const double *g, AckdTensor *t)
{
  if (!t) return;
  PetscInt n = AckdTensorSize(t);
  for (PetscInt i = 0; i < n; i++) t->data[i] = (float)g[i];
}

/* Whether the method's term is computed on the shared classes only (-kd_shared_classes). */
static PetscBool restricted_to_shared(AckdKD kd)
{
  return (PetscBool)(kd->shared && kd->shared_simplex && kd->method->on_class_subset);
}

/* Whether that term can teach a sample of class y: not when y is one-sided, nor with a single
 * shared class, where both conditionals are the point mass and the term is 0. */
static PetscBool teaches_class(AckdKD kd, PetscInt y)
{
  return (PetscBool)(!restricted_to_shared(kd) || (kd->nshared >= 2 && kd->sub_class[y] >= 0));
}

/* The method's loss on the classes both collections have. Restricting the
 * logits to those classes before the softmax makes each side's distribution
 * the one conditioned on the shared classes: the teacher's MS-only mass is
 * dropped, and the student's one-sided classes get no gradient from the
 * distillation term (cross-entropy alone teaches them). On the full simplex,
 * the teacher's ~0 on a one-sided class would instead push the student's
 * probability of it to 0 for every matched sample. A student whose own class
 * is one-sided has no teacher of its class and takes no part. */
static PetscErrorCode loss_on_shared_classes(AckdKD kd, const KDStep *full, double *value)
{
  const PetscInt B = full->B, K = full->K, Ks = kd->nshared;
  AckdKDInputs   in = *full->in;
  KDStep         st = *full;
  AckdTensor     zs;

  PetscFunctionBeginUser;
  *value = 0.0;
  if (Ks < 2) PetscFunctionReturn(0); /* teaches_class: nobody */
  if (B > kd->cap_sub) {
    PetscCall(PetscFree6(kd->sub_zs, kd->sub_zt, kd->sub_w, kd->sub_g, kd->sub_labels, kd->sub_sel));
    PetscCall(PetscMalloc6(B * Ks, &kd->sub_zs, B * Ks, &kd->sub_zt, B, &kd->sub_w, B * Ks, &kd->sub_g, B,
                           &kd->sub_labels, B, &kd->sub_sel));
    kd->cap_sub = B;
  }
  st.nsel = 0;
  for (PetscInt i = 0; i < B; i++) {
    for (PetscInt j = 0; j < Ks; j++) {
      kd->sub_zs[i * Ks + j] = full->in->student_logits->data[i * K + kd->shared[j]];
      kd->sub_zt[i * Ks + j] = full->zt[i * K + kd->shared[j]];
      kd->sub_g[i * Ks + j]  = 0.0;
    }
    kd->sub_labels[i] = kd->sub_class[full->in->labels[i]];
    kd->sub_w[i]      = teaches_class(kd, full->in->labels[i]) ? full->w[i] : 0.0;
    if (kd->sub_w[i] > 0) kd->sub_sel[st.nsel++] = i;
  }
  zs                = AckdTensorView(kd->sub_zs, B, Ks, 1, 1);
  in.student_logits = &zs;
  in.teacher_logits = NULL; /* the methods read st.zt */
  in.labels         = kd->sub_labels;
  st.in             = &in;
  st.K              = Ks;
  st.zt             = kd->sub_zt;
  st.w              = kd->sub_w;
  st.sel            = kd->sub_sel;
  st.g_logits       = kd->sub_g;
  PetscCall(kd->method->loss(kd, &st, kd->kd_weight, value));
  for (PetscInt i = 0; i < B; i++)
    for (PetscInt j = 0; j < Ks; j++) full->g_logits[i * K + kd->shared[j]] += kd->sub_g[i * Ks + j];
  PetscFunctionReturn(0);
}

/* The batch's tensors against the model's sizes and the method's needs. */
static PetscErrorCode check_inputs(AckdKD kd, const AckdKDInputs *in)
{
  PetscInt B = in->batch, K = kd->dims.classes;
  char     who[96];

  PetscFunctionBeginUser;
  PetscCheck(kd->setup, kd->comm, PETSC_ERR_ORDER, "AckdKDLoss before AckdKDSetUp");
  PetscCheck(in->global_batch >= B && in->global_batch > 0, kd->comm, PETSC_ERR_ARG_OUTOFRANGE,
             "AckdKDLoss: the global batch %" PetscInt_FMT " is smaller than the local batch %" PetscInt_FMT,
             in->global_batch, B);
  PetscCheck(in->student_logits && in->labels, kd->comm, PETSC_ERR_ARG_NULL,
             "AckdKDLoss: the student's logits and the labels are required");
  PetscCheck(in->student_logits->n == B && AckdTensorSize(in->student_logits) == B * K, kd->comm, PETSC_ERR_ARG_SIZ,
             "AckdKDLoss: student logits are not (%" PetscInt_FMT ", %" PetscInt_FMT ")", B, K);
  if (in->teacher_logits)
    PetscCheck(AckdTensorSize(in->teacher_logits) == B * K, kd->comm, PETSC_ERR_ARG_SIZ,
               "AckdKDLoss: teacher logits are not (%" PetscInt_FMT ", %" PetscInt_FMT "): project them into the "
               "student's classes first",
               B, K);
  PetscCall(check_rows(kd, in->student_embedding, B, "the student embedding"));
  PetscCall(check_rows(kd, in->student_tokens, B, "the student tokens"));
  PetscCall(check_rows(kd, in->teacher_embedding, B, "the teacher embedding"));
  PetscCall(check_rows(kd, in->teacher_tokens, B, "the teacher tokens"));
  PetscCall(PetscSNPrintf(who, sizeof who, "-kd_method %s", kd->method->name));
  PetscCheck(!(kd->method->needs & KD_NEEDS_LOGITS) || in->teacher_logits, kd->comm, PETSC_ERR_ARG_NULL,
             "%s: this batch has no teacher logits", who);
  PetscCheck(!(kd->method->needs & KD_NEEDS_EMBEDDING) || (in->teacher_embedding && in->student_embedding), kd->comm,
             PETSC_ERR_ARG_NULL, "%s: this batch has no teacher or student embedding", who);
  PetscCheck(!(kd->method->needs & KD_NEEDS_TOKENS) || (in->teacher_tokens && in->student_tokens), kd->comm,
             PETSC_ERR_ARG_NULL, "%s: this batch has no teacher or student tokens", who);
  for (PetscInt i = 0; i < B; i++) {
    PetscCheck(!in->weight || in->weight[i] >= 0, kd->comm, PETSC_ERR_ARG_OUTOFRANGE,
               "AckdKDLoss: sample weight %" PetscInt_FMT " < 0", i);
    PetscCheck(in->labels[i] >= 0 && in->labels[i] < K, kd->comm, PETSC_ERR_ARG_OUTOFRANGE,
               "AckdKDLoss: label %" PetscInt_FMT " of sample %" PetscInt_FMT " is outside the %" PetscInt_FMT
               " classes",
               (PetscInt)in->labels[i], i, K);
  }
  PetscFunctionReturn(0);
}

/* The step every term reads: the buffers at the batch's size, the gradients zeroed (but SKA's
 * maps', which SKA writes itself in single precision: [*lo, *hi)), the teacher's logits (M2S: log
 * sigmoid, so that their softmax at temperature T is the normalised sigmoid^(1/T)), the sample
 * weights (times the teacher's reliability when asked) and the taught samples. */
static PetscErrorCode prepare_step(AckdKD kd, const AckdKDInputs *in, KDStep *step, PetscInt *lo, PetscInt *hi)
{
  PetscInt B = in->batch, K = kd->dims.classes;

  PetscFunctionBeginUser;
  PetscCall(grow(&kd->g_logits, &kd->cap_logits, B * K));
  PetscCall(grow(&kd->g_emb, &kd->cap_emb, in->student_embedding ? AckdTensorSize(in->student_embedding) : 0));
  PetscCall(grow(&kd->g_tok, &kd->cap_tok, in->student_tokens ? AckdTensorSize(in->student_tokens) : 0));
  if (B > kd->cap_batch) {
    PetscCall(PetscFree3(kd->zt, kd->w, kd->sel));
    PetscCall(PetscMalloc3(B * K, &kd->zt, B, &kd->w, B, &kd->sel));
    kd->cap_batch = B;
  }
  const PetscBool ska_runs = (PetscBool)(kd->sembridge && kd->ska_weight > 0);
  *lo                      = ska_runs && kd->ska.maps_hi > kd->ska.maps_lo ? kd->ska.maps_lo : kd->params.size;
  *hi                      = *lo < kd->params.size ? kd->ska.maps_hi : kd->params.size;
  PetscCall(PetscArrayzero(kd->g_params, *lo));
  PetscCall(PetscArrayzero(kd->g_params + *hi, kd->params.size - *hi));

  *step = (KDStep){.in       = in,
                   .B        = B,
                   .K        = K,
                   .inv_n    = 1.0 / (double)in->global_batch,
                   .share    = (double)B / (double)in->global_batch,
                   .g_logits = kd->g_logits,
                   .g_emb    = kd->g_emb,
                   .g_tok    = kd->g_tok,
                   .g_params = kd->g_params,
                   .w        = kd->w,
                   .sel      = kd->sel};
  if (in->teacher_logits) {
    for (PetscInt i = 0; i < B * K; i++) {
      double z  = in->teacher_logits->data[i];
      kd->zt[i] = kd->teacher_multilabel ? (z >= 0 ? -log1p(exp(-z)) : z - log1p(exp(z))) : z;
    }
    step->zt = kd->zt;
  }
  for (PetscInt i = 0; i < B; i++) kd->w[i] = in->weight ? in->weight[i] : 1.0;
  if (kd->reliability && in->teacher_logits) {
    float r[B];
    PetscCall(AckdKDReliability(in->teacher_logits, in->labels, kd->teacher_multilabel, r));
    for (PetscInt i = 0; i < B; i++) kd->w[i] *= r[i];
  }
  for (PetscInt i = 0; i < B; i++)
    if (kd->w[i] > 0) kd->sel[step->nsel++] = i;
  PetscFunctionReturn(0);
}

/* Cross-entropy on every sample. The loss weights split a taught sample's loss between its
 * label and its teacher; a sample the method gives no teacher of its own class (none matched,
 * or its class is one the teacher lacks) has only its label, and gets the whole weight a taught
 * sample's label has (-kd_unmatched_ce_weight, label_weight: 1 for KD). With (1 - alpha) = 0.1
 * the one-sided classes would have a tenth of the signal of training without a teacher; with 1
 * under SemBridge, whose taught samples carry 0.3 + 0.4/9, three times the shared ones'.
 * On the shared classes S, a taught sample's CE splits further: -log p(y) = -log p(y|S) -
 * log P(S). The teacher speaks to the class within S only; that the class is one of S at all
 * is the label's alone, so -log P(S) keeps the unmatched weight too (the term shared_mass,
 * weighted by the difference). Without it the one-sided classes, taught at full weight on
 * their own samples and pushed down at 0.1 on the others', take over the shared samples. */
static void cross_entropy(AckdKD kd, const KDStep *step, AckdKDOutputs *out)
{
  const AckdKDInputs *in = step->in;
  const PetscInt      B = step->B, K = step->K;
  const PetscBool     split       = (PetscBool)(kd->method->loss != NULL);
  const PetscBool     on_shared   = (PetscBool)(restricted_to_shared(kd) && kd->nshared >= 2);
  const double        mass_weight = on_shared ? PetscMax(kd->unmatched_ce_weight - kd->ce_weight, 0.0) : 0.0;
  double              ce = 0.0, ce_unmatched = 0.0, shared_mass = 0.0;

  for (PetscInt i = 0; i < B; i++) {
    double   z[K], lq[K];
    PetscInt y = in->labels[i];
    for (PetscInt k = 0; k < K; k++) z[k] = in->student_logits->data[i * K + k];
    ackd_kd_log_softmax(z, K, 1.0, lq);
    const PetscBool taught = (PetscBool)(!split || (kd->w[i] > 0 && teaches_class(kd, y)));
    const double    weight = taught ? kd->ce_weight : kd->unmatched_ce_weight;
    if (taught)
      ce -= lq[y] * step->inv_n;
    else
      ce_unmatched -= lq[y] * step->inv_n;
    for (PetscInt k = 0; k < K; k++) kd->g_logits[i * K + k] += weight * step->inv_n * (exp(lq[k]) - (k == y));
    if (taught && on_shared) {
      /* -log P(S) = lse(z) - lse(z_S); d/dz_k = p_k (1 - [k in S] / P(S)) */
      double mass = 0.0;
      for (PetscInt j = 0; j < kd->nshared; j++) mass += exp(lq[kd->shared[j]]);
      shared_mass -= log(mass) * step->inv_n;
      for (PetscInt k = 0; k < K; k++)
        kd->g_logits[i * K + k] +=
            mass_weight * step->inv_n * exp(lq[k]) * (1.0 - (kd->sub_class[k] >= 0 ? 1.0 / mass : 0.0));
    }
  }
  add_term(out, "ce", METRIC_CE, ce, kd->ce_weight);
  if (split) add_term(out, "ce_unmatched", METRIC_CE, ce_unmatched, kd->unmatched_ce_weight);
  if (on_shared && split) add_term(out, "shared_mass", METRIC_SHARED_MASS, shared_mass, mass_weight);
}

PetscErrorCode AckdKDLoss(AckdKD kd, const AckdKDInputs *in, AckdKDOutputs *out)
{
  KDStep   step;
  PetscInt lo = 0, hi = 0; /* the gradients outside [lo, hi) are accumulated in double here */
  double   value;

  PetscFunctionBeginUser;
  PetscCall(check_inputs(kd, in));
  PetscCall(PetscLogEventBegin(kd->event_loss, 0, 0, 0, 0));
  PetscCall(prepare_step(kd, in, &step, &lo, &hi));
  out->nterms = 0;
  out->total  = 0.0;
  cross_entropy(kd, &step, out);
  if (kd->method->loss) {
    if (restricted_to_shared(kd))
      PetscCall(loss_on_shared_classes(kd, &step, &value));
    else
      PetscCall(kd->method->loss(kd, &step, kd->kd_weight, &value));
    add_term(out, "kd", METRIC_KD, value, kd->kd_weight);
  }
  if (kd->sembridge && kd->ska_weight > 0) {
    PetscCall(PetscLogEventBegin(kd->event_ska, 0, 0, 0, 0));
    PetscCall(ackd_ska_loss(kd, &step, kd->ska_weight, &value));
    PetscCall(PetscLogEventEnd(kd->event_ska, 0, 0, 0, 0));
    add_term(out, "ska", METRIC_SKA, value, kd->ska_weight);
  }
  if (kd->hint_weight > 0) {
    PetscCall(ackd_kd_hint_loss(kd, &kd->hint, &step, "-kd_hint_weight", 1.0, kd->hint_weight, &value));
    add_term(out, "hint", METRIC_HINT, value, kd->hint_weight);
  }
  to_float(kd->g_logits, out->d_logits);
  if (in->student_embedding)
    to_float(kd->g_emb, out->d_embedding);
  else if (out->d_embedding)
    PetscCall(PetscArrayzero(out->d_embedding->data, AckdTensorSize(out->d_embedding)));
  if (in->student_tokens)
    to_float(kd->g_tok, out->d_tokens);
  else if (out->d_tokens)
    PetscCall(PetscArrayzero(out->d_tokens->data, AckdTensorSize(out->d_tokens)));
  for (PetscInt i = 0; i < lo; i++) kd->params.grads[i] = (float)kd->g_params[i];
  for (PetscInt i = hi; i < kd->params.size; i++) kd->params.grads[i] = (float)kd->g_params[i];
  PetscCall(PetscLogEventEnd(kd->event_loss, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdKDGetState(AckdKD kd, float **data, PetscInt *n)
{
  PetscFunctionBeginUser;
  PetscCheck(kd->setup, kd->comm, PETSC_ERR_ORDER, "AckdKDGetState before AckdKDSetUp");
  *data = kd->state;
  *n    = kd->nstate;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdKDDestroy(AckdKD *kd)
{
  AckdKD k = *kd;

  PetscFunctionBeginUser;
  if (!k) PetscFunctionReturn(0);
  if (k->method->destroy) PetscCall(k->method->destroy(k));
  PetscCall(AckdGemmBF16Destroy(&k->ska.gemm));
  PetscCall(PetscFree(k->data));
  PetscCall(PetscFree(k->state));
  PetscCall(AckdParamsDestroy(&k->params));
  PetscCall(PetscFree(k->g_logits));
  PetscCall(PetscFree(k->g_emb));
  PetscCall(PetscFree(k->g_tok));
  PetscCall(PetscFree(k->g_params));
  PetscCall(PetscFree3(k->zt, k->w, k->sel));
  PetscCall(PetscFree6(k->sub_zs, k->sub_zt, k->sub_w, k->sub_g, k->sub_labels, k->sub_sel));
  PetscCall(PetscFree2(k->shared, k->sub_class));
  PetscCall(PetscFree(k));
  *kd = NULL;
  PetscFunctionReturn(0);
}
