/* Sliding-window geometry and the per-pixel vote of overlapping windows. A
 * classifier gives one distribution per window; a pixel takes the mean of
 * those of the windows that contain it, so that with a stride below the patch
 * every pixel's class rests on several views of its neighbourhood and class
 * borders fall between window centres rather than on the window grid. */
#include <ackd/predict.h>
#include <math.h>

PetscInt AckdWindowOrigins(PetscInt size, PetscInt patch, PetscInt stride, PetscInt *origins)
{
  if (patch > size || patch < 1 || stride < 1) return 0;
  PetscInt n = 0, x = 0;
  for (; x + patch < size; x += stride) {
    if (origins) origins[n] = x;
    n++;
  }
  if (origins) origins[n] = size - patch; /* the last window ends at the edge */
  return n + 1;
}

/* The windows along one axis that contain pixel p: [*lo, *hi) of the sorted origins. */
static void covering(PetscInt p, PetscInt patch, PetscInt n, const PetscInt *origins, PetscInt *lo, PetscInt *hi)
{
  PetscInt a = 0, b = n;
  while (a < b) { /* first origin > p - patch */
    PetscInt m = (a + b) / 2;
    if (origins[m] <= p - patch)
      a = m + 1;
    else
      b = m;
  }
  *lo = a;
  for (b = a; b < n && origins[b] <= p; b++) {}
  *hi = b;
}

void AckdWindowsCompose(PetscInt width, PetscInt patch, PetscInt nx, const PetscInt *xs, PetscInt ny,
                        const PetscInt *ys, PetscInt K, const float *window_probability, const unsigned char *used,
                        PetscInt y0, PetscInt rows, const unsigned char *valid, unsigned char *classes,
                        float *probability)
{
  double       acc[ACKD_MAP_NODATA_CLASS]; /* K fits: the byte class map refuses more classes */
  const size_t plane = (size_t)rows * (size_t)width;

  for (PetscInt r = 0; r < rows; r++) {
    PetscInt ylo, yhi;
    covering(y0 + r, patch, ny, ys, &ylo, &yhi);
    for (PetscInt x = 0; x < width; x++) {
      const size_t i = (size_t)r * width + x;
      PetscInt     xlo, xhi, votes = 0;
      covering(x, patch, nx, xs, &xlo, &xhi);
      for (PetscInt k = 0; k < K; k++) acc[k] = 0;
      if (valid[i])
        for (PetscInt wy = ylo; wy < yhi; wy++)
          for (PetscInt wx = xlo; wx < xhi; wx++) {
            const PetscInt w = wy * nx + wx;
            if (!used[w]) continue;
            votes++;
            for (PetscInt k = 0; k < K; k++) acc[k] += window_probability[w * K + k];
          }
      PetscInt best = 0;
      for (PetscInt k = 1; k < K; k++)
        if (acc[k] > acc[best]) best = k;
      classes[i] = votes ? (unsigned char)best : (unsigned char)ACKD_MAP_NODATA_CLASS;
      if (probability)
        for (PetscInt k = 0; k < K; k++) probability[k * plane + i] = votes ? (float)(acc[k] / votes) : NAN;
    }
  }
}
