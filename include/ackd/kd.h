/* ackd kd: the student's losses for cross-modal knowledge distillation, and
 * SemBridge's parts (SKA, the SSM projection head and loss, DynM's schedule).
 * docs/KD.md has every formula, default and weight; docs/DESIGN.md §2 is the
 * method reference.
 *
 * One object, one call per training step:
 *
 *   AckdKDCreate(comm, &kd);
 *   AckdKDSetFromOptions(kd);                options: -kd_method dkd -sembridge -dkd_beta 8 ...
 *   AckdKDSetUp(kd, &dims);                  declares and initialises the method's own parameters
 *   AckdKDGetParams(kd, &params);            optimise and allreduce them like a model's
 *   per step: AckdKDLoss(kd, &in, &out);     terms, total, gradients (overwritten)
 *   AckdKDDestroy(&kd);
 *
 * Normalisation (so that the trainer SUM-allreduces every gradient and value):
 *   - per-sample terms (CE, KD, DKD, LSKD, logits MSE, FitNet, AT, ...) are
 *     Σ_{i in local batch} w_i ℓ_i / N, N = in->global_batch: the sum over
 *     ranks of the values (and gradients) is the global mean, whatever the split;
 *     CRD's term is per-sample too (each sample against the memory);
 *   - batch-level terms (RKD, CLIP, SKA's CORAL, the SSM loss) are computed
 *     over the local batch, as PyTorch DDP does, and scaled by B_local / N: with
 *     an even split the summed gradient is DDP's average of per-rank losses.
 * Every value in AckdKDOutputs is this rank's share: MPI_SUM over ranks gives
 * the step's loss.
 */
#ifndef ACKD_KD_H
#define ACKD_KD_H

#include <ackd/dist.h>
#include <ackd/nn.h>

typedef struct _p_AckdKD *AckdKD;

/* Shapes known when the distill stage starts. A zero teacher dimension means
 * the teacher does not provide that output (e.g. a gallery without tokens):
 * methods that need it refuse in AckdKDSetUp with one line naming the method. */
typedef struct {
  PetscInt  classes;           /* K, the student's classes: teacher logits arrive projected into them */
  PetscInt  student_embedding; /* D_s */
  PetscInt  student_channels;  /* C_s of the layer-4 tokens */
  PetscInt  student_tokens;    /* N_s (H*W of layer 4), 0 if not known yet */
  PetscInt  teacher_embedding; /* D_t, 0: none */
  PetscInt  teacher_channels;  /* C_t, 0: no teacher tokens (gallery only) */
  PetscInt  teacher_tokens;    /* N_t, 0 if not known yet */
  PetscBool teacher_logits;    /* the teacher provides logits */
  uint64_t  seed;              /* the method's parameters are drawn from it (PyTorch's defaults) */
  PetscInt  student_samples;   /* N of the student's training set, the size of CRD's memory (the global
                                  sample indices of AckdKDInputs.samples lie in [0, N)); 0: unknown */
  /* (K) nonzero where the teacher has a counterpart of the student's class (the dataset's class
     map); NULL: every class. Copied by AckdKDSetUp. Under partial overlap the logit methods
     compare teacher and student on these classes only (-kd_shared_classes, docs/KD.md). */
  const unsigned char *teacher_classes;
  /* The run's epochs: a method's default warm-up is its paper's share of the run, and a longer
     one given by the user is refused; 0: unknown (the papers' warm-ups in epochs). */
  PetscInt epochs;
} AckdKDDims;

/* One local batch of B samples. Tensors use nn.h's layouts: logits (B, K, 1, 1),
 * embeddings (B, D, 1, 1), tokens (B, 1, N, C); AckdModelOutputs can be passed
 * field by field. Teacher tensors are rows matched to the student's samples
 * (top-1, or the plan-weighted top-k mixture the trainer computed). */
