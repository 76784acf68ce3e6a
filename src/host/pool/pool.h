/* pool.h: the resource pool: test files claim memory and CPUs, and the pool grants claims in
 * order as they fit in the budget (pool.c). Pure bookkeeping, no I/O: the dispatcher feeds it
 * requests and releases and starts what it grants. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct PoolClaim {
        uint64_t memory_mb;
        unsigned cpus;
} PoolClaim;

typedef struct Pool Pool;

/* budget: what may be granted at once; max_grants: files at once (-j). NULL on -ENOMEM. */
Pool *pool_new(PoolClaim budget, unsigned max_grants);
void pool_free(Pool *p);

/* Queues a claim under id (the caller's, unique while queued or granted). Returns 0, or
 * -E2BIG when it is larger than the whole budget (never grantable: it is not queued). */
int pool_request(Pool *p, size_t id, PoolClaim claim);
/* Gives back what id holds (granted) or drops it from the queue. */
void pool_release(Pool *p, size_t id);
/* The next id to start now, or -1 when nothing more fits. Call until -1 after every request
 * and release.
 *
 * Claims are granted in the order they came while they fit. When the first in line does not
 * fit, later claims may still start (backfill), but only within what the first cannot use when
 * it starts: the grants made while it waits never add up to more than the budget less its
 * claim, so it starts as soon as the files that ran before it end, however many small ones
 * come after it. */
long pool_next(Pool *p);

/* What is free now, and how many claims are granted and waiting. */
PoolClaim pool_free_now(const Pool *p);
unsigned pool_granted(const Pool *p);
unsigned pool_waiting(const Pool *p);
