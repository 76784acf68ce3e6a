/* hwrng.h: vm:_hwrng(seed), the guest's /dev/hwrng given a seed's stream (see hwrng.c). */
#pragma once

#include <lua.h>

/* Adds the hwrng method to the VM methods table on top of the stack. */
void bind_hwrng_add_methods(lua_State *L);
