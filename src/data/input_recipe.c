/* How a collection's images were made from raster files, so that new rasters
 * (`ackd predict`) reach a model exactly as its training images did: which
 * bands of the files, at what size, normalised how. */
#include <ackd/data.h>
#include <math.h>
#include <string.h>

const char *const AckdNormalizationNames[] = {"none", "image_max", "band_standardize"};

void AckdNormalizeImageMax(float *x, size_t n)
{
  float top = 0;
  for (size_t i = 0; i < n; i++) top = PetscMax(top, x[i]);
  float scale = top > 0 ? 1.0f / top : 0.0f;
  for (size_t i = 0; i < n; i++) x[i] = (x[i] * scale - 0.5f) / 0.5f;
}

static PetscErrorCode read_doubles(hid_t group, const char *name, PetscInt n, double *values, const char *path,
                                   const char *collection)
{
  hid_t       dset;
  AckdH5Shape shape;

  PetscFunctionBeginUser;
  PetscCheck(H5Lexists(group, name, H5P_DEFAULT) > 0, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED,
             "'%s': /%s was standardised but lacks %s; the dataset is incomplete, curate it again", path, collection,
             name);
  AckdCallH5(dset = H5Dopen2(group, name, H5P_DEFAULT), "'%s': opening /%s/%s", path, collection, name);
  PetscCall(AckdH5DatasetShapeOf(dset, path, name, &shape));
  PetscCheck(shape.rank == 1 && shape.dims[0] == (hsize_t)n, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED,
             "'%s': /%s/%s should hold %" PetscInt_FMT " values", path, collection, name, n);
  AckdCallH5(H5Dread(dset, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, values), "'%s': reading /%s/%s", path,
             collection, name);
  H5Dclose(dset);
  PetscFunctionReturn(0);
}

/* The 1-based file bands the collection kept (curate's source_bands attribute); *found false when
 * the dataset does not say (synth, or a dataset curated before the attribute existed). */
static PetscErrorCode read_source_bands(hid_t group, PetscInt channels, PetscInt *bands, PetscBool *found,
                                        const char *path, const char *collection)
{
  hid_t   attr, space;
  hsize_t n = 0;

  PetscFunctionBeginUser;
  *found = (PetscBool)(H5Aexists(group, "source_bands") > 0);
  if (!*found) PetscFunctionReturn(0);
  AckdCallH5(attr = H5Aopen(group, "source_bands", H5P_DEFAULT), "'%s': opening /%s source_bands", path, collection);
  space = H5Aget_space(attr);
  PetscCheck(H5Sget_simple_extent_ndims(space) == 1 && H5Sget_simple_extent_dims(space, &n, NULL) == 1 &&
                 n == (hsize_t)channels,
             PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED,
             "'%s': /%s source_bands should list %" PetscInt_FMT " bands; the dataset is damaged", path, collection,
             channels);
  long long values[ACKD_RASTER_MAX_BANDS];
  AckdCallH5(H5Aread(attr, H5T_NATIVE_LLONG, values), "'%s': reading /%s source_bands", path, collection);
  for (PetscInt b = 0; b < channels; b++) bands[b] = (PetscInt)values[b];
  H5Sclose(space);
  H5Aclose(attr);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdInputRecipeRead(MPI_Comm comm, const char *path, const char *collection,
                                   const AckdCollectionInfo *info, AckdInputRecipe *recipe)
{
  AckdH5Settings h5 = {0};
  hid_t          file, group;
  PetscBool      found;
  char           normalization[32] = "none";

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(recipe, sizeof *recipe));
  recipe->channels = info->channels;
  recipe->height   = info->height;
  recipe->width    = info->width;
  PetscCall(AckdH5SettingsSetFromOptions(&h5));
  PetscCall(AckdH5FileOpenRead(comm, path, &h5, &file));
  AckdCallH5(group = H5Gopen2(file, collection, H5P_DEFAULT), "'%s': opening /%s", path, collection);
  PetscCheck(recipe->channels <= ACKD_RASTER_MAX_BANDS, comm, PETSC_ERR_SUP,
             "'%s': /%s has %" PetscInt_FMT " bands; rasters are read with at most %d", path, collection,
             recipe->channels, ACKD_RASTER_MAX_BANDS);
  PetscCall(AckdH5AttrReadString(group, "normalization", normalization, sizeof normalization, &found));
  recipe->normalization = ACKD_NORMALIZE_NONE;
  PetscBool known       = PETSC_FALSE;
  for (int k = 0; k < 3; k++)
    if (!strcmp(normalization, AckdNormalizationNames[k])) {
      recipe->normalization = (AckdNormalization)k;
      known                 = PETSC_TRUE;
    }
  PetscCheck(known, comm, PETSC_ERR_FILE_UNEXPECTED,
             "'%s': /%s was normalised as '%s', which this ackd does not know; use the ackd that curated it", path,
             collection, normalization);
  if (recipe->normalization == ACKD_NORMALIZE_BAND_STANDARDIZE) {
    PetscCall(read_doubles(group, "source_band_mean", recipe->channels, recipe->mean, path, collection));
    PetscCall(read_doubles(group, "source_band_std", recipe->channels, recipe->std, path, collection));
  }
  PetscCall(read_source_bands(group, recipe->channels, recipe->bands, &recipe->bands_recorded, path, collection));
  H5Gclose(group);
  PetscCall(AckdH5FileClose(&file, path));
  PetscFunctionReturn(0);
}

void AckdFillInvalid(PetscInt channels, size_t plane, float *x, const unsigned char *valid)
{
  for (PetscInt c = 0; c < channels; c++) {
    float *band = x + c * plane;
    double sum  = 0;
    size_t n    = 0;
    for (size_t i = 0; i < plane; i++)
      if (valid[i]) sum += band[i], n++;
    const float fill = n ? (float)(sum / (double)n) : 0.0f;
    for (size_t i = 0; i < plane; i++)
      if (!valid[i]) band[i] = fill;
  }
}

void AckdInputRecipeApply(const AckdInputRecipe *r, float *x)
{
  const size_t plane = (size_t)r->height * (size_t)r->width;

  switch (r->normalization) {
  case ACKD_NORMALIZE_IMAGE_MAX:
    AckdNormalizeImageMax(x, (size_t)r->channels * plane);
    break;
  case ACKD_NORMALIZE_BAND_STANDARDIZE:
    /* The arithmetic of AckdCollectionWriterStandardize, so that a file image gets the stored value. */
    for (PetscInt c = 0; c < r->channels; c++) {
      const double mean = r->mean[c], inv_std = r->std[c] > 0 ? 1.0 / r->std[c] : 1.0;
      for (size_t i = 0; i < plane; i++) x[c * plane + i] = (float)((x[c * plane + i] - mean) * inv_std);
    }
    break;
  case ACKD_NORMALIZE_NONE:
    break;
  }
}
