/* net.c: the provium.Bridge userdata's primitives and vm:_add_nic. The prelude builds the
 * public network API on them (addresses, names, impairment handles).
 *
 * Sections: bridges, network cards, registration.
 */
#include "net.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "events.h"
#include "op.h"
#include "runtime.h"
#include "vm.h"
#include "vm_object.h"

#define BRIDGE_MT "provium.Bridge"

typedef struct BridgeBox {
        Bridge *b;
} BridgeBox;

/* ---- bridges ---- */

static Bridge *check_bridge(lua_State *L, int i)
{
        BridgeBox *box = luaL_checkudata(L, i, BRIDGE_MT);
        if (!box->b)
                luaL_error(L, "bridge: closed");
        return box->b;
}

static int push_fail(lua_State *L, const char *err)
{
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
}

/* internal.bridge_new(name, cidr) -> Bridge | nil, message */
static int l_bridge_new(lua_State *L)
{
        runtime_refuse_if_listing(L, "a bridge");
        const char *name = luaL_checkstring(L, 1);
        const char *cidr = luaL_optstring(L, 2, NULL);
        BridgeBox *box = lua_newuserdatauv(L, sizeof *box, 1);
        box->b = NULL;
        luaL_setmetatable(L, BRIDGE_MT);
        char err[1024];
        if (bridge_create(name, cidr, &box->b, err, sizeof err) < 0)
                return push_fail(L, err);
        return 1;
}

static int l_bridge_name(lua_State *L)
{
        lua_pushstring(L, bridge_name(check_bridge(L, 1)));
        return 1;
}

static int l_bridge_ifname(lua_State *L)
{
        lua_pushstring(L, bridge_ifname(check_bridge(L, 1)));
        return 1;
}

/* bridge:_add_tap(tap) -> true | nil, message */
static int l_bridge_add_tap(lua_State *L)
{
        char err[1024];
        if (bridge_add_tap(check_bridge(L, 1), luaL_checkstring(L, 2), err, sizeof err) < 0)
                return push_fail(L, err);
        lua_pushboolean(L, 1);
        return 1;
}

/* bridge:_veth(port, vm, mac, peer) -> true | nil, message: a local VM's card on port */
static int l_bridge_veth(lua_State *L)
{
        Bridge *b = check_bridge(L, 1);
        const char *port = luaL_checkstring(L, 2);
        Vm *vm = check_vm(L, 3);
        const char *mac = luaL_checkstring(L, 4), *peer = luaL_checkstring(L, 5);
        char err[1024];
        int pid = vm_local_init_pid(vm);
        if (pid <= 0) {
                snprintf(err, sizeof err, "bridge %s: attach: vm %s: its network namespace: %s",
                         bridge_name(b), vm_name(vm), strerror(pid < 0 ? -pid : ESRCH));
                return push_fail(L, err);
        }
        if (bridge_veth_port(b, port, pid, peer, mac, err, sizeof err) < 0)
                return push_fail(L, err);
        lua_pushboolean(L, 1);
        return 1;
}

/* bridge:_impair(kind, rules) -> id | nil, message */
static int l_bridge_impair(lua_State *L)
{
        char err[1024];
        unsigned id;
        if (bridge_impair(check_bridge(L, 1), luaL_checkstring(L, 2), luaL_checkstring(L, 3), &id,
                          err, sizeof err) < 0)
                return push_fail(L, err);
        lua_pushinteger(L, id);
        return 1;
}

/* bridge:_unimpair(id) -> true | nil, message (id 0: every impairment) */
static int l_bridge_unimpair(lua_State *L)
{
        char err[1024];
        lua_Integer id = luaL_checkinteger(L, 2);
        if (bridge_unimpair(check_bridge(L, 1), (unsigned) id, err, sizeof err) < 0)
                return push_fail(L, err);
        lua_pushboolean(L, 1);
        return 1;
}

/* bridge:_set_rate(tap | nil, bytes_per_s) -> true | nil, message (0 removes the cap) */
static int l_bridge_set_rate(lua_State *L)
{
        Bridge *b = check_bridge(L, 1);
        const char *tap = luaL_optstring(L, 2, NULL);
        lua_Integer rate = luaL_checkinteger(L, 3);
        luaL_argcheck(L, rate >= 0, 3, "rate must be >= 0");
        char err[1024];
        if (bridge_set_rate(b, tap, (uint64_t) rate, err, sizeof err) < 0)
                return push_fail(L, err);
        lua_pushboolean(L, 1);
        return 1;
}

/* bridge:_remove(): deletes the bridge, its TAPs and rules; later calls say it is gone */
static int l_bridge_remove(lua_State *L)
{
        bridge_remove(check_bridge(L, 1));
        return 0;
}

