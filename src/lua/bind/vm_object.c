/* vm_object.c: the provium.VM userdata and its guest operations (boot, exec, files).
 *
 * The C methods here are the low-level layer: each returns `result` or `nil, message`, and
 * parks the calling coroutine while the operation is in flight. The prelude wraps them into
 * the public API (vm:run, vm:read_file...), which raises errors at the caller's line.
 *
 * Sections: userdata, operation contexts, boot, exec, files, registration.
 */
#include "vm_object.h"

#include <errno.h>
#include <stddef.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "boot_options.h"
#include "events.h"
#include "claim.h"
#include "runtime.h"
#include "vm.h"
#include "command.h"
#include "op.h"
#include "proto_exit.h"
#include "file.h"
#include "layer0.h"
#include "lifecycle.h"
#include "snapshot.h"
#include "net.h"
#include "disk_object.h"
#include "hwrng.h"
#include "netem.h"
#include "process.h"
#include "transfer.h"

#define ANCHOR_KEY "provium.vms" /* name -> userdata, keeps VMs alive until lua_close */

typedef struct VmBox {
        Vm *vm; /* cleared by the runtime when it frees the VM */
} VmBox;

/* ---- userdata ---- */

static VmBox *check_box(lua_State *L, int i)
{
        return luaL_checkudata(L, i, VM_MT);
}

static bool valid_name(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > 32)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
                        return false;
        return true;
}

/* internal.vm_new(name, vmm) -> VM userdata; vmm "qemu" (or nil) or "local" */
static int l_vm_new(lua_State *L)
{
        const char *name = luaL_checkstring(L, 1);
        const char *vmm = luaL_optstring(L, 2, "qemu");
        if (strcmp(vmm, "qemu") != 0 && strcmp(vmm, "local") != 0)
                return luaL_error(L, "vm %s: vmm must be \"qemu\" or \"local\", not \"%s\"", name,
                                  vmm);
        Runtime *rt = runtime_get(L);
        if (!valid_name(name))
                return luaL_argerror(L, 1,
                                     lua_pushfstring(L,
                                                     "VM name '%s' must be 1-32 characters "
                                                     "of A-Z a-z 0-9 - _",
                                                     name));
        lua_getfield(L, LUA_REGISTRYINDEX, ANCHOR_KEY);
        if (lua_getfield(L, -1, name) != LUA_TNIL)
                return luaL_error(L, "a VM named '%s' already exists in this file", name);
        lua_pop(L, 1);
        VmBox *b = lua_newuserdatauv(L, sizeof *b, 1);
        b->vm = NULL; /* closed state first, so a failure below leaves nothing half-open */
        luaL_setmetatable(L, VM_MT);
        b->vm = vm_new(runtime_loop(rt), name, runtime_config(rt)->run_dir);
        if (!b->vm || runtime_track_vm(rt, &b->vm) < 0) {
                b->vm = vm_free(b->vm);
                return luaL_error(L, "vm %s: out of memory", name);
        }
        vm_set_local(b->vm, vmm[0] == 'l');
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, name);
        return 1;
}

static int l_vm_name(lua_State *L)
{
        lua_pushstring(L, vm_name(check_vm(L, 1)));
        return 1;
}

/* vm:vmm() -> "qemu" | "local" */
static int l_vm_vmm(lua_State *L)
{
        lua_pushstring(L, vm_is_local(check_vm(L, 1)) ? "local" : "qemu");
        return 1;
}

void bind_refuse_local(lua_State *L, Vm *vm, const char *what)
{
        bind_refuse_local_because(L, vm, what, NULL);
}

void bind_refuse_local_because(lua_State *L, Vm *vm, const char *what, const char *why)
{
        if (vm_is_local(vm))
                luaL_error(L, "vm %s: %s: " VM_LOCAL_UNAVAILABLE "%s%s", vm_name(vm), what,
                           why ? ": " : "", why ? why : "");
}

/* internal.default_vmm() -> --vmm's "qemu" or "local" */
static int l_default_vmm(lua_State *L)
{
        const char *v = runtime_config(runtime_get(L))->vmm;
        lua_pushstring(L, v && strcmp(v, "local") == 0 ? "local" : "qemu");
        return 1;
}

static int l_vm_state(lua_State *L)
{
        lua_pushstring(L, vm_state_name(vm_state(check_vm(L, 1))));
        return 1;
}

