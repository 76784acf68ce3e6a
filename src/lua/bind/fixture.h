/* fixture.h: the fixture cache's Lua primitives (see fixture.c). */
#pragma once

#include <lua.h>

/* Adds the fixture functions to the internal table on top of the stack. */
void bind_fixture_register(lua_State *L);
