/* op.c: guest operations from Lua (see op.h). */
#include "op.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"

Vm *check_vm(lua_State *L, int i)
{
        Vm **slot = luaL_checkudata(L, i, VM_MT);
        if (!*slot)
                luaL_error(L, "vm: this VM was closed at the end of its file");
        return *slot;
}

Target check_target(lua_State *L, int i)
{
        Target tg = {0};
        WorkerBox *w = luaL_testudata(L, i, WORKER_MT);
        if (w) {
                if (!*w->slot)
                        luaL_error(L, "worker: its VM was closed at the end of its file");
                tg.vm = *w->slot;
                tg.agent = w->agent;
                snprintf(tg.label, sizeof tg.label, "%s/worker%d", vm_name(tg.vm), w->index);
                return tg;
        }
        luaL_argexpected(L, luaL_testudata(L, i, VM_MT) != NULL, i, "VM or Worker");
        tg.vm = check_vm(L, i);
        tg.agent = vm_agent(tg.vm);
        snprintf(tg.label, sizeof tg.label, "%s", vm_name(tg.vm));
        return tg;
}

void buf_add(Buf *b, const char *p, size_t n)
{
        if (b->oom || b->too_big || n == 0)
                return;
        if (n > OP_OUTPUT_MAX - b->len) {
                b->too_big = true;
                return;
        }
        if (b->cap - b->len < n) {
                size_t cap = b->cap ? b->cap : 4096;
                while (cap - b->len < n)
                        cap *= 2;
                char *q = realloc(b->p, cap);
                if (!q) {
                        b->oom = true;
                        return;
                }
                b->p = q;
                b->cap = cap;
        }
        memcpy(b->p + b->len, p, n);
        b->len += n;
}

Op *op_new_sized(const Target *tg, const char *name, const char *object, double timeout_s,
                 size_t size)
{
        assert(size >= sizeof(Op));
        Op *op = calloc(1, size);
        if (!op)
                return NULL;
        op->vm = tg->vm;
        op->agent = tg->agent;
        op->name = name;
        op->vm_name = strdup(tg->label);
        op->object = strdup(object);
        op->timeout_s = timeout_s;
        op->t0 = events_mono_ns();
        op->req.data = op;
        op->req.on_reply = op_on_reply;
        op->req.on_chunk = op_on_chunk;
        op->pending.cancel = op_cancel;
        if (!op->vm_name || !op->object) {
                free(op->vm_name);
                free(op->object);
                free(op);
                return NULL;
        }
        return op;
}

Op *op_new(const Target *tg, const char *name, const char *object, double timeout_s)
{
        return op_new_sized(tg, name, object, timeout_s, sizeof(Op));
}

void op_free(Op *op)
{
        if (op->cleanup)
                op->cleanup(op);
        free(op->out.p);
        free(op->err.p);
        free(op->vm_name);
        free(op->object);
        free(op);
}

/* The op event: where it ran (VM, and the file's running test), what, how long, the result. */
static void emit_op(Op *op, bool ok, const char *error, const msgpack_object *reply)
{
        const OpEventHooks *hooks = op->event;
        const char *failed = hooks && hooks->failed && reply ? hooks->failed(op, reply) : NULL;
        EventBuilder ev;
        event_begin(&ev, "op", 5 + (hooks ? hooks->nfields : 0));
        proto_kv_str(&ev.w, "vm", op->vm_name);
        proto_kv_str(&ev.w, "op", op->name);
        proto_kv_uint(&ev.w, "duration_ns", events_mono_ns() - op->t0);
        proto_kv_bool(&ev.w, "ok", ok && !failed);
        proto_kv_str(&ev.w, "error", failed ? failed : error ? error : "");
        if (hooks)
                hooks->pack(op, &ev.w, reply);
        event_end(&ev);
}

/* For an operation the guest never answered: the console's last lines, which say why as often
 * as not (a lockup, the OOM killer), after the message on top of co. */
static void append_console(lua_State *co, Op *op)
{
        char *tail = op->vm ? vm_console_excerpt(op->vm, 6) : NULL;
        if (tail && *tail) {
                lua_pushfstring(co, "\n--- last console lines ---\n%s", tail);
                lua_concat(co, 2);
        }
        free(tail);
}

