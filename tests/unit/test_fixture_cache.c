/* test_fixture_cache.c: unit tests for the fixture cache (src/host/cache/fixture_cache.c).
 *
 * No VM runs: the state and ram files are made up (a patterned state file, a sparse ram file
 * with a few data extents). XDG_CACHE_HOME points at a fresh mkdtemp directory for the whole
 * run (paths_cache_dir() resolves it once per process); every test starts with an empty
 * fixtures directory. The test for a cache directory that cannot be created runs this binary
 * again (--open-child) so that paths_cache_dir() sees another XDG_CACHE_HOME.
 *
 * Sections: helpers, 1 key and names, 2 build and lookup, 3 locking, 4 corruption, 5 errors,
 * 6 list and clear, 7 QEMU's version. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "env.h"
#include "fixture_cache.h"
#include "fixture_internal.h"
#include "qemu.h"
#include "paths.h"

#define KEY1    "0123456789abcdef0123456789abcdef"
#define KEY2    "fedcba9876543210fedcba9876543210"
#define KEY3    "00000000000000000000000000000003"
#define RAM_MIB 64

static char tmpdir[256];
static char self_exe[4096];

/* ---- helpers ---- */

static char *fmt(const char *f, ...)
{
        static char bufs[16][4096];
        static int next;
        char *b = bufs[next++ % 16];
        va_list ap;

        va_start(ap, f);
        (void) vsnprintf(b, sizeof bufs[0], f, ap);
        va_end(ap);
        return b;
}

static const char *root(void)
{
        return fmt("%s/provium/fixtures", tmpdir);
}

static bool exists(const char *path)
{
        struct stat sb;

        return lstat(path, &sb) == 0;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
        return remove(path);
}

static void rm_tree(const char *path)
{
        (void) nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_file(const char *path, const void *data, size_t len)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, len), (ssize_t) len);
        assert_int_equal(close(fd), 0);
}

static void pwrite_file(const char *path, const void *data, size_t len, off_t off)
{
        int fd = open(path, O_WRONLY | O_CLOEXEC);

        assert_true(fd >= 0);
        assert_int_equal(pwrite(fd, data, len, off), (ssize_t) len);
        assert_int_equal(close(fd), 0);
}

/* A 200 KB state file and a RAM_MIB sparse ram file with data at 0, 1 MiB and 40 MiB. */
static void make_vm_files(FixtureBuild *b, const char *vm)
{
        static char buf[200 * 1024];
        const char *ram = fixture_build_ram_path(b, vm);
        int fd;

        for (size_t i = 0; i < sizeof buf; i++)
                buf[i] = (char) (i * 7 + vm[0]);
        write_file(fixture_build_state_path(b, vm), buf, sizeof buf);
        fd = open(ram, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, (off_t) RAM_MIB << 20), 0);
        assert_int_equal(close(fd), 0);
        pwrite_file(ram, buf, 8192, 0);
        pwrite_file(ram, buf + 100, 65536, 1 << 20);
        pwrite_file(ram, buf + 5, 4096, 40 << 20);
}

/* Builds and commits name-key with the given VMs. */
static FixtureEntry *make_fixture(const char *name, const char *key, const char *const *vms)
{
        FixtureEntry *e = NULL;
        FixtureBuild *b = NULL;
        char corrupt[256], err[512];

        assert_int_equal(
            fixture_cache_open(name, key, &e, &b, corrupt, sizeof corrupt, err, sizeof err), 0);
        assert_null(e);
        assert_non_null(b);
        assert_string_equal(corrupt, "");
        for (size_t i = 0; vms[i]; i++) {
                assert_int_equal(fixture_build_add_vm(b, vms[i],
                                                      fmt("{\"mem\": 256, \"vm\": \"%s\", "
                                                          "\"nested\": {\"x\": [1, 2]}}",
                                                          vms[i])),
                                 0);
                make_vm_files(b, vms[i]);
        }
        assert_int_equal(fixture_build_commit(b, &e, err, sizeof err), 0);
        assert_non_null(e);
        return e;
}

/* Opens name-key expecting a miss (0) and returns the build; corrupt gets the reason. */
static FixtureBuild *open_miss(const char *name, const char *key, char *corrupt, size_t len)
{
        FixtureEntry *e = NULL;
        FixtureBuild *b = NULL;
        char err[512];
        int r = fixture_cache_open(name, key, &e, &b, corrupt, len, err, sizeof err);

        if (r != 0)
                fail_msg("open %s-%s returned %d: %s", name, key, r, err);
        assert_null(e);
        assert_non_null(b);
        return b;
}

