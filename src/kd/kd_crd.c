/* -kd_method crd: Contrastive Representation Distillation (Tian et al., ICLR
 * 2020). Linear heads with bias and L2-normalisation embed the student's and
 * the teacher's pooled embeddings in d = 128 dimensions: s_i, t_i. Two memories
 * of N rows (N = the student's training samples), M_s of student embeddings and
 * M_t of the matched teachers' embeddings, both indexed by the student's global
 * sample index g_i (the teacher rows arrive matched to student samples). With
 * K negatives n_ik drawn uniformly from the other rows, and τ = 0.07:
 *   ℓ_s,i = -log softmax_0(s_i · M_t[g_i, n_i1..n_iK] / τ)   (student against the teacher memory)
 *   ℓ_t,i = -log softmax_0(t_i · M_s[g_i, n_i1..n_iK] / τ)   (teacher head against the student memory)
 *   L = β Σ_i w_i (ℓ_s,i + ℓ_t,i) / N_batch, β = 0.8;
 * the positive is the memory row of the sample itself, as in the paper. After
 * the loss, the rows g_i move with momentum 0.5 towards the batch's (detached)
 * embeddings and are renormalised. The paper's NCE with a normalising constant
 * estimated once is replaced by the exact softmax over the K + 1 candidates
 * (docs/KD.md). Every rank applies the same updates in the same order (rank,
 * then local order) from an allgather, so the memory stays replicated. */
#include "kd_impl.h"
#include <math.h>

enum { CRD_TAG = 0x43520000u };

typedef struct {
  PetscReal tau, beta, momentum;
  PetscInt  dim, negatives, ws, bs, wt, bt;
} CRD;

static PetscErrorCode create(AckdKDObj kd)
{
  CRD *m;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&m));
  m->tau       = 0.07;
  m->beta      = 0.8;
  m->momentum  = 0.5;
  m->dim       = 128;
  m->negatives = 16384;
  kd->data     = m;
  PetscFunctionReturn(0);
}

static PetscErrorCode options(AckdKDObj kd, PetscOptionItems *PetscOptionsObject)
{
  CRD *m = (CRD *)kd->data;

  PetscFunctionBeginUser;
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-crd_tau", "CRD: temperature", &m->tau, 1e-4, 1e3, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-crd_beta", "CRD: weight of the contrastive term", &m->beta, 0.0, 1e6,
                            NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-crd_momentum", "CRD: momentum of the memory update", &m->momentum,
                            0.0, 1.0, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-crd_dim", "CRD: width of the embedding heads and the memory", &m->dim,
                           1, 65536, NULL));
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-crd_negatives", "CRD: negatives drawn from the memory per sample",
                           &m->negatives, 1, 100000000, NULL));
  PetscFunctionReturn(0);
}

static PetscErrorCode setup(AckdKDObj kd)
{
  CRD     *m = (CRD *)kd->data;
  PetscInt N = kd->dims.student_samples;
  AckdRng  rng;
  double   bound = 1.0 / sqrt(m->dim / 3.0); /* the paper's memory initialisation */

  PetscFunctionBeginUser;
  PetscCheck(N >= 2, kd->comm, PETSC_ERR_USER_INPUT,
             "-kd_method crd needs the number of student training samples (AckdKDDims.student_samples, >= 2) to "
             "size its memory; got %" PetscInt_FMT,
             N);
  PetscCall(ackd_kd_add_linear(kd, "crd.embed_s.linear", m->dim, kd->dims.student_embedding, &m->ws, &m->bs));
  PetscCall(ackd_kd_add_linear(kd, "crd.embed_t.linear", m->dim, kd->dims.teacher_embedding, &m->wt, &m->bt));
  kd->nstate = 2 * N * m->dim;
  PetscCall(PetscMalloc1(kd->nstate, &kd->state));
  /* the same on every rank: a function of the seed only */
  AckdRngInit(&rng, kd->dims.seed, 0, CRD_TAG - 1);
  for (PetscInt k = 0; k < kd->nstate; k++) kd->state[k] = (float)AckdRngUniformRange(&rng, -bound, bound);
  PetscFunctionReturn(0);
}

