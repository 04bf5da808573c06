/* Fully connected layer, y = x Wᵀ + b (AckdSgemm). W is (out, in) as PyTorch
 * stores it, so weights exchange with torch.nn.Linear unchanged. */
#include <ackd/nn.h>

PetscErrorCode AckdLinearSetUp(AckdLinear *lin, AckdParams *params, const char *name, PetscInt in_features,
                               PetscInt out_features, PetscBool bias)
{
  char pname[ACKD_NN_NAME_LEN + 8];

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(lin, sizeof *lin));
  PetscCall(PetscStrncpy(lin->name, name, sizeof lin->name));
  PetscCheck(in_features > 0 && out_features > 0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "layer %s: feature counts must be positive", name);
  lin->in_features  = in_features;
  lin->out_features = out_features;
  lin->has_bias     = bias;
  lin->params       = params;
  PetscCall(PetscSNPrintf(pname, sizeof pname, "%s.weight", name));
  PetscInt shape[2] = {out_features, in_features};
  PetscCall(AckdParamsAddShaped(params, pname, 2, shape, in_features, ACKD_INIT_KAIMING_UNIFORM, &lin->weight));
  lin->bias = -1;
  if (bias) {
    PetscCall(PetscSNPrintf(pname, sizeof pname, "%s.bias", name));
    PetscCall(AckdParamsAdd(params, pname, out_features, in_features, ACKD_INIT_FAN_IN_UNIFORM, &lin->bias));
  }
  PetscFunctionReturn(0);
}

/* (B, C, H, W) with C*H*W = in flattens to (B, out, 1, 1); otherwise the last
 * dimension holds the features and is replaced. */
PetscErrorCode AckdLinearOutputShape(const AckdLinear *lin, const AckdTensor *x, AckdTensor *y)
{
  PetscFunctionBeginUser;
  PetscCheck(x->block <= 1, PETSC_COMM_SELF, PETSC_ERR_ARG_WRONG,
             "layer %s: a linear layer reads plain rows, not a channel-blocked layout", lin->name);
  y->block = 0;
  if (x->c * x->h * x->w == lin->in_features) {
    y->n = x->n;
    y->c = lin->out_features;
    y->h = y->w = 1;
  } else {
    PetscCheck(x->w == lin->in_features, PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ,
               "layer %s: input (%" PetscInt_FMT ", %" PetscInt_FMT ", %" PetscInt_FMT ", %" PetscInt_FMT
               ") has neither %" PetscInt_FMT " features per sample nor per row",
               lin->name, x->n, x->c, x->h, x->w, lin->in_features);
    y->n = x->n;
    y->c = x->c;
    y->h = x->h;
    y->w = lin->out_features;
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdLinearForward(AckdLinear *lin, AckdEngine *engine, const AckdTensor *x, AckdTensor *y)
{
  const float *w    = lin->params->values + lin->weight;
  PetscInt     rows = AckdTensorSize(x) / lin->in_features, in = lin->in_features, out = lin->out_features;

  PetscFunctionBeginUser;
  PetscCall(AckdLinearOutputShape(lin, x, y));
  if (lin->has_bias) {
    const float *b = lin->params->values + lin->bias;
    for (PetscInt r = 0; r < rows; r++) PetscCall(PetscArraycpy(y->data + r * out, b, out));
  }
  PetscCall(AckdSgemm('N', 'T', rows, out, in, 1.0f, x->data, in, w, in, lin->has_bias ? 1.0f : 0.0f, y->data, out));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdLinearBackward(AckdLinear *lin, AckdEngine *engine, const AckdTensor *x, const AckdTensor *dy,
                                  AckdTensor *dx)
{
  const float *w    = lin->params->values + lin->weight;
  float       *dw   = lin->params->grads + lin->weight;
  PetscInt     rows = AckdTensorSize(x) / lin->in_features, in = lin->in_features, out = lin->out_features;

  PetscFunctionBeginUser;
  PetscCheck(AckdTensorSize(dy) == rows * out, PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ,
             "layer %s: output gradient has %" PetscInt_FMT " elements, expected %" PetscInt_FMT, lin->name,
             AckdTensorSize(dy), rows * out);
  /* dW = dyᵀ x, db = column sums of dy, dx = dy W */
  PetscCall(AckdSgemm('T', 'N', out, in, rows, 1.0f, dy->data, out, x->data, in, 0.0f, dw, in));
  if (lin->has_bias) {
    float *db = lin->params->grads + lin->bias;
    for (PetscInt o = 0; o < out; o++) db[o] = 0.0f;
    for (PetscInt r = 0; r < rows; r++)
      for (PetscInt o = 0; o < out; o++) db[o] += dy->data[r * out + o];
  }
  if (dx) {
    *dx = AckdTensorView(dx->data, x->n, x->c, x->h, x->w);
    PetscCall(AckdSgemm('N', 'N', rows, in, out, 1.0f, dy->data, out, w, in, 0.0f, dx->data, in));
  }
  PetscFunctionReturn(0);
}
