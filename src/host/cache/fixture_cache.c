/* fixture_cache.c: saved VM states in the cache: lookup with validation, build under lock,
 * listing and clearing.
 *
 * Sections: small helpers / files and directories / the build lock / hashing / loading an
 * entry / open / build / list and clear / QEMU's version. */
#include "fixture_cache.h"

#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "fdio.h"
#include "paths.h"
#include "strfmt.h"

#define FIXTURE_FORMAT     2 /* 2: sparse hashes of non-zero pages, not of extents */
#define FIXTURE_NAME_MAX   64
#define FIXTURE_HASH_CHUNK (64u << 20) /* bytes mapped at once while hashing */
#define FIXTURE_META_MAX   (16u << 20)
#define FIXTURE_LOCK_TRIES 1000

typedef struct BuildVm {
        char *name;
        json_t *config;
} BuildVm;

struct FixtureBuild {
        char *name, *key;
        char *root;      /* $CACHE/fixtures */
        char *dir;       /* the staging directory */
        char *entry_dir; /* where commit renames it to */
        char *lock_path;
        int lock_fd;
        BuildVm *vms;
        size_t nvms;
        char **paths; /* strings handed out by the path helpers */
        size_t npaths;
};

/* The recorded hashes of a loaded entry's VMs, parallel to FixtureEntry.vms. */
typedef struct VmHashes {
        char state[17], ram[17];
} VmHashes;

/* ---- small helpers ---- */

