/* runtime.c: per-file test execution on a libuv loop with parked coroutines (runtime.h).
 *
 * Sections: registry access, parking and resuming, tests, teardown. Listing a file (provium
 * list) and what a kept run asks of the runtime are in runtime_list.c.
 */
#include "runtime.h"

#include <errno.h>
#include <signal.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "op.h"
#include "artifacts.h"
#include "claim.h"
#include "events.h"
#include "push.h"
#include "runtime_internal.h"
#include "vm.h"

#define RUNTIME_KEY "provium.runtime"

/* A failure message goes out in one event frame (4 MiB at most): longer ones are cut. */
#define MESSAGE_MAX (64 * 1024)

#define HOOK_COUNT 100000 /* instructions between checks for a signal or the deadline */

static volatile sig_atomic_t signal_seen;
static Runtime *hook_runtime; /* one runtime per process: the file runner's */

void runtime_note_signal(int signo)
{
        signal_seen = signo;
}

/* Stops Lua code that never yields to the loop: a busy loop past the test's timeout, or after
 * Ctrl-C. The error unwinds to the test's own pcall, which fails the test. */
static void count_hook(lua_State *L, lua_Debug *ar)
{
        Runtime *rt = hook_runtime;
        if (!rt)
                return;
        bool late = rt->deadline_ns && events_mono_ns() > rt->deadline_ns;
        if (!signal_seen && !late)
                return;
        char where[256] = "";
        if (lua_getinfo(L, "Sl", ar) && ar->currentline > 0)
                snprintf(where, sizeof where, "%s:%d: ", ar->short_src, ar->currentline);
        if (signal_seen)
                luaL_error(L, "%sinterrupted by %s while running Lua code", where,
                           strsignal(signal_seen));
        luaL_error(L, "%stest timed out after %f s (--test-timeout) while running Lua code", where,
                   rt->cfg.test_timeout_s);
}

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
        rt->next_task_id = 1;
        hook_runtime = rt;
        lua_sethook(L, count_hook, LUA_MASKCOUNT, HOOK_COUNT); /* new threads inherit it */
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

