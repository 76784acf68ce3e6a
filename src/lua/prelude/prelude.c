/* prelude.c: runs the prelude's files, each embedded as a C string, in the order listed here. */
#include "prelude.h"

#include <lauxlib.h>
#include <stddef.h>

#include "prelude.lua.h"

typedef struct PreludeFile {
        const char *chunkname; /* "=prelude/<file>": what error positions and raise() see */
        const char *text;
        size_t len;
} PreludeFile;

#define PRELUDE_FILE(name, text)                                                                   \
        {                                                                                          \
                "=prelude/" name, text, sizeof text - 1                                            \
        }

/* An earlier file defines what a later one uses: keep this order. */
static const PreludeFile files[] = {
    PRELUDE_FILE("prelude.lua", prelude_prelude),
};

int prelude_run(lua_State *L, int context)
{
        context = lua_absindex(L, context);
        for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
                const PreludeFile *f = &files[i];
                if (luaL_loadbufferx(L, f->text, f->len, f->chunkname, "t") != LUA_OK)
                        return -1;
                lua_pushvalue(L, context);
                if (lua_pcall(L, 1, 0, 0) != LUA_OK)
                        return -1;
        }
        return 0;
}