/* Fixture and VM names: [A-Za-z0-9_-]{1,64} (they become file names). */
static bool name_valid_n(const char *s, size_t n)
{
        if (n == 0 || n > FIXTURE_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                      (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_'))
                        return false;
        return true;
}

static bool name_valid(const char *s)
{
        return s && name_valid_n(s, strlen(s));
}

static bool hex_valid(const char *s, size_t n)
{
        return s && strlen(s) == n && strspn(s, "0123456789abcdef") == n;
}

static void hex64(uint64_t h, char out[17])
{
        (void) snprintf(out, 17, "%016llx", (unsigned long long) h);
}

/* ---- files and directories ---- */

/* Reads PATH (at most FIXTURE_META_MAX bytes) into a NUL-terminated buffer. */
static int read_file_all(const char *path, char **ret)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat sb;
        size_t len = 0;
        char *buf = NULL;
        int r = 0;

        if (fd < 0)
                return -errno;
        if (fstat(fd, &sb) < 0) {
                r = -errno;
                goto out;
        }
        if (!S_ISREG(sb.st_mode) || (uint64_t) sb.st_size > FIXTURE_META_MAX) {
                r = S_ISREG(sb.st_mode) ? -EFBIG : -EINVAL;
                goto out;
        }
        buf = malloc((size_t) sb.st_size + 1);
        if (!buf) {
                r = -ENOMEM;
                goto out;
        }
        while (len < (size_t) sb.st_size) {
                ssize_t n = read(fd, buf + len, (size_t) sb.st_size - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = -errno;
                        goto out;
                }
                if (n == 0)
                        break;
                len += (size_t) n;
        }
        buf[len] = '\0';
        *ret = buf;
        buf = NULL;
out:
        free(buf);
        (void) close(fd);
        return r;
}

static int fsync_path(const char *path, int flags)
{
        int fd = open(path, flags | O_CLOEXEC);
        int r = 0;

        if (fd < 0)
                return -errno;
        if (fsync(fd) < 0)
                r = -errno;
        (void) close(fd);
        return r;
}

/* rm -rf NAME relative to dfd. Returns 0 (also when it does not exist) or -errno. */
static int rm_rf_at(int dfd, const char *name)
{
        struct dirent *de;
        DIR *d;
        int fd, r = 0, e0;

        if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
                return 0;
        e0 = errno;
        if (e0 != EISDIR && e0 != EPERM)
                return -e0;
        fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOTDIR ? -e0 : -errno;
        d = fdopendir(fd);
        if (!d) {
                r = -errno;
                (void) close(fd);
                return r;
        }
        while ((errno = 0, de = readdir(d))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                int q = rm_rf_at(dirfd(d), de->d_name);
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

static int rm_rf(const char *path)
{
        return rm_rf_at(AT_FDCWD, path);
}

/* st_blocks*512 over the regular files directly in DIR. */
static uint64_t dir_disk_bytes(const char *dir)
{
        DIR *d = opendir(dir);
        struct dirent *de;
        uint64_t total = 0;

        if (!d)
                return 0;
        while ((de = readdir(d))) {
                struct stat sb;
                if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
                    S_ISREG(sb.st_mode))
                        total += (uint64_t) sb.st_blocks * 512;
        }
        (void) closedir(d);
        return total;
}

/* $CACHE/fixtures, created when create is set. WHAT prefixes messages ("fixture base"). */
static int fixtures_root(const char *what, bool create, char **ret, char *err, size_t errlen)
{
        const char *cache = paths_cache_dir();
        char *root;
        int r;

        if (!cache) {
                r = -errno;
                seterr(err, errlen, "%s: cache directory %s cannot be created: %s", what,
                       paths_cache_dir_wanted(), strerror(-r));
                return r;
        }
        root = xasprintf("%s/fixtures", cache);
        if (!root) {
                seterr(err, errlen, "%s: %s", what, strerror(ENOMEM));
                return -ENOMEM;
        }
        if (create) {
                r = paths_mkdir_p(root, 0755);
                if (r < 0) {
                        seterr(err, errlen, "%s: cache directory %s cannot be created: %s", what,
                               root, strerror(-r));
                        free(root);
                        return r;
                }
        }
        *ret = root;
        return 0;
}

/* What a name in the fixtures directory is. */
typedef enum {
        CACHE_OTHER,
        CACHE_ENTRY,   /* <name>-<key> */
        CACHE_LOCK,    /* <name>-<key>.lock */
        CACHE_STAGING, /* .<name>-<key>.tmp-<pid> */
} CacheKind;

static CacheKind cache_name_parse(const char *s, char name[FIXTURE_NAME_MAX + 1], char key[33],
                                  long *ret_pid)
{
        bool dot = s[0] == '.';
        const char *stem = s + dot, *suffix;
        size_t len = strcspn(stem, ".");

        suffix = stem + len;
        if (len < 34 || stem[len - 33] != '-' || strspn(stem + len - 32, "0123456789abcdef") < 32 ||
            !name_valid_n(stem, len - 33))
                return CACHE_OTHER;
        memcpy(name, stem, len - 33);
        name[len - 33] = '\0';
        memcpy(key, stem + len - 32, 32);
        key[32] = '\0';
        if (!dot && *suffix == '\0')
                return CACHE_ENTRY;
        if (!dot && strcmp(suffix, ".lock") == 0)
                return CACHE_LOCK;
        if (dot && strncmp(suffix, ".tmp-", 5) == 0 && suffix[5] &&
            strspn(suffix + 5, "0123456789") == strlen(suffix + 5) && strlen(suffix + 5) < 10) {
                if (ret_pid)
                        *ret_pid = strtol(suffix + 5, NULL, 10);
                return CACHE_STAGING;
        }
        return CACHE_OTHER;
}

/* Removes the staging directories of name-key whose process is gone (or is this one: the
 * caller holds the lock, so no build of this process is using one). */
static void remove_stale_staging(const char *root, const char *name, const char *key)
{
        DIR *d = opendir(root);
        struct dirent *de;

        if (!d)
                return;
        while ((de = readdir(d))) {
                char n[FIXTURE_NAME_MAX + 1], k[33];
                long pid = 0;
                if (cache_name_parse(de->d_name, n, k, &pid) != CACHE_STAGING ||
                    strcmp(n, name) != 0 || strcmp(k, key) != 0)
                        continue;
                if (pid == (long) getpid() || pid <= 0 ||
                    (kill((pid_t) pid, 0) < 0 && errno == ESRCH))
                        (void) rm_rf_at(dirfd(d), de->d_name);
        }
        (void) closedir(d);
}

/* ---- the build lock ---- */

/* Opens PATH and locks it exclusively without waiting. The lock file is unlinked by the
 * holder when it releases it, so a lock taken on a file no longer at PATH is retried on the
 * new one. Returns the fd, -EWOULDBLOCK when another holds it, or -errno. */
static int lock_take(const char *path)
{
        for (int i = 0; i < FIXTURE_LOCK_TRIES; i++) {
                struct stat a, b;
                int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644), r;

                if (fd < 0)
                        return -errno;
                while ((r = flock(fd, LOCK_EX | LOCK_NB)) < 0 && errno == EINTR)
                        ;
                if (r < 0) {
                        r = errno == EWOULDBLOCK ? -EWOULDBLOCK : -errno;
                        (void) close(fd);
                        return r;
                }
                if (fstat(fd, &a) < 0) {
                        r = -errno;
                        (void) close(fd);
                        return r;
                }
                r = stat(path, &b) < 0 ? -errno : 0;
                if (r == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
                        return fd;
                if (r < 0 && r != -ENOENT) {
                        (void) close(fd);
                        return r;
                }
                /* Unlinked (or replaced) by its last holder: lock the file now at path. */
                (void) close(fd);
        }
        return -EWOULDBLOCK;
}

static void lock_release(const char *path, int fd)
{
        if (fd < 0)
                return;
        (void) unlink(path); /* under the lock: a waiter notices and locks the new file */
        (void) close(fd);
}

/* ---- hashing ---- */

#define HASH_PAGE 4096u /* the unit of a sparse hash, whatever the file system's extents */

static bool page_is_zero(const unsigned char *p, size_t n)
{
        uint64_t acc = 0, w;
        size_t i = 0;
        for (; i + sizeof w <= n; i += sizeof w) {
                memcpy(&w, p + i, sizeof w);
                acc |= w;
        }
        for (; i < n; i++)
                acc |= p[i];
        return acc == 0;
}

/* Feeds [off, off+len) of fd to st through read-only shared mappings (no copy). With sparse,
 * only its pages that are not all zeros, each after its offset (a little-endian u64). */
static int hash_range(XXH3_state_t *st, int fd, uint64_t off, uint64_t len, bool sparse)
{
        uint64_t page = (uint64_t) sysconf(_SC_PAGESIZE);

        while (len > 0) {
                uint64_t start = off & ~(page - 1);
                uint64_t chunk = len < FIXTURE_HASH_CHUNK ? len : FIXTURE_HASH_CHUNK;
                size_t maplen = (size_t) (off - start + chunk);
                void *m = mmap(NULL, maplen, PROT_READ, MAP_SHARED, fd, (off_t) start);

                if (m == MAP_FAILED)
                        return -errno;
                (void) madvise(m, maplen, MADV_SEQUENTIAL);
                const unsigned char *p = (const unsigned char *) m + (off - start);
                if (!sparse)
                        (void) XXH3_64bits_update(st, p, (size_t) chunk);
                for (uint64_t i = 0; sparse && i < chunk; i += HASH_PAGE) {
                        size_t n = chunk - i < HASH_PAGE ? (size_t) (chunk - i) : HASH_PAGE;
                        if (page_is_zero(p + i, n))
                                continue;
                        uint64_t at = htole64(off + i);
                        (void) XXH3_64bits_update(st, &at, sizeof at);
                        (void) XXH3_64bits_update(st, p + i, n);
                }
                (void) munmap(m, maplen);
                off += chunk;
                len -= chunk;
        }
        return 0;
}

/* XXH3-64 of fd's SIZE bytes, or with sparse of its pages that are not all zeros (each as its
 * offset, then its bytes), read from its data extents only. A hole and a page of zeros hash
 * alike: tmpfs fills a RAM file's holes with zeros when a clone's guest merely reads them,
 * so a hash of the extents themselves would change under a valid cache entry. */
static int hash_fd(int fd, uint64_t size, bool sparse, char out[17])
{
        XXH3_state_t *st = XXH3_createState();
        int r = 0;

        if (!st || XXH3_64bits_reset(st) != XXH_OK) {
                XXH3_freeState(st);
                return -ENOMEM;
        }
        if (!sparse) {
                r = hash_range(st, fd, 0, size, false);
                goto out;
        }
        uint64_t hashed_to = 0; /* pages below this are done */
        for (off_t off = 0; (uint64_t) off < size;) {
                off_t data = lseek(fd, off, SEEK_DATA), hole;
                if (data < 0) {
                        r = errno == ENXIO ? 0 : -errno;
                        break;
                }
                if ((uint64_t) data >= size)
                        break;
                hole = lseek(fd, data, SEEK_HOLE);
                if (hole < 0) {
                        r = -errno;
                        break;
                }
                if ((uint64_t) hole > size)
                        hole = (off_t) size;
                /* On a fixed grid of HASH_PAGE from offset 0, whatever the file system's
                 * block size: extents are widened to whole pages (what they add reads back as
                 * zeros) and a page two extents share is hashed once. */
                uint64_t a = (uint64_t) data & ~(uint64_t) (HASH_PAGE - 1);
                uint64_t b = ((uint64_t) hole + HASH_PAGE - 1) & ~(uint64_t) (HASH_PAGE - 1);
                a = a < hashed_to ? hashed_to : a;
                b = b > size ? size : b;
                if (b > a && (r = hash_range(st, fd, a, b - a, true)) < 0)
                        break;
                hashed_to = b > hashed_to ? b : hashed_to;
                off = hole;
        }
out:
        if (r >= 0)
                hex64(XXH3_64bits_digest(st), out);
        XXH3_freeState(st);
        return r;
}

/* Opens a VM file: its size and hash. A missing or non-regular file is -ENOENT/-EINVAL. */
static int hash_file(const char *path, bool sparse, uint64_t *ret_size, char out[17])
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat sb;
        int r;

        if (fd < 0)
                return -errno;
        if (fstat(fd, &sb) < 0) {
                r = -errno;
                goto out;
        }
        if (!S_ISREG(sb.st_mode)) {
                r = -EINVAL;
                goto out;
        }
        *ret_size = (uint64_t) sb.st_size;
        r = hash_fd(fd, (uint64_t) sb.st_size, sparse, out);
out:
        (void) close(fd);
        return r;
}

/* ---- loading an entry ---- */

static void vm_clear(FixtureVm *vm)
{
        free(vm->name);
        free(vm->state_path);
        free(vm->ram_path);
        free(vm->config_json);
}

FixtureEntry *fixture_entry_free(FixtureEntry *e)
{
        if (!e)
                return NULL;
        for (size_t i = 0; i < e->nvms; i++)
                vm_clear(&e->vms[i]);
        free(e->vms);
        free(e->name);
        free(e->key);
        free(e->dir);
        free(e);
        return NULL;
}

static FixtureEntry *entry_new(const char *name, const char *key, const char *dir)
{
        FixtureEntry *e = calloc(1, sizeof *e);

        if (!e)
                return NULL;
        e->name = strdup(name);
        e->key = strdup(key);
        e->dir = strdup(dir);
        if (!e->name || !e->key || !e->dir)
                return fixture_entry_free(e);
        return e;
}

/* Fills vm i from its meta.json object. Returns 0, -EBADMSG with reason, or -ENOMEM. */
static int vm_parse(const FixtureEntry *e, size_t i, json_t *o, FixtureVm *vm, VmHashes *h,
                    char *reason, size_t reasonlen)
{
        const char *name, *ss, *rs;
        json_int_t state_size, ram_size;
        json_t *config;
        json_error_t je;

        if (json_unpack_ex(o, &je, 0, "{s:s, s:I, s:s, s:I, s:s, s:o}", "name", &name, "state_size",
                           &state_size, "state_xxh3", &ss, "ram_size", &ram_size, "ram_xxh3", &rs,
                           "config", &config) < 0) {
                seterr(reason, reasonlen, "meta.json: vm %zu: %s", i, je.text);
                return -EBADMSG;
        }
        if (!name_valid(name) || state_size < 0 || ram_size < 0 || !hex_valid(ss, 16) ||
            !hex_valid(rs, 16) || !json_is_object(config)) {
                seterr(reason, reasonlen, "meta.json: vm %zu: invalid name, size, hash or config",
                       i);
                return -EBADMSG;
        }
        vm->name = strdup(name);
        vm->state_path = xasprintf("%s/%s.state", e->dir, name);
        vm->ram_path = xasprintf("%s/%s.ram", e->dir, name);
        vm->config_json = json_dumps(config, JSON_COMPACT);
        vm->state_size = (uint64_t) state_size;
        vm->ram_size = (uint64_t) ram_size;
        memcpy(h->state, ss, 17);
        memcpy(h->ram, rs, 17);
        if (!vm->name || !vm->state_path || !vm->ram_path || !vm->config_json)
                return -ENOMEM;
        return 0;
}

/* Parses e->dir/meta.json into e (vms, created); *ret_hashes gets the recorded hashes when
 * non-NULL. On failure e is unchanged. Returns 0, -EBADMSG with reason, or -ENOMEM. */
static int entry_parse(FixtureEntry *e, VmHashes **ret_hashes, char *reason, size_t reasonlen)
{
        char *path = xasprintf("%s/meta.json", e->dir), *text = NULL;
        const char *mname, *mkey;
        json_t *meta = NULL, *vms;
        json_int_t format, created;
        json_error_t je;
        FixtureVm *v = NULL;
        VmHashes *h = NULL;
        size_t n = 0;
        int r;

        if (!path)
                return -ENOMEM;
        r = read_file_all(path, &text);
        if (r < 0) {
                if (r == -ENOENT)
                        seterr(reason, reasonlen, "meta.json is missing");
                else if (r != -ENOMEM)
                        seterr(reason, reasonlen, "meta.json: %s", strerror(-r));
                r = r == -ENOMEM ? r : -EBADMSG;
                goto out;
        }
        meta = json_loads(text, JSON_REJECT_DUPLICATES, &je);
        if (!meta) {
                seterr(reason, reasonlen, "meta.json does not parse: %s (line %d)", je.text,
                       je.line);
                r = -EBADMSG;
                goto out;
        }
        if (json_unpack_ex(meta, &je, 0, "{s:I, s:s, s:s, s:I, s:o}", "format", &format, "name",
                           &mname, "key", &mkey, "created", &created, "vms", &vms) < 0) {
                seterr(reason, reasonlen, "meta.json: %s", je.text);
                r = -EBADMSG;
                goto out;
        }
        if (format != FIXTURE_FORMAT || strcmp(mname, e->name) != 0 || strcmp(mkey, e->key) != 0 ||
            !json_is_array(vms)) {
                seterr(reason, reasonlen,
                       "meta.json: format %lld name %s key %.32s, expected format %d name %s "
                       "key %s",
                       (long long) format, mname, mkey, FIXTURE_FORMAT, e->name, e->key);
                r = -EBADMSG;
                goto out;
        }
        n = json_array_size(vms);
        v = calloc(n ? n : 1, sizeof *v);
        h = calloc(n ? n : 1, sizeof *h);
        if (!v || !h) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < n; i++) {
                r = vm_parse(e, i, json_array_get(vms, i), &v[i], &h[i], reason, reasonlen);
                for (size_t j = 0; r >= 0 && j < i; j++)
                        if (strcmp(v[j].name, v[i].name) == 0) {
                                seterr(reason, reasonlen, "meta.json: vm %s appears twice",
                                       v[i].name);
                                r = -EBADMSG;
                        }
                if (r < 0)
                        goto out;
        }
        e->vms = v;
        e->nvms = n;
        e->created = (int64_t) created;
        v = NULL;
        if (ret_hashes) {
                *ret_hashes = h;
                h = NULL;
        }
        r = 0;
out:
        for (size_t i = 0; v && i < n; i++)
                vm_clear(&v[i]);
        free(v);
        free(h);
        json_decref(meta);
        free(text);
        free(path);
        return r;
}

