/* runtime.c: per-file test execution on a libuv loop with parked coroutines (runtime.h).
 *
 * Sections: registry access, parking and resuming, tests, teardown.
 */
#include "runtime.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "vm.h"

#define RUNTIME_KEY  "provium.runtime"
#define INTERNAL_KEY "provium.internal" /* the prelude's table: tests, run_test */

typedef enum TestStatus { TEST_PASS, TEST_FAIL, TEST_SKIP } TestStatus;

struct Runtime {
        uv_loop_t *loop;
        lua_State *L;
        RuntimeConfig cfg;
        unsigned gen;
        lua_State *co; /* the running test's coroutine, NULL between tests */
        int co_ref;
        bool parked; /* the coroutine yielded through runtime_wait */
        bool test_done;
        TestStatus status;
        char *message;
        bool interrupted;
        char *interrupt_why;
        uv_timer_t *test_timer;
        Vm ***vms; /* slots of the VM userdata, in creation order */
        size_t nvms;
        unsigned stopping; /* VMs whose QEMU has not been reaped yet */
        unsigned passed, failed, skipped;
};

static const char *const status_names[] = {"pass", "fail", "skip"};

/* ---- registry access ---- */

Runtime *runtime_new(uv_loop_t *loop, lua_State *L, const RuntimeConfig *cfg)
{
        Runtime *rt = calloc(1, sizeof *rt);
        if (!rt)
                return NULL;
        rt->loop = loop;
        rt->L = L;
        rt->cfg = *cfg;
        rt->co_ref = LUA_NOREF;
        lua_pushlightuserdata(L, rt);
        lua_setfield(L, LUA_REGISTRYINDEX, RUNTIME_KEY);
        return rt;
}

Runtime *runtime_get(lua_State *L)
{
        lua_getfield(L, LUA_REGISTRYINDEX, RUNTIME_KEY);
        Runtime *rt = lua_touserdata(L, -1);
        lua_pop(L, 1);
        return rt;
}

const RuntimeConfig *runtime_config(const Runtime *rt)
{
        return &rt->cfg;
}

uv_loop_t *runtime_loop(const Runtime *rt)
{
        return rt->loop;
}

int runtime_track_vm(Runtime *rt, Vm **slot)
{
        Vm ***v = realloc(rt->vms, (rt->nvms + 1) * sizeof *v);
        if (!v)
                return -ENOMEM;
        rt->vms = v;
        rt->vms[rt->nvms++] = slot;
        return 0;
}

/* ---- parking and resuming ---- */

int runtime_wait(lua_State *L, Pending *p)
{
        Runtime *rt = runtime_get(L);
        if (!rt || L != rt->co || rt->test_done)
                return luaL_error(L, "guest operations can only run inside a test body");
        p->rt = rt;
        p->co = L;
        p->gen = rt->gen;
        rt->parked = true;
        return lua_yield(L, 0);
}

bool runtime_pending_alive(const Pending *p)
{
        return p->rt && p->gen == p->rt->gen && !p->rt->test_done && p->co == p->rt->co;
}

static void finish_test(Runtime *rt, TestStatus status, const char *msg)
{
        if (rt->test_done)
                return;
        rt->test_done = true;
        rt->status = status;
        free(rt->message);
        rt->message = msg ? strdup(msg) : NULL;
        rt->gen++;
}

/* Interprets what a resume of the test coroutine returned. */
static void after_resume(Runtime *rt, lua_State *co, int status, int nres)
{
        if (status == LUA_YIELD) {
                lua_pop(co, nres);
                if (!rt->parked)
                        finish_test(rt, TEST_FAIL,
                                    "test body yielded outside a provium operation "
                                    "(coroutine.yield at the top level of a test)");
                return;
        }
        if (status == LUA_OK) {
                /* run_test returns "pass" | "fail" | "skip", message */
                const char *st = nres >= 1 ? lua_tostring(co, -nres) : NULL;
                const char *msg = nres >= 2 ? lua_tostring(co, -nres + 1) : NULL;
                TestStatus ts = TEST_FAIL;
                if (nres == 0 || (st && strcmp(st, "pass") == 0)) /* nres 0: the file's chunk */
                        ts = TEST_PASS;
                else if (st && strcmp(st, "skip") == 0)
                        ts = TEST_SKIP;
                finish_test(rt, ts, msg);
                lua_pop(co, nres);
                return;
        }
        const char *msg = lua_tostring(co, -1);
        finish_test(rt, TEST_FAIL, msg ? msg : "test failed with a non-string error");
}

