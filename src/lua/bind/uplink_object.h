/* uplink_object.h: a bridge's uplink to the host's namespace from Lua (see uplink_object.c). */
#pragma once

#include <lua.h>

/* Adds internal.uplink_new to the internal table on top of the stack. */
void bind_uplink_register(lua_State *L);
