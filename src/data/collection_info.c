/* The facts about a dataset's collection that a training stage needs first. */
#include <ackd/data.h>
#include <string.h>

static PetscErrorCode read_strings(hid_t group, const char *name, PetscInt n, char ***strings, const char *path)
{
  hid_t dset, type;

  PetscFunctionBeginUser;
  AckdCallH5(dset = H5Dopen2(group, name, H5P_DEFAULT), "'%s': opening %s", path, name);
  AckdCallH5(type = H5Dget_type(dset), "'%s': type of %s", path, name);
  PetscCheck(H5Tget_class(type) == H5T_STRING && !H5Tis_variable_str(type), PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED,
             "'%s': %s is not an array of fixed-length strings", path, name);
  size_t len = H5Tget_size(type);
  char  *raw;
  PetscCall(PetscCalloc1(n * len + 1, &raw));
  AckdCallH5(H5Dread(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw), "'%s': reading %s", path, name);
  PetscCall(PetscMalloc1(n, strings));
  for (PetscInt i = 0; i < n; i++) {
    PetscCall(PetscCalloc1(len + 1, &(*strings)[i]));
    memcpy((*strings)[i], raw + i * len, len);
  }
  PetscCall(PetscFree(raw));
  H5Tclose(type);
  H5Dclose(dset);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCollectionInfoRead(MPI_Comm comm, const char *path, const char *collection, AckdCollectionInfo *info)
{
  AckdH5Settings h5 = {0};
  hid_t          file, group;
  PetscBool      found;
  PetscInt       multilabel = 0;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(info, sizeof *info));
  PetscCall(AckdH5SettingsSetFromOptions(&h5));
  PetscCall(AckdH5FileOpenRead(comm, path, &h5, &file));
  /* The schema first: the reads below size their buffers by it (class names, the class map). */
  PetscCall(AckdDatasetValidate(file, path));
  PetscCheck(H5Lexists(file, collection, H5P_DEFAULT) > 0, comm, PETSC_ERR_FILE_UNEXPECTED,
             "'%s' has no /%s collection; give a dataset written by ackd synth or ackd curate", path, collection);
  AckdCallH5(group = H5Gopen2(file, collection, H5P_DEFAULT), "'%s': opening /%s", path, collection);
  const char *const attrs[]  = {"count", "classes", "channels", "height", "width"};
  PetscInt *const   values[] = {&info->count, &info->classes, &info->channels, &info->height, &info->width};
  for (int i = 0; i < 5; i++) {
    PetscCall(AckdH5AttrReadInt(group, attrs[i], values[i], &found));
    PetscCheck(found && *values[i] > 0, comm, PETSC_ERR_FILE_UNEXPECTED,
               "'%s': /%s lacks a positive '%s' attribute; the file is not a complete ackd dataset", path, collection,
               attrs[i]);
  }
  PetscCall(AckdH5AttrReadInt(group, "multilabel", &multilabel, &found));
  info->multilabel = (PetscBool)(multilabel != 0);
  PetscCall(read_strings(group, "classes", info->classes, &info->class_names, path));
  H5Gclose(group);
  if (H5Lexists(file, "class_map", H5P_DEFAULT) > 0 && H5Lexists(file, "class_map/ms_to_rgb", H5P_DEFAULT) > 0) {
    hid_t       dset;
    AckdH5Shape shape;
    AckdCallH5(dset = H5Dopen2(file, "class_map/ms_to_rgb", H5P_DEFAULT), "'%s': opening /class_map/ms_to_rgb", path);
    PetscCall(AckdH5DatasetShapeOf(dset, path, "/class_map/ms_to_rgb", &shape)); /* 1-D: validated above */
    info->nms_classes = (PetscInt)shape.dims[0];
    PetscCall(PetscMalloc1(shape.dims[0], &info->ms_to_rgb));
    AckdCallH5(H5Dread(dset, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, info->ms_to_rgb),
               "'%s': reading /class_map/ms_to_rgb", path);
    H5Dclose(dset);
  }
  PetscCall(AckdH5FileClose(&file, path));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdCollectionInfoDestroy(AckdCollectionInfo *info)
{
  PetscFunctionBeginUser;
  for (PetscInt i = 0; info->class_names && i < info->classes; i++) PetscCall(PetscFree(info->class_names[i]));
  PetscCall(PetscFree(info->class_names));
  PetscCall(PetscFree(info->ms_to_rgb));
  PetscFunctionReturn(0);
}
