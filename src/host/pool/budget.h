/* budget.h: what this host can give the pool (budget.c): memory and CPUs, each with where the
 * figure came from, for the line the run prints at its start. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "pool.h"

#define BUDGET_RESERVE_MB 512 /* left to the host, the runner and QEMU's own overhead */

typedef struct Budget {
        PoolClaim total;
        char memory_from[160]; /* "MemAvailable 23017 MiB less 512 MiB", "cgroup memory.max ..." */
        char cpus_from[160];
} Budget;

/* Fills b from the host: memory is MemAvailable (meminfo, normally /proc/meminfo) less a
 * reserve, or the cgroup v2 memory.max less the reserve when lower; CPUs are those this process
 * may run on (sched_getaffinity), or the cgroup's cpu.max quota when lower. cgroup_root is the
 * cgroup v2 mount (normally /sys/fs/cgroup); the process's own cgroup is read from
 * self_cgroup (normally /proc/self/cgroup). Figures that cannot be read are left out with a
 * note. Returns 0, or -errno when nothing could be read at all. */
int budget_probe(Budget *b, const char *meminfo, const char *cgroup_root, const char *self_cgroup);