/* Checks one VM file against its recorded size and hash. */
static int vm_file_check(const char *vm, const char *path, bool sparse, uint64_t size,
                         const char *hash, char *reason, size_t reasonlen)
{
        const char *base = strrchr(path, '/') + 1;
        uint64_t got_size = 0;
        char got[17];
        int fd = open(path, O_RDONLY | O_CLOEXEC), r;
        struct stat sb;

        if (fd < 0 || fstat(fd, &sb) < 0) {
                r = -errno;
                seterr(reason, reasonlen, "vm %s: %s: %s", vm, base, strerror(-r));
                goto out;
        }
        got_size = (uint64_t) sb.st_size;
        if (!S_ISREG(sb.st_mode) || got_size != size) {
                seterr(reason, reasonlen, "vm %s: %s is %llu bytes%s, meta.json says %llu", vm,
                       base, (unsigned long long) got_size,
                       S_ISREG(sb.st_mode) ? "" : " and not a regular file",
                       (unsigned long long) size);
                r = -EBADMSG;
                goto out;
        }
        r = hash_fd(fd, got_size, sparse, got);
        if (r < 0) {
                seterr(reason, reasonlen, "vm %s: hashing %s: %s", vm, base, strerror(-r));
                goto out;
        }
        if (strcmp(got, hash) != 0) {
                seterr(reason, reasonlen, "vm %s: %s%s XXH3 is %s, meta.json says %s", vm, base,
                       sparse ? " data" : "", got, hash);
                r = -EBADMSG;
        }
out:
        if (fd >= 0)
                (void) close(fd);
        return r == -ENOMEM ? r : r < 0 ? -EBADMSG : 0;
}

