/* lua_vm.h: the provium.VM userdata (see lua_vm.c). */
#pragma once

#include <lua.h>
#include <stddef.h>

#include "vm.h"

/* Creates the VM metatable and pushes its methods table (the prelude adds the public API). */
void bind_vm_register(lua_State *L);
/* Pushes the constructor internal.vm_new(name). */
void bind_vm_push_constructor(lua_State *L);
/* Pushes internal.vm_release(vm): stop the VM now and free its name. */
void bind_vm_push_release(lua_State *L);
/* Reads boot options (memory, cpus, kernel, ...) from the table at index opts into cfg; its
 * strings stay owned by the Lua state (keep opts on the stack). Raises on bad options. */
void bind_vm_boot_config(lua_State *L, const char *image, int opts, VmConfig *cfg, char *time_buf,
                         size_t time_len);
/* Boots vm with cfg and parks the caller: returns `true` or `nil, message` to Lua. A VM that
 * dies later fails the running test. */
int bind_vm_boot_wait(lua_State *L, Vm *vm, const VmConfig *cfg);