lua_State *runtime_lua(const Runtime *rt)
{
        return rt->L;
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

/* ---- tasks ---- */

static Task *task_new(Runtime *rt, lua_State *co, int ref, Group *group)
{
        Task *t = calloc(1, sizeof *t);
        if (!t)
                return NULL;
        t->id = rt->next_task_id++;
        t->co = co;
        t->ref = ref;
        t->group = group;
        t->next = rt->tasks;
        rt->tasks = t;
        return t;
}

static Task *task_find(Runtime *rt, uint64_t id)
{
        for (Task *t = rt->tasks; t; t = t->next)
                if (t->id == id)
                        return t;
        return NULL;
}

static Task *task_of(Runtime *rt, lua_State *co)
{
        for (Task *t = rt->tasks; t; t = t->next)
                if (t->co == co)
                        return t;
        return NULL;
}

static void task_remove(Runtime *rt, Task *t)
{
        for (Task **pp = &rt->tasks; *pp; pp = &(*pp)->next)
                if (*pp == t) {
                        *pp = t->next;
                        break;
                }
        if (rt->main == t)
                rt->main = NULL;
        luaL_unref(rt->L, LUA_REGISTRYINDEX, t->ref);
        free(t);
}

static void abandon_group(Runtime *rt, Group *g);

/* Drops a task that will never be resumed: releases what it is parked on, recursively. */
static void task_abandon(Runtime *rt, Task *t)
{
        Pending *p = t->parked ? t->pending : NULL;
        Group *waiting = t->waiting;
        t->parked = false;
        t->pending = NULL;
        t->waiting = NULL;
        if (p && p->cancel)
                p->cancel(p);
        if (waiting)
                abandon_group(rt, waiting);
        task_remove(rt, t);
}

static void abandon_group(Runtime *rt, Group *g)
{
        Task *t = rt->tasks;
        while (t) {
                if (t->group == g) {
                        task_abandon(rt, t);
                        t = rt->tasks; /* the list changed */
                } else
                        t = t->next;
        }
}

/* ---- parking and resuming ---- */

int runtime_wait(lua_State *L, Pending *p)
{
        Runtime *rt = runtime_get(L);
        Task *t = rt && !rt->test_done ? task_of(rt, L) : NULL;
        if (!t)
                return luaL_error(L, "guest operations can only run inside a test body or a "
                                     "provium:parallel branch");
        p->rt = rt;
        p->co = L;
        p->task = t->id;
        t->parked = true;
        t->pending = p;
        return lua_yield(L, 0);
}

bool runtime_in_task(lua_State *L)
{
        Runtime *rt = runtime_get(L);
        return rt && !rt->test_done && task_of(rt, L);
}

bool runtime_pending_alive(const Pending *p)
{
        if (!p->rt || p->rt->test_done)
                return false;
        Task *t = task_find(p->rt, p->task);
        return t && t->parked && t->pending == p;
}

static void finish_test(Runtime *rt, TestStatus status, const char *msg)
{
        if (rt->test_done)
                return;
        rt->test_done = true;
        rt->status = status;
        free(rt->message);
        rt->message = msg ? strndup(msg, MESSAGE_MAX) : NULL;
        if (rt->message && strlen(msg) > MESSAGE_MAX)
                memcpy(rt->message + MESSAGE_MAX - 5, "[...]", 5);
        /* Every task of the test goes: branches still parked release their operations. */
        while (rt->tasks)
                task_abandon(rt, rt->tasks);
}

static void resume(Runtime *rt, Task *t, int nargs);

/* A branch of a parallel call ended (err NULL: it returned). */
static void branch_done(Runtime *rt, Task *t, const char *err)
{
        Group *g = t->group;
        task_remove(rt, t);
        g->remaining--;
        if (err && !g->error) {
                g->error = strdup(err);
                abandon_group(rt, g); /* the other branches stop here */
                g->remaining = 0;
        }
        if (g->remaining > 0 || g->settled)
                return;
        g->settled = true;
        if (!g->caller_parked || !runtime_pending_alive(&g->pending))
                return; /* still inside runtime_parallel, which sees settled */
        Task *caller = task_find(rt, g->pending.task);
        caller->waiting = NULL;
        runtime_resume_result(&g->pending, g->error);
}

/* Interprets what a resume of a task returned. */
static void after_resume(Runtime *rt, Task *t, int status, int nres)
{
        lua_State *co = t->co;
        const char *err = NULL;
        char oom[160];
        if (status == LUA_YIELD) {
                lua_pop(co, nres);
                if (t->parked)
                        return;
                err = "a test body yielded outside a provium operation (coroutine.yield at the "
                      "top level of a test or branch)";
        } else if (status == LUA_ERRMEM) {
                err = push_out_of_memory_text(rt->L, oom, sizeof oom);
        } else if (status != LUA_OK) {
                /* not lua_tostring: a number would be converted, which allocates unprotected */
                err = lua_type(co, -1) == LUA_TSTRING ? lua_tostring(co, -1)
                                                      : "failed with a non-string error";
        }
        if (t->group) {
                branch_done(rt, t, err);
                return;
        }
        if (t->background) { /* its error fails the test; its end is nobody's business */
                char *copy = err ? strdup(err) : NULL;
                task_remove(rt, t);
                if (err)
                        finish_test(rt, TEST_FAIL, copy ? copy : "a background task failed");
                free(copy);
                return;
        }
        if (err) {
                finish_test(rt, TEST_FAIL, err);
                return;
        }
        /* run_test returns "pass" | "fail" | "skip", message; the file's chunk returns nothing */
        const char *st = nres >= 1 ? lua_tostring(co, -nres) : NULL;
        const char *msg = nres >= 2 ? lua_tostring(co, -nres + 1) : NULL;
        TestStatus ts = TEST_FAIL;
        if (nres == 0 || (st && strcmp(st, "pass") == 0))
                ts = TEST_PASS;
        else if (st && strcmp(st, "skip") == 0)
                ts = TEST_SKIP;
        finish_test(rt, ts, msg);
}

static void resume(Runtime *rt, Task *t, int nargs)
{
        int nres = 0;
        t->parked = false;
        t->pending = NULL;
        int status = lua_resume(t->co, rt->L, nargs, &nres);
        after_resume(rt, t, status, nres);
}

/* Resumes p's coroutine with nargs values already moved onto p->co. */
static void resume_pending(Pending *p, int nargs)
{
        resume(p->rt, task_find(p->rt, p->task), nargs);
}

/* The last resort, when not even the message fits: the test fails with a C string. */
static void fail_without_memory(Pending *p, const char *what)
{
        char msg[512];
        Task *t = task_find(p->rt, p->task);
        /* p's completion is running, and frees what p belongs to: the test's end must not
         * cancel it too */
        t->parked = false;
        t->pending = NULL;
        snprintf(msg, sizeof msg, "%s: not enough memory", what);
        finish_test(p->rt, TEST_FAIL, msg);
}

void runtime_resume_push(Pending *p, RuntimePush push, void *ud, const char *what)
{
        if (!runtime_pending_alive(p))
                return;
        lua_State *L = p->rt->L;
        int top = lua_gettop(L);
        int n = push_protected(L, push, ud, what);
        if (n < 0 || !lua_checkstack(p->co, n)) {
                lua_settop(L, top);
                return fail_without_memory(p, what);
        }
        lua_xmove(L, p->co, n);
        resume_pending(p, n);
}

void runtime_resume_result(Pending *p, const char *err)
{
        runtime_resume_push(p, push_result, (void *) err, err ? err : "a host operation");
}

void runtime_abort_test(Runtime *rt, const char *msg)
{
        if (rt->main && !rt->test_done)
                finish_test(rt, TEST_FAIL, msg);
}

/* ---- background tasks ---- */

int runtime_spawn(lua_State *L)
{
        Runtime *rt = runtime_get(L);
        if (!rt || rt->test_done || !task_of(rt, L))
                return luaL_error(L, "a background task can only start inside a test body");
        luaL_checktype(L, 1, LUA_TFUNCTION);
        lua_State *co = lua_newthread(L);
        lua_pushvalue(L, 1);
        lua_xmove(L, co, 1);
        int ref = luaL_ref(L, LUA_REGISTRYINDEX);
        Task *t = task_new(rt, co, ref, NULL);
        if (!t) {
                luaL_unref(L, LUA_REGISTRYINDEX, ref);
                return luaL_error(L, "a background task: out of memory");
        }
        t->background = true;
        resume(rt, t, 0);
        if (rt->test_done)
                return lua_yield(L, 0); /* it failed the test at once: never resumed */
        return 0;
}

/* ---- provium:parallel ---- */

static int group_gc(lua_State *L)
{
        Group *g = lua_touserdata(L, 1);
        free(g->error);
        g->error = NULL;
        return 0;
}

int runtime_parallel(lua_State *L)
{
        Runtime *rt = runtime_get(L);
        Task *caller = rt && !rt->test_done ? task_of(rt, L) : NULL;
        if (!caller)
                return luaL_error(L, "provium:parallel can only run inside a test body");
        int n = lua_gettop(L);
        for (int i = 1; i <= n; i++)
                luaL_checktype(L, i, LUA_TFUNCTION);
        Group *g = lua_newuserdatauv(L, sizeof *g, 0);
        *g = (Group){.remaining = (unsigned) n};
        if (luaL_newmetatable(L, "provium.Group")) {
                lua_pushcfunction(L, group_gc);
                lua_setfield(L, -2, "__gc");
        }
        lua_setmetatable(L, -2);
        for (int i = 1; i <= n && !g->settled; i++) {
                lua_State *co = lua_newthread(L);
                lua_pushvalue(L, i);
                lua_xmove(L, co, 1);
                int ref = luaL_ref(L, LUA_REGISTRYINDEX);
                Task *t = task_new(rt, co, ref, g);
                if (!t) {
                        luaL_unref(L, LUA_REGISTRYINDEX, ref);
                        return luaL_error(L, "provium:parallel: out of memory");
                }
                resume(rt, t, 0);
                if (rt->test_done)
                        return lua_yield(L, 0); /* the test ended meanwhile: never resumed */
        }
        if (!g->settled) {
                g->caller_parked = true;
                caller->waiting = g;
                return runtime_wait(L, &g->pending);
        }
        if (g->error) {
                lua_pushnil(L);
                lua_pushstring(L, g->error);
                return 2;
        }
        lua_pushboolean(L, 1);
        return 1;
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

/* test.start or test.end of the test in the events' scope (events.h) */
static void emit_test(const char *type, const Runtime *rt, int with_result, uint64_t duration_ns)
{
        EventBuilder ev;
        event_begin(&ev, type, with_result ? 3 : 0);
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
        uv_update_time(rt->loop); /* the loop's clock stood still while Lua code blocked */
        return uv_timer_start(rt->test_timer, on_test_timeout,
                              seconds_to_ms(rt->cfg.test_timeout_s), 0);
}

/* Runs fn (on top of L's stack) with nargs arguments below it in a fresh coroutine until it
 * finishes, driving the loop while it is parked. */
static void run_in_coroutine(Runtime *rt, int nargs)
{
        lua_State *L = rt->L;
        lua_State *co = lua_newthread(L);
        lua_insert(L, -(nargs + 2)); /* thread below function and args */
        lua_xmove(L, co, nargs + 1);
        int ref = luaL_ref(L, LUA_REGISTRYINDEX);
        rt->test_done = false;
        rt->main = task_new(rt, co, ref, NULL);
        if (!rt->main) {
                luaL_unref(L, LUA_REGISTRYINDEX, ref);
                rt->test_done = true;
                rt->status = TEST_FAIL;
                return;
        }
        rt->deadline_ns = rt->cfg.test_timeout_s > 0
                              ? events_mono_ns() + (uint64_t) (rt->cfg.test_timeout_s * 1e9)
                              : 0;
        if (start_test_timer(rt) < 0)
                finish_test(rt, TEST_FAIL, "cannot start the test timer");
        else
                resume(rt, rt->main, nargs);
        while (!rt->test_done) {
                if (uv_run(rt->loop, UV_RUN_ONCE) == 0 && !rt->test_done)
                        finish_test(rt, TEST_FAIL,
                                    "test is waiting for an operation that can never finish");
        }
        if (rt->test_timer)
                (void) uv_timer_stop(rt->test_timer);
        rt->deadline_ns = 0;
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

static bool chunk_failed(Runtime *rt);

#define ARTIFACTS_NAMED_MAX 64 /* files a test may name with t:artifact */

/* A failed test's consoles and captures, and the files it named (internal.test_artifacts, a
 * list of paths), when the run keeps artifacts (artifacts.h). */
static void save_artifacts(Runtime *rt, int index, const char *name)
{
        if (rt->status != TEST_FAIL || !rt->cfg.artifacts)
                return;
        lua_State *L = rt->L;
        int top = lua_gettop(L);
        const char *named[ARTIFACTS_NAMED_MAX];
        size_t n = 0;
        lua_getfield(L, LUA_REGISTRYINDEX, INTERNAL_KEY);
        if (lua_getfield(L, -1, "test_artifacts") == LUA_TTABLE &&
            lua_checkstack(L, ARTIFACTS_NAMED_MAX))
                for (lua_Integer i = 1; n < ARTIFACTS_NAMED_MAX; i++) {
                        if (lua_rawgeti(L, top + 2, i) != LUA_TSTRING)
                                break;
                        named[n++] = lua_tostring(L, -1); /* stays on the stack until settop */
                }
        artifacts_save(rt->cfg.artifacts, rt->cfg.file, index, name, (Vm * *const *) rt->vms,
                       rt->nvms, rt->cfg.run_dir, named, n);
        lua_settop(L, top);
}

/* The file's own chunk runs first, as a pseudo-test: it registers the tests. */
bool runtime_run_chunk(Runtime *rt)
{
        rt->status = TEST_PASS;
        rt->in_chunk = true;
        run_in_coroutine(rt, 0);
        rt->in_chunk = false;
        if (rt->status == TEST_PASS)
                return true;
        return chunk_failed(rt);
}

/* The file fails as a whole, as a pseudo-test "(file)" with rt->message. */
static bool chunk_failed(Runtime *rt)
{
        rt->status = TEST_FAIL;
        emit_test("test.start", rt, 0, 0);
        if (!rt->cfg.listing)
                save_artifacts(rt, 0, "(file)");
        emit_test("test.end", rt, 1, 0);
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

        rt->test = name ? name : "?";
        events_set_scope(rt->cfg.file, rt->test);
        emit_test("test.start", rt, 0, 0);
        uint64_t t0 = events_mono_ns();
        if (signal_seen && !rt->interrupted) { /* the loop has not run its callback yet */
                char why[64];
                snprintf(why, sizeof why, "interrupted by %s", strsignal(signal_seen));
                runtime_interrupt(rt, why);
        }
        if (rt->interrupted) {
                lua_pop(L, 2);
                rt->status = TEST_SKIP;
                free(rt->message);
                rt->message = strdup(rt->interrupt_why ? rt->interrupt_why : "interrupted");
        } else
                run_in_coroutine(rt, 1);
        save_artifacts(rt, index, name ? name : "?");
        if (rt->status == TEST_FAIL && !rt->first_failure)
                rt->first_failure = strdup(rt->test);
        emit_test("test.end", rt, 1, events_mono_ns() - t0);
        rt->test = NULL;
        events_set_scope(rt->cfg.file, NULL);
        count(rt);
        free(name);
}

static void emit_file(const char *type, const Runtime *rt, int with_counts)
{
        EventBuilder ev;
        event_begin(&ev, type, with_counts ? 5 : 0);
        if (with_counts) {
                uint64_t peak_mb;
                unsigned peak_vcpus;
                vm_live_peak(&peak_mb, &peak_vcpus);
                proto_kv_uint(&ev.w, "passed", rt->passed);
                proto_kv_uint(&ev.w, "failed", rt->failed);
                proto_kv_uint(&ev.w, "skipped", rt->skipped);
                /* the most its QEMUs held at once: what a provium:claim must cover */
                proto_kv_uint(&ev.w, "peak_memory_mb", peak_mb);
                proto_kv_uint(&ev.w, "peak_vcpus", peak_vcpus);
        }
        event_end(&ev);
}

/* The pool's grant for the file's claim, before its first test: false (the file failed) when
 * it was refused. */
static bool acquire_claim(Runtime *rt)
{
        char err[1024];
        if (claim_acquire(err, sizeof err) == 0)
                return true;
        free(rt->message);
        rt->message = strdup(err);
        chunk_failed(rt);
        return false;
}

bool runtime_in_chunk(const Runtime *rt)
{
        return rt->in_chunk;
}

int runtime_run_file(Runtime *rt)
{
        emit_file("file.start", rt, 0);
        if (runtime_run_chunk(rt)) {
                int n = runtime_test_count(rt);
                bool granted = false; /* the pool's grant, asked before the first selected test */
                for (int i = 1; i <= n; i++) {
                        if (!runtime_test_selected(rt, i))
                                continue;
                        if (!granted && !(granted = acquire_claim(rt)))
                                break;
                        if (rt->failed && rt->cfg.keep_on_failure && !rt->interrupted) {
                                rt->interrupted = true; /* the rest is skipped, saying why */
                                rt->interrupt_why = strdup("not run: --keep-on-failure keeps "
                                                           "the VMs as the failure left them");
                        }
                        run_one_test(rt, i);
                }
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
        if (!rt->test_done)
                finish_test(rt, TEST_FAIL, "runtime closed");
        for (size_t i = rt->nvms; i-- > 0;) {
                rt->stopping++;
                if (*rt->vms[i])
                        vm_stop(*rt->vms[i], on_vm_stopped, rt);
                else
                        rt->stopping--;
        }
        rt->stopping += vm_spares_stop(on_vm_stopped, rt);
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
        vm_spares_free();
        free(rt->vms);
        free(rt->message);
        free(rt->interrupt_why);
        free(rt->first_failure);
        lua_pushnil(rt->L);
        lua_setfield(rt->L, LUA_REGISTRYINDEX, RUNTIME_KEY);
        lua_sethook(rt->L, NULL, 0, 0);
        hook_runtime = NULL;
        free(rt);
        return NULL;
}
