/* types.c: userdata type registration (see types.h). */
#include "types.h"

static void set_meta(lua_State *L, const char *field, lua_CFunction fn)
{
        if (!fn)
                return;
        lua_pushcfunction(L, fn);
        lua_setfield(L, -2, field);
}

void types_register(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc,
                    lua_CFunction close, lua_CFunction tostring)
{
        luaL_newmetatable(L, name);
        set_meta(L, "__gc", gc);
        set_meta(L, "__close", close);
        set_meta(L, "__tostring", tostring);
        lua_newtable(L);
        luaL_setfuncs(L, methods, 0);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, "__index");
        lua_remove(L, -2);
}