void ackd_kd_crd_negatives(uint64_t seed, PetscInt epoch, PetscInt step, PetscInt sample, PetscInt N, PetscInt k,
                           PetscInt *out)
{
  AckdRng rng;
  AckdRngInit(&rng, seed, ((uint64_t)step << 32) | (uint64_t)(uint32_t)sample, CRD_TAG | (uint32_t)(epoch & 0xffff));
  for (PetscInt j = 0; j < k; j++) {
    PetscInt r = (PetscInt)AckdRngBelow(&rng, (uint32_t)(N - 1));
    out[j]     = r >= sample ? r + 1 : r;
  }
}

/* One side: ℓ = lse(l) - l_0 with l_j = x · M[rows_j] / τ; adds coef dℓ/dx into gx. */
static double contrast(const double *x, const float *M, const PetscInt *rows, PetscInt n, PetscInt d, double tau,
                       double coef, double *gx, double *l)
{
  double max = -INFINITY, sum = 0.0, lse;
  for (PetscInt j = 0; j < n; j++) {
    const float *r   = M + rows[j] * d;
    double       acc = 0.0;
    for (PetscInt c = 0; c < d; c++) acc += x[c] * r[c];
    l[j] = acc / tau;
    max  = PetscMax(max, l[j]);
  }
  for (PetscInt j = 0; j < n; j++) sum += exp(l[j] - max);
  lse = max + log(sum);
  for (PetscInt j = 0; j < n; j++) {
    const float *r = M + rows[j] * d;
    double       p = (exp(l[j] - lse) - (j == 0)) * coef / tau;
    for (PetscInt c = 0; c < d; c++) gx[c] += p * r[c];
  }
  return lse - l[0];
}

/* Momentum update of the memory rows from every rank's batch, in rank order. */
static PetscErrorCode update_memory(AckdKDObj kd, CRD *m, PetscInt n, const PetscInt *idx, const double *s,
                                    const double *t)
{
  PetscInt    d = m->dim, N = kd->dims.student_samples, total = 0;
  PetscMPIInt size, nloc = (PetscMPIInt)n, *counts, *displs, *rcounts, *rdispls;
  PetscInt   *all_idx;
  float      *rows, *all_rows, *Ms = kd->state, *Mt = kd->state + N * d;
  double      mu = m->momentum;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_size(kd->comm, &size));
  PetscCall(PetscMalloc4(size, &counts, size, &displs, size, &rcounts, size, &rdispls));
  PetscCallMPI(MPI_Allgather(&nloc, 1, MPI_INT, counts, 1, MPI_INT, kd->comm));
  for (PetscMPIInt r = 0; r < size; r++) {
    displs[r]  = (PetscMPIInt)total;
    rcounts[r] = counts[r] * (PetscMPIInt)(2 * d);
    rdispls[r] = (PetscMPIInt)(total * 2 * d);
    total += counts[r];
  }
  PetscCall(
      PetscMalloc3(PetscMax(n * 2 * d, 1), &rows, PetscMax(total, 1), &all_idx, PetscMax(total * 2 * d, 1), &all_rows));
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt c = 0; c < d; c++) {
      rows[i * 2 * d + c]     = (float)s[i * d + c];
      rows[i * 2 * d + d + c] = (float)t[i * d + c];
    }
  PetscCallMPI(MPI_Allgatherv(idx, nloc, MPIU_INT, all_idx, counts, displs, MPIU_INT, kd->comm));
  PetscCallMPI(
      MPI_Allgatherv(rows, nloc * (PetscMPIInt)(2 * d), MPI_FLOAT, all_rows, rcounts, rdispls, MPI_FLOAT, kd->comm));
  for (PetscInt i = 0; i < total; i++)
    for (int side = 0; side < 2; side++) {
      float *r   = (side ? Mt : Ms) + all_idx[i] * d;
      double acc = 0.0, v[d];
      for (PetscInt c = 0; c < d; c++) {
        v[c] = mu * r[c] + (1.0 - mu) * all_rows[i * 2 * d + side * d + c];
        acc += v[c] * v[c];
      }
      acc = PetscMax(sqrt(acc), 1e-12);
      for (PetscInt c = 0; c < d; c++) r[c] = (float)(v[c] / acc);
    }
  PetscCall(PetscFree4(counts, displs, rcounts, rdispls));
  PetscCall(PetscFree3(rows, all_idx, all_rows));
  PetscFunctionReturn(0);
}

