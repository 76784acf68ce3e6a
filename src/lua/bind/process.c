/* process.c: asynchronous guest processes (vm:run_async) and their Lua userdata.
 *
 * A Process is one `spawn` request kept in flight for the process's lifetime: its chunks
 * feed the stdout/stderr streams, its final reply is the exit status. Sections: lifetime,
 * spawn callbacks, run_async, methods, registration.
 */
#include "process.h"

#include <errno.h>
#include <lauxlib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "command.h"
#include "events.h"
#include "op.h"
#include "proto_exit.h"
#include "stream.h"
#include "waiter.h"
#include "types.h"

#define PROCESS_MT "provium.Process"

typedef struct Process {
        AgentRequest req; /* the spawn request; first, so callbacks get &p->req */
        int refs;         /* the Lua userdata + the request while in flight */
        Target tg;
        char *cmd;
        bool started, done;
        int64_t pid; /* 0 until started, or when the agent's was not one */
        ProtoExit exit;
        bool exit_known; /* exit is the agent's, checked */
        char *error;     /* why it never ran, or why its end is unknown */
        Stream *out, *err;
        Waiter *start_waiter, *exit_waiter;
} Process;

typedef struct ProcessBox {
        Process *p;
} ProcessBox;

/* ---- lifetime ---- */

static void process_unref(Process *p)
{
        if (--p->refs > 0)
                return;
        stream_release(p->out);
        stream_release(p->err);
        free(p->cmd);
        free(p->error);
        free(p);
}

/* ---- spawn callbacks ---- */

static void on_spawn_chunk(AgentRequest *req, const char *kind, const char *data, size_t len,
                           const msgpack_object *msg)
{
        Process *p = req->data;
        if (strcmp(kind, "started") == 0) {
                uint64_t pid = 0;
                /* from the guest: a pid is 1 to 2^22 (the kernel's PID_MAX_LIMIT) */
                if (proto_get_uint(msg, "pid", &pid) == 1 && pid >= 1 && pid <= (1u << 22))
                        p->pid = (int64_t) pid;
                p->started = true;
                waiter_wake(&p->start_waiter);
        } else if (data && strcmp(kind, "stdout") == 0)
                stream_push(p->out, data, len);
        else if (data && strcmp(kind, "stderr") == 0)
                stream_push(p->err, data, len);
}

static char *reply_error(const Process *p, int status, const msgpack_object *reply)
{
        char *s = NULL;
        if (status == 0) {
                const char *name = "", *msg = "";
                size_t nlen = 0, mlen = 0;
                (void) proto_get_bytes(reply, "error", &name, &nlen);
                (void) proto_get_bytes(reply, "msg", &msg, &mlen);
                if (asprintf(&s, "vm %s: run_async %s: %.*s (%.*s)", p->tg.label, p->cmd,
                             (int) nlen, name, (int) mlen, msg) < 0)
                        s = NULL;
        } else if (status == -ESTALE) {
                if (asprintf(&s, "vm %s: run_async %s: %s", p->tg.label, p->cmd, STALE_MSG) < 0)
                        s = NULL;
        } else {
                const char *death = vm_death_reason(p->tg.vm);
                if (asprintf(&s, "vm %s: run_async %s: %s%s%s", p->tg.label, p->cmd,
                             death ? "the VM died" : agent_client_close_text(status),
                             death ? "\n" : "", death ? death : "") < 0)
                        s = NULL;
        }
        return s;
}

static void on_spawn_reply(AgentRequest *req, int status, const msgpack_object *reply)
{
        Process *p = req->data;
        bool ok = false;
        const char *bad = NULL;
        if (status == 0 && proto_get_bool(reply, "ok", &ok) == 1 && ok) {
                bad = proto_read_exit(reply, &p->exit);
                p->exit_known = !bad;
                if (bad &&
                    asprintf(&p->error, "vm %s: run_async %s: the agent's reply is not valid: %s",
                             p->tg.label, p->cmd, bad) < 0)
                        p->error = NULL;
        } else
                p->error = reply_error(p, status, reply);
        p->done = true;
        stream_end(p->out, p->error);
        stream_end(p->err, p->error);
        waiter_wake(&p->start_waiter);
        waiter_wake(&p->exit_waiter);
        process_unref(p);
}

/* ---- run_async ---- */

static Process *check_process(lua_State *L, int i)
{
        ProcessBox *b = luaL_checkudata(L, i, PROCESS_MT);
        if (!b->p)
                luaL_error(L, "process: not started");
        return b->p;
}

