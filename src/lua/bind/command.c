/* command.c: guest commands from Lua (see command.h). */
#include "command.h"

#include <lauxlib.h>
#include <string.h>

#include "op.h"

/* A string of the command that becomes a C string: a NUL byte in it raises, naming where. */
static void check_no_nul(lua_State *L, int i, int arg, const char *what)
{
        size_t n;
        const char *s = lua_tolstring(L, i, &n);
        if (s && strlen(s) != n)
                luaL_argerror(L, arg, lua_pushfstring(L, "a NUL byte in %s", what));
}

static void check_argv(lua_State *L, Command *c)
{
        c->argc = luaL_len(L, c->cmd_idx);
        luaL_argcheck(L, c->argc > 0, c->cmd_idx, "argv must not be empty");
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (size_t i = 1; i <= c->argc; i++) {
                if (lua_geti(L, c->cmd_idx, (lua_Integer) i) != LUA_TSTRING)
                        luaL_argerror(L, c->cmd_idx, "argv must hold only strings");
                check_no_nul(L, -1, c->cmd_idx, "an argv string");
                if (i > 1)
                        luaL_addchar(&b, ' ');
                luaL_addvalue(&b);
        }
        luaL_pushresult(&b);
        c->text = lua_tostring(L, -1);
}

void command_check(lua_State *L, int cmd_idx, int opts_idx, bool allow_stdin, Command *c)
{
        *c = (Command){.cmd_idx = cmd_idx, .opts_idx = opts_idx};
        int t = lua_type(L, cmd_idx);
        luaL_argexpected(L, t == LUA_TSTRING || t == LUA_TTABLE, cmd_idx,
                         "command string or argv table");
        if (!lua_isnoneornil(L, opts_idx))
                luaL_checktype(L, opts_idx, LUA_TTABLE);
        c->is_argv = t == LUA_TTABLE;
        if (c->is_argv)
                check_argv(L, c);
        else {
                check_no_nul(L, cmd_idx, cmd_idx, "the command");
                c->text = lua_tostring(L, cmd_idx);
        }
        c->cwd = opt_string(L, opts_idx, "cwd");
        if (has_field(L, opts_idx, "stdin")) {
                if (!allow_stdin)
                        luaL_error(L, "option 'stdin' is not available here (use "
                                      "process:write)");
                lua_getfield(L, opts_idx, "stdin");
                c->stdin_data = luaL_checklstring(L, -1, &c->stdin_len);
                lua_pop(L, 1); /* still referenced by the options table */
        }
        c->env = has_field(L, opts_idx, "env");
        if (c->env) {
                lua_getfield(L, opts_idx, "env");
                luaL_checktype(L, -1, LUA_TTABLE);
                int e = lua_gettop(L);
                lua_pushnil(L);
                while (lua_next(L, e)) {
                        if (lua_type(L, -2) != LUA_TSTRING ||
                            (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER))
                                luaL_error(L, "option 'env' must map names to strings");
                        size_t kn, vn = 0;
                        const char *k = lua_tolstring(L, -2, &kn);
                        const char *v =
                            lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &vn) : "";
                        if (strlen(k) != kn || strlen(v) != vn)
                                luaL_error(L, "option 'env': a NUL byte in %s", k);
                        lua_pop(L, 1);
                }
                lua_pop(L, 1);
        }
        c->timeout_s = opt_timeout(L, opts_idx, "timeout");
}

uint32_t command_nfields(const Command *c)
{
        return 2 + (c->cwd != NULL) + (c->stdin_data != NULL) + c->env;
}

static void pack_env(lua_State *L, const Command *c, ProtoWriter *w)
{
        lua_getfield(L, c->opts_idx, "env");
        int t = lua_gettop(L);
        uint32_t n = 0;
        lua_pushnil(L);
        while (lua_next(L, t)) {
                n++;
                lua_pop(L, 1);
        }
        proto_key(w, "env");
        msgpack_pack_map(&w->pk, n);
        lua_pushnil(L);
        while (lua_next(L, t)) {
                proto_pack_str(w, lua_tostring(L, -2));
                lua_pushvalue(L, -1); /* lua_tostring on a number converts in place */
                proto_pack_str(w, lua_tostring(L, -1));
                lua_pop(L, 2);
        }
        lua_pop(L, 1);
}

void command_pack(lua_State *L, const Command *c, ProtoWriter *w)
{
        if (!c->is_argv)
                proto_kv_str(w, "cmd", c->text);
        else {
                proto_key(w, "argv");
                msgpack_pack_array(&w->pk, (uint32_t) c->argc);
                for (size_t i = 1; i <= c->argc; i++) {
                        lua_geti(L, c->cmd_idx, (lua_Integer) i);
                        proto_pack_str(w, lua_tostring(L, -1));
                        lua_pop(L, 1);
                }
        }
        if (c->cwd)
                proto_kv_str(w, "cwd", c->cwd);
        if (c->stdin_data)
                proto_kv_bin(w, "stdin", c->stdin_data, c->stdin_len);
        if (c->env)
                pack_env(L, c, w);
        proto_kv_uint(w, "timeout_ms", seconds_to_ms(c->timeout_s));
}
