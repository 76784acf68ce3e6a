/* snapshot.h: vm:snapshot / vm:restore and the fixture primitives (see snapshot.c). */
#pragma once

#include <lua.h>

/* Adds the snapshot methods to the VM methods table on top of the stack. */
void bind_snapshot_add_methods(lua_State *L);
