/* Private to src/kd: the AckdKD object, the method table and the numerical
 * helpers the methods share. */
#ifndef ACKD_KD_IMPL_H
#define ACKD_KD_IMPL_H

#include <ackd/kd.h>

typedef struct _p_AckdKD *AckdKDObj;

/* What a method needs from the teacher: checked once in AckdKDSetUp. */
enum { KD_NEEDS_LOGITS = 1, KD_NEEDS_EMBEDDING = 2, KD_NEEDS_TOKENS = 4 };

/* One step's data as the methods see it. Gradients go into double
 * accumulators of the inputs' shapes, already multiplied by `coef` (the term's
 * weight) by the method itself. */
typedef struct {
  const AckdKDInputs *in;
  PetscInt            B, K;
  const double       *zt;    /* teacher logits (B, K) after the multi-label transform, or NULL */
  const double       *w;     /* effective per-sample weight (reliability included) */
  PetscInt            nsel;  /* samples with w > 0 (those that have a teacher) */
  const PetscInt     *sel;   /* their indices */
  double              inv_n; /* 1 / N: per-sample terms */
  double              share; /* B / N: batch-level terms */
  double             *g_logits, *g_emb, *g_tok, *g_params;
} KDStep;

typedef struct {
  const char *name;
  const char *help;
  unsigned    needs;
  /* allocates kd->data with the method's defaults (kd->sembridge is known) */
  PetscErrorCode (*create)(AckdKDObj);
  /* reads the method's options (between PetscOptionsBegin/End, under kd's prefix) */
  PetscErrorCode (*options)(AckdKDObj, PetscOptionItems *);
  /* checks dims, declares parameters (before AckdParamsSetUp) */
  PetscErrorCode (*setup)(AckdKDObj);
  /* adds coef * d value into the step's accumulators; value is unweighted */
  PetscErrorCode (*loss)(AckdKDObj, const KDStep *, double coef, double *value);
  PetscErrorCode (*destroy)(AckdKDObj);
  /* the CE and distillation weights when SemBridge is off; NULL: 1 and 1 */
  void (*weights)(AckdKDObj, double *ce, double *kd);
  /* how much label weight one unit of the term's weight stands in for, on cross-entropy's gradient
   * scale: 1 for KD-like terms that take over part of the label with T² (Hinton's parity), 1/T²
   * without it; NULL: 0, a term added to the full label (DKD, features, relations). A sample
   * without a teacher gets ce + kd x this as its cross-entropy weight (kd.c, docs/KD.md). */
  double (*label_share)(AckdKDObj);
  /* the loss reads only the logits (student's and teacher's) and the labels, so under partial
   * class overlap it can be computed on the classes both collections have (kd.c, docs/KD.md) */
  PetscBool on_class_subset;
  /* whether the loss, with the options read, uses the teacher's layer-4 tokens when it has them;
   * NULL: whether `needs` has KD_NEEDS_TOKENS */
  PetscBool (*wants_tokens)(AckdKDObj);
} KDMethod;

/* A hint's regressor and feature (hint.c). */
typedef struct {
  PetscBool   embedding;    /* the pooled embedding instead of the layer-4 tokens */
  const char *option;       /* the option that chooses the feature, for the refusals */
  PetscInt    weight, bias; /* parameter offsets */
  PetscInt    in, out;      /* C_s -> C_t (or D_s -> D_t) */
} KDHint;

/* SKA's state (ska.c). */
typedef struct {
  PetscInt     heads;
  PetscBool    sinkhorn;     /* the explicit-plan variant */
  PetscBool    exact;        /* -ska_precision double: CORAL and the projections' forward in double */
  PetscBool    maps_bf16;    /* -ska_maps_precision bf16: the maps' GEMMs on bf16 operands */
  AckdGemmBF16 gemm;         /* their plans, when maps_bf16 */
  double       sinkhorn_eps; /* entropic regularisation of that plan */
  PetscInt     sinkhorn_it;
  PetscInt     wq_s, wk_s, wq_t, wk_t; /* parameter offsets */
  /* [maps_lo, maps_hi): the query and key maps, whose gradients SKA writes in single precision
   * straight into the parameter buffer's (AckdKDLoss neither zeroes nor converts them) */
  PetscInt  maps_lo, maps_hi;
  PetscInt  proj_tok, proj_emb; /* -1 when dimensions agree */
  PetscBool one_token_warned;
} KDSka;

