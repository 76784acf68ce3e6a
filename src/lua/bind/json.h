/* json.h: JSON values to Lua values and back, for records the runner stores (json.c). */
#pragma once

#include <jansson.h>
#include <lua.h>
#include <stddef.h>

/* Pushes v (objects and arrays as tables, null as nil). Returns 0, or -1 (nothing pushed) when
 * it nests too deep. */
int bind_json_push(lua_State *L, const json_t *v);
/* The value at idx as a new JSON value: strings (UTF-8), numbers, booleans, and tables (an
 * array when its keys are 1..n, else an object with string keys). NULL with err on anything
 * else, on nesting too deep, or on -ENOMEM. */
json_t *bind_json_from_lua(lua_State *L, int idx, char *err, size_t errlen);
