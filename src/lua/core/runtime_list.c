/* runtime_list.c: a file's tests as the chunk registered them: which -k selects, provium list's
 * events (the chunk runs with VM operations refused), and what a kept run asks of the runtime
 * (its VMs, its first failure).
 */
#include <lauxlib.h>
#include <string.h>

#include "claim.h"
#include "events.h"
#include "runtime_internal.h"

/* -k: a test runs when its "FILE: name", as its report line shows it, contains one of the
 * patterns (plain text, not a Lua pattern). */
bool runtime_test_selected(Runtime *rt, int index)
{
        if (rt->cfg.nfilters == 0)
                return true;
        lua_State *L = rt->L;
        lua_getfield(L, LUA_REGISTRYINDEX, INTERNAL_KEY);
        lua_getfield(L, -1, "tests");
        lua_rawgeti(L, -1, index);
        lua_getfield(L, -1, "name");
        const char *name = lua_tostring(L, -1);
        const char *full = lua_pushfstring(L, "%s: %s", rt->cfg.file, name ? name : "?");
        bool hit = false;
        for (int i = 0; i < rt->cfg.nfilters && !hit; i++)
                hit = strstr(full, rt->cfg.filters[i]) != NULL;
        lua_pop(L, 5);
        return hit;
}

int runtime_test_count(Runtime *rt)
{
        lua_getfield(rt->L, LUA_REGISTRYINDEX, INTERNAL_KEY);
        lua_getfield(rt->L, -1, "tests");
        int n = (int) luaL_len(rt->L, -1);
        lua_pop(rt->L, 2);
        return n;
}

void runtime_refuse_if_listing(lua_State *L, const char *what)
{
        Runtime *rt = runtime_get(L);
        if (rt && rt->cfg.listing)
                luaL_error(L,
                           "provium list: %s is refused while listing: a file's top level "
                           "declares tests and its claim; boot in a test",
                           what);
}

static void emit_listed_test(const Runtime *rt, int index)
{
        lua_State *L = rt->L;
        lua_getfield(L, LUA_REGISTRYINDEX, INTERNAL_KEY);
        lua_getfield(L, -1, "tests");
        lua_rawgeti(L, -1, index);
        lua_getfield(L, -1, "name");
        lua_getfield(L, -2, "line");
        EventBuilder ev;
        events_set_scope(rt->cfg.file, lua_tostring(L, -2) ? lua_tostring(L, -2) : "?");
        event_begin(&ev, "list.test", 1);
        proto_kv_uint(&ev.w, "line", (uint64_t) lua_tointeger(L, -1));
        event_end(&ev);
        events_set_scope(rt->cfg.file, NULL);
        lua_pop(L, 5);
}

int runtime_list_file(Runtime *rt)
{
        lua_State *L = rt->L;
        lua_getfield(L, LUA_REGISTRYINDEX, INTERNAL_KEY);
        lua_getfield(L, -1, "enter_listing");
        lua_call(L, 0, 0);
        lua_pop(L, 1);
        bool ok = runtime_run_chunk(rt);
        uint64_t mb;
        unsigned cpus;
        bool declared = claim_get(&mb, &cpus);
        EventBuilder ev;
        event_begin(&ev, "list.file", 4);
        proto_kv_uint(&ev.w, "memory_mb", mb);
        proto_kv_uint(&ev.w, "cpus", cpus);
        proto_kv_bool(&ev.w, "declared", declared);
        proto_kv_str(&ev.w, "error", ok ? "" : rt->message ? rt->message : "failed");
        event_end(&ev);
        int n = ok ? runtime_test_count(rt) : 0;
        for (int i = 1; i <= n; i++)
                if (runtime_test_selected(rt, i))
                        emit_listed_test(rt, i);
        return ok ? 0 : 1;
}

const char *runtime_first_failure(const Runtime *rt)
{
        return rt->first_failure ? rt->first_failure : rt->failed ? "(file)" : NULL;
}

size_t runtime_vm_count(const Runtime *rt)
{
        return rt->nvms;
}

Vm *runtime_vm(const Runtime *rt, size_t i)
{
        return i < rt->nvms ? *rt->vms[i] : NULL;
}