typedef struct {
  PetscInt          batch;        /* B, local */
  PetscInt          global_batch; /* N: the global batch count every per-sample term divides by */
  PetscInt          epoch;        /* 0-based, for warm-ups (DKD) and schedules (CTKD) */
  const AckdTensor *student_logits, *student_embedding, *student_tokens;
  const AckdTensor *teacher_logits;    /* NULL if the teacher has none */
  const AckdTensor *teacher_embedding; /* NULL if none */
  const AckdTensor *teacher_tokens;    /* NULL if only a gallery is available */
  const PetscInt   *labels;            /* (B), the student's single-label classes in [0, K) */
  const float      *weight;  /* (B) w_i >= 0: 0 = no matched teacher, else e.g. the plan weight; NULL = all 1 */
  const PetscInt   *samples; /* (B) global student sample indices in [0, student_samples); NULL: absent
                                (only crd needs them: its memory rows) */
  PetscInt step;             /* the trainer's step count (0-based, global); with epoch it seeds CRD's
                                negatives, drawn per (seed, epoch, step, sample) */
} AckdKDInputs;

enum { ACKD_KD_MAX_TERMS = 8 };

/* Gradients are OVERWRITTEN (not accumulated) with d total / d input, in float,
 * accumulated internally in double; a NULL pointer means "not wanted". They have
 * the shapes of the corresponding student inputs. The method's own parameter
 * gradients (AckdKDGetParams) are overwritten too. */
typedef struct {
  AckdTensor *d_logits, *d_embedding, *d_tokens;
  double      total; /* Σ weight_k · term_k */
  PetscInt    nterms;
  const char *names[ACKD_KD_MAX_TERMS];  /* "ce", "ce_unmatched", "kd", "ska", "shared_mass", "hint" */
  double      values[ACKD_KD_MAX_TERMS]; /* unweighted term values, this rank's share */
  double      weights[ACKD_KD_MAX_TERMS];
  PetscInt    metric[ACKD_KD_MAX_TERMS]; /* the metric each term adds into (AckdKDGetMetricNames) */
} AckdKDOutputs;

PetscErrorCode AckdKDCreate(MPI_Comm comm, AckdKD *kd);
/* -kd_method, the chosen method's hyperparameters (paper defaults), -sembridge
 * and SKA's options, the loss weights -kd_ce_weight -kd_weight -ska_weight,
 * -kd_reliability, -kd_teacher_multilabel. Listed by -help. */
PetscErrorCode AckdKDSetFromOptions(AckdKD kd);
/* Programmatic choice (tests, sweeps): the method by name and SemBridge on or
 * off, before SetFromOptions (which may override them) or instead of it. */
PetscErrorCode AckdKDSetMethod(AckdKD kd, const char *method, PetscBool sembridge);
PetscErrorCode AckdKDSetUp(AckdKD kd, const AckdKDDims *dims);
/* The method's trainable parameters (FitNet's regressor, SKA's attention, CTKD's
 * temperature, ...): one contiguous AckdParams, PyTorch state_dict names, owned
 * by kd. It may hold no parameter (size 0). */
PetscErrorCode AckdKDGetParams(AckdKD kd, AckdParams **params);
PetscErrorCode AckdKDGetMethodName(AckdKD kd, const char **name);
PetscErrorCode AckdKDLoss(AckdKD kd, const AckdKDInputs *in, AckdKDOutputs *out);
PetscErrorCode AckdKDDestroy(AckdKD *kd);
/* The method's non-trainable state (CRD's memory of embeddings; *data NULL and
 * *n 0 for methods without one), owned by kd, valid after AckdKDSetUp. It is
 * REPLICATED: AckdKDLoss updates it identically on every rank of kd's
 * communicator (the updated rows are allgathered inside the call, so
 * AckdKDLoss is collective for such methods). Checkpoint it from rank 0; to
 * resume, write the saved n floats into *data on every rank after AckdKDSetUp. */
PetscErrorCode AckdKDGetState(AckdKD kd, float **data, PetscInt *n);

/* Whether the loss chosen by the options (the method, SemBridge's SKA) uses the teacher's layer-4
 * tokens: the caller then runs the frozen teacher for them (a gallery holds none). After
 * AckdKDSetFromOptions. */