/* The message for a failed operation: names the VM, the operation, the object, the reason. */
static void push_failure(lua_State *co, Op *op, int status, const msgpack_object *reply)
{
        const char *name = "", *msg = "";
        size_t nlen = 0, mlen = 0;
        if (status == 0) {
                (void) proto_get_bytes(reply, "error", &name, &nlen);
                (void) proto_get_bytes(reply, "msg", &msg, &mlen);
                lua_pushfstring(co, "vm %s: %s %s: %s (%s)", op->vm_name, op->name, op->object,
                                lua_pushlstring(co, name, nlen), lua_pushlstring(co, msg, mlen));
                lua_replace(co, -3);
                lua_pop(co, 1);
        } else if (status == -ETIMEDOUT && op->agent_timeout_s > 0) {
                lua_pushfstring(co,
                                "vm %s: %s %s: no reply from the agent %f s after its own %f s "
                                "timeout: the agent or the guest is hung",
                                op->vm_name, op->name, op->object,
                                op->timeout_s - op->agent_timeout_s, op->agent_timeout_s);
                append_console(co, op);
        } else if (status == -ETIMEDOUT) {
                lua_pushfstring(co, "vm %s: %s %s: timed out after %f s", op->vm_name, op->name,
                                op->object, op->timeout_s);
                append_console(co, op);
        } else if (status == -EHOSTDOWN) {
                lua_pushfstring(co,
                                "vm %s: %s %s: no frame from the agent for %f s, not even an "
                                "answer to its heartbeat: the agent or the guest is hung",
                                op->vm_name, op->name, op->object,
                                2.0 * (double) agent_client_heartbeat_ms() / 1000.0);
                append_console(co, op);
        } else if (status == -EBADMSG || status == -EMSGSIZE)
                lua_pushfstring(co, "vm %s: %s %s: %s: its connection was closed", op->vm_name,
                                op->name, op->object, agent_client_close_text(status));
        else if (status == -ESTALE)
                lua_pushfstring(co, "vm %s: %s %s: %s", op->vm_name, op->name, op->object,
                                STALE_MSG);
        else {
                const char *death = op->vm ? vm_death_reason(op->vm) : NULL;
                if (death)
                        lua_pushfstring(co, "vm %s: %s %s: the VM died\n%s", op->vm_name, op->name,
                                        op->object, death);
                else
                        lua_pushfstring(co, "vm %s: %s %s: %s", op->vm_name, op->name, op->object,
                                        strerror(-status));
        }
}

typedef struct OpReply {
        Op *op;
        int status;
        bool ok;
        const msgpack_object *reply;
} OpReply;

/* What the parked caller gets: push_ok's values, or nil and why the operation failed. */
static int push_reply(lua_State *L, void *ud)
{
        OpReply *r = ud;
        Op *op = r->op;
        if (r->status == 0 && r->ok && !op->out.oom && !op->err.oom && !op->out.too_big &&
            !op->err.too_big)
                return op->push_ok(L, op, r->reply);
        lua_pushnil(L);
        if (op->out.oom || op->err.oom)
                lua_pushfstring(L, "vm %s: %s %s: out of memory on the host", op->vm_name, op->name,
                                op->object);
        else if (op->out.too_big || op->err.too_big)
                lua_pushfstring(L,
                                "vm %s: %s %s: its %s passed %d MiB, more than a run keeps "
                                "(run_async streams it; or redirect it to a file)",
                                op->vm_name, op->name, op->object,
                                op->out.too_big ? "stdout" : "stderr", (int) (OP_OUTPUT_MAX >> 20));
        else
                push_failure(L, op, r->status, r->reply);
        return 2;
}

void op_on_reply(AgentRequest *req, int status, const msgpack_object *reply)
{
        Op *op = req->data;
        bool ok = false;
        if (status == 0 && proto_get_bool(reply, "ok", &ok) != 1)
                ok = false;
        const char *errname = NULL;
        size_t errlen = 0;
        if (status == 0 && !ok)
                (void) proto_get_bytes(reply, "error", &errname, &errlen);
        char ebuf[32] = "";
        if (errname)
                snprintf(ebuf, sizeof ebuf, "%.*s", (int) errlen, errname);
        emit_op(op, status == 0 && ok, status < 0 ? strerror(-status) : ebuf,
                status == 0 ? reply : NULL);

        if (runtime_pending_alive(&op->pending)) {
                OpReply r = {.op = op, .status = status, .ok = ok, .reply = reply};
                char what[256];
                snprintf(what, sizeof what, "vm %s: %s %s", op->vm_name, op->name, op->object);
                /* Resume through op->pending itself: the runtime matches it by address. */
                runtime_resume_push(&op->pending, push_reply, &r, what);
        }
        op_free(op);
}

void op_on_chunk(AgentRequest *req, const char *kind, const char *data, size_t len,
                 const msgpack_object *msg)
{
        Op *op = req->data;
        if (!data)
                return; /* "ack" and other bookkeeping chunks */
        if (strcmp(kind, "stderr") == 0)
                buf_add(&op->err, data, len);
        else
                buf_add(&op->out, data, len);
}

int op_push_bad_reply(lua_State *co, const Op *op, const char *what)
{
        lua_pushnil(co);
        lua_pushfstring(co, "vm %s: %s %s: the agent's reply is not valid: %s", op->vm_name,
                        op->name, op->object, what);
        return 2;
}

double check_seconds(lua_State *L, double s, const char *what, bool none_ok)
{
        if ((s >= 0 && s <= OP_SECONDS_MAX) || (none_ok && s == -1))
                return s;
        char msg[256];
        snprintf(msg, sizeof msg, "%s must be a number of seconds from 0 (none) to %.0f, got %g",
                 what, OP_SECONDS_MAX, s);
        luaL_error(L, "%s", msg);
        return 0;
}

