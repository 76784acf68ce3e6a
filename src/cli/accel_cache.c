/* accel_cache.c: KVM probe verdicts in $CACHE/accel/<key>.verdict, one "name=value" a line.
 * The key folds in the host's boot id, the QEMU program, its machine type and the kernel, so
 * a verdict is reused until one of them changes. A file that is not a valid verdict is
 * ignored, never trusted: it comes from disk.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "accel.h"
#include "cachedir.h"
#include "keyhash.h"
#include "machine.h"
#include "paths.h"

#define VERDICT_FORMAT "1"
#define VERDICT_MAX    4096 /* bytes: a verdict is a few short lines */

const char *accel_cache_dir(void)
{
        static char dir[PATH_MAX];
        if (dir[0])
                return dir;
        const char *cache = paths_cache_dir();
        if (!cache)
                return NULL;
        snprintf(dir, sizeof dir, "%s/accel", cache);
        int r = paths_mkdir_p(dir, 0755);
        if (r < 0) {
                dir[0] = 0;
                errno = -r;
                return NULL;
        }
        return dir;
}

static int read_boot_id(char out[64])
{
        FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
        if (!f)
                return -errno;
        bool ok = fgets(out, 64, f) != NULL;
        (void) fclose(f);
        if (!ok)
                return -EIO;
        out[strcspn(out, "\n")] = 0;
        return 0;
}

/* The kernel package's SHA256 from a built image's manifest (kernel_sha256=, 64 hex digits),
 * which names the kernel without reading its 50 MB. Returns 0 or -ENOENT. */
static int manifest_kernel_sha(const char *image_dir, char out[65])
{
        char path[PATH_MAX], line[256];
        if (!image_dir ||
            (size_t) snprintf(path, sizeof path, "%s/manifest", image_dir) >= sizeof path)
                return -ENOENT;
        FILE *f = fopen(path, "re");
        if (!f)
                return -ENOENT;
        int r = -ENOENT;
        while (r < 0 && fgets(line, sizeof line, f)) {
                const char *v = line + strlen("kernel_sha256=");
                if (strncmp(line, "kernel_sha256=", strlen("kernel_sha256=")) == 0 &&
                    strspn(v, "0123456789abcdef") == 64 && (v[64] == '\n' || !v[64])) {
                        memcpy(out, v, 64);
                        out[64] = 0;
                        r = 0;
                }
        }
        (void) fclose(f);
        return r;
}

int accel_key(const char *qemu, const char *kernel, const char *image_dir, char out[33])
{
        char boot_id[64];
        struct stat q;
        int r = read_boot_id(boot_id);
        if (r < 0)
                return r;
        if (stat(qemu, &q) < 0)
                return -errno;
        XXH3_state_t *st = XXH3_createState();
        if (!st)
                return -ENOMEM;
        (void) XXH3_128bits_reset(st);
        keyhash_field(st, "format", VERDICT_FORMAT, strlen(VERDICT_FORMAT));
        keyhash_field(st, "boot_id", boot_id, strlen(boot_id));
        keyhash_field(st, "qemu", qemu, strlen(qemu));
        keyhash_field(st, "machine", PROVIUM_MACHINE, strlen(PROVIUM_MACHINE)); /* what it boots */
        int64_t id[5] = {(int64_t) q.st_dev, (int64_t) q.st_ino, (int64_t) q.st_size,
                         (int64_t) q.st_mtim.tv_sec, (int64_t) q.st_mtim.tv_nsec};
        keyhash_field(st, "qemu.stat", id, sizeof id);
        char sha[65];
        if (manifest_kernel_sha(image_dir, sha) == 0)
                keyhash_field(st, "kernel.package_sha256", sha, 64);
        else
                r = keyhash_file(st, "kernel", kernel);
        if (r == 0)
                keyhash_hex(st, out);
        XXH3_freeState(st);
        return r;
}

/* Copies s into out (n bytes) with control characters as '?': a verdict is one line a field. */
static void copy_printable(char *out, size_t n, const char *s)
{
        size_t k = 0;
        for (; s && *s && k + 1 < n; s++)
                out[k++] = (unsigned char) *s < 0x20 || *s == 0x7f ? '?' : *s;
        out[k] = 0;
}

void accel_verdict_of(const AccelProbeTarget *t, const AccelProbe *p, const char *key,
                      AccelVerdict *ret)
{
        *ret = (AccelVerdict){.kvm = p->ok,
                              .probed_at = time(NULL),
                              .seconds = p->seconds,
                              .timeout_s = p->timeout_s};
        copy_printable(ret->key, sizeof ret->key, key);
        copy_printable(ret->reason, sizeof ret->reason, p->reason);
        copy_printable(ret->qemu, sizeof ret->qemu, t->qemu);
        copy_printable(ret->kernel, sizeof ret->kernel, t->kernel);
}

static bool key_valid(const char *key)
{
        return key && strlen(key) == 32 && strspn(key, "0123456789abcdef") == 32;
}

static int verdict_path(const char *key, char *out, size_t n)
{
        const char *dir = accel_cache_dir();
        if (!dir)
                return -errno ? -errno : -ENOENT;
        return (size_t) snprintf(out, n, "%s/%s.verdict", dir, key) < n ? 0 : -ENAMETOOLONG;
}

