/* fixture_cache.c: saved VM states in the cache: lookup with validation, build under the
 * entry's lock, listing and clearing (names, lock, removal and listing are cachedir.c's).
 *
 * Sections: the area / open / build / list and clear. */
#include "fixture_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cachedir.h"
#include "fdio.h"
#include "fixture_internal.h"
#include "paths.h"
#include "strfmt.h"

typedef struct BuildVm {
        char *name;
        json_t *config;
} BuildVm;

struct FixtureBuild {
        char *name, *key;
        char *root;      /* $CACHE/fixtures */
        char *dir;       /* the staging directory */
        char *entry_dir; /* where commit renames it to */
        CacheLock lock;  /* the entry's, held */
        BuildVm *vms;
        size_t nvms;
        char **paths; /* strings handed out by the path helpers */
        size_t npaths;
};

/* ---- the area ---- */

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

/* $CACHE/fixtures, created when create is set. WHAT prefixes messages ("fixture base"). */
static int fixtures_root(const char *what, bool create, char **ret, char *err, size_t errlen)
{
        char *root;
        int r = cachedir_root("fixtures", create, &root);

        if (r == -ENOMEM)
                seterr(err, errlen, "%s: %s", what, strerror(ENOMEM));
        else if (r < 0 && !root)
                seterr(err, errlen, "%s: cache directory %s: %s", what, paths_cache_dir_wanted(),
                       paths_cache_dir_error(-r));
        else if (r < 0)
                seterr(err, errlen, "%s: cache directory %s cannot be created: %s", what, root,
                       strerror(-r));
        if (r < 0) {
                free(root);
                return r;
        }
        *ret = root;
        return 0;
}

/* ---- open ---- */

/* Releases b's lock when held (and frees its path in any case), and frees b. */
static void build_release(FixtureBuild *b)
{
        cachedir_lock_release(&b->lock);
        if (b->root && b->name && b->key)
                cachedir_unuse_if_absent(b->root, b->name, b->key); /* nothing was built */
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
        free(b);
}

/* Checks that root is writable and takes the build lock of name-key. */
static int build_lock(const char *root, const char *name, const char *key, FixtureBuild **ret,
                      char *err, size_t errlen)
{
        FixtureBuild *b = calloc(1, sizeof *b);
        int r;

        if (!b)
                goto nomem;
        b->lock.fd = -1;
        b->name = strdup(name);
        b->key = strdup(key);
        b->root = strdup(root);
        b->dir = xasprintf("%s/.%s-%s.tmp-%ld", root, name, key, (long) getpid());
        b->entry_dir = cachedir_entry_path(root, name, key, "");
        if (!b->name || !b->key || !b->root || !b->dir || !b->entry_dir ||
            cachedir_lock_init(&b->lock, root, strrchr(b->entry_dir, '/') + 1) < 0)
                goto nomem;
        if (access(root, W_OK) < 0) {
                r = -errno;
                seterr(err, errlen, "fixture %s: cache directory %s is not writable: %s", name,
                       root, strerror(-r));
                goto fail;
        }
        r = cachedir_lock_take(&b->lock, false);
        if (r == -EWOULDBLOCK) {
                seterr(err, errlen, "fixture %s: being built by another process (%s is locked)",
                       name, b->lock.path);
                goto fail;
        }
        if (r < 0) {
                seterr(err, errlen, "fixture %s: cache directory %s is not writable: %s: %s", name,
                       root, strrchr(b->lock.path, '/') + 1, strerror(-r));
                goto fail;
        }
        *ret = b;
        return 0;
nomem:
        r = -ENOMEM;
        seterr(err, errlen, "fixture %s: %s", name, strerror(ENOMEM));
fail:
        if (b)
                build_release(b);
        return r;
}

