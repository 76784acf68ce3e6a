/* push.c: building a parked caller's results in protected mode (see push.h). */
#include "push.h"

#include <stdio.h>

#include "lua_heap.h"

/* "not enough memory", with the ceiling when the file's Lua has one. */
const char *push_out_of_memory_text(lua_State *L, char *buf, size_t len)
{
        const LuaHeap *heap = lua_heap_of(L);
        if (!heap || !heap->max)
                return "not enough memory";
        snprintf(buf, len,
                 "not enough memory (a test file's Lua may use %zu MiB: $PROVIUM_LUA_MEMORY)",
                 heap->max >> 20);
        return buf;
}

typedef struct PushCall {
        RuntimePush push;
        void *ud;
        const char *what;
        int status; /* the push's, when it failed: LUA_ERRMEM or another */
} PushCall;

static int push_call(lua_State *L)
{
        PushCall *c = lua_touserdata(L, 1);
        lua_pop(L, 1);
        return c->push(L, c->ud);
}

/* nil and "what: why", in place of a push that failed with the error object below. */
static int push_failed_push(lua_State *L)
{
        PushCall *c = lua_touserdata(L, 1);
        char oom[160];
        const char *why = c->status == LUA_ERRMEM ? push_out_of_memory_text(L, oom, sizeof oom)
                          : lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2)
                                                          : "an error that is not a message";
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", c->what, why);
        return 2;
}

/* Calls fn(c, the nargs values on top of L) protected; its results stay on L. Returns Lua's
 * status. */
static int call_protected(lua_State *L, lua_CFunction fn, PushCall *c, int nargs)
{
        if (!lua_checkstack(L, 2))
                return LUA_ERRMEM;
        lua_pushcfunction(L, fn);
        lua_pushlightuserdata(L, c);
        lua_rotate(L, -(nargs + 2), 2); /* fn and c below the arguments */
        return lua_pcall(L, nargs + 1, LUA_MULTRET, 0);
}

int push_protected(lua_State *L, RuntimePush push, void *ud, const char *what)
{
        int top = lua_gettop(L);
        PushCall c = {.push = push, .ud = ud, .what = what};
        c.status = call_protected(L, push_call, &c, 0);
        if (c.status != LUA_OK) {
                if (lua_gettop(L) == top && !lua_checkstack(L, 1))
                        return -1;
                if (lua_gettop(L) == top) /* call_protected could not start */
                        lua_pushnil(L);
                lua_settop(L, top + 1); /* the error object */
                if (call_protected(L, push_failed_push, &c, 1) != LUA_OK) {
                        lua_settop(L, top);
                        return -1;
                }
        }
        return lua_gettop(L) - top;
}

int push_result(lua_State *L, void *ud)
{
        const char *err = ud;
        if (!err) {
                lua_pushboolean(L, 1);
                return 1;
        }
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
}