static FixtureEntry *open_hit(const char *name, const char *key)
{
        FixtureEntry *e = NULL;
        FixtureBuild *b = NULL;
        char corrupt[256], err[512];
        int r = fixture_cache_open(name, key, &e, &b, corrupt, sizeof corrupt, err, sizeof err);

        if (r != 1)
                fail_msg("open %s-%s returned %d (corrupt '%s', err '%s')", name, key, r, corrupt,
                         err);
        assert_null(b);
        assert_string_equal(corrupt, "");
        return e;
}

/* Expects open to report the entry base-KEY1 as corrupt (a one-line reason containing
 * want), remove it, and hand out a build. */
static void expect_corrupt(const char *want)
{
        char corrupt[512];
        FixtureBuild *b = open_miss("base", KEY1, corrupt, sizeof corrupt);

        if (!strstr(corrupt, want))
                fail_msg("corrupt reason '%s' does not mention '%s'", corrupt, want);
        assert_null(strchr(corrupt, '\n'));
        assert_false(exists(fmt("%s/base-%s", root(), KEY1)));
        assert_true(exists(fixture_build_dir(b)));
        fixture_build_abort(b);
}

static const char *const VMS_AB[] = {"a", "b", NULL};

static int setup(void **state)
{
        rm_tree(root());
        return 0;
}

static int teardown(void **state)
{
        rm_tree(root());
        return 0;
}

/* ---- 1 key and names ---- */

/* fixture-1.1: the key is 32 lowercase hex digits, a function of the material only. */
static void test_key(void **state)
{
        char a[33], b[33], c[33];

        fixture_cache_key("abc", 3, a);
        fixture_cache_key("abc", 3, b);
        fixture_cache_key("abd", 3, c);
        assert_int_equal(strlen(a), 32);
        assert_int_equal(strspn(a, "0123456789abcdef"), 32);
        assert_string_equal(a, b);
        assert_string_not_equal(a, c);
}

/* fixture-1.2: invalid names and keys are refused before touching the disk. */
static void test_invalid_name_key(void **state)
{
        FixtureEntry *e = NULL;
        FixtureBuild *b = NULL;
        char err[512];

        assert_int_equal(fixture_cache_open("bad name", KEY1, &e, &b, NULL, 0, err, sizeof err),
                         -EINVAL);
        assert_non_null(strstr(err, "invalid name"));
        assert_int_equal(fixture_cache_open("x.y", KEY1, &e, &b, NULL, 0, err, sizeof err),
                         -EINVAL);
        assert_int_equal(fixture_cache_open("base", "0123456789ABCDEF0123456789ABCDEF", &e, &b,
                                            NULL, 0, err, sizeof err),
                         -EINVAL);
        assert_non_null(strstr(err, "invalid key"));
        assert_int_equal(fixture_cache_open("base", "0123", &e, &b, NULL, 0, err, sizeof err),
                         -EINVAL);
        assert_null(e);
        assert_null(b);
}

/* ---- 2 build and lookup ---- */

/* fixture-2.1: commit, then open: a hit with the entry's paths, sizes and config. */
static void test_commit_then_open(void **state)
{
        FixtureEntry *c = make_fixture("base", KEY1, VMS_AB), *e;
        char dir[4096];
        time_t now = time(NULL);

        (void) snprintf(dir, sizeof dir, "%s/base-%s", root(), KEY1);
        assert_string_equal(c->dir, dir);
        assert_int_equal(c->nvms, 2);
        fixture_entry_free(c);

        e = open_hit("base", KEY1);
        assert_string_equal(e->name, "base");
        assert_string_equal(e->key, KEY1);
        assert_string_equal(e->dir, dir);
        assert_int_equal(e->nvms, 2);
        assert_true(e->created <= now && e->created >= now - 60);
        assert_true(e->disk_bytes >= 2 * (200 * 1024 + 76 * 1024));
        assert_true(e->disk_bytes < 4u << 20); /* the ram files stayed sparse */
        for (size_t i = 0; i < 2; i++) {
                const FixtureVm *vm = &e->vms[i];
                json_t *cfg = json_loads(vm->config_json, 0, NULL);
                assert_string_equal(vm->name, VMS_AB[i]);
                assert_string_equal(vm->state_path, fmt("%s/%s.state", dir, VMS_AB[i]));
                assert_string_equal(vm->ram_path, fmt("%s/%s.ram", dir, VMS_AB[i]));
                assert_int_equal(vm->state_size, 200 * 1024);
                assert_int_equal(vm->ram_size, (uint64_t) RAM_MIB << 20);
                assert_true(json_is_object(cfg));
                assert_int_equal(json_integer_value(json_object_get(cfg, "mem")), 256);
                assert_string_equal(json_string_value(json_object_get(cfg, "vm")), VMS_AB[i]);
                json_decref(cfg);
        }
        fixture_entry_free(e);

        /* meta.json embeds config as an object; no lock file or staging dir is left. */
        json_t *meta = json_load_file(fmt("%s/meta.json", dir), 0, NULL);
        assert_non_null(meta);
        assert_int_equal(json_integer_value(json_object_get(meta, "format")), 3);
        json_t *vm0 = json_array_get(json_object_get(meta, "vms"), 0);
        assert_true(json_is_object(json_object_get(vm0, "config")));
        assert_int_equal(strlen(json_string_value(json_object_get(vm0, "state_xxh3"))), 16);
        assert_int_equal(strlen(json_string_value(json_object_get(vm0, "ram_xxh3"))), 16);
        json_decref(meta);
        assert_false(exists(fmt("%s/base-%s.lock", root(), KEY1)));
        assert_false(exists(fmt("%s/.base-%s.tmp-%ld", root(), KEY1, (long) getpid())));
}

