/* The KVM probe's verdict cache (src/cli/accel_cache.c): a stored verdict loads back; a file
 * that is not a valid verdict for its key (truncated, oversized, with NULs or control bytes,
 * a bad field, another key, a symlink) is refused, never trusted. No VM, no probe. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "accel.h"
#include "env.h"

#define KEY "0123456789abcdef0123456789abcdef"

static char cache[64];

static int setup(void **state)
{
        snprintf(cache, sizeof cache, "/tmp/provium-accel-test-XXXXXX");
        assert_non_null(mkdtemp(cache));
        assert_int_equal(setenv("XDG_CACHE_HOME", cache, 1), 0);
        assert_int_equal(env_init(), 0);
        assert_non_null(accel_cache_dir());
        return 0;
}

static int teardown(void **state)
{
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", cache);
        assert_int_equal(system(cmd), 0);
        return 0;
}

static void write_verdict(const char *text, size_t len)
{
        char path[256];
        snprintf(path, sizeof path, "%s/" KEY ".verdict", accel_cache_dir());
        (void) unlink(path);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, len), (ssize_t) len);
        assert_int_equal(close(fd), 0);
}

static const char good[] = "format=1\nkey=" KEY "\nverdict=tcg\nreason=the guest printed nothing"
                           "\nprobed_at=1700000000\nprobe_ms=8012\nqemu=/usr/bin/q\nkernel=/k\n";

static void test_round_trip(void **state)
{
        AccelProbeTarget t = {.qemu = "/usr/bin/qemu-system-x86_64", .kernel = "/k/vmlinux"};
        AccelProbe p = {.ok = true, .seconds = 0.42};
        snprintf(p.reason, sizeof p.reason, "reached init in 0.42 s");
        AccelVerdict v, back;
        accel_verdict_of(&t, &p, KEY, &v);
        v.timeout_s = 8;
        assert_int_equal(accel_verdict_store(&v), 0);
        assert_int_equal(accel_verdict_load(KEY, &back), 0);
        assert_true(back.kvm);
        assert_string_equal(back.reason, "reached init in 0.42 s");
        assert_string_equal(back.qemu, t.qemu);
        assert_string_equal(back.kernel, t.kernel);
        assert_int_equal((int) (back.seconds * 1000 + 0.5), 420);
        assert_int_equal((int) back.timeout_s, 8);
        assert_int_equal(accel_verdict_load("ffffffffffffffffffffffffffffffff", &back), -ENOENT);
}

static void test_good_file(void **state)
{
        AccelVerdict v;
        write_verdict(good, strlen(good));
        assert_int_equal(accel_verdict_load(KEY, &v), 0);
        assert_false(v.kvm);
        assert_int_equal(v.probed_at, 1700000000);
}

static void test_bad_files(void **state)
{
        static const char *bad[] = {
            "",
            "format=1\n",
            "format=2\nkey=" KEY "\nverdict=tcg\nreason=x\nprobed_at=1\n",
            "format=1\nkey=ffffffffffffffffffffffffffffffff\nverdict=tcg\nreason=x\nprobed_at=1\n",
            "format=1\nkey=" KEY "\nverdict=maybe\nreason=x\nprobed_at=1\n",
            "format=1\nkey=" KEY "\nverdict=kvm\nreason=x\nprobed_at=-5\n",
            "format=1\nkey=" KEY "\nverdict=kvm\nreason=x\nprobed_at=12x\n",
            "format=1\nkey=" KEY "\nverdict=kvm\nreason=\x1b[31mred\nprobed_at=1\n",
            "format=1\nkey=" KEY "\nverdict=kvm\nno equals sign\nprobed_at=1\n",
            "verdict=kvm\n",
        };
        AccelVerdict v;
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
                write_verdict(bad[i], strlen(bad[i]));
                int r = accel_verdict_load(KEY, &v);
                if (r != -EBADMSG)
                        fail_msg("case %zu: expected -EBADMSG, got %d", i, r);
        }
        /* A valid verdict followed by a NUL: only the NUL check refuses it. */
        char nul[sizeof good + 16];
        memcpy(nul, good, strlen(good));
        memcpy(nul + strlen(good), "\0verdict=kvm\n", 14);
        write_verdict(nul, strlen(good) + 14);
        assert_int_equal(accel_verdict_load(KEY, &v), -EBADMSG);
        /* A valid verdict padded past the limit with fields a later version might add: only
         * the size check refuses it. */
        char *big = malloc(8192);
        assert_non_null(big);
        size_t n = strlen(good);
        memcpy(big, good, n);
        while (n + 64 < 8192) {
                memcpy(big + n, "zzz=", 4);
                memset(big + n + 4, 'a', 59);
                big[n + 63] = '\n';
                n += 64;
        }
        write_verdict(big, n);
        free(big);
        assert_int_equal(accel_verdict_load(KEY, &v), -EBADMSG);
        /* the same fields within the limit are fine */
        char small[sizeof good + 64];
        snprintf(small, sizeof small, "%szzz=later\n", good);
        write_verdict(small, strlen(small));
        assert_int_equal(accel_verdict_load(KEY, &v), 0);
}

/* A key that is not 32 hex digits never becomes a path. */
static void test_bad_key(void **state)
{
        AccelVerdict v;
        assert_int_equal(accel_verdict_load("../../etc/passwd", &v), -EINVAL);
        assert_int_equal(accel_verdict_load("0123456789ABCDEF0123456789ABCDEF", &v), -EINVAL);
        AccelVerdict w = {.probed_at = 1};
        snprintf(w.key, sizeof w.key, "short");
        assert_int_equal(accel_verdict_store(&w), -EINVAL);
}

/* A FIFO where the verdict should be is refused at once instead of blocking the run. */
static void test_fifo_refused(void **state)
{
        char path[256];
        snprintf(path, sizeof path, "%s/" KEY ".verdict", accel_cache_dir());
        (void) unlink(path);
        assert_int_equal(mkfifo(path, 0644), 0);
        AccelVerdict v;
        assert_int_equal(accel_verdict_load(KEY, &v), -EBADMSG);
        assert_int_equal(unlink(path), 0);
}

static void test_symlink_refused(void **state)
{
        char target[256], path[256];
        snprintf(target, sizeof target, "%s/elsewhere", cache);
        snprintf(path, sizeof path, "%s/" KEY ".verdict", accel_cache_dir());
        FILE *f = fopen(target, "w");
        assert_non_null(f);
        fputs(good, f);
        fclose(f);
        (void) unlink(path);
        assert_int_equal(symlink(target, path), 0);
        AccelVerdict v;
        assert_int_equal(accel_verdict_load(KEY, &v), -ELOOP);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_round_trip), cmocka_unit_test(test_good_file),
            cmocka_unit_test(test_bad_files),  cmocka_unit_test(test_symlink_refused),
            cmocka_unit_test(test_bad_key),    cmocka_unit_test(test_fifo_refused),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