/* Loads and, with validate, checks the entry in DIR. Returns 0 with *ret; -ENOENT when DIR
 * does not exist; -EBADMSG with reason when the entry is corrupt; -ENOMEM. */
static int entry_load(const char *dir, const char *name, const char *key, bool validate,
                      FixtureEntry **ret, char *reason, size_t reasonlen)
{
        FixtureEntry *e = NULL;
        VmHashes *h = NULL;
        struct stat sb;
        int r;

        if (lstat(dir, &sb) < 0) {
                if (errno == ENOENT)
                        return -ENOENT;
                seterr(reason, reasonlen, "%s", strerror(errno));
                return -EBADMSG;
        }
        if (!S_ISDIR(sb.st_mode)) {
                seterr(reason, reasonlen, "the entry is not a directory");
                return -EBADMSG;
        }
        e = entry_new(name, key, dir);
        if (!e)
                return -ENOMEM;
        r = entry_parse(e, &h, reason, reasonlen);
        if (r < 0)
                goto out;
        if (validate && e->nvms == 0) {
                seterr(reason, reasonlen, "meta.json lists no VMs");
                r = -EBADMSG;
                goto out;
        }
        for (size_t i = 0; validate && i < e->nvms && r >= 0; i++) {
                const FixtureVm *vm = &e->vms[i];
                r = vm_file_check(vm->name, vm->state_path, false, vm->state_size, h[i].state,
                                  reason, reasonlen);
                if (r >= 0)
                        r = vm_file_check(vm->name, vm->ram_path, true, vm->ram_size, h[i].ram,
                                          reason, reasonlen);
        }
        if (r < 0)
                goto out;
        e->disk_bytes = dir_disk_bytes(dir);
        *ret = e;
        e = NULL;
out:
        free(h);
        fixture_entry_free(e);
        return r;
}

