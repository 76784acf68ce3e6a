/* json.c: JSON values to Lua and back (jansson), for data the runner stores: tables of
 * strings, integers, booleans, arrays and objects, bounded in depth. */
#include "json.h"

#include <lauxlib.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define JSON_DEPTH_MAX 16

static int push_value(lua_State *L, const json_t *v, int depth)
{
        if (depth > JSON_DEPTH_MAX)
                return -1;
        luaL_checkstack(L, 3, "json");
        if (json_is_string(v)) {
                lua_pushlstring(L, json_string_value(v), json_string_length(v));
        } else if (json_is_integer(v)) {
                lua_pushinteger(L, (lua_Integer) json_integer_value(v));
        } else if (json_is_real(v)) {
                lua_pushnumber(L, json_real_value(v));
        } else if (json_is_boolean(v)) {
                lua_pushboolean(L, json_is_true(v));
        } else if (json_is_array(v)) {
                lua_createtable(L, (int) json_array_size(v), 0);
                size_t i;
                const json_t *e;
                json_array_foreach (v, i, e) {
                        if (push_value(L, e, depth + 1) < 0)
                                return -1;
                        lua_rawseti(L, -2, (lua_Integer) i + 1);
                }
        } else if (json_is_object(v)) {
                lua_createtable(L, 0, (int) json_object_size(v));
                const char *k;
                const json_t *e;
                json_object_foreach ((json_t *) v, k, e) {
                        if (push_value(L, e, depth + 1) < 0)
                                return -1;
                        lua_setfield(L, -2, k);
                }
        } else {
                lua_pushnil(L); /* null */
        }
        return 0;
}

int bind_json_push(lua_State *L, const json_t *v)
{
        int top = lua_gettop(L);
        if (push_value(L, v, 0) < 0) {
                lua_settop(L, top);
                return -1;
        }
        return 0;
}

/* A table is an array when its keys are exactly 1..n (n > 0), else an object with string
 * keys. */
static bool is_array(lua_State *L, int idx, size_t *ret_n)
{
        size_t n = lua_rawlen(L, idx), count = 0;
        lua_pushnil(L);
        while (lua_next(L, idx)) {
                lua_pop(L, 1);
                count++;
        }
        *ret_n = n;
        return n > 0 && count == n;
}

static json_t *to_value(lua_State *L, int idx, int depth, char *err, size_t errlen);

static json_t *to_array(lua_State *L, int idx, size_t n, int depth, char *err, size_t errlen)
{
        json_t *a = json_array();
        for (size_t i = 1; a && i <= n; i++) {
                lua_rawgeti(L, idx, (lua_Integer) i);
                json_t *e = to_value(L, lua_gettop(L), depth + 1, err, errlen);
                lua_pop(L, 1);
                if (!e || json_array_append_new(a, e) < 0) {
                        json_decref(a);
                        return NULL;
                }
        }
        return a;
}

static json_t *to_object(lua_State *L, int idx, int depth, char *err, size_t errlen)
{
        json_t *o = json_object();
        lua_pushnil(L);
        while (o && lua_next(L, idx)) {
                if (lua_type(L, -2) != LUA_TSTRING) {
                        snprintf(err, errlen, "a table key is a %s, not a string",
                                 luaL_typename(L, -2));
                        lua_pop(L, 2);
                        json_decref(o);
                        return NULL;
                }
                json_t *e = to_value(L, lua_gettop(L), depth + 1, err, errlen);
                if (!e || json_object_set_new(o, lua_tostring(L, -2), e) < 0) {
                        lua_pop(L, 2);
                        json_decref(o);
                        return NULL;
                }
                lua_pop(L, 1);
        }
        return o;
}

static json_t *to_value(lua_State *L, int idx, int depth, char *err, size_t errlen)
{
        if (depth > JSON_DEPTH_MAX) {
                snprintf(err, errlen, "nested deeper than %d tables", JSON_DEPTH_MAX);
                return NULL;
        }
        switch (lua_type(L, idx)) {
        case LUA_TSTRING: {
                size_t n;
                const char *s = lua_tolstring(L, idx, &n);
                json_t *v = json_stringn(s, n);
                if (!v)
                        snprintf(err, errlen, "a string is not UTF-8");
                return v;
        }
        case LUA_TNUMBER:
                return lua_isinteger(L, idx) ? json_integer((json_int_t) lua_tointeger(L, idx))
                                             : json_real(lua_tonumber(L, idx));
        case LUA_TBOOLEAN:
                return json_boolean(lua_toboolean(L, idx));
        case LUA_TTABLE: {
                size_t n;
                luaL_checkstack(L, 4, "json");
                return is_array(L, idx, &n) ? to_array(L, idx, n, depth, err, errlen)
                                            : to_object(L, idx, depth, err, errlen);
        }
        default:
                snprintf(err, errlen, "a %s cannot be stored", luaL_typename(L, idx));
                return NULL;
        }
}

json_t *bind_json_from_lua(lua_State *L, int idx, char *err, size_t errlen)
{
        snprintf(err, errlen, "out of memory");
        return to_value(L, lua_absindex(L, idx), 0, err, errlen);
}
