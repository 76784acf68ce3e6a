/* pool_run.c: the resource pool in the dispatcher: the budget, the runners' claims in order,
 * grants written to their grant pipes, and the pool.* events. */
#include "pool_run.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budget.h"
#include "events.h"
#include "pool.h"

typedef struct Waiter {
        size_t id;
        char *file;
        uv_stream_t *grant;
        PoolClaim claim;
        uint64_t asked_ns;
        bool granted;
} Waiter;

struct PoolRun {
        Pool *pool;
        PoolClaim budget;
        Waiter *v;
        size_t n, cap;
};

static void emit_budget(const Budget *b, unsigned jobs)
{
        EventBuilder ev;
        event_begin(&ev, "pool.budget", 5);
        proto_kv_uint(&ev.w, "memory_mb", b->total.memory_mb);
        proto_kv_uint(&ev.w, "cpus", b->total.cpus);
        proto_kv_str(&ev.w, "memory_from", b->memory_from);
        proto_kv_str(&ev.w, "cpus_from", b->cpus_from);
        proto_kv_uint(&ev.w, "jobs", jobs);
        event_end(&ev);
}

/* pool.wait / pool.grant / pool.release for w, with what is free after it. */
static void emit_file(PoolRun *p, const char *type, const Waiter *w)
{
        PoolClaim free_now = pool_free_now(p->pool);
        EventBuilder ev;
        event_begin(&ev, type, 6);
        proto_kv_str(&ev.w, "file", w->file);
        proto_kv_uint(&ev.w, "memory_mb", w->claim.memory_mb);
        proto_kv_uint(&ev.w, "cpus", w->claim.cpus);
        proto_kv_uint(&ev.w, "free_memory_mb", free_now.memory_mb);
        proto_kv_uint(&ev.w, "free_cpus", free_now.cpus);
        proto_kv_uint(&ev.w, "waited_ns", w->granted ? events_mono_ns() - w->asked_ns : 0);
        event_end(&ev);
}

static void emit_state(PoolRun *p)
{
        PoolClaim free_now = pool_free_now(p->pool);
        EventBuilder ev;
        event_begin(&ev, "pool.state", 4);
        proto_kv_uint(&ev.w, "free_memory_mb", free_now.memory_mb);
        proto_kv_uint(&ev.w, "free_cpus", free_now.cpus);
        proto_kv_uint(&ev.w, "granted", pool_granted(p->pool));
        proto_kv_uint(&ev.w, "waiting", pool_waiting(p->pool));
        event_end(&ev);
}

PoolRun *pool_run_new(const CliOptions *o)
{
        Budget b;
        (void) budget_probe(&b, "/proc/meminfo", "/sys/fs/cgroup", "/proc/self/cgroup");
        if (o->memory_mb) {
                b.total.memory_mb = o->memory_mb;
                snprintf(b.memory_from, sizeof b.memory_from, "--memory");
        }
        if (o->cpus) {
                b.total.cpus = o->cpus;
                snprintf(b.cpus_from, sizeof b.cpus_from, "--cpus");
        }
        if (b.total.memory_mb == 0 || b.total.cpus == 0) {
                fprintf(stderr,
                        "provium: the resource pool: cannot tell this host's %s (give --memory "
                        "and --cpus)\n",
                        b.total.memory_mb == 0 ? "memory" : "CPUs");
                return NULL;
        }
        PoolRun *p = calloc(1, sizeof *p);
        if (p)
                p->pool = pool_new(b.total, o->jobs);
        if (!p || !p->pool) {
                free(p);
                fprintf(stderr, "provium: the resource pool: %s\n", strerror(ENOMEM));
                return NULL;
        }
        p->budget = b.total;
        fprintf(stderr,
                "provium: pool: %" PRIu64 " MiB (%s), %u CPU%s (%s); up to %u file%s at once "
                "(-j)\n",
                b.total.memory_mb, b.memory_from, b.total.cpus, b.total.cpus == 1 ? "" : "s",
                b.cpus_from, o->jobs, o->jobs == 1 ? "" : "s");
        emit_budget(&b, o->jobs);
        return p;
}

