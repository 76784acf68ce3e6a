/* run_root.c: a run's directory: /dev/shm/provium-XXXXXX (or under $PROVIUM_RUN_DIR, $TMPDIR,
 * /tmp), one subdirectory per runner.
 *
 * A run that ends removes it. One that does not (its dispatcher killed with SIGKILL, the
 * machine's power lost on a tmpfs that survives...) leaves it, with guest RAM files of
 * gigabytes inside, so every run first sweeps the parent it uses: a directory is stale when
 * the flock() on its `lock` file can be taken, since the dispatcher holds it for the run's
 * whole life. A directory without its lock file is one being created, unless it is older than
 * a minute (a dispatcher killed between mkdtemp and the lock).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cachedir.h"
#include "env.h"
#include "run_root.h"

#define RUN_ROOT_PREFIX  "provium-"
#define RUN_ROOT_LOCK    "lock"
#define UNLOCKED_MAX_AGE 60 /* seconds a directory may be without its lock file */

/* Where the runners' directories go: sockets, and guest RAM files, which belong in memory
 * (tmpfs), not on a disk that would write the guest's pages back. $PROVIUM_RUN_DIR wins, then
 * /dev/shm, then $TMPDIR or /tmp. Unix socket paths are short, so long parents are skipped. */
const char *run_root_parent(void)
{
        const char *env = env_get()->run_dir;
        if (env && strlen(env) <= 40)
                return env;
        if (access("/dev/shm", W_OK | X_OK) == 0)
                return "/dev/shm";
        const char *tmp = env_get()->tmpdir;
        return tmp && strlen(tmp) <= 40 ? tmp : "/tmp";
}

/* A name mkdtemp() could have made from RUN_ROOT_PREFIX "XXXXXX". */
static bool is_run_root_name(const char *name)
{
        size_t n = strlen(RUN_ROOT_PREFIX);
        return strncmp(name, RUN_ROOT_PREFIX, n) == 0 && strlen(name) == n + 6 &&
               strspn(name + n, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") ==
                   6;
}

/* Whether the run directory name in parent is one no living run holds. */
static bool is_stale(int parent, const char *name)
{
        struct stat st;
        if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode) ||
            st.st_uid != geteuid())
                return false;
        int dfd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0)
                return false;
        bool stale = false;
        int lock = openat(dfd, RUN_ROOT_LOCK, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (lock >= 0) {
                stale = flock(lock, LOCK_EX | LOCK_NB) == 0;
                (void) close(lock);
        } else if (errno == ENOENT) {
                stale = time(NULL) - st.st_mtime > UNLOCKED_MAX_AGE;
        }
        (void) close(dfd);
        return stale;
}

static void sweep_stale(const char *parent)
{
        DIR *dir = opendir(parent);
        if (!dir)
                return;
        struct dirent *e;
        while ((e = readdir(dir)))
                if (is_run_root_name(e->d_name) && is_stale(dirfd(dir), e->d_name))
                        (void) cachedir_rm_rf_at(dirfd(dir), e->d_name);
        (void) closedir(dir);
}

/* Creates path/lock, locked: under another name until locked, so that a sweep never finds it
 * unlocked. The dispatcher's pid goes in it, for whoever looks. */
static int take_lock(RunRoot *rr)
{
        char lock[sizeof rr->path + sizeof RUN_ROOT_LOCK + 1], fresh[sizeof lock + 4];
        snprintf(lock, sizeof lock, "%s/" RUN_ROOT_LOCK, rr->path);
        snprintf(fresh, sizeof fresh, "%s.new", lock);
        int fd = open(fresh, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        if (flock(fd, LOCK_EX) < 0 || rename(fresh, lock) < 0) {
                int r = -errno;
                (void) close(fd);
                return r;
        }
        (void) dprintf(fd, "%ld\n", (long) getpid());
        rr->lock_fd = fd;
        return 0;
}

int run_root_create(RunRoot *rr)
{
        const char *parent = run_root_parent();
        rr->lock_fd = -1;
        sweep_stale(parent);
        snprintf(rr->path, sizeof rr->path, "%s/" RUN_ROOT_PREFIX "XXXXXX", parent);
        if (!mkdtemp(rr->path)) {
                int r = -errno;
                fprintf(stderr, "provium: run directory %s: mkdtemp: %s\n", rr->path, strerror(-r));
                rr->path[0] = 0;
                return r;
        }
        int r = take_lock(rr);
        if (r < 0) {
                fprintf(stderr, "provium: run directory %s: lock: %s\n", rr->path, strerror(-r));
                run_root_remove(rr);
        }
        return r;
}

void run_root_remove(RunRoot *rr)
{
        if (rr->path[0])
                (void) cachedir_rm_rf(rr->path);
        rr->path[0] = 0;
        if (rr->lock_fd >= 0)
                (void) close(rr->lock_fd);
        rr->lock_fd = -1;
}
