/* cache_trim.c: the cache held to its size (see cache_trim.h). */
#include "cache_trim.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cachedir.h"
#include "env.h"
#include "strfmt.h"

#define NAREAS 2
static const char *const areas[NAREAS] = {"images", "fixtures"};

typedef struct TrimEntry {
        const char *area, *root; /* the area's root: Trim's */
        CacheDirItem it;
        uint64_t bytes;
        int64_t last_use;
} TrimEntry;

typedef struct Trim {
        char *roots[NAREAS];
        TrimEntry *v;
        size_t n;
        uint64_t total;
} Trim;

int cache_max_bytes(uint64_t *ret, char *err, size_t errlen)
{
        const char *v = env_get()->cache_max;
        uint64_t mb = CACHE_MAX_DEFAULT_MB;

        if (v && (parse_size_mib(v, &mb) < 0 || mb > (UINT64_MAX >> 20))) {
                seterr(err, errlen,
                       "PROVIUM_CACHE_MAX: expected MiB or a size like \"20G\", got '%s'", v);
                return -EINVAL;
        }
        *ret = mb << 20;
        return 0;
}

static int by_last_use(const void *a, const void *b)
{
        const TrimEntry *x = a, *y = b;
        return (x->last_use > y->last_use) - (x->last_use < y->last_use);
}

/* Adds area a's entries to t, with their sizes and last uses. Returns 0 or -errno. */
static int collect(Trim *t, size_t a)
{
        CacheDirItem *items = NULL;
        size_t k = 0;
        int r = cachedir_root(areas[a], false, &t->roots[a]);

        if (r < 0)
                return r == -ENOENT ? 0 : r;
        r = cachedir_list(t->roots[a], NULL, false, &items, &k);
        TrimEntry *nv = r >= 0 && k ? realloc(t->v, (t->n + k) * sizeof *nv) : t->v;
        if (r >= 0 && !nv)
                r = -ENOMEM;
        for (size_t i = 0; r >= 0 && i < k; i++) {
                char *dir = cachedir_entry_path(t->roots[a], items[i].name, items[i].key, "");
                TrimEntry *e = &nv[t->n++];
                *e = (TrimEntry){.area = areas[a], .root = t->roots[a], .it = items[i]};
                e->bytes = dir ? cachedir_disk_bytes(dir) : 0;
                e->last_use = cachedir_last_use(t->roots[a], items[i].name, items[i].key);
                t->total += e->bytes;
                free(dir);
        }
        if (r >= 0)
                t->v = nv;
        free(items);
        return r;
}

int cache_trim(uint64_t max, CacheTrimFn fn, void *data, uint64_t *ret_total)
{
        Trim t = {0};
        int r = 0, removed = 0;

        for (size_t a = 0; a < NAREAS && r >= 0; a++)
                r = collect(&t, a);
        if (r >= 0 && t.total > max)
                qsort(t.v, t.n, sizeof *t.v, by_last_use);
        for (size_t i = 0; r >= 0 && i < t.n && t.total > max; i++) {
                const TrimEntry *e = &t.v[i];
                /* this process's own uses too: a run trims after resolving what it boots */
                int q = cachedir_used_here(e->root, e->it.name, e->it.key)
                            ? -EBUSY
                            : cachedir_clear_entry(e->root, e->it.name, e->it.key, NULL);
                if (q == 1) {
                        removed++;
                        t.total -= e->bytes < t.total ? e->bytes : t.total;
                }
                if (fn && q != 0) {
                        CacheTrimItem it = {.area = e->area,
                                            .name = e->it.name,
                                            .key = e->it.key,
                                            .bytes = e->bytes,
                                            .last_use = e->last_use,
                                            .result = q};
                        fn(data, &it);
                }
        }
        for (size_t a = 0; a < NAREAS; a++)
                free(t.roots[a]);
        free(t.v);
        if (ret_total)
                *ret_total = t.total;
        return r < 0 ? r : removed;
}
