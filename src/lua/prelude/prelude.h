/* prelude.h: the prelude (the public Lua API, in Lua), embedded: its files run in a stated order.
 */
#pragma once

#include <lua.h>

/* Runs every file of the prelude in order, each as a chunk named "=prelude/<file>" called with
 * the table at index context (the objects the prelude extends, and what its earlier files share
 * with later ones). Returns 0, or -1 with the error message on top of the stack. */
int prelude_run(lua_State *L, int context);
