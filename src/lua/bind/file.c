/* file.c: guest file handles (vm:open) and tails, as Lua userdata.
 *
 * A handle is the agent's handle number on one connection; every method is one request on
 * that connection. Sections: userdata, open, methods, tail, registration.
 */
#include "file.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "op.h"
#include "stream.h"
#include "types.h"

#define FILE_MT "provium.File"

typedef struct FileBox {
        Target tg;
        uint64_t fd;
        bool open;
        char *path;
} FileBox;

/* ---- userdata ---- */

static FileBox *check_file(lua_State *L, int i)
{
        return luaL_checkudata(L, i, FILE_MT);
}

/* Pushes nil, message when the handle cannot take requests; returns 2 then, else 0. */
static int check_open(lua_State *L, FileBox *f, const char *what)
{
        if (!f->open) {
                lua_pushnil(L);
                lua_pushfstring(L, "vm %s: %s %s: the file is closed", f->tg.label, what, f->path);
                return 2;
        }
        return check_running(L, &f->tg, what, f->path);
}

static int l_gc(lua_State *L)
{
        FileBox *f = check_file(L, 1);
        /* The handle itself is released with its connection; only our memory goes here. */
        free(f->path);
        f->path = NULL;
        f->open = false;
        return 0;
}

static int l_tostring(lua_State *L)
{
        FileBox *f = check_file(L, 1);
        lua_pushfstring(L, "File(%s:%s%s)", f->tg.label, f->path ? f->path : "?",
                        f->open ? "" : ", closed");
        return 1;
}

/* A handle's operation, with what its request asked for, to hold the reply to. */
typedef struct FileOp {
        Op op;
        uint64_t asked; /* read: at most these bytes; write: these bytes */
} FileOp;

/* opts: stack index of the method's options table (timeout), or 0 for none */
static Op *file_op(lua_State *L, FileBox *f, const char *name, int opts)
{
        Op *op = op_new_sized(&f->tg, name, f->path, opt_timeout(L, opts ? opts : 1, "timeout"),
                              sizeof(FileOp));
        if (!op)
                luaL_error(L, "vm %s: %s %s: out of memory", f->tg.label, name, f->path);
        return op;
}

/* ---- open ---- */

static int push_file(lua_State *co, Op *op, const msgpack_object *reply)
{
        uint64_t fd;
        if (proto_get_uint(reply, "fd", &fd) != 1) {
                lua_pushnil(co);
                lua_pushfstring(co, "vm %s: open %s: the agent's reply has no fd", op->vm_name,
                                op->object);
                return 2;
        }
        FileBox *f = lua_newuserdatauv(co, sizeof *f, 0);
        *f = (FileBox){.fd = fd};
        luaL_setmetatable(co, FILE_MT);
        f->tg.vm = op->vm;
        f->tg.agent = op->agent;
        strncpy(f->tg.label, op->vm_name, sizeof f->tg.label - 1);
        f->path = strdup(op->object);
        f->open = f->path != NULL;
        return 1;
}

static bool valid_flags(const char *m)
{
        static const char *const ok[] = {"r", "r+", "w", "w+", "a", "a+", "wx", "w+x"};
        for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
                if (strcmp(m, ok[i]) == 0)
                        return true;
        return false;
}

/* vm:_open(path, mode, opts) -> File | nil, message */
int bind_vm_open(lua_State *L)
{
        Target tg = check_target(L, 1);
        const char *path = check_cstring(L, 2);
        const char *mode = luaL_optstring(L, 3, "r");
        luaL_argcheck(L, valid_flags(mode), 3, "mode must be r, r+, w, w+, a, a+, wx or w+x");
        lua_Integer perm = opt_mode(L, 4, "perm", 0644);
        int n = check_running(L, &tg, "open", path);
        if (n)
                return n;
        Op *op = op_new(&tg, "open", path, opt_timeout(L, 4, "timeout"));
        if (!op)
                return luaL_error(L, "vm %s: open %s: out of memory", tg.label, path);
        op->push_ok = push_file;
        ProtoWriter *w = agent_request_begin(tg.agent, &op->req, "open", 3);
        proto_kv_str(w, "path", path);
        proto_kv_str(w, "flags", mode);
        proto_kv_uint(w, "mode", (uint64_t) perm);
        return op_send(L, op);
}

