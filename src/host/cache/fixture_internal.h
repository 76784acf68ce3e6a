/* fixture_internal.h: what the fixture cache's files share (fixture_cache.c: open, build,
 * list and clear; fixture_meta.c: loading an entry; fixture_hash.c: hashing its files). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fixture_cache.h"

#define FIXTURE_FORMAT                                                                             \
        3 /* 2: sparse hashes of non-zero pages, not of extents; 3: each VM's                      \
           * config hashed too */
#define FIXTURE_NAME_MAX 64

/* The recorded hashes of a loaded entry's VMs, parallel to FixtureEntry.vms. */
typedef struct VmHashes {
        char state[17], ram[17];
} VmHashes;

typedef struct json_t json_t;

/* Fixture and VM names: [A-Za-z0-9_-]{1,64} (they become file names). */
bool fixture__name_valid(const char *s);
/* s is n lowercase hex digits. */
bool fixture__hex_valid(const char *s, size_t n);

/* XXH3-64 of fd's SIZE bytes, or with sparse of its pages that are not all zeros, as 16 hex
 * digits. Returns 0 or -errno. */
int fixture__hash_fd(int fd, uint64_t size, bool sparse, char out[17]);
/* XXH3-64 of a JSON value's compact text with sorted keys (one text for one value, whatever
 * order its keys were read in), as 16 hex digits. Returns 0 or -ENOMEM. */
int fixture__hash_json(const json_t *value, char out[17]);
/* Opens a VM file: its size and hash. A missing or non-regular file is -ENOENT/-EINVAL. */
int fixture__hash_file(const char *path, bool sparse, uint64_t *ret_size, char out[17]);

struct stat;
/* fixture_verified.c: whether this process hashed the file sb describes, with this identity,
 * and found hash; the record of one that it did. */
bool fixture__verified(const struct stat *sb, bool sparse, const char *hash);
void fixture__verified_add(const struct stat *sb, bool sparse, const char *hash);

/* A new entry with copies of its strings and no VMs, or NULL without memory. */
FixtureEntry *fixture__entry_new(const char *name, const char *key, const char *dir);
/* Parses e->dir/meta.json into e (vms, created); *ret_hashes gets the recorded hashes when
 * non-NULL. On failure e is unchanged. Returns 0, -EBADMSG with reason, or -ENOMEM. */
int fixture__entry_parse(FixtureEntry *e, VmHashes **ret_hashes, char *reason, size_t reasonlen);
/* Loads and, with validate, checks the entry in DIR. Returns 0 with *ret; -ENOENT when DIR
 * does not exist; -EBADMSG with reason when the entry is corrupt; -ENOMEM. */
int fixture__entry_load(const char *dir, const char *name, const char *key, bool validate,
                        FixtureEntry **ret, char *reason, size_t reasonlen);
