/* provium.h: sets up a Lua state for a test file: libraries, the provium global, test(). */
#pragma once

#include <lua.h>

/* Opens the standard libraries and runs the prelude. Returns 0, or -1 with a message on top
 * of the stack. */
int bind_provium_open(lua_State *L);
