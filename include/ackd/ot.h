/* ackd ot: distributed optimal transport between a student collection (rows,
 * N_s samples) and a teacher collection (columns, N_t samples).
 *
 * The cost matrix C (N_s x N_t) lives block-cyclically on a BLACS 2-D process
 * grid (default 1 x P: whole columns per rank, one fused pass over C per
 * Sinkhorn iteration) and is assembled with PDGEMM from the two feature
 * matrices. The solvers
 * (option -<prefix>solver):
 *   sinkhorn    entropic OT, log-domain Sinkhorn with eps-scaling (sinkhorn.c)
 *   unbalanced  KL-relaxed marginals, weight -ot_tau (sinkhorn.c)
 *   semidual    entropic OT by L-BFGS on the semi-dual (PETSc Tao; semidual.c)
 *   exact       the transportation LP (GLPK, on rank 0: small problems; exact.c)
 *   auction     exact, square problems with equal masses (eps-scaling auction, rank 0; auction.c)
 *   argmin      the paper's hard matching: top-k by cost (topk.c)
 * The entropic ones work on the potentials f (rows) and g (columns): the plan
 * is P_ij = exp((f_i + g_j - C_ij) / eps); exact returns LP duals as f, g.
 *
 * Layout and cost options (-<prefix>ot_...):
 *   class_blocks subgrid|dense  with labels: each class block assembled and solved on its own
 *                               sub-grid, groups concurrently (blocks.c; default), or one dense C
 *   sinkhorn_kernel scaling|log stabilised kernel iteration with absorption (a multiply-add per
 *                               entry, exp(-C/eps) kept beside C) or an exp per entry (C only)
 *   online                      never store C: recompute tiles from the features in every pass
 *   online_layout auto|replicated|rotating   online: each rank keeps its grid row's students, or a
 *                               1 / P_c chunk of them passed round the row (memory
 *                               O((N_s + N_t) d / P) on 1 x P, two passes per iteration; online.c)
 *   truncate K                  Sinkhorn on a sparse part S of C, certified by dense float-GEMM
 *                               passes and grown until the column error holds (truncated.c)
 *   precision double|single     C (and the scaling kernel) in float: half the memory and bytes
 *   check_every, overrelaxation the stopping-check rhythm (POT: 10) and omega in [1, 2)
 *
 * Lifecycle (PETSc style):
 *   AckdOTCreate(comm, &ot);
 *   AckdOTSetOptionsPrefix(ot, "match_");     options read as -match_ot_eps, ...
 *   AckdOTSetFromOptions(ot);
 *   AckdOTSetSizes(ot, n_student, n_teacher, dim);
 *   AckdOTSetUp(ot);                          builds the process grid
 *   AckdOTGetOwnedRows(...)                   which feature rows this rank supplies
 *   AckdOTSetFeatures(ot, student_rows, teacher_rows);   assembles C
 *   AckdOTSetLabels / AckdOTSetMarginals      optional
 *   AckdOTSolve(ot);
 *   AckdOTGetResult / AckdOTGetTopK / AckdOTWriteMatchFile
 *   AckdOTDestroy(&ot);
 *
 * In-process use from `ackd distill` (DynM re-matching at an adjust epoch),
 * collective on the training communicator `comm` (any communicator: the
 * object works on a private duplicate; several objects may be alive on it):
 *   AckdOTCreate(comm, &ot);
 *   AckdOTSetOptionsPrefix(ot, "distill_");
 *   AckdOTSetCostKind(ot, ACKD_OT_COST_KL);   before SetFromOptions: the user may still override
 *   AckdOTSetFromOptions(ot);                 read before the stage's AckdStageReady
 *   AckdOTSetSizes(ot, n_student, n_gallery, n_classes);   dim = number of logits
 *   AckdOTSetUp(ot);
 *   AckdOTBalanceClassMasses(n_student, ls, a, n_gallery, lt, b, NULL, NULL);   a, b: ones, full
 *   AckdOTSetLabels(ot, ls, lt);              full label vectors on every rank
 *   AckdOTSetMarginals(ot, a, b);
 *   AckdOTGetOwnedRows(ot, ACKD_OT_STUDENT, &lo, &hi) and (ACKD_OT_TEACHER, ...)
 *   AckdOTSetFeatures(ot, student_logits + lo * n_classes, gallery_logits + lo_t * n_classes);
 *                                             raw logits, row-major; softmax(z / T) is taken inside
 *                                             (-distill_ot_kl_temperature, default 3 as DynM)
 *   AckdOTSolve(ot);
 *   AckdOTGetTopK(ot, &k, &nrows, &rows, &index, &weight);   rows[i] is a global student index;
 *                                             each student is held by exactly one rank: exchange them
 *                                             to where the training batch needs them
 *   AckdOTDestroy(&ot);                       a fresh object per re-matching
 * The top-k (indices exactly, weights to rounding) do not depend on the rank
 * count (tests/ot: mpi.ot.inprocess.*). The cost of a solve is O(N_s N_t / P)
 * memory and time per rank; -distill_solver argmin is the paper's own rule.
 */
