/* paths.c: cache, source and agent locations (the environment, as env.c read it, first, then
 * build-time defaults). */
#include "paths.h"

#include <errno.h>
#include <pthread.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "env.h"

int paths_mkdir_p(const char *path, mode_t mode)
{
        char buf[PATH_MAX];
        size_t n;

        if (!path || !*path)
                return -EINVAL;
        n = strlen(path);
        if (n >= sizeof buf)
                return -ENAMETOOLONG;
        memcpy(buf, path, n + 1);
        for (char *p = buf + 1;; p++) {
                if (*p != '/' && *p != '\0')
                        continue;
                char c = *p;
                *p = '\0';
                if (mkdir(buf, mode) < 0 && errno != EEXIST)
                        return -errno;
                *p = c;
                if (c == '\0')
                        break;
        }
        struct stat st;
        if (stat(path, &st) < 0)
                return -errno;
        return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

static char wanted[PATH_MAX]; /* what paths_cache_dir() tried, for messages */
static char problem[160];     /* why paths_cache_dir() refused it (EPERM) */

/* What is in the cache becomes QEMU's options, a guest's disks and the root of a local VM:
 * the directory (and a link to it) must be this user's and writable by no one else. */
static int check_owner(const char *dir)
{
        struct stat link, st;
        if (lstat(dir, &link) < 0 || stat(dir, &st) < 0)
                return -errno;
        uid_t me = geteuid();
        if (link.st_uid != me || st.st_uid != me) {
                snprintf(problem, sizeof problem, "owned by uid %u, not by this user (uid %u)",
                         (unsigned) (link.st_uid != me ? link.st_uid : st.st_uid), (unsigned) me);
                return -EPERM;
        }
        if (st.st_mode & (S_IWGRP | S_IWOTH)) {
                snprintf(problem, sizeof problem, "writable by others (mode %03o; chmod go-w)",
                         (unsigned) (st.st_mode & 0777));
                return -EPERM;
        }
        return 0;
}

const char *paths_cache_dir_wanted(void)
{
        return wanted[0] ? wanted : "~/.cache/provium";
}

static char cache_dir[PATH_MAX];
static pthread_mutex_t cache_dir_mu = PTHREAD_MUTEX_INITIALIZER;

/* paths_cache_dir's work, under cache_dir_mu: its first call may come from any thread of a
 * runner's pool (an image resolve, a fixture lookup). */
static const char *cache_dir_locked(void)
{
        char *dir = cache_dir; /* PATH_MAX bytes */
        const char *base, *home;
        int n, r;

        if (dir[0])
                return dir;
        base = env_get()->xdg_cache_home;
        if (base && base[0] == '/') {
                n = snprintf(dir, sizeof cache_dir, "%s/provium", base);
        } else {
                home = env_get()->home;
                if (!home) {
                        struct passwd *pw = getpwuid(getuid());
                        home = pw ? pw->pw_dir : NULL;
                }
                if (!home) {
                        errno = ENOENT;
                        return NULL;
                }
                n = snprintf(dir, sizeof cache_dir, "%s/.cache/provium", home);
        }
        if (n < 0 || (size_t) n >= sizeof cache_dir) {
                dir[0] = '\0';
                errno = ENAMETOOLONG;
                return NULL;
        }
        memcpy(wanted, dir, sizeof wanted);
        r = paths_mkdir_p(dir, 0755);
        if (r == 0)
                r = check_owner(dir);
        if (r < 0) {
                dir[0] = '\0';
                errno = -r;
                return NULL;
        }
        return dir;
}

const char *paths_cache_dir(void)
{
        pthread_mutex_lock(&cache_dir_mu);
        const char *dir = cache_dir_locked();
        int e = errno;
        pthread_mutex_unlock(&cache_dir_mu);
        errno = e;
        return dir;
}

const char *paths_cache_dir_error(int err)
{
        return err == EPERM && problem[0] ? problem : strerror(err);
}

/* An installed provium (make install, the .deb) is PREFIX/bin/provium, with its data in
 * PREFIX/share/provium and its agent in PREFIX/libexec/provium: found from the executable's own
 * path, so an install anywhere (DESTDIR, a scratch root) works as it is. In a build tree there
 * is no such directory, and the build-time paths hold. */
static struct {
        pthread_once_t once;
        char data[PATH_MAX];  /* "" when not installed */
        char agent[PATH_MAX]; /* "" when not installed */
} installed = {.once = PTHREAD_ONCE_INIT};

static void find_installed(void)
{
        char exe[PATH_MAX], probe[PATH_MAX + 64];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        char *slash = n > 0 ? memrchr(exe, '/', (size_t) n) : NULL;
        if (!slash)
                return;
        *slash = 0;
        slash = strrchr(exe, '/'); /* PREFIX/bin -> PREFIX */
        if (!slash || strcmp(slash, "/bin") != 0)
                return;
        *slash = 0;
        snprintf(probe, sizeof probe, "%s/share/provium/scripts/build-default-image", exe);
        if (access(probe, R_OK) == 0)
                snprintf(installed.data, sizeof installed.data, "%.*s/share/provium",
                         (int) (sizeof installed.data - 16), exe);
        snprintf(probe, sizeof probe, "%s/libexec/provium/provium-agent", exe);
        if (access(probe, R_OK) == 0 && strlen(probe) < sizeof installed.agent)
                memcpy(installed.agent, probe, strlen(probe) + 1);
}

const char *paths_source_dir(void)
{
        const char *v = env_get()->source_dir;

        if (v)
                return v;
        pthread_once(&installed.once, find_installed);
        return installed.data[0] ? installed.data : PROVIUM_SOURCE_DIR;
}

const char *paths_agent(void)
{
        const char *v = env_get()->agent;

        if (v)
                return v;
        pthread_once(&installed.once, find_installed);
        return installed.agent[0] ? installed.agent : PROVIUM_AGENT_PATH;
}