static int l_vm_console_tail(lua_State *L)
{
        Vm *vm = check_vm(L, 1);
        lua_Integer n = luaL_optinteger(L, 2, 20);
        luaL_argcheck(L, n > 0 && n <= 100000, 2, "line count must be 1..100000");
        char *s = vm_console_tail(vm, (unsigned) n);
        if (!s)
                return luaL_error(L, "vm %s: out of memory", vm_name(vm));
        lua_pushstring(L, s);
        free(s);
        return 1;
}

static int l_vm_boot_log(lua_State *L)
{
        size_t n;
        const char *s = vm_console_log(check_vm(L, 1), &n);
        lua_pushlstring(L, s, n);
        return 1;
}

static int l_vm_tostring(lua_State *L)
{
        VmBox *b = check_box(L, 1);
        if (b->vm)
                lua_pushfstring(L, "VM(%s, %s)", vm_name(b->vm), vm_state_name(vm_state(b->vm)));
        else
                lua_pushliteral(L, "VM(closed)");
        return 1;
}

/* ---- boot ---- */

typedef struct BootCtx {
        Pending pending;
        Runtime *rt;
} BootCtx;

static void on_vm_death(Vm *vm, const char *msg, void *data)
{
        runtime_abort_test(data, msg);
}

static void on_booted(Vm *vm, int status, const char *msg, void *data)
{
        BootCtx *ctx = data;
        if (status == 0)
                vm_on_death(vm, on_vm_death, ctx->rt);
        runtime_resume_result(&ctx->pending, status == 0 ? NULL : msg ? msg : "boot failed");
        free(ctx);
}

int bind_vm_boot_wait(lua_State *L, Vm *vm, const VmConfig *cfg)
{
        char why[1024];
        int cr = claim_acquire(why, sizeof why);
        if (cr < 0 ||
            (!vm_is_local(vm) && !claim_fits_vm(vm_config_memory_mb(cfg) -
                                                    vm_spares_room(cfg, vm_config_memory_mb(cfg)),
                                                why, sizeof why))) {
                lua_pushnil(L);
                lua_pushfstring(L, "vm %s: boot: %s", vm_name(vm), why);
                return 2;
        }
        BootCtx *ctx = calloc(1, sizeof *ctx);
        if (!ctx)
                return luaL_error(L, "vm %s: boot: out of memory", vm_name(vm));
        ctx->rt = runtime_get(L);
        char err[2048];
        int r = vm_boot(vm, cfg, on_booted, ctx, err, sizeof err);
        if (r < 0) {
                free(ctx);
                lua_pushnil(L);
                lua_pushstring(L, err);
                return 2;
        }
        return runtime_wait(L, &ctx->pending);
}

/* A local VM has the host's kernel, clock and randomness: boot options about a guest kernel
 * are refused, each by its name. */
static void refuse_local_options(lua_State *L, Vm *vm, const VmConfig *cfg)
{
        const char *opt = cfg->kernel         ? "boot option kernel"
                          : cfg->initrd       ? "boot option initrd"
                          : cfg->append       ? "boot option append"
                          : cfg->initial_time ? "boot option initial_time"
                          : cfg->has_rng_seed ? "boot option rng_seed"
                          : cfg->ram_path     ? "fixture"
                                              : NULL;
        if (opt)
                bind_refuse_local(L, vm, opt);
}

/* vm:_boot(image, opts) -> true | nil, message */
static int l_vm_boot(lua_State *L)
{
        runtime_refuse_if_listing(L, "a VM boot");
        Vm *vm = check_vm(L, 1);
        char time_buf[32];
        VmConfig cfg;
        bind_vm_boot_config(L, luaL_optstring(L, 2, "default"), 3, &cfg, time_buf, sizeof time_buf);
        if (vm_is_local(vm))
                refuse_local_options(L, vm, &cfg);
        return bind_vm_boot_wait(L, vm, &cfg);
}

/* ---- exec ---- */

static int push_exec_result(lua_State *co, Op *op, const msgpack_object *reply)
{
        ProtoExit e;
        const char *bad = proto_read_exit(reply, &e);
        if (bad)
                return op_push_bad_reply(co, op, bad);
        lua_createtable(co, 0, 8);
        lua_pushlstring(co, op->out.p ? op->out.p : "", op->out.len);
        lua_setfield(co, -2, "stdout");
        lua_pushlstring(co, op->err.p ? op->err.p : "", op->err.len);
        lua_setfield(co, -2, "stderr");
        if (e.has_code) {
                lua_pushinteger(co, e.code);
                lua_setfield(co, -2, "code");
        } else {
                lua_pushinteger(co, e.sig);
                lua_setfield(co, -2, "signal");
        }
        lua_pushboolean(co, e.timed_out);
        lua_setfield(co, -2, "timed_out");
        lua_pushnumber(co, (double) e.duration_ns / 1e9);
        lua_setfield(co, -2, "duration");
        lua_pushstring(co, op->object);
        lua_setfield(co, -2, "cmd");
        lua_pushstring(co, op->vm_name);
        lua_setfield(co, -2, "vm");
        return 1;
}

