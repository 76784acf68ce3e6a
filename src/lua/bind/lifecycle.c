/* lifecycle.c: VM lifecycle from Lua (pause, resume, reset, power button, shutdown, kill,
 * wait_exit) and the serial console as a stream.
 *
 * Sections: QMP commands, exits, console.
 */
#include "lifecycle.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "op.h"
#include "stream.h"
#include "vm_object.h"
#include "waiter.h"

/* ---- QMP commands ---- */

typedef struct QmpCtx {
        Pending pending; /* first: the cancel hook gets &ctx->pending */
        Vm *vm;
        const char *what;
        int paused; /* -1: leave, 0/1: set on success */
        bool abandoned;
} QmpCtx;

static void on_qmp_abandoned(Pending *p)
{
        ((QmpCtx *) p)->abandoned = true; /* the reply frees it */
}

static void emit_lifecycle(Vm *vm, const char *action, bool ok)
{
        EventBuilder ev;
        event_begin(&ev, "vm.lifecycle", 3);
        proto_kv_str(&ev.w, "vm", vm_name(vm));
        proto_kv_str(&ev.w, "action", action);
        proto_kv_bool(&ev.w, "ok", ok);
        event_end(&ev);
}

static void on_qmp_reply(void *data, int status, json_t *result)
{
        QmpCtx *ctx = data;
        emit_lifecycle(ctx->vm, ctx->what, status == 0);
        if (status == 0 && ctx->paused >= 0)
                vm_set_paused(ctx->vm, ctx->paused);
        if (!ctx->abandoned) {
                char err[1024];
                if (status)
                        snprintf(err, sizeof err, "vm %s: %s: %s", vm_name(ctx->vm), ctx->what,
                                 qmp_error_text(status, result));
                runtime_resume_result(&ctx->pending, status ? err : NULL);
        }
        free(ctx);
}

static int qmp_op_with(lua_State *L, const char *cmd, const char *what, int paused,
                       int (*send)(Vm *, QmpReplyFn, void *));

/* Sends cmd and parks until QEMU answers: true | nil, message. */
static int qmp_op(lua_State *L, const char *cmd, const char *what, int paused)
{
        return qmp_op_with(L, cmd, what, paused, NULL);
}

static int qmp_op_with(lua_State *L, const char *cmd, const char *what, int paused,
                       int (*send)(Vm *, QmpReplyFn, void *))
{
        Vm *vm = check_vm(L, 1);
        VmState st = vm_state(vm);
        if (st != VM_RUNNING && st != VM_PAUSED) {
                lua_pushnil(L);
                lua_pushfstring(L, "vm %s: %s: the VM is %s", vm_name(vm), what, vm_state_name(st));
                return 2;
        }
        if (!runtime_in_task(L))
                return luaL_error(L, "vm %s: %s: only inside a test body", vm_name(vm), what);
        QmpCtx *ctx = calloc(1, sizeof *ctx);
        if (!ctx)
                return luaL_error(L, "vm %s: %s: out of memory", vm_name(vm), what);
        *ctx = (QmpCtx){.vm = vm, .what = what, .paused = paused};
        ctx->pending.cancel = on_qmp_abandoned;
        int r = send ? send(vm, on_qmp_reply, ctx) : vm_qmp(vm, cmd, on_qmp_reply, ctx);
        if (r < 0) {
                free(ctx);
                lua_pushnil(L);
                lua_pushfstring(L, "vm %s: %s: %s", vm_name(vm), what, strerror(-r));
                return 2;
        }
        return runtime_wait(L, &ctx->pending);
}

/* A local VM is paused by freezing its cgroup: without one it cannot be. */
static void refuse_unfrozen(lua_State *L, const char *what)
{
        Vm *vm = check_vm(L, 1);
        if (!vm_local_can_freeze(vm))
                bind_refuse_local_because(L, vm, what,
                                          "no cgroup v2 this process may write, to freeze it in");
}

static int l_pause(lua_State *L)
{
        refuse_unfrozen(L, "pause");
        return qmp_op(L, "stop", "pause", 1);
}

static int l_resume(lua_State *L)
{
        refuse_unfrozen(L, "resume");
        return qmp_op(L, "cont", "resume", 0);
}

/* A hardware reset is refused rather than sent: QEMU runs with -no-reboot (a guest that panics
 * or reboots must stop, not boot again unseen), under which QMP's system_reset ends QEMU too,
 * and the host would have to redo the agent's handshake, the links' addresses and the workers
 * after the guest's second boot, which it does not. */
static int l_reset(lua_State *L)
{
        Vm *vm = check_vm(L, 1);
        bind_refuse_local(L, vm, "reset");
        lua_pushnil(L);
        lua_pushfstring(L,
                        "vm %s: reset: not supported: QEMU runs with -no-reboot, so a hardware "
                        "reset would end it; for a power loss use vm:kill() and boot a new VM, "
                        "for a state to go back to, vm:snapshot() and vm:restore()",
                        vm_name(vm));
        return 2;
}

