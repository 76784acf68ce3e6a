/* lua_heap.c: a Lua state's allocator held to a ceiling (see lua_heap.h). */
#include "lua_heap.h"

#include <stdio.h>
#include <stdlib.h>

static void *heap_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
        LuaHeap *h = ud;
        size_t old = ptr ? osize : 0;
        void *p;

        if (nsize == 0) {
                free(ptr);
                h->used -= old;
                return NULL;
        }
        if (h->max && nsize > old && nsize - old > h->max - h->used)
                return NULL;
        p = realloc(ptr, nsize);
        if (p)
                h->used = h->used - old + nsize;
        return p;
}

/* Reached only by an error outside any protected call, a bug of ours: said before Lua aborts
 * (lauxlib's handler does not say it is Provium's). */
static int heap_panic(lua_State *L)
{
        const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;

        (void) fprintf(stderr, "provium: a Lua error outside protected code (%s); aborting\n",
                       msg ? msg : "an error that is not a message");
        return 0;
}

lua_State *lua_heap_newstate(LuaHeap *heap)
{
        lua_State *L = lua_newstate(heap_alloc, heap);

        if (L)
                lua_atpanic(L, heap_panic);
        return L;
}

const LuaHeap *lua_heap_of(lua_State *L)
{
        void *ud = NULL;

        return lua_getallocf(L, &ud) == heap_alloc ? ud : NULL;
}
