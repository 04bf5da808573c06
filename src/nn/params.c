/* A model's parameters: one contiguous buffer of values, one of gradients with
 * the same layout, and one of non-trainable buffers (running statistics).
 * Layers declare what they need and keep offsets; one allocation serves all, so
 * optimizers, gradient allreduce and checkpoints see a single vector. */
#include <ackd/nn.h>
#include <math.h>
#include <string.h>

/* The Philox stream tag of initialisation draws ("INIT"): no other purpose uses it. */
static const uint32_t INIT_STREAM_TAG = 0x494E4954u;

PetscErrorCode AckdParamsCreate(AckdParams *params)
{
  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(params, sizeof *params));
  PetscFunctionReturn(0);
}

static PetscErrorCode add_entry(AckdParamEntry **list, PetscInt *n, PetscInt *cap, PetscInt *total, const char *name,
                                PetscInt ndims, const PetscInt *dims, PetscInt fan_in, AckdInit init, PetscInt *offset)
{
  PetscInt size = 1;
  for (PetscInt d = 0; d < ndims; d++) size *= dims[d];

  PetscFunctionBeginUser;
  PetscCheck(size > 0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "parameter %s: size %" PetscInt_FMT " must be positive; check the layer's shape", name, size);
  PetscCheck(strlen(name) < ACKD_NN_NAME_LEN, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "parameter name '%s' is longer than %d characters; use a shorter layer name", name, ACKD_NN_NAME_LEN - 1);
  if (*n == *cap) {
    PetscInt        cap2 = *cap ? 2 * *cap : 64;
    AckdParamEntry *grown;
    PetscCall(PetscMalloc1(cap2, &grown));
    if (*n) PetscCall(PetscArraycpy(grown, *list, *n));
    PetscCall(PetscFree(*list));
    *list = grown;
    *cap  = cap2;
  }
  AckdParamEntry *e = &(*list)[(*n)++];
  PetscCall(PetscStrncpy(e->name, name, sizeof e->name));
  /* Each parameter starts on a 64-byte boundary: vector loads in the kernels
   * and in the optimizer never straddle a cache line at a tensor's start. */
  e->offset = (*total + 15) / 16 * 16;
  e->size   = size;
  e->ndims  = ndims;
  for (PetscInt d = 0; d < ndims; d++) e->dims[d] = dims[d];
  e->fan_in = fan_in;
  e->init   = init;
  *total    = e->offset + size;
  *offset   = e->offset;
  PetscFunctionReturn(0);
}

