/* The resource pool (src/host/pool): claims granted in order within the budget, -j as a bound,
 * backfill that never delays the first claim in line, a claim over the budget refused; and the
 * budget read from a fake /proc/meminfo and a fake cgroup v2 tree. */
#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "budget.h"
#include "pool.h"
#include "strfmt.h"

#define MB(n) ((PoolClaim){(n), 1})

/* Every id pool_next grants now, in order, ended by -1. */
static int grants(Pool *p, long *out, int max)
{
        int n = 0;
        long id;
        while ((id = pool_next(p)) >= 0 && n < max)
                out[n++] = id;
        return n;
}

static void test_packing(void **state)
{
        /* files of 60 % of the budget run one at a time; of 25 %, four at once */
        Pool *p = pool_new((PoolClaim){1000, 8}, 8);
        for (size_t i = 0; i < 3; i++)
                assert_int_equal(pool_request(p, i, MB(600)), 0);
        long g[8];
        assert_int_equal(grants(p, g, 8), 1);
        assert_int_equal(g[0], 0);
        pool_release(p, 0);
        assert_int_equal(grants(p, g, 8), 1);
        assert_int_equal(g[0], 1);
        pool_release(p, 1);
        pool_release(p, 2); /* dropped from the queue before it ran */
        assert_int_equal(grants(p, g, 8), 0);
        for (size_t i = 10; i < 16; i++)
                assert_int_equal(pool_request(p, i, MB(250)), 0);
        assert_int_equal(grants(p, g, 8), 4);
        assert_int_equal(pool_granted(p), 4);
        assert_int_equal(pool_waiting(p), 2);
        assert_int_equal(pool_free_now(p).memory_mb, 0);
        pool_free(p);
}

static void test_jobs_bound_and_cpus(void **state)
{
        Pool *p = pool_new((PoolClaim){10000, 4}, 2); /* -j 2 */
        for (size_t i = 0; i < 4; i++)
                assert_int_equal(pool_request(p, i, MB(100)), 0);
        long g[8];
        assert_int_equal(grants(p, g, 8), 2);
        pool_release(p, g[0]);
        assert_int_equal(grants(p, g, 8), 1);
        pool_free(p);
        p = pool_new((PoolClaim){10000, 4}, 8);
        assert_int_equal(pool_request(p, 1, ((PoolClaim){100, 3})), 0);
        assert_int_equal(pool_request(p, 2, ((PoolClaim){100, 2})), 0);
        assert_int_equal(grants(p, g, 8), 1); /* 3 + 2 CPUs > 4 */
        pool_free(p);
}

static void test_big_claim_is_not_starved(void **state)
{
        Pool *p = pool_new((PoolClaim){1000, 8}, 8);
        assert_int_equal(pool_request(p, 1, MB(400)), 0); /* runs */
        assert_int_equal(pool_request(p, 2, MB(800)), 0); /* the head: waits for 1 */
        for (size_t i = 3; i < 40; i++)                   /* a stream of small ones */
                assert_int_equal(pool_request(p, i, MB(100)), 0);
        long g[64];
        int n = grants(p, g, 64);
        /* backfill only within what the head cannot use: 1000 - 800 = 200, i.e. two */
        assert_int_equal(n, 3);
        assert_int_equal(g[0], 1);
        assert_int_equal(g[1], 3);
        assert_int_equal(g[2], 4);
        /* small ones ending and coming do not get past the head's room */
        pool_release(p, 3);
        n = grants(p, g, 64);
        assert_int_equal(n, 1);
        assert_int_equal(g[0], 5);
        /* when what ran before the head ends, the head starts at once */
        pool_release(p, 1);
        n = grants(p, g, 64);
        assert_true(n >= 1);
        assert_int_equal(g[0], 2);
        pool_free(p);
}

