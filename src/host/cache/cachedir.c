/* cachedir.c: an area of the cache: entry names, the lock, removal, disk usage, listing.
 *
 * Sections: names / the area's root / the lock / removal and disk usage / listing and
 * clearing. cachedir.h describes the layout and the lock protocol. */
#include "cachedir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "paths.h"
#include "strfmt.h"

#define CACHEDIR_LOCK_TRIES 1000 /* lock files replaced under a taker before it gives up */

/* ---- names ---- */

static bool name_char(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '_' || c == '.';
}

static bool name_valid_n(const char *s, size_t n)
{
        if (n == 0 || n > CACHEDIR_NAME_MAX || s[0] == '.')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!name_char(s[i]))
                        return false;
        return true;
}

bool cachedir_name_valid(const char *name)
{
        return name && name_valid_n(name, strlen(name));
}

bool cachedir_key_valid(const char *key)
{
        return key && strlen(key) == 32 && strspn(key, "0123456789abcdef") == 32;
}

/* The offset of the first "-<32 hex>" in stem that ends it or is followed by '.', after a
 * valid name; -1 when there is none. */
static long stem_key_at(const char *stem)
{
        size_t len = strlen(stem);

        for (size_t p = 1; p + 33 <= len; p++)
                if (stem[p] == '-' && strspn(stem + p + 1, "0123456789abcdef") >= 32 &&
                    (stem[p + 33] == '\0' || stem[p + 33] == '.') && name_valid_n(stem, p))
                        return (long) p;
        return -1;
}

CacheDirKind cachedir_parse(const char *file, CacheDirItem *it, long *ret_pid)
{
        bool dot = file[0] == '.';
        const char *stem = file + dot, *suffix;
        long p = stem_key_at(stem);

        if (p < 0)
                return CACHEDIR_OTHER;
        suffix = stem + p + 33;
        if (dot &&
            (strncmp(suffix, ".tmp-", 5) != 0 || !suffix[5] ||
             strspn(suffix + 5, "0123456789") != strlen(suffix + 5) || strlen(suffix + 5) >= 10))
                return CACHEDIR_OTHER;
        memcpy(it->name, stem, (size_t) p);
        it->name[p] = '\0';
        memcpy(it->key, stem + p + 1, 32);
        it->key[32] = '\0';
        it->mtime = 0;
        if (dot) {
                if (ret_pid)
                        *ret_pid = strtol(suffix + 5, NULL, 10);
                return CACHEDIR_STAGING;
        }
        if (*suffix == '\0')
                return CACHEDIR_ENTRY;
        if (strcmp(suffix, ".use") == 0)
                return CACHEDIR_USE; /* unlinked only by a removal's release, while held */
        return strcmp(suffix, ".lock") == 0 ? CACHEDIR_LOCK : CACHEDIR_SIDE;
}

char *cachedir_entry_path(const char *root, const char *name, const char *key, const char *suffix)
{
        return xasprintf("%s/%s-%s%s", root, name, key, suffix);
}

/* ---- the area's root ---- */

