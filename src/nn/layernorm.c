/* Layer normalisation over the last `features` floats of each row (PyTorch's
 * nn.LayerNorm(features)), for the projection heads and token sequences.
 * Statistics are accumulated in double: rows are short and a float sum of
 * squares loses digits when the mean is large. */
#include <ackd/nn.h>
#include <math.h>

PetscErrorCode AckdLayerNormSetUp(AckdLayerNorm *ln, AckdParams *params, const char *name, PetscInt features)
{
  char pname[ACKD_NN_NAME_LEN + 8];

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(ln, sizeof *ln));
  PetscCall(PetscStrncpy(ln->name, name, sizeof ln->name));
  PetscCheck(features > 0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE, "layer %s: features must be positive", name);
  ln->features = features;
  ln->eps      = 1e-5;
  ln->params   = params;
  PetscCall(PetscSNPrintf(pname, sizeof pname, "%s.weight", name));
  PetscCall(AckdParamsAdd(params, pname, features, 0, ACKD_INIT_ONES, &ln->weight));
  PetscCall(PetscSNPrintf(pname, sizeof pname, "%s.bias", name));
  PetscCall(AckdParamsAdd(params, pname, features, 0, ACKD_INIT_ZEROS, &ln->bias));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdLayerNormForward(AckdLayerNorm *ln, const AckdTensor *x, AckdTensor *y)
{
  PetscInt     d = ln->features, rows = AckdTensorSize(x) / d;
  const float *gamma = ln->params->values + ln->weight, *beta = ln->params->values + ln->bias;

  PetscFunctionBeginUser;
  PetscCheck(AckdTensorSize(x) % d == 0, PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ,
             "layer %s: %" PetscInt_FMT " elements are not rows of %" PetscInt_FMT " features", ln->name,
             AckdTensorSize(x), d);
  if (rows > ln->rows_capacity) {
    PetscCall(PetscFree2(ln->mean, ln->rstd));
    PetscCall(PetscMalloc2(rows, &ln->mean, rows, &ln->rstd));
    ln->rows_capacity = rows;
  }
  *y = AckdTensorView(y->data, x->n, x->c, x->h, x->w);
#pragma omp parallel for schedule(static)
  for (PetscInt r = 0; r < rows; r++) {
    const float *in  = x->data + r * d;
    float       *out = y->data + r * d;
    double       sum = 0.0, sq = 0.0;
    for (PetscInt k = 0; k < d; k++) sum += in[k];
    double mean = sum / d;
    for (PetscInt k = 0; k < d; k++) sq += (in[k] - mean) * (in[k] - mean);
    double rstd = 1.0 / sqrt(sq / d + ln->eps);
    ln->mean[r] = (float)mean;
    ln->rstd[r] = (float)rstd;
    for (PetscInt k = 0; k < d; k++) out[k] = (float)((in[k] - mean) * rstd * gamma[k] + beta[k]);
  }
  PetscFunctionReturn(0);
}

/* With x̂ = (x - μ)·r and g = dy·γ: dx = r·(g - mean(g) - x̂·mean(g·x̂)). */
PetscErrorCode AckdLayerNormBackward(AckdLayerNorm *ln, const AckdTensor *x, const AckdTensor *dy, AckdTensor *dx)
{
  PetscInt     d = ln->features, rows = AckdTensorSize(x) / d;
  const float *gamma  = ln->params->values + ln->weight;
  float       *dgamma = ln->params->grads + ln->weight, *dbeta = ln->params->grads + ln->bias;

  PetscFunctionBeginUser;
  PetscCheck(rows <= ln->rows_capacity, PETSC_COMM_SELF, PETSC_ERR_ORDER, "layer %s: backward before forward",
             ln->name);
  for (PetscInt k = 0; k < d; k++) dgamma[k] = dbeta[k] = 0.0f;
  for (PetscInt r = 0; r < rows; r++) {
    const float *in = x->data + r * d, *g = dy->data + r * d;
    double       mean = ln->mean[r], rstd = ln->rstd[r];
    for (PetscInt k = 0; k < d; k++) {
      dgamma[k] += (float)(g[k] * (in[k] - mean) * rstd);
      dbeta[k] += g[k];
    }
  }
  if (!dx) PetscFunctionReturn(0);
  *dx = AckdTensorView(dx->data, x->n, x->c, x->h, x->w);
#pragma omp parallel for schedule(static)
  for (PetscInt r = 0; r < rows; r++) {
    const float *in = x->data + r * d, *g = dy->data + r * d;
    float       *out  = dx->data + r * d;
    double       mean = ln->mean[r], rstd = ln->rstd[r], mg = 0.0, mgx = 0.0;
    for (PetscInt k = 0; k < d; k++) {
      double gk = (double)g[k] * gamma[k];
      mg += gk;
      mgx += gk * (in[k] - mean) * rstd;
    }
    mg /= d;
    mgx /= d;
    for (PetscInt k = 0; k < d; k++) {
      double xhat = (in[k] - mean) * rstd;
      out[k]      = (float)(rstd * ((double)g[k] * gamma[k] - mg - xhat * mgx));
    }
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdLayerNormDestroy(AckdLayerNorm *ln)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree2(ln->mean, ln->rstd));
  ln->rows_capacity = 0;
  PetscFunctionReturn(0);
}
