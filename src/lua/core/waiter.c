/* waiter.c: a parked task with an optional timer (see waiter.h). The timer handle lives in
 * malloc'ed memory freed by its close callback, since Lua's GC does not wait for libuv. */
#include "waiter.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>

#include "op.h"
#include "runtime.h"

struct Waiter {
        Pending pending; /* first: the cancel hook gets &w->pending */
        Waiter **slot;
        uv_timer_t *timer;
};

static void on_timer_closed(uv_handle_t *h)
{
        free(h);
}

/* Unlinks w from its slot and stops its timer; w itself is freed by the caller. */
static void detach(Waiter *w)
{
        if (w->slot && *w->slot == w)
                *w->slot = NULL;
        w->slot = NULL;
        if (w->timer) {
                uv_close((uv_handle_t *) w->timer, on_timer_closed);
                w->timer = NULL;
        }
}

static void finish(Waiter *w, const char *fail_msg)
{
        detach(w);
        runtime_resume_result(&w->pending, fail_msg);
        free(w);
}

static void on_timeout(uv_timer_t *t)
{
        finish(t->data, "timeout");
}

static void on_abandoned(Pending *p)
{
        Waiter *w = (Waiter *) p;
        detach(w);
        free(w);
}

int waiter_park(lua_State *L, Waiter **slot, double timeout_s, const char *what)
{
        char tw[96];
        snprintf(tw, sizeof tw, "%s: its timeout", what);
        timeout_s = check_seconds(L, timeout_s, tw, true);
        if (!runtime_in_task(L))
                return luaL_error(L, "%s: can only wait inside a test body", what);
        if (*slot)
                return luaL_error(L, "%s: another task is already waiting on it", what);
        Runtime *rt = runtime_get(L);
        Waiter *w = calloc(1, sizeof *w);
        if (!w)
                return luaL_error(L, "%s: out of memory", what);
        w->pending.cancel = on_abandoned;
        if (timeout_s >= 0) {
                w->timer = malloc(sizeof *w->timer);
                if (!w->timer || uv_timer_init(runtime_loop(rt), w->timer) < 0) {
                        free(w->timer);
                        free(w);
                        return luaL_error(L, "%s: cannot start a timer", what);
                }
                w->timer->data = w;
                /* The loop's clock stands still while Lua code blocks (os.execute, a busy
                 * loop, the wait for the pool's grant): the timeout counts from now. */
                uv_update_time(runtime_loop(rt));
                (void) uv_timer_start(w->timer, on_timeout, seconds_to_ms(timeout_s), 0);
        }
        w->slot = slot;
        *slot = w;
        return runtime_wait(L, &w->pending);
}

void waiter_wake(Waiter **slot)
{
        if (*slot)
                finish(*slot, NULL);
}