uint64_t seconds_to_ms(double s)
{
        return s > 0 ? (uint64_t) ceil(s * 1000) : 0;
}

double opt_timeout(lua_State *L, int opts, const char *field)
{
        Runtime *rt = runtime_get(L);
        double def = runtime_config(rt)->op_timeout_s;
        if (lua_type(L, opts) != LUA_TTABLE)
                return def;
        lua_getfield(L, opts, field);
        double t = lua_isnil(L, -1) ? def : luaL_checknumber(L, -1);
        lua_pop(L, 1);
        char what[96];
        snprintf(what, sizeof what, "option '%s'", field);
        return check_seconds(L, t, what, false);
}

const char *check_cstring(lua_State *L, int i)
{
        size_t n;
        const char *s = luaL_checklstring(L, i, &n);
        luaL_argcheck(L, strlen(s) == n, i, "a NUL byte in the string");
        return s;
}

const char *opt_string(lua_State *L, int opts, const char *field)
{
        if (lua_type(L, opts) != LUA_TTABLE)
                return NULL;
        lua_getfield(L, opts, field);
        const char *s = NULL;
        if (!lua_isnil(L, -1)) {
                size_t n = 0;
                if (lua_type(L, -1) != LUA_TSTRING)
                        luaL_error(L, "option '%s' must be a string", field);
                s = lua_tolstring(L, -1, &n);
                if (strlen(s) != n)
                        luaL_error(L, "option '%s': a NUL byte in the string", field);
        }
        lua_pop(L, 1); /* still referenced by the options table */
        return s;
}

/* Checks that the VM can take operations; otherwise pushes nil, message. Returns 0 or 2. */
int check_running(lua_State *L, const Target *tg, const char *op, const char *object)
{
        Vm *vm = tg->vm;
        /* A paused VM takes requests: they are answered once it resumes (or time out). */
        VmState st = vm_state(vm);
        if ((st == VM_RUNNING || st == VM_PAUSED) && agent_client_ready(tg->agent))
                return 0;
        lua_pushnil(L);
        if (agent_client_retired(tg->agent)) {
                lua_pushfstring(L, "vm %s: %s %s: %s", tg->label, op, object, STALE_MSG);
                return 2;
        }
        const char *death = vm_death_reason(vm);
        int closed = agent_client_closed_status(tg->agent);
        if (!death && (st == VM_RUNNING || st == VM_PAUSED) && closed) {
                lua_pushfstring(L, "vm %s: %s %s: its agent connection is closed: %s", tg->label,
                                op, object, agent_client_close_text(closed));
                return 2;
        }
        if (death)
                lua_pushfstring(L, "vm %s: %s %s: the VM is not running\n%s", vm_name(vm), op,
                                object, death);
        else
                lua_pushfstring(L, "vm %s: %s %s: the VM is %s%s", vm_name(vm), op, object,
                                vm_state_name(vm_state(vm)),
                                vm_state(vm) == VM_DEFINED ? " (call vm:boot() first)" : "");
        return 2;
}

/* The task waiting for op was abandoned: stop the operation in the guest too. */
void op_cancel(Pending *p)
{
        Op *op = (Op *) ((char *) p - offsetof(Op, pending));
        AgentClient *c = op->req.client;
        if (c) {
                agent_client_send_cancel(c, op->req.id);
                agent_request_cancel(&op->req);
        }
        op_free(op);
}

int op_send(lua_State *L, Op *op)
{
        uint64_t timeout_ms = seconds_to_ms(op->timeout_s);
        int r = agent_request_send(op->agent, &op->req, timeout_ms);
        if (r < 0) {
                lua_pushnil(L);
                lua_pushfstring(L, "vm %s: %s %s: %s", op->vm_name, op->name, op->object,
                                strerror(-r));
                op_free(op);
                return 2;
        }
        return runtime_wait(L, &op->pending);
}

bool has_field(lua_State *L, int opts, const char *field)
{
        if (lua_type(L, opts) != LUA_TTABLE)
                return false;
        bool has = lua_getfield(L, opts, field) != LUA_TNIL;
        lua_pop(L, 1);
        return has;
}

int op_push_true(lua_State *co, Op *op, const msgpack_object *reply)
{
        lua_pushboolean(co, 1);
        return 1;
}

lua_Integer opt_mode(lua_State *L, int opts, const char *field, lua_Integer def)
{
        lua_Integer mode = def;
        if (lua_type(L, opts) == LUA_TTABLE) {
                lua_getfield(L, opts, field);
                mode = luaL_optinteger(L, -1, def);
                lua_pop(L, 1);
        }
        if (mode < 0 || mode > 07777)
                luaL_argerror(L, opts, lua_pushfstring(L, "%s must be 0..07777", field));
        return mode;
}