PetscErrorCode AckdKDWantsTeacherTokens(AckdKD kd, PetscBool *wants);
/* The per-epoch metrics a trainer records for AckdKDLoss's terms, in the order of
 * AckdKDOutputs.metric: loss_ce (every sample's cross-entropy, taught or not), loss_kd (the
 * method's term), loss_ska, loss_shared_mass, and loss_hint only when -kd_hint_weight adds a hint
 * (so that the other runs' checkpoints keep their metrics). Valid after AckdKDSetFromOptions. */
PetscErrorCode AckdKDGetMetricNames(AckdKD kd, PetscInt *n, const char *const **names);
/* The option prefixes AckdKD reads, space-separated ("kd_ sembridge ska_ fitnet_ ..."): every
 * method's options are named after it. A stage that holds an AckdKD reads these. */
const char *AckdKDOptionPrefixes(void);

/* Cross-knowledge assessment: how well the matched teacher predicts sample i's
 * true class, r_i = softmax(z_t,i)[y_i] (sigmoid for a multi-label teacher).
 * AckdKDLoss multiplies w_i by it when -kd_reliability is on; exposed so the
 * trainer can log it. teacher_logits (B, K) in the student's class space. */
PetscErrorCode AckdKDReliability(const AckdTensor *teacher_logits, const PetscInt *labels, PetscBool multilabel,
                                 float *r);

/* ---------------------------------------------------------------- DynM */

/* The adjust epochs e_t = e0 + Σ_{i=1..t} (Δe + e_μ (i - 1)), t = 0, 1, ...:
 * (30, 30, 5) gives 30, 60, 95, 135, ... Epochs count as the caller counts them. */
PetscErrorCode AckdDynMIsAdjustEpoch(PetscInt e0, PetscInt delta, PetscInt growth, PetscInt epoch, PetscBool *adjust);
/* Every adjust epoch <= last, at most `capacity` of them; *n is their count. */
PetscErrorCode AckdDynMAdjustEpochs(PetscInt e0, PetscInt delta, PetscInt growth, PetscInt last, PetscInt capacity,
                                    PetscInt *epochs, PetscInt *n);

/* ---------------------------------------------------------------- SSM */

/* `ackd ssm`'s file: both collections' matcher embeddings, which `ackd match` reads (docs/FORMATS.md) */
#define ACKD_FORMAT_EMBEDDINGS         "embeddings"
#define ACKD_FORMAT_EMBEDDINGS_VERSION 1

/* The matcher's projection head (docs/KD.md, "SemBridge"):
 *   p = W1 x + b1 (in -> out), e = LayerNorm(p + Dropout_0.1(W2 GELU(p) + b2)).
 * Parameter names "<name>.projection.weight", "<name>.fc.weight",
 * "<name>.layer_norm.weight" (and biases), in the caller's AckdParams. */
typedef struct {
  char          name[ACKD_NN_NAME_LEN];
  PetscInt      in, out;
  AckdLinear    projection, fc;
  AckdDropout   dropout;
  AckdLayerNorm norm;
  float        *p, *g, *f, *r, *y, *dy, *dg; /* activations of the latest forward, gradients */
  PetscInt      rows_capacity;
} AckdSSMHead;

PetscErrorCode AckdSSMHeadSetUp(AckdSSMHead *head, AckdParams *params, const char *name, PetscInt in, PetscInt out,
                                double dropout, uint64_t seed, uint32_t tag);
/* Dropout on (training) or off; masks from (seed, tag, step, global sample index). */
PetscErrorCode AckdSSMHeadSetTraining(AckdSSMHead *head, PetscBool training, PetscInt step, PetscInt sample_offset);
/* x (B, in, 1, 1) -> e (B, out, 1, 1), caller's memory. */
PetscErrorCode AckdSSMHeadForward(AckdSSMHead *head, AckdEngine *engine, const AckdTensor *x, AckdTensor *e);
/* de -> dx (overwritten, skipped if NULL) and the head's parameter gradients (overwritten). */
PetscErrorCode AckdSSMHeadBackward(AckdSSMHead *head, AckdEngine *engine, const AckdTensor *x, const AckdTensor *de,
                                   AckdTensor *dx);
PetscErrorCode AckdSSMHeadDestroy(AckdSSMHead *head);

