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

/* The digest so far as 32 lowercase hex digits. */
void keyhash_hex(XXH3_state_t *st, char out[33]);
