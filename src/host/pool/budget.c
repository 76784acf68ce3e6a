/* budget.c: the memory and CPUs this host can give test files: /proc/meminfo, the CPU affinity
 * mask, and the cgroup v2 limits of the cgroup this process runs in (a container, a CI pod). */
#include "budget.h"

#include <errno.h>
#include <stdbool.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The first line of path that starts with prefix ("" for the first line at all), newline cut.
 * Returns 0, -ENOENT, -errno. */
static int find_line(const char *path, const char *prefix, char *line, size_t len)
{
        FILE *f = fopen(path, "re");
        if (!f)
                return -errno;
        int r = -ENOENT;
        while (fgets(line, (int) len, f)) {
                if (strncmp(line, prefix, strlen(prefix)) == 0) {
                        line[strcspn(line, "\n")] = 0;
                        r = 0;
                        break;
                }
        }
        fclose(f);
        return r;
}

static int mem_available_mb(const char *meminfo, uint64_t *ret)
{
        char line[256];
        unsigned long long kb;
        int r = find_line(meminfo, "MemAvailable:", line, sizeof line);
        if (r == 0 && sscanf(line, "MemAvailable: %llu kB", &kb) != 1)
                r = -EINVAL;
        if (r == 0)
                *ret = kb / 1024;
        return r;
}

/* The cgroup v2 directory of this process: root + the path of the "0::" line. */
static int own_cgroup(const char *root, const char *self_cgroup, char *dir, size_t len)
{
        char line[1024];
        int r = find_line(self_cgroup, "0::", line, sizeof line);
        if (r < 0)
                return r;
        const char *rel = line + 3;
        if (strstr(rel, ".."))
                return -EINVAL;
        return snprintf(dir, len, "%s%s", root, strcmp(rel, "/") == 0 ? "" : rel) < (int) len
                   ? 0
                   : -ENAMETOOLONG;
}

/* memory.max: bytes, or "max" (no limit). As MiB. */
static bool parse_memory_max(const char *text, uint64_t *value, char *detail, size_t dlen)
{
        unsigned long long bytes;
        if (strcmp(text, "max") == 0 || sscanf(text, "%llu", &bytes) != 1)
                return false;
        *value = bytes / (1024 * 1024);
        detail[0] = 0;
        return true;
}

/* cpu.max: "QUOTA PERIOD", or "max PERIOD" (no limit). As whole CPUs, rounded up. */
static bool parse_cpu_max(const char *text, uint64_t *value, char *detail, size_t dlen)
{
        unsigned long long quota, period;
        if (sscanf(text, "%llu %llu", &quota, &period) != 2 || period == 0 || quota == 0)
                return false;
        *value = (quota + period - 1) / period;
        snprintf(detail, dlen, " (%llu/%llu)", quota, period);
        return true;
}

/* The lowest limit in file name from the cgroup dir up to root (a limit anywhere above applies
 * too), as parse reads it; UINT64_MAX when there is none. where gets the file that set it. */
static uint64_t cgroup_lowest(const char *root, const char *dir, const char *name,
                              bool (*parse)(const char *, uint64_t *, char *, size_t), char *where,
                              size_t wlen)
{
        uint64_t best = UINT64_MAX;
        size_t rootlen = strlen(root);
        char d[1100];
        snprintf(d, sizeof d, "%s", dir);
        for (;;) {
                char path[1200], text[64], detail[64];
                uint64_t v;
                snprintf(path, sizeof path, "%s/%s", d, name);
                if (find_line(path, "", text, sizeof text) == 0 &&
                    parse(text, &v, detail, sizeof detail) && v < best) {
                        best = v;
                        snprintf(where, wlen, "%s%s", path, detail);
                }
                char *slash = strrchr(d, '/');
                if (!slash || (size_t) (slash - d) < rootlen)
                        break;
                *slash = 0;
        }
        return best;
}

int budget_probe(Budget *b, const char *meminfo, const char *cgroup_root, const char *self_cgroup)
{
        *b = (Budget){0};
        uint64_t avail = 0;
        int rm = mem_available_mb(meminfo, &avail);
        uint64_t mem = rm == 0 && avail > BUDGET_RESERVE_MB ? avail - BUDGET_RESERVE_MB : 0;
        if (rm == 0)
                snprintf(b->memory_from, sizeof b->memory_from,
                         "MemAvailable %" PRIu64 " MiB less %d MiB", avail, BUDGET_RESERVE_MB);
        cpu_set_t set;
        unsigned cpus = 0;
        if (sched_getaffinity(0, sizeof set, &set) == 0) {
                cpus = (unsigned) CPU_COUNT(&set);
                snprintf(b->cpus_from, sizeof b->cpus_from, "%u CPUs this process may use", cpus);
        }
        char dir[1100], where[1300];
        if (own_cgroup(cgroup_root, self_cgroup, dir, sizeof dir) == 0) {
                uint64_t max = cgroup_lowest(cgroup_root, dir, "memory.max", parse_memory_max,
                                             where, sizeof where);
                if (max != UINT64_MAX) {
                        uint64_t m = max > BUDGET_RESERVE_MB ? max - BUDGET_RESERVE_MB : 0;
                        if (rm != 0 || m < mem) {
                                mem = m;
                                rm = 0;
                                snprintf(b->memory_from, sizeof b->memory_from,
                                         "cgroup %.100s %" PRIu64 " MiB less %d MiB", where, max,
                                         BUDGET_RESERVE_MB);
                        }
                }
                uint64_t q =
                    cgroup_lowest(cgroup_root, dir, "cpu.max", parse_cpu_max, where, sizeof where);
                if (q != UINT64_MAX && (cpus == 0 || q < cpus)) {
                        cpus = (unsigned) q;
                        snprintf(b->cpus_from, sizeof b->cpus_from, "cgroup %.140s", where);
                }
        }
        b->total = (PoolClaim){mem, cpus};
        if (rm != 0 && cpus == 0)
                return rm;
        return 0;
}