static void resume(Runtime *rt, lua_State *co, int nargs)
{
        int nres = 0;
        rt->parked = false;
        int status = lua_resume(co, rt->L, nargs, &nres);
        after_resume(rt, co, status, nres);
}

void runtime_resume(Pending *p, int nargs)
{
        if (!runtime_pending_alive(p))
                return;
        resume(p->rt, p->co, nargs);
}

void runtime_abort_test(Runtime *rt, const char *msg)
{
        if (rt->co && !rt->test_done)
                finish_test(rt, TEST_FAIL, msg);
}

void runtime_interrupt(Runtime *rt, const char *why)
{
        if (rt->interrupted)
                return;
        rt->interrupted = true;
        rt->interrupt_why = strdup(why);
        runtime_abort_test(rt, why);
}

/* ---- tests ---- */

static void emit_test(const char *type, const Runtime *rt, const char *name, int with_result,
                      uint64_t duration_ns)
{
        EventBuilder ev;
        event_begin(&ev, type, with_result ? 5 : 2);
        proto_kv_str(&ev.w, "file", rt->cfg.file);
        proto_kv_str(&ev.w, "test", name);
        if (with_result) {
                proto_kv_str(&ev.w, "status", status_names[rt->status]);
                proto_kv_uint(&ev.w, "duration_ns", duration_ns);
                proto_kv_str(&ev.w, "message", rt->message ? rt->message : "");
        }
        event_end(&ev);
}

static void on_test_timeout(uv_timer_t *t)
{
        Runtime *rt = t->data;
        char msg[128];
        snprintf(msg, sizeof msg, "test timed out after %.0f s (--test-timeout)",
                 rt->cfg.test_timeout_s);
        runtime_abort_test(rt, msg);
}

static void on_timer_closed(uv_handle_t *h)
{
        free(h);
}

static int start_test_timer(Runtime *rt)
{
        if (rt->cfg.test_timeout_s <= 0)
                return 0;
        if (!rt->test_timer) {
                rt->test_timer = calloc(1, sizeof *rt->test_timer);
                if (!rt->test_timer)
                        return -ENOMEM;
                int r = uv_timer_init(rt->loop, rt->test_timer);
                if (r < 0) {
                        free(rt->test_timer);
                        rt->test_timer = NULL;
                        return r;
                }
                rt->test_timer->data = rt;
        }
        return uv_timer_start(rt->test_timer, on_test_timeout,
                              (uint64_t) (rt->cfg.test_timeout_s * 1000), 0);
}

/* Runs fn (on top of L's stack) with nargs arguments below it in a fresh coroutine until it
 * finishes, driving the loop while it is parked. */
static void run_in_coroutine(Runtime *rt, int nargs)
{
        lua_State *L = rt->L;
        lua_State *co = lua_newthread(L);
        lua_insert(L, -(nargs + 2)); /* thread below function and args */
        lua_xmove(L, co, nargs + 1);
        rt->co = co;
        rt->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        rt->test_done = false;
        rt->gen++;
        if (start_test_timer(rt) < 0)
                finish_test(rt, TEST_FAIL, "cannot start the test timer");
        else
                resume(rt, co, nargs);
        while (!rt->test_done) {
                if (uv_run(rt->loop, UV_RUN_ONCE) == 0 && !rt->test_done)
                        finish_test(rt, TEST_FAIL,
                                    "test is waiting for an operation that can never finish");
        }
        if (rt->test_timer)
                (void) uv_timer_stop(rt->test_timer);
        luaL_unref(L, LUA_REGISTRYINDEX, rt->co_ref);
        rt->co_ref = LUA_NOREF;
        rt->co = NULL;
}

static void count(Runtime *rt)
{
        if (rt->status == TEST_PASS)
                rt->passed++;
        else if (rt->status == TEST_SKIP)
                rt->skipped++;
        else
                rt->failed++;
}

