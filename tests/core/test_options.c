/* The option readers and the error record: a bad value must fail with a
 * message that names the option and the fix, and an unread option must be
 * refused. */
#include <ackd/core.h>
#include <string.h>
#include "check.h"

typedef struct {
  PetscInt  count, choice;
  PetscReal rate;
  PetscBool flag;
  char      path[64];
} Settings;

static const char *const SOLVERS[] = {"sinkhorn", "unbalanced", "argmin"};

static PetscErrorCode read_settings(const char *prefix, Settings *s)
{
  PetscFunctionBeginUser;
  PetscOptionsBegin(PETSC_COMM_WORLD, prefix, "test settings", NULL);
  PetscCall(AckdOptionsInt(PetscOptionsObject, "-count", "a count", &s->count, 1, 100, NULL));
  PetscCall(AckdOptionsReal(PetscOptionsObject, "-rate", "a rate", &s->rate, 0.0, 1.0, NULL));
  PetscCall(AckdOptionsBool(PetscOptionsObject, "-flag", "a flag", &s->flag, NULL));
  PetscCall(AckdOptionsString(PetscOptionsObject, "-path", "a path", s->path, sizeof s->path, NULL));
  PetscCall(AckdOptionsChoice(PetscOptionsObject, "-solver", "a solver", SOLVERS, 3, &s->choice, NULL));
  PetscOptionsEnd();
  PetscFunctionReturn(0);
}

/* Sets one option, reads the settings, and returns the recorded error. */
static PetscErrorCode try_value(const char *option, const char *value, AckdErrorRecord *record)
{
  Settings s = {.count = 5, .rate = 0.5, .flag = PETSC_FALSE, .path = "x", .choice = 0};
  memset(record, 0, sizeof *record);
  PetscOptionsClear(NULL);
  PetscOptionsSetValue(NULL, option, value);
  PetscPushErrorHandler(AckdErrorHandler, record);
  PetscErrorCode ierr = read_settings("t_", &s);
  PetscPopErrorHandler();
  return ierr;
}

static void expect_error(const char *option, const char *value, const char *fragment)
{
  AckdErrorRecord record;
  PetscErrorCode  ierr = try_value(option, value, &record);
  CHECK(ierr == PETSC_ERR_USER_INPUT, "%s %s: error code %d, want PETSC_ERR_USER_INPUT", option, value, (int)ierr);
  CHECK(strstr(record.message, option) != NULL, "%s %s: message '%s' does not name the option", option, value,
        record.message);
  CHECK(strstr(record.message, fragment) != NULL, "%s %s: message '%s' lacks '%s'", option, value, record.message,
        fragment);
  CHECK(strchr(record.message, '\n') == NULL, "message must be one line: '%s'", record.message);
}

static void test_bad_values(void)
{
  expect_error("-t_count", "abc", "not an integer");
  expect_error("-t_count", "1000", "out of range; use a value in [1, 100]");
  expect_error("-t_count", "", "needs an integer value");
  expect_error("-t_rate", "fast", "not a number");
  expect_error("-t_rate", "1.5", "out of range; use a value in [0, 1]");
  expect_error("-t_flag", "maybe", "not a boolean");
  expect_error("-t_solver", "sinkorn", "not one of: sinkhorn, unbalanced, argmin");
}

static void test_good_values(void)
{
  Settings s = {.count = 5, .rate = 0.5, .flag = PETSC_FALSE, .path = "x", .choice = 0};
  PetscOptionsClear(NULL);
  PetscOptionsInsertString(NULL, "-t_count 42 -t_rate 0.25 -t_flag -t_path out/a.h5 -t_solver ARGMIN");
  CHECK(read_settings("t_", &s) == 0, "valid options must parse");
  CHECK(s.count == 42 && s.rate == 0.25 && s.flag && !strcmp(s.path, "out/a.h5") && s.choice == 2,
        "parsed %d %g %d %s %d", (int)s.count, (double)s.rate, (int)s.flag, s.path, (int)s.choice);
}

static void test_unused_option(void)
{
  Settings        s = {.count = 5, .rate = 0.5, .path = "x"};
  AckdErrorRecord record;
  memset(&record, 0, sizeof record);
  PetscOptionsClear(NULL);
  /* -match_ot_eps belongs to another stage of the same options file: let through. */
  PetscOptionsInsertString(NULL, "-t_count 3 -t_epohcs 10 -quiet -match_ot_eps 0.1");
  read_settings("t_", &s);
  PetscPushErrorHandler(AckdErrorHandler, &record);
  PetscErrorCode ierr = AckdOptionsCheckUnused(PETSC_COMM_WORLD, "train", "synth_ match_");
  PetscPopErrorHandler();
  CHECK(ierr == PETSC_ERR_USER_INPUT, "an unread option must be an error (got %d)", (int)ierr);
  CHECK(strstr(record.message, "-t_epohcs") && strstr(record.message, "ackd train -help"), "message '%s'",
        record.message);
  CHECK(!strstr(record.message, "-quiet"), "runtime options are not unknown: '%s'", record.message);
  CHECK(!strstr(record.message, "-match_ot_eps"), "another stage's option is not unknown: '%s'", record.message);
}

int main(int argc, char **argv)
{
  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  test_bad_values();
  test_good_values();
  test_unused_option();
  PetscOptionsClear(NULL);
  int failed = CHECK_REPORT("test_options");
  PetscCall(PetscFinalize());
  return failed;
}
