/* `ackd inspect FILE`: a human summary of any ackd file, chosen by its
 * ackd_format attribute. */
#include "stages.h"
#include <ackd/ckpt.h>
#include <ackd/data.h>
#include <ackd/ot.h>
#include <string.h>

PetscErrorCode AckdStageInspect(MPI_Comm comm, int npositional, char **positional, int *exit_code)
{
  AckdH5Settings h5;
  PetscBool      stop;
  hid_t          file;
  char           format[64];
  PetscBool      found;

  PetscFunctionBeginUser;
  PetscCall(AckdH5SettingsSetFromOptions(&h5));
  PetscCall(AckdStageReady(comm, "inspect", &stop));
  if (stop) PetscFunctionReturn(0);
  const char *path = positional[0];
  PetscCall(AckdH5FileOpenRead(comm, path, &h5, &file));
  PetscCall(AckdH5AttrReadString(file, "ackd_format", format, sizeof format, &found));
  PetscCheck(found, comm, PETSC_ERR_FILE_UNEXPECTED,
             "'%s' is an HDF5 file but not one of ackd's (no ackd_format attribute); use h5dump to look at it", path);
  if (!strcmp(format, ACKD_FORMAT_DATASET))
    PetscCall(AckdDatasetSummarize(comm, file, path, stdout));
  else if (!strcmp(format, ACKD_FORMAT_CHECKPOINT))
    PetscCall(AckdCkptSummarize(comm, file, path, stdout));
  else if (!strcmp(format, ACKD_FORMAT_MATCH))
    PetscCall(AckdMatchSummarize(comm, file, path, stdout));
  else
    SETERRQ(comm, PETSC_ERR_SUP, "'%s' has ackd_format '%s', which this version of inspect does not know", path,
            format);
  PetscCall(AckdH5FileClose(&file, path));
  PetscFunctionReturn(0);
}