/* The soft-target contrastive loss over the local batch, τ = 1 by default:
 *   L = E_rgb E_msᵀ / τ, T = softmax_row(τ (E_ms E_msᵀ + E_rgb E_rgbᵀ) / 2),
 *   loss = mean_i ½ [CE(L_i·, T_i·) + CE(L_·i, T_·i)],
 * the gradient flowing through the targets as well (they are not detached).
 * e_rgb, e_ms (B, d, 1, 1); the value and gradients are multiplied by `scale`
 * (B_local / N for the SUM-allreduce convention above, 1 for the plain loss);
 * d_rgb, d_ms overwritten (either may be NULL). */
PetscErrorCode AckdSSMLoss(const AckdTensor *e_rgb, const AckdTensor *e_ms, double tau, double scale, double *loss,
                           AckdTensor *d_rgb, AckdTensor *d_ms);

/* ---------------------------------------------------------------- teacher targets */

/* What each student sample learns from: its matched teacher samples (top-k
 * with plan weights, from `ackd match` or DynM's re-matching) and what the
 * frozen teacher said about them (the gallery of `ackd train`), projected
 * into the student's classes. Every rank holds the whole table and gallery:
 * a batch may draw any student sample. */
typedef struct _p_AckdTeacherTargets *AckdTeacherTargets;

/* Collective. `gallery` is the file of docs/FORMATS.md; `ms_to_rgb` (K_ms
 * entries, -1: no counterpart) maps the teacher's classes to the student's
 * `classes`; `student_rows` are the dataset rows of the N_s student samples
 * (the RGB training split, in order). */
PetscErrorCode AckdTeacherTargetsCreate(MPI_Comm comm, const char *gallery, const int *ms_to_rgb, PetscInt ms_classes,
                                        PetscInt classes, PetscInt nstudent, const PetscInt *student_rows,
                                        const int *student_labels, AckdTeacherTargets *targets);
/* Collective: the match file of `ackd match` (N_s rows, k columns). */
PetscErrorCode AckdTeacherTargetsLoadMatch(AckdTeacherTargets targets, const char *path, PetscInt k);
PetscErrorCode AckdTeacherTargetsGetSizes(AckdTeacherTargets targets, PetscInt *nstudent, PetscInt *nteacher,
                                          PetscInt *k, PetscInt *embedding);
/* The match table itself (N_s x k teacher indices and weights, as floats so
 * that a checkpoint stores it beside the model; indices are exact below 2^24). */
PetscErrorCode AckdTeacherTargetsGetTable(AckdTeacherTargets targets, float **index, float **weight);
/* For `n` student samples given by dataset row: the plan-weighted mixture of
 * their teachers' logits (n, K) and embeddings (n, D) (either output may be
 * NULL), the weight w_i (0: no teacher; else the mass kept), and the
 * dataset row in the teacher's collection of the best teacher (-1: none). */
PetscErrorCode AckdTeacherTargetsGather(AckdTeacherTargets targets, PetscInt n, const PetscInt *rows, float *logits,
                                        float *embedding, float *weight, PetscInt *teacher_row);
/* Collective, DynM: re-matches every student sample by the KL cost between
 * its logits (N_s x K, all of them, on every rank) and the teacher gallery's,
 * with the OT solver configured under `prefix` (-dynm_solver, -dynm_ot_eps,
 * -dynm_ot_topk, ...), and replaces the table. With class_blocks, within the
 * student's labelled class only (each class's student mass onto its own
 * teachers); without, over every teacher, uniform masses on both sides. */
PetscErrorCode AckdTeacherTargetsRematch(AckdTeacherTargets targets, const float *student_logits,
                                         PetscBool class_blocks, const char *prefix);

/* What a matching looks like, from its top-1 teachers: the students with a teacher; the share of
 * them whose top-1 differs from `previous` (the top-1 column of an earlier table, N_s entries,
 * NULL: not measured, NaN); how many distinct teachers are someone's top-1, and the most students
 * one teacher is top-1 for (a hub); and the mean probability the top-1 teacher gives the
 * student's class (softmax of its logits over the student's classes the teacher has). */