/* ---- methods ---- */

static int push_data(lua_State *co, Op *op, const msgpack_object *reply)
{
        const char *p = "";
        size_t n = 0;
        if (proto_get_bytes(reply, "data", &p, &n) != 1)
                return op_push_bad_reply(co, op, "no data");
        if (n > ((FileOp *) op)->asked)
                return op_push_bad_reply(co, op, "more bytes than asked for");
        lua_pushlstring(co, p, n);
        return 1;
}

static int push_n(lua_State *co, Op *op, const msgpack_object *reply)
{
        uint64_t n = 0;
        if (proto_get_uint(reply, "n", &n) != 1)
                return op_push_bad_reply(co, op, "no byte count");
        if (n > ((FileOp *) op)->asked)
                return op_push_bad_reply(co, op, "more bytes written than given");
        lua_pushinteger(co, (lua_Integer) n);
        return 1;
}

static int push_pos(lua_State *co, Op *op, const msgpack_object *reply)
{
        uint64_t pos = 0;
        if (proto_get_uint(reply, "pos", &pos) != 1 || pos > INT64_MAX)
                return op_push_bad_reply(co, op, "no position");
        lua_pushinteger(co, (lua_Integer) pos);
        return 1;
}

/* file:_read(n) -> bytes ("" at the end of the file) */
static int l_read(lua_State *L)
{
        FileBox *f = check_file(L, 1);
        lua_Integer want = luaL_optinteger(L, 2, PROTO_CHUNK);
        luaL_argcheck(L, want >= 0 && want <= PROTO_CHUNK, 2, "count must be 0..262144");
        int n = check_open(L, f, "read");
        if (n)
                return n;
        Op *op = file_op(L, f, "read", 3);
        op->push_ok = push_data;
        ((FileOp *) op)->asked = (uint64_t) want;
        ProtoWriter *w = agent_request_begin(f->tg.agent, &op->req, "fread", 2);
        proto_kv_uint(w, "fd", f->fd);
        proto_kv_uint(w, "n", (uint64_t) want);
        return op_send(L, op);
}

/* file:_write(data) -> bytes written */
static int l_write(lua_State *L)
{
        FileBox *f = check_file(L, 1);
        size_t len;
        const char *data = luaL_checklstring(L, 2, &len);
        luaL_argcheck(L, len <= PROTO_CHUNK, 2, "at most 262144 bytes per write");
        int n = check_open(L, f, "write");
        if (n)
                return n;
        Op *op = file_op(L, f, "write", 3);
        op->push_ok = push_n;
        ((FileOp *) op)->asked = len;
        ProtoWriter *w = agent_request_begin(f->tg.agent, &op->req, "fwrite", 2);
        proto_kv_uint(w, "fd", f->fd);
        proto_kv_bin(w, "data", data, len);
        return op_send(L, op);
}

/* file:_seek(whence, offset) -> position */
static int l_seek(lua_State *L)
{
        FileBox *f = check_file(L, 1);
        static const char *const whences[] = {"set", "cur", "end", NULL};
        int wi = luaL_checkoption(L, 2, "cur", whences);
        lua_Integer off = luaL_optinteger(L, 3, 0);
        int n = check_open(L, f, "seek");
        if (n)
                return n;
        Op *op = file_op(L, f, "seek", 4);
        op->push_ok = push_pos;
        ProtoWriter *w = agent_request_begin(f->tg.agent, &op->req, "seek", 3);
        proto_kv_uint(w, "fd", f->fd);
        proto_kv_str(w, "whence", whences[wi]);
        proto_kv_int(w, "offset", off);
        return op_send(L, op);
}

