/* Checkpoint file names and the listing of a checkpoint directory. */
#include "ckpt_private.h"
#include <dirent.h>
#include <string.h>

void AckdCkptPath(const char *dir, PetscInt step, char *path, size_t len)
{
  snprintf(path, len, "%s/ckpt_%012" PetscInt_FMT ".h5", dir, step);
}

void AckdCkptEntryPath(const char *group, const char *name, char *path, size_t len)
{
  const char *dot = strrchr(name, '.');
  if (dot)
    snprintf(path, len, "/%s/%.*s/%s", group, (int)(dot - name), name, dot + 1);
  else
    snprintf(path, len, "/%s/%s", group, name);
}

static int newest_first(const void *a, const void *b)
{
  PetscInt x = *(const PetscInt *)a, y = *(const PetscInt *)b;
  return x < y ? 1 : (x > y ? -1 : 0);
}

PetscErrorCode AckdCkptList(const char *dir, PetscBool partial, PetscInt **steps, PetscInt *n)
{
  DIR           *d = opendir(dir);
  struct dirent *e;
  PetscInt       cap = 16;

  PetscFunctionBeginUser;
  *n = 0;
  PetscCall(PetscMalloc1(cap, steps));
  if (!d) PetscFunctionReturn(0); /* no directory yet: no checkpoint */
  while ((e = readdir(d))) {
    long long step;
    char      tail[16];
    if (sscanf(e->d_name, "ckpt_%lld.%15s", &step, tail) != 2 || strcmp(tail, partial ? "h5.part" : "h5")) continue;
    if (*n == cap) {
      cap *= 2;
      PetscCall(PetscRealloc(sizeof(PetscInt) * (size_t)cap, steps));
    }
    (*steps)[(*n)++] = (PetscInt)step;
  }
  closedir(d);
  qsort(*steps, (size_t)*n, sizeof(PetscInt), newest_first);
  PetscFunctionReturn(0);
}
