/* fixture_meta.c: a fixture entry's meta.json and files: loading, parsing and validating an
 * entry found on disk (it comes from disk: nothing in it is trusted). */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cachedir.h"
#include "fixture_cache.h"
#include "fixture_internal.h"
#include "strfmt.h"

#define FIXTURE_META_MAX (16u << 20)

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

bool fixture__name_valid(const char *s)
{
        return s && name_valid_n(s, strlen(s));
}

bool fixture__hex_valid(const char *s, size_t n)
{
        return s && strlen(s) == n && strspn(s, "0123456789abcdef") == n;
}

/* Reads PATH (at most FIXTURE_META_MAX bytes) into a NUL-terminated buffer. */
static int read_file_all(const char *path, char **ret)
{
        /* a symlink or a FIFO in the cache is refused (ELOOP), or found not regular, at once */
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
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

static void vm_clear(FixtureVm *vm)
{
        free(vm->name);
        free(vm->state_path);
        free(vm->ram_path);
        free(vm->config_json);
}

FixtureEntry *fixture_entry_free(FixtureEntry *e)
{
        if (e) {
                free(e->name);
                free(e->key);
                free(e->dir);
                for (size_t i = 0; i < e->nvms; i++)
                        vm_clear(&e->vms[i]);
                free(e->vms);
                free(e);
        }
        return NULL;
}

FixtureEntry *fixture__entry_new(const char *name, const char *key, const char *dir)
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
        const char *name, *ss, *rs, *cs;
        json_int_t state_size, ram_size;
        json_t *config;
        json_error_t je;
        char got[17];

        if (json_unpack_ex(o, &je, 0, "{s:s, s:I, s:s, s:I, s:s, s:o, s:s}", "name", &name,
                           "state_size", &state_size, "state_xxh3", &ss, "ram_size", &ram_size,
                           "ram_xxh3", &rs, "config", &config, "config_xxh3", &cs) < 0) {
                seterr(reason, reasonlen, "meta.json: vm %zu: %s", i, je.text);
                return -EBADMSG;
        }
        if (!fixture__name_valid(name) || state_size < 0 || ram_size < 0 ||
            !fixture__hex_valid(ss, 16) || !fixture__hex_valid(rs, 16) ||
            !fixture__hex_valid(cs, 16) || !json_is_object(config)) {
                seterr(reason, reasonlen, "meta.json: vm %zu: invalid name, size, hash or config",
                       i);
                return -EBADMSG;
        }
        if (fixture__hash_json(config, got) < 0)
                return -ENOMEM;
        if (strcmp(got, cs) != 0) {
                seterr(reason, reasonlen, "vm %s: config XXH3 is %s, meta.json says %s", name, got,
                       cs);
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
int fixture__entry_parse(FixtureEntry *e, VmHashes **ret_hashes, char *reason, size_t reasonlen)
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
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK), r;
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
        if (fixture__verified(&sb, sparse, hash)) {
                r = 0;
                goto out;
        }
        r = fixture__hash_fd(fd, got_size, sparse, got);
        if (r == 0 && strcmp(got, hash) == 0)
                fixture__verified_add(&sb, sparse, hash);
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
int fixture__entry_load(const char *dir, const char *name, const char *key, bool validate,
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
        e = fixture__entry_new(name, key, dir);
        if (!e)
                return -ENOMEM;
        r = fixture__entry_parse(e, &h, reason, reasonlen);
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
        e->disk_bytes = cachedir_disk_bytes(dir);
        *ret = e;
        e = NULL;
out:
        free(h);
        fixture_entry_free(e);
        return r;
}
