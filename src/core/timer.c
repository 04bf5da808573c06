/* Wall-clock timing; monotonic so that clock adjustments never produce
 * negative durations in logs or benchmarks. */
#include <ackd/core.h>
#include <time.h>

double AckdTimeNow(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
