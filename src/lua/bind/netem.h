/* netem.h: vm:_netem / vm:_netem_clear, delay and jitter on a guest interface (see
 * netem.c). */
#pragma once

#include <lua.h>

/* Adds the netem methods to the VM methods table on top of the stack. */
void bind_netem_add_methods(lua_State *L);