static PetscErrorCode loss(AckdKDObj kd, const KDStep *st, double coef, double *value)
{
  CRD         *m = (CRD *)kd->data;
  PetscInt     n = st->nsel, Ds = kd->dims.student_embedding, Dt = kd->dims.teacher_embedding, d = m->dim;
  PetscInt     N = kd->dims.student_samples, K = m->negatives, *rows, *idx;
  const float *V = kd->params.values, *Ms = kd->state, *Mt = kd->state + N * d;
  double      *xs, *xt, *s, *t, *ls, *lt, *gs, *gt, *gxs, *l, v = 0.0;

  PetscFunctionBeginUser;
  *value = 0.0;
  PetscCheck(st->in->samples, kd->comm, PETSC_ERR_ARG_NULL,
             "-kd_method crd: AckdKDInputs.samples (the global student sample indices) is NULL");
  PetscCall(ackd_kd_gather(st->in->student_embedding, Ds, n, st->sel, &xs));
  PetscCall(ackd_kd_gather(st->in->teacher_embedding, Dt, n, st->sel, &xt));
  PetscCall(PetscMalloc6(PetscMax(n * d, 1), &s, PetscMax(n * d, 1), &t, PetscMax(n, 1), &ls, PetscMax(n, 1), &lt,
                         K + 1, &rows, K + 1, &l));
  PetscCall(
      PetscCalloc4(PetscMax(n * d, 1), &gs, PetscMax(n * d, 1), &gt, PetscMax(n * Ds, 1), &gxs, PetscMax(n, 1), &idx));
  PetscCall(ackd_kd_linear(xs, n, Ds, V + m->ws, d, s));
  PetscCall(ackd_kd_linear(xt, n, Dt, V + m->wt, d, t));
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt c = 0; c < d; c++) {
      s[i * d + c] += V[m->bs + c];
      t[i * d + c] += V[m->bt + c];
    }
  ackd_kd_normalise(s, n, d, ls);
  ackd_kd_normalise(t, n, d, lt);
  for (PetscInt k = 0; k < n; k++) {
    PetscInt i = st->sel[k], g = st->in->samples[i];
    double   c = m->beta * st->w[i] * st->inv_n;
    PetscCheck(g >= 0 && g < N, kd->comm, PETSC_ERR_ARG_OUTOFRANGE,
               "-kd_method crd: sample index %" PetscInt_FMT " of batch row %" PetscInt_FMT
               " is outside the %" PetscInt_FMT " student samples",
               g, i, N);
    idx[k]  = g;
    rows[0] = g;
    ackd_kd_crd_negatives(kd->dims.seed, st->in->epoch, st->in->step, g, N, K, rows + 1);
    v += c * contrast(s + k * d, Mt, rows, K + 1, d, m->tau, coef * c, gs + k * d, l);
    v += c * contrast(t + k * d, Ms, rows, K + 1, d, m->tau, coef * c, gt + k * d, l);
  }
  /* the memory moves only after every sample has been scored against the old one */
  PetscCall(update_memory(kd, m, n, idx, s, t));
  ackd_kd_normalise_backward(s, n, d, ls, gs);
  ackd_kd_normalise_backward(t, n, d, lt, gt);
  PetscCall(ackd_kd_linear_backward(xs, n, Ds, V + m->ws, d, gs, gxs, st->g_params + m->ws));
  PetscCall(ackd_kd_linear_backward(xt, n, Dt, V + m->wt, d, gt, NULL, st->g_params + m->wt));
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt c = 0; c < d; c++) {
      st->g_params[m->bs + c] += gs[i * d + c];
      st->g_params[m->bt + c] += gt[i * d + c];
    }
  for (PetscInt k = 0; k < n; k++)
    for (PetscInt c = 0; c < Ds; c++) st->g_emb[st->sel[k] * Ds + c] += gxs[k * Ds + c];
  *value = v;
  PetscCall(PetscFree6(s, t, ls, lt, rows, l));
  PetscCall(PetscFree4(gs, gt, gxs, idx));
  PetscCall(PetscFree(xs));
  PetscCall(PetscFree(xt));
  PetscFunctionReturn(0);
}

const KDMethod ackd_kd_crd = {.name    = "crd",
                              .help    = "contrastive representation distillation (memory of negatives)",
                              .needs   = KD_NEEDS_EMBEDDING,
                              .create  = create,
                              .options = options,
                              .setup   = setup,
                              .loss    = loss};
