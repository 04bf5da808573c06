/* Private to src/predict: the journal that makes a prediction resumable. */
#ifndef ACKD_PREDICT_IMPL_H
#define ACKD_PREDICT_IMPL_H

#include <ackd/predict.h>

/* Rank 0's record of the items scored so far: logits (n, K) and a status per
 * item, in an HDF5 file beside the output, flushed after every round. It is
 * valid for one command only: `parameters` names everything the logits depend
 * on, and a journal of other parameters is started afresh. */
typedef struct {
  hid_t    file, logits, status;
  PetscInt n, K, done;
  char     path[PETSC_MAX_PATH_LEN];
} PredictJournal;

/* Opens the journal at `path`, or creates it; *done is how many leading items it already holds. */
PetscErrorCode PredictJournalOpen(const char *path, const char *parameters, PetscInt n, PetscInt K,
                                  PredictJournal *journal, PetscInt *done);
/* Items [first, first + count): appended in order, then flushed to disk. */
PetscErrorCode PredictJournalAppend(PredictJournal *journal, PetscInt first, PetscInt count, const float *logits,
                                    const unsigned char *status);
PetscErrorCode PredictJournalReadAll(PredictJournal *journal, float *logits, unsigned char *status);
/* Closes it; with `remove`, deletes the file (its results are in the outputs). */
PetscErrorCode PredictJournalClose(PredictJournal *journal, PetscBool remove);

#endif
