/* capture_object.h: packet capture (src/host/net/capture.c) as a Lua userdata (see
 * capture_object.c). */
#pragma once

#include <lua.h>

/* Registers the Capture metatable and adds to the table on top of the stack (internal) its
 * methods table, Capture, and capture_open:
 * internal.capture_open(ifname, filter | nil, pcap_path) -> Capture | nil, message. */
void bind_capture_register(lua_State *L);