/* vm:_run_async(cmd | argv, opts) -> Process | nil, message. Does not wait for the start. */
int bind_vm_run_async(lua_State *L)
{
        Target tg = check_target(L, 1);
        Command cmd;
        command_check(L, 2, 3, false, &cmd);
        int n = check_running(L, &tg, "run_async", cmd.text);
        if (n)
                return n;
        ProcessBox *b = lua_newuserdatauv(L, sizeof *b, 2);
        b->p = NULL; /* closed state first: a failure below leaves nothing half-open */
        luaL_setmetatable(L, PROCESS_MT);
        Process *p = calloc(1, sizeof *p);
        if (!p)
                return luaL_error(L, "vm %s: run_async: out of memory", tg.label);
        p->refs = 1;
        p->tg = tg;
        b->p = p;
        char name[160];
        snprintf(name, sizeof name, "vm %s: %s: stdout", tg.label, cmd.text);
        p->out = stream_new(name);
        snprintf(name, sizeof name, "vm %s: %s: stderr", tg.label, cmd.text);
        p->err = stream_new(name);
        p->cmd = strdup(cmd.text);
        if (!p->out || !p->err || !p->cmd)
                return luaL_error(L, "vm %s: run_async: out of memory", tg.label);
        p->req = (AgentRequest){.on_chunk = on_spawn_chunk, .on_reply = on_spawn_reply, .data = p};
        command_pack(L, &cmd,
                     agent_request_begin(tg.agent, &p->req, "spawn", command_nfields(&cmd)));
        int r = agent_request_send(tg.agent, &p->req, 0);
        if (r < 0) {
                lua_pushnil(L);
                lua_pushfstring(L, "vm %s: run_async %s: %s", tg.label, cmd.text, strerror(-r));
                return 2;
        }
        p->refs++; /* the request in flight */
        return 1;
}

/* ---- methods ---- */

static int l_wait_started(lua_State *L)
{
        Process *p = check_process(L, 1);
        double timeout = luaL_optnumber(L, 2, -1);
        if (p->started || p->done) {
                lua_pushboolean(L, 1);
                return 1;
        }
        return waiter_park(L, &p->start_waiter, timeout, "run_async");
}

static int l_wait_exit(lua_State *L)
{
        Process *p = check_process(L, 1);
        double timeout = luaL_optnumber(L, 2, -1);
        if (p->done) {
                lua_pushboolean(L, 1);
                return 1;
        }
        return waiter_park(L, &p->exit_waiter, timeout, "process:wait");
}

/* _state() -> {started, done, pid, code, signal, timed_out, duration, error, cmd, vm} */
static int l_state(lua_State *L)
{
        Process *p = check_process(L, 1);
        lua_createtable(L, 0, 10);
        lua_pushboolean(L, p->started);
        lua_setfield(L, -2, "started");
        lua_pushboolean(L, p->done);
        lua_setfield(L, -2, "done");
        if (p->started && p->pid) {
                lua_pushinteger(L, p->pid);
                lua_setfield(L, -2, "pid");
        }
        if (p->done && p->exit_known && p->exit.has_code) {
                lua_pushinteger(L, p->exit.code);
                lua_setfield(L, -2, "code");
        }
        if (p->done && p->exit_known && !p->exit.has_code) {
                lua_pushinteger(L, p->exit.sig);
                lua_setfield(L, -2, "signal");
        }
        lua_pushboolean(L, p->exit.timed_out);
        lua_setfield(L, -2, "timed_out");
        lua_pushnumber(L, (double) p->exit.duration_ns / 1e9);
        lua_setfield(L, -2, "duration");
        if (p->error) {
                lua_pushstring(L, p->error);
                lua_setfield(L, -2, "error");
        }
        lua_pushstring(L, p->cmd);
        lua_setfield(L, -2, "cmd");
        lua_pushstring(L, p->tg.label);
        lua_setfield(L, -2, "vm");
        return 1;
}

static int push_stream(lua_State *L, int which)
{
        Process *p = check_process(L, 1);
        if (lua_getiuservalue(L, 1, which) == LUA_TNIL) {
                lua_pop(L, 1);
                bind_stream_push(L, which == 1 ? p->out : p->err);
                lua_pushvalue(L, -1);
                lua_setiuservalue(L, 1, which);
        }
        return 1;
}

static int l_stdout(lua_State *L)
{
        return push_stream(L, 1);
}

static int l_stderr(lua_State *L)
{
        return push_stream(L, 2);
}

