/* The prediction journal: rank 0 alone writes it, with HDF5's serial driver,
 * so a round costs one small write and a flush rather than a collective open.
 * A journal that a kill left unreadable is not an error: the prediction then
 * starts from its first item. */
#include "predict_impl.h"
#include <string.h>
#include <unistd.h>

#define JOURNAL_FORMAT "predict-journal"

static PetscErrorCode create_journal(PredictJournal *j, const char *parameters)
{
  hid_t   space;
  hsize_t dims[2] = {(hsize_t)j->n, (hsize_t)j->K};

  PetscFunctionBeginUser;
  AckdCallH5(j->file = H5Fcreate(j->path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "creating the journal '%s'",
             j->path);
  PetscCall(AckdH5AttrWriteString(j->file, "ackd_format", JOURNAL_FORMAT));
  PetscCall(AckdH5AttrWriteString(j->file, "parameters", parameters));
  PetscCall(AckdH5AttrWriteInt(j->file, "done", 0));
  AckdCallH5(space = H5Screate_simple(2, dims, NULL), "journal '%s'", j->path);
  AckdCallH5(j->logits = H5Dcreate2(j->file, "logits", H5T_NATIVE_FLOAT, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
             "'%s': creating logits", j->path);
  H5Sclose(space);
  AckdCallH5(space = H5Screate_simple(1, dims, NULL), "journal '%s'", j->path);
  AckdCallH5(j->status = H5Dcreate2(j->file, "status", H5T_NATIVE_UCHAR, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
             "'%s': creating status", j->path);
  H5Sclose(space);
  PetscFunctionReturn(0);
}

/* The items an existing journal holds, or -1 when it belongs to other parameters or cannot be read. */
static PetscInt journal_done(PredictJournal *j, const char *parameters)
{
  hid_t     file = H5I_INVALID_HID;
  PetscInt  done = -1, value;
  PetscBool found;
  char      format[32], *stored;

  if (access(j->path, F_OK)) return -1;
  if (PetscMalloc1(strlen(parameters) + 2, &stored)) return -1;
  H5E_BEGIN_TRY
  {
    file = H5Fopen(j->path, H5F_ACC_RDWR, H5P_DEFAULT);
  }
  H5E_END_TRY;
  if (file >= 0 && !AckdH5AttrReadString(file, "ackd_format", format, sizeof format, &found) && found &&
      !strcmp(format, JOURNAL_FORMAT) &&
      !AckdH5AttrReadString(file, "parameters", stored, strlen(parameters) + 2, &found) && found &&
      !strcmp(stored, parameters) && !AckdH5AttrReadInt(file, "done", &value, &found) && found && value >= 0 &&
      value <= j->n) {
    H5E_BEGIN_TRY
    {
      j->logits = H5Dopen2(file, "logits", H5P_DEFAULT);
      j->status = H5Dopen2(file, "status", H5P_DEFAULT);
    }
    H5E_END_TRY;
    if (j->logits >= 0 && j->status >= 0) {
      j->file = file;
      done    = value;
    }
  }
  if (done < 0 && file >= 0) {
    if (j->logits >= 0) H5Dclose(j->logits);
    if (j->status >= 0) H5Dclose(j->status);
    H5Fclose(file);
  }
  PetscFree(stored);
  return done;
}

PetscErrorCode PredictJournalOpen(const char *path, const char *parameters, PetscInt n, PetscInt K, PredictJournal *j,
                                  PetscInt *done)
{
  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(j, sizeof *j));
  j->file = j->logits = j->status = H5I_INVALID_HID;
  j->n                            = n;
  j->K                            = K;
  PetscCall(PetscStrncpy(j->path, path, sizeof j->path));
  j->done = journal_done(j, parameters);
  if (j->done < 0) {
    j->file = j->logits = j->status = H5I_INVALID_HID;
    j->done                         = 0;
    PetscCall(create_journal(j, parameters));
  }
  *done = j->done;
  PetscFunctionReturn(0);
}

static PetscErrorCode write_rows(hid_t dset, hid_t type, PetscInt first, PetscInt count, const void *data,
                                 const char *path)
{
  hid_t fspace, mspace;

  PetscFunctionBeginUser;
  PetscCall(AckdH5SelectRows(dset, first, count, &fspace, &mspace));
  AckdCallH5(H5Dwrite(dset, type, mspace, fspace, H5P_DEFAULT, data),
             "writing items %" PetscInt_FMT "..%" PetscInt_FMT
             " to the journal '%s'; check its file system's free space",
             first, first + count, path);
  H5Sclose(mspace);
  H5Sclose(fspace);
  PetscFunctionReturn(0);
}

PetscErrorCode PredictJournalAppend(PredictJournal *j, PetscInt first, PetscInt count, const float *logits,
                                    const unsigned char *status)
{
  PetscFunctionBeginUser;
  PetscCheck(first == j->done, PETSC_COMM_SELF, PETSC_ERR_PLIB,
             "journal '%s' holds %" PetscInt_FMT " items, not %" PetscInt_FMT, j->path, j->done, first);
  if (count > 0) {
    PetscCall(write_rows(j->logits, H5T_NATIVE_FLOAT, first, count, logits, j->path));
    PetscCall(write_rows(j->status, H5T_NATIVE_UCHAR, first, count, status, j->path));
  }
  j->done = first + count;
  /* The count goes in after the rows it counts, and both reach the disk before the next round. */
  PetscCall(AckdH5AttrWriteInt(j->file, "done", j->done));
  AckdCallH5(H5Fflush(j->file, H5F_SCOPE_LOCAL), "flushing the journal '%s'; check its file system's free space",
             j->path);
  PetscFunctionReturn(0);
}

PetscErrorCode PredictJournalReadAll(PredictJournal *j, float *logits, unsigned char *status)
{
  PetscFunctionBeginUser;
  AckdCallH5(H5Dread(j->logits, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, logits), "reading the journal '%s'",
             j->path);
  AckdCallH5(H5Dread(j->status, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, status), "reading the journal '%s'",
             j->path);
  PetscFunctionReturn(0);
}

PetscErrorCode PredictJournalClose(PredictJournal *j, PetscBool remove)
{
  PetscFunctionBeginUser;
  if (j->logits >= 0) H5Dclose(j->logits);
  if (j->status >= 0) H5Dclose(j->status);
  if (j->file >= 0) AckdCallH5(H5Fclose(j->file), "closing the journal '%s'", j->path);
  j->file = j->logits = j->status = H5I_INVALID_HID;
  if (remove) unlink(j->path);
  PetscFunctionReturn(0);
}