static int l_close(lua_State *L)
{
        FileBox *f = check_file(L, 1);
        int n = check_open(L, f, "close");
        if (n)
                return n;
        f->open = false; /* closed from our side whatever the agent answers */
        Op *op = file_op(L, f, "close", 0);
        op->push_ok = op_push_true;
        ProtoWriter *w = agent_request_begin(f->tg.agent, &op->req, "close", 1);
        proto_kv_uint(w, "fd", f->fd);
        return op_send(L, op);
}

/* ---- tail ---- */

typedef struct Tail {
        AgentRequest req;
        Stream *stream;
        AgentClient *agent;
} Tail;

static void on_tail_chunk(AgentRequest *req, const char *kind, const char *data, size_t len,
                          const msgpack_object *msg)
{
        Tail *t = req->data;
        if (data)
                stream_push(t->stream, data, len);
}

static void on_tail_reply(AgentRequest *req, int status, const msgpack_object *reply)
{
        Tail *t = req->data;
        bool ok = false;
        const char *name = "";
        size_t nlen = 0;
        if (status == 0 && proto_get_bool(reply, "ok", &ok) == 1 && !ok)
                (void) proto_get_bytes(reply, "error", &name, &nlen);
        bool cancelled = nlen == 9 && memcmp(name, "ECANCELED", 9) == 0;
        char msg[160];
        if (status < 0)
                snprintf(msg, sizeof msg, "the tail ended: %s", agent_client_close_text(status));
        else
                snprintf(msg, sizeof msg, "the tail ended: %.*s", (int) nlen, name);
        stream_end(t->stream, ok || cancelled ? NULL : msg);
        stream_release(t->stream);
        free(t);
}

/* The reader closed the stream: ask the agent to stop; its reply frees the tail. */
static void on_stream_closed(void *data)
{
        Tail *t = data;
        if (t->req.client)
                agent_client_send_cancel(t->agent, t->req.id);
}

/* file:_tail() / vm:_tail(path) -> Stream | nil, message */
static int start_tail(lua_State *L, const Target *tg, const char *path)
{
        int n = check_running(L, tg, "tail", path);
        if (n)
                return n;
        char name[160];
        snprintf(name, sizeof name, "vm %s: tail %s", tg->label, path);
        Tail *t = calloc(1, sizeof *t);
        Stream *s = t ? stream_new(name) : NULL;
        if (!s) {
                free(t);
                return luaL_error(L, "%s: out of memory", name);
        }
        t->stream = s;
        t->agent = tg->agent;
        t->req = (AgentRequest){.on_chunk = on_tail_chunk, .on_reply = on_tail_reply, .data = t};
        ProtoWriter *w = agent_request_begin(tg->agent, &t->req, "tail", 1);
        proto_kv_str(w, "path", path);
        int r = agent_request_send(tg->agent, &t->req, 0);
        if (r < 0) {
                stream_release(s);
                free(t);
                lua_pushnil(L);
                lua_pushfstring(L, "%s: %s", name, strerror(-r));
                return 2;
        }
        stream_on_close(s, on_stream_closed, t);
        bind_stream_push(L, s);
        return 1;
}

static int l_tail(lua_State *L)
{
        FileBox *f = check_file(L, 1);
        int n = check_open(L, f, "tail");
        if (n)
                return n;
        return start_tail(L, &f->tg, f->path);
}

int bind_vm_tail(lua_State *L)
{
        Target tg = check_target(L, 1);
        return start_tail(L, &tg, check_cstring(L, 2));
}

bool bind_file_handle(lua_State *L, int i, uint64_t *ret_fd, bool *ret_open)
{
        FileBox *f = luaL_testudata(L, i, FILE_MT);
        if (!f)
                return false;
        *ret_fd = f->fd;
        *ret_open = f->open;
        return true;
}

/* ---- registration ---- */

static const luaL_Reg methods[] = {
    {"_read", l_read},   {"_write", l_write}, {"_seek", l_seek},
    {"_close", l_close}, {"_tail", l_tail},   {NULL, NULL},
};

void bind_file_register(lua_State *L)
{
        types_register(L, FILE_MT, methods, l_gc, NULL, l_tostring);
}
