/* lifecycle.h: VM lifecycle and console methods (see lifecycle.c). */
#pragma once

#include <lua.h>

/* Adds the lifecycle methods to the VM methods table on top of the stack. */
void bind_lifecycle_add_methods(lua_State *L);
