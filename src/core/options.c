/* Option readers that make a bad value a one-line fix.
 *
 * PETSc's own readers report "Input string abc has no integer value" without
 * saying which option held it; these read the raw text first, parse it with
 * PETSc's own converters, and on failure raise an error that names the option,
 * the value and what is allowed. Then they call the PETSc reader so that
 * -help lists the option with its default and meaning. */
#include <ackd/core.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The option as the user types it: "-" + prefix + name without its dash. */
static void full_name(PetscOptionItems *items, const char *name, char *buf, size_t len)
{
  snprintf(buf, len, "-%s%s", items->prefix ? items->prefix : "", name + 1);
}

static PetscErrorCode raw_value(PetscOptionItems *items, const char *name, char *text, size_t len, PetscBool *given)
{
  PetscFunctionBeginUser;
  text[0] = '\0';
  PetscCall(PetscOptionsGetString(items->options, items->prefix, name, text, len, given));
  PetscFunctionReturn(0);
}

/* -help: ackd's options in one format, PETSc's internal ones only with -help_all.
 *
 * PETSc's listing differs by type (<default : current> for booleans,
 * <current : default> for reals), and the solvers ackd creates (Tao under
 * -dynm_ot_semidual_, its KSP, PC, Mat) add hundreds of lines of it. So -help
 * does not reach PETSc at all: the readers below print their own lines when
 * AckdOptionsHelpSetUp asked for them. -help_all also sets PETSc's -help, and
 * then the readers hide PETSc's line for the options they print themselves.
 * The mode is process-wide, as PETSc's own -help is. */
static struct {
  int  mode;           /* 0: no help, 1: ackd's options, 2: PETSc's too */
  char section[512];   /* title and prefix of the section whose header was printed last */
  char printed[32768]; /* "|-name|..." of the options listed: an object read twice is listed once */
} help_state;

PetscErrorCode AckdOptionsHelpSetUp(PetscBool all)
{
  PetscFunctionBeginUser;
  help_state.mode       = all ? 2 : 1;
  help_state.section[0] = '\0';
  help_state.printed[0] = '\0';
  if (all) PetscCall(PetscOptionsSetValue(NULL, "-help", NULL));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOptionsHelpRequested(PetscBool *help)
{
  PetscFunctionBeginUser;
  *help = (PetscBool)(help_state.mode != 0);
  PetscFunctionReturn(0);
}

/* Whether this reader is the one pass of PetscOptionsBegin/End that prints help. */
static PetscBool help_wanted(PetscOptionItems *items)
{
  if (help_state.mode == 1) return (PetscBool)(items->count == 1);
  return (PetscBool)(items->printhelp && items->count == 1 && !items->alreadyprinted);
}

/* One line: "  -name <type> default D[, now V]: help". With -help_all PETSc
 * prints the section headers itself; otherwise this does. */
static PetscErrorCode help_line(PetscOptionItems *items, const char *name, const char *type, const char *deflt,
                                const char *now, const char *help)
{
  char opt[256], section[512];

  PetscFunctionBeginUser;
  full_name(items, name, opt, sizeof opt);
  char key[260];
  snprintf(key, sizeof key, "|%s|", opt);
  if (strstr(help_state.printed, key)) PetscFunctionReturn(0);
  if (strlen(help_state.printed) + strlen(key) < sizeof help_state.printed)
    PetscCall(PetscStrlcat(help_state.printed, key + (help_state.printed[0] ? 1 : 0), sizeof help_state.printed));
  if (help_state.mode == 1) {
    snprintf(section, sizeof section, "%s|%s", items->title ? items->title : "", items->prefix ? items->prefix : "");
    if (strcmp(section, help_state.section)) {
      PetscCall(PetscStrncpy(help_state.section, section, sizeof help_state.section));
      PetscCall(PetscHelpPrintfDefault(items->comm, "\n%s:\n", items->title ? items->title : "options"));
    }
  }
  if (now && strcmp(now, deflt))
    PetscCall(PetscHelpPrintfDefault(items->comm, "  %s <%s> default %s, now %s: %s\n", opt, type, deflt, now, help));
  else
    PetscCall(PetscHelpPrintfDefault(items->comm, "  %s <%s> default %s: %s\n", opt, type, deflt, help));
  PetscFunctionReturn(0);
}

/* Runs a PETSc reader with its own help line suppressed (help_line prints ours). */
#define READ_QUIETLY(items, call)                                                                                      \
  do {                                                                                                                 \
    PetscBool ackd_printhelp_ = (items)->printhelp;                                                                    \
    (items)->printhelp        = PETSC_FALSE;                                                                           \
    PetscErrorCode ackd_ierr_ = (call);                                                                                \
    (items)->printhelp        = ackd_printhelp_;                                                                       \
    PetscCall(ackd_ierr_);                                                                                             \
  } while (0)

/* Runs a PETSc string converter without letting its own error escape. */
#define TRY_CONVERT(call, ok)                                                                                          \
  do {                                                                                                                 \
    PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));                                                   \
    ok = (PetscBool)((call) == 0);                                                                                     \
    PetscCall(PetscPopErrorHandler());                                                                                 \
  } while (0)

