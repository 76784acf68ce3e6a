/* push.h: a completion's results for its parked caller, built in protected mode on the
 * runtime's own thread (runtime_resume_push moves them over): running out of memory while
 * building them gives nil and "what: not enough memory ...", never Lua's panic from a loop
 * callback. */
#pragma once

#include <lua.h>
#include <stddef.h>

#include "runtime.h"

/* Runs push(L, ud) protected; on an error pushes nil and "what: why" instead. Returns how many
 * values it left on L, or -1 when not even the message fitted (L as it was). */
int push_protected(lua_State *L, RuntimePush push, void *ud, const char *what);
/* "not enough memory", with the ceiling when L's heap has one (lua_heap.h), in buf. */
const char *push_out_of_memory_text(lua_State *L, char *buf, size_t len);
/* What a primitive that parks returns: true when ud (an error message) is NULL, else nil and
 * the message. */
int push_result(lua_State *L, void *ud);
