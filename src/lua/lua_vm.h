/* lua_vm.h: the provium.VM userdata (see lua_vm.c). */
#pragma once

#include <lua.h>

/* Creates the VM metatable and pushes its methods table (the prelude adds the public API). */
void lua_vm_register(lua_State *L);
/* Pushes the constructor internal.vm_new(name). */
void lua_vm_push_constructor(lua_State *L);
