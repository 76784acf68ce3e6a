/* shard.c: a stable share of the files for this run, from --shard or a CI engine's variables. */
#include "shard.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env.h"

/* A whole number in 0..max, all of s. */
static bool parse_uint(const char *s, unsigned max, unsigned *ret)
{
        char *end;
        if (!s || !*s || *s == '-' || *s == '+')
                return false;
        unsigned long v = strtoul(s, &end, 10);
        if (*end || v > max)
                return false;
        *ret = (unsigned) v;
        return true;
}

#define SHARDS_MAX 10000

static int from_pair(Shard *s, const char *what, const char *index, const char *total,
                     unsigned base, char *err, size_t errlen)
{
        unsigned i, n;
        if (!parse_uint(total, SHARDS_MAX, &n) || n == 0 || !parse_uint(index, SHARDS_MAX, &i) ||
            i < base || i - base >= n) {
                snprintf(err, errlen,
                         "%s: shard index '%s' of '%s' is not a shard (index %s, total 1..%d)",
                         what, index ? index : "", total ? total : "",
                         base ? "1..total" : "0..total-1", SHARDS_MAX);
                return -EINVAL;
        }
        *s = (Shard){.index = i - base, .total = n};
        snprintf(s->from, sizeof s->from, "%s", what);
        return 0;
}

int shard_choose(const char *flag, unsigned total_flag, Shard *s, char *err, size_t errlen)
{
        const ProviumEnv *e = env_get();
        *s = (Shard){0};
        if (flag) {
                const char *slash = strchr(flag, '/');
                char index[16] = "";
                if (slash && (size_t) (slash - flag) < sizeof index)
                        memcpy(index, flag, (size_t) (slash - flag));
                return from_pair(s, "--shard", index, slash ? slash + 1 : NULL, 1, err, errlen);
        }
        if (e->test_total_shards) {
                int r = from_pair(s, "Bazel", e->test_shard_index, e->test_total_shards, 0, err,
                                  errlen);
                if (r == 0 && e->test_shard_status_file) { /* "this test runner shards" */
                        FILE *f = fopen(e->test_shard_status_file, "we");
                        if (f)
                                fclose(f);
                }
                return r;
        }
        if (e->ci_node_total)
                return from_pair(s, "GitLab", e->ci_node_index, e->ci_node_total, 1, err, errlen);
        if (e->job_completion_index && total_flag) {
                char total[16];
                snprintf(total, sizeof total, "%u", total_flag);
                return from_pair(s, "Kubernetes", e->job_completion_index, total, 0, err, errlen);
        }
        if (total_flag) {
                snprintf(err, errlen, "--shard-total: JOB_COMPLETION_INDEX is not set");
                return -EINVAL;
        }
        return 0;
}

static uint64_t fnv1a(const char *s)
{
        uint64_t h = 1469598103934665603ull;
        for (; *s; s++)
                h = (h ^ (unsigned char) *s) * 1099511628211ull;
        return h;
}

typedef struct Ranked {
        uint64_t hash;
        size_t pos;
} Ranked;

static int by_hash(const void *a, const void *b)
{
        const Ranked *x = a, *y = b;
        return x->hash < y->hash   ? -1
               : x->hash > y->hash ? 1
                                   : (x->pos > y->pos) - (x->pos < y->pos);
}

int shard_select(const Shard *s, char **files, size_t *n)
{
        if (s->total <= 1 || *n == 0)
                return 0;
        Ranked *r = calloc(*n, sizeof *r);
        bool *keep = calloc(*n, sizeof *keep);
        if (!r || !keep) {
                free(r);
                free(keep);
                return -ENOMEM;
        }
        for (size_t i = 0; i < *n; i++)
                r[i] = (Ranked){fnv1a(files[i]), i};
        qsort(r, *n, sizeof *r, by_hash);
        for (size_t k = 0; k < *n; k++)
                keep[r[k].pos] = k % s->total == s->index;
        size_t out = 0;
        for (size_t i = 0; i < *n; i++) {
                if (keep[i])
                        files[out++] = files[i];
                else
                        free(files[i]);
        }
        *n = out;
        free(r);
        free(keep);
        return 0;
}
