/* test_coverage.c: unit tests for provium coverage's tallies (src/cli/coverage_tally.c and
 * coverage_universe.c): counts, results, which test an event goes to, disk fault hits.
 *
 * Sections: helpers, 1 counts, 2 attribution, 3 disk faults, 4 the universe.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "coverage_tally.h"

/* ---- helpers ---- */

/* Adds the event "TYPE key=value...": true/false a boolean, [-]digits an integer, else a
 * string (empty after '='). */
static void ev(Coverage *c, const char *spec)
{
        char buf[1024];
        char *words[32];
        int n = 0;
        snprintf(buf, sizeof buf, "%s", spec);
        for (char *save, *w = strtok_r(buf, " ", &save); w && n < 32;
             w = strtok_r(NULL, " ", &save))
                words[n++] = w;
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, (size_t) n);
        msgpack_pack_str_with_body(&pk, "type", 4);
        msgpack_pack_str_with_body(&pk, words[0], strlen(words[0]));
        for (int i = 1; i < n; i++) {
                char *eq = strchr(words[i], '=');
                assert_non_null(eq);
                *eq = 0;
                const char *v = eq + 1;
                msgpack_pack_str_with_body(&pk, words[i], strlen(words[i]));
                if (strcmp(v, "true") == 0 || strcmp(v, "false") == 0)
                        v[0] == 't' ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
                else if (v[0] && (isdigit((unsigned char) v[0]) || v[0] == '-'))
                        msgpack_pack_int64(&pk, strtoll(v, NULL, 10));
                else
                        msgpack_pack_str_with_body(&pk, v, strlen(v));
        }
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        assert_int_equal(msgpack_unpack_next(&u, sb.data, sb.size, NULL), MSGPACK_UNPACK_SUCCESS);
        assert_int_equal(coverage_add(c, &u.data), 0);
        msgpack_unpacked_destroy(&u);
        msgpack_sbuffer_destroy(&sb);
}

static const CoverageEntry *find(const Coverage *c, CoverageKind k, const char *name)
{
        for (size_t i = 0; i < c->cat[k].n; i++)
                if (strcmp(c->cat[k].entries[i].name, name) == 0)
                        return &c->cat[k].entries[i];
        fail_msg("no entry %s", name);
        return NULL;
}

/* "ok=2 ENOENT=1": the entry's results in order. */
static void expect_results(const CoverageEntry *e, const char *want)
{
        char got[256] = "";
        for (size_t i = 0; i < e->nresults; i++)
                snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s=%llu", i ? " " : "",
                         e->results[i].name, (unsigned long long) e->results[i].n);
        assert_string_equal(got, want);
}

/* "f1: t1,f2: t2": the entry's tests in order of first use. */
static void expect_tests(const CoverageEntry *e, const char *want)
{
        char got[512] = "";
        for (size_t i = 0; i < e->ntests; i++)
                snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", i ? "," : "",
                         e->tests[i]);
        assert_string_equal(got, want);
}

/* ---- 1 counts ---- */

/* coverage-1.1: syscalls and ioctls count under their category and under ops; "ok" first,
 * then the most frequent result, then by name; entries by name. */
static void test_counts(void **state)
{
        Coverage c;
        coverage_init(&c);
        ev(&c, "op vm=a op=syscall file=f test=t ok=false error=ENOENT syscall=openat ret=-1");
        ev(&c, "op vm=a op=syscall file=f test=t ok=true error= syscall=openat ret=3");
        ev(&c, "op vm=a op=syscall file=f test=t ok=false error=EACCES syscall=openat ret=-1");
        ev(&c, "op vm=a op=syscall file=f test=t ok=false error=ENOENT syscall=openat ret=-1");
        ev(&c, "op vm=a op=syscall file=f test=u ok=true error= syscall=getpid ret=1");
        ev(&c, "op vm=a op=ioctl file=f test=u ok=false error=ENOTTY request=21523 ret=-1");
        ev(&c, "op vm=a op=exec file=f test=u ok=true error=");
        ev(&c, "op vm=a op=read_file file=f test=u ok=false error=");
        assert_int_equal(coverage_finish(&c), 0);
        assert_int_equal(c.events, 8);
        assert_int_equal(c.cat[COV_SYSCALLS].n, 2);
        assert_string_equal(c.cat[COV_SYSCALLS].entries[0].name, "getpid");
        const CoverageEntry *e = find(&c, COV_SYSCALLS, "openat");
        assert_int_equal(e->calls, 4);
        expect_results(e, "ok=1 ENOENT=2 EACCES=1");
        expect_tests(e, "f: t");
        e = find(&c, COV_IOCTLS, "0x5413");
        assert_int_equal(e->request, 21523);
        expect_results(e, "ENOTTY=1");
        expect_results(find(&c, COV_OPS, "syscall"), "ok=2 ENOENT=2 EACCES=1");
        expect_tests(find(&c, COV_OPS, "syscall"), "f: t,f: u");
        expect_results(find(&c, COV_OPS, "read_file"), "error=1");
        assert_int_equal(c.unattributed, 0);
        coverage_free(&c);
}

/* ---- 2 attribution ---- */

/* coverage-2.1: two files at once, both with a VM "a": every event goes by its own file and
 * test, however they interleave; one that names no file (the dispatcher's) goes to none. */
