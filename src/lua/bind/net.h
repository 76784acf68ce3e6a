/* net.h: bridges and network cards from Lua (see net.c). */
#pragma once

#include <lua.h>

/* Adds internal.bridge_new and internal.Bridge (the methods table) to the table on top. */
void bind_net_register(lua_State *L);
/* Adds vm:_add_nic to the VM methods table on top of the stack. */
void bind_net_add_vm_methods(lua_State *L);
