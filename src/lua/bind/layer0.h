/* layer0.h: provium.buffer, vm:syscall and vm:ioctl (see layer0.c). */
#pragma once

#include <lua.h>

int bind_vm_syscall(lua_State *L);
int bind_vm_ioctl(lua_State *L);
/* Registers the Buffer metatable. */
void bind_layer0_register(lua_State *L);
/* Pushes provium.buffer(size | string). */
void bind_layer0_push_buffer_constructor(lua_State *L);