/* The file's own chunk runs first, as a pseudo-test: it registers the tests. */
static bool run_chunk(Runtime *rt)
{
        rt->status = TEST_PASS;
        run_in_coroutine(rt, 0);
        if (rt->status == TEST_PASS)
                return true;
        rt->status = TEST_FAIL;
        emit_test("test.start", rt, "(file)", 0, 0);
        emit_test("test.end", rt, "(file)", 1, 0);
        rt->failed++;
        return false;
}

static void run_one_test(Runtime *rt, int index)
{
        lua_State *L = rt->L;
        lua_getfield(L, LUA_REGISTRYINDEX, INTERNAL_KEY);
        lua_getfield(L, -1, "tests");
        lua_rawgeti(L, -1, index);
        lua_getfield(L, -1, "name");
        char *name = strdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
        lua_pop(L, 1);
        lua_getfield(L, -3, "run_test"); /* internal.run_test(entry) */
        lua_insert(L, -2);
        lua_remove(L, -3); /* tests */
        lua_remove(L, -3); /* internal */

        emit_test("test.start", rt, name ? name : "?", 0, 0);
        uint64_t t0 = events_mono_ns();
        if (rt->interrupted) {
                lua_pop(L, 2);
                rt->status = TEST_SKIP;
                free(rt->message);
                rt->message = strdup(rt->interrupt_why ? rt->interrupt_why : "interrupted");
        } else
                run_in_coroutine(rt, 1);
        emit_test("test.end", rt, name ? name : "?", 1, events_mono_ns() - t0);
        count(rt);
        free(name);
}

static int test_count(Runtime *rt)
{
        lua_getfield(rt->L, LUA_REGISTRYINDEX, INTERNAL_KEY);
        lua_getfield(rt->L, -1, "tests");
        int n = (int) luaL_len(rt->L, -1);
        lua_pop(rt->L, 2);
        return n;
}

static void emit_file(const char *type, const Runtime *rt, int with_counts)
{
        EventBuilder ev;
        event_begin(&ev, type, with_counts ? 4 : 1);
        proto_kv_str(&ev.w, "file", rt->cfg.file);
        if (with_counts) {
                proto_kv_uint(&ev.w, "passed", rt->passed);
                proto_kv_uint(&ev.w, "failed", rt->failed);
                proto_kv_uint(&ev.w, "skipped", rt->skipped);
        }
        event_end(&ev);
}

int runtime_run_file(Runtime *rt)
{
        emit_file("file.start", rt, 0);
        if (run_chunk(rt)) {
                int n = test_count(rt);
                for (int i = 1; i <= n; i++)
                        run_one_test(rt, i);
        }
        emit_file("file.end", rt, 1);
        return (int) rt->failed;
}

/* ---- teardown ---- */

static void on_vm_stopped(Vm *vm, void *data)
{
        Runtime *rt = data;
        rt->stopping--;
}

Runtime *runtime_free(Runtime *rt)
{
        if (!rt)
                return NULL;
        rt->gen++;
        for (size_t i = rt->nvms; i-- > 0;) {
                rt->stopping++;
                if (*rt->vms[i])
                        vm_stop(*rt->vms[i], on_vm_stopped, rt);
                else
                        rt->stopping--;
        }
        if (rt->test_timer) {
                uv_close((uv_handle_t *) rt->test_timer, on_timer_closed);
                rt->test_timer = NULL;
        }
        while (rt->stopping > 0 && uv_run(rt->loop, UV_RUN_ONCE) != 0)
                ;
        /* Close whatever is left (agent sweep timers...) so the loop can be closed. */
        uv_run(rt->loop, UV_RUN_NOWAIT);
        for (size_t i = 0; i < rt->nvms; i++)
                *rt->vms[i] = vm_free(*rt->vms[i]);
        free(rt->vms);
        free(rt->message);
        free(rt->interrupt_why);
        lua_pushnil(rt->L);
        lua_setfield(rt->L, LUA_REGISTRYINDEX, RUNTIME_KEY);
        free(rt);
        return NULL;
}