PetscErrorCode AckdParamsAddShaped(AckdParams *params, const char *name, PetscInt ndims, const PetscInt *dims,
                                   PetscInt fan_in, AckdInit init, PetscInt *offset)
{
  PetscFunctionBeginUser;
  PetscCheck(!params->setup, PETSC_COMM_SELF, PETSC_ERR_ORDER,
             "parameter %s declared after AckdParamsSetUp; set up every layer first", name);
  PetscCheck(ndims >= 1 && ndims <= 4, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE, "parameter %s: 1 to 4 dimensions",
             name);
  PetscCall(add_entry(&params->params, &params->nparams, &params->cap_params, &params->size, name, ndims, dims, fan_in,
                      init, offset));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdParamsAdd(AckdParams *params, const char *name, PetscInt size, PetscInt fan_in, AckdInit init,
                             PetscInt *offset)
{
  PetscFunctionBeginUser;
  PetscCall(AckdParamsAddShaped(params, name, 1, &size, fan_in, init, offset));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdParamsAddBuffer(AckdParams *params, const char *name, PetscInt size, AckdInit init, PetscInt *offset)
{
  PetscFunctionBeginUser;
  PetscCheck(!params->setup, PETSC_COMM_SELF, PETSC_ERR_ORDER,
             "buffer %s declared after AckdParamsSetUp; set up every layer first", name);
  PetscCall(add_entry(&params->buffers, &params->nbuffers, &params->cap_buffers, &params->buffer_size, name, 1, &size,
                      0, init, offset));
  PetscFunctionReturn(0);
}

static void fill_constant(float *x, PetscInt n, float v)
{
  for (PetscInt i = 0; i < n; i++) x[i] = v;
}

PetscErrorCode AckdParamsSetUp(AckdParams *params)
{
  PetscFunctionBeginUser;
  PetscCheck(!params->setup, PETSC_COMM_SELF, PETSC_ERR_ORDER, "AckdParamsSetUp called twice");
  PetscInt n = PetscMax(params->size, 1), nb = PetscMax(params->buffer_size, 1);
  PetscCall(PetscCalloc3(n, &params->values, n, &params->grads, nb, &params->buffer_values));
  for (PetscInt i = 0; i < params->nbuffers; i++) {
    const AckdParamEntry *e = &params->buffers[i];
    fill_constant(params->buffer_values + e->offset, e->size, e->init == ACKD_INIT_ONES ? 1.0f : 0.0f);
  }
  params->setup = PETSC_TRUE;
  PetscCall(AckdParamsInitialize(params, 0));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdParamsInitialize(AckdParams *params, uint64_t seed)
{
  PetscFunctionBeginUser;
  PetscCheck(params->setup, PETSC_COMM_SELF, PETSC_ERR_ORDER, "AckdParamsInitialize before AckdParamsSetUp");
  for (PetscInt i = 0; i < params->nparams; i++) {
    const AckdParamEntry *e = &params->params[i];
    float                *x = params->values + e->offset;
    AckdRng               rng;
    /* PyTorch's kaiming_uniform_(a = sqrt 5) has bound gain*sqrt(3/fan_in)
     * with gain = sqrt(2/(1+a^2)) = sqrt(1/3): exactly 1/sqrt(fan_in), the
     * bias bound too. */
    double bound = e->fan_in > 0 ? 1.0 / sqrt((double)e->fan_in) : 0.0;
    AckdRngInit(&rng, seed, (uint64_t)i, INIT_STREAM_TAG);
    switch (e->init) {
    case ACKD_INIT_KAIMING_UNIFORM:
    case ACKD_INIT_FAN_IN_UNIFORM:
      for (PetscInt k = 0; k < e->size; k++) x[k] = (float)AckdRngUniformRange(&rng, -bound, bound);
      break;
    case ACKD_INIT_ONES:
      fill_constant(x, e->size, 1.0f);
      break;
    case ACKD_INIT_ZEROS:
      fill_constant(x, e->size, 0.0f);
      break;
    }
  }
  PetscCall(AckdParamsZeroGrad(params));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdParamsZeroGrad(AckdParams *params)
{
  PetscFunctionBeginUser;
  PetscCall(PetscArrayzero(params->grads, PetscMax(params->size, 1)));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdParamsFind(const AckdParams *params, const char *name, PetscBool *is_buffer,
                              const AckdParamEntry **entry)
{
  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < params->nparams; i++)
    if (!strcmp(params->params[i].name, name)) {
      *entry = &params->params[i];
      if (is_buffer) *is_buffer = PETSC_FALSE;
      PetscFunctionReturn(0);
    }
  for (PetscInt i = 0; i < params->nbuffers; i++)
    if (!strcmp(params->buffers[i].name, name)) {
      *entry = &params->buffers[i];
      if (is_buffer) *is_buffer = PETSC_TRUE;
      PetscFunctionReturn(0);
    }
  SETERRQ(PETSC_COMM_SELF, PETSC_ERR_ARG_WRONG, "model has no parameter or buffer named '%s'; check the layer name",
          name);
}

PetscErrorCode AckdParamsDestroy(AckdParams *params)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree3(params->values, params->grads, params->buffer_values));
  PetscCall(PetscFree(params->params));
  PetscCall(PetscFree(params->buffers));
  PetscCall(PetscMemzero(params, sizeof *params));
  PetscFunctionReturn(0);
}

/* "layer1.0.conv1.weight" -> group "layer1.0.conv1", dataset "weight" */
static PetscErrorCode split_name(const char *name, char *layer, size_t len, const char **tensor)
{
  const char *dot = strrchr(name, '.');

  PetscFunctionBeginUser;
  PetscCheck(dot && dot != name, PETSC_COMM_SELF, PETSC_ERR_ARG_WRONG, "parameter '%s' has no layer prefix", name);
  PetscCheck((size_t)(dot - name) < len, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE, "parameter name '%s' too long",
             name);
  memcpy(layer, name, (size_t)(dot - name));
  layer[dot - name] = 0;
  *tensor           = dot + 1;
  PetscFunctionReturn(0);
}

static PetscErrorCode open_or_create_group(hid_t loc, const char *name, hid_t *group)
{
  PetscFunctionBeginUser;
  htri_t exists = H5Lexists(loc, name, H5P_DEFAULT);
  AckdCallH5(exists, "looking up group '%s'", name);
  if (exists)
    AckdCallH5(*group = H5Gopen2(loc, name, H5P_DEFAULT), "opening group '%s'", name);
  else
    AckdCallH5(*group = H5Gcreate2(loc, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "creating group '%s'", name);
  PetscFunctionReturn(0);
}

static PetscErrorCode save_entries(MPI_Comm comm, hid_t top, const AckdParamEntry *entries, PetscInt n,
                                   const float *base)
{
  char layer[ACKD_NN_NAME_LEN];

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < n; i++) {
    const AckdParamEntry *e = &entries[i];
    const char           *tensor;
    hsize_t               dims[4];
    hid_t                 g = H5I_INVALID_HID;
    for (PetscInt d = 0; d < e->ndims; d++) dims[d] = (hsize_t)e->dims[d];
    PetscCall(split_name(e->name, layer, sizeof layer, &tensor));
    PetscCall(open_or_create_group(top, layer, &g));
    PetscErrorCode ierr = AckdH5WriteSmall(comm, g, tensor, H5T_NATIVE_FLOAT, (int)e->ndims, dims, base + e->offset);
    H5Gclose(g);
    PetscCall(ierr);
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdParamsSave(const AckdParams *params, MPI_Comm comm, hid_t loc, const char *group)
{
  hid_t top = H5I_INVALID_HID;

  PetscFunctionBeginUser;
  PetscCall(open_or_create_group(loc, group, &top));
  PetscErrorCode ierr = save_entries(comm, top, params->params, params->nparams, params->values);
  if (!ierr) ierr = save_entries(comm, top, params->buffers, params->nbuffers, params->buffer_values);
  H5Gclose(top);
  PetscCall(ierr);
  PetscFunctionReturn(0);
}

static PetscErrorCode load_entry(hid_t top, const char *group, const AckdParamEntry *e, float *base)
{
  char        path[2 * ACKD_NN_NAME_LEN], layer[ACKD_NN_NAME_LEN];
  const char *tensor;
  AckdH5Shape shape;
  hid_t       dset;

  PetscFunctionBeginUser;
  PetscCall(split_name(e->name, layer, sizeof layer, &tensor));
  PetscCall(PetscSNPrintf(path, sizeof path, "%s/%s", layer, tensor));
  PetscBool exists = (PetscBool)(H5Lexists(top, layer, H5P_DEFAULT) > 0 && H5Lexists(top, path, H5P_DEFAULT) > 0);
  PetscCheck(exists, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED,
             "/%s/%s is missing: the file holds another architecture; check -arch and -width", group, path);
  AckdCallH5(dset = H5Dopen2(top, path, H5P_DEFAULT), "opening /%s/%s", group, path);
  PetscErrorCode ierr = AckdH5DatasetShapeOf(dset, NULL, path, &shape);
  if (ierr) H5Dclose(dset); /* the error is raised already */
  PetscCall(ierr);
  PetscBool same = (PetscBool)(shape.rank == e->ndims);
  for (PetscInt d = 0; same && d < e->ndims; d++) same = (PetscBool)(shape.dims[d] == (hsize_t)e->dims[d]);
  if (!same) H5Dclose(dset);
  PetscCheck(same, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED,
             "/%s/%s has another shape than the model's; check -arch, -width and the band and class counts", group,
             path);
  herr_t status = H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, base + e->offset);
  H5Dclose(dset);
  AckdCallH5(status, "reading /%s/%s", group, path);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdParamsLoad(AckdParams *params, hid_t loc, const char *group)
{
  hid_t top = H5I_INVALID_HID;

  PetscFunctionBeginUser;
  PetscCheck(params->setup, PETSC_COMM_SELF, PETSC_ERR_ORDER, "AckdParamsLoad before AckdParamsSetUp");
  PetscCheck(H5Lexists(loc, group, H5P_DEFAULT) > 0, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED,
             "group /%s is missing: not a model or checkpoint file", group);
  AckdCallH5(top = H5Gopen2(loc, group, H5P_DEFAULT), "opening /%s", group);
  PetscErrorCode ierr = 0;
  for (PetscInt i = 0; !ierr && i < params->nparams; i++)
    ierr = load_entry(top, group, &params->params[i], params->values);
  for (PetscInt i = 0; !ierr && i < params->nbuffers; i++)
    ierr = load_entry(top, group, &params->buffers[i], params->buffer_values);
  H5Gclose(top);
  PetscCall(ierr);
  PetscFunctionReturn(0);
}