/* fixture-2.2: the staging directory is empty and named after the pid; the path helpers
 * point into it, for registered VMs and others. */
static void test_build_paths(void **state)
{
        FixtureBuild *b = open_miss("base", KEY1, NULL, 0);
        const char *dir = fixture_build_dir(b);
        const char *s1, *s2;

        assert_string_equal(dir, fmt("%s/.base-%s.tmp-%ld", root(), KEY1, (long) getpid()));
        s1 = fixture_build_state_path(b, "vm1");
        s2 = fixture_build_state_path(b, "vm1");
        assert_ptr_equal(s1, s2);
        assert_string_equal(s1, fmt("%s/vm1.state", dir));
        assert_string_equal(fixture_build_ram_path(b, "vm1"), fmt("%s/vm1.ram", dir));
        assert_null(fixture_build_ram_path(b, "../x"));
        fixture_build_abort(b);
}

/* fixture-2.3: abort leaves neither staging directory nor entry nor lock file. */
static void test_abort(void **state)
{
        FixtureBuild *b = open_miss("base", KEY1, NULL, 0);
        char *dir = strdup(fixture_build_dir(b));

        assert_int_equal(fixture_build_add_vm(b, "a", "{}"), 0);
        make_vm_files(b, "a");
        fixture_build_abort(b);
        fixture_build_abort(NULL);
        assert_false(exists(dir));
        assert_false(exists(fmt("%s/base-%s", root(), KEY1)));
        assert_false(exists(fmt("%s/base-%s.lock", root(), KEY1)));
        free(dir);
        b = open_miss("base", KEY1, NULL, 0); /* the lock was released */
        fixture_build_abort(b);
}

/* fixture-2.4: staging directories of dead processes are removed when the lock is taken;
 * those of live ones stay. */
static void test_stale_staging(void **state)
{
        pid_t dead = fork();
        int status;

        assert_true(dead >= 0);
        if (dead == 0)
                _exit(0);
        assert_int_equal(waitpid(dead, &status, 0), dead);
        assert_int_equal(paths_mkdir_p(root(), 0755), 0);
        const char *stale = fmt("%s/.base-%s.tmp-%ld", root(), KEY1, (long) dead);
        const char *live = fmt("%s/.base-%s.tmp-1", root(), KEY1);
        assert_int_equal(mkdir(stale, 0755), 0);
        write_file(fmt("%s/a.state", stale), "x", 1);
        assert_int_equal(mkdir(live, 0755), 0);

        FixtureBuild *b = open_miss("base", KEY1, NULL, 0);
        assert_false(exists(stale));
        assert_true(exists(live));
        fixture_build_abort(b);
}

/* ---- 3 locking ---- */

/* fixture-3.1: while a child process holds the build, open returns -EWOULDBLOCK without
 * waiting; once it aborted, the lock is free again. */
