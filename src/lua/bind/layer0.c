/* layer0.c: direct calls into the guest kernel: provium.buffer, vm:syscall, vm:ioctl.
 *
 * Sections: buffers, syscall names, arguments and results, syscall, ioctl, registration.
 */
#include "layer0.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "file.h"
#include "op.h"
#include "syscalls.h"
#include "types.h"

#define BUFFER_MT  "provium.Buffer"
#define MAX_ARGS   6
#define MAX_BUFFER (1u << 20)

/* ---- buffers ---- */

typedef struct Buffer {
        size_t len;
        unsigned char data[];
} Buffer;

static Buffer *check_buffer(lua_State *L, int i)
{
        return luaL_checkudata(L, i, BUFFER_MT);
}

/* provium.buffer(size | string) -> Buffer (zero-filled, or a copy of the string) */
static int l_buffer_new(lua_State *L)
{
        size_t len;
        const char *init = NULL;
        if (lua_type(L, 1) == LUA_TSTRING)
                init = lua_tolstring(L, 1, &len);
        else {
                lua_Integer n = luaL_checkinteger(L, 1);
                luaL_argcheck(L, n >= 0 && n <= MAX_BUFFER, 1, "size must be 0..1048576");
                len = (size_t) n;
        }
        luaL_argcheck(L, len <= MAX_BUFFER, 1, "at most 1 MiB");
        Buffer *b = lua_newuserdatauv(L, sizeof *b + len, 0);
        b->len = len;
        if (init)
                memcpy(b->data, init, len);
        else
                memset(b->data, 0, len);
        luaL_setmetatable(L, BUFFER_MT);
        return 1;
}

static int l_buffer_len(lua_State *L)
{
        lua_pushinteger(L, (lua_Integer) check_buffer(L, 1)->len);
        return 1;
}

/* b:bytes(i?, j?) -> the bytes i..j (1-based, inclusive; like string.sub) */
static int l_buffer_bytes(lua_State *L)
{
        Buffer *b = check_buffer(L, 1);
        lua_Integer len = (lua_Integer) b->len;
        lua_Integer i = luaL_optinteger(L, 2, 1);
        lua_Integer j = luaL_optinteger(L, 3, -1);
        if (i < 0)
                i = len + i + 1 > 0 ? len + i + 1 : 1;
        else if (i == 0)
                i = 1;
        if (j < 0)
                j = len + j + 1;
        else if (j > len)
                j = len;
        if (i > j)
                lua_pushliteral(L, "");
        else
                lua_pushlstring(L, (const char *) b->data + i - 1, (size_t) (j - i + 1));
        return 1;
}

/* b:string(i?) -> the NUL-terminated string starting at byte i (default 1) */
static int l_buffer_string(lua_State *L)
{
        Buffer *b = check_buffer(L, 1);
        lua_Integer i = luaL_optinteger(L, 2, 1);
        luaL_argcheck(L, i >= 1 && (size_t) i <= b->len + 1, 2, "offset out of range");
        const unsigned char *p = b->data + i - 1;
        size_t max = b->len - (size_t) (i - 1);
        const unsigned char *z = memchr(p, 0, max);
        lua_pushlstring(L, (const char *) p, z ? (size_t) (z - p) : max);
        return 1;
}

/* b:uint(offset, size) -> the little-endian unsigned integer of size 1, 2, 4 or 8 bytes at
 * the 0-based byte offset (as the C structs the kernel fills) */
static int l_buffer_uint(lua_State *L)
{
        Buffer *b = check_buffer(L, 1);
        lua_Integer off = luaL_checkinteger(L, 2);
        lua_Integer size = luaL_optinteger(L, 3, 8);
        luaL_argcheck(L, size == 1 || size == 2 || size == 4 || size == 8, 3,
                      "size must be 1, 2, 4 or 8");
        luaL_argcheck(L, off >= 0 && (size_t) off + (size_t) size <= b->len, 2,
                      "offset out of range");
        uint64_t v = 0;
        for (lua_Integer k = size - 1; k >= 0; k--)
                v = v << 8 | b->data[off + k];
        lua_pushinteger(L, (lua_Integer) v);
        return 1;
}

