/* The cache's areas (src/host/cache/cachedir.c): entry names, the lock protocol (a crashed
 * holder blocks nobody, a live one does, the lock file goes with its holder), removal that
 * never follows a link out of the cache, disk usage and listing. No VM. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "cachedir.h"

#define KEY  "0123456789abcdef0123456789abcdef"
#define KEY2 "fedcba9876543210fedcba9876543210"

static char tmp[64], root[128], outside[128];

/* dir/name, in one of four rotating buffers. */
static const char *join(const char *dir, const char *name)
{
        static char bufs[4][512];
        static unsigned i;
        char *b = bufs[i++ % 4];

        (void) snprintf(b, sizeof bufs[0], "%s/%s", dir, name);
        return b;
}

static void write_file(const char *path, size_t size)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        char buf[4096];

        assert_true(fd >= 0);
        memset(buf, 'x', sizeof buf);
        for (size_t done = 0; done < size; done += sizeof buf)
                assert_int_equal(write(fd, buf, sizeof buf), (ssize_t) sizeof buf);
        assert_int_equal(close(fd), 0);
}

static bool exists(const char *path)
{
        struct stat sb;
        return lstat(path, &sb) == 0;
}

static int setup(void **state)
{
        snprintf(tmp, sizeof tmp, "/tmp/provium-cachedir-test-XXXXXX");
        assert_non_null(mkdtemp(tmp));
        snprintf(root, sizeof root, "%s/area", tmp);
        snprintf(outside, sizeof outside, "%s/outside", tmp);
        assert_int_equal(mkdir(root, 0755), 0);
        assert_int_equal(mkdir(outside, 0755), 0);
        write_file(join(outside, "precious"), 4096);
        return 0;
}

static int teardown(void **state)
{
        assert_int_equal(cachedir_rm_rf(tmp), 0);
        assert_false(exists(tmp));
        return 0;
}

/* cachedir-1: what each name in an area is. */
static void test_parse(void **state)
{
        CacheDirItem it;
        long pid = 0;

        assert_int_equal(cachedir_parse("default-" KEY, &it, NULL), CACHEDIR_ENTRY);
        assert_string_equal(it.name, "default");
        assert_string_equal(it.key, KEY);
        assert_int_equal(cachedir_parse("my.img-" KEY ".lock", &it, NULL), CACHEDIR_LOCK);
        assert_string_equal(it.name, "my.img");
        assert_int_equal(cachedir_parse("web-app-" KEY ".spec.json", &it, NULL), CACHEDIR_SIDE);
        assert_string_equal(it.name, "web-app");
        assert_int_equal(cachedir_parse("x-" KEY ".tmp.AbC123", &it, NULL), CACHEDIR_SIDE);
        assert_int_equal(cachedir_parse(".base-" KEY ".tmp-4242", &it, &pid), CACHEDIR_STAGING);
        assert_int_equal(pid, 4242);
        assert_string_equal(it.name, "base");
        assert_int_equal(cachedir_parse(".base-" KEY ".tmp-", &it, NULL), CACHEDIR_OTHER);
        assert_int_equal(cachedir_parse(".base-" KEY, &it, NULL), CACHEDIR_OTHER);
        assert_int_equal(cachedir_parse("-" KEY, &it, NULL), CACHEDIR_OTHER);
        assert_int_equal(cachedir_parse("base-0123", &it, NULL), CACHEDIR_OTHER);
        assert_int_equal(cachedir_parse(".resolve-base-Xy12Ab", &it, NULL), CACHEDIR_OTHER);
        assert_int_equal(cachedir_parse("probe.lock", &it, NULL), CACHEDIR_OTHER);
        assert_true(cachedir_name_valid("a.b_c-d"));
        assert_false(cachedir_name_valid(".hidden"));
        assert_false(cachedir_name_valid("a/b"));
        assert_false(cachedir_key_valid("0123456789ABCDEF0123456789ABCDEF"));
}