static void test_busy_in_child(void **state)
{
        int up[2], down[2], status;
        char c;
        pid_t pid;

        assert_int_equal(pipe(up), 0);
        assert_int_equal(pipe(down), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                FixtureEntry *e = NULL;
                FixtureBuild *b = NULL;
                int r = fixture_cache_open("base", KEY1, &e, &b, NULL, 0, NULL, 0);
                c = r == 0 ? 'y' : 'n';
                if (write(up[1], &c, 1) != 1 || read(down[0], &c, 1) != 1)
                        _exit(2);
                fixture_build_abort(b);
                _exit(r == 0 ? 0 : 1);
        }
        assert_int_equal(read(up[0], &c, 1), 1);
        assert_int_equal(c, 'y');

        FixtureEntry *e = NULL;
        FixtureBuild *b = NULL;
        char corrupt[64] = "x", err[512];
        assert_int_equal(
            fixture_cache_open("base", KEY1, &e, &b, corrupt, sizeof corrupt, err, sizeof err),
            -EWOULDBLOCK);
        assert_null(e);
        assert_null(b);
        assert_string_equal(corrupt, "");
        assert_non_null(strstr(err, "being built"));

        assert_int_equal(write(down[1], "g", 1), 1);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        for (int i = 0; i < 4; i++)
                (void) close(i < 2 ? up[i] : down[i - 2]);
        b = open_miss("base", KEY1, NULL, 0);
        fixture_build_abort(b);
}

/* fixture-3.2: a corrupt entry whose lock is held elsewhere is left alone: -EWOULDBLOCK. */
static void test_corrupt_but_busy(void **state)
{
        fixture_entry_free(make_fixture("base", KEY1, VMS_AB));
        assert_int_equal(truncate(fmt("%s/base-%s/a.state", root(), KEY1), 10), 0);
        int fd = open(fmt("%s/base-%s.lock", root(), KEY1), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(flock(fd, LOCK_EX), 0);

        FixtureEntry *e = NULL;
        FixtureBuild *b = NULL;
        assert_int_equal(fixture_cache_open("base", KEY1, &e, &b, NULL, 0, NULL, 0), -EWOULDBLOCK);
        assert_true(exists(fmt("%s/base-%s", root(), KEY1)));
        assert_int_equal(close(fd), 0);
        b = open_miss("base", KEY1, NULL, 0);
        fixture_build_abort(b);
}

/* ---- 4 corruption ---- */

/* fixture-4.1: a truncated state file. */
static void test_corrupt_state_truncated(void **state)
{
        fixture_entry_free(make_fixture("base", KEY1, VMS_AB));
        assert_int_equal(truncate(fmt("%s/base-%s/a.state", root(), KEY1), 1234), 0);
        expect_corrupt("vm a: a.state is 1234 bytes, meta.json says 204800");
}

/* fixture-4.2: one flipped byte in a state file. */
static void test_corrupt_state_flipped(void **state)
{
        fixture_entry_free(make_fixture("base", KEY1, VMS_AB));
        pwrite_file(fmt("%s/base-%s/b.state", root(), KEY1), "\xff\xfe", 2, 150000);
        expect_corrupt("vm b: b.state XXH3 is ");
}

/* fixture-4.3: one changed byte in a data extent of a ram file, far from the start. */
static void test_corrupt_ram_extent(void **state)
{
        fixture_entry_free(make_fixture("base", KEY1, VMS_AB));
        pwrite_file(fmt("%s/base-%s/a.ram", root(), KEY1), "\x01\x02\x03", 3, (40 << 20) + 17);
        expect_corrupt("vm a: a.ram data XXH3 is ");
}

/* fixture-4.3b: zeros written into a hole of a ram file (what tmpfs does when a clone's guest
 * only reads that memory) leave the entry valid: a hole and zeros hash alike. */
static void test_ram_hole_filled_with_zeros(void **state)
{
        static char zeros[3 << 20];
        fixture_entry_free(make_fixture("base", KEY1, VMS_AB));
        pwrite_file(fmt("%s/base-%s/a.ram", root(), KEY1), zeros, sizeof zeros, 8 << 20);
        fixture_entry_free(open_hit("base", KEY1));
}

/* ...but a page of data turned to zeros is a change: zero pages are skipped, their offsets
 * are not. */
static void test_ram_data_zeroed(void **state)
{
        static char zeros[4096];
        fixture_entry_free(make_fixture("base", KEY1, VMS_AB));
        pwrite_file(fmt("%s/base-%s/a.ram", root(), KEY1), zeros, sizeof zeros, 0);
        expect_corrupt("vm a: a.ram data XXH3 is ");
}

/* fixture-4.3c: a file this process already checked is not hashed again while it is unchanged
 * (fixture_verified.c), but a change in place is seen even when it keeps the file's size and
 * mtime: its ctime moved. */
static void test_verified_then_edited(void **state)
{
        fixture_entry_free(make_fixture("base", KEY1, VMS_AB));
        fixture_entry_free(open_hit("base", KEY1));
        fixture_entry_free(open_hit("base", KEY1));
        const char *ram = fmt("%s/base-%s/a.ram", root(), KEY1);
        struct stat sb;
        assert_int_equal(stat(ram, &sb), 0);
        pwrite_file(ram, "\x05", 1, (40 << 20) + 99);
        struct timespec times[2] = {sb.st_atim, sb.st_mtim};
        assert_int_equal(utimensat(AT_FDCWD, ram, times, 0), 0);
        expect_corrupt("vm a: a.ram data XXH3 is ");
}

/* fixture-4.4: a ram file of another size, and a missing one. */
static void test_corrupt_ram_size_missing(void **state)
{
        fixture_entry_free(make_fixture("base", KEY1, VMS_AB));
        assert_int_equal(truncate(fmt("%s/base-%s/b.ram", root(), KEY1), 1 << 20), 0);
        expect_corrupt("vm b: b.ram is 1048576 bytes");

        fixture_entry_free(make_fixture("base", KEY1, VMS_AB));
        assert_int_equal(unlink(fmt("%s/base-%s/a.ram", root(), KEY1)), 0);
        expect_corrupt("vm a: a.ram: No such file or directory");
}

/* fixture-4.5: meta.json with garbage, missing, of another format or another key. */
static void test_corrupt_meta(void **state)
{
        char meta[4096];

        (void) snprintf(meta, sizeof meta, "%s/base-%s/meta.json", root(), KEY1);
        fixture_entry_free(make_fixture("base", KEY1, VMS_AB));
        write_file(meta, "{garbage", 8);
        expect_corrupt("meta.json does not parse");

        fixture_entry_free(make_fixture("base", KEY1, VMS_AB));
        assert_int_equal(unlink(meta), 0);
        expect_corrupt("meta.json is missing");

        const char *bad[] = {
            "{\"format\": 4, \"name\": \"base\", \"key\": \"" KEY1 "\", \"created\": 1, "
            "\"vms\": []}",
            "{\"format\": 3, \"name\": \"base\", \"key\": \"" KEY2 "\", \"created\": 1, "
            "\"vms\": []}",
            "{\"format\": 3, \"name\": \"base\", \"key\": \"" KEY1 "\", \"created\": 1, "
            "\"vms\": []}",
            "{\"format\": 3, \"name\": \"base\", \"key\": \"" KEY1 "\", \"created\": 1, "
            "\"vms\": [{\"name\": \"a\"}]}",
            "[]",
        };
        const char *want[] = {"format 3", "key " KEY2, "no VMs", "vm 0", "meta.json: "};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                fixture_entry_free(make_fixture("base", KEY1, VMS_AB));
                write_file(meta, bad[i], strlen(bad[i]));
                expect_corrupt(want[i]);
        }
}

