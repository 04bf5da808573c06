/* The progress bar's text and its throttle. */
#include <ackd/core.h>
#include <string.h>
#include "check.h"

int main(int argc, char **argv)
{
  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  AckdLog      log = {PETSC_COMM_WORLD, PETSC_FALSE};
  AckdProgress bar;
  char         line[160];

  PetscCall(AckdProgressBegin(&bar, &log, "synth", 200, "img"));
  bar.done = 100;
  AckdProgressFormat(&bar, bar.start + 10.0, line, sizeof line);
  /* 100 of 200 in 10 s: 10 img/s, 50%, 10 s to go, half the cells filled. */
  CHECK(strstr(line, " 50% 100/200 10.0 img/s ETA 00:10") != NULL, "got '%s'", line);
  CHECK(strstr(line, "[############............]") != NULL, "got '%s'", line);

  /* Without a unit: the fraction and the ETA only. */
  AckdProgress part;
  PetscCall(AckdProgressBegin(&part, &log, "sinkhorn", 1000, NULL));
  part.done = 250;
  AckdProgressFormat(&part, part.start + 10.0, line, sizeof line);
  CHECK(strstr(line, "sinkhorn     [######..................]  25% ETA 00:30") != NULL, "got '%s'", line);
  CHECK(strstr(line, "/s") == NULL && strstr(line, "250") == NULL, "counts shown without a unit: '%s'", line);

  /* However fast updates come, the bar is drawn at most once per interval. */
  FILE *saved = stderr;
  stderr      = fopen("/dev/null", "w");
  bar.active  = PETSC_TRUE;
  bar.draws   = 0;
  double t0   = AckdTimeNow();
  for (PetscInt i = 0; i < 200000; i++) PetscCall(AckdProgressUpdate(&bar, i % 200));
  double elapsed = AckdTimeNow() - t0;
  PetscCall(AckdProgressEnd(&bar));
  fclose(stderr);
  stderr           = saved;
  PetscInt allowed = (PetscInt)(elapsed / bar.min_interval) + 2; /* + the first draw and the final one */
  CHECK(bar.draws <= allowed, "%d draws in %.3f s; the throttle allows %d", (int)bar.draws, elapsed, (int)allowed);
  CHECK(bar.draws >= 2, "the first update and the end must draw (%d draws)", (int)bar.draws);

  int failed = CHECK_REPORT("test_progress");
  PetscCall(PetscFinalize());
  return failed;
}