/* What a child does before it says so on a pipe: takes stem's lock and waits for SIGKILL, takes
 * it and exits without releasing it (a crash: no unlink), or uses entry base-KEY and waits. */
typedef enum { HOLD, CRASH, USE } ChildDoes;

static pid_t child(const char *stem, ChildDoes does)
{
        int p[2];
        char c;
        pid_t pid;

        assert_int_equal(pipe(p), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                CacheLock l;
                (void) close(p[0]);
                if (does == USE ? cachedir_use(root, "base", KEY) < 0
                                : cachedir_lock_init(&l, root, stem) < 0 ||
                                      cachedir_lock_take(&l, false) < 0)
                        _exit(1);
                if (write(p[1], "x", 1) != 1)
                        _exit(1);
                if (does == CRASH)
                        _exit(0);
                pause();
                _exit(0);
        }
        (void) close(p[1]);
        assert_int_equal(read(p[0], &c, 1), 1);
        (void) close(p[0]);
        return pid;
}

/* cachedir-2: a live holder blocks a taker that does not wait; one that crashed blocks
 * nobody, and its lock file goes with the next holder's release. */
static void test_lock(void **state)
{
        const char *stem = "base-" KEY;
        char path[256];
        CacheLock l;
        int status;
        pid_t pid;

        snprintf(path, sizeof path, "%s/%s.lock", root, stem);
        pid = child(stem, HOLD);
        assert_int_equal(cachedir_lock_init(&l, root, stem), 0);
        assert_int_equal(cachedir_lock_take(&l, false), -EWOULDBLOCK);
        assert_int_equal(cachedir_clear_entry(root, "base", KEY, NULL), -EWOULDBLOCK);
        assert_int_equal(kill(pid, SIGKILL), 0);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_int_equal(cachedir_lock_take(&l, false), 0); /* the kernel dropped its flock */
        cachedir_lock_release(&l);
        assert_false(exists(path));
        cachedir_lock_release(&l); /* twice is fine */

        pid = child(stem, CRASH);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        assert_true(exists(path)); /* left behind, unlocked */
        assert_int_equal(cachedir_lock_init(&l, root, stem), 0);
        assert_int_equal(cachedir_lock_take(&l, true), 0);
        cachedir_lock_release(&l);
        assert_false(exists(path));
}

/* cachedir-2b: an entry another process uses is kept by a removal (-EBUSY) until that
 * process is gone; this process's own use does not keep it; the use file's mtime is the
 * entry's last use, and it goes with the entry. */
static void test_use(void **state)
{
        char entry[256], use[256], kernel[300];
        int status;

        snprintf(entry, sizeof entry, "%s/base-" KEY, root);
        snprintf(use, sizeof use, "%s/base-" KEY ".use", root);
        snprintf(kernel, sizeof kernel, "%s/kernel", entry);

        assert_int_equal(mkdir(entry, 0755), 0);
        write_file(kernel, 8192);
        assert_int_equal(
            utimensat(AT_FDCWD, entry, (struct timespec[]){{.tv_sec = 1000}, {.tv_sec = 1000}}, 0),
            0);
        assert_int_equal(cachedir_last_use(root, "base", KEY), 1000); /* never used: the entry's */
        pid_t pid = child(NULL, USE);
        assert_true(exists(use));
        assert_true(cachedir_last_use(root, "base", KEY) > 1000);
        assert_int_equal(cachedir_clear_entry(root, "base", KEY, NULL), -EBUSY);
        assert_true(exists(entry));
        assert_int_equal(kill(pid, SIGKILL), 0);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_int_equal(cachedir_use(root, "base", KEY), 0); /* this process's own */
        assert_int_equal(cachedir_use(root, "base", KEY), 0); /* once per entry */
        uint64_t bytes = 0;
        assert_int_equal(cachedir_clear_entry(root, "base", KEY, &bytes), 1);
        assert_true(bytes >= 8192);
        assert_false(exists(entry));
        assert_false(exists(use));
        assert_int_equal(cachedir_last_use(root, "base", KEY), 0);
}