/* Copies a value into a field, refusing control characters. */
static bool set_text(char *dst, size_t n, const char *v)
{
        for (const char *p = v; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        return false;
        return (size_t) snprintf(dst, n, "%s", v) < n;
}

static bool set_int(int64_t *dst, const char *v)
{
        char *end;
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (errno || end == v || *end || x < 0)
                return false;
        *dst = x;
        return true;
}

static bool verdict_field(AccelVerdict *v, const char *name, const char *val, unsigned *seen)
{
        int64_t ms;
        if (strcmp(name, "format") == 0)
                return strcmp(val, VERDICT_FORMAT) == 0 && (*seen |= 1);
        if (strcmp(name, "key") == 0)
                return set_text(v->key, sizeof v->key, val) && (*seen |= 2);
        if (strcmp(name, "verdict") == 0) {
                if (strcmp(val, "kvm") != 0 && strcmp(val, "tcg") != 0)
                        return false;
                v->kvm = strcmp(val, "kvm") == 0;
                return *seen |= 4;
        }
        if (strcmp(name, "reason") == 0)
                return set_text(v->reason, sizeof v->reason, val) && (*seen |= 8);
        if (strcmp(name, "probed_at") == 0)
                return set_int(&v->probed_at, val) && (*seen |= 16);
        if (strcmp(name, "probe_ms") == 0 || strcmp(name, "timeout_ms") == 0) {
                if (!set_int(&ms, val))
                        return false;
                *(name[0] == 'p' ? &v->seconds : &v->timeout_s) = (double) ms / 1000;
                return true;
        }
        if (strcmp(name, "qemu") == 0)
                return set_text(v->qemu, sizeof v->qemu, val);
        if (strcmp(name, "kernel") == 0)
                return set_text(v->kernel, sizeof v->kernel, val);
        return true; /* a field of a later version: ignored */
}

int accel_verdict_load(const char *key, AccelVerdict *ret)
{
        char path[PATH_MAX], buf[VERDICT_MAX + 1];
        if (!key_valid(key) || !ret)
                return -EINVAL;
        int r = verdict_path(key, path, sizeof path);
        if (r < 0)
                return r;
        /* O_NONBLOCK: a FIFO put there must not hang the run; only a regular file is read. */
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                (void) close(fd);
                return -EBADMSG;
        }
        ssize_t n = read(fd, buf, sizeof buf);
        r = n < 0 ? -errno : 0;
        (void) close(fd);
        if (r < 0)
                return r;
        if (n == 0 || n > VERDICT_MAX || memchr(buf, 0, (size_t) n))
                return -EBADMSG;
        buf[n] = 0;
        AccelVerdict v = {0};
        unsigned seen = 0;
        char *save = NULL;
        for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *eq = strchr(line, '=');
                if (!eq)
                        return -EBADMSG;
                *eq = 0;
                if (!verdict_field(&v, line, eq + 1, &seen))
                        return -EBADMSG;
        }
        if (seen != 31 || strcmp(v.key, key) != 0)
                return -EBADMSG;
        *ret = v;
        return 0;
}

/* Removes verdicts last written before this boot (their boot id can never match again), and
 * temp files of a store that died more than a minute ago. */
static void prune_old(const char *dir)
{
        struct timespec up, now;
        if (clock_gettime(CLOCK_BOOTTIME, &up) < 0 || clock_gettime(CLOCK_REALTIME, &now) < 0)
                return;
        time_t booted = now.tv_sec - up.tv_sec - 60; /* a minute of slack for clock steps */
        DIR *d = opendir(dir);
        if (!d)
                return;
        struct dirent *e;
        while ((e = readdir(d))) {
                size_t len = strlen(e->d_name);
                struct stat st;
                bool verdict = len >= 8 && strcmp(e->d_name + len - 8, ".verdict") == 0;
                bool temp = !verdict && strstr(e->d_name, ".verdict.") != NULL;
                if ((verdict || temp) &&
                    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                    st.st_mtime < (verdict ? booted : now.tv_sec - 60))
                        (void) unlinkat(dirfd(d), e->d_name, 0);
        }
        (void) closedir(d);
}

int accel_verdict_store(const AccelVerdict *v)
{
        char path[PATH_MAX], tmp[PATH_MAX + 16];
        if (!v || !key_valid(v->key))
                return -EINVAL;
        int r = verdict_path(v->key, path, sizeof path);
        if (r < 0)
                return r;
        snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
        int fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return -errno;
        FILE *f = fdopen(fd, "w");
        if (!f) {
                r = -errno;
                (void) close(fd);
                (void) unlink(tmp);
                return r;
        }
        fprintf(f,
                "format=" VERDICT_FORMAT "\nkey=%s\nverdict=%s\nreason=%s\nprobed_at=%" PRId64
                "\nprobe_ms=%" PRId64 "\ntimeout_ms=%" PRId64 "\nqemu=%s\nkernel=%s\n",
                v->key, v->kvm ? "kvm" : "tcg", v->reason, v->probed_at,
                (int64_t) (v->seconds * 1000), (int64_t) (v->timeout_s * 1000), v->qemu, v->kernel);
        r = ferror(f) ? -EIO : 0;
        if (fclose(f) != 0 && r == 0)
                r = -errno;
        if (r == 0 && (fchmodat(AT_FDCWD, tmp, 0644, 0) < 0 || rename(tmp, path) < 0))
                r = -errno;
        if (r < 0) {
                (void) unlink(tmp);
                return r;
        }
        prune_old(accel_cache_dir());
        return 0;
}

int accel_lock(CacheLock *ret)
{
        const char *dir = accel_cache_dir();
        if (!dir)
                return -ENOENT;
        int r = cachedir_lock_init(ret, dir, "probe");
        if (r == 0)
                r = cachedir_lock_take(ret, false);
        if (r == -EWOULDBLOCK) {
                fprintf(stderr,
                        "provium: another provium is probing KVM; waiting for its verdict\n");
                r = cachedir_lock_take(ret, true);
        }
        if (r < 0)
                cachedir_lock_release(ret);
        return r;
}