/* fixture-4.5c: a file shorter than the size hashed (cut meanwhile) is an error, not SIGBUS:
 * the files are read, not mapped. */
static void test_hash_cut_file(void **state)
{
        const char *path = fmt("%s/cut", root());
        char data[8192], sum[17];
        memset(data, 'x', sizeof data);
        assert_int_equal(mkdir(root(), 0755) == 0 || errno == EEXIST, 1);
        write_file(path, data, sizeof data);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(fixture__hash_fd(fd, sizeof data, false, sum), 0);
        assert_int_equal(fixture__hash_fd(fd, 8 * sizeof data, false, sum), -EIO);
        assert_int_equal(fixture__hash_fd(fd, 8 * sizeof data, true, sum), 0); /* its extents */
        assert_int_equal(close(fd), 0);
}

/* fixture-4.5b: a VM's config changed in meta.json (it is not in the files' hashes) is found. */
static void test_changed_config(void **state)
{
        const char *meta = fmt("%s/base-%s/meta.json", root(), KEY1);
        fixture_entry_free(make_fixture("base", KEY1, VMS_AB));
        json_t *m = json_load_file(meta, 0, NULL);
        assert_non_null(m);
        json_t *cfg = json_object_get(json_array_get(json_object_get(m, "vms"), 0), "config");
        assert_int_equal(json_object_set_new(cfg, "mem", json_integer(4096)), 0);
        assert_int_equal(json_dump_file(m, meta, JSON_INDENT(2)), 0);
        json_decref(m);
        expect_corrupt("vm a: config XXH3 is ");
}

/* fixture-4.6: after a corrupt entry was removed, a rebuild commits and hits again. */
static void test_rebuild_after_corrupt(void **state)
{
        fixture_entry_free(make_fixture("base", KEY1, VMS_AB));
        assert_int_equal(truncate(fmt("%s/base-%s/a.state", root(), KEY1), 0), 0);
        char corrupt[256];
        FixtureBuild *b = open_miss("base", KEY1, corrupt, sizeof corrupt);
        assert_string_not_equal(corrupt, "");
        assert_int_equal(fixture_build_add_vm(b, "a", "{\"again\": true}"), 0);
        make_vm_files(b, "a");
        FixtureEntry *e = NULL;
        assert_int_equal(fixture_build_commit(b, &e, NULL, 0), 0);
        fixture_entry_free(e);
        e = open_hit("base", KEY1);
        assert_int_equal(e->nvms, 1);
        assert_string_equal(e->vms[0].config_json, "{\"again\":true}");
        fixture_entry_free(e);
}