/* cachedir-3: removing an entry never follows a link: a symlinked entry, or a link inside
 * one, is removed itself, and what it points to outside the cache stays. */
static void test_remove_no_follow(void **state)
{
        char entry[256], linked[256];
        uint64_t bytes = 1;

        snprintf(entry, sizeof entry, "%s/real-%s", root, KEY);
        snprintf(linked, sizeof linked, "%s/linked-%s", root, KEY);

        assert_int_equal(mkdir(entry, 0755), 0);
        assert_int_equal(mkdir(join(entry, "sub"), 0755), 0);
        write_file(join(entry, "kernel"), 8192);
        write_file(join(entry, "sub/more"), 4096);
        assert_int_equal(symlink(outside, join(entry, "sub/out")), 0);
        assert_int_equal(symlink(join(outside, "precious"), join(entry, "file")), 0);
        assert_int_equal(symlink(outside, linked), 0);
        write_file(join(root, "real-" KEY ".log"), 4096);

        /* Disk usage counts the files below, links not followed. */
        assert_true(cachedir_disk_bytes(entry) >= 12288);
        assert_true(cachedir_disk_bytes(entry) < 12288 + 8192);

        /* Listing shows the real entry only. */
        CacheDirItem *v;
        size_t n;
        assert_int_equal(cachedir_list(root, NULL, false, &v, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(v[0].name, "real");
        free(v);
        assert_int_equal(cachedir_list(root, NULL, true, &v, &n), 0);
        assert_int_equal(n, 2); /* linked and real (with its .log), sorted */
        assert_string_equal(v[0].name, "linked");
        assert_string_equal(v[1].name, "real");
        free(v);

        assert_int_equal(cachedir_clear_entry(root, "linked", KEY, &bytes), 1);
        assert_int_equal(bytes, 0);
        assert_false(exists(linked));
        assert_int_equal(cachedir_clear_entry(root, "real", KEY, &bytes), 1);
        assert_true(bytes >= 12288);
        assert_false(exists(entry));
        assert_false(exists(join(root, "real-" KEY ".log")));
        assert_false(exists(join(root, "real-" KEY ".lock")));
        assert_true(exists(join(outside, "precious")));
        assert_int_equal(cachedir_clear_entry(root, "real", KEY, &bytes), 0);
        assert_int_equal(bytes, 0);
}

/* cachedir-4: clearing removes the staging directories of dead processes and keeps a live
 * one's; a name filter lists only that name. */
static void test_staging(void **state)
{
        char dead[256], live[256];
        CacheDirItem *v;
        size_t n;

        snprintf(dead, sizeof dead, "%s/.fx-%s.tmp-999999999", root, KEY2);
        snprintf(live, sizeof live, "%s/.fx-%s.tmp-%ld", root, KEY2, (long) getppid());

        assert_int_equal(mkdir(dead, 0755), 0);
        assert_int_equal(mkdir(live, 0755), 0);
        assert_int_equal(mkdir(join(root, "other-" KEY2), 0755), 0);
        assert_int_equal(cachedir_list(root, "fx", true, &v, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(v[0].key, KEY2);
        free(v);
        assert_int_equal(cachedir_clear_entry(root, "fx", KEY2, NULL), 0);
        assert_false(exists(dead));
        assert_true(exists(live));
        assert_int_equal(cachedir_rm_rf(live), 0);
        assert_int_equal(cachedir_rm_rf(join(root, "other-" KEY2)), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_parse),
            cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
            cmocka_unit_test_setup_teardown(test_use, setup, teardown),
            cmocka_unit_test_setup_teardown(test_remove_no_follow, setup, teardown),
            cmocka_unit_test_setup_teardown(test_staging, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
