/* runtime.h: the per-file Lua runtime: runs each test body in a coroutine on the libuv loop,
 * parks coroutines while host operations are in flight, and tears down what the file made.
 */
#pragma once

#include <lua.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct Vm Vm;

typedef struct RuntimeConfig {
        const char *file;      /* the test file, as given on the command line */
        const char *run_dir;   /* private 0700 directory for sockets */
        const char *accel;     /* "tcg" or "kvm" */
        const char *vmm;       /* "qemu" or "local": --vmm, the file's VMs' default */
        double test_timeout_s; /* per test; 0: none */
        double op_timeout_s;   /* default for guest operations */
        double boot_timeout_s; /* default for vm:boot */
        const char **filters;  /* -k: run only tests whose "FILE: name" contains one */
        int nfilters;          /* 0: run every test */
        bool listing;          /* provium list: the chunk runs, no test, nothing booted */
        const char *artifacts; /* where a failed test's consoles and captures go, or NULL */
        bool keep_on_failure;  /* the first failure ends the file and its VMs stay up */
        bool keep_always;      /* the VMs stay up after the file, failed or not */
        int debug_fd;          /* provium debug's terminal (stops at failures), or -1 */
        uint64_t seed;         /* the run's seed (--seed, or drawn by the dispatcher) */
} RuntimeConfig;

typedef struct Runtime Runtime;

/* The file's own chunk is running (not a test): where provium:claim belongs. */
bool runtime_in_chunk(const Runtime *rt);

/* A parked coroutine waiting for one host operation. Embed it in the operation's context. */
typedef struct Pending Pending;
struct Pending {
        Runtime *rt;
        lua_State *co;
        uint64_t task; /* id of the parked task; stale once the task is gone */
        /* Optional: called when the task is abandoned (its test failed elsewhere, a sibling
         * branch of provium:parallel failed) while parked here. It must release the
         * operation; the completion callback will then not run. */
        void (*cancel)(Pending *p);
};

Runtime *runtime_new(uv_loop_t *loop, lua_State *L, const RuntimeConfig *cfg);
Runtime *runtime_get(lua_State *L);
const RuntimeConfig *runtime_config(const Runtime *rt);
uv_loop_t *runtime_loop(const Runtime *rt);
/* The state the runtime was made with: for registry work in a callback whose task is gone. */
lua_State *runtime_lua(const Runtime *rt);

/* Parks the running coroutine: call as `return runtime_wait(L, &ctx->pending);` from a C
 * function called from Lua. Errors (via lua_error) when called outside a test body. */
int runtime_wait(lua_State *L, Pending *p);
/* True when L is a task the runtime drives (a test body or a parallel branch). */
bool runtime_in_task(lua_State *L);
/* True when the coroutine behind p may still be resumed (the test was not aborted). */
bool runtime_pending_alive(const Pending *p);
/* What a completion pushes for its parked caller: its values, on L; returns how many. */
typedef int (*RuntimePush)(lua_State *L, void *ud);
/* Resumes p's coroutine, when it may still be, with what push(L, ud) pushes. push runs in
 * protected mode on the runtime's own thread, so that running out of memory while building a
 * result (a guest's output is large) resumes the caller with nil and "what: not enough
 * memory ..." instead of reaching Lua's panic from a loop callback. */
void runtime_resume_push(Pending *p, RuntimePush push, void *ud, const char *what);
/* Resumes p's coroutine, when it may still be, with true (err NULL) or with nil and err: what a
 * primitive that parks returns. */
void runtime_resume_result(Pending *p, const char *err);

/* Registers a VM so that it is stopped at file end, in reverse order of creation. The runtime
 * frees it then and clears *slot (the Lua userdata's pointer), so slot must outlive the
 * runtime: VM userdata stay anchored until lua_close. */
int runtime_track_vm(Runtime *rt, Vm **slot);
/* The file's VMs in creation order (runtime_vm: NULL for one already freed): a kept run's. */
size_t runtime_vm_count(const Runtime *rt);
/* The first failed test's name ("(file)" for the file's own chunk), NULL while none failed. */
const char *runtime_first_failure(const Runtime *rt);
Vm *runtime_vm(const Runtime *rt, size_t i);
/* Fails the running test at once with msg (used when a VM dies unexpectedly). */
void runtime_abort_test(Runtime *rt, const char *msg);

/* provium:parallel(fn, ...): runs each function in its own task and parks the caller until
 * all have returned; returns true, or nil and the first error (the others are abandoned). */
int runtime_parallel(lua_State *L);
/* internal.spawn(fn): runs fn in a task of its own beside the caller's, never waited for (a
 * nemesis): it is abandoned when the test ends, and an error it raises fails the test. */
int runtime_spawn(lua_State *L);

/* Runs the loaded chunk on top of L's stack, then every registered test that cfg's filters
 * select. Returns the number of failed tests (a file-level error counts as one). */
int runtime_run_file(Runtime *rt);
/* provium list: runs the chunk with cfg.listing set, then emits list.file (its claim, and the
 * chunk's error if it failed) and a list.test per selected test. Returns 1 when the chunk
 * failed, else 0. */
int runtime_list_file(Runtime *rt);
/* While listing, what would reach a host or a guest (what: "a VM boot") raises an error
 * instead: a file's top level is for declaring tests. Returns otherwise. */
void runtime_refuse_if_listing(lua_State *L, const char *what);
/* Async-signal-safe: notes that signal signo arrived. Lua code that is busy (never yields to
 * the loop) is stopped by a count hook that checks this; runtime_interrupt does the rest. */
void runtime_note_signal(int signo);

/* Requests a stop (Ctrl-C / SIGTERM): the running test fails as interrupted, the rest skip. */
void runtime_interrupt(Runtime *rt, const char *why);
/* Stops every VM, waits for their processes, frees everything. Accepts NULL. */
Runtime *runtime_free(Runtime *rt);