/* ---- open ---- */

static void build_free(FixtureBuild *b)
{
        for (size_t i = 0; i < b->nvms; i++) {
                free(b->vms[i].name);
                json_decref(b->vms[i].config);
        }
        for (size_t i = 0; i < b->npaths; i++)
                free(b->paths[i]);
        free(b->paths);
        free(b->vms);
        free(b->name);
        free(b->key);
        free(b->root);
        free(b->dir);
        free(b->entry_dir);
        free(b->lock_path);
        free(b);
}

static void build_release(FixtureBuild *b)
{
        lock_release(b->lock_path, b->lock_fd);
        build_free(b);
}

/* Checks that root is writable and takes the build lock of name-key. */
static int build_lock(const char *root, const char *name, const char *key, FixtureBuild **ret,
                      char *err, size_t errlen)
{
        FixtureBuild *b = calloc(1, sizeof *b);
        int r;

        if (!b)
                goto nomem;
        b->lock_fd = -1;
        b->name = strdup(name);
        b->key = strdup(key);
        b->root = strdup(root);
        b->dir = xasprintf("%s/.%s-%s.tmp-%ld", root, name, key, (long) getpid());
        b->entry_dir = xasprintf("%s/%s-%s", root, name, key);
        b->lock_path = xasprintf("%s/%s-%s.lock", root, name, key);
        if (!b->name || !b->key || !b->root || !b->dir || !b->entry_dir || !b->lock_path)
                goto nomem;
        if (access(root, W_OK) < 0) {
                r = -errno;
                seterr(err, errlen, "fixture %s: cache directory %s is not writable: %s", name,
                       root, strerror(-r));
                goto fail;
        }
        r = lock_take(b->lock_path);
        if (r == -EWOULDBLOCK) {
                seterr(err, errlen, "fixture %s: being built by another process (%s is locked)",
                       name, b->lock_path);
                goto fail;
        }
        if (r < 0) {
                seterr(err, errlen, "fixture %s: cache directory %s is not writable: %s: %s", name,
                       root, strrchr(b->lock_path, '/') + 1, strerror(-r));
                goto fail;
        }
        b->lock_fd = r;
        *ret = b;
        return 0;
nomem:
        r = -ENOMEM;
        seterr(err, errlen, "fixture %s: %s", name, strerror(ENOMEM));
fail:
        if (b)
                build_free(b);
        return r;
}

/* Under the lock: clears old staging directories and creates this build's. */
static int build_stage(FixtureBuild *b, char *err, size_t errlen)
{
        int r;

        remove_stale_staging(b->root, b->name, b->key);
        if (mkdir(b->dir, 0755) < 0) {
                r = -errno;
                seterr(err, errlen, "fixture %s: mkdir %s: %s", b->name, b->dir, strerror(-r));
                return r;
        }
        return 0;
}

int fixture_cache_open(const char *name, const char *key, FixtureEntry **ret_entry,
                       FixtureBuild **ret_build, char *corrupt, size_t corruptlen, char *err,
                       size_t errlen)
{
        char *root = NULL, *dir = NULL, reason[1024] = "";
        FixtureBuild *b = NULL;
        FixtureEntry *e = NULL;
        int r;

        seterr(err, errlen, "%s", "");
        seterr(corrupt, corruptlen, "%s", "");
        if (!ret_entry || !ret_build)
                return -EINVAL;
        *ret_entry = NULL;
        *ret_build = NULL;
        if (!name_valid(name)) {
                seterr(err, errlen, "fixture %s: invalid name (expected 1-64 of A-Z a-z 0-9 _ -)",
                       name ? name : "(null)");
                return -EINVAL;
        }
        if (!hex_valid(key, 32)) {
                seterr(err, errlen, "fixture %s: invalid key '%s' (expected 32 lowercase hex)",
                       name, key ? key : "(null)");
                return -EINVAL;
        }
        char what[FIXTURE_NAME_MAX + 16];
        (void) snprintf(what, sizeof what, "fixture %s", name);
        r = fixtures_root(what, true, &root, err, errlen);
        if (r < 0)
                return r;
        dir = xasprintf("%s/%s-%s", root, name, key);
        if (!dir) {
                r = -ENOMEM;
                goto out;
        }
        /* Fast path: entries only appear by rename, so a valid one needs no lock. */
        r = entry_load(dir, name, key, true, &e, reason, sizeof reason);
        if (r == 0)
                goto hit;
        if (r == -ENOMEM)
                goto out;
        r = build_lock(root, name, key, &b, err, errlen);
        if (r < 0)
                goto out;
        /* Another process may have committed (or removed) it in the meantime. */
        reason[0] = '\0';
        r = entry_load(dir, name, key, true, &e, reason, sizeof reason);
        if (r == 0) {
                build_release(b);
                goto hit;
        }
        if (r == -ENOMEM)
                goto out;
        if (r == -EBADMSG) {
                r = rm_rf(dir);
                if (r < 0) {
                        seterr(err, errlen, "fixture %s: removing corrupt entry %s (%s): %s", name,
                               dir, reason, strerror(-r));
                        goto out;
                }
                seterr(corrupt, corruptlen, "%s", reason);
        }
        r = build_stage(b, err, errlen);
        if (r < 0)
                goto out;
        *ret_build = b;
        b = NULL;
        r = 0;
        goto out;
hit:
        *ret_entry = e;
        e = NULL;
        r = 1;
out:
        if (r == -ENOMEM)
                seterr(err, errlen, "fixture %s: %s", name, strerror(ENOMEM));
        if (r < 0)
                seterr(corrupt, corruptlen, "%s", "");
        if (b)
                build_release(b);
        fixture_entry_free(e);
        free(dir);
        free(root);
        return r;
}