static void test_attribution(void **state)
{
        Coverage c;
        coverage_init(&c);
        coverage_stream_begin(&c);
        ev(&c, "file.start file=f1 test=(file)");
        ev(&c, "test.start file=f1 test=t1");
        ev(&c, "vm.lifecycle vm=a action=pause ok=true file=f1 test=t1");
        ev(&c, "file.start file=f2 test=(file)");
        ev(&c, "test.start file=f2 test=t2");
        ev(&c, "op vm=a op=exec file=f2 test=t2 ok=true error=");
        ev(&c, "op vm=b op=exec file=f1 test=t1 ok=true error=");
        ev(&c, "vm.lifecycle vm=a action=resume ok=true file=f2 test=t2");
        ev(&c, "vm.lifecycle vm=a action=resume ok=true file=f1 test=t1");
        ev(&c, "vm.lifecycle vm=a action=reset ok=false");
        ev(&c, "image.resolve image=default ok=true built=false file=f2 test=(file)");
        ev(&c, "file.end file=f2 test=(file)");
        ev(&c, "fixture.hit name=fx file=f1 test=t1");
        assert_int_equal(coverage_finish(&c), 0);
        expect_tests(find(&c, COV_OPS, "exec"), "f2: t2,f1: t1");
        expect_tests(find(&c, COV_LIFECYCLE, "pause"), "f1: t1");
        expect_tests(find(&c, COV_LIFECYCLE, "resume"), "f2: t2,f1: t1");
        expect_tests(find(&c, COV_LIFECYCLE, "reset"), "");
        expect_results(find(&c, COV_LIFECYCLE, "reset"), "failed=1");
        expect_results(find(&c, COV_IMAGES, "default"), "cached=1");
        expect_tests(find(&c, COV_IMAGES, "default"), "f2: (file)");
        expect_tests(find(&c, COV_FIXTURES, "fx"), "f1: t1");
        assert_int_equal(c.unattributed, 1);
        coverage_free(&c);
}

/* coverage-2.2: network impairments are named by their type and what. */
static void test_network(void **state)
{
        Coverage c;
        coverage_init(&c);
        ev(&c, "bridge.impair bridge=lan ifname=x what=partition");
        ev(&c, "bridge.heal bridge=lan ifname=x what=all");
        ev(&c, "bridge.latency bridge=lan vm=a ms=50 jitter_ms=0 where=guest");
        ev(&c, "bridge.latency bridge=lan vm=b ms=10 jitter_ms=0 where=guest");
        assert_int_equal(coverage_finish(&c), 0);
        assert_int_equal(c.cat[COV_NETWORK].n, 3);
        assert_int_equal(find(&c, COV_NETWORK, "impair partition")->calls, 1);
        assert_int_equal(find(&c, COV_NETWORK, "heal all")->calls, 1);
        assert_int_equal(find(&c, COV_NETWORK, "latency")->calls, 2);
        coverage_free(&c);
}

/* ---- 3 disk faults ---- */

/* coverage-3.1: fault_hit counts are running totals: each fault's largest one counts, summed
 * per kind; the same disk and fault id in another file, or in the same file in another stream
 * (another run), is another fault. */
static void test_fault_hits(void **state)
{
        Coverage c;
        coverage_init(&c);
        coverage_stream_begin(&c);
        ev(&c, "disk.fault disk=d fault=1 kind=eio_read file=f1 test=t1");
        ev(&c, "disk.fault_hit disk=d fault=1 kind=eio_read hits=1 file=f1 test=t1");
        ev(&c, "disk.fault disk=d fault=1 kind=eio_read file=f2 test=t2");
        ev(&c, "disk.fault_hit disk=d fault=1 kind=eio_read hits=3 file=f1 test=t1");
        ev(&c, "disk.fault_hit disk=d fault=1 kind=eio_read hits=2 file=f2 test=t2");
        ev(&c, "disk.fault_hit disk=d fault=1 kind=eio_read hits=3 file=f1 test=t1");
        ev(&c, "disk.fault disk=d fault=2 kind=slow file=f2 test=t2");
        coverage_stream_begin(&c);
        ev(&c, "disk.fault disk=d fault=1 kind=eio_read file=f1 test=t1");
        ev(&c, "disk.fault_hit disk=d fault=1 kind=eio_read hits=1 file=f1 test=t1");
        assert_int_equal(coverage_finish(&c), 0);
        const CoverageEntry *e = find(&c, COV_DISK_FAULTS, "eio_read");
        assert_int_equal(e->calls, 3);
        assert_int_equal(e->hits, 6);
        expect_tests(e, "f1: t1,f2: t2");
        assert_int_equal(find(&c, COV_DISK_FAULTS, "slow")->hits, 0);
        coverage_free(&c);
}

/* ---- 4 the universe ---- */

/* coverage-4.1: the syscalls no test made: sorted, without those made. */
static void test_universe(void **state)
{
        Coverage c;
        coverage_init(&c);
        ev(&c, "op vm=a op=syscall file=f test=t ok=true error= syscall=getpid ret=1");
        assert_int_equal(coverage_finish(&c), 0);
        const char **names = NULL;
        size_t total = 0;
        ssize_t n = coverage_unexercised_syscalls(&c, &names, &total);
        assert_true(total > 300);
        assert_int_equal(n, (ssize_t) total - 1);
        for (ssize_t i = 0; i < n; i++) {
                assert_string_not_equal(names[i], "getpid");
                if (i)
                        assert_true(strcmp(names[i - 1], names[i]) < 0);
        }
        free(names);
        coverage_free(&c);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_counts),   cmocka_unit_test(test_attribution),
            cmocka_unit_test(test_network),  cmocka_unit_test(test_fault_hits),
            cmocka_unit_test(test_universe),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
