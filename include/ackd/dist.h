/* ackd dist: what data-parallel training needs from MPI.
 *
 * - AckdBatchPlan: which samples each rank trains on, a pure function of
 *   (seed, epoch, position), so runs on 1, 2 or 4 ranks see the same global
 *   batches and a run resumed on another rank count continues exactly.
 * - AckdGradBuckets: the gradient exchange. Gradients live in one contiguous
 *   buffer; they are summed over ranks in buckets, in reverse layer order,
 *   each started with MPI_Iallreduce as soon as backward has finished its
 *   layers, and waited on before the optimizer step. A fused mode (one
 *   blocking allreduce) is there for comparison.
 * - AckdSharedDataset: a collection held once per node in an MPI-3
 *   shared-memory window, loaded collectively from the dataset file.
 */
#ifndef ACKD_DIST_H
#define ACKD_DIST_H

#include <ackd/core.h>

/* ---------------------------------------------------------------- batch plan */

typedef struct _p_AckdBatchPlan *AckdBatchPlan;

/* `samples` are the global indices of the training samples (copied).
 * The global batch is split over the ranks of `comm`; with drop_last the
 * final partial batch is skipped, otherwise it is split like the others. */
PetscErrorCode AckdBatchPlanCreate(MPI_Comm comm, PetscInt nsamples, const PetscInt *samples, PetscInt global_batch,
                                   uint64_t seed, PetscBool drop_last, AckdBatchPlan *plan);
/* Shuffles for `epoch`: the order depends on (seed, epoch) only. */
PetscErrorCode AckdBatchPlanSetEpoch(AckdBatchPlan plan, PetscInt epoch);
PetscErrorCode AckdBatchPlanGetBatchCount(AckdBatchPlan plan, PetscInt *nbatches);
/* This rank's share of batch `b`: up to `capacity` global sample indices in
 * `samples`, their number in `count`, and the size of the whole global batch
 * in `global_count` (normalise the loss by it, so that summing gradients over
 * ranks gives the global mean whatever the split). */
PetscErrorCode AckdBatchPlanGetLocal(AckdBatchPlan plan, PetscInt b, PetscInt capacity, PetscInt *samples,
                                     PetscInt *count, PetscInt *global_count);
PetscErrorCode AckdBatchPlanDestroy(AckdBatchPlan *plan);

/* ---------------------------------------------------------------- gradient buckets */

typedef enum {
  ACKD_GRAD_OVERLAPPED, /* MPI_Iallreduce per bucket during backward */
  ACKD_GRAD_FUSED       /* one blocking MPI_Allreduce of the whole buffer before the step */
} AckdGradExchange;

/* Default bucket size; docs/SCALING.md explains the choice. */
#define ACKD_GRAD_BUCKET_BYTES_DEFAULT (4 << 20)

typedef struct _p_AckdGradBuckets *AckdGradBuckets;

/* Layers are given in forward order, each as the [offset, offset + size)
 * range of its gradients in `grad`; buckets are formed from the last layer
 * backwards, so the first bucket completes first during backward. */
PetscErrorCode AckdGradBucketsCreate(MPI_Comm comm, float *grad, PetscInt nlayers, const PetscInt *offset,
                                     const PetscInt *size, PetscInt bucket_bytes, AckdGradExchange mode,
                                     AckdGradBuckets *buckets);
PetscErrorCode AckdGradBucketsGetBucketCount(AckdGradBuckets buckets, PetscInt *nbuckets);
/* Backward finished the gradients of `layer`: a bucket whose layers are all
 * done starts its allreduce. */
PetscErrorCode AckdGradBucketsLayerDone(AckdGradBuckets buckets, PetscInt layer);
/* Lets MPI progress outstanding allreduces; call between layers of backward. */
PetscErrorCode AckdGradBucketsProgress(AckdGradBuckets buckets);
/* Completes every bucket: `grad` then holds the sum over ranks. */
PetscErrorCode AckdGradBucketsWait(AckdGradBuckets buckets);
/* Seconds spent in communication calls that blocked (Wait, fused allreduce),
 * accumulated since creation: what overlap did not hide. */
