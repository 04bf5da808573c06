/* The AckdOT object: lifecycle, options, inputs and results. The numerical
 * work lives in cost.c, sinkhorn.c and topk.c. */
#include "ot_impl.h"
#include <math.h>

static AckdLogPackage ot_log = {
    .name        = "ackd ot",
    .nevents     = 6,
    .event_names = {"OTCost", "OTSinkhorn", "OTTopK", "OTWrite", "OTDensePass", "OTSparseSweep"}};

static const char *const precisions[]     = {"double", "single"};
static const char *const kernels[]        = {"log", "scaling"};
static const char *const block_kinds[]    = {"subgrid", "dense"};
static const char *const online_layouts[] = {"auto", "replicated", "rotating"};

PetscErrorCode AckdOTCreate(MPI_Comm comm, AckdOT *ot)
{
  AckdOT o;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&o));
  o->comm = comm;
  PetscCallMPI(MPI_Comm_rank(comm, &o->rank));
  PetscCallMPI(MPI_Comm_size(comm, &o->size));
  o->cost_kind          = ACKD_OT_COST_COSINE;
  o->solver             = ACKD_OT_SOLVER_SINKHORN;
  o->eps                = 0.01;
  o->eps_relative       = PETSC_TRUE;
  o->eps_scaling        = PETSC_TRUE;
  o->eps_scaling_factor = 0.5;
  o->sinkhorn_kernel    = ACKD_OT_KERNEL_SCALING;
  o->kernel_single      = PETSC_TRUE;
  o->omega              = 1.0;
  o->tol                = 1e-9;
  o->max_it             = 10000;
  o->check_every        = 10; /* POT's rhythm */
  o->tau                = 1.0;
  o->kl_temperature     = 3.0; /* DynM's softening (docs/KD.md, "SemBridge") */
  o->topk               = 5;
  o->block              = 64;
  o->lse_op             = MPI_OP_NULL;
  o->show_progress      = PETSC_TRUE;
  o->resume_stage       = -1;
  o->truncate_threshold = 1e-10;
  o->truncate_rounds    = 4;
  PetscCall(AckdLogSetUp(&o->log, comm));
  PetscCall(AckdLogPackageRegister(&ot_log));
  o->event_cost     = ot_log.events[0];
  o->event_sinkhorn = ot_log.events[1];
  o->event_topk     = ot_log.events[2];
  o->event_write    = ot_log.events[3];
  o->event_dense    = ot_log.events[4];
  o->event_sparse   = ot_log.events[5];
  *ot               = o;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTSetOptionsPrefix(AckdOT ot, const char *prefix)
{
  PetscFunctionBeginUser;
  PetscCall(PetscStrncpy(ot->prefix, prefix ? prefix : "", sizeof ot->prefix));
  PetscFunctionReturn(0);
}

