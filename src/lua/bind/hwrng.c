/* hwrng.c: the guest's /dev/hwrng given a seed's stream through the agent's hwrng op.
 *
 *   vm:_hwrng(seed [, opts]) -> true | nil, message
 *
 * The agent's stream restarts from the seed (src/agent/hwrng.c): what a reader gets next is
 * the stream's first bytes. seed is an integer 0..2^63-1 (a Lua integer's range); opts.timeout
 * as for other operations. What the guest refuses (a local VM) returns nil, message.
 */
#include "hwrng.h"

#include <lauxlib.h>

#include "op.h"
#include "vm_object.h"

static int l_hwrng(lua_State *L)
{
        Target tg = check_target(L, 1);
        lua_Integer seed = luaL_checkinteger(L, 2);
        luaL_argcheck(L, seed >= 0, 2, "seed must be 0 to 2^63-1");
        if (!lua_isnoneornil(L, 3))
                luaL_checktype(L, 3, LUA_TTABLE);
        int n = check_running(L, &tg, "hwrng", "/dev/hwrng");
        if (n)
                return n;
        Op *op;
        NEW_OP_OR_FAIL(op, L, tg, "hwrng", "/dev/hwrng", opt_timeout(L, 3, "timeout"));
        op->push_ok = op_push_true;
        ProtoWriter *w = agent_request_begin(tg.agent, &op->req, "hwrng", 1);
        proto_kv_uint(w, "seed", (uint64_t) seed);
        return op_send(L, op);
}

static const luaL_Reg methods[] = {
    {"_hwrng", l_hwrng},
    {NULL, NULL},
};

void bind_hwrng_add_methods(lua_State *L)
{
        luaL_setfuncs(L, methods, 0);
}
