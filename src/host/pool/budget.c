/* budget.c: the memory and CPUs this host can give test files: /proc/meminfo, the CPU affinity
 * mask, and the cgroup v2 limits of the cgroup this process runs in (a container, a CI pod). */
#include "budget.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The first line of path (at most len - 1 bytes, newline cut). Returns 0 or -errno. */
static int read_line(const char *path, char *buf, size_t len)
{
        FILE *f = fopen(path, "re");
        if (!f)
                return -errno;
        char *r = fgets(buf, (int) len, f);
        fclose(f);
        if (!r)
                return -EIO;
        buf[strcspn(buf, "\n")] = 0;
        return 0;
}

/* The first line of path that starts with prefix (newline cut). Returns 0, -ENOENT, -errno. */
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

/* The lowest memory.max from dir up to root (a limit anywhere above applies too), in MiB;
 * UINT64_MAX when there is none. */
static uint64_t cgroup_memory_max(const char *root, char *dir, char *where, size_t wlen)
{
        uint64_t best = UINT64_MAX;
        size_t rootlen = strlen(root);
        for (;;) {
                char path[1200], v[64];
                snprintf(path, sizeof path, "%s/memory.max", dir);
                unsigned long long bytes;
                if (read_line(path, v, sizeof v) == 0 && strcmp(v, "max") != 0 &&
                    sscanf(v, "%llu", &bytes) == 1 && bytes / (1024 * 1024) < best) {
                        best = bytes / (1024 * 1024);
                        snprintf(where, wlen, "%s", path);
                }
                char *slash = strrchr(dir, '/');
                if (!slash || (size_t) (slash - dir) < rootlen)
                        break;
                *slash = 0;
        }
        return best;
}

/* The lowest cpu.max quota from dir up to root, as whole CPUs (rounded up); 0 when none. */
static unsigned cgroup_cpu_max(const char *root, char *dir, char *where, size_t wlen)
{
        unsigned best = 0;
        size_t rootlen = strlen(root);
        for (;;) {
                char path[1200], v[64];
                snprintf(path, sizeof path, "%s/cpu.max", dir);
                unsigned long long quota, period;
                if (read_line(path, v, sizeof v) == 0 &&
                    sscanf(v, "%llu %llu", &quota, &period) == 2 && period > 0) {
                        unsigned cpus = (unsigned) ((quota + period - 1) / period);
                        if (cpus > 0 && (best == 0 || cpus < best)) {
                                best = cpus;
                                snprintf(where, wlen, "%s (%llu/%llu)", path, quota, period);
                        }
                }
                char *slash = strrchr(dir, '/');
                if (!slash || (size_t) (slash - dir) < rootlen)
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
                char d2[sizeof dir];
                memcpy(d2, dir, sizeof dir);
                uint64_t max = cgroup_memory_max(cgroup_root, dir, where, sizeof where);
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
                unsigned q = cgroup_cpu_max(cgroup_root, d2, where, sizeof where);
                if (q > 0 && (cpus == 0 || q < cpus)) {
                        cpus = q;
                        snprintf(b->cpus_from, sizeof b->cpus_from, "cgroup %.140s", where);
                }
        }
        b->total = (PoolClaim){mem, cpus};
        if (rm != 0 && cpus == 0)
                return rm;
        return 0;
}

int budget_parse_memory(const char *s, uint64_t *ret_mb)
{
        char *end;
        *ret_mb = 0;
        if (!s || !*s || *s == '-')
                return -EINVAL;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s)
                return -EINVAL;
        if ((*end == 'G' || *end == 'g') && end[1] == 0 && v <= UINT64_MAX / 1024)
                v *= 1024;
        else if (!((*end == 'M' || *end == 'm') && end[1] == 0) && *end != 0)
                return -EINVAL;
        *ret_mb = v;
        return 0;
}