/* vm:_exec(cmd | argv, opts) -> result | nil, message */
static int l_vm_exec(lua_State *L)
{
        Target tg = check_target(L, 1);
        Command cmd;
        command_check(L, 2, 3, true, &cmd);
        int n = check_running(L, &tg, "exec", cmd.text);
        if (n)
                return n;
        Op *op;
        NEW_OP_OR_FAIL(op, L, tg, "exec", cmd.text, cmd.timeout_s);
        op->push_ok = push_exec_result;
        /* The agent enforces the command's timeout and reports it; the request's own timeout
         * is a little longer so a hung guest is still caught. */
        op->timeout_s = cmd.timeout_s > 0 ? cmd.timeout_s + 5 : 0;
        op->agent_timeout_s = cmd.timeout_s;
        command_pack(L, &cmd,
                     agent_request_begin(tg.agent, &op->req, "exec", command_nfields(&cmd)));
        return op_send(L, op);
}

/* ---- files ---- */

static int push_stat_result(lua_State *co, Op *op, const msgpack_object *reply)
{
        static const char *const ufields[] = {"size", "mode",     "uid",      "gid",     "nlink",
                                              "ino",  "mtime_ns", "atime_ns", "ctime_ns"};
        static const char *const types[] = {"file", "dir", "link", "chr", "blk", "fifo", "sock"};
        uint64_t v[sizeof ufields / sizeof ufields[0]];
        const char *type;
        size_t tlen, t = 0;
        /* from the guest: a type this side knows, and every number, within a Lua integer */
        if (proto_get_bytes(reply, "type", &type, &tlen) != 1)
                return op_push_bad_reply(co, op, "no type");
        while (t < sizeof types / sizeof types[0] &&
               (strlen(types[t]) != tlen || memcmp(types[t], type, tlen) != 0))
                t++;
        if (t == sizeof types / sizeof types[0])
                return op_push_bad_reply(co, op, "an unknown type");
        for (size_t i = 0; i < sizeof ufields / sizeof ufields[0]; i++)
                if (proto_get_uint(reply, ufields[i], &v[i]) != 1 || v[i] > INT64_MAX) {
                        char what[32];
                        snprintf(what, sizeof what, "no valid %s", ufields[i]);
                        return op_push_bad_reply(co, op, what);
                }
        if (v[1] > 07777)
                return op_push_bad_reply(co, op, "a mode past 07777");
        lua_createtable(co, 0, 12);
        lua_pushstring(co, types[t]);
        lua_setfield(co, -2, "type");
        for (size_t i = 0; i < sizeof ufields / sizeof ufields[0]; i++) {
                lua_pushinteger(co, (lua_Integer) v[i]);
                lua_setfield(co, -2, ufields[i]);
        }
        uint64_t mt;
        if (proto_get_uint(reply, "mtime_ns", &mt) == 1) {
                lua_pushnumber(co, (double) mt / 1e9);
                lua_setfield(co, -2, "mtime");
        }
        return 1;
}

/* vm:_stat(path, opts) -> table | nil, message */
static int l_vm_stat(lua_State *L)
{
        Target tg = check_target(L, 1);
        const char *path = check_cstring(L, 2);
        bool follow = true;
        if (lua_type(L, 3) == LUA_TTABLE) {
                lua_getfield(L, 3, "follow");
                follow = lua_isnil(L, -1) || lua_toboolean(L, -1);
                lua_pop(L, 1);
        }
        int n = check_running(L, &tg, "stat", path);
        if (n)
                return n;
        Op *op;
        NEW_OP_OR_FAIL(op, L, tg, "stat", path, opt_timeout(L, 3, "timeout"));
        op->push_ok = push_stat_result;
        ProtoWriter *w = agent_request_begin(tg.agent, &op->req, "stat", 2);
        proto_kv_str(w, "path", path);
        proto_kv_bool(w, "follow", follow);
        return op_send(L, op);
}

