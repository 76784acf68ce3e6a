/* fixture_cache.h: saved VM states ("fixtures") in the cache, the storage layer only.
 *
 * Layout under root = $CACHE/fixtures:
 *   <name>-<key>/                 an entry: meta.json, and per VM <vm>.state (a QEMU migration
 *                                 stream) and <vm>.ram (guest RAM, a sparse file)
 *   <name>-<key>.lock             the build lock (cachedir.h's protocol), present while a build
 *                                 runs (or after its holder crashed: then unlocked)
 *   .<name>-<key>.tmp-<pid>/      the staging directory of a build, renamed to the entry
 * name is [A-Za-z0-9_-]{1,64}, key 32 lowercase hex digits, a VM name is like a name.
 * An entry only ever appears by rename, so a reader needs no lock; it is validated (sizes and
 * XXH3 hashes recorded in meta.json) before use, and a corrupt one is removed and rebuilt. */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct FixtureVm {
        char *name;          /* VM name */
        char *state_path;    /* absolute */
        char *ram_path;      /* absolute */
        char *config_json;   /* the caller's JSON object, as compact text */
        uint64_t state_size; /* as recorded in meta.json */
        uint64_t ram_size;   /* st_size of the ram file, as recorded */
} FixtureVm;

typedef struct FixtureEntry {
        char *name, *key, *dir;
        FixtureVm *vms;
        size_t nvms;
        int64_t created;     /* unix seconds */
        uint64_t disk_bytes; /* st_blocks*512 summed over the entry (for ls) */
} FixtureEntry;

typedef struct FixtureBuild FixtureBuild; /* a held build lock + staging dir */

/* XXH3-128 of material, as 32 lowercase hex digits + NUL. */
void fixture_cache_key(const void *material, size_t len, char out[33]);

/* Looks up name-key.
 *  returns 1: a valid entry: *ret_entry set (free with fixture_entry_free).
 *  returns 0: no valid entry and this process now holds the build lock: *ret_build set; the
 *             staging directory exists and is empty. When an entry was present but corrupt it
 *             was removed and `corrupt` says why in one line.
 *  returns -EWOULDBLOCK: another process holds the build lock; the caller polls again later.
 *  returns other -errno: err names the fixture, what failed and why.
 * `corrupt` is "" unless 0 is returned for a corrupt entry. corrupt and err may be NULL. */
int fixture_cache_open(const char *name, const char *key, FixtureEntry **ret_entry,
                       FixtureBuild **ret_build, char *corrupt, size_t corruptlen, char *err,
                       size_t errlen);

/* The staging directory. */
const char *fixture_build_dir(const FixtureBuild *b);
/* Registers a VM whose files are <staging>/<vm>.state and <vm>.ram (the caller creates them);
 * config_json must be a JSON object. Returns 0, -EINVAL (bad name or JSON), -EEXIST or
 * -ENOMEM. */
int fixture_build_add_vm(FixtureBuild *b, const char *vm_name, const char *config_json);
/* <staging>/<vm>.state and <staging>/<vm>.ram, for any valid VM name (registered or not);
 * owned by b. NULL for an invalid name or without memory. */
const char *fixture_build_state_path(FixtureBuild *b, const char *vm_name);
const char *fixture_build_ram_path(FixtureBuild *b, const char *vm_name);
/* Hashes the VMs' files, writes meta.json, fsyncs it and the directory, renames the staging
 * directory to the entry, releases the lock, frees b and returns 0 with the new entry in
 * *ret_entry (may be NULL). On failure: -errno with err, staging removed, lock released, b
 * freed. */
int fixture_build_commit(FixtureBuild *b, FixtureEntry **ret_entry, char *err, size_t errlen);
/* Removes the staging directory, releases the lock, frees b. Accepts NULL. */
void fixture_build_abort(FixtureBuild *b);
/* Frees e. Accepts NULL; returns NULL. */
FixtureEntry *fixture_entry_free(FixtureEntry *e);

/* Every entry, valid or not (meta.json is only parsed; an entry whose meta.json does not
 * parse has nvms 0 and created = the directory's mtime), sorted by name then created.
 * Returns 0 with *ret (free with fixture_cache_list_free) or -errno. */
int fixture_cache_list(FixtureEntry ***ret, size_t *ret_n);
void fixture_cache_list_free(FixtureEntry **v, size_t n);

/* Called by fixture_cache_clear_each for each entry removed (result 1) and each entry or
 * build skipped because its build lock is held (result -EWOULDBLOCK) or a process uses it
 * (result -EBUSY). */
typedef void (*FixtureClearFn)(void *data, const char *name, const char *key, uint64_t disk_bytes,
                               int result);
/* Removes the entries whose name is `name` (NULL: all), with their stale staging directories
 * and lock files. Each entry's build lock is taken without waiting first; entries being built
 * or in use are skipped and counted in *ret_busy (may be NULL). Returns the number removed or
 * -errno with err. */
int fixture_cache_clear_each(const char *name, FixtureClearFn fn, void *data, size_t *ret_busy,
                             char *err, size_t errlen);
int fixture_cache_clear(const char *name, size_t *ret_busy, char *err, size_t errlen);
