/* cache_trim.h: the cache held to its size. $PROVIUM_CACHE_MAX (MiB, or a size like "20G"; 20G
 * by default) bounds what the images and fixtures areas hold on disk: cache_trim removes
 * entries, least recently used first (cachedir_last_use), until they fit. An entry in use by a
 * running provium or being built is kept, so the bound gives way while runs hold more than
 * it. A run trims when it starts; `provium cache trim` does it at once. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define CACHE_MAX_DEFAULT_MB (20u * 1024)

/* $PROVIUM_CACHE_MAX in bytes, else the default. Returns 0, or -EINVAL with err. */
int cache_max_bytes(uint64_t *ret, char *err, size_t errlen);

/* One entry trimming looked at past the bound. */
typedef struct CacheTrimItem {
        const char *area; /* "images" or "fixtures" */
        const char *name, *key;
        uint64_t bytes;   /* its disk usage */
        int64_t last_use; /* unix seconds */
        int result;       /* 1: removed; -EBUSY: in use; -EWOULDBLOCK: being built; -errno */
} CacheTrimItem;

typedef void (*CacheTrimFn)(void *data, const CacheTrimItem *it);

/* Removes the least recently used entries of images and fixtures until they hold at most max
 * bytes; fn (may be NULL) sees each entry removed or kept. *ret_total (may be NULL) gets the
 * bytes they hold after. Returns how many were removed, or -errno (an area not readable). */
int cache_trim(uint64_t max, CacheTrimFn fn, void *data, uint64_t *ret_total);