struct _p_AckdKD {
  MPI_Comm        comm;
  const KDMethod *method;
  PetscBool       sembridge, reliability, teacher_multilabel, setup;
  /* -kd_shared_classes: logit methods compare the two sides on the classes both have */
  PetscBool  shared_simplex;
  PetscInt   nshared;   /* K_s, the student's classes the teacher also has */
  PetscInt  *shared;    /* (K_s) those classes; NULL when the teacher has every class */
  PetscInt  *sub_class; /* (K) class -> its index among the shared ones, -1: one-sided */
  double     ce_weight, kd_weight, ska_weight, unmatched_ce_weight;
  AckdKDDims dims;
  AckdParams params;
  void      *data;  /* the method's own state */
  float     *state; /* its replicated non-trainable state (AckdKDGetState), allocated by its setup */
  PetscInt   nstate;
  /* tests only: methods with stop-gradient targets (c2kd, mnf) reuse the detached values of the
   * previous call, so that finite differences of the total see them as constants */
  PetscBool freeze_targets;
  KDSka     ska;
  /* -kd_hint_weight: a hint term on top of the method (hint.c); 0: none */
  double hint_weight;
  KDHint hint;
  /* scratch, grown to the largest batch */
  double   *zt, *w, *g_logits, *g_emb, *g_tok, *g_params;
  PetscInt *sel;
  PetscInt  cap_logits, cap_emb, cap_tok, cap_batch;
  /* scratch of the shared-class view, grown to the largest batch */
  float        *sub_zs;
  double       *sub_zt, *sub_w, *sub_g;
  PetscInt     *sub_labels, *sub_sel, cap_sub;
  PetscLogEvent event_loss, event_ska, event_ska_maps, event_ska_coral;
};

/* The table (methods.c) and each method's descriptor. */
extern const KDMethod *const ackd_kd_methods[]; /* NULL-terminated, in -help's order (methods.c) */
extern const KDMethod ackd_kd_none, ackd_kd_kd, ackd_kd_logits, ackd_kd_fitnet, ackd_kd_at, ackd_kd_rkd, ackd_kd_dkd,
    ackd_kd_lskd, ackd_kd_ctkd, ackd_kd_clip, ackd_kd_crd, ackd_kd_c2kd, ackd_kd_mnf, ackd_kd_distilvpr;
/* KD's default weights (1 - alpha, alpha), shared by the methods that plug into KD (kd_util.c). */
void ackd_kd_alpha_weights(double alpha, double *ce, double *kd);
/* The label_share of a KD loss with T² inside (LSKD, CTKD): 1. */
double ackd_kd_full_label_share(AckdKDObj kd);

/* One line naming `who` and the fix (NULL: the default advice) when the teacher lacks what `needs` asks (kd_util.c). */
PetscErrorCode ackd_kd_refuse_missing(AckdKDObj kd, unsigned needs, const char *who, const char *fix);

/* SKA (ska.c). */
PetscErrorCode ackd_ska_options(AckdKDObj kd, PetscOptionItems *PetscOptionsObject);
PetscErrorCode ackd_ska_setup(AckdKDObj kd);
PetscErrorCode ackd_ska_loss(AckdKDObj kd, const KDStep *step, double coef, double *value);

/* Hints (hint.c). The feature option (-fitnet_feature, -kd_hint_feature) into h; a teacher
 * without that feature refused in one line naming `who`, else the regressor's parameters
 * "<name>.regressor.weight|bias" declared; and the term, scale · Σ_i w_i mean (r(x_s) -
 * x_t)² / N over the taught samples, into *value with coef · its gradients in the step's
 * accumulators. `who` names the user of the term in its refusals. */
PetscErrorCode ackd_kd_hint_feature_option(PetscOptionItems *PetscOptionsObject, const char *option, KDHint *h);
PetscErrorCode ackd_kd_hint_setup(AckdKDObj kd, KDHint *h, const char *who, const char *name);
PetscErrorCode ackd_kd_hint_loss(AckdKDObj kd, const KDHint *h, const KDStep *st, const char *who, double scale,
                                 double coef, double *value);

/* RKD's terms (kd_rkd.c), shared with DistilVPR's RKD-G. On the rows of xs (n x Ds) against xt
 * (n x Dt): the distance term mean_ij Huber(d̂_s - d̂_t) and the angle term
 * mean_abc Huber(⟨e_ba, e_ca⟩_s - ⟨·⟩_t), unweighted into *value; each adds coef · its gradient
 * with respect to xs into gx. */
PetscErrorCode ackd_kd_rkd_distance(const double *xs, const double *xt, PetscInt n, PetscInt Ds, PetscInt Dt,
                                    double coef, double *gx, double *value);
PetscErrorCode ackd_kd_rkd_angle(const double *xs, const double *xt, PetscInt n, PetscInt Ds, PetscInt Dt, double coef,
                                 double *gx, double *value);