#ifndef ACKD_OT_H
#define ACKD_OT_H

#include <ackd/core.h>
#include <stdint.h>

#define ACKD_FORMAT_MATCH         "match"
#define ACKD_FORMAT_MATCH_VERSION 1

typedef enum { ACKD_OT_COST_SQEUCLIDEAN, ACKD_OT_COST_COSINE, ACKD_OT_COST_KL } AckdOTCostKind;
extern const char *const AckdOTCostKinds[]; /* option spellings, indexed by AckdOTCostKind */

typedef enum {
  ACKD_OT_SOLVER_SINKHORN,
  ACKD_OT_SOLVER_UNBALANCED,
  ACKD_OT_SOLVER_ARGMIN,
  ACKD_OT_SOLVER_EXACT,
  ACKD_OT_SOLVER_SEMIDUAL,
  ACKD_OT_SOLVER_AUCTION
} AckdOTSolverKind;
extern const char *const AckdOTSolverKinds[];

typedef enum { ACKD_OT_STUDENT, ACKD_OT_TEACHER } AckdOTSide;

typedef struct _p_AckdOT *AckdOT;

/* What a solve produced. Errors are L2 norms of (plan marginal - target). */
typedef struct {
  PetscInt        iterations;        /* Sinkhorn iterations over all eps stages (semidual: L-BFGS, exact: simplex) */
  PetscBool       converged;         /* the stopping rule was met at the target eps */
  double          column_error;      /* the stopping rule's quantity (POT's) */
  double          row_error;         /* measured after the solve */
  double          transport_cost;    /* <C, P> */
  double          entropic_value;    /* <C, P> + eps * sum P log P */
  double          eps;               /* absolute eps of the final stage */
  double          max_cost;          /* largest finite entry of C */
  PetscInt        history_length;    /* checks recorded (every check_every iterations) */
  const double   *history;           /* the stopping quantity at each check */
  const PetscInt *history_iteration; /* the iteration of each check */
  /* A truncated solve (-ot_truncate): the plan lives on a sparse set S of entries; column_error
   * and row_error are then upper bounds for the dense plan of the same potentials, certified by a
   * pass over every entry, and transport_cost is S's: the dense one is at most discarded_cost more. */
  PetscBool truncated;
  int64_t   kept_entries;   /* |S| */
  double    discarded_mass; /* upper bound of the dense plan's mass outside S */
  double    discarded_cost; /* upper bound of its share of <C, P> */
  PetscInt  certificates;   /* dense passes made after the first (each certifies, or grows S) */
} AckdOTResult;

