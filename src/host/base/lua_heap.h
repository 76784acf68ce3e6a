/* lua_heap.h: a Lua state's allocator held to a ceiling. Past it an allocation fails, which Lua
 * raises as "not enough memory" in protected code: a recipe or a test file that runs away takes
 * its own state down, not the host. */
#pragma once

#include <lua.h>
#include <stddef.h>

typedef struct LuaHeap {
        size_t used; /* bytes the state holds now */
        size_t max;  /* its ceiling; 0 for none */
} LuaHeap;

/* A new state allocating through heap, which must outlive it (luaL_newstate's, with the
 * ceiling, and a panic handler that says what failed before Lua aborts). NULL when out of
 * memory. */
lua_State *lua_heap_newstate(LuaHeap *heap);

/* L's heap when L allocates through one made by lua_heap_newstate, else NULL. */
const LuaHeap *lua_heap_of(lua_State *L);