static void on_written(uv_write_t *wr, int status)
{
        free(wr);
}

/* One line to a runner's grant pipe; a runner gone meanwhile just never reads it. */
static void answer(uv_stream_t *grant, const char *line)
{
        size_t n = strlen(line);
        uv_write_t *wr = malloc(sizeof *wr + n);
        if (!wr)
                return; /* the runner then waits until the run ends and its pipe closes */
        memcpy(wr + 1, line, n);
        uv_buf_t buf = uv_buf_init((char *) (wr + 1), (unsigned) n);
        if (uv_write(wr, grant, &buf, 1, on_written) < 0)
                free(wr);
}

static Waiter *find(PoolRun *p, size_t id)
{
        for (size_t i = 0; i < p->n; i++)
                if (p->v[i].id == id)
                        return &p->v[i];
        return NULL;
}

static void grant_what_fits(PoolRun *p)
{
        long id;
        bool changed = false;
        while ((id = pool_next(p->pool)) >= 0) {
                Waiter *w = find(p, (size_t) id);
                if (!w)
                        continue;
                w->granted = true;
                answer(w->grant, "G\n");
                emit_file(p, "pool.grant", w);
                changed = true;
        }
        if (changed)
                emit_state(p);
}

static uint64_t get_uint(const msgpack_object *ev, const char *key)
{
        uint64_t v = 0;
        (void) proto_get_uint(ev, key, &v);
        return v;
}

void pool_run_request(PoolRun *p, size_t id, const char *file, const msgpack_object *ev,
                      uv_stream_t *grant)
{
        PoolClaim c = {get_uint(ev, "memory_mb"), (unsigned) get_uint(ev, "cpus")};
        if (find(p, id) || c.cpus == 0 || c.memory_mb == 0)
                return answer(grant, "D the resource pool: a malformed or repeated request\n");
        int r = pool_request(p->pool, id, c);
        if (r == -E2BIG) {
                char line[512];
                snprintf(line, sizeof line,
                         "D the file's claim, %" PRIu64 " MiB and %u CPUs, is larger than the "
                         "whole budget, %" PRIu64 " MiB and %u CPUs (--memory, --cpus)\n",
                         c.memory_mb, c.cpus, p->budget.memory_mb, p->budget.cpus);
                return answer(grant, line);
        }
        char *name = r == 0 ? strdup(file) : NULL;
        if (name && p->n == p->cap) {
                size_t cap = p->cap ? 2 * p->cap : 16;
                Waiter *v = realloc(p->v, cap * sizeof *v);
                if (v) {
                        p->v = v;
                        p->cap = cap;
                }
        }
        if (!name || p->n == p->cap) {
                free(name);
                pool_release(p->pool, id);
                return answer(grant, "D the resource pool: out of memory\n");
        }
        p->v[p->n++] = (Waiter){id, name, grant, c, events_mono_ns(), false};
        size_t granted_before = pool_granted(p->pool);
        grant_what_fits(p);
        Waiter *w = find(p, id);
        if (w && !w->granted) {
                emit_file(p, "pool.wait", w);
                if (pool_granted(p->pool) == granted_before)
                        emit_state(p);
        }
}

void pool_run_release(PoolRun *p, size_t id)
{
        Waiter *w = find(p, id);
        if (!w)
                return;
        pool_release(p->pool, id);
        emit_file(p, "pool.release", w);
        free(w->file);
        *w = p->v[--p->n];
        emit_state(p);
        grant_what_fits(p);
}

void pool_run_deny_all(PoolRun *p, const char *why)
{
        char line[256];
        snprintf(line, sizeof line, "D %s\n", why);
        for (size_t i = 0; i < p->n; i++)
                if (!p->v[i].granted)
                        answer(p->v[i].grant, line);
}

void pool_run_free(PoolRun *p)
{
        if (!p)
                return;
        for (size_t i = 0; i < p->n; i++)
                free(p->v[i].file);
        free(p->v);
        pool_free(p->pool);
        free(p);
}
