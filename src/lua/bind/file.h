/* file.h: guest file handles (vm:open) and tails (see file.c). */
#pragma once

#include <lua.h>
#include <stdbool.h>
#include <stdint.h>

/* vm:_open(path, mode, opts) -> File | nil, message */
int bind_vm_open(lua_State *L);
/* vm:_tail(path) -> Stream | nil, message */
int bind_vm_tail(lua_State *L);
/* Registers the File metatable and pushes its methods table (the prelude adds to it). */
void bind_file_register(lua_State *L);
/* When the value at i is a File: true, with its agent handle and whether it is open. */
bool bind_file_handle(lua_State *L, int i, uint64_t *ret_fd, bool *ret_open);
