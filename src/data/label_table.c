/* Label tables over image files: one-hot rows for multi-label collections, or each image's
 * cover fractions for a single-label collection that keeps them. */
#include "multilabel_sources.h"
#include <math.h>
#include <stdlib.h>
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

/* One cell of a table: a 0 or 1 (`shares` NULL), or a share in [0, 1] into *share. */
static PetscBool parse_cell(const char *field, unsigned char *positive, float *share)
{
  if (!share) {
    *positive = field[0] == '1';
    return (PetscBool)(!strcmp(field, "0") || !strcmp(field, "1"));
  }
  char  *end;
  double v = strtod(field, &end);
  *share   = (float)v;
  return (PetscBool)(end != field && !*end && v >= 0.0 && v <= 1.0);
}

/* A row of shares rounded for a spreadsheet (three decimals) sums to 1 within 1e-3; it is scaled
 * to sum to 1, and a row further off is refused as a row that forgot a class. */
static PetscErrorCode normalise_shares(MPI_Comm comm, const char *table, PetscInt line_no, float *row, PetscInt K)
{
  double sum = 0.0;

  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < K; k++) sum += row[k];
  PetscCheck(fabs(sum - 1.0) <= 1e-3, comm, PETSC_ERR_FILE_UNEXPECTED,
             "fraction table '%s' line %" PetscInt_FMT ": the shares sum to %g; each row must sum to 1 (within "
             "1e-3): every cover of the image, its own class's included",
             table, line_no, sum);
  for (PetscInt k = 0; k < K; k++) row[k] = (float)(row[k] / sum);
  PetscFunctionReturn(0);
}

/* The table either kind of label comes in: a header "path,<class>,..." and a row per image. A row's
 * label is its first positive (K: none) for 0/1 cells, its largest share (the lowest index among
 * equals) for shares. */
static PetscErrorCode read_table(MPI_Comm comm, const char *table, const char *image_dir, AckdClassFolders *catalogue,
                                 unsigned char **multi, float **shares)
{
  const char *kind = shares ? "fraction table" : "label table";
  char       *text, *save = NULL;
  PetscInt    K = 0, rows = 0, line_no = 1;

  PetscFunctionBeginUser;
  memset(catalogue, 0, sizeof *catalogue);
  PetscCall(AckdReadTextFile(comm, table, kind, &text));
  for (char *p = text; *p; p++) rows += *p == '\n';
  rows += 1;
  char *line = strtok_r(text, "\n", &save);
  PetscCheck(line, comm, PETSC_ERR_FILE_UNEXPECTED, "%s '%s' is empty; expected a header 'path,<class>,...'", kind,
             table);
  enum { MAX_FIELDS = 1024 };
  char **fields;
  PetscCall(PetscMalloc1(MAX_FIELDS, &fields));
  PetscInt nf = split_fields(line, fields, MAX_FIELDS);
  PetscCheck(nf >= 2, comm, PETSC_ERR_FILE_UNEXPECTED,
             "%s '%s': the header must be 'path,<class>,<class>,...' (found %" PetscInt_FMT " column)", kind, table,
             nf);
  K                   = nf - 1;
  catalogue->nclasses = K;
  PetscCall(PetscMalloc2(K, &catalogue->class_names, K, &catalogue->class_counts));
  for (PetscInt k = 0; k < K; k++) {
    PetscCall(PetscStrallocpy(fields[k + 1], &catalogue->class_names[k]));
    catalogue->class_counts[k] = 0;
  }
  PetscCall(PetscMalloc2(rows, &catalogue->paths, rows, &catalogue->label));
  if (shares)
    PetscCall(PetscMalloc1((size_t)rows * K, shares));
  else
    PetscCall(PetscMalloc1((size_t)rows * K, multi));
  while ((line = strtok_r(NULL, "\n", &save))) {
    line_no++;
    char *t = line;
    while (*t == ' ' || *t == '\t' || *t == '\r') t++;
    if (!*t || *t == '#') continue;
    nf = split_fields(line, fields, MAX_FIELDS);
    PetscCheck(nf == K + 1, comm, PETSC_ERR_FILE_UNEXPECTED,
               "%s '%s' line %" PetscInt_FMT ": %" PetscInt_FMT " columns, the header has %" PetscInt_FMT, kind, table,
               line_no, nf, K + 1);
    PetscInt       i         = catalogue->nfiles++;
    unsigned char  positive  = 0;
    unsigned char *multi_row = shares ? NULL : *multi + i * K;
    float         *share_row = shares ? *shares + i * K : NULL;
    char           path[PETSC_MAX_PATH_LEN];
    snprintf(path, sizeof path, "%s/%s", image_dir, fields[0]);
    PetscCall(PetscStrallocpy(path, &catalogue->paths[i]));
    for (PetscInt k = 0; k < K; k++)
      PetscCheck(parse_cell(fields[k + 1], multi_row ? multi_row + k : &positive, share_row ? share_row + k : NULL),
                 comm, PETSC_ERR_FILE_UNEXPECTED, "%s '%s' line %" PetscInt_FMT ": '%s' under class '%s' is not %s",
                 kind, table, line_no, fields[k + 1], catalogue->class_names[k],
                 shares ? "a share in [0, 1]" : "0 or 1");
    catalogue->label[i] = K;
    if (shares) {
      PetscCall(normalise_shares(comm, table, line_no, share_row, K));
      catalogue->label[i] = 0;
      for (PetscInt k = 1; k < K; k++)
        if (share_row[k] > share_row[catalogue->label[i]]) catalogue->label[i] = k;
      catalogue->class_counts[catalogue->label[i]]++;
    } else
      for (PetscInt k = 0; k < K; k++) {
        catalogue->class_counts[k] += multi_row[k];
        if (multi_row[k] && catalogue->label[i] == K) catalogue->label[i] = k;
      }
  }
  PetscCheck(catalogue->nfiles > 0, comm, PETSC_ERR_FILE_UNEXPECTED, "%s '%s' lists no image", kind, table);
  PetscCall(PetscFree(fields));
  PetscCall(PetscFree(text));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdLabelTableRead(MPI_Comm comm, const char *table, const char *image_dir, AckdClassFolders *catalogue,
                                  unsigned char **multi)
{
  PetscFunctionBeginUser;
  PetscCall(read_table(comm, table, image_dir, catalogue, multi, NULL));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdFractionTableRead(MPI_Comm comm, const char *table, const char *image_dir,
                                     AckdClassFolders *catalogue, float **fractions)
{
  PetscFunctionBeginUser;
  PetscCall(read_table(comm, table, image_dir, catalogue, NULL, fractions));
  PetscFunctionReturn(0);
}
