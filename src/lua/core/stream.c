/* stream.c: host-fed byte streams and their Lua userdata (see stream.h). The primitives here
 * (_peek, _consume, _wait, _ended) are wrapped into next/read_until/expect by the prelude
 * (prelude/stream.lua). */
#include "stream.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "waiter.h"
#include "types.h"

#define STREAM_MT "provium.Stream"

struct Stream {
        int refs;
        char *name;
        char *p; /* unread bytes are p[off..len) */
        size_t off, len, cap;
        bool oom;
        bool ended;
        char *error;
        bool closed;
        Waiter *waiter;
        void (*on_close)(void *data);
        void *close_data;
};

Stream *stream_new(const char *name)
{
        Stream *s = calloc(1, sizeof *s);
        if (!s)
                return NULL;
        s->refs = 1;
        s->name = strdup(name);
        if (!s->name) {
                free(s);
                return NULL;
        }
        return s;
}

static void stream_unref(Stream *s)
{
        if (!s || --s->refs > 0)
                return;
        free(s->p);
        free(s->name);
        free(s->error);
        free(s);
}

void stream_push(Stream *s, const char *p, size_t n)
{
        if (s->ended || s->closed || n == 0)
                return;
        if (n > STREAM_UNREAD_MAX - (s->len - s->off)) {
                stream_end(s, "more than 64 MiB came that nobody read: the rest was dropped "
                              "(read the stream as it comes, or send the output to a file)");
                return;
        }
        if (s->off > 0 && s->off == s->len)
                s->off = s->len = 0;
        if (s->cap - s->len < n) {
                if (s->off > 0) { /* reclaim consumed space first */
                        memmove(s->p, s->p + s->off, s->len - s->off);
                        s->len -= s->off;
                        s->off = 0;
                }
                size_t cap = s->cap ? s->cap : 4096;
                while (cap - s->len < n)
                        cap *= 2;
                if (cap != s->cap) {
                        char *q = realloc(s->p, cap);
                        if (!q) {
                                s->oom = true;
                                stream_end(s, "out of memory on the host");
                                return;
                        }
                        s->p = q;
                        s->cap = cap;
                }
        }
        memcpy(s->p + s->len, p, n);
        s->len += n;
        waiter_wake(&s->waiter);
}

void stream_end(Stream *s, const char *error)
{
        if (s->ended)
                return;
        s->ended = true;
        if (error)
                s->error = strdup(error);
        waiter_wake(&s->waiter);
}

void stream_on_close(Stream *s, void (*fn)(void *data), void *data)
{
        s->on_close = fn;
        s->close_data = data;
}

void stream_release(Stream *s)
{
        if (!s)
                return;
        s->on_close = NULL;
        stream_unref(s);
}

const char *stream_peek(const Stream *s, size_t *ret_len)
{
        *ret_len = s->len - s->off;
        return s->p ? s->p + s->off : "";
}

void stream_consume(Stream *s, size_t n)
{
        size_t avail = s->len - s->off;
        s->off += n < avail ? n : avail;
}

/* ---- Lua ---- */

typedef struct StreamBox {
        Stream *s;
} StreamBox;

static Stream *check_stream(lua_State *L, int i)
{
        StreamBox *b = luaL_checkudata(L, i, STREAM_MT);
        if (!b->s)
                luaL_error(L, "stream: already collected");
        return b->s;
}

void bind_stream_push(lua_State *L, Stream *s)
{
        StreamBox *b = lua_newuserdatauv(L, sizeof *b, 0);
        b->s = NULL;
        luaL_setmetatable(L, STREAM_MT);
        s->refs++;
        b->s = s;
}

static int l_peek(lua_State *L)
{
        size_t n;
        const char *p = stream_peek(check_stream(L, 1), &n);
        lua_pushlstring(L, p, n);
        return 1;
}

static int l_consume(lua_State *L)
{
        Stream *s = check_stream(L, 1);
        lua_Integer n = luaL_checkinteger(L, 2);
        luaL_argcheck(L, n >= 0, 2, "count must be >= 0");
        stream_consume(s, (size_t) n);
        return 0;
}

/* _ended() -> ended, error message or nil */
static int l_ended(lua_State *L)
{
        Stream *s = check_stream(L, 1);
        lua_pushboolean(L, s->ended || s->closed);
        if (s->error)
                lua_pushstring(L, s->error);
        else
                lua_pushnil(L);
        return 2;
}

/* _wait(timeout, seen) -> true | nil, "timeout": returns once more than `seen` bytes (default
 * 0) are unread, or the stream has ended. */
static int l_wait(lua_State *L)
{
        Stream *s = check_stream(L, 1);
        double timeout = luaL_optnumber(L, 2, -1);
        lua_Integer seen = luaL_optinteger(L, 3, 0);
        if (s->len - s->off > (size_t) seen || s->ended || s->closed) {
                lua_pushboolean(L, 1);
                return 1;
        }
        return waiter_park(L, &s->waiter, timeout, s->name);
}

static int l_name(lua_State *L)
{
        lua_pushstring(L, check_stream(L, 1)->name);
        return 1;
}

static int l_close(lua_State *L)
{
        Stream *s = check_stream(L, 1);
        if (s->closed)
                return 0;
        s->closed = true;
        s->off = s->len;
        waiter_wake(&s->waiter);
        if (s->on_close) {
                void (*fn)(void *) = s->on_close;
                s->on_close = NULL;
                fn(s->close_data);
        }
        return 0;
}

static int l_gc(lua_State *L)
{
        StreamBox *b = luaL_checkudata(L, 1, STREAM_MT);
        if (b->s) {
                if (!b->s->closed && b->s->refs > 1)
                        l_close(L); /* the reader is gone: let the producer stop */
                stream_unref(b->s);
                b->s = NULL;
        }
        return 0;
}

static int l_tostring(lua_State *L)
{
        StreamBox *b = luaL_checkudata(L, 1, STREAM_MT);
        lua_pushfstring(L, "Stream(%s)", b->s ? b->s->name : "collected");
        return 1;
}

static const luaL_Reg methods[] = {
    {"_peek", l_peek},  {"_consume", l_consume}, {"_ended", l_ended}, {"_wait", l_wait},
    {"close", l_close}, {"name", l_name},        {NULL, NULL},
};

void bind_stream_register(lua_State *L)
{
        types_register(L, STREAM_MT, methods, l_gc, l_close, l_tostring);
}