PetscErrorCode AckdGradBucketsGetBlockedTime(AckdGradBuckets buckets, double *seconds);
PetscErrorCode AckdGradBucketsDestroy(AckdGradBuckets *buckets);

/* ---------------------------------------------------------------- shared dataset */

typedef struct _p_AckdSharedDataset *AckdSharedDataset;

/* Collective: loads /<collection> of a dataset file once per node. Labels and
 * splits are replicated on every rank; images live in the node's window.
 * A multi-label collection ((N, K) 0/1 labels) is loaded too: its table is
 * replicated (AckdSharedDatasetGetMultilabels) and every single label is -1. */
PetscErrorCode AckdSharedDatasetLoad(MPI_Comm comm, const char *path, const char *collection, const AckdH5Settings *h5,
                                     AckdSharedDataset *dataset);
PetscErrorCode AckdSharedDatasetGetShape(AckdSharedDataset dataset, PetscInt *count, PetscInt *channels,
                                         PetscInt *height, PetscInt *width);
/* The images of `rows` (any order, repeats allowed) into out (n, C, H, W):
 * a copy from the node's window, or, with -h5_streaming, a read of just
 * those rows from the file. Every consumer of images goes through here. */
PetscErrorCode AckdSharedDatasetReadImages(AckdSharedDataset dataset, PetscInt n, const PetscInt *rows, float *out);
/* From now on every read returns each band standardised by the collection's own statistics (the
 * file's band_mean and band_std): (x - mean) / std, a constant band only centred. For a network
 * that sees two sensors in one space (the matcher), each sensor's units taken out. Fails with one
 * line when the file has no statistics. */
PetscErrorCode AckdSharedDatasetStandardize(AckdSharedDataset dataset);
/* Read-only views; images are (count, C, H, W), NULL when streaming or standardised (then read
 * them through AckdSharedDatasetReadImages). */
PetscErrorCode AckdSharedDatasetGetArrays(AckdSharedDataset dataset, const float **images, const int **labels,
                                          const unsigned char **split);
/* The (count, columns) 0/1 label table of a multi-label collection, row-major;
 * *columns = 0 and *multilabels = NULL for a single-label one. */
PetscErrorCode AckdSharedDatasetGetMultilabels(AckdSharedDataset dataset, PetscInt *columns,
                                               const unsigned char **multilabels);
/* A multi-label collection's dominant class per sample (/<collection>/dominant_class, the class
 * covering most of the scene, as SEN12MS gives beside its multi-label table), NULL when the file
 * does not record it. It stands for the sample wherever one class is needed (docs/FORMATS.md). */
PetscErrorCode AckdSharedDatasetGetDominant(AckdSharedDataset dataset, const int **dominant);
/* Collective: each sample's share of every class's cover, (count, classes) row-major
 * (/<collection>/cover_fractions, docs/FORMATS.md), read from the file on the first call and
 * kept. A missing table, a wrong shape, or a row that is not a distribution is an error naming
 * the file. Read before AckdSharedDatasetDescribe, the table is part of its digest. */
PetscErrorCode AckdSharedDatasetGetCoverFractions(MPI_Comm comm, AckdSharedDataset dataset, PetscInt classes,
                                                  const float **fractions);
/* One line that tells this collection from another: its name, size, image shape and a 64-bit
 * digest (FNV-1a) of its labels, split and band statistics, e.g.
 * "/rgb: 4000 samples of 3 x 64 x 64, labels and split 9f3a0c1e22d47b85". Checkpoints record it,
 * so that a run does not resume on a dataset regenerated or swapped under its directory. */
PetscErrorCode AckdSharedDatasetDescribe(AckdSharedDataset dataset, char *text, size_t len);
PetscErrorCode AckdSharedDatasetDestroy(AckdSharedDataset *dataset);

#endif
