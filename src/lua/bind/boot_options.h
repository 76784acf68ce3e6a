/* boot_options.h: vm:boot's options read into a VmConfig (see boot_options.c). */
#pragma once

#include <lua.h>
#include <stddef.h>

#include "vm.h"

/* Reads boot options (memory, cpus, kernel, ...) from the table at index opts into cfg; its
 * strings stay owned by the Lua state (keep opts on the stack). Raises on bad options. */
void bind_vm_boot_config(lua_State *L, const char *image, int opts, VmConfig *cfg, char *time_buf,
                         size_t time_len);

/* internal.claim(opts): provium:claim's options, checked and recorded (core/claim.c). */
int bind_claim(lua_State *L);
/* internal.boot_options() -> {name = true}: the options vm:boot reads. */
int bind_boot_options(lua_State *L);