/* ---- 5 errors ---- */

/* fixture-5.1: the build API refuses bad VM names, configs that are not objects and
 * duplicates; a commit without VMs or with a missing file fails, cleans up and unlocks. */
static void test_build_errors(void **state)
{
        FixtureBuild *b = open_miss("base", KEY1, NULL, 0);
        char err[512];

        assert_int_equal(fixture_build_add_vm(b, "a/b", "{}"), -EINVAL);
        assert_int_equal(fixture_build_add_vm(b, "a", "[1]"), -EINVAL);
        assert_int_equal(fixture_build_add_vm(b, "a", "{nope"), -EINVAL);
        assert_int_equal(fixture_build_add_vm(b, "a", "{}"), 0);
        assert_int_equal(fixture_build_add_vm(b, "a", "{}"), -EEXIST);
        write_file(fixture_build_state_path(b, "a"), "s", 1); /* no a.ram */
        char *dir = strdup(fixture_build_dir(b));
        assert_int_equal(fixture_build_commit(b, NULL, err, sizeof err), -ENOENT);
        assert_non_null(strstr(err, "fixture base: vm a: a.ram: No such file or directory"));
        assert_false(exists(dir));
        assert_false(exists(fmt("%s/base-%s", root(), KEY1)));
        free(dir);

        b = open_miss("base", KEY1, NULL, 0);
        assert_int_equal(fixture_build_commit(b, NULL, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, "without any VM"));
        b = open_miss("base", KEY1, NULL, 0);
        fixture_build_abort(b);
}

/* fixture-5.2: the fixtures directory is a regular file: mkdir fails with ENOTDIR. */
static void test_root_not_a_directory(void **state)
{
        FixtureEntry *e = NULL;
        FixtureBuild *b = NULL;
        char err[512];

        assert_int_equal(paths_mkdir_p(fmt("%s/provium", tmpdir), 0755), 0);
        write_file(root(), "x", 1);
        assert_int_equal(fixture_cache_open("base", KEY1, &e, &b, NULL, 0, err, sizeof err),
                         -ENOTDIR);
        assert_string_equal(err, fmt("fixture base: cache directory %s cannot be created: Not a "
                                     "directory",
                                     root()));
        assert_int_equal(unlink(root()), 0);
}

/* fixture-5.3: the lock file cannot be created (here: a directory is in its place). */
static void test_lock_not_creatable(void **state)
{
        FixtureEntry *e = NULL;
        FixtureBuild *b = NULL;
        char err[512];

        assert_int_equal(paths_mkdir_p(fmt("%s/base-%s.lock", root(), KEY1), 0755), 0);
        assert_int_equal(fixture_cache_open("base", KEY1, &e, &b, NULL, 0, err, sizeof err),
                         -EISDIR);
        assert_string_equal(err, fmt("fixture base: cache directory %s is not writable: base-%s"
                                     ".lock: Is a directory",
                                     root(), KEY1));
}

/* fixture-5.4: XDG_CACHE_HOME under a regular file (in a fresh process, as paths_cache_dir
 * resolves once): a message naming the directory and the reason. */
static void test_cache_dir_enotdir(void **state)
{
        const char *file = fmt("%s/file", tmpdir);
        char out[1024] = "";
        int p[2], status;
        ssize_t n, len = 0;
        pid_t pid;

        write_file(file, "x", 1);
        assert_int_equal(pipe(p), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                (void) dup2(p[1], 1);
                (void) setenv("XDG_CACHE_HOME", fmt("%s/x", file), 1);
                (void) execl(self_exe, self_exe, "--open-child", (char *) NULL);
                _exit(127);
        }
        (void) close(p[1]);
        while ((n = read(p[0], out + len, sizeof out - 1 - (size_t) len)) > 0)
                len += n;
        (void) close(p[0]);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        out[len] = '\0';
        assert_string_equal(out, fmt("%d fixture base: cache directory %s/x/provium: Not a "
                                     "directory\n",
                                     -ENOTDIR, file));
        assert_int_equal(unlink(file), 0);
}

/* ---- 6 list and clear ---- */

/* fixture-6.1: ls lists every entry (a broken one with no VMs) sorted by name, and nothing
 * else (lock files, staging directories). */
