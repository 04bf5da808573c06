/* The memory a process may use: cgroup limits read the way Slurm and PBS
 * jobs see them (v1 and v2, limits on ancestors, "no limit" markers, a
 * container's namespaced view), on directory trees built here. */
#include <ackd/core.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "check.h"

static char root[PETSC_MAX_PATH_LEN];

/* Writes `text` to root/relative, creating the directories on the way. */
static void put(const char *relative, const char *text)
{
  char path[2 * PETSC_MAX_PATH_LEN];
  snprintf(path, sizeof path, "%s/%s", root, relative);
  for (char *slash = strchr(path + strlen(root) + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
    *slash = '\0';
    mkdir(path, 0700);
    *slash = '/';
  }
  FILE *f = fopen(path, "w");
  if (f) {
    fputs(text, f);
    fclose(f);
  }
}

/* The limit for the listing `cgroup` over the tree `case_dir` under root. */
static double limit_of(const char *case_dir, const char *cgroup)
{
  char listing[2 * PETSC_MAX_PATH_LEN], tree[2 * PETSC_MAX_PATH_LEN], rel[PETSC_MAX_PATH_LEN];
  snprintf(rel, sizeof rel, "%s/proc_cgroup", case_dir);
  put(rel, cgroup);
  snprintf(listing, sizeof listing, "%s/%s", root, rel);
  snprintf(tree, sizeof tree, "%s/%s/fs", root, case_dir);
  double bytes = -1;
  if (AckdMemoryCgroupLimit(listing, tree, &bytes)) return -1;
  return bytes;
}

int main(int argc, char **argv)
{
  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  snprintf(root, sizeof root, "/tmp/ackd_test_memory_XXXXXX");
  CHECK(mkdtemp(root) != NULL, "mkdtemp failed");

  /* v2, Slurm-like: the job's group has 1 GiB, the step's below it none */
  put("v2/fs/job/memory.max", "1073741824\n");
  put("v2/fs/job/step/memory.max", "max\n");
  double got = limit_of("v2", "0::/job/step\n");
  CHECK(got == 1073741824.0, "v2 ancestor's limit: got %.0f", got);

  /* v2, a smaller limit deeper down wins */
  put("v2deep/fs/job/memory.max", "1073741824\n");
  put("v2deep/fs/job/step/memory.max", "536870912\n");
  got = limit_of("v2deep", "0::/job/step\n");
  CHECK(got == 536870912.0, "v2 smallest on the path: got %.0f", got);

  /* v1: the memory hierarchy among others, "unlimited" as v1 writes it above the job */
  put("v1/fs/memory/slurm/memory.limit_in_bytes", "9223372036854771712\n");
  put("v1/fs/memory/slurm/uid_0/job_7/memory.limit_in_bytes", "2147483648\n");
  put("v1/fs/cpu/x/memory.limit_in_bytes", "1000\n"); /* not the memory hierarchy: ignored */
  got = limit_of("v1", "5:cpu,cpuacct:/x\n4:memory:/slurm/uid_0/job_7\n0::/\n");
  CHECK(got == 2147483648.0, "v1 job limit: got %.0f", got);

  /* v1 with the memory controller mounted together with another one */
  put("v1co/fs/memory/pbs_jobs.service/jobid/9/memory.limit_in_bytes", "3221225472\n");
  got = limit_of("v1co", "6:hugetlb,memory:/pbs_jobs.service/jobid/9\n");
  CHECK(got == 3221225472.0, "v1 co-mounted controllers: got %.0f", got);

  /* a container: the listed group is not under the mount, whose root is the container's group */
  put("ns/fs/memory.max", "3000000000\n");
  got = limit_of("ns", "0::/deep/inside\n");
  CHECK(got == 3000000000.0, "namespaced v2 root limit: got %.0f", got);

  /* no limits anywhere, or no listing at all */
  put("none/fs/job/memory.max", "max\n");
  put("none/fs/memory/memory.limit_in_bytes", "9223372036854771712\n");
  got = limit_of("none", "4:memory:/\n0::/job\n");
  CHECK(isinf(got) && got > 0, "no limit: got %g", got);
  double missing = 0;
  PetscCall(AckdMemoryCgroupLimit("/nonexistent/proc/cgroup", root, &missing));
  CHECK(isinf(missing) && missing > 0, "no listing: got %g", missing);

  /* this process: positive, and never above the node */
  double available, physical = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGE_SIZE);
  PetscCall(AckdMemoryAvailable(&available));
  CHECK(available > 0 && available <= physical, "available %.0f of %.0f physical", available, physical);

  char command[PETSC_MAX_PATH_LEN + 16];
  snprintf(command, sizeof command, "rm -rf %s", root);
  CHECK(system(command) == 0, "cleaning %s", root);
  int failed = CHECK_REPORT("test_memory");
  PetscCall(PetscFinalize());
  return failed;
}