/* ---- build ---- */

const char *fixture_build_dir(const FixtureBuild *b)
{
        return b ? b->dir : NULL;
}

static BuildVm *build_find_vm(FixtureBuild *b, const char *vm_name)
{
        for (size_t i = 0; i < b->nvms; i++)
                if (strcmp(b->vms[i].name, vm_name) == 0)
                        return &b->vms[i];
        return NULL;
}

int fixture_build_add_vm(FixtureBuild *b, const char *vm_name, const char *config_json)
{
        json_t *config;
        BuildVm *nv;

        if (!b || !name_valid(vm_name) || !config_json)
                return -EINVAL;
        if (build_find_vm(b, vm_name))
                return -EEXIST;
        config = json_loads(config_json, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(config)) {
                json_decref(config);
                return -EINVAL;
        }
        nv = realloc(b->vms, (b->nvms + 1) * sizeof *nv);
        if (!nv) {
                json_decref(config);
                return -ENOMEM;
        }
        b->vms = nv;
        nv[b->nvms].name = strdup(vm_name);
        if (!nv[b->nvms].name) {
                json_decref(config);
                return -ENOMEM;
        }
        nv[b->nvms].config = config;
        b->nvms++;
        return 0;
}

/* <staging>/<vm><ext>, kept in b->paths (one string per distinct path). */
static const char *build_path(FixtureBuild *b, const char *vm_name, const char *ext)
{
        char *p, **np;

        if (!b || !name_valid(vm_name))
                return NULL;
        p = xasprintf("%s/%s%s", b->dir, vm_name, ext);
        if (!p)
                return NULL;
        for (size_t i = 0; i < b->npaths; i++)
                if (strcmp(b->paths[i], p) == 0) {
                        free(p);
                        return b->paths[i];
                }
        np = realloc(b->paths, (b->npaths + 1) * sizeof *np);
        if (!np) {
                free(p);
                return NULL;
        }
        b->paths = np;
        b->paths[b->npaths++] = p;
        return p;
}

const char *fixture_build_state_path(FixtureBuild *b, const char *vm_name)
{
        return build_path(b, vm_name, ".state");
}

const char *fixture_build_ram_path(FixtureBuild *b, const char *vm_name)
{
        return build_path(b, vm_name, ".ram");
}

/* The meta.json object of one VM: hashes its files in the staging directory. */
static int build_vm_meta(FixtureBuild *b, const BuildVm *vm, json_t **ret, char *err, size_t errlen)
{
        char *state = xasprintf("%s/%s.state", b->dir, vm->name);
        char *ram = xasprintf("%s/%s.ram", b->dir, vm->name);
        char sh[17], rh[17];
        uint64_t ssize = 0, rsize = 0;
        const char *file = state;
        int r;

        if (!state || !ram) {
                r = -ENOMEM;
                goto fail;
        }
        r = hash_file(state, false, &ssize, sh);
        if (r >= 0) {
                file = ram;
                r = hash_file(ram, true, &rsize, rh);
        }
        if (r < 0)
                goto fail;
        *ret = json_pack("{s:s, s:I, s:s, s:I, s:s, s:O}", "name", vm->name, "state_size",
                         (json_int_t) ssize, "state_xxh3", sh, "ram_size", (json_int_t) rsize,
                         "ram_xxh3", rh, "config", vm->config);
        r = *ret ? 0 : -ENOMEM;
        if (r < 0)
                goto fail;
        free(state);
        free(ram);
        return 0;
fail:
        seterr(err, errlen, "fixture %s: vm %s: %s: %s", b->name, vm->name,
               file ? strrchr(file, '/') + 1 : "files", strerror(-r));
        free(state);
        free(ram);
        return r;
}

/* Writes meta to <staging>/meta.json and fsyncs it. */
static int build_write_meta(FixtureBuild *b, json_t *meta, char *err, size_t errlen)
{
        char *path = xasprintf("%s/meta.json", b->dir);
        char *text = json_dumps(meta, JSON_INDENT(2));
        int fd = -1, r;

        if (!path || !text) {
                r = -ENOMEM;
                seterr(err, errlen, "fixture %s: %s", b->name, strerror(-r));
                goto out;
        }
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
                r = -errno;
                seterr(err, errlen, "fixture %s: open %s: %s", b->name, path, strerror(-r));
                goto out;
        }
        r = fd_write_all(fd, text, strlen(text));
        if (r >= 0)
                r = fd_write_all(fd, "\n", 1);
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r >= 0 && close(fd) < 0)
                r = -errno;
        fd = -1;
        if (r < 0)
                seterr(err, errlen, "fixture %s: writing %s: %s", b->name, path, strerror(-r));