PetscErrorCode AckdOTCreate(MPI_Comm comm, AckdOT *ot);
PetscErrorCode AckdOTSetOptionsPrefix(AckdOT ot, const char *prefix);
PetscErrorCode AckdOTSetFromOptions(AckdOT ot);
PetscErrorCode AckdOTSetSizes(AckdOT ot, PetscInt n_student, PetscInt n_teacher, PetscInt dim);
/* Programmatic overrides of what SetFromOptions read (call before SetUp). */
PetscErrorCode AckdOTSetCostKind(AckdOT ot, AckdOTCostKind kind);
PetscErrorCode AckdOTSetSolverKind(AckdOT ot, AckdOTSolverKind kind);
PetscErrorCode AckdOTGetSolverKind(AckdOT ot, AckdOTSolverKind *kind);
/* Stopping rule: tol on the column marginal's L2 error, at most max_it iterations. */
PetscErrorCode AckdOTSetTolerances(AckdOT ot, PetscReal tol, PetscInt max_it);
/* Collective: builds the process grid and the communicators along it. */
PetscErrorCode AckdOTSetUp(AckdOT ot);
PetscErrorCode AckdOTGetGridShape(AckdOT ot, PetscInt *rows, PetscInt *cols);
/* Whether the scaling kernel stores exp(-C/eps) in float (-ot_kernel_precision, or a float C). */
PetscErrorCode AckdOTGetKernelPrecision(AckdOT ot, PetscBool *single);
/* After AckdOTSetFeatures: whether C is recomputed online, and whether the
 * students rotate on this object's grid (-ot_online_layout as resolved; with
 * class blocks on sub-grids each block's object decides for itself). */
PetscErrorCode AckdOTGetOnlineLayout(AckdOT ot, PetscBool *online, PetscBool *rotating);

/* The contiguous range [lo, hi) of feature rows this rank passes to
 * AckdOTSetFeatures: rows are split in equal contiguous blocks over the ranks
 * (the natural pattern of a parallel HDF5 read); the library redistributes them. */
PetscErrorCode AckdOTGetOwnedRows(AckdOT ot, AckdOTSide side, PetscInt *lo, PetscInt *hi);
/* Collective: (hi - lo) x dim row-major features of each side. For the KL cost
 * they are logits (student rows, teacher columns). Non-finite input is refused. */
PetscErrorCode AckdOTSetFeatures(AckdOT ot, const double *student_rows, const double *teacher_rows);
/* Optional, full vectors on every rank: class of every sample in one shared
 * class space. Cost is +inf between different classes and for negative labels. */
PetscErrorCode AckdOTSetLabels(AckdOT ot, const PetscInt *student_labels, const PetscInt *teacher_labels);
/* Optional, full vectors on every rank (copied): the marginals a (N_s) and b
 * (N_t); non-negative, zeros allowed. Default: uniform, each summing to 1. */
PetscErrorCode AckdOTSetMarginals(AckdOT ot, const double *a, const double *b);
/* Not collective, full vectors: the per-class rebalancing that balanced OT
 * with class blocks needs (ackd match does it, distill must too). Teacher
 * masses of class c are rescaled to the student mass of c; samples of a class
 * the other side lacks (or with a negative label) get mass 0, counted in
 * *dropped_s, *dropped_t (may be NULL); both vectors are then normalised to 1. */
PetscErrorCode AckdOTBalanceClassMasses(PetscInt ns, const PetscInt *student_labels, double *a, PetscInt nt,
                                        const PetscInt *teacher_labels, double *b, PetscInt *dropped_s,
                                        PetscInt *dropped_t);
/* Masses scaled to sum to 1 (left as they are when all are 0). */
void AckdOTNormaliseMasses(PetscInt n, double *w);

PetscErrorCode AckdOTSolve(AckdOT ot);
/* A stoppable solve (`ackd match`) hears SIGUSR1/SIGTERM (AckdStopRequestInstall) at its
 * convergence checks (Sinkhorn, semi-dual) and between class blocks, and ends unsolved;
 * AckdOTGetStopped then says so. Off by default: DynM's re-matching inside distill must finish. */
PetscErrorCode AckdOTSetStoppable(AckdOT ot, PetscBool stoppable);
PetscErrorCode AckdOTGetStopped(AckdOT ot, PetscBool *stopped);
/* A resumable solve (Sinkhorn, unbalanced) that has run `seconds` from now ends at its next
 * convergence check as a stopped one does, with AckdOTGetPaused true, so that the caller can save
 * its state (AckdOTGetState), give it back (AckdOTSetState) and solve on: a solve killed outright
 * then loses at most that much work. 0 (the default): never. Collective; the ranks agree. */
