/* pool.c: granting claims in order within a budget, with backfill that never delays the first
 * claim in line (see pool_next in pool.h). */
#include "pool.h"

#include <errno.h>
#include <stdlib.h>

typedef struct Entry {
        size_t id;
        PoolClaim claim;
        bool granted;
        bool backfill; /* granted while the head of the queue waited: counts against its room */
        size_t backfill_of; /* that head's id */
} Entry;

struct Pool {
        PoolClaim budget, used, backfilled;
        unsigned max_grants, ngranted;
        Entry *v; /* in request order */
        size_t n, cap;
        bool head_blocked;
        size_t head_id; /* the waiting head the backfilled grants are counted for */
};

Pool *pool_new(PoolClaim budget, unsigned max_grants)
{
        Pool *p = calloc(1, sizeof *p);
        if (!p)
                return NULL;
        p->budget = budget;
        p->max_grants = max_grants ? max_grants : 1;
        return p;
}

void pool_free(Pool *p)
{
        if (!p)
                return;
        free(p->v);
        free(p);
}

static bool fits(PoolClaim c, PoolClaim room)
{
        return c.memory_mb <= room.memory_mb && c.cpus <= room.cpus;
}

static PoolClaim minus(PoolClaim a, PoolClaim b)
{
        return (PoolClaim){a.memory_mb - b.memory_mb, a.cpus - b.cpus};
}

static PoolClaim plus(PoolClaim a, PoolClaim b)
{
        return (PoolClaim){a.memory_mb + b.memory_mb, a.cpus + b.cpus};
}

int pool_request(Pool *p, size_t id, PoolClaim claim)
{
        if (!fits(claim, p->budget))
                return -E2BIG;
        if (p->n == p->cap) {
                size_t cap = p->cap ? 2 * p->cap : 16;
                Entry *v = realloc(p->v, cap * sizeof *v);
                if (!v)
                        return -ENOMEM;
                p->v = v;
                p->cap = cap;
        }
        p->v[p->n++] = (Entry){.id = id, .claim = claim};
        return 0;
}

void pool_release(Pool *p, size_t id)
{
        for (size_t i = 0; i < p->n; i++) {
                if (p->v[i].id != id)
                        continue;
                Entry e = p->v[i];
                if (e.granted) {
                        p->used = minus(p->used, e.claim);
                        p->ngranted--;
                        if (e.backfill && p->head_blocked && e.backfill_of == p->head_id)
                                p->backfilled = minus(p->backfilled, e.claim);
                }
                for (size_t k = i + 1; k < p->n; k++)
                        p->v[k - 1] = p->v[k];
                p->n--;
                return;
        }
}

static void grant(Pool *p, Entry *e, bool backfill)
{
        e->granted = true;
        e->backfill = backfill;
        e->backfill_of = p->head_id;
        p->used = plus(p->used, e->claim);
        p->ngranted++;
        if (backfill)
                p->backfilled = plus(p->backfilled, e->claim);
}

long pool_next(Pool *p)
{
        if (p->ngranted >= p->max_grants)
                return -1;
        PoolClaim free_now = minus(p->budget, p->used);
        Entry *head = NULL;
        for (size_t i = 0; i < p->n; i++) {
                Entry *e = &p->v[i];
                if (e->granted)
                        continue;
                if (!head) {
                        head = e;
                        if (fits(e->claim, free_now)) {
                                p->head_blocked = false;
                                p->backfilled = (PoolClaim){0};
                                grant(p, e, false);
                                return (long) e->id;
                        }
                        if (!p->head_blocked || p->head_id != e->id) {
                                p->head_blocked = true; /* a new head starts waiting */
                                p->head_id = e->id;
                                p->backfilled = (PoolClaim){0};
                        }
                        continue;
                }
                /* Backfill: within what is free now and what the head will not use. */
                PoolClaim room = minus(minus(p->budget, head->claim), p->backfilled);
                if (fits(e->claim, free_now) && fits(e->claim, room)) {
                        grant(p, e, true);
                        return (long) e->id;
                }
        }
        return -1;
}

PoolClaim pool_free_now(const Pool *p)
{
        return minus(p->budget, p->used);
}

unsigned pool_granted(const Pool *p)
{
        return p->ngranted;
}

unsigned pool_waiting(const Pool *p)
{
        return (unsigned) p->n - p->ngranted;
}