typedef struct {
  PetscInt matched, distinct_teachers, largest_hub;
  double   changed, own_class_probability;
} AckdMatchStatistics;

/* The top-1 column of the current table (N_s teacher indices, -1: none), into caller memory. */
PetscErrorCode AckdTeacherTargetsGetTop1(AckdTeacherTargets targets, PetscInt *top1);
PetscErrorCode AckdTeacherTargetsStatistics(AckdTeacherTargets targets, const PetscInt *previous,
                                            AckdMatchStatistics *stats);
/* One line that tells this gallery from another: its size and a digest (AckdDigest) of its logits
 * as the student's classes see them, its dataset rows, labels and embeddings, e.g. "2800 teacher
 * samples x 10 classes, gallery 0f1e2d3c4b5a6978". A distill run records it in its checkpoints. */
PetscErrorCode AckdTeacherTargetsDescribe(AckdTeacherTargets targets, char *text, size_t len);
PetscErrorCode AckdTeacherTargetsDestroy(AckdTeacherTargets *targets);

/* The frozen teacher's layer-4 tokens (T x C per image) of every image of the MS collection,
 * computed once (src/kd/teacher_tokens.c) instead of at every step: the teacher is frozen and sees
 * its images unaugmented. Collective; *tokens is NULL when they would take more than a quarter of
 * the memory each rank of the node may use (the caller then runs the teacher per step). */
typedef struct _p_AckdTeacherTokens *AckdTeacherTokens;

PetscErrorCode AckdTeacherTokensCreate(MPI_Comm comm, AckdModel teacher, AckdEngine *engine, AckdSharedDataset ms,
                                       PetscInt T, PetscInt C, AckdTeacherTokens *tokens);
/* The tokens of MS dataset rows rows[0..n) into out (n, 1, T, C). */
PetscErrorCode AckdTeacherTokensGather(AckdTeacherTokens tokens, PetscInt n, const PetscInt *rows, float *out);
PetscErrorCode AckdTeacherTokensDestroy(AckdTeacherTokens *tokens);

/* M2S: a multi-label teacher sample stands for one student class where a
 * single label is needed (the OT matching's class blocks, DynM, ssm's teacher
 * labels). Where the collection records the sample's `dominant` class (>= 0),
 * that class's counterpart, -1 if it has none. Otherwise (dominant -1), among
 * its positive MS labels that map into the student's classes (ms_to_rgb[c] in
 * [0, classes)), the one with the highest `score` (the teacher's logit; NULL:
 * the lowest class index; ties: the lowest index), mapped; -1 if none maps.
 * A gallery with (N_t, K_ms) labels is multi-label: AckdTeacherTargetsCreate
 * labels its samples this way, by their logits. */
PetscInt AckdMultilabelStudentClass(PetscInt ms_classes, const unsigned char *positive, PetscInt dominant,
                                    const float *score, const int *ms_to_rgb, PetscInt classes);

/* `ackd ssm` as an object: the self-supervised matcher trained data parallel on the MS collection
 * (an MS encoder and a pseudo-RGB encoder, options -ssm_*), then the embeddings file
 * (ACKD_FORMAT_EMBEDDINGS) that `ackd match` reads: MS training samples through the MS encoder,
 * real RGB training samples through the pseudo-RGB one.
 *   AckdMatcherCreate(comm, &m);
 *   AckdMatcherSetFromOptions(m);
 *   AckdMatcherSetUp(m);                  the datasets, the pseudo-RGB bands, the encoders and heads
 *   AckdMatcherRun(m, &stopped);          collective; stopped: checkpointed on a stop request (exit 75)
 *   AckdMatcherDestroy(&m); */
typedef struct _p_AckdMatcher *AckdMatcher;

PetscErrorCode AckdMatcherCreate(MPI_Comm comm, AckdMatcher *matcher);
PetscErrorCode AckdMatcherSetFromOptions(AckdMatcher matcher);
PetscErrorCode AckdMatcherSetUp(AckdMatcher matcher);
PetscErrorCode AckdMatcherRun(AckdMatcher matcher, PetscBool *stopped);
PetscErrorCode AckdMatcherDestroy(AckdMatcher *matcher);

#endif