int cachedir_root(const char *area, bool create, char **ret)
{
        const char *cache = paths_cache_dir();
        char *root;
        int r;

        *ret = NULL;
        if (!cache)
                return -errno;
        root = xasprintf("%s/%s", cache, area);
        if (!root)
                return -ENOMEM;
        *ret = root;
        if (create) {
                r = paths_mkdir_p(root, 0755);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- the lock ---- */

int cachedir_lock_init(CacheLock *l, const char *root, const char *stem)
{
        l->fd = -1;
        l->path = xasprintf("%s/%s.lock", root, stem);
        return l->path ? 0 : -ENOMEM;
}

/* flock(fd), retried on EINTR. */
static int lock_fd(int fd, bool wait, bool shared)
{
        int r;

        while ((r = flock(fd, (shared ? LOCK_SH : LOCK_EX) | (wait ? 0 : LOCK_NB))) < 0 &&
               errno == EINTR)
                ;
        if (r < 0)
                return errno == EWOULDBLOCK ? -EWOULDBLOCK : -errno;
        return 0;
}

/* Takes l's flock, shared or not, on the file that is at l's path once it is held. */
static int lock_take(CacheLock *l, bool wait, bool shared)
{
        if (!l || !l->path || l->fd >= 0)
                return -EINVAL;
        for (int i = 0; i < CACHEDIR_LOCK_TRIES; i++) {
                struct stat a, b;
                int fd = open(l->path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644), r;

                if (fd < 0)
                        return -errno;
                r = lock_fd(fd, wait, shared);
                if (r == 0 && fstat(fd, &a) < 0)
                        r = -errno;
                if (r < 0) {
                        (void) close(fd);
                        return r;
                }
                r = stat(l->path, &b) < 0 ? -errno : 0;
                if (r == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
                        l->fd = fd;
                        return 0;
                }
                (void) close(fd);
                if (r < 0 && r != -ENOENT)
                        return r;
                /* Unlinked (or replaced) by its last holder: lock the file now at the path. */
        }
        return -EWOULDBLOCK;
}

int cachedir_lock_take(CacheLock *l, bool wait)
{
        return lock_take(l, wait, false);
}

void cachedir_lock_release(CacheLock *l)
{
        if (!l)
                return;
        if (l->fd >= 0) {
                (void) unlink(l->path); /* still held: a waiter sees it gone and retries */
                (void) close(l->fd);
                l->fd = -1;
        }
        free(l->path);
        l->path = NULL;
}

/* ---- use ---- */

/* The uses this process holds, until it exits: one per entry. */
static struct {
        pthread_mutex_t mu;
        CacheLock *held;
        size_t n;
} uses = {.mu = PTHREAD_MUTEX_INITIALIZER};

static bool use_held(const char *path)
{
        for (size_t i = 0; i < uses.n; i++)
                if (strcmp(uses.held[i].path, path) == 0)
                        return true;
        return false;
}

bool cachedir_used_here(const char *root, const char *name, const char *key)
{
        char *path = cachedir_entry_path(root, name, key, ".use");
        bool held = false;
        if (!path)
                return false;
        pthread_mutex_lock(&uses.mu);
        held = use_held(path);
        pthread_mutex_unlock(&uses.mu);
        free(path);
        return held;
}

/* This process's own use of path, dropped: its own removal is not kept back by it. */
static void use_drop(const char *path)
{
        pthread_mutex_lock(&uses.mu);
        for (size_t i = 0; i < uses.n; i++)
                if (strcmp(uses.held[i].path, path) == 0) {
                        (void) close(uses.held[i].fd); /* not unlinked: others may hold it */
                        free(uses.held[i].path);
                        uses.held[i] = uses.held[--uses.n];
                        break;
                }
        pthread_mutex_unlock(&uses.mu);
}

int cachedir_use(const char *root, const char *name, const char *key)
{
        CacheLock l = {.fd = -1, .path = cachedir_entry_path(root, name, key, ".use")};
        int r = 0;

        if (!l.path)
                return -ENOMEM;
        pthread_mutex_lock(&uses.mu);
        if (use_held(l.path))
                goto out;
        CacheLock *held = realloc(uses.held, (uses.n + 1) * sizeof *held);
        if (!held) {
                r = -ENOMEM;
                goto out;
        }
        uses.held = held;
        /* waits only for a removal, which holds it exclusively while it removes */
        r = lock_take(&l, true, true);
        if (r < 0)
                goto out;
        (void) futimens(l.fd, NULL); /* its mtime: the entry's last use, which eviction reads */
        uses.held[uses.n++] = l;
        l.path = NULL;
out:
        pthread_mutex_unlock(&uses.mu);
        free(l.path);
        return r;
}

void cachedir_unuse_if_absent(const char *root, const char *name, const char *key)
{
        char *dir = cachedir_entry_path(root, name, key, "");
        CacheLock l = {.fd = -1, .path = cachedir_entry_path(root, name, key, ".use")};
        struct stat sb;

        if (dir && l.path && lstat(dir, &sb) < 0 && errno == ENOENT) {
                use_drop(l.path);
                if (lock_take(&l, false, false) == 0) /* nobody else waits to use it */
                        cachedir_lock_release(&l);    /* unlinked while held */
        }
        free(l.path);
        free(dir);
}

int64_t cachedir_last_use(const char *root, const char *name, const char *key)
{
        char *use = cachedir_entry_path(root, name, key, ".use");
        char *dir = cachedir_entry_path(root, name, key, "");
        struct stat sb;
        int64_t t = 0;

        if (use && stat(use, &sb) == 0)
                t = (int64_t) sb.st_mtime;
        else if (dir && lstat(dir, &sb) == 0)
                t = (int64_t) sb.st_mtime;
        free(use);
        free(dir);
        return t;
}

/* ---- removal and disk usage ---- */

int cachedir_rm_rf_at(int dfd, const char *name)
{
        struct dirent *de;
        DIR *d;
        int fd, r = 0, e0;

        /* unlinkat never follows a link: a symbolic link (to a directory too) goes here. */
        if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
                return 0;
        e0 = errno;
        if (e0 != EISDIR && e0 != EPERM)
                return -e0;
        fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOTDIR || errno == ELOOP ? -e0 : -errno;
        d = fdopendir(fd);
        if (!d) {
                r = -errno;
                (void) close(fd);
                return r;
        }
        while ((errno = 0, de = readdir(d))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                int q = cachedir_rm_rf_at(dirfd(d), de->d_name);
                if (q < 0 && r == 0)
                        r = q;
        }
        if (errno != 0 && r == 0)
                r = -errno;
        (void) closedir(d);
        if (r == 0 && unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
                r = -errno;
        return r;
}

int cachedir_rm_rf(const char *path)
{
        return cachedir_rm_rf_at(AT_FDCWD, path);
}

static uint64_t disk_bytes_at(int dfd, const char *name)
{
        int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct dirent *de;
        uint64_t total = 0;
        DIR *d;

        if (fd < 0)
                return 0;
        d = fdopendir(fd);
        if (!d) {
                (void) close(fd);
                return 0;
        }
        while ((de = readdir(d))) {
                struct stat sb;
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
                    fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                if (S_ISREG(sb.st_mode))
                        total += (uint64_t) sb.st_blocks * 512;
                else if (S_ISDIR(sb.st_mode))
                        total += disk_bytes_at(dirfd(d), de->d_name);
        }
        (void) closedir(d);
        return total;
}

uint64_t cachedir_disk_bytes(const char *dir)
{
        return disk_bytes_at(AT_FDCWD, dir);
}

/* ---- listing and clearing ---- */

static int cmp_item(const void *a, const void *b)
{
        const CacheDirItem *x = a, *y = b;
        int c = strcmp(x->name, y->name);

        return c ? c : strcmp(x->key, y->key);
}

/* Whether root/file is a directory of its own (not a link to one); its mtime in *ret. */
static bool real_dir(DIR *d, const char *file, int64_t *ret_mtime)
{
        struct stat sb;

        if (fstatat(dirfd(d), file, &sb, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(sb.st_mode))
                return false;
        *ret_mtime = (int64_t) sb.st_mtime;
        return true;
}

static int item_push(CacheDirItem **v, size_t *n, size_t *cap, const CacheDirItem *it)
{
        for (size_t i = 0; i < *n; i++)
                if (cmp_item(&(*v)[i], it) == 0)
                        return 0;
        if (*n == *cap) {
                size_t ncap = *cap ? *cap * 2 : 16;
                CacheDirItem *nv = realloc(*v, ncap * sizeof *nv);
                if (!nv)
                        return -ENOMEM;
                *v = nv;
                *cap = ncap;
        }
        (*v)[(*n)++] = *it;
        return 0;
}

int cachedir_list(const char *root, const char *name, bool all, CacheDirItem **ret, size_t *ret_n)
{
        CacheDirItem *v = NULL;
        size_t n = 0, cap = 0;
        struct dirent *de;
        DIR *d;
        int r = 0;

        *ret = NULL;
        *ret_n = 0;
        d = opendir(root);
        if (!d)
                return errno == ENOENT ? 0 : -errno;
        while ((errno = 0, de = readdir(d))) {
                CacheDirItem it;
                CacheDirKind kind = cachedir_parse(de->d_name, &it, NULL);
                if (kind == CACHEDIR_OTHER || (!all && kind != CACHEDIR_ENTRY) ||
                    (name && strcmp(it.name, name) != 0))
                        continue;
                if (!all && !real_dir(d, de->d_name, &it.mtime))
                        continue;
                r = item_push(&v, &n, &cap, &it);
                if (r < 0)
                        break;
        }
        if (r == 0 && errno != 0)
                r = -errno;
        (void) closedir(d);
        if (r < 0) {
                free(v);
                return r;
        }
        if (n > 0)
                qsort(v, n, sizeof *v, cmp_item);
        *ret = v;
        *ret_n = n;
        return 0;
}

void cachedir_remove_stale_staging(const char *root, const char *name, const char *key)
{
        DIR *d = opendir(root);
        struct dirent *de;

        if (!d)
                return;
        while ((de = readdir(d))) {
                CacheDirItem it;
                long pid = 0;
                if (cachedir_parse(de->d_name, &it, &pid) != CACHEDIR_STAGING ||
                    strcmp(it.name, name) != 0 || strcmp(it.key, key) != 0)
                        continue;
                if (pid == (long) getpid() || pid <= 0 ||
                    (kill((pid_t) pid, 0) < 0 && errno == ESRCH))
                        (void) cachedir_rm_rf_at(dirfd(d), de->d_name);
        }
        (void) closedir(d);
}

/* Removes name-key's side files in root (the caller holds its lock). Returns 0 or -errno. */
static int remove_side_files(const char *root, const char *name, const char *key)
{
        DIR *d = opendir(root);
        struct dirent *de;
        int r = 0;

        if (!d)
                return errno == ENOENT ? 0 : -errno;
        while ((de = readdir(d))) {
                CacheDirItem it;
                if (cachedir_parse(de->d_name, &it, NULL) != CACHEDIR_SIDE ||
                    strcmp(it.name, name) != 0 || strcmp(it.key, key) != 0)
                        continue;
                int q = cachedir_rm_rf_at(dirfd(d), de->d_name);
                if (q < 0 && r == 0)
                        r = q;
        }
        (void) closedir(d);
        return r;
}

int cachedir_clear_entry(const char *root, const char *name, const char *key, uint64_t *ret_bytes)
{
        char *stem = xasprintf("%s-%s", name, key), *dir = cachedir_entry_path(root, name, key, "");
        CacheLock lock = {.fd = -1}, use = {.fd = -1};
        uint64_t bytes = 0;
        struct stat sb;
        int r;

        if (!stem || !dir || cachedir_lock_init(&lock, root, stem) < 0) {
                r = -ENOMEM;
                goto out;
        }
        r = cachedir_lock_take(&lock, false);
        if (r < 0)
                goto out;
        /* in use: a runner restores from it or boots it; held shared until that process ends */
        use.path = cachedir_entry_path(root, name, key, ".use");
        if (use.path)
                use_drop(use.path);
        r = use.path ? lock_take(&use, false, false) : -ENOMEM;
        if (r == -EWOULDBLOCK)
                r = -EBUSY;
        if (r < 0)
                goto out;
        if (lstat(dir, &sb) == 0) {
                bytes = S_ISDIR(sb.st_mode) ? cachedir_disk_bytes(dir) : 0;
                r = cachedir_rm_rf(dir);
                if (r == 0)
                        r = 1;
        }
        if (r >= 0) {
                int q = remove_side_files(root, name, key);
                r = q < 0 ? q : r;
        }
        cachedir_remove_stale_staging(root, name, key);
out:
        cachedir_lock_release(&use); /* unlinked while held: a waiting user retries */
        cachedir_lock_release(&lock);
        if (ret_bytes)
                *ret_bytes = r == 1 ? bytes : 0;
        free(stem);
        free(dir);
        return r;
}
