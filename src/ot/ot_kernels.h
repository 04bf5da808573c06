/* The numerical kernels of the Sinkhorn iterations over one rank's block of C (logsumexp.c,
 * its *_kernels.h): log-sum-exps, the fused and the stabilised scaling sweeps, the potential
 * update. They know nothing of the AckdOT object. Private to src/ot. */
#ifndef ACKD_OT_KERNELS_H
#define ACKD_OT_KERNELS_H

#include <math.h>
#include <mpi.h>
#include <petscsys.h>

/* Local log-sum-exp of the plan's log entries (f_i + g_j - C_ij) / eps over
 * this rank's block of C (column-major, leading dimension lld): per local row
 * (over local columns) or per local column (over local rows). -inf potentials
 * mark zero-mass samples. work holds m doubles for the row kernel. */
void AckdOTRowLogSumExp(PetscInt m, PetscInt n, PetscInt lld, const double *C, const double *f, const double *g,
                        double inv_eps, double *work, double *lse);
void AckdOTColLogSumExp(PetscInt m, PetscInt n, PetscInt lld, const double *C, const double *f, const double *g,
                        double inv_eps, double *lse);
/* The same on a float C (-ot_precision single). */
void AckdOTRowLogSumExpSingle(PetscInt m, PetscInt n, PetscInt lld, const float *C, const double *f, const double *g,
                              double inv_eps, double *work, double *lse);
void AckdOTColLogSumExpSingle(PetscInt m, PetscInt n, PetscInt lld, const float *C, const double *f, const double *g,
                              double inv_eps, double *lse);
/* The new potential of one sample from its current value, the log of its plan
 * marginal and the log of its target mass (damping: tau / (tau + eps) for
 * unbalanced OT, 1 for balanced), over-relaxed by omega (1: Sinkhorn's
 * step). +inf: no finite cost, for the caller to report. */
static inline double AckdOTUpdatedPotential(double current, double log_marginal, double log_target, double eps,
                                            double damping, double omega)
{
  if (log_target == -INFINITY) return -INFINITY;  /* zero mass: transports nothing */
  if (log_marginal == -INFINITY) return INFINITY; /* no finite cost */
  double next = damping * (current + eps * (log_target - log_marginal));
  return omega == 1.0 || !isfinite(current) ? next : current + omega * (next - current);
}
/* What the fused sweep needs to update g: eps, damping, over-relaxation and log b of the local columns. */
typedef struct {
  double        eps, damping, omega;
  const double *log_b;
} AckdOTColumnRule;
/* One fused Sinkhorn iteration over a block of whole columns (logsumexp_kernels.h); buf holds 5 m doubles. */
void AckdOTFusedSweep(PetscInt m, PetscInt n, PetscInt lld, const double *C, const double *f, double *g,
                      const AckdOTColumnRule *rule, double *col_lse, double *buf, double *work);
void AckdOTFusedSweepSingle(PetscInt m, PetscInt n, PetscInt lld, const float *C, const double *f, double *g,
                            const AckdOTColumnRule *rule, double *col_lse, double *buf, double *work);
/* Absorption and the stabilised scaling iteration (scaling_kernels.h); Mixed:
 * C in double, K in float (-ot_kernel_precision single). */
void AckdOTAbsorbKernel(PetscInt m, PetscInt n, PetscInt lld, const double *C, const double *f0, const double *g0,
                        double inv_eps, double *K);
void AckdOTAbsorbKernelSingle(PetscInt m, PetscInt n, PetscInt lld, const float *C, const double *f0, const double *g0,
                              double inv_eps, float *K);
void AckdOTScalingSweep(PetscInt m, PetscInt n, PetscInt lld, const double *C, const double *K, const double *f,
                        const double *f0, double *g, const double *g0, const AckdOTColumnRule *rule, double *col_lse,
                        double *u, double *acc, double *extra, double *work, PetscBool *fallback);
void AckdOTScalingSweepSingle(PetscInt m, PetscInt n, PetscInt lld, const float *C, const float *K, const double *f,
                              const double *f0, double *g, const double *g0, const AckdOTColumnRule *rule,
                              double *col_lse, double *u, double *acc, double *extra, double *work,
                              PetscBool *fallback);
void AckdOTAbsorbKernelMixed(PetscInt m, PetscInt n, PetscInt lld, const double *C, const double *f0, const double *g0,
                             double inv_eps, float *K);
void AckdOTScalingSweepMixed(PetscInt m, PetscInt n, PetscInt lld, const double *C, const float *K, const double *f,
                             const double *f0, double *g, const double *g0, const AckdOTColumnRule *rule,
                             double *col_lse, double *u, double *acc, double *extra, double *work, PetscBool *fallback);
/* The log of the row sums of work (row sums from a sweep) where they lie in the
 * one-pass range, exact (strided, max shift) elsewhere. */
void AckdOTRowSumsToLogSumExp(PetscInt m, PetscInt n, PetscInt lld, const double *C, const double *f, const double *g,
                              double inv_eps, const double *work, double *lse);
void AckdOTRowSumsToLogSumExpSingle(PetscInt m, PetscInt n, PetscInt lld, const float *C, const double *f,
                                    const double *g, double inv_eps, const double *work, double *lse);
/* A one-pass sum of exponentials is trusted in [SUM_LOW, SUM_HIGH]; outside it, it may have
 * overflowed or be made of denormals that lost their digits, and the line is summed again with a
 * max shift. */
#define SUM_LOW  1e-250
#define SUM_HIGH 1e250
static inline PetscBool AckdOTSumInRange(double sum)
{
  return (PetscBool)(sum >= SUM_LOW && sum <= SUM_HIGH);
}
/* y = exp(x) by the exp of the fused sweep (AVX-512 where the CPU has it):
 * for tests against libm. */
void AckdOTExpArray(PetscInt n, const double *x, double *y);
/* Tests set this to run the portable kernels on a CPU with AVX-512. */
extern PetscBool AckdOTPortableExp;
/* The MPI reduction that merges log-sum-exps of disjoint parts of a row or column. */
PetscErrorCode AckdOTLogSumExpOpCreate(MPI_Op *op);
/* log(exp(a) + exp(b)) without overflow; -inf when both are -inf. */
static inline double AckdOTLogAddExp(double a, double b)
{
  double hi = fmax(a, b), lo = fmin(a, b);
  return hi == -INFINITY ? -INFINITY : hi + log1p(exp(lo - hi));
}

#endif
