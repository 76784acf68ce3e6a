/* process.h: asynchronous guest processes, vm:run_async (see process.c). */
#pragma once

#include <lua.h>

/* The C primitive behind vm:run_async: vm:_run_async(cmd, opts) -> Process | nil, message. */
int lua_vm_run_async(lua_State *L);
/* Registers the Process metatable and pushes its methods table (the prelude adds to it). */
void lua_process_register(lua_State *L);
