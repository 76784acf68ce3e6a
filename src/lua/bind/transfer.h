/* transfer.h: vm:read_file and vm:write_file, chunked and flow-controlled (see transfer.c). */
#pragma once

#include <lua.h>

/* vm:_read_file(path, opts) -> string, or bytes written to opts.to | nil, message */
int bind_vm_read_file(lua_State *L);
/* vm:_write_file(path, data | nil, opts) -> bytes written | nil, message (opts.from: a host file)
 */
int bind_vm_write_file(lua_State *L);