static int l_bridge_gone(lua_State *L)
{
        lua_pushboolean(L, bridge_gone(check_bridge(L, 1)));
        return 1;
}

static int l_bridge_gc(lua_State *L)
{
        BridgeBox *box = luaL_checkudata(L, 1, BRIDGE_MT);
        /* The namespace takes the links with it when the runner exits. */
        box->b = bridge_free(box->b);
        return 0;
}

/* ---- network cards ---- */

typedef struct NicCtx {
        Pending pending;
        char vm[64];
} NicCtx;

static void on_nic(void *data, int status, json_t *result)
{
        NicCtx *ctx = data;
        char err[1024];
        const char *desc = status ? json_string_value(json_object_get(result, "desc")) : NULL;
        if (status)
                snprintf(err, sizeof err, "vm %s: attach: QEMU: %s", ctx->vm,
                         desc ? desc : strerror(-status));
        runtime_resume_result(&ctx->pending, status ? err : NULL);
        free(ctx);
}

/* vm:_add_nic(tap, mac) -> true | nil, message; parks while a running VM hot-plugs it */
static int l_vm_add_nic(lua_State *L)
{
        Vm *vm = check_vm(L, 1);
        bind_refuse_local(L, vm, "attach to a bridge");
        const char *tap = luaL_checkstring(L, 2);
        const char *mac = luaL_checkstring(L, 3);
        NicCtx *ctx = calloc(1, sizeof *ctx);
        if (!ctx)
                return luaL_error(L, "vm %s: attach: out of memory", vm_name(vm));
        snprintf(ctx->vm, sizeof ctx->vm, "%s", vm_name(vm));
        char err[1024];
        int r = vm_add_nic(vm, tap, mac, on_nic, ctx, err, sizeof err);
        if (r != 0)
                free(ctx);
        if (r < 0)
                return push_fail(L, err);
        if (r == 1) {
                lua_pushboolean(L, 1);
                return 1;
        }
        return runtime_wait(L, &ctx->pending);
}

/* internal.event(type, {field = string | number | boolean, ...}): an event from the prelude */
static int l_event(lua_State *L)
{
        const char *type = luaL_checkstring(L, 1);
        luaL_checktype(L, 2, LUA_TTABLE);
        uint32_t n = 0;
        lua_pushnil(L);
        while (lua_next(L, 2)) {
                n += lua_type(L, -2) == LUA_TSTRING;
                lua_pop(L, 1);
        }
        EventBuilder ev;
        event_begin(&ev, type, n);
        lua_pushnil(L);
        while (lua_next(L, 2)) {
                if (lua_type(L, -2) == LUA_TSTRING) {
                        const char *k = lua_tostring(L, -2);
                        if (lua_isinteger(L, -1))
                                proto_kv_int(&ev.w, k, lua_tointeger(L, -1));
                        else if (lua_type(L, -1) == LUA_TNUMBER)
                                proto_kv_double(&ev.w, k, lua_tonumber(L, -1));
                        else if (lua_type(L, -1) == LUA_TBOOLEAN)
                                proto_kv_bool(&ev.w, k, lua_toboolean(L, -1));
                        else
                                proto_kv_str(&ev.w, k, luaL_tolstring(L, -1, NULL)), lua_pop(L, 1);
                }
                lua_pop(L, 1);
        }
        event_end(&ev);
        return 0;
}

/* ---- registration ---- */

static const luaL_Reg bridge_methods[] = {
    {"name", l_bridge_name},          {"ifname", l_bridge_ifname},
    {"_add_tap", l_bridge_add_tap},   {"_impair", l_bridge_impair},
    {"_unimpair", l_bridge_unimpair}, {"_remove", l_bridge_remove},
    {"_gone", l_bridge_gone},         {"_set_rate", l_bridge_set_rate},
    {"_veth", l_bridge_veth},         {NULL, NULL},
};

void bind_net_register(lua_State *L)
{
        if (luaL_newmetatable(L, BRIDGE_MT)) {
                luaL_newlib(L, bridge_methods);
                lua_setfield(L, -2, "__index");
                lua_pushcfunction(L, l_bridge_gc);
                lua_setfield(L, -2, "__gc");
        }
        lua_getfield(L, -1, "__index");
        lua_setfield(L, -3, "Bridge"); /* internal.Bridge: the prelude adds the public methods */
        lua_pop(L, 1);
        lua_pushcfunction(L, l_bridge_new);
        lua_setfield(L, -2, "bridge_new");
        lua_pushcfunction(L, l_event);
        lua_setfield(L, -2, "event");
}

void bind_net_add_vm_methods(lua_State *L)
{
        lua_pushcfunction(L, l_vm_add_nic);
        lua_setfield(L, -2, "_add_nic");
}
