/* The frozen teacher's layer-4 tokens of every MS image, computed once.
 *
 * SKA, AT, FitNet on tokens and MNF compare the student's feature maps with
 * those of its best matched teacher image. The teacher is frozen, in
 * evaluation mode, and sees its images without augmentation, so those tokens
 * are a function of the image alone: running the teacher at every step
 * repeats the same forward pass, every epoch, for every student. One pass over
 * the MS collection at the start replaces it.
 *
 * The pass runs in fixed batches of rows [jB, (j + 1)B), dealt out to the
 * ranks in contiguous blocks of batches: each batch is the same computation
 * whatever the rank count, so the tokens, and the training that reads them,
 * do not depend on how many ranks computed them, nor on whether the run was
 * resumed. */
#include <ackd/kd.h>
#include <ackd/train.h>

#define TOKEN_BATCH 64

struct _p_AckdTeacherTokens {
  PetscInt rows, T, C;
  float   *tokens; /* (rows, T, C) */
};

/* Whether the tokens of `rows` images fit beside everything else: a quarter of the memory this
 * process may use, shared with the other ranks of its node, which hold their own copies. */
static PetscErrorCode tokens_fit(MPI_Comm comm, double bytes, PetscBool *fit)
{
  double budget;

  PetscFunctionBeginUser;
  PetscCall(AckdMemoryShare(comm, 0.25, &budget));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &budget, 1, MPI_DOUBLE, MPI_MIN, comm));
  *fit = (PetscBool)(bytes <= budget);
  PetscFunctionReturn(0);
}

typedef struct {
  AckdTeacherTokens t;
  PetscInt          first; /* the first row of this rank's block */
} Keep;

static PetscErrorCode keep_tokens(void *ctx, PetscInt first, PetscInt n, const AckdModelOutputs *o)
{
  Keep             *k       = ctx;
  AckdTeacherTokens t       = k->t;
  const size_t      per_row = (size_t)t->T * (size_t)t->C;

  PetscFunctionBeginUser;
  PetscCheck(o->tokens.h == t->T && o->tokens.w == t->C, PETSC_COMM_SELF, PETSC_ERR_PLIB,
             "the teacher's tokens are %" PetscInt_FMT " x %" PetscInt_FMT ", expected %" PetscInt_FMT
             " x %" PetscInt_FMT,
             o->tokens.h, o->tokens.w, t->T, t->C);
  PetscCall(PetscArraycpy(t->tokens + (size_t)(k->first + first) * per_row, o->tokens.data, (size_t)n * per_row));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTeacherTokensCreate(MPI_Comm comm, AckdModel teacher, AckdEngine *engine, AckdSharedDataset ms,
                                       PetscInt T, PetscInt C, AckdTeacherTokens *out)
{
  AckdTeacherTokens t;
  PetscInt          count, ch, h, w;
  PetscMPIInt       rank, size;
  PetscBool         fit = PETSC_FALSE;

  PetscFunctionBeginUser;
  *out = NULL;
  PetscCall(AckdSharedDatasetGetShape(ms, &count, &ch, &h, &w));
  const size_t per_row = (size_t)T * (size_t)C;
  PetscCall(tokens_fit(comm, (double)count * (double)per_row * sizeof(float), &fit));
  if (!fit || (double)count * (double)per_row > (double)PETSC_MPI_INT_MAX) PetscFunctionReturn(0);
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCall(PetscNew(&t));
  t->rows = count;
  t->T    = T;
  t->C    = C;
  PetscCall(PetscMalloc1(PetscMax((size_t)count * per_row, 1), &t->tokens));

  const PetscInt batches = (count + TOKEN_BATCH - 1) / TOKEN_BATCH;
  PetscMPIInt   *counts, *displs;
  PetscInt      *rows, mine = 0;
  Keep           keep = {.t = t};
  PetscCall(PetscMalloc2(size, &counts, size, &displs));
  for (PetscMPIInt r = 0; r < size; r++) {
    PetscInt first = PetscMin(count, batches * r / size * TOKEN_BATCH),
             last  = PetscMin(count, batches * (r + 1) / size * TOKEN_BATCH);
    counts[r]      = (PetscMPIInt)((last - first) * (PetscInt)per_row);
    displs[r]      = (PetscMPIInt)(first * (PetscInt)per_row);
    if (r == rank) {
      keep.first = first;
      mine       = last - first;
    }
  }
  PetscCall(PetscMalloc1(PetscMax(mine, 1), &rows));
  for (PetscInt i = 0; i < mine; i++) rows[i] = keep.first + i;
  /* this rank's block starts on a batch boundary, so the pass's batches are the fixed ones */
  PetscCall(AckdModelPredict(teacher, engine, ms, mine, rows, TOKEN_BATCH, keep_tokens, &keep));
  PetscCall(AckdModelSetTraining(teacher, PETSC_FALSE)); /* the frozen teacher stays in evaluation mode */
  PetscCallMPI(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, t->tokens, counts, displs, MPI_FLOAT, comm));
  PetscCall(PetscFree2(counts, displs));
  PetscCall(PetscFree(rows));
  *out = t;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTeacherTokensGather(AckdTeacherTokens t, PetscInt n, const PetscInt *rows, float *out)
{
  const size_t per_row = (size_t)t->T * (size_t)t->C;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < n; i++) {
    PetscCheck(rows[i] >= 0 && rows[i] < t->rows, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
               "teacher row %" PetscInt_FMT " outside the %" PetscInt_FMT " MS images", rows[i], t->rows);
    PetscCall(PetscArraycpy(out + i * per_row, t->tokens + (size_t)rows[i] * per_row, per_row));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdTeacherTokensDestroy(AckdTeacherTokens *t)
{
  PetscFunctionBeginUser;
  if (!*t) PetscFunctionReturn(0);
  PetscCall(PetscFree((*t)->tokens));
  PetscCall(PetscFree(*t));
  PetscFunctionReturn(0);
}
