/* ackd predict: a trained model applied to new rasters, a folder of images or
 * a whole scene classified with a sliding window (docs/PREDICT.md).
 *
 * The network runs data parallel: items (images, or windows of a scene) are
 * dealt out to the ranks in rounds; after each round rank 0 appends the
 * round's logits to a journal beside the output, so that a stopped or killed
 * run continues from the last round. The outputs are written by rank 0 once
 * every item is scored. */
#ifndef ACKD_PREDICT_H
#define ACKD_PREDICT_H

#include <ackd/train.h>

typedef struct _p_AckdPredictor *AckdPredictor;

PetscErrorCode AckdPredictorCreate(MPI_Comm comm, AckdPredictor *predictor);
PetscErrorCode AckdPredictorSetFromOptions(AckdPredictor predictor);
/* Collective. A stop request (SIGUSR1, SIGTERM) ends it after the current round with the journal
 * on disk and *stopped set (the stage exits 75; the same command continues). */
PetscErrorCode AckdPredictorRun(AckdPredictor predictor, PetscBool *stopped);
PetscErrorCode AckdPredictorDestroy(AckdPredictor *predictor);

/* ---------------------------------------------------------------- sliding windows */

/* The origins of windows of `patch` pixels every `stride` pixels along an axis of `size` pixels,
 * the last one moved back to end at the edge so that every pixel is covered. Returns how many
 * (0 when the patch is larger than the axis); `origins` may be NULL to count them. */
PetscInt AckdWindowOrigins(PetscInt size, PetscInt patch, PetscInt stride, PetscInt *origins);

/* The windows' class probabilities (nwin, K) averaged per pixel over the windows that cover it,
 * for rows [y0, y0 + rows) of a scene `width` pixels wide whose windows have origins ys (ny) by
 * xs (nx), row-major. Windows with used[w] = 0 do not vote. A pixel with valid 0 (rows * width),
 * or that no used window covers, gets ACKD_MAP_NODATA_CLASS and NaN probabilities. `classes`
 * (rows, width) gets the most probable class (the first on ties); `probability` (K, rows, width)
 * may be NULL. K is at most ACKD_MAP_NODATA_CLASS, as a byte class map holds. */
void AckdWindowsCompose(PetscInt width, PetscInt patch, PetscInt nx, const PetscInt *xs, PetscInt ny,
                        const PetscInt *ys, PetscInt K, const float *window_probability, const unsigned char *used,
                        PetscInt y0, PetscInt rows, const unsigned char *valid, unsigned char *classes,
                        float *probability);

#endif