/* vm:_mkdir(path, opts) -> true | nil, message */
static int l_vm_mkdir(lua_State *L)
{
        Target tg = check_target(L, 1);
        const char *path = check_cstring(L, 2);
        bool parents = false;
        if (lua_type(L, 3) == LUA_TTABLE) {
                lua_getfield(L, 3, "parents");
                parents = lua_toboolean(L, -1);
                lua_pop(L, 1);
        }
        lua_Integer mode = opt_mode(L, 3, "mode", 0755);
        int n = check_running(L, &tg, "mkdir", path);
        if (n)
                return n;
        Op *op;
        NEW_OP_OR_FAIL(op, L, tg, "mkdir", path, opt_timeout(L, 3, "timeout"));
        op->push_ok = op_push_true;
        ProtoWriter *w = agent_request_begin(tg.agent, &op->req, "mkdir", 3);
        proto_kv_str(w, "path", path);
        proto_kv_uint(w, "mode", (uint64_t) mode);
        proto_kv_bool(w, "parents", parents);
        return op_send(L, op);
}

/* ---- workers ---- */

typedef struct WorkerCtx {
        Pending pending;
        int box_ref; /* the Worker userdata, pushed back on success */
} WorkerCtx;

typedef struct WorkerReady {
        WorkerCtx *ctx;
        int status;
} WorkerReady;

/* The Worker, or nil and why it did not answer. */
static int push_worker(lua_State *L, void *ud)
{
        WorkerReady *r = ud;
        lua_rawgeti(L, LUA_REGISTRYINDEX, r->ctx->box_ref);
        if (r->status == 0)
                return 1;
        WorkerBox *w = lua_touserdata(L, -1);
        lua_pop(L, 1);
        lua_pushnil(L);
        lua_pushfstring(L, "vm %s: spawn_worker: worker %d did not answer: %s",
                        *w->slot ? vm_name(*w->slot) : "?", w->index, strerror(-r->status));
        return 2;
}

static void on_worker_ready(AgentClient *c, int status, void *data)
{
        WorkerCtx *ctx = data;
        WorkerReady r = {.ctx = ctx, .status = status};
        /* from here the caller's stack anchors the Worker, or nobody takes it (the task was
         * abandoned: a sibling branch failed) */
        runtime_resume_push(&ctx->pending, push_worker, &r, "spawn_worker");
        if (ctx->pending.rt)
                luaL_unref(runtime_lua(ctx->pending.rt), LUA_REGISTRYINDEX, ctx->box_ref);
        free(ctx);
}

/* vm:_spawn_worker(opts) -> Worker | nil, message */
static int l_vm_spawn_worker(lua_State *L)
{
        VmBox *b = check_box(L, 1);
        Vm *vm = check_vm(L, 1);
        double timeout = opt_timeout(L, 2, "timeout");
        if (vm_state(vm) != VM_RUNNING) {
                lua_pushnil(L);
                lua_pushfstring(L, "vm %s: spawn_worker: the VM is %s", vm_name(vm),
                                vm_state_name(vm_state(vm)));
                return 2;
        }
        WorkerBox *w = lua_newuserdatauv(L, sizeof *w, 1);
        *w = (WorkerBox){.slot = &b->vm};
        luaL_setmetatable(L, WORKER_MT);
        lua_pushvalue(L, 1); /* the worker keeps its VM's userdata alive */
        lua_setiuservalue(L, -2, 1);
        WorkerCtx *ctx = calloc(1, sizeof *ctx);
        if (!ctx)
                return luaL_error(L, "vm %s: spawn_worker: out of memory", vm_name(vm));
        int r = vm_worker_connect(vm, seconds_to_ms(timeout), on_worker_ready, ctx, &w->agent,
                                  &w->index);
        if (r < 0) {
                free(ctx);
                lua_pushnil(L);
                if (r == -EBUSY)
                        lua_pushfstring(L,
                                        "vm %s: spawn_worker: all worker ports are in use "
                                        "(boot with a larger 'workers' option)",
                                        vm_name(vm));
                else
                        lua_pushfstring(L, "vm %s: spawn_worker: %s", vm_name(vm), strerror(-r));
                return 2;
        }
        ctx->box_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        return runtime_wait(L, &ctx->pending);
}

static int l_worker_tostring(lua_State *L)
{
        WorkerBox *w = luaL_checkudata(L, 1, WORKER_MT);
        lua_pushfstring(L, "Worker(%s/%d)", *w->slot ? vm_name(*w->slot) : "closed", w->index);
        return 1;
}

static int l_worker_index(lua_State *L)
{
        WorkerBox *w = luaL_checkudata(L, 1, WORKER_MT);
        lua_pushinteger(L, w->index);
        return 1;
}