out:
        if (fd >= 0)
                (void) close(fd);
        free(text);
        free(path);
        return r;
}

int fixture_build_commit(FixtureBuild *b, FixtureEntry **ret_entry, char *err, size_t errlen)
{
        json_t *meta = NULL, *vms, *vmj;
        FixtureEntry *e = NULL;
        char reason[512] = "";
        int r;

        seterr(err, errlen, "%s", "");
        if (ret_entry)
                *ret_entry = NULL;
        if (!b)
                return -EINVAL;
        if (b->nvms == 0) {
                seterr(err, errlen, "fixture %s: commit without any VM", b->name);
                r = -EINVAL;
                goto fail;
        }
        meta = json_pack("{s:i, s:s, s:s, s:I, s:[]}", "format", FIXTURE_FORMAT, "name", b->name,
                         "key", b->key, "created", (json_int_t) time(NULL), "vms");
        vms = json_object_get(meta, "vms");
        if (!meta || !vms) {
                r = -ENOMEM;
                seterr(err, errlen, "fixture %s: %s", b->name, strerror(-r));
                goto fail;
        }
        for (size_t i = 0; i < b->nvms; i++) {
                r = build_vm_meta(b, &b->vms[i], &vmj, err, errlen);
                if (r < 0)
                        goto fail;
                if (json_array_append_new(vms, vmj) < 0) {
                        r = -ENOMEM;
                        seterr(err, errlen, "fixture %s: %s", b->name, strerror(-r));
                        goto fail;
                }
        }
        r = build_write_meta(b, meta, err, errlen);
        if (r < 0)
                goto fail;
        r = fsync_path(b->dir, O_RDONLY | O_DIRECTORY);
        if (r < 0) {
                seterr(err, errlen, "fixture %s: fsync %s: %s", b->name, b->dir, strerror(-r));
                goto fail;
        }
        if (rename(b->dir, b->entry_dir) < 0) {
                r = -errno;
                seterr(err, errlen, "fixture %s: rename %s to %s: %s", b->name, b->dir,
                       b->entry_dir, strerror(-r));
                goto fail;
        }
        r = fsync_path(b->root, O_RDONLY | O_DIRECTORY);
        if (r < 0) {
                seterr(err, errlen, "fixture %s: fsync %s: %s", b->name, b->root, strerror(-r));
                goto fail;
        }
        json_decref(meta);
        meta = NULL;
        if (ret_entry) {
                r = entry_load(b->entry_dir, b->name, b->key, false, &e, reason, sizeof reason);
                if (r < 0) {
                        seterr(err, errlen, "fixture %s: reading back %s: %s", b->name,
                               b->entry_dir, r == -ENOMEM ? strerror(ENOMEM) : reason);
                        goto fail;
                }
                *ret_entry = e;
        }
        build_release(b);
        return 0;
fail:
        json_decref(meta);
        fixture_build_abort(b);
        return r;
}

void fixture_build_abort(FixtureBuild *b)
{
        if (!b)
                return;
        (void) rm_rf(b->dir);
        build_release(b);
}

/* ---- list and clear ---- */

static int cmp_entry(const void *a, const void *b)
{
        const FixtureEntry *x = *(FixtureEntry *const *) a, *y = *(FixtureEntry *const *) b;
        int c = strcmp(x->name, y->name);

        if (c)
                return c;
        if (x->created != y->created)
                return x->created < y->created ? -1 : 1;
        return strcmp(x->key, y->key);
}

void fixture_cache_list_free(FixtureEntry **v, size_t n)
{
        if (!v)
                return;
        for (size_t i = 0; i < n; i++)
                fixture_entry_free(v[i]);
        free(v);
}

