/* uplink_object.c: the provium.Uplink userdata (uplink.c). The prelude's bridge:uplink() makes
 * one per bridge and keeps it in the bridge's state; it is removed by :_remove(), or when
 * collected, at the latest when the file's Lua state closes.
 */
#include "uplink_object.h"

#include <lauxlib.h>

#include "runtime.h"
#include "uplink.h"

#define UPLINK_MT "provium.Uplink"

typedef struct UplinkBox {
        Uplink *u;
} UplinkBox;

static Uplink *check_uplink(lua_State *L, int i)
{
        UplinkBox *box = luaL_checkudata(L, i, UPLINK_MT);
        if (!box->u)
                luaL_error(L, "uplink: closed");
        return box->u;
}

/* internal.uplink_new(bridge_ifname, gateway_ip) -> Uplink | nil, message */
static int l_uplink_new(lua_State *L)
{
        runtime_refuse_if_listing(L, "an uplink");
        const char *ifname = luaL_checkstring(L, 1);
        const char *gateway = luaL_checkstring(L, 2);
        UplinkBox *box = lua_newuserdatauv(L, sizeof *box, 0);
        box->u = NULL;
        luaL_setmetatable(L, UPLINK_MT);
        char err[1024];
        if (uplink_create(ifname, gateway, &box->u, err, sizeof err) < 0) {
                lua_pushnil(L);
                lua_pushstring(L, err);
                return 2;
        }
        return 1;
}

#define GETTER(name, fn)                                                                           \
        static int name(lua_State *L)                                                              \
        {                                                                                          \
                lua_pushstring(L, fn(check_uplink(L, 1)));                                         \
                return 1;                                                                          \
        }

GETTER(l_host_ip, uplink_host_ip)
GETTER(l_runner_ip, uplink_runner_ip)
GETTER(l_gateway, uplink_gateway)
GETTER(l_host_ifname, uplink_host_ifname)
GETTER(l_runner_ifname, uplink_runner_ifname)
GETTER(l_host_netns, uplink_host_netns)

/* uplink:_remove(): deletes the veth pair and the NAT rule now (idempotent) */
static int l_remove(lua_State *L)
{
        uplink_remove(check_uplink(L, 1));
        return 0;
}

static int l_gc(lua_State *L)
{
        UplinkBox *box = luaL_checkudata(L, 1, UPLINK_MT);
        box->u = uplink_free(box->u);
        return 0;
}

static const luaL_Reg methods[] = {
    {"host_ip", l_host_ip},
    {"runner_ip", l_runner_ip},
    {"gateway", l_gateway},
    {"host_ifname", l_host_ifname},
    {"runner_ifname", l_runner_ifname},
    {"host_netns", l_host_netns},
    {"_remove", l_remove},
    {NULL, NULL},
};

void bind_uplink_register(lua_State *L)
{
        if (luaL_newmetatable(L, UPLINK_MT)) {
                luaL_newlib(L, methods);
                lua_setfield(L, -2, "__index");
                lua_pushcfunction(L, l_gc);
                lua_setfield(L, -2, "__gc");
        }
        lua_pop(L, 1);
        lua_pushcfunction(L, l_uplink_new);
        lua_setfield(L, -2, "uplink_new");
}