PetscErrorCode AckdOptionsInt(PetscOptionItems *PetscOptionsObject, const char *name, const char *help, PetscInt *value,
                              PetscInt lo, PetscInt hi, PetscBool *set)
{
  char      text[256], opt[256];
  PetscBool given, ok;
  PetscInt  parsed = *value;

  PetscFunctionBeginUser;
  full_name(PetscOptionsObject, name, opt, sizeof opt);
  PetscCall(raw_value(PetscOptionsObject, name, text, sizeof text, &given));
  if (given) {
    PetscCheck(text[0], PETSC_COMM_SELF, PETSC_ERR_USER_INPUT, "option %s needs an integer value", opt);
    TRY_CONVERT(PetscOptionsStringToInt(text, &parsed), ok);
    PetscCheck(ok, PETSC_COMM_SELF, PETSC_ERR_USER_INPUT, "option %s: '%s' is not an integer", opt, text);
    PetscCheck(parsed >= lo && parsed <= hi, PETSC_COMM_SELF, PETSC_ERR_USER_INPUT,
               "option %s: %" PetscInt_FMT " is out of range; use a value in [%" PetscInt_FMT ", %" PetscInt_FMT "]",
               opt, parsed, lo, hi);
  }
  PetscInt deflt = *value;
  READ_QUIETLY(PetscOptionsObject, PetscOptionsInt(name, help, NULL, *value, value, set));
  if (help_wanted(PetscOptionsObject)) {
    char d[32], v[32];
    snprintf(d, sizeof d, "%" PetscInt_FMT, deflt);
    snprintf(v, sizeof v, "%" PetscInt_FMT, *value);
    PetscCall(help_line(PetscOptionsObject, name, "int", d, v, help));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOptionsReal(PetscOptionItems *PetscOptionsObject, const char *name, const char *help,
                               PetscReal *value, PetscReal lo, PetscReal hi, PetscBool *set)
{
  char      text[256], opt[256];
  PetscBool given, ok;
  PetscReal parsed = *value;

  PetscFunctionBeginUser;
  full_name(PetscOptionsObject, name, opt, sizeof opt);
  PetscCall(raw_value(PetscOptionsObject, name, text, sizeof text, &given));
  if (given) {
    PetscCheck(text[0], PETSC_COMM_SELF, PETSC_ERR_USER_INPUT, "option %s needs a numeric value", opt);
    TRY_CONVERT(PetscOptionsStringToReal(text, &parsed), ok);
    PetscCheck(ok, PETSC_COMM_SELF, PETSC_ERR_USER_INPUT, "option %s: '%s' is not a number", opt, text);
    PetscCheck(!PetscIsInfOrNanReal(parsed), PETSC_COMM_SELF, PETSC_ERR_USER_INPUT,
               "option %s: '%s' is not a finite number", opt, text);
    if (parsed < lo || parsed > hi) {
      char range[96]; /* C's %g: PETSc's printf writes 1 as "1." */
      snprintf(range, sizeof range, "%g is out of range; use a value in [%g, %g]", (double)parsed, (double)lo,
               (double)hi);
      SETERRQ(PETSC_COMM_SELF, PETSC_ERR_USER_INPUT, "option %s: %s", opt, range);
    }
  }
  PetscReal deflt = *value;
  READ_QUIETLY(PetscOptionsObject, PetscOptionsReal(name, help, NULL, *value, value, set));
  if (help_wanted(PetscOptionsObject)) {
    char d[32], v[32];
    snprintf(d, sizeof d, "%g", (double)deflt);
    snprintf(v, sizeof v, "%g", (double)*value);
    PetscCall(help_line(PetscOptionsObject, name, "real", d, v, help));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOptionsBool(PetscOptionItems *PetscOptionsObject, const char *name, const char *help,
                               PetscBool *value, PetscBool *set)
{
  char      text[256], opt[256];
  PetscBool given, ok, parsed;

  PetscFunctionBeginUser;
  full_name(PetscOptionsObject, name, opt, sizeof opt);
  PetscCall(raw_value(PetscOptionsObject, name, text, sizeof text, &given));
  if (given && text[0]) {
    TRY_CONVERT(PetscOptionsStringToBool(text, &parsed), ok);
    PetscCheck(ok, PETSC_COMM_SELF, PETSC_ERR_USER_INPUT,
               "option %s: '%s' is not a boolean; use true or false (or give the option alone for true)", opt, text);
  }
  PetscBool deflt = *value;
  READ_QUIETLY(PetscOptionsObject, PetscOptionsBool(name, help, NULL, *value, value, set));
  if (help_wanted(PetscOptionsObject))
    PetscCall(help_line(PetscOptionsObject, name, "bool", deflt ? "true" : "false", *value ? "true" : "false", help));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOptionsString(PetscOptionItems *PetscOptionsObject, const char *name, const char *help, char *value,
                                 size_t len, PetscBool *set)
{
  char      text[PETSC_MAX_PATH_LEN], opt[256], fallback[PETSC_MAX_PATH_LEN];
  PetscBool given;

  PetscFunctionBeginUser;
  full_name(PetscOptionsObject, name, opt, sizeof opt);
  PetscCall(raw_value(PetscOptionsObject, name, text, sizeof text, &given));
  if (given) {
    PetscCheck(text[0], PETSC_COMM_SELF, PETSC_ERR_USER_INPUT, "option %s needs a value", opt);
    PetscCheck(strlen(text) < len, PETSC_COMM_SELF, PETSC_ERR_USER_INPUT,
               "option %s: value is longer than %zu characters", opt, len - 1);
  }
  PetscCall(PetscStrncpy(fallback, value, sizeof fallback));
  READ_QUIETLY(PetscOptionsObject, PetscOptionsString(name, help, NULL, fallback, value, len, set));
  if (help_wanted(PetscOptionsObject))
    PetscCall(help_line(PetscOptionsObject, name, "string", fallback[0] ? fallback : "unset",
                        value[0] ? value : "unset", help));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOptionsChoice(PetscOptionItems *PetscOptionsObject, const char *name, const char *help,
                                 const char *const *choices, PetscInt nchoices, PetscInt *value, PetscBool *set)
{
  char      text[256], opt[256];
  PetscBool given;

  PetscFunctionBeginUser;
  full_name(PetscOptionsObject, name, opt, sizeof opt);
  PetscCall(raw_value(PetscOptionsObject, name, text, sizeof text, &given));
  if (given) {
    PetscBool known = PETSC_FALSE;
    for (PetscInt i = 0; i < nchoices && !known; i++) PetscCall(PetscStrcasecmp(text, choices[i], &known));
    if (!known) {
      char list[512] = "";
      for (PetscInt i = 0; i < nchoices; i++) {
        PetscCall(PetscStrlcat(list, choices[i], sizeof list));
        if (i + 1 < nchoices) PetscCall(PetscStrlcat(list, ", ", sizeof list));
      }
      SETERRQ(PETSC_COMM_SELF, PETSC_ERR_USER_INPUT, "option %s: '%s' is not one of: %s", opt, text, list);
    }
  }
  PetscInt deflt = *value;
  READ_QUIETLY(PetscOptionsObject, PetscOptionsEList(name, help, NULL, choices, nchoices, choices[*value], value, set));
  if (help_wanted(PetscOptionsObject)) {
    char type[512] = "";
    for (PetscInt i = 0; i < nchoices; i++) {
      PetscCall(PetscStrlcat(type, choices[i], sizeof type));
      if (i + 1 < nchoices) PetscCall(PetscStrlcat(type, "|", sizeof type));
    }
    PetscCall(help_line(PetscOptionsObject, name, type, choices[deflt], choices[*value], help));
  }
  PetscFunctionReturn(0);
}

/* Options that the runtime itself consumes at start or end of a run. */
static PetscBool is_runtime_option(const char *name)
{
  static const char *const runtime[] = {"options_file",   "quiet",        "traceback",    "help",
                                        "log_view",       "options_left", "malloc_debug", "malloc_dump",
                                        "on_error_abort", "info",         "version"};
  for (size_t i = 0; i < sizeof runtime / sizeof runtime[0]; i++)
    if (!strcmp(name, runtime[i])) return PETSC_TRUE;
  return PETSC_FALSE;
}

/* Whether `name` starts with one of the space-separated prefixes of `list`. */
static PetscBool has_prefix_in(const char *name, const char *list)
{
  for (const char *p = list ? list : ""; *p;) {
    while (*p == ' ') p++;
    size_t n = strcspn(p, " ");
    if (n && !strncmp(name, p, n)) return PETSC_TRUE;
    p += n;
  }
  return PETSC_FALSE;
}

PetscErrorCode AckdOptionsCheckUnused(MPI_Comm comm, const char *stage, const char *foreign_prefixes)
{
  PetscInt n;
  char   **names, **values;
  char     unknown[1024] = "";
  PetscInt count         = 0;

  PetscFunctionBeginUser;
  PetscCall(PetscOptionsLeftGet(NULL, &n, &names, &values));
  for (PetscInt i = 0; i < n; i++) {
    if (is_runtime_option(names[i]) || has_prefix_in(names[i], foreign_prefixes)) continue;
    if (count++) PetscCall(PetscStrlcat(unknown, ", ", sizeof unknown));
    PetscCall(PetscStrlcat(unknown, "-", sizeof unknown));
    PetscCall(PetscStrlcat(unknown, names[i], sizeof unknown));
  }
  PetscCall(PetscOptionsLeftRestore(NULL, &n, &names, &values));
  PetscCheck(
      !count, comm, PETSC_ERR_USER_INPUT,
      "unknown option%s %s for stage '%s' (misspelt, or meant for another stage?); 'ackd %s -help' lists its options",
      count > 1 ? "s" : "", unknown, stage, stage);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOptionsToString(char **text)
{
  PetscFunctionBeginUser;
  PetscCall(PetscOptionsGetAll(NULL, text));
  PetscFunctionReturn(0);
}

/* An options text ("-key value -flag -key2 value2 ...") as key/value pairs, keys without their
 * dash, cut in place out of `text`. A key starts with '-' and a letter: "-1" is a value. */
typedef struct {
  const char *key, *value;
} Pair;

static PetscErrorCode split_pairs(char *text, Pair **pairs, PetscInt *n)
{
  PetscInt cap = 16;

  PetscFunctionBeginUser;
  *n = 0;
  PetscCall(PetscMalloc1(cap, pairs));
  for (char *save = NULL, *tok = strtok_r(text, " \t\n", &save); tok; tok = strtok_r(NULL, " \t\n", &save)) {
    if (tok[0] == '-' && (isalpha((unsigned char)tok[1]) || tok[1] == '_')) {
      if (*n == cap) PetscCall(PetscRealloc(sizeof(Pair) * (size_t)(cap *= 2), pairs));
      (*pairs)[(*n)++] = (Pair){tok + 1, ""};
    } else if (*n && !(*pairs)[*n - 1].value[0])
      (*pairs)[*n - 1].value = tok;
  }
  PetscFunctionReturn(0);
}

static const Pair *find_pair(const Pair *pairs, PetscInt n, const char *key)
{
  for (PetscInt i = 0; i < n; i++)
    if (!strcmp(pairs[i].key, key)) return &pairs[i];
  return NULL;
}

/* Whether `key` is one of the names of PetscOptionsLeftGet (given, never read). */
static PetscBool in_list(const char *key, char **names, PetscInt n)
{
  for (PetscInt i = 0; i < n; i++)
    if (!strcmp(names[i], key)) return PETSC_TRUE;
  return PETSC_FALSE;
}

static PetscBool recorded(const char *key)
{
  return !is_runtime_option(key) && !strstr(key, "debug_");
}

PetscErrorCode AckdOptionsStageString(char **text)
{
  char    *all, *out, **unused, **values;
  Pair    *pairs;
  PetscInt n, nunused;
  size_t   len = 1;

  PetscFunctionBeginUser;
  PetscCall(PetscOptionsGetAll(NULL, &all));
  PetscCall(split_pairs(all, &pairs, &n));
  PetscCall(PetscOptionsLeftGet(NULL, &nunused, &unused, &values));
  for (PetscInt i = 0; i < n; i++) len += strlen(pairs[i].key) + strlen(pairs[i].value) + 3;
  PetscCall(PetscCalloc1(len, &out));
  for (PetscInt i = 0; i < n; i++) {
    if (!recorded(pairs[i].key) || in_list(pairs[i].key, unused, nunused)) continue;
    if (out[0]) PetscCall(PetscStrlcat(out, " ", len));
    PetscCall(PetscStrlcat(out, "-", len));
    PetscCall(PetscStrlcat(out, pairs[i].key, len));
    if (pairs[i].value[0]) {
      PetscCall(PetscStrlcat(out, " ", len));
      PetscCall(PetscStrlcat(out, pairs[i].value, len));
    }
  }
  PetscCall(PetscOptionsLeftRestore(NULL, &nunused, &unused, &values));
  PetscCall(PetscFree(pairs));
  PetscCall(PetscFree(all));
  *text = out;
  PetscFunctionReturn(0);
}

static PetscErrorCode report_item(char **report, size_t *cap, const char *key, const char *now, const char *was)
{
  size_t need = strlen(*report) + strlen(key) + strlen(now) + strlen(was) + 32;

  PetscFunctionBeginUser;
  if (need > *cap) {
    PetscCall(PetscRealloc(need * 2, report));
    *cap = need * 2;
  }
  if ((*report)[0]) PetscCall(PetscStrlcat(*report, "; ", *cap));
  PetscCall(PetscStrlcat(*report, "-", *cap));
  PetscCall(PetscStrlcat(*report, key, *cap));
  if (now[0]) PetscCall(PetscStrlcat(*report, " ", *cap));
  PetscCall(PetscStrlcat(*report, now, *cap));
  PetscCall(PetscStrlcat(*report, " (was ", *cap));
  PetscCall(PetscStrlcat(*report, was, *cap));
  PetscCall(PetscStrlcat(*report, ")", *cap));
  PetscFunctionReturn(0);
}

/* A boolean word's truth, or -1: PETSc reads a flag given without a value as true. */
static int truth(const char *v)
{
  static const char *const yes[] = {"", "1", "true", "yes", "on"}, *const no[] = {"0", "false", "no", "off"};
  for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
    if (!strcasecmp(v, yes[i])) return 1;
  for (size_t i = 0; i < sizeof no / sizeof *no; i++)
    if (!strcasecmp(v, no[i])) return 0;
  return -1;
}

/* Whether two values of one option say the same: the same text, the same number (1e-3 and 0.001)
 * or the same truth (true and 1): a requeued job whose file spells a value otherwise is no change. */
static PetscBool same_value(const char *a, const char *b)
{
  char  *ea, *eb;
  double x, y;

  if (!strcmp(a, b)) return PETSC_TRUE;
  if (truth(a) >= 0 && truth(a) == truth(b)) return PETSC_TRUE;
  x = strtod(a, &ea);
  y = strtod(b, &eb);
  return a[0] && b[0] && !*ea && !*eb && x == y ? PETSC_TRUE : PETSC_FALSE;
}

PetscErrorCode AckdOptionsDrift(const char *before, char **report)
{
  char    *then, *now, **unused, **values;
  Pair    *old, *cur;
  PetscInt nold, ncur, nunused;
  size_t   cap = 256;

  PetscFunctionBeginUser;
  PetscCall(PetscStrallocpy(before, &then));
  PetscCall(AckdOptionsStageString(&now));
  PetscCall(split_pairs(then, &old, &nold));
  PetscCall(split_pairs(now, &cur, &ncur));
  PetscCall(PetscOptionsLeftGet(NULL, &nunused, &unused, &values));
  PetscCall(PetscCalloc1(cap, report));
  for (PetscInt i = 0; i < ncur; i++) {
    const Pair *p = find_pair(old, nold, cur[i].key);
    if (!p)
      PetscCall(report_item(report, &cap, cur[i].key, cur[i].value, "not given"));
    else if (!same_value(p->value, cur[i].value))
      PetscCall(report_item(report, &cap, cur[i].key, cur[i].value, p->value));
  }
  /* Given before and not now: unless it is given now and this stage has not read it (yet): the
   * unused list holds given options only. */
  for (PetscInt i = 0; i < nold; i++)
    if (!find_pair(cur, ncur, old[i].key) && !in_list(old[i].key, unused, nunused))
      PetscCall(report_item(report, &cap, old[i].key, "not given", old[i].value[0] ? old[i].value : "given"));
  PetscCall(PetscOptionsLeftRestore(NULL, &nunused, &unused, &values));
  PetscCall(PetscFree(old));
  PetscCall(PetscFree(cur));
  PetscCall(PetscFree(then));
  PetscCall(PetscFree(now));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdOptionsIntArray(PetscOptionItems *PetscOptionsObject, const char *name, const char *help,
                                   PetscInt *values, PetscInt *n, PetscInt lo, PetscInt hi, PetscBool *set)
{
  char      text[1024], opt[256];
  PetscBool given, ok, was_set = PETSC_FALSE;
  PetscInt  capacity = *n;

  PetscFunctionBeginUser;
  full_name(PetscOptionsObject, name, opt, sizeof opt);
  PetscCall(raw_value(PetscOptionsObject, name, text, sizeof text, &given));
  if (given)
    PetscCheck(text[0], PETSC_COMM_SELF, PETSC_ERR_USER_INPUT, "option %s needs a comma-separated list of integers",
               opt);
  PetscBool printhelp           = PetscOptionsObject->printhelp;
  PetscOptionsObject->printhelp = PETSC_FALSE; /* help_line prints ours */
  TRY_CONVERT(PetscOptionsIntArray(name, help, NULL, values, n, &was_set), ok);
  PetscOptionsObject->printhelp = printhelp;
  PetscCheck(ok, PETSC_COMM_SELF, PETSC_ERR_USER_INPUT,
             "option %s: '%s' is not a list of at most %" PetscInt_FMT " integers (write it as 1,2,3)", opt, text,
             capacity);
  if (!was_set) *n = 0;
  for (PetscInt i = 0; i < *n; i++)
    PetscCheck(values[i] >= lo && values[i] <= hi, PETSC_COMM_SELF, PETSC_ERR_USER_INPUT,
               "option %s: %" PetscInt_FMT " is out of range; use values in [%" PetscInt_FMT ", %" PetscInt_FMT "]",
               opt, values[i], lo, hi);
  if (set) *set = was_set;
  if (help_wanted(PetscOptionsObject)) {
    char now[1024] = "";
    for (PetscInt i = 0; i < *n; i++) {
      char one[32];
      snprintf(one, sizeof one, "%s%" PetscInt_FMT, i ? "," : "", values[i]);
      PetscCall(PetscStrlcat(now, one, sizeof now));
    }
    PetscCall(help_line(PetscOptionsObject, name, "int,int,...", "unset", *n ? now : NULL, help));
  }
  PetscFunctionReturn(0);
}
