/* keyhash.h: cache keys as XXH3-128 hashes over tagged, length-prefixed fields, so that two
 * different sets of fields can never hash the same bytes. Used for image and recipe keys. */
#pragma once

#include <stddef.h>
#include <xxhash.h>

/* Feeds one field (a tag naming it, then its length and bytes) into st. */
void keyhash_field(XXH3_state_t *st, const char *tag, const void *data, size_t len);

/* Feeds the content of the regular file at path as one field. Returns 0, -EINVAL when path is
 * not a regular file, or another -errno. */
int keyhash_file(XXH3_state_t *st, const char *tag, const char *path);

/* Feeds every regular file in directory dir whose name ends with suffix, in name order, as
 * one field each (tagged "<tag>/<name>"): a directory of sources hashed as a whole, without
 * what tools leave beside them (__pycache__, editor backups). Returns 0 or -errno. */
int keyhash_dir(XXH3_state_t *st, const char *tag, const char *dir, const char *suffix);

/* The digest so far as 32 lowercase hex digits. */
void keyhash_hex(XXH3_state_t *st, char out[33]);