/* The entry in root/name-key for ls: parsed, not validated. NULL only without memory. */
static FixtureEntry *list_one(const char *root, const char *name, const char *key, bool *ret_skip)
{
        char *dir = xasprintf("%s/%s-%s", root, name, key);
        FixtureEntry *e = NULL;
        struct stat sb;

        *ret_skip = false;
        if (!dir)
                return NULL;
        if (lstat(dir, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
                *ret_skip = true;
                free(dir);
                return NULL;
        }
        e = entry_new(name, key, dir);
        free(dir);
        if (!e)
                return NULL;
        e->created = (int64_t) sb.st_mtime;
        if (entry_parse(e, NULL, NULL, 0) == -ENOMEM)
                return fixture_entry_free(e);
        e->disk_bytes = dir_disk_bytes(e->dir);
        return e;
}

int fixture_cache_list(FixtureEntry ***ret, size_t *ret_n)
{
        FixtureEntry **v = NULL;
        size_t n = 0, cap = 0;
        char *root = NULL;
        struct dirent *de;
        DIR *d = NULL;
        int r;

        if (!ret || !ret_n)
                return -EINVAL;
        r = fixtures_root("fixture cache", false, &root, NULL, 0);
        if (r < 0)
                return r;
        d = opendir(root);
        if (!d) {
                r = errno == ENOENT ? 0 : -errno;
                goto out;
        }
        while ((errno = 0, de = readdir(d))) {
                char name[FIXTURE_NAME_MAX + 1], key[33];
                bool skip;
                if (cache_name_parse(de->d_name, name, key, NULL) != CACHE_ENTRY)
                        continue;
                FixtureEntry *e = list_one(root, name, key, &skip);
                if (skip)
                        continue;
                if (!e) {
                        r = -ENOMEM;
                        goto out;
                }
                if (n == cap) {
                        size_t ncap = cap ? cap * 2 : 8;
                        FixtureEntry **nv = realloc(v, ncap * sizeof *nv);
                        if (!nv) {
                                fixture_entry_free(e);
                                r = -ENOMEM;
                                goto out;
                        }
                        v = nv;
                        cap = ncap;
                }
                v[n++] = e;
        }
        if (errno != 0) {
                r = -errno;
                goto out;
        }
        if (n > 0)
                qsort(v, n, sizeof *v, cmp_entry);
        r = 0;
out:
        if (d)
                (void) closedir(d);
        free(root);
        if (r < 0) {
                fixture_cache_list_free(v, n);
                return r;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

typedef struct ClearItem {
        char name[FIXTURE_NAME_MAX + 1];
        char key[33];
} ClearItem;

static int cmp_clear_item(const void *a, const void *b)
{
        const ClearItem *x = a, *y = b;
        int c = strcmp(x->name, y->name);

        return c ? c : strcmp(x->key, y->key);
}

/* The distinct name-keys in root that have an entry, a lock file or a staging directory. */
static int clear_collect(const char *root, const char *name, ClearItem **ret, size_t *ret_n)
{
        ClearItem *v = NULL;
        size_t n = 0, cap = 0;
        struct dirent *de;
        DIR *d = opendir(root);
        int r = 0;

        *ret = NULL;
        *ret_n = 0;
        if (!d)
                return errno == ENOENT ? 0 : -errno;
        while ((errno = 0, de = readdir(d))) {
                ClearItem it;
                bool dup = false;
                if (cache_name_parse(de->d_name, it.name, it.key, NULL) == CACHE_OTHER ||
                    (name && strcmp(it.name, name) != 0))
                        continue;
                for (size_t i = 0; i < n && !dup; i++)
                        dup = cmp_clear_item(&v[i], &it) == 0;
                if (dup)
                        continue;
                if (n == cap) {
                        size_t ncap = cap ? cap * 2 : 16;
                        ClearItem *nv = realloc(v, ncap * sizeof *nv);
                        if (!nv) {
                                r = -ENOMEM;
                                break;
                        }
                        v = nv;
                        cap = ncap;
                }
                v[n++] = it;
        }
        if (r == 0 && errno != 0)
                r = -errno;
        (void) closedir(d);
        if (r < 0) {
                free(v);
                return r;
        }
        if (n > 0)
                qsort(v, n, sizeof *v, cmp_clear_item);
        *ret = v;
        *ret_n = n;
        return 0;
}

/* Removes root/name-key (and its stale staging directories and lock file) under its lock.
 * Returns 1 when an entry was removed, 0 when there was none, -EWOULDBLOCK or -errno. */
static int clear_one(const char *root, const ClearItem *it, uint64_t *ret_bytes)
{
        char *lock = xasprintf("%s/%s-%s.lock", root, it->name, it->key);
        char *dir = xasprintf("%s/%s-%s", root, it->name, it->key);
        struct stat sb;
        int fd = -1, r;

        *ret_bytes = 0;
        if (!lock || !dir) {
                r = -ENOMEM;
                goto out;
        }
        fd = lock_take(lock);
        if (fd < 0) {
                r = fd;
                goto out;
        }
        r = 0;
        if (lstat(dir, &sb) == 0) {
                *ret_bytes = S_ISDIR(sb.st_mode) ? dir_disk_bytes(dir) : 0;
                r = rm_rf(dir);
                if (r == 0)
                        r = 1;
        }
        remove_stale_staging(root, it->name, it->key);
out:
        lock_release(lock, fd);
        free(lock);
        free(dir);
        return r;
}

int fixture_cache_clear_each(const char *name, FixtureClearFn fn, void *data, size_t *ret_busy,
                             char *err, size_t errlen)
{
        ClearItem *items = NULL;
        size_t n = 0, busy = 0;
        char *root = NULL;
        int r, removed = 0;

        seterr(err, errlen, "%s", "");
        if (ret_busy)
                *ret_busy = 0;
        if (name && !name_valid(name)) {
                seterr(err, errlen, "fixture %s: invalid name", name);
                return -EINVAL;
        }
        r = fixtures_root("fixture cache", false, &root, err, errlen);
        if (r < 0)
                return r;
        r = clear_collect(root, name, &items, &n);
        if (r < 0) {
                seterr(err, errlen, "fixture cache: reading %s: %s", root, strerror(-r));
                goto out;
        }
        for (size_t i = 0; i < n; i++) {
                uint64_t bytes;
                r = clear_one(root, &items[i], &bytes);
                if (r == -EWOULDBLOCK) {
                        busy++;
                        if (fn)
                                fn(data, items[i].name, items[i].key, 0, r);
                        continue;
                }
                if (r < 0) {
                        seterr(err, errlen, "fixture %s: removing %s/%s-%s: %s", items[i].name,
                               root, items[i].name, items[i].key, strerror(-r));
                        goto out;
                }
                if (r == 1) {
                        removed++;
                        if (fn)
                                fn(data, items[i].name, items[i].key, bytes, 1);
                }
        }
        r = removed;
out:
        if (ret_busy)
                *ret_busy = busy;
        free(items);
        free(root);
        return r;
}

int fixture_cache_clear(const char *name, size_t *ret_busy, char *err, size_t errlen)
{
        return fixture_cache_clear_each(name, NULL, NULL, ret_busy, err, errlen);
}

/* ---- key ---- */

void fixture_cache_key(const void *material, size_t len, char out[33])
{
        XXH128_hash_t h = XXH3_128bits(material, len);

        (void) snprintf(out, 33, "%016llx%016llx", (unsigned long long) h.high64,
                        (unsigned long long) h.low64);
}