/* b:set(offset, bytes): writes bytes at the 0-based offset */
static int l_buffer_set(lua_State *L)
{
        Buffer *b = check_buffer(L, 1);
        lua_Integer off = luaL_checkinteger(L, 2);
        size_t n;
        const char *s = luaL_checklstring(L, 3, &n);
        luaL_argcheck(L, off >= 0 && (size_t) off + n <= b->len, 2, "does not fit the buffer");
        memcpy(b->data + off, s, n);
        return 0;
}

static int l_buffer_tostring(lua_State *L)
{
        lua_pushfstring(L, "Buffer(%d bytes)", (int) check_buffer(L, 1)->len);
        return 1;
}

/* ---- syscall names ---- */

static int syscall_number(lua_State *L, const Target *tg, int i)
{
        if (lua_type(L, i) == LUA_TNUMBER) {
                lua_Integer nr = luaL_checkinteger(L, i);
                luaL_argcheck(L, nr >= 0 && nr < 4096, i, "syscall number must be 0..4095");
                return (int) nr;
        }
        const char *name = luaL_checkstring(L, i);
        const char *arch = agent_client_arch(tg->agent);
        if (arch && strcmp(arch, "x86_64") != 0)
                luaL_error(L,
                           "vm %s: syscall %s: names are known for x86_64, the guest is %s; "
                           "pass the number",
                           tg->label, name, arch);
        for (size_t k = 0; k < sizeof syscalls_x86_64 / sizeof syscalls_x86_64[0]; k++)
                if (strcmp(syscalls_x86_64[k].name, name) == 0)
                        return syscalls_x86_64[k].nr;
        return luaL_argerror(L, i, lua_pushfstring(L, "unknown syscall '%s'", name));
}

/* The name of syscall nr for its op event: from the x86_64 table when the guest is x86_64 (or
 * has not said), else (or when the table lacks it) the number in decimal. */
static void syscall_event_name(const Target *tg, int nr, char *out, size_t size)
{
        const char *arch = agent_client_arch(tg->agent);
        if (!arch || strcmp(arch, "x86_64") == 0)
                for (size_t k = 0; k < sizeof syscalls_x86_64 / sizeof syscalls_x86_64[0]; k++)
                        if (syscalls_x86_64[k].nr == nr) {
                                snprintf(out, size, "%s", syscalls_x86_64[k].name);
                                return;
                        }
        snprintf(out, size, "%d", nr);
}

/* ---- arguments and results ---- */

/* Raises on an argument pack_arg cannot take: before the op is allocated, which a raise would
 * leak. */
static void check_arg(lua_State *L, int i)
{
        if (!lua_isinteger(L, i) && !luaL_testudata(L, i, BUFFER_MT) &&
            lua_type(L, i) != LUA_TSTRING && !lua_isboolean(L, i) && !lua_isnil(L, i))
                luaL_argerror(L, i, "integer, string or provium.buffer expected");
        luaL_argcheck(L, lua_type(L, i) != LUA_TSTRING || lua_rawlen(L, i) < MAX_BUFFER, i,
                      "at most 1 MiB");
}

/* Packs the value at i as a syscall argument: integer, Buffer (in and out), string (in). */
static void pack_arg(lua_State *L, int i, ProtoWriter *w)
{
        if (lua_isinteger(L, i)) {
                msgpack_pack_int64(&w->pk, lua_tointeger(L, i));
        } else if (luaL_testudata(L, i, BUFFER_MT)) {
                Buffer *b = lua_touserdata(L, i);
                msgpack_pack_map(&w->pk, 2);
                proto_kv_bin(w, "buf", b->data, b->len);
                proto_kv_bool(w, "out", true);
        } else if (lua_type(L, i) == LUA_TSTRING) {
                size_t n;
                const char *s = lua_tolstring(L, i, &n); /* its size: check_arg's */
                msgpack_pack_map(&w->pk, 1);
                /* strings go in NUL-terminated, as paths and names usually are */
                proto_key(w, "buf");
                msgpack_pack_bin(&w->pk, n + 1);
                msgpack_pack_bin_body(&w->pk, s, n);
                msgpack_pack_bin_body(&w->pk, "", 1);
        } else if (lua_isboolean(L, i) || lua_isnil(L, i)) {
                msgpack_pack_int64(&w->pk, lua_toboolean(L, i));
        } else
                luaL_argerror(L, i, "integer, string or provium.buffer expected");
}

