/* A collection laid out as one folder per class (EuroSAT's layout):
 * ROOT/<class>/<image>. Rank 0 walks the tree once, so a large job does not
 * hit the metadata server from every rank, and broadcasts the sorted list:
 * every rank then agrees on the order of classes and files. */
#include <ackd/data.h>
#include <dirent.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

static int compare_names(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static PetscBool has_extension(const char *name, const char *const *extensions)
{
  const char *dot = strrchr(name, '.');
  if (!dot) return PETSC_FALSE;
  for (const char *const *e = extensions; *e; e++)
    if (!strcasecmp(dot + 1, *e)) return PETSC_TRUE;
  return PETSC_FALSE;
}

/* Sorted entries of `dir` that are directories (want_dirs) or files with one of `extensions`. */
static PetscErrorCode list_entries(const char *dir, PetscBool want_dirs, const char *const *extensions, char ***names,
                                   PetscInt *count)
{
  DIR           *d = opendir(dir);
  struct dirent *e;
  PetscInt       n = 0, cap = 64;

  PetscFunctionBeginUser;
  PetscCheck(d, PETSC_COMM_SELF, PETSC_ERR_FILE_OPEN, "cannot read folder '%s'; check the path", dir);
  PetscCall(PetscMalloc1(cap, names));
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue; /* ., .. and hidden files */
    char        path[PETSC_MAX_PATH_LEN];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if (stat(path, &st)) continue;
    if (want_dirs ? !S_ISDIR(st.st_mode) : (!S_ISREG(st.st_mode) || !has_extension(e->d_name, extensions))) continue;
    if (n == cap) {
      cap *= 2;
      PetscCall(PetscRealloc(sizeof(char *) * (size_t)cap, names));
    }
    PetscCall(PetscStrallocpy(e->d_name, &(*names)[n++]));
  }
  closedir(d);
  qsort(*names, (size_t)n, sizeof(char *), compare_names);
  *count = n;
  PetscFunctionReturn(0);
}

/* Rank 0's findings, flattened for one broadcast: class names, then per file
 * its class and relative path, all NUL-separated. */
static PetscErrorCode scan(const char *root, const char *const *extensions, char **packed, size_t *bytes)
{
  char   **classes;
  PetscInt nclasses;
  size_t   cap = 4096, used = 0;

  PetscFunctionBeginUser;
  PetscCall(list_entries(root, PETSC_TRUE, NULL, &classes, &nclasses));
  PetscCall(PetscMalloc1(cap, packed));
#define APPEND(text)                                                                                                   \
  do {                                                                                                                 \
    size_t len_ = strlen(text) + 1;                                                                                    \
    while (used + len_ > cap) {                                                                                        \
      cap *= 2;                                                                                                        \
      PetscCall(PetscRealloc(cap, packed));                                                                            \
    }                                                                                                                  \
    memcpy(*packed + used, text, len_);                                                                                \
    used += len_;                                                                                                      \
  } while (0)
  char header[32];
  snprintf(header, sizeof header, "%" PetscInt_FMT, nclasses);
  APPEND(header);
  for (PetscInt k = 0; k < nclasses; k++) APPEND(classes[k]);
  for (PetscInt k = 0; k < nclasses; k++) {
    char   **files, dir[PETSC_MAX_PATH_LEN];
    PetscInt nfiles;
    snprintf(dir, sizeof dir, "%s/%s", root, classes[k]);
    PetscCall(list_entries(dir, PETSC_FALSE, extensions, &files, &nfiles));
    snprintf(header, sizeof header, "%" PetscInt_FMT, nfiles);
    APPEND(header);
    for (PetscInt i = 0; i < nfiles; i++) {
      APPEND(files[i]);
      PetscCall(PetscFree(files[i]));
    }
    PetscCall(PetscFree(files));
  }
#undef APPEND
  for (PetscInt k = 0; k < nclasses; k++) PetscCall(PetscFree(classes[k]));
  PetscCall(PetscFree(classes));
  *bytes = used;
  PetscFunctionReturn(0);
}

static const char *next_field(const char **cursor)
{
  const char *field = *cursor;
  *cursor += strlen(field) + 1;
  return field;
}

PetscErrorCode AckdClassFoldersScan(MPI_Comm comm, const char *root, const char *const *extensions,
                                    AckdClassFolders *folders)
{
  PetscMPIInt rank;
  char       *packed = NULL;
  size_t      bytes  = 0;
  int         exists = 1;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  memset(folders, 0, sizeof *folders);
  if (rank == 0) {
    struct stat st;
    exists = !stat(root, &st) && S_ISDIR(st.st_mode);
    if (exists) PetscCall(scan(root, extensions, &packed, &bytes));
  }
  PetscCallMPI(MPI_Bcast(&exists, 1, MPI_INT, 0, comm));
  PetscCheck(exists, comm, PETSC_ERR_FILE_OPEN, "folder '%s' not found; it should hold one sub-folder per class", root);
  unsigned long long n = bytes;
  PetscCallMPI(MPI_Bcast(&n, 1, MPI_UNSIGNED_LONG_LONG, 0, comm));
  if (rank != 0) PetscCall(PetscMalloc1(n, &packed));
  PetscCallMPI(MPI_Bcast(packed, (int)n, MPI_CHAR, 0, comm));

  const char *cursor = packed;
  folders->nclasses  = atoi(next_field(&cursor));
  PetscCheck(folders->nclasses > 0, comm, PETSC_ERR_FILE_UNEXPECTED,
             "folder '%s' has no class sub-folders; expected ROOT/<class>/<image>", root);
  PetscCall(PetscMalloc2(folders->nclasses, &folders->class_names, folders->nclasses, &folders->class_counts));
  for (PetscInt k = 0; k < folders->nclasses; k++)
    PetscCall(PetscStrallocpy(next_field(&cursor), &folders->class_names[k]));
  /* First pass over the packed files counts them, the second fills the table. */
  const char *files_start = cursor;
  for (PetscInt k = 0; k < folders->nclasses; k++) {
    folders->class_counts[k] = atoi(next_field(&cursor));
    for (PetscInt i = 0; i < folders->class_counts[k]; i++) next_field(&cursor);
    folders->nfiles += folders->class_counts[k];
  }
  PetscCall(PetscMalloc2(folders->nfiles, &folders->paths, folders->nfiles, &folders->label));
  cursor       = files_start;
  PetscInt idx = 0;
  for (PetscInt k = 0; k < folders->nclasses; k++) {
    next_field(&cursor);
    for (PetscInt i = 0; i < folders->class_counts[k]; i++, idx++) {
      char path[PETSC_MAX_PATH_LEN];
      snprintf(path, sizeof path, "%s/%s/%s", root, folders->class_names[k], next_field(&cursor));
      PetscCall(PetscStrallocpy(path, &folders->paths[idx]));
      folders->label[idx] = k;
    }
  }
  PetscCall(PetscFree(packed));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdClassFoldersDestroy(AckdClassFolders *folders)
{
  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < folders->nclasses; k++) PetscCall(PetscFree(folders->class_names[k]));
  for (PetscInt i = 0; i < folders->nfiles; i++) PetscCall(PetscFree(folders->paths[i]));
  PetscCall(PetscFree2(folders->class_names, folders->class_counts));
  PetscCall(PetscFree2(folders->paths, folders->label));
  memset(folders, 0, sizeof *folders);
  PetscFunctionReturn(0);
}