PetscErrorCode AckdOTSetPauseInterval(AckdOT ot, double seconds);
PetscErrorCode AckdOTGetPaused(AckdOT ot, PetscBool *paused);

/* A stopped Sinkhorn solve's state (src/ot/state.c): per problem (the dense one, or every class
 * block by class) the eps stage it was in, -1 if it had not begun, and every sample's potential.
 * AckdOTSetState, after AckdOTSetFeatures, makes the next AckdOTSolve resume from it: the same
 * plan to the tolerance, with a fresh iteration budget. Other solvers start again. */
typedef struct {
  PetscInt  nproblems;
  PetscInt *stage;
  double   *f, *g;
} AckdOTState;
PetscBool      AckdOTResumable(AckdOT ot);
PetscErrorCode AckdOTGetState(AckdOT ot, AckdOTState *state); /* collective, after a stopped solve */
PetscErrorCode AckdOTSetState(AckdOT ot, const AckdOTState *state);
PetscErrorCode AckdOTStateFree(AckdOTState *state);
/* Collective: the state file (ackd_format "ot_state"), written through a .part. It records the
 * problem: `source` (the caller's input, e.g. its file's size and time) and the solver's settings;
 * a file of another problem, or one that is corrupt or does not fit it, is not read (*found false,
 * *why says why: the caller starts the solve again). */
PetscErrorCode AckdOTStateWrite(AckdOT ot, const AckdOTState *state, const char *path, const AckdH5Settings *h5,
                                const char *source);
PetscErrorCode AckdOTStateRead(AckdOT ot, const char *path, const AckdH5Settings *h5, const char *source,
                               AckdOTState *state, PetscBool *found, char *why, size_t why_len);

/* Full potentials on every rank (valid until the object is destroyed). -inf
 * marks a sample of zero mass. */
PetscErrorCode AckdOTGetResult(AckdOT ot, AckdOTResult *result);
/* The top-k teachers of the student rows this rank holds (row i of the result
 * is global student `rows[i]`), sorted by decreasing plan weight; weights are
 * normalised over the k kept (argmin: the k cheapest, equal weights). -1 / 0
 * where a row has fewer finite candidates or no mass. Each student row is held
 * by exactly one rank. */
PetscErrorCode AckdOTGetTopK(AckdOT ot, PetscInt *k, PetscInt *nrows, const PetscInt **rows, const PetscInt **index,
                             const double **weight);
/* Collective: the match file of docs/DESIGN.md §5 (through path.part, renamed). */
PetscErrorCode AckdOTWriteMatchFile(AckdOT ot, const char *path, const AckdH5Settings *h5, const char *input);
/* Prints a human summary of an open match file on rank 0. */
PetscErrorCode AckdMatchSummarize(MPI_Comm comm, hid_t file, const char *path, FILE *out);
PetscErrorCode AckdOTDestroy(AckdOT *ot);

/* ---------------------------------------------------------------- a matching run */

/* `ackd match` as an object: features of both collections read from -match_input
 * (/student/features, /teacher/features, optional labels and masses), matched by AckdOT
 * (options -match_*), written as a match file; a stopped Sinkhorn solve resumes from
 * OUTPUT.state (docs/RELIABILITY.md).
 *   AckdMatchingCreate(comm, &m);
 *   AckdMatchingSetFromOptions(m);
 *   AckdMatchingSetUp(m);                 reads the input, sets the marginals and the cost
 *   AckdMatchingRun(m, &stopped);         collective; stopped: state saved on a stop request (exit 75)
 *   AckdMatchingDestroy(&m); */
typedef struct _p_AckdMatching *AckdMatching;

PetscErrorCode AckdMatchingCreate(MPI_Comm comm, AckdMatching *matching);
PetscErrorCode AckdMatchingSetFromOptions(AckdMatching matching);
PetscErrorCode AckdMatchingSetUp(AckdMatching matching);
PetscErrorCode AckdMatchingRun(AckdMatching matching, PetscBool *stopped);
PetscErrorCode AckdMatchingDestroy(AckdMatching *matching);

#endif