/* ---- registration ---- */

static const luaL_Reg vm_methods[] = {
    {"name", l_vm_name},
    {"state", l_vm_state},
    {"vmm", l_vm_vmm},
    {"console_tail", l_vm_console_tail},
    {"boot_log", l_vm_boot_log},
    {"_boot", l_vm_boot},
    {"_exec", l_vm_exec},
    {"_read_file", bind_vm_read_file},
    {"_write_file", bind_vm_write_file},
    {"_stat", l_vm_stat},
    {"_mkdir", l_vm_mkdir},
    {"_spawn_worker", l_vm_spawn_worker},
    {"_run_async", bind_vm_run_async},
    {"_open", bind_vm_open},
    {"_tail", bind_vm_tail},
    {"_syscall", bind_vm_syscall},
    {"_ioctl", bind_vm_ioctl},
    {NULL, NULL},
};

static const luaL_Reg worker_methods[] = {
    {"index", l_worker_index},
    {"_exec", l_vm_exec},
    {"_read_file", bind_vm_read_file},
    {"_write_file", bind_vm_write_file},
    {"_stat", l_vm_stat},
    {"_mkdir", l_vm_mkdir},
    {"_run_async", bind_vm_run_async},
    {"_open", bind_vm_open},
    {"_tail", bind_vm_tail},
    {"_syscall", bind_vm_syscall},
    {"_ioctl", bind_vm_ioctl},
    {NULL, NULL},
};

static const luaL_Reg vm_meta[] = {
    {"__tostring", l_vm_tostring},
    {"__index", NULL},
    {NULL, NULL},
};

void bind_vm_register(lua_State *L)
{
        luaL_newmetatable(L, WORKER_MT);
        lua_pushcfunction(L, l_worker_tostring);
        lua_setfield(L, -2, "__tostring");
        luaL_newlib(L, worker_methods);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, "provium.Worker.methods");
        lua_setfield(L, -2, "__index");
        lua_pop(L, 1);

        lua_newtable(L);
        lua_setfield(L, LUA_REGISTRYINDEX, ANCHOR_KEY);
        luaL_newmetatable(L, VM_MT);
        luaL_setfuncs(L, vm_meta, 0);
        luaL_newlib(L, vm_methods);
        bind_lifecycle_add_methods(L);
        bind_snapshot_add_methods(L);
        bind_net_add_vm_methods(L);
        bind_disk_add_vm_methods(L);
        bind_netem_add_methods(L);
        bind_hwrng_add_methods(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, "__index");
        /* leaves the methods table on the stack for the prelude, below the metatable */
        lua_remove(L, -2);
}

typedef struct ReleaseCtx {
        Pending pending;
        bool parked, done;
} ReleaseCtx;

static void on_released(Vm *vm, void *data)
{
        ReleaseCtx *ctx = data;
        if (!ctx->parked) { /* vm_stop finished at once */
                ctx->done = true;
                return;
        }
        runtime_resume_result(&ctx->pending, NULL);
        free(ctx);
}

/* internal.vm_release(vm): stops the VM at once (a fixture's builder, saved already) and frees
 * its name for the VM restored in its place. Parks until QEMU is gone. */
static int l_vm_release(lua_State *L)
{
        Vm *vm = check_vm(L, 1);
        lua_getfield(L, LUA_REGISTRYINDEX, ANCHOR_KEY);
        lua_pushnil(L);
        lua_setfield(L, -2, vm_name(vm));
        lua_pop(L, 1);
        ReleaseCtx *ctx = calloc(1, sizeof *ctx);
        if (!ctx)
                return luaL_error(L, "vm %s: out of memory", vm_name(vm));
        vm_stop(vm, on_released, ctx);
        if (ctx->done) {
                free(ctx);
                lua_pushboolean(L, 1);
                return 1;
        }
        ctx->parked = true;
        return runtime_wait(L, &ctx->pending);
}

void bind_vm_push_constructor(lua_State *L)
{
        lua_pushcfunction(L, l_vm_new);
}

void bind_vm_push_local(lua_State *L)
{
        lua_pushcfunction(L, l_default_vmm);
        lua_setfield(L, -2, "default_vmm");
        lua_pushliteral(L, VM_LOCAL_UNAVAILABLE);
        lua_setfield(L, -2, "local_unavailable");
}

void bind_vm_push_release(lua_State *L)
{
        lua_pushcfunction(L, l_vm_release);
}
