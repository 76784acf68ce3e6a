/* disk_object.h: disks from Lua (disk_object.c). */
#pragma once

#include <lua.h>

/* Adds internal.disk_new and internal.Disk (the methods table) to the table on top. */
void bind_disk_register(lua_State *L);
/* Adds vm:_attach_disk and vm:_detach_disk to the VM methods table on top of the stack. */
void bind_disk_add_vm_methods(lua_State *L);