/* The reply {ret, errno, bufs}: copies each bufs[k] back into the k-th Buffer argument (kept
 * in the op's registry table) and pushes ret, errno name or nil, errno number. */
typedef struct SysOp {
        Op op;
        int args_ref;     /* table of the Buffer arguments, in order */
        char syscall[32]; /* its op event's syscall: the name, or the number in decimal */
        int64_t request;  /* an ioctl's request */
} SysOp;

static int push_sys_result(lua_State *co, Op *op, const msgpack_object *reply)
{
        SysOp *so = (SysOp *) op;
        int64_t ret = 0, err = 0;
        if (proto_get_int(reply, "ret", &ret) != 1 || proto_get_int(reply, "errno", &err) != 1 ||
            err < 0 || err > 4095)
                return op_push_bad_reply(co, op, "no return value, or no errno");
        const msgpack_object *bufs = proto_get(reply, "bufs");
        lua_rawgeti(co, LUA_REGISTRYINDEX, so->args_ref);
        for (uint32_t k = 0; bufs && bufs->type == MSGPACK_OBJECT_ARRAY && k < bufs->via.array.size;
             k++) {
                const msgpack_object *o = &bufs->via.array.ptr[k];
                if (lua_rawgeti(co, -1, (lua_Integer) k + 1) == LUA_TUSERDATA &&
                    o->type == MSGPACK_OBJECT_BIN) {
                        Buffer *b = lua_touserdata(co, -1);
                        size_t n = o->via.bin.size < b->len ? o->via.bin.size : b->len;
                        memcpy(b->data, o->via.bin.ptr, n); /* never beyond our buffer */
                }
                lua_pop(co, 1);
        }
        lua_pop(co, 1);
        luaL_unref(co, LUA_REGISTRYINDEX, so->args_ref);
        so->args_ref = LUA_NOREF;
        lua_pushinteger(co, ret);
        if (err) {
                const char *name = proto_errno_name((int) err);
                lua_pushstring(co, name ? name : "EUNKNOWN");
        } else
                lua_pushnil(co);
        lua_pushinteger(co, err);
        return 3;
}

/* The op event of a call: the return value (-1 when the agent made no call) and its errno. */
static int64_t reply_int(const msgpack_object *reply, const char *key, int64_t def)
{
        int64_t v = def;
        if (reply && proto_get_int(reply, key, &v) != 1)
                v = def;
        return v;
}

static const char *sys_event_failed(Op *op, const msgpack_object *reply)
{
        int64_t err = reply_int(reply, "errno", 0);
        if (err == 0)
                return NULL;
        const char *name = proto_errno_name((int) err);
        return name ? name : "EUNKNOWN";
}

static void syscall_event_fields(Op *op, ProtoWriter *w, const msgpack_object *reply)
{
        proto_kv_str(w, "syscall", ((SysOp *) op)->syscall);
        proto_kv_int(w, "ret", reply_int(reply, "ret", -1));
}

static void ioctl_event_fields(Op *op, ProtoWriter *w, const msgpack_object *reply)
{
        proto_kv_int(w, "request", ((SysOp *) op)->request);
        proto_kv_int(w, "ret", reply_int(reply, "ret", -1));
}

static const OpEventHooks syscall_event = {2, syscall_event_fields, sys_event_failed};
static const OpEventHooks ioctl_event = {2, ioctl_event_fields, sys_event_failed};

static SysOp *sys_op_new(lua_State *L, const Target *tg, const char *name, const char *object,
                         int first, int last)
{
        SysOp *so = (SysOp *) op_new_sized(
            tg, name, object, runtime_config(runtime_get(L))->op_timeout_s, sizeof(SysOp));
        if (!so)
                luaL_error(L, "vm %s: %s: out of memory", tg->label, name);
        so->op.push_ok = push_sys_result;
        lua_newtable(L);
        int n = 0;
        for (int i = first; i <= last; i++)
                if (luaL_testudata(L, i, BUFFER_MT) || lua_type(L, i) == LUA_TSTRING) {
                        lua_pushvalue(L, i);
                        lua_rawseti(L, -2, ++n);
                }
        so->args_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        return so;
}