/* Under the lock: clears old staging directories and creates this build's. */
static int build_stage(FixtureBuild *b, char *err, size_t errlen)
{
        int r;

        cachedir_remove_stale_staging(b->root, b->name, b->key);
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
        if (!fixture__name_valid(name)) {
                seterr(err, errlen, "fixture %s: invalid name (expected 1-64 of A-Z a-z 0-9 _ -)",
                       name ? name : "(null)");
                return -EINVAL;
        }
        if (!cachedir_key_valid(key)) {
                seterr(err, errlen, "fixture %s: invalid key '%s' (expected 32 lowercase hex)",
                       name, key ? key : "(null)");
                return -EINVAL;
        }
        char what[FIXTURE_NAME_MAX + 16];
        (void) snprintf(what, sizeof what, "fixture %s", name);
        r = fixtures_root(what, true, &root, err, errlen);
        if (r < 0)
                return r;
        dir = cachedir_entry_path(root, name, key, "");
        if (!dir) {
                r = -ENOMEM;
                goto out;
        }
        /* This process restores from it, or builds it, until it ends: a removal keeps it
         * (advisory: a use file that cannot be taken does not stop a run). */
        (void) cachedir_use(root, name, key);
        /* Fast path: entries only appear by rename, so a valid one needs no lock. */
        r = fixture__entry_load(dir, name, key, true, &e, reason, sizeof reason);
        if (r == 0)
                goto hit;
        if (r == -ENOMEM)
                goto out;
        r = build_lock(root, name, key, &b, err, errlen);
        if (r < 0)
                goto out;
        /* Another process may have committed (or removed) it in the meantime. */
        reason[0] = '\0';
        r = fixture__entry_load(dir, name, key, true, &e, reason, sizeof reason);
        if (r == 0) {
                build_release(b);
                goto hit;
        }
        if (r == -ENOMEM)
                goto out;
        if (r == -EBADMSG) {
                r = cachedir_rm_rf(dir);
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

        if (!b || !fixture__name_valid(vm_name) || !config_json)
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

        if (!b || !fixture__name_valid(vm_name))
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
        char sh[17], rh[17], ch[17];
        uint64_t ssize = 0, rsize = 0;
        const char *file = state;
        int r;

        if (!state || !ram) {
                r = -ENOMEM;
                goto fail;
        }
        r = fixture__hash_file(state, false, &ssize, sh);
        if (r >= 0) {
                file = ram;
                r = fixture__hash_file(ram, true, &rsize, rh);
        }
        if (r >= 0) {
                file = NULL;
                r = fixture__hash_json(vm->config, ch);
        }
        if (r < 0)
                goto fail;
        *ret = json_pack("{s:s, s:I, s:s, s:I, s:s, s:O, s:s}", "name", vm->name, "state_size",
                         (json_int_t) ssize, "state_xxh3", sh, "ram_size", (json_int_t) rsize,
                         "ram_xxh3", rh, "config", vm->config, "config_xxh3", ch);
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
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
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
                r = fixture__entry_load(b->entry_dir, b->name, b->key, false, &e, reason,
                                        sizeof reason);
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
        (void) cachedir_rm_rf(b->dir);
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

/* The entry it of root for ls: parsed, not validated. NULL only without memory. */
static FixtureEntry *list_one(const char *root, const CacheDirItem *it)
{
        char *dir = cachedir_entry_path(root, it->name, it->key, "");
        FixtureEntry *e = dir ? fixture__entry_new(it->name, it->key, dir) : NULL;

        free(dir);
        if (!e)
                return NULL;
        e->created = it->mtime;
        if (fixture__entry_parse(e, NULL, NULL, 0) == -ENOMEM)
                return fixture_entry_free(e);
        e->disk_bytes = cachedir_disk_bytes(e->dir);
        return e;
}

int fixture_cache_list(FixtureEntry ***ret, size_t *ret_n)
{
        CacheDirItem *items = NULL;
        FixtureEntry **v = NULL;
        size_t n = 0, nitems = 0;
        char *root = NULL;
        int r;

        if (!ret || !ret_n)
                return -EINVAL;
        r = fixtures_root("fixture cache", false, &root, NULL, 0);
        if (r < 0)
                return r;
        r = cachedir_list(root, NULL, false, &items, &nitems);
        if (r < 0)
                goto out;
        v = calloc(nitems ? nitems : 1, sizeof *v);
        if (!v) {
                r = -ENOMEM;
                goto out;
        }
        for (; n < nitems; n++) {
                v[n] = list_one(root, &items[n]);
                if (!v[n]) {
                        r = -ENOMEM;
                        goto out;
                }
        }
        if (n > 0)
                qsort(v, n, sizeof *v, cmp_entry);
out:
        free(items);
        free(root);
        if (r < 0) {
                fixture_cache_list_free(v, n);
                return r;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

int fixture_cache_clear_each(const char *name, FixtureClearFn fn, void *data, size_t *ret_busy,
                             char *err, size_t errlen)
{
        CacheDirItem *items = NULL;
        size_t n = 0, busy = 0;
        char *root = NULL;
        int r, removed = 0;

        seterr(err, errlen, "%s", "");
        if (ret_busy)
                *ret_busy = 0;
        if (name && !fixture__name_valid(name)) {
                seterr(err, errlen, "fixture %s: invalid name", name);
                return -EINVAL;
        }
        r = fixtures_root("fixture cache", false, &root, err, errlen);
        if (r < 0)
                return r;
        r = cachedir_list(root, name, true, &items, &n);
        if (r < 0) {
                seterr(err, errlen, "fixture cache: reading %s: %s", root, strerror(-r));
                goto out;
        }
        for (size_t i = 0; i < n; i++) {
                uint64_t bytes;
                r = cachedir_clear_entry(root, items[i].name, items[i].key, &bytes);
                if (r == -EWOULDBLOCK || r == -EBUSY) {
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
