/* process.h: asynchronous guest processes, vm:run_async (see process.c). */
#pragma once

#include <lua.h>

/* The C primitive behind vm:run_async: vm:_run_async(cmd, opts) -> Process | nil, message. */
int bind_vm_run_async(lua_State *L);
/* Registers the Process metatable and pushes its methods table (the prelude adds to it). */
void bind_process_register(lua_State *L);