static void test_claim_over_budget(void **state)
{
        Pool *p = pool_new((PoolClaim){1000, 2}, 8);
        assert_int_equal(pool_request(p, 1, MB(1001)), -E2BIG);
        assert_int_equal(pool_request(p, 2, ((PoolClaim){10, 3})), -E2BIG);
        assert_int_equal(pool_waiting(p), 0);
        assert_int_equal(pool_request(p, 3, MB(1000)), 0);
        long g[4];
        assert_int_equal(grants(p, g, 4), 1);
        pool_free(p);
}

static void put(const char *dir, const char *name, const char *text)
{
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(text, f);
        assert_int_equal(fclose(f), 0);
}

static void test_budget_from_fake_cgroup(void **state)
{
        char root[] = "/tmp/provium-pool-test-XXXXXX", dir[600], sub[700];
        assert_non_null(mkdtemp(root));
        put(root, "meminfo", "MemTotal: 8000000 kB\nMemAvailable: 4194304 kB\n");
        put(root, "self", "0::/ci/job\n");
        Budget b;
        char meminfo[600], self[600];
        snprintf(meminfo, sizeof meminfo, "%s/meminfo", root);
        snprintf(self, sizeof self, "%s/self", root);
        /* no cgroup limits: MemAvailable (4096 MiB) less the reserve */
        assert_int_equal(budget_probe(&b, meminfo, root, self), 0);
        assert_int_equal(b.total.memory_mb, 4096 - BUDGET_RESERVE_MB);
        assert_non_null(strstr(b.memory_from, "MemAvailable 4096 MiB"));
        assert_true(b.total.cpus >= 1);
        /* a pod's limits, the job's lower than its parent's for memory, the parent's for CPU */
        snprintf(dir, sizeof dir, "%s/ci", root);
        snprintf(sub, sizeof sub, "%s/ci/job", root);
        assert_int_equal(mkdir(dir, 0700), 0);
        assert_int_equal(mkdir(sub, 0700), 0);
        put(dir, "memory.max", "4294967296\n");
        put(sub, "memory.max", "2147483648\n");
        put(dir, "cpu.max", "50000 100000\n"); /* half a CPU: rounded up to 1 */
        put(sub, "cpu.max", "max 100000\n");
        assert_int_equal(budget_probe(&b, meminfo, root, self), 0);
        assert_int_equal(b.total.memory_mb, 2048 - BUDGET_RESERVE_MB);
        assert_non_null(strstr(b.memory_from, "ci/job/memory.max 2048 MiB"));
        assert_int_equal(b.total.cpus, 1);
        cpu_set_t set;
        assert_int_equal(sched_getaffinity(0, sizeof set, &set), 0);
        if (CPU_COUNT(&set) > 1) /* else the affinity mask says 1 as well */
                assert_non_null(strstr(b.cpus_from, "ci/cpu.max (50000/100000)"));
        char cmd[700];
        snprintf(cmd, sizeof cmd, "rm -rf %s", root);
        assert_int_equal(system(cmd), 0);
}

static void test_parse_memory(void **state)
{
        uint64_t mb;
        assert_int_equal(parse_size_mib("2G", &mb), 0);
        assert_int_equal(mb, 2048);
        assert_int_equal(parse_size_mib("512M", &mb), 0);
        assert_int_equal(mb, 512);
        assert_int_equal(parse_size_mib("300", &mb), 0);
        assert_int_equal(mb, 300);
        assert_int_equal(parse_size_mib("lots", &mb), -EINVAL);
        assert_int_equal(parse_size_mib("-1G", &mb), -EINVAL);
        assert_int_equal(parse_size_mib("1T", &mb), -EINVAL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_packing),
            cmocka_unit_test(test_jobs_bound_and_cpus),
            cmocka_unit_test(test_big_claim_is_not_starved),
            cmocka_unit_test(test_claim_over_budget),
            cmocka_unit_test(test_budget_from_fake_cgroup),
            cmocka_unit_test(test_parse_memory),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