/* Sends one proc_* request about p; the caller packs nargs more pairs after {id, op, proc}. */
static ProtoWriter *proc_op_begin(lua_State *L, Process *p, const char *name, uint32_t nargs,
                                  Op **ret)
{
        Op *op = op_new(&p->tg, name, p->cmd, opt_timeout(L, 1, "timeout"));
        if (!op)
                luaL_error(L, "vm %s: %s: out of memory", p->tg.label, name);
        op->push_ok = op_push_true;
        ProtoWriter *w = agent_request_begin(p->tg.agent, &op->req, name, nargs + 1);
        proto_kv_uint(w, "proc", p->req.id);
        *ret = op;
        return w;
}

/* Pushes nil, message when p can no longer take requests; returns 2 then, else 0. */
static int check_alive(lua_State *L, Process *p, const char *what)
{
        if (!p->done)
                return check_running(L, &p->tg, what, p->cmd);
        lua_pushnil(L);
        lua_pushfstring(L, "vm %s: %s %s: the process has exited", p->tg.label, what, p->cmd);
        return 2;
}

static int l_write(lua_State *L)
{
        Process *p = check_process(L, 1);
        size_t len;
        const char *data = luaL_checklstring(L, 2, &len);
        luaL_argcheck(L, len <= PROTO_CHUNK * 4, 2, "at most 1 MiB per write");
        int n = check_alive(L, p, "write");
        if (n)
                return n;
        Op *op;
        ProtoWriter *w = proc_op_begin(L, p, "proc_write", 1, &op);
        proto_kv_bin(w, "data", data, len);
        return op_send(L, op);
}

static int l_close_stdin(lua_State *L)
{
        Process *p = check_process(L, 1);
        int n = check_alive(L, p, "close_stdin");
        if (n)
                return n;
        Op *op;
        (void) proc_op_begin(L, p, "proc_close_stdin", 0, &op);
        return op_send(L, op);
}

static const struct {
        const char *name;
        int sig;
} signals[] = {
    {"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"KILL", SIGKILL},   {"USR1", SIGUSR1},
    {"USR2", SIGUSR2}, {"PIPE", SIGPIPE}, {"ALRM", SIGALRM}, {"TERM", SIGTERM},   {"CHLD", SIGCHLD},
    {"CONT", SIGCONT}, {"STOP", SIGSTOP}, {"TSTP", SIGTSTP}, {"WINCH", SIGWINCH},
};

static int check_signal(lua_State *L, int i)
{
        if (lua_type(L, i) == LUA_TNUMBER) {
                lua_Integer s = luaL_checkinteger(L, i);
                luaL_argcheck(L, s > 0 && s < 65, i, "signal number must be 1..64");
                return (int) s;
        }
        const char *name = luaL_checkstring(L, i);
        if (strncmp(name, "SIG", 3) == 0)
                name += 3;
        for (size_t k = 0; k < sizeof signals / sizeof signals[0]; k++)
                if (strcmp(name, signals[k].name) == 0)
                        return signals[k].sig;
        return luaL_argerror(L, i, lua_pushfstring(L, "unknown signal '%s'", name));
}

/* _signal(sig, group) */
static int l_signal(lua_State *L)
{
        Process *p = check_process(L, 1);
        int sig = check_signal(L, 2);
        bool group = lua_isnoneornil(L, 3) || lua_toboolean(L, 3);
        int n = check_alive(L, p, "signal");
        if (n)
                return n;
        Op *op;
        ProtoWriter *w = proc_op_begin(L, p, "proc_signal", 2, &op);
        proto_kv_int(w, "signal", sig);
        proto_kv_bool(w, "group", group);
        return op_send(L, op);
}

static int l_gc(lua_State *L)
{
        ProcessBox *b = luaL_checkudata(L, 1, PROCESS_MT);
        if (b->p) {
                process_unref(b->p);
                b->p = NULL;
        }
        return 0;
}

static int l_tostring(lua_State *L)
{
        ProcessBox *b = luaL_checkudata(L, 1, PROCESS_MT);
        if (!b->p)
                lua_pushliteral(L, "Process(?)");
        else
                lua_pushfstring(L, "Process(%s: %s, %s)", b->p->tg.label, b->p->cmd,
                                b->p->done      ? "exited"
                                : b->p->started ? "running"
                                                : "starting");
        return 1;
}

/* ---- registration ---- */

static const luaL_Reg methods[] = {
    {"_wait_started", l_wait_started},
    {"_wait_exit", l_wait_exit},
    {"_state", l_state},
    {"_write", l_write},
    {"_close_stdin", l_close_stdin},
    {"_signal", l_signal},
    {"stdout", l_stdout},
    {"stderr", l_stderr},
    {NULL, NULL},
};

void bind_process_register(lua_State *L)
{
        types_register(L, PROCESS_MT, methods, l_gc, NULL, l_tostring);
}
