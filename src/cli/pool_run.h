/* pool_run.h: the dispatcher's side of the resource pool (pool_run.c): the budget, printed at
 * the start; the runners' requests (pool.request events), answered on their grant pipes as
 * the pool grants them; releases when a runner ends. */
#pragma once

#include <msgpack.h>
#include <stddef.h>
#include <uv.h>

#include "cli.h"

typedef struct PoolRun PoolRun;

/* The budget from --memory / --cpus or the host (said on stderr, and a pool.budget event),
 * with -j as the bound on files at once. NULL with a message on stderr when it cannot be had. */
PoolRun *pool_run_new(const CliOptions *o);
/* Runner id (its file) asked for the claim in ev (a pool.request event); grant is its stdin,
 * where the answer goes. */
void pool_run_request(PoolRun *p, size_t id, const char *file, const msgpack_object *ev,
                      uv_stream_t *grant);
/* Runner id has ended: what it held (or asked for) goes back to the pool. */
void pool_run_release(PoolRun *p, size_t id);
/* The run is interrupted: every runner still waiting is told so. */
void pool_run_deny_all(PoolRun *p, const char *why);
void pool_run_free(PoolRun *p);