/* ---- syscall ---- */

/* vm:_syscall(name | nr, args...) -> ret, errno name | nil, errno */
int bind_vm_syscall(lua_State *L)
{
        Target tg = check_target(L, 1);
        int nr = syscall_number(L, &tg, 2);
        int nargs = lua_gettop(L) - 2;
        luaL_argcheck(L, nargs <= MAX_ARGS, 2 + MAX_ARGS + 1, "at most 6 syscall arguments");
        const char *object =
            lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : lua_pushfstring(L, "#%d", nr);
        int n = check_running(L, &tg, "syscall", object);
        if (n)
                return n;
        for (int i = 3; i < 3 + nargs; i++) /* raise on bad arguments before allocating */
                check_arg(L, i);
        SysOp *so = sys_op_new(L, &tg, "syscall", object, 3, 2 + nargs);
        so->op.event = &syscall_event;
        syscall_event_name(&tg, nr, so->syscall, sizeof so->syscall);
        ProtoWriter *w = agent_request_begin(tg.agent, &so->op.req, "syscall", 2);
        proto_kv_uint(w, "nr", (uint64_t) nr);
        proto_key(w, "args");
        msgpack_pack_array(&w->pk, (uint32_t) nargs);
        for (int i = 3; i < 3 + nargs; i++)
                pack_arg(L, i, w);
        return op_send(L, &so->op);
}

/* ---- ioctl ---- */

/* vm:_ioctl(path | File, request, arg) -> ret, errno name | nil, errno */
int bind_vm_ioctl(lua_State *L)
{
        Target tg = check_target(L, 1);
        uint64_t fd = 0;
        bool open = false;
        bool is_file = bind_file_handle(L, 2, &fd, &open);
        if (!is_file)
                luaL_argexpected(L, lua_type(L, 2) == LUA_TSTRING, 2, "path or File");
        else if (!open)
                luaL_argerror(L, 2, "the file is closed");
        lua_Integer request = luaL_checkinteger(L, 3);
        luaL_argcheck(L, request >= 0 && request <= 0xffffffffLL, 3, "request must fit 32 bits");
        if (lua_isnone(L, 4))
                lua_pushinteger(L, 0);
        lua_settop(L, 4);
        check_arg(L, 4);
        const char *object = is_file ? "(file)" : lua_tostring(L, 2);
        int n = check_running(L, &tg, "ioctl", object);
        if (n)
                return n;
        SysOp *so = sys_op_new(L, &tg, "ioctl", object, 4, 4);
        so->op.event = &ioctl_event;
        so->request = request;
        ProtoWriter *w = agent_request_begin(tg.agent, &so->op.req, "ioctl", 3);
        if (is_file)
                proto_kv_uint(w, "fd", fd);
        else
                proto_kv_str(w, "path", lua_tostring(L, 2));
        proto_kv_uint(w, "request", (uint64_t) request);
        proto_key(w, "arg");
        pack_arg(L, 4, w);
        return op_send(L, &so->op);
}

/* ---- registration ---- */

static const luaL_Reg buffer_methods[] = {
    {"len", l_buffer_len},   {"bytes", l_buffer_bytes}, {"string", l_buffer_string},
    {"uint", l_buffer_uint}, {"set", l_buffer_set},     {NULL, NULL},
};

void bind_layer0_register(lua_State *L)
{
        types_register(L, BUFFER_MT, buffer_methods, NULL, NULL, l_buffer_tostring);
        lua_pop(L, 1);
        luaL_getmetatable(L, BUFFER_MT);
        lua_pushcfunction(L, l_buffer_len);
        lua_setfield(L, -2, "__len");
        lua_pop(L, 1);
}

void bind_layer0_push_buffer_constructor(lua_State *L)
{
        lua_pushcfunction(L, l_buffer_new);
}