/* Two n x n distance matrices, each divided by the mean of its positive entries: their Huber
 * averaged over the n² entries; gds (NULL: not wanted) receives coef · d/dd_s, 0 on zero entries. */
double ackd_kd_rkd_normalised_huber(const double *ds, const double *dt, PetscInt n, double coef, double *gds);

/* ---------------------------------------------------------------- helpers (kd_util.c) */

/* log softmax(z / T) of one row, in double. */
void ackd_kd_log_softmax(const double *z, PetscInt K, double T, double *out);
/* KL(softmax(zt/T) || softmax(zs/T)) of one row; adds coef * d/dzs to gzs and,
 * when dT is not NULL, coef * d/dT to *dT. */
double ackd_kd_kl_row(const double *zt, const double *zs, PetscInt K, double T, double coef, double *gzs, double *dT);
/* CORAL(S, T) = mean((C_S - C_T)²) / (4d), C = X̄ᵀX̄ with X̄ centred over rows:
 * rows of S (ns x d) and T (nt x d); adds coef * gradients (gs, gt may be NULL). */
PetscErrorCode ackd_kd_coral(const double *s, PetscInt ns, const double *t, PetscInt nt, PetscInt d, double coef,
                             double *gs, double *gt, double *value);
/* The same with the covariances and gradient products in single precision (SKA's default,
 * -ska_precision single); the loss is summed in double. */
PetscErrorCode ackd_kd_coral_single(const double *s, PetscInt ns, const double *t, PetscInt nt, PetscInt d, double coef,
                                    double *gs, double *gt, double *value);
/* Huber (smooth L1, beta 1) and its derivative. */
static inline double ackd_kd_huber(double x, double *dx)
{
  double a = x < 0 ? -x : x;
  if (a < 1.0) {
    *dx = x;
    return 0.5 * x * x;
  }
  *dx = x < 0 ? -1.0 : 1.0;
  return a - 0.5;
}
/* A warm-up in epochs: `*warmup` as the user gave it (-1: not given) becomes the method paper's
 * `paper` epochs of its `paper_run`-epoch runs scaled to this run's kd->dims.epochs (at least 1);
 * a given one longer than the run is refused with one line naming `option`. */
PetscErrorCode ackd_kd_resolve_warmup(AckdKDObj kd, const char *option, PetscInt paper, PetscInt paper_run,
                                      PetscInt *warmup);
/* Reads a float tensor into doubles (rows of the selected samples only when sel is not NULL). */
PetscErrorCode ackd_kd_gather(const AckdTensor *t, PetscInt per_sample, PetscInt n, const PetscInt *sel, double **out);
/* y (n x o) = x (n x i) · Wᵀ with W (o x i) floats; and its backward: gx += coef dy W, gW += coef dyᵀ x. */
PetscErrorCode ackd_kd_linear(const double *x, PetscInt n, PetscInt in, const float *W, PetscInt out, double *y);
/* The same product in single precision (x rounded to float), and its backward in single
 * precision: gx += dy W, gW += dyᵀ x (no coef). */
PetscErrorCode ackd_kd_linear_single(const double *x, PetscInt n, PetscInt in, const float *W, PetscInt out, double *y);
PetscErrorCode ackd_kd_linear_single_backward(const double *x, PetscInt n, PetscInt in, const float *W, PetscInt out,
                                              const double *dy, double *gx, double *gW);
PetscErrorCode ackd_kd_linear_backward(const double *x, PetscInt n, PetscInt in, const float *W, PetscInt out,
                                       const double *dy, double *gx, double *gW);
/* Rows of x (n x d) normalised in place, their norms (clamped at 1e-12) into len; and the backward
 * of y/|y| in place on g given the normalised rows. */
void ackd_kd_normalise(double *x, PetscInt n, PetscInt d, double *len);
void ackd_kd_normalise_backward(const double *xh, PetscInt n, PetscInt d, const double *len, double *g);
/* Declares "<name>.weight" (out, in) and "<name>.bias" (out) with PyTorch's nn.Linear initialisation. */
PetscErrorCode ackd_kd_add_linear(AckdKDObj kd, const char *name, PetscInt out, PetscInt in, PetscInt *w, PetscInt *b);
/* CRD's negatives of one sample: k indices uniform on [0, N) without `sample`, drawn with replacement
 * from (seed, epoch, step, sample) alone (kd_crd.c; the tests recompute them). */
void ackd_kd_crd_negatives(uint64_t seed, PetscInt epoch, PetscInt step, PetscInt sample, PetscInt N, PetscInt k,
                           PetscInt *out);

#endif
