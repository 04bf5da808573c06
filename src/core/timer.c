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

void AckdSleep(double seconds)
{
  if (seconds > 0) nanosleep(&(struct timespec){(time_t)seconds, (long)(1e9 * (seconds - (time_t)seconds))}, NULL);
}
