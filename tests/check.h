/* A minimal assertion kit for ackd's C tests: each failed check prints where
 * and why, and the test's exit status counts the failures. */
#ifndef ACKD_TESTS_CHECK_H
#define ACKD_TESTS_CHECK_H

#include <stdio.h>

static int check_failures = 0;

#define CHECK(cond, ...)                                                                                               \
  do {                                                                                                                 \
    if (!(cond)) {                                                                                                     \
      check_failures++;                                                                                                \
      fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);                                         \
      fprintf(stderr, __VA_ARGS__);                                                                                    \
      fputc('\n', stderr);                                                                                             \
    }                                                                                                                  \
  } while (0)

#define CHECK_REPORT(name)                                                                                             \
  (printf("%s: %s (%d failed check%s)\n", name, check_failures ? "FAILED" : "ok", check_failures,                      \
          check_failures == 1 ? "" : "s"),                                                                             \
   check_failures ? 1 : 0)

#endif
