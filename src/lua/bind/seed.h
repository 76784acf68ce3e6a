/* seed.h: the run's seed from Lua (seed.c). */
#pragma once

#include <lua.h>

/* Adds internal.run_seed, internal.derive_seed and internal.file_name to the table on top. */
void bind_seed_register(lua_State *L);
