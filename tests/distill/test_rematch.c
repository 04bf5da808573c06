/* DynM's re-matching on any rank count:
 *   test_rematch DATASET GALLERY LOGITS OUT
 * LOGITS holds /logits (N_s, K) of the student samples (the RGB training
 * split); OUT receives the re-matched table /index, /weight (N_s, k), written
 * by rank 0. rematch_check.py compares it with numpy's argmin of the KL cost.
 * -dynm_class_blocks false re-matches over every teacher, as `ackd distill`. */
#include <ackd/data.h>
#include <ackd/kd.h>

int main(int argc, char **argv)
{
  AckdCollectionInfo info;
  AckdTeacherTargets targets;
  PetscInt           n = 0, *rows, count, k;
  int               *labels;
  float             *logits, *index, *weight;
  PetscMPIInt        rank;
  PetscBool          class_blocks = PETSC_TRUE;

  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  if (argc < 5) SETERRQ(PETSC_COMM_WORLD, PETSC_ERR_USER_INPUT, "usage: test_rematch DATASET GALLERY LOGITS OUT");
  PetscCallMPI(MPI_Comm_rank(PETSC_COMM_WORLD, &rank));
  PetscCall(AckdCollectionInfoRead(PETSC_COMM_WORLD, argv[1], "rgb", &info));
  count = info.count;
  PetscCall(PetscMalloc2(count, &rows, count, &labels));
  {
    hid_t          file = H5Fopen(argv[1], H5F_ACC_RDONLY, H5P_DEFAULT), d;
    unsigned char *split;
    int           *all;
    PetscCall(PetscMalloc2(count, &split, count, &all));
    d = H5Dopen2(file, "rgb/split", H5P_DEFAULT);
    H5Dread(d, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, split);
    H5Dclose(d);
    d = H5Dopen2(file, "rgb/labels", H5P_DEFAULT);
    H5Dread(d, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, all);
    H5Dclose(d);
    H5Fclose(file);
    for (PetscInt i = 0; i < count; i++)
      if (split[i] == 0) {
        labels[n] = all[i];
        rows[n++] = i;
      }
    PetscCall(PetscFree2(split, all));
  }
  PetscCall(PetscMalloc1(n * info.classes, &logits));
  {
    hid_t file = H5Fopen(argv[3], H5F_ACC_RDONLY, H5P_DEFAULT), d = H5Dopen2(file, "logits", H5P_DEFAULT);
    PetscCheck(d >= 0, PETSC_COMM_WORLD, PETSC_ERR_FILE_OPEN, "no /logits in %s", argv[3]);
    H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, logits);
    H5Dclose(d);
    H5Fclose(file);
  }
  PetscCall(AckdTeacherTargetsCreate(PETSC_COMM_WORLD, argv[2], info.ms_to_rgb, info.nms_classes, info.classes, n, rows,
                                     labels, &targets));
  PetscCall(PetscOptionsGetBool(NULL, NULL, "-dynm_class_blocks", &class_blocks, NULL));
  PetscCall(AckdTeacherTargetsRematch(targets, logits, class_blocks, "dynm_"));
  PetscCall(AckdTeacherTargetsGetTable(targets, &index, &weight));
  PetscCall(AckdTeacherTargetsGetSizes(targets, NULL, NULL, &k, NULL));
  if (rank == 0) {
    hid_t   file    = H5Fcreate(argv[4], H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[2] = {(hsize_t)n, (hsize_t)k};
    hid_t   space   = H5Screate_simple(2, dims, NULL);
    hid_t   d       = H5Dcreate2(file, "index", H5T_NATIVE_FLOAT, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, index);
    H5Dclose(d);
    d = H5Dcreate2(file, "weight", H5T_NATIVE_FLOAT, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, weight);
    H5Dclose(d);
    H5Sclose(space);
    H5Fclose(file);
  }
  PetscCall(AckdTeacherTargetsDestroy(&targets));
  PetscCall(AckdCollectionInfoDestroy(&info));
  PetscCall(PetscFree(logits));
  PetscCall(PetscFree2(rows, labels));
  PetscCall(PetscFinalize());
  return 0;
}
