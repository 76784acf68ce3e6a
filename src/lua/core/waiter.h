/* waiter.h: parking a Lua task until an event or a timeout (stream data, process exit). */
#pragma once

#include <lua.h>

typedef struct Waiter Waiter;

/* Parks the calling task until waiter_wake(slot) or timeout_s (< 0: none) passes. The task
 * resumes with `true`, or `nil, "timeout"`. *slot must be NULL (one waiter per slot; returns
 * a Lua error otherwise) and must stay valid until woken, timed out or abandoned. */
int waiter_park(lua_State *L, Waiter **slot, double timeout_s, const char *what);
/* Resumes the task parked on *slot, if any, with `true`. */
void waiter_wake(Waiter **slot);
