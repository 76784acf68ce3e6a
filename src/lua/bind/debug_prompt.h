/* debug_prompt.h: provium debug's prompt from Lua (debug_prompt.c). */
#pragma once

#include <lua.h>

/* Adds internal.read_line, internal.add_history and internal.debugging to the table on top. */
void bind_debug_prompt_register(lua_State *L);