/* "2x3" -> 2, 3. */
static PetscErrorCode parse_grid(AckdOT ot, const char *text, const char *option)
{
  int  r = 0, c = 0, used = 0;
  char extra;

  PetscFunctionBeginUser;
  used = sscanf(text, "%dx%d%c", &r, &c, &extra);
  PetscCheck(used == 2 && r > 0 && c > 0, ot->comm, PETSC_ERR_USER_INPUT,
             "option %s: '%s' is not a grid shape; use ROWSxCOLS, e.g. 2x2", option, text);
  ot->grid_rows = r;
  ot->grid_cols = c;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTSetFromOptions(AckdOT ot)
{
  char      grid[32] = "", option[96];
  PetscInt  cost = ot->cost_kind, solver = ot->solver, kernel_precision = ot->kernel_single ? 1 : 0;
  PetscBool set, kernel_set = PETSC_FALSE;

  PetscFunctionBeginUser;
  PetscOptionsBegin(ot->comm, ot->prefix, "Optimal transport solver", NULL);
  /* "-solver", not "-ot_solver": the stage reads as -match_solver (prefixes: docs/DESIGN.md §6) */
  PetscCall(AckdOptionsChoice(PetscOptionsObject, "-solver",
                              "sinkhorn (entropic, balanced), unbalanced (KL-relaxed marginals), argmin (hard "
                              "top-k by cost, the paper's matching), exact (linear program, GLPK: small problems, "
                              "validation), semidual (entropic, L-BFGS on g: Sinkhorn's optimum by another path), "
                              "auction (exact, square problems with equal masses)",
                              AckdOTSolverKinds, 6, &solver, NULL));
  PetscCall(AckdOptionsChoice(PetscOptionsObject, "-ot_cost",
                              "Cost between features: sqeuclidean, cosine, or kl (features are logits: "
                              "KL(teacher || student) of temperature-softened predictions)",
                              AckdOTCostKinds, 3, &cost, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-ot_eps", "Entropic regularisation eps", &ot->eps, 1e-12, 1e12, NULL));
  PetscCall(AckdOptionsBool(PetscOptionsObject, "-ot_eps_relative",
                            "eps is relative to the largest finite cost (scale-free) rather than absolute",
                            &ot->eps_relative, NULL));
  PetscCall(AckdOptionsBool(PetscOptionsObject, "-ot_eps_scaling",
                            "Start at eps = max cost and decrease it geometrically (warm starts: fewer iterations)",
                            &ot->eps_scaling, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-ot_eps_scaling_factor", "Factor between successive eps stages",
                            &ot->eps_scaling_factor, 0.01, 0.99, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-ot_tol",
                            "Stop when the L2 error of the column marginal is below this (POT's stopThr); "
                            "unbalanced: the largest change of a potential divided by eps",
                            &ot->tol, 0.0, 1.0, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-ot_max_it", "Maximum Sinkhorn iterations (all eps stages together)",
                           &ot->max_it, 1, PETSC_MAX_INT, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-ot_check_every",
                           "Iterations between checks of the stopping rule (POT: 10); on a grid of one process row "
                           "a check costs one scalar allreduce, so 1 stops as early as possible",
                           &ot->check_every, 1, 1000000, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-ot_overrelaxation",
                            "Sinkhorn: over-relaxation omega of every potential update, in [1, 2) (1: POT's "
                            "iterations; 1.5-1.9 often divides the iteration count at small eps)",
                            &ot->omega, 1.0, 1.999, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-ot_tau",
                            "Unbalanced: weight of the KL penalty on each marginal (large: nearly balanced)", &ot->tau,
                            1e-12, 1e12, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-ot_kl_temperature", "KL cost: softmax temperature of the logits",
                            &ot->kl_temperature, 1e-6, 1e6, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-ot_topk", "Teachers kept per student row", &ot->topk, 1, 1024, NULL));
  PetscCall(AckdOptionsChoice(PetscOptionsObject, "-ot_sinkhorn_kernel",
                              "How an iteration evaluates the plan (grids with one process row): scaling (stabilised "
                              "kernel method with absorption: a multiply-add per entry, keeps exp(-C/eps) beside C: "
                              "-ot_kernel_precision) or log (an exp per entry, C only)",
                              kernels, 2, &ot->sinkhorn_kernel, NULL));
  PetscCall(AckdOptionsChoice(PetscOptionsObject, "-ot_class_blocks",
                              "With labels: subgrid (every class block assembled and solved on its own sub-grid, "
                              "the groups concurrently, work balanced; memory and time sum_c n_s n_t) or dense (one "
                              "N_s x N_t matrix, +inf across classes)",
                              block_kinds, 2, &ot->class_blocks, NULL));
  PetscCall(AckdOptionsBool(PetscOptionsObject, "-ot_online",
                            "Never store C: recompute tiles of it (a local GEMM) in every pass, for matrices beyond "
                            "aggregate memory; entropic solvers (log kernel) and argmin",
                            &ot->online, NULL));
  PetscCall(AckdOptionsChoice(PetscOptionsObject, "-ot_online_layout",
                              "Online: the student features on a P_r x P_c grid: replicated (each rank keeps its grid "
                              "row's, N_s d / P_r; one pass per iteration on one process row), rotating (a 1 / P_c "
                              "chunk each, passed round the grid row: memory O((N_s + N_t) d / P) on the default "
                              "1 x P grid, two passes per iteration) or auto (replicated while that takes at most a "
                              "quarter of the rank's share of the node's memory, or of its job's cgroup limit)",
                              online_layouts, 3, &ot->online_layout, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-ot_truncate",
                           "Solve on a sparse part S of C: each student's K cheapest teachers and each teacher's K "
                           "cheapest students (float GEMM passes, never storing C), grown until a dense pass "
                           "certifies the column error; sinkhorn and argmin; 0: off",
                           &ot->truncate, 0, 1 << 20, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-ot_truncate_threshold",
                            "Truncated: a left-out entry whose plan mass exceeds this share of its row's mass joins "
                            "S when the certificate fails",
                            &ot->truncate_threshold, 1e-300, 1.0, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-ot_truncate_rounds",
                           "Truncated: dense certificate passes at most (each may grow S and solve on)",
                           &ot->truncate_rounds, 1, 100, NULL));
  PetscInt precision = ot->single ? 1 : 0;
  PetscCall(AckdOptionsChoice(PetscOptionsObject, "-ot_precision",
                              "Storage of the cost matrix: double, or single (half the memory and the bytes read per "
                              "iteration; costs rounded to 7 digits, arithmetic stays double)",
                              precisions, 2, &precision, NULL));
  ot->single = (PetscBool)(precision == 1);
  PetscCall(AckdOptionsChoice(PetscOptionsObject, "-ot_kernel_precision",
                              "Storage of the scaling kernel's exp(-C/eps) beside a double C: single (4 bytes per "
                              "entry, half the bytes read per iteration; a few final exact log-domain iterations on "
                              "C remove its rounding from the answer) or double (POT's iterations one for one, 8 "
                              "bytes per entry); with -ot_precision single, single",
                              precisions, 2, &kernel_precision, &kernel_set));
  ot->kernel_single = (PetscBool)(ot->single || kernel_precision == 1);
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-ot_debug_check_delay",
                            "Testing: every convergence check waits this many seconds, so that a solve lasts long "
                            "enough to be stopped or killed mid-way on any machine (the answer is unchanged)",
                            &ot->debug_check_delay, 0, 60, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-ot_block", "Block size of the block-cyclic distribution of C",
                           &ot->block, 1, 1 << 20, NULL));
  PetscCall(
      AckdOptionsString(PetscOptionsObject, "-ot_grid",
                        "Process grid ROWSxCOLS (default: 1xP, whole columns per rank: one pass over C per iteration)",
                        grid, sizeof grid, &set));
  PetscOptionsEnd();
  snprintf(option, sizeof option, "-%sot_kernel_precision", ot->prefix);
  PetscCheck(!(ot->single && kernel_set && kernel_precision == 0), ot->comm, PETSC_ERR_USER_INPUT,
             "option %s double needs a double C, but -%sot_precision is single", option, ot->prefix);
  ot->cost_kind = (AckdOTCostKind)cost;
  ot->solver    = (AckdOTSolverKind)solver;
  PetscBool help;
  PetscCall(PetscOptionsHasHelp(NULL, &help));
  /* The semi-dual solver's Tao reads -<prefix>ot_semidual_tao_*: read them
   * now, so that -help lists them and the stage's unused-option check
   * accepts them (with another solver they are unused: an error). */
  if (help || ot->solver == ACKD_OT_SOLVER_SEMIDUAL) PetscCall(AckdOTSemiDualOptions(ot));
  snprintf(option, sizeof option, "-%sot_grid", ot->prefix);
  if (set && grid[0]) PetscCall(parse_grid(ot, grid, option));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTSetSizes(AckdOT ot, PetscInt n_student, PetscInt n_teacher, PetscInt dim)
{
  PetscFunctionBeginUser;
  PetscCheck(!ot->setup, ot->comm, PETSC_ERR_ORDER, "AckdOTSetSizes must come before AckdOTSetUp");
  PetscCheck(n_student > 0 && n_teacher > 0 && dim > 0, ot->comm, PETSC_ERR_USER_INPUT,
             "optimal transport needs samples on both sides and features: got %" PetscInt_FMT
             " students, %" PetscInt_FMT " teachers, dimension %" PetscInt_FMT,
             n_student, n_teacher, dim);
  PetscCheck(n_student < INT32_MAX && n_teacher < INT32_MAX, ot->comm, PETSC_ERR_SUP,
             "ScaLAPACK indexes with 32-bit integers: at most 2^31-1 samples per side");
  ot->ns  = n_student;
  ot->nt  = n_teacher;
  ot->dim = dim;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTSetCostKind(AckdOT ot, AckdOTCostKind kind)
{
  PetscFunctionBeginUser;
  ot->cost_kind = kind;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTSetSolverKind(AckdOT ot, AckdOTSolverKind kind)
{
  PetscFunctionBeginUser;
  ot->solver = kind;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTSetTolerances(AckdOT ot, PetscReal tol, PetscInt max_it)
{
  PetscFunctionBeginUser;
  PetscCheck(tol >= 0 && max_it > 0, ot->comm, PETSC_ERR_ARG_OUTOFRANGE, "tolerance must be >= 0 and max_it > 0");
  ot->tol    = tol;
  ot->max_it = max_it;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTGetSolverKind(AckdOT ot, AckdOTSolverKind *kind)
{
  PetscFunctionBeginUser;
  *kind = ot->solver;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTSetUp(AckdOT ot)
{
  PetscInt pr = ot->grid_rows, pc = ot->grid_cols;

  PetscFunctionBeginUser;
  if (ot->setup) PetscFunctionReturn(0);
  PetscCheck(ot->ns > 0, ot->comm, PETSC_ERR_ORDER, "call AckdOTSetSizes before AckdOTSetUp");
  if (!pr) AckdOTGridAutoShape(ot->size, &pr, &pc);
  if (pr * pc != ot->size) {
    char shape[32];
    snprintf(shape, sizeof shape, "%dx%d", (int)pr, (int)pc);
    SETERRQ(ot->comm, PETSC_ERR_USER_INPUT,
            "option -%sot_grid: %s has %d processes but the job has %d ranks; use a shape whose product is %d",
            ot->prefix, shape, (int)(pr * pc), ot->size, ot->size);
  }
  PetscCall(AckdOTGridCreate(ot->comm, pr, pc, &ot->grid));
  PetscCall(AckdOTLogSumExpOpCreate(&ot->lse_op));
  PetscCall(PetscMalloc2(ot->ns, &ot->a, ot->nt, &ot->b));
  for (PetscInt i = 0; i < ot->ns; i++) ot->a[i] = 1.0 / (double)ot->ns;
  for (PetscInt j = 0; j < ot->nt; j++) ot->b[j] = 1.0 / (double)ot->nt;
  PetscCheck(!(ot->truncate && ot->online), ot->comm, PETSC_ERR_USER_INPUT,
             "options -%sot_truncate and -%sot_online are two ways past the memory of C; choose one", ot->prefix,
             ot->prefix);
  ot->store = ot->truncate ? &ackd_ot_store_sparse
              : ot->online ? &ackd_ot_store_online
              : ot->single ? &ackd_ot_store_float
                           : &ackd_ot_store_double;
  ot->setup = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTGetGridShape(AckdOT ot, PetscInt *rows, PetscInt *cols)
{
  PetscFunctionBeginUser;
  PetscCheck(ot->setup, ot->comm, PETSC_ERR_ORDER, "call AckdOTSetUp first");
  *rows = ot->grid.nprow;
  *cols = ot->grid.npcol;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTGetKernelPrecision(AckdOT ot, PetscBool *single)
{
  PetscFunctionBeginUser;
  *single = ot->kernel_single;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTGetOnlineLayout(AckdOT ot, PetscBool *online, PetscBool *rotating)
{
  PetscFunctionBeginUser;
  PetscCheck(ot->has_cost, ot->comm, PETSC_ERR_ORDER, "call AckdOTSetFeatures before AckdOTGetOnlineLayout");
  *online   = ot->online;
  *rotating = ot->rotating;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTSetFeatures(AckdOT ot, const double *student_rows, const double *teacher_rows)
{
  PetscFunctionBeginUser;
  PetscCheck(ot->setup, ot->comm, PETSC_ERR_ORDER, "call AckdOTSetUp before AckdOTSetFeatures");
  if (ot->composite)
    PetscCall(ot->composite->set_features(ot, student_rows, teacher_rows));
  else
    PetscCall(AckdOTAssembleCost(ot, student_rows, teacher_rows));
  PetscFunctionReturn(0);
}

/* Checks a marginal: finite, non-negative, not all zero. */
static PetscErrorCode check_marginal(AckdOT ot, const char *side, PetscInt n, const double *w)
{
  double total = 0;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < n; i++) {
    PetscCheck(isfinite(w[i]) && w[i] >= 0, ot->comm, PETSC_ERR_USER_INPUT,
               "%s mass of sample %" PetscInt_FMT " is negative or not finite; masses must be finite and >= 0", side,
               i);
    total += w[i];
  }
  PetscCheck(total > 0, ot->comm, PETSC_ERR_USER_INPUT, "the %s masses are all zero; give some sample a positive mass",
             side);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTSetMarginals(AckdOT ot, const double *a, const double *b)
{
  PetscFunctionBeginUser;
  PetscCheck(ot->setup, ot->comm, PETSC_ERR_ORDER, "call AckdOTSetUp before AckdOTSetMarginals");
  if (a) {
    PetscCall(check_marginal(ot, "student", ot->ns, a));
    PetscCall(PetscArraycpy(ot->a, a, ot->ns));
  }
  if (b) {
    PetscCall(check_marginal(ot, "teacher", ot->nt, b));
    PetscCall(PetscArraycpy(ot->b, b, ot->nt));
  }
  PetscFunctionReturn(0);
}

void AckdOTNormaliseMasses(PetscInt n, double *w)
{
  double total = 0;
  for (PetscInt i = 0; i < n; i++) total += w[i];
  if (total > 0)
    for (PetscInt i = 0; i < n; i++) w[i] /= total;
}

PetscErrorCode AckdOTBalanceClassMasses(PetscInt ns, const PetscInt *ls, double *a, PetscInt nt, const PetscInt *lt,
                                        double *b, PetscInt *dropped_s, PetscInt *dropped_t)
{
  PetscInt nclass = 0, ds = 0, dt = 0;
  double  *ms, *mt;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < ns; i++) nclass = PetscMax(nclass, ls[i] + 1);
  for (PetscInt j = 0; j < nt; j++) nclass = PetscMax(nclass, lt[j] + 1);
  PetscCall(PetscCalloc2(nclass + 1, &ms, nclass + 1, &mt));
  for (PetscInt i = 0; i < ns; i++)
    if (ls[i] >= 0) ms[ls[i]] += a[i];
  for (PetscInt j = 0; j < nt; j++)
    if (lt[j] >= 0) mt[lt[j]] += b[j];
  for (PetscInt i = 0; i < ns; i++)
    if (ls[i] < 0 || mt[ls[i]] == 0) {
      ds += a[i] > 0;
      a[i] = 0;
    }
  for (PetscInt j = 0; j < nt; j++) {
    PetscInt c = lt[j];
    if (c < 0 || ms[c] == 0) {
      dt += b[j] > 0;
      b[j] = 0;
    } else
      b[j] *= ms[c] / mt[c];
  }
  PetscCall(PetscFree2(ms, mt));
  AckdOTNormaliseMasses(ns, a);
  AckdOTNormaliseMasses(nt, b);
  if (dropped_s) *dropped_s = ds;
  if (dropped_t) *dropped_t = dt;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTSetStoppable(AckdOT ot, PetscBool stoppable)
{
  PetscFunctionBeginUser;
  ot->stoppable = stoppable;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTGetStopped(AckdOT ot, PetscBool *stopped)
{
  PetscFunctionBeginUser;
  *stopped = ot->stopped;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTSetPauseInterval(AckdOT ot, double seconds)
{
  PetscFunctionBeginUser;
  PetscCheck(seconds >= 0 && isfinite(seconds), ot->comm, PETSC_ERR_ARG_OUTOFRANGE,
             "a pause interval is a number of seconds >= 0, not %g", seconds);
  ot->pause_interval = seconds;
  ot->pause_start    = AckdTimeNow();
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTGetPaused(AckdOT ot, PetscBool *paused)
{
  PetscFunctionBeginUser;
  *paused = ot->paused;
  PetscFunctionReturn(0);
}

/* What AckdOTSolve does with each -solver, in AckdOTSolverKind's order. */
typedef struct {
  AckdOTSolverKind kind;
  PetscErrorCode (*solve)(AckdOT); /* NULL: nothing to solve (argmin reads C) */
  PetscBool potentials;            /* leaves dual potentials f, g to gather */
  PetscBool plan_topk;             /* the match is the top-k of each row of the plan (else the solver's assignment) */
  PetscBool online;                /* runs on tiles recomputed from the features (-ot_online) */
} OTSolver;

static const OTSolver solvers[] = {
    {ACKD_OT_SOLVER_SINKHORN, AckdOTSinkhorn, PETSC_TRUE, PETSC_TRUE, PETSC_TRUE},
    {ACKD_OT_SOLVER_UNBALANCED, AckdOTSinkhorn, PETSC_TRUE, PETSC_TRUE, PETSC_TRUE},
    {ACKD_OT_SOLVER_ARGMIN, NULL, PETSC_FALSE, PETSC_TRUE, PETSC_TRUE},
    {ACKD_OT_SOLVER_EXACT, AckdOTExact, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE},
    {ACKD_OT_SOLVER_SEMIDUAL, AckdOTSemiDual, PETSC_TRUE, PETSC_TRUE, PETSC_FALSE},
    {ACKD_OT_SOLVER_AUCTION, AckdOTAuction, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE},
};

PetscErrorCode AckdOTSolve(AckdOT ot)
{
  const OTSolver *s = &solvers[ot->solver];

  PetscFunctionBeginUser;
  PetscCheck(ot->has_cost, ot->comm, PETSC_ERR_ORDER, "call AckdOTSetFeatures before AckdOTSolve");
  PetscCheck(s->kind == ot->solver, ot->comm, PETSC_ERR_PLIB, "OT solver table out of AckdOTSolverKind's order");
  ot->stopped = ot->paused = PETSC_FALSE;
  if (ot->composite) {
    PetscCall(ot->composite->solve(ot));
    ot->solved = (PetscBool)!ot->stopped;
    PetscFunctionReturn(0);
  }
  PetscCheck(!ot->online || s->online, ot->comm, PETSC_ERR_USER_INPUT,
             "option -%sot_online works with -%ssolver sinkhorn, unbalanced or argmin, not %s; drop -%sot_online",
             ot->prefix, ot->prefix, AckdOTSolverKinds[ot->solver], ot->prefix);
  PetscCheck(!ot->sparse || ot->solver == ACKD_OT_SOLVER_SINKHORN || ot->solver == ACKD_OT_SOLVER_ARGMIN, ot->comm,
             PETSC_ERR_USER_INPUT,
             "option -%sot_truncate works with -%ssolver sinkhorn or argmin, not %s; drop -%sot_truncate", ot->prefix,
             ot->prefix, AckdOTSolverKinds[ot->solver], ot->prefix);
  if (s->solve) {
    PetscCall(PetscLogEventBegin(ot->event_sinkhorn, 0, 0, 0, 0));
    PetscCall(ot->sparse ? AckdOTTruncatedSolve(ot) : s->solve(ot));
    PetscCall(PetscLogEventEnd(ot->event_sinkhorn, 0, 0, 0, 0));
    if (ot->stopped) PetscFunctionReturn(0);
  }
  if (s->potentials) PetscCall(AckdOTGatherPotentials(ot));
  if (s->plan_topk) {
    PetscCall(PetscLogEventBegin(ot->event_topk, 0, 0, 0, 0));
    PetscCall(AckdOTComputeTopK(ot));
    PetscCall(PetscLogEventEnd(ot->event_topk, 0, 0, 0, 0));
  }
  ot->solved = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTGetResult(AckdOT ot, AckdOTResult *result)
{
  PetscFunctionBeginUser;
  PetscCheck(ot->solved, ot->comm, PETSC_ERR_ORDER, "call AckdOTSolve first");
  *result = ot->result;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTGetTopK(AckdOT ot, PetscInt *k, PetscInt *nrows, const PetscInt **rows, const PetscInt **index,
                             const double **weight)
{
  PetscFunctionBeginUser;
  PetscCheck(ot->solved, ot->comm, PETSC_ERR_ORDER, "call AckdOTSolve first");
  *k      = PetscMin(ot->topk, ot->nt);
  *nrows  = ot->topk_nrows;
  *rows   = ot->topk_rows;
  *index  = ot->topk_index;
  *weight = ot->topk_weight;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOTDestroy(AckdOT *ot)
{
  AckdOT o = *ot;

  PetscFunctionBeginUser;
  if (!o) PetscFunctionReturn(0);
  if (o->composite) PetscCall(o->composite->destroy(o));
  PetscCall(AckdOTGridDestroy(&o->grid));
  if (o->lse_op != MPI_OP_NULL) PetscCallMPI(MPI_Op_free(&o->lse_op));
  PetscCall(PetscFree(o->C));
  PetscCall(PetscFree(o->C32));
  PetscCall(AckdOTOnlineDestroy(o));
  PetscCall(AckdOTSparseDestroy(o));
  PetscCall(PetscFree2(o->row_global, o->col_global));
  PetscCall(PetscFree(o->labels_s));
  PetscCall(PetscFree(o->labels_t));
  PetscCall(PetscFree2(o->a, o->b));
  PetscCall(PetscFree2(o->f_loc, o->g_loc));
  PetscCall(PetscFree2(o->f, o->g));
  PetscCall(PetscFree(o->history));
  PetscCall(PetscFree(o->history_eps));
  PetscCall(PetscFree(o->history_iteration));
  PetscCall(PetscFree3(o->topk_rows, o->topk_index, o->topk_weight));
  PetscCall(PetscFree(o));
  *ot = NULL;
  PetscFunctionReturn(0);
}
