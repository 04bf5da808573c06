/* How much memory this process may use: the node's physical memory, or less
 * when a control group caps it. Batch systems confine a job's processes on a
 * node to one group with a limit (Slurm's task/cgroup, PBS's cgroups hook),
 * and a process that grows past it is killed, so layouts chosen by memory
 * must look at that limit, not at the node.
 *
 * /proc/self/cgroup lists the process's group per hierarchy:
 *   "0::/PATH"               cgroup v2: limit in ROOT/PATH/memory.max ("max": none)
 *   "N:...,memory,...:/PATH" cgroup v1: ROOT/memory/PATH/memory.limit_in_bytes
 * A limit on any ancestor group applies too, so the smallest along the path
 * counts. Inside a container's cgroup namespace the group's own directory
 * may be the mount's root: the walk up to "/" finds it there. */
#include <ackd/core.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* v1 reports "no limit" as a huge page-rounded number */
#define NO_LIMIT_V1 1e18

/* The limit in `file`, or INFINITY if there is none or the file cannot be read. */
static double read_limit(const char *file)
{
  FILE  *f = fopen(file, "r");
  char   text[64];
  double limit = INFINITY;

  if (!f) return INFINITY;
  if (fgets(text, sizeof text, f) && strncmp(text, "max", 3) != 0) {
    char  *end;
    double value = strtod(text, &end);
    if (end != text && value > 0 && value < NO_LIMIT_V1) limit = value;
  }
  fclose(f);
  return limit;
}

/* The smallest limit in `name` from dir/path up to dir itself. */
static double smallest_on_path(const char *dir, const char *path, const char *name)
{
  char   group[PETSC_MAX_PATH_LEN], file[2 * PETSC_MAX_PATH_LEN + 64];
  double smallest = INFINITY;

  snprintf(group, sizeof group, "%s", path);
  for (;;) {
    size_t len = strlen(group);
    while (len > 0 && group[len - 1] == '/') group[--len] = '\0'; /* "/a/b/" and "/" alike */
    snprintf(file, sizeof file, "%s%s/%s", dir, group, name);
    smallest    = fmin(smallest, read_limit(file));
    char *slash = strrchr(group, '/');
    if (!slash) break;
    *slash = '\0';
  }
  return smallest;
}

/* Does the comma-separated controller list name the memory controller? */
static PetscBool lists_memory(const char *controllers)
{
  const char *at = controllers;
  while ((at = strstr(at, "memory")) != NULL) {
    const PetscBool starts = (PetscBool)(at == controllers || at[-1] == ',');
    const PetscBool ends   = (PetscBool)(at[6] == '\0' || at[6] == ',');
    if (starts && ends) return PETSC_TRUE;
    at += 6;
  }
  return PETSC_FALSE;
}

PetscErrorCode AckdMemoryCgroupLimit(const char *proc_cgroup, const char *cgroup_root, double *bytes)
{
  FILE *f;
  char  line[PETSC_MAX_PATH_LEN + 128];

  PetscFunctionBeginUser;
  *bytes = INFINITY;
  f      = fopen(proc_cgroup, "r");
  if (!f) PetscFunctionReturn(0); /* not Linux, or no cgroups: nothing caps the process */
  while (fgets(line, sizeof line, f)) {
    char *first = strchr(line, ':'), *second = first ? strchr(first + 1, ':') : NULL;
    if (!second) continue;
    line[strcspn(line, "\n")] = '\0';
    *second                   = '\0';
    const char *controllers = first + 1, *path = second + 1;
    char        dir[PETSC_MAX_PATH_LEN];
    if (controllers[0] == '\0') { /* v2 */
      snprintf(dir, sizeof dir, "%s", cgroup_root);
      *bytes = fmin(*bytes, smallest_on_path(dir, path, "memory.max"));
    } else if (lists_memory(controllers)) {
      snprintf(dir, sizeof dir, "%s/memory", cgroup_root);
      *bytes = fmin(*bytes, smallest_on_path(dir, path, "memory.limit_in_bytes"));
    }
  }
  fclose(f);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdMemoryAvailable(double *bytes)
{
  double limit;

  PetscFunctionBeginUser;
  *bytes = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGE_SIZE);
  if (!(*bytes > 0)) *bytes = INFINITY;
  PetscCall(AckdMemoryCgroupLimit("/proc/self/cgroup", "/sys/fs/cgroup", &limit));
  *bytes = fmin(*bytes, limit);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdMemoryShare(MPI_Comm comm, double fraction, double *bytes)
{
  MPI_Comm    node;
  PetscMPIInt on_node;
  double      available;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  PetscCallMPI(MPI_Comm_size(node, &on_node));
  PetscCallMPI(MPI_Comm_free(&node));
  PetscCall(AckdMemoryAvailable(&available));
  *bytes = fraction * available / on_node;
  PetscFunctionReturn(0);
}
