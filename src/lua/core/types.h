/* types.h: registering a userdata type: one metatable per type, its methods table as
 * __index (Lua's own liolib.c does the same by hand). */
#pragma once

#include <lauxlib.h>

/* Creates metatable `name` with __gc, __close and __tostring (each may be NULL) and methods as
 * __index, and leaves the methods table on the stack for the prelude to extend. */
void types_register(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc,
                    lua_CFunction close, lua_CFunction tostring);
