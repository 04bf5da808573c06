/* One-hot label tables for multi-label image collections. */
#include "multilabel_sources.h"
#include <string.h>

/* Splits `line` in place at commas; returns the number of fields. */
static PetscInt split_fields(char *line, char **fields, PetscInt max)
{
  PetscInt n = 0;
  for (char *p = line; n < max;) {
    while (*p == ' ' || *p == '\t') p++;
    fields[n++] = p;
    char *comma = strchr(p, ',');
    char *end   = comma ? comma : p + strlen(p);
    while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r')) end--;
    if (!comma) {
      *end = '\0';
      break;
    }
    *end = '\0';
    p    = comma + 1;
  }
  return n;
}

PetscErrorCode AckdLabelTableRead(MPI_Comm comm, const char *table, const char *image_dir, AckdClassFolders *catalogue,
                                  unsigned char **multi)
{
  char    *text, *save = NULL;
  PetscInt K = 0, rows = 0, line_no = 1;

  PetscFunctionBeginUser;
  memset(catalogue, 0, sizeof *catalogue);
  PetscCall(AckdReadTextFile(comm, table, "label table", &text));
  for (char *p = text; *p; p++) rows += *p == '\n';
  rows += 1;
  char *line = strtok_r(text, "\n", &save);
  PetscCheck(line, comm, PETSC_ERR_FILE_UNEXPECTED, "label table '%s' is empty; expected a header 'path,<class>,...'",
             table);
  enum { MAX_FIELDS = 1024 };
  char **fields;
  PetscCall(PetscMalloc1(MAX_FIELDS, &fields));
  PetscInt nf = split_fields(line, fields, MAX_FIELDS);
  PetscCheck(nf >= 2, comm, PETSC_ERR_FILE_UNEXPECTED,
             "label table '%s': the header must be 'path,<class>,<class>,...' (found %" PetscInt_FMT " column)", table,
             nf);
  K                   = nf - 1;
  catalogue->nclasses = K;
  PetscCall(PetscMalloc2(K, &catalogue->class_names, K, &catalogue->class_counts));
  for (PetscInt k = 0; k < K; k++) {
    PetscCall(PetscStrallocpy(fields[k + 1], &catalogue->class_names[k]));
    catalogue->class_counts[k] = 0;
  }
  PetscCall(PetscMalloc2(rows, &catalogue->paths, rows, &catalogue->label));
  PetscCall(PetscMalloc1((size_t)rows * K, multi));
  while ((line = strtok_r(NULL, "\n", &save))) {
    line_no++;
    char *t = line;
    while (*t == ' ' || *t == '\t' || *t == '\r') t++;
    if (!*t || *t == '#') continue;
    nf = split_fields(line, fields, MAX_FIELDS);
    PetscCheck(nf == K + 1, comm, PETSC_ERR_FILE_UNEXPECTED,
               "label table '%s' line %" PetscInt_FMT ": %" PetscInt_FMT " columns, the header has %" PetscInt_FMT,
               table, line_no, nf, K + 1);
    PetscInt       i   = catalogue->nfiles++;
    unsigned char *row = *multi + i * K;
    char           path[PETSC_MAX_PATH_LEN];
    snprintf(path, sizeof path, "%s/%s", image_dir, fields[0]);
    PetscCall(PetscStrallocpy(path, &catalogue->paths[i]));
    catalogue->label[i] = K;
    for (PetscInt k = 0; k < K; k++) {
      PetscCheck(!strcmp(fields[k + 1], "0") || !strcmp(fields[k + 1], "1"), comm, PETSC_ERR_FILE_UNEXPECTED,
                 "label table '%s' line %" PetscInt_FMT ": '%s' under class '%s' is not 0 or 1", table, line_no,
                 fields[k + 1], catalogue->class_names[k]);
      row[k] = fields[k + 1][0] == '1';
      catalogue->class_counts[k] += row[k];
      if (row[k] && catalogue->label[i] == K) catalogue->label[i] = k;
    }
  }
  PetscCheck(catalogue->nfiles > 0, comm, PETSC_ERR_FILE_UNEXPECTED, "label table '%s' lists no image", table);
  PetscCall(PetscFree(fields));
  PetscCall(PetscFree(text));
  PetscFunctionReturn(0);
}
