/* netem.c: network emulation on a guest interface through the agent's netem op.
 *
 *   vm:_netem(ifname, delay_ms, jitter_ms [, opts]) -> true | nil, message
 *   vm:_netem_clear(ifname [, opts])                -> true | nil, message
 *
 * The guest's netem qdisc delays what leaves ifname (its egress), or with opts.direction "in"
 * what it receives (netem on an IFB device the agent redirects ifname's ingress to), or "both";
 * a call replaces the one before in both directions, and clear removes both. Times are
 * milliseconds (fractions allowed, sent in whole microseconds); opts.timeout as for other
 * operations. Bad arguments raise; what the guest refuses (an unknown interface...) returns nil,
 * message.
 */
#include "netem.h"

#include <lauxlib.h>
#include <string.h>

#include "netlink.h"
#include "op.h"
#include "vm_object.h"

#define NETEM_MAX_MS   60000.0 /* the agent's bound: a minute */
#define NETEM_IFNAMSIZ 16      /* IFNAMSIZ, the guest's limit on interface names */

static const char *check_ifname(lua_State *L, int i)
{
        size_t n;
        const char *s = luaL_checklstring(L, i, &n);
        luaL_argcheck(L, n > 0 && n < NETEM_IFNAMSIZ && strlen(s) == n && !strchr(s, '/'), i,
                      "interface name must be 1-15 characters, without '/' or NUL");
        return s;
}

/* Milliseconds at i (0 when optional and absent) in whole microseconds; raises unless 0..60000. */
static lua_Integer check_ms(lua_State *L, int i, const char *what, bool optional)
{
        lua_Number ms = optional ? luaL_optnumber(L, i, 0) : luaL_checknumber(L, i);
        if (!(ms >= 0 && ms <= NETEM_MAX_MS)) /* also NaN */
                luaL_argerror(L, i, lua_pushfstring(L, "%s must be 0..60000 ms", what));
        return (lua_Integer) (ms * 1000.0 + 0.5);
}

/* Loss, duplication, corruption and reordering, and their correlations: opts' fractions 0..1,
 * sent in parts per million. */
static const struct {
        const char *opt, *field;
} netem_probs[] = {
    {"loss", "loss_ppm"},           {"loss_correlation", "loss_corr_ppm"},
    {"duplicate", "duplicate_ppm"}, {"duplicate_correlation", "duplicate_corr_ppm"},
    {"corrupt", "corrupt_ppm"},     {"corrupt_correlation", "corrupt_corr_ppm"},
    {"reorder", "reorder_ppm"},     {"reorder_correlation", "reorder_corr_ppm"},
};
#define NETEM_NPROBS (sizeof netem_probs / sizeof *netem_probs)

static void check_probs(lua_State *L, int opts, lua_Integer ppm[NETEM_NPROBS])
{
        for (size_t i = 0; i < NETEM_NPROBS; i++) {
                ppm[i] = 0;
                if (lua_isnoneornil(L, opts))
                        continue;
                lua_getfield(L, opts, netem_probs[i].opt);
                if (!lua_isnil(L, -1)) {
                        lua_Number p = lua_tonumber(L, -1);
                        if (!lua_isnumber(L, -1) || !(p >= 0 && p <= 1))
                                luaL_error(L, "netem: %s must be a fraction from 0 to 1",
                                           netem_probs[i].opt);
                        ppm[i] = (lua_Integer) (p * 1e6 + 0.5);
                }
                lua_pop(L, 1);
        }
}

/* opts.direction: "out" (the default: what the interface sends), "in" (what it receives) or
 * "both", as the agent's egress and ingress. */
static void check_direction(lua_State *L, int opts, bool *egress, bool *ingress)
{
        *egress = true;
        *ingress = false;
        if (lua_isnoneornil(L, opts))
                return;
        lua_getfield(L, opts, "direction");
        if (!lua_isnil(L, -1)) {
                bool str = lua_type(L, -1) == LUA_TSTRING;
                const char *d = str ? lua_tostring(L, -1) : "";
                bool out = strcmp(d, "out") == 0, in = strcmp(d, "in") == 0;
                if (!out && !in && strcmp(d, "both") != 0)
                        luaL_error(L,
                                   "netem: direction must be \"out\", \"in\" or \"both\", got %s",
                                   str ? lua_pushfstring(L, "\"%s\"", d) : luaL_typename(L, -1));
                *egress = !in;
                *ingress = !out;
        }
        lua_pop(L, 1);
}

/* vm:_netem(ifname, delay_ms, jitter_ms [, opts]): opts.loss, .duplicate, .corrupt, .reorder
 * and their _correlation, fractions 0..1; opts.direction */
static int l_netem(lua_State *L)
{
        Target tg = check_target(L, 1);
        const char *ifname = check_ifname(L, 2);
        lua_Integer delay_us = check_ms(L, 3, "delay", false);
        lua_Integer jitter_us = check_ms(L, 4, "jitter", true);
        if (!lua_isnoneornil(L, 5))
                luaL_checktype(L, 5, LUA_TTABLE);
        lua_Integer ppm[NETEM_NPROBS];
        check_probs(L, 5, ppm);
        bool egress, ingress;
        check_direction(L, 5, &egress, &ingress);
        if (!netlink_has_netem())
                bind_refuse_local_because(L, tg.vm, "add_latency",
                                          "the host's kernel has no sch_netem");
        int n = check_running(L, &tg, "netem", ifname);
        if (n)
                return n;
        Op *op;
        NEW_OP_OR_FAIL(op, L, tg, "netem", ifname, opt_timeout(L, 5, "timeout"));
        op->push_ok = op_push_true;
        ProtoWriter *w = agent_request_begin(tg.agent, &op->req, "netem", 5 + NETEM_NPROBS);
        proto_kv_str(w, "ifname", ifname);
        proto_kv_uint(w, "delay_us", (uint64_t) delay_us);
        proto_kv_uint(w, "jitter_us", (uint64_t) jitter_us);
        proto_kv_bool(w, "egress", egress);
        proto_kv_bool(w, "ingress", ingress);
        for (size_t i = 0; i < NETEM_NPROBS; i++)
                proto_kv_uint(w, netem_probs[i].field, (uint64_t) ppm[i]);
        return op_send(L, op);
}

/* vm:_netem_clear(ifname [, opts]) */
static int l_netem_clear(lua_State *L)
{
        Target tg = check_target(L, 1);
        const char *ifname = check_ifname(L, 2);
        if (!lua_isnoneornil(L, 3))
                luaL_checktype(L, 3, LUA_TTABLE);
        int n = check_running(L, &tg, "netem_clear", ifname);
        if (n)
                return n;
        Op *op;
        NEW_OP_OR_FAIL(op, L, tg, "netem_clear", ifname, opt_timeout(L, 3, "timeout"));
        op->push_ok = op_push_true;
        ProtoWriter *w = agent_request_begin(tg.agent, &op->req, "netem", 2);
        proto_kv_str(w, "ifname", ifname);
        proto_kv_bool(w, "clear", true);
        return op_send(L, op);
}

static const luaL_Reg methods[] = {
    {"_netem", l_netem},
    {"_netem_clear", l_netem_clear},
    {NULL, NULL},
};

void bind_netem_add_methods(lua_State *L)
{
        luaL_setfuncs(L, methods, 0);
}
