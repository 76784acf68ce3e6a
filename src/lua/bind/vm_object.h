/* vm_object.h: the provium.VM userdata (see vm_object.c). */
#pragma once

#include <lua.h>
#include <stddef.h>

#include "vm.h"

/* Creates the VM metatable and pushes its methods table (the prelude adds the public API). */
void bind_vm_register(lua_State *L);
/* Pushes the constructor internal.vm_new(name). */
void bind_vm_push_constructor(lua_State *L);
/* Sets internal.default_vmm() (--vmm) and internal.local_unavailable (vm.h's
 * VM_LOCAL_UNAVAILABLE) in the table on top of the stack. */
void bind_vm_push_local(lua_State *L);
/* Raises "vm NAME: what: not available under --vmm local (needs a guest kernel)" when vm is a
 * local VM; returns otherwise. */
void bind_refuse_local(lua_State *L, Vm *vm, const char *what);
/* The same, with why after the message (": the host's kernel has no sch_netem"). */
void bind_refuse_local_because(lua_State *L, Vm *vm, const char *what, const char *why);
/* Pushes internal.vm_release(vm): stop the VM now and free its name. */
void bind_vm_push_release(lua_State *L);
/* Boots vm with cfg and parks the caller: returns `true` or `nil, message` to Lua. A VM that
 * dies later fails the running test. */
int bind_vm_boot_wait(lua_State *L, Vm *vm, const VmConfig *cfg);