static void test_list(void **state)
{
        static const char *const vms_c[] = {"c", NULL};
        FixtureEntry **v = NULL;
        size_t n = 99;

        assert_int_equal(fixture_cache_list(&v, &n), 0);
        assert_int_equal(n, 0);
        fixture_cache_list_free(v, n);

        fixture_entry_free(make_fixture("zeta", KEY1, vms_c));
        fixture_entry_free(make_fixture("base", KEY2, VMS_AB));
        fixture_entry_free(make_fixture("base", KEY1, vms_c));
        write_file(fmt("%s/zeta-%s/meta.json", root(), KEY1), "nope", 4);
        FixtureBuild *b = open_miss("mid", KEY3, NULL, 0); /* lock + staging, no entry */

        assert_int_equal(fixture_cache_list(&v, &n), 0);
        assert_int_equal(n, 3);
        assert_string_equal(v[0]->name, "base");
        assert_string_equal(v[1]->name, "base");
        assert_true(v[0]->created <= v[1]->created);
        assert_string_equal(v[2]->name, "zeta");
        assert_int_equal(v[2]->nvms, 0);
        assert_true(v[2]->disk_bytes > 0);
        for (size_t i = 0; i < 2; i++) {
                assert_true(v[i]->nvms >= 1);
                assert_true(v[i]->disk_bytes > 0);
                assert_string_equal(v[i]->dir, fmt("%s/base-%s", root(), v[i]->key));
        }
        fixture_cache_list_free(v, n);
        fixture_build_abort(b);
}

/* fixture-6.2: clear by name, then everything; an entry whose lock is held is skipped and
 * counted as busy. */