static int l_power_button(lua_State *L)
{
        bind_refuse_local(L, check_vm(L, 1), "power_button");
        return qmp_op_with(L, "system_powerdown", "power_button", -1, vm_power_button);
}

/* ---- exits ---- */

typedef struct ExitWait {
        Waiter *waiter;
} ExitWait;

static void on_exit_seen(Vm *vm, void *data)
{
        ExitWait *w = data;
        waiter_wake(&w->waiter);
        free(w); /* the waiter finished (or was never there) */
}

/* vm:_wait_exit(timeout) -> true | nil, "timeout" */
static int l_wait_exit(lua_State *L)
{
        Vm *vm = check_vm(L, 1);
        double timeout = luaL_optnumber(L, 2, -1);
        if (vm_state(vm) == VM_EXITED) {
                lua_pushboolean(L, 1);
                return 1;
        }
        if (vm_state(vm) == VM_DEFINED)
                return luaL_error(L, "vm %s: wait_exit: the VM was never booted", vm_name(vm));
        ExitWait *w = calloc(1, sizeof *w);
        if (!w)
                return luaL_error(L, "vm %s: wait_exit: out of memory", vm_name(vm));
        vm_on_exit(vm, on_exit_seen, w);
        /* The exit watcher outlives the waiter on a timeout: it only wakes an empty slot. */
        return waiter_park(L, &w->waiter, timeout, "wait_exit");
}

/* vm:kill(): power loss, QEMU killed at once (the exit does not fail the test) */
static int l_kill(lua_State *L)
{
        Vm *vm = check_vm(L, 1);
        int r = vm_kill(vm);
        emit_lifecycle(vm, "kill", r == 0);
        if (r < 0 && r != -ESRCH)
                return luaL_error(L, "vm %s: kill: %s", vm_name(vm), strerror(-r));
        return 0;
}

/* vm:_expect_exit(): the next exit (a guest-initiated poweroff) does not fail the test */
static int l_expect_exit(lua_State *L)
{
        vm_expect_exit(check_vm(L, 1));
        return 0;
}

/* vm:_poweroff(opts): asks the agent to power the guest off cleanly; the exit is expected */
static int l_poweroff(lua_State *L)
{
        Target tg = check_target(L, 1);
        int n = check_running(L, &tg, "shutdown", "");
        if (n)
                return n;
        vm_expect_exit(tg.vm);
        Op *op;
        NEW_OP_OR_FAIL(op, L, tg, "shutdown", "", opt_timeout(L, 2, "timeout"));
        op->push_ok = op_push_true;
        ProtoWriter *w = agent_request_begin(tg.agent, &op->req, "poweroff", 1);
        proto_kv_bool(w, "reboot", false);
        return op_send(L, op);
}

/* ---- console ---- */

/* p NULL: the VM has exited, the console ends. */
static void on_console_bytes(void *data, const char *p, size_t n)
{
        if (p)
                stream_push(data, p, n);
        else
                stream_end(data, NULL);
}

/* vm:console() -> Stream of the console from its first byte, then live (one per VM) */
static int l_console(lua_State *L)
{
        Vm *vm = check_vm(L, 1);
        bind_refuse_local(L, vm, "console");
        if (lua_getiuservalue(L, 1, 1) == LUA_TUSERDATA)
                return 1;
        lua_pop(L, 1);
        char name[96];
        snprintf(name, sizeof name, "vm %s: console", vm_name(vm));
        Stream *s = stream_new(name);
        if (!s)
                return luaL_error(L, "%s: out of memory", name);
        size_t n;
        const char *log = vm_console_log(vm, &n);
        stream_push(s, log, n);
        if (vm_state(vm) == VM_EXITED)
                stream_end(s, NULL);
        else
                vm_console_watch(vm, on_console_bytes, s);
        bind_stream_push(L, s);
        /* The userdata owns the stream; it is anchored in the VM's user value, and the VM
         * (which outlives every test) drops its watcher when it stops, before lua_close. */
        stream_release(s);
        lua_pushvalue(L, -1);
        lua_setiuservalue(L, 1, 1);
        return 1;
}

static int l_console_write(lua_State *L)
{
        Vm *vm = check_vm(L, 1);
        bind_refuse_local(L, vm, "console write");
        size_t n;
        const char *p = luaL_checklstring(L, 2, &n);
        int r = vm_console_write(vm, p, n);
        if (r < 0) {
                lua_pushnil(L);
                lua_pushfstring(L, "vm %s: console write: %s", vm_name(vm), strerror(-r));
                return 2;
        }
        lua_pushboolean(L, 1);
        return 1;
}

static const luaL_Reg methods[] = {
    {"_pause", l_pause},
    {"_resume", l_resume},
    {"_reset", l_reset},
    {"_power_button", l_power_button},
    {"_wait_exit", l_wait_exit},
    {"_expect_exit", l_expect_exit},
    {"_poweroff", l_poweroff},
    {"kill", l_kill},
    {"console", l_console},
    {"_console_write", l_console_write},
    {NULL, NULL},
};

void bind_lifecycle_add_methods(lua_State *L)
{
        luaL_setfuncs(L, methods, 0);
}