static void test_clear(void **state)
{
        char err[512];
        size_t busy = 99;
        FixtureEntry **v = NULL;
        size_t n = 0;

        fixture_entry_free(make_fixture("base", KEY1, VMS_AB));
        fixture_entry_free(make_fixture("base", KEY2, VMS_AB));
        fixture_entry_free(make_fixture("other", KEY1, VMS_AB));
        fixture_entry_free(make_fixture("other", KEY3, VMS_AB));

        assert_int_equal(fixture_cache_clear("base", &busy, err, sizeof err), 2);
        assert_int_equal(busy, 0);
        assert_false(exists(fmt("%s/base-%s", root(), KEY1)));
        assert_false(exists(fmt("%s/base-%s", root(), KEY2)));
        assert_false(exists(fmt("%s/base-%s.lock", root(), KEY1)));
        assert_int_equal(fixture_cache_list(&v, &n), 0);
        assert_int_equal(n, 2);
        fixture_cache_list_free(v, n);

        int fd = open(fmt("%s/other-%s.lock", root(), KEY3), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(flock(fd, LOCK_EX), 0);
        FixtureBuild *b = open_miss("new", KEY1, NULL, 0); /* a build in progress */
        assert_int_equal(fixture_cache_clear(NULL, &busy, err, sizeof err), 1);
        assert_int_equal(busy, 2);
        assert_false(exists(fmt("%s/other-%s", root(), KEY1)));
        assert_true(exists(fmt("%s/other-%s", root(), KEY3)));
        assert_true(exists(fixture_build_dir(b)));
        assert_int_equal(close(fd), 0);
        fixture_build_abort(b);

        assert_int_equal(fixture_cache_clear(NULL, &busy, err, sizeof err), 1);
        assert_int_equal(busy, 0);
        assert_int_equal(fixture_cache_list(&v, &n), 0);
        assert_int_equal(n, 0);
        fixture_cache_list_free(v, n);
        assert_int_equal(fixture_cache_clear("bad name", NULL, err, sizeof err), -EINVAL);
}

/* ---- 7 QEMU's version ---- */

/* fixture-7.1: a failing qemu is an error; then the first line of `--version`, run once and
 * not exported (nothing is setenv'd); the version a dispatcher hands its runner wins (checked
 * in a child). */
static void test_qemu_version(void **state)
{
        const char *script = fmt("%s/fake-qemu", tmpdir);
        const char *text = "#!/bin/sh\n"
                           "[ \"$1\" = --version ] || exit 3\n"
                           "echo \"QEMU emulator version 9.9.9 (test)\"\n"
                           "echo \"Copyright (c) 2003-2022\"\n";
        char err[512];
        const char *v;
        int status;
        pid_t pid;

        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                if (env_set(&env_setup()->qemu_version, "QEMU emulator version 1.2.3") < 0)
                        _exit(2);
                v = qemu_version(NULL, 0);
                _exit(v && strcmp(v, "QEMU emulator version 1.2.3") == 0 ? 0 : 1);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

        assert_int_equal(setenv("PROVIUM_QEMU", fmt("%s/no-such-qemu", tmpdir), 1), 0);
        assert_int_equal(env_init(), 0);
        assert_null(qemu_version(err, sizeof err));
        assert_non_null(strstr(err, "no-such-qemu"));
        assert_non_null(strstr(err, "No such file or directory"));

        write_file(script, text, strlen(text));
        assert_int_equal(chmod(script, 0755), 0);
        assert_int_equal(setenv("PROVIUM_QEMU", script, 1), 0);
        assert_int_equal(env_init(), 0);
        v = qemu_version(err, sizeof err);
        assert_non_null(v);
        assert_string_equal(v, "QEMU emulator version 9.9.9 (test)");
        assert_null(getenv("PROVIUM_QEMU_VERSION"));
        assert_int_equal(unlink(script), 0);
        assert_ptr_equal(qemu_version(err, sizeof err), v); /* not run again */
        assert_int_equal(unsetenv("PROVIUM_QEMU"), 0);
        assert_int_equal(env_init(), 0);
}

/* The child of fixture-5.4: prints open's result and message. */
static int open_child(void)
{
        FixtureEntry *e = NULL;
        FixtureBuild *b = NULL;
        char err[1024];
        int r = fixture_cache_open("base", KEY1, &e, &b, NULL, 0, err, sizeof err);

        printf("%d %s\n", r, err);
        fixture_entry_free(e);
        fixture_build_abort(b);
        return 0;
}

static int group_setup(void **state)
{
        const char *t = getenv("TMPDIR");

        (void) snprintf(tmpdir, sizeof tmpdir, "%s/provium-fixture-test-XXXXXX",
                        t && *t ? t : "/tmp");
        if (!mkdtemp(tmpdir))
                return -1;
        if (setenv("XDG_CACHE_HOME", tmpdir, 1) < 0 || env_init() < 0)
                return -1;
        return 0;
}

static int group_teardown(void **state)
{
        rm_tree(tmpdir);
        return 0;
}

int main(int argc, char **argv)
{
        ssize_t n;

        if (argc == 2 && strcmp(argv[1], "--open-child") == 0)
                return open_child();
        n = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
        if (n < 0)
                return 1;
        self_exe[n] = '\0';

        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_key, setup, teardown),
            cmocka_unit_test_setup_teardown(test_invalid_name_key, setup, teardown),
            cmocka_unit_test_setup_teardown(test_commit_then_open, setup, teardown),
            cmocka_unit_test_setup_teardown(test_build_paths, setup, teardown),
            cmocka_unit_test_setup_teardown(test_abort, setup, teardown),
            cmocka_unit_test_setup_teardown(test_stale_staging, setup, teardown),
            cmocka_unit_test_setup_teardown(test_busy_in_child, setup, teardown),
            cmocka_unit_test_setup_teardown(test_corrupt_but_busy, setup, teardown),
            cmocka_unit_test_setup_teardown(test_corrupt_state_truncated, setup, teardown),
            cmocka_unit_test_setup_teardown(test_corrupt_state_flipped, setup, teardown),
            cmocka_unit_test_setup_teardown(test_corrupt_ram_extent, setup, teardown),
            cmocka_unit_test_setup_teardown(test_ram_hole_filled_with_zeros, setup, teardown),
            cmocka_unit_test_setup_teardown(test_ram_data_zeroed, setup, teardown),
            cmocka_unit_test_setup_teardown(test_verified_then_edited, setup, teardown),
            cmocka_unit_test_setup_teardown(test_corrupt_ram_size_missing, setup, teardown),
            cmocka_unit_test_setup_teardown(test_corrupt_meta, setup, teardown),
            cmocka_unit_test_setup_teardown(test_changed_config, setup, teardown),
            cmocka_unit_test_setup_teardown(test_hash_cut_file, setup, teardown),
            cmocka_unit_test_setup_teardown(test_rebuild_after_corrupt, setup, teardown),
            cmocka_unit_test_setup_teardown(test_build_errors, setup, teardown),
            cmocka_unit_test_setup_teardown(test_root_not_a_directory, setup, teardown),
            cmocka_unit_test_setup_teardown(test_lock_not_creatable, setup, teardown),
            cmocka_unit_test_setup_teardown(test_cache_dir_enotdir, setup, teardown),
            cmocka_unit_test_setup_teardown(test_list, setup, teardown),
            cmocka_unit_test_setup_teardown(test_clear, setup, teardown),
            cmocka_unit_test_setup_teardown(test_qemu_version, setup, teardown),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
