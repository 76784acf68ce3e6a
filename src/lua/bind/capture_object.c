/* capture_object.c: a packet capture as a Lua userdata with the shared stream interface (next,
 * read_until, expect, drain, eof, close) over packets: an item is one packet, a table
 * {ts, len, data, summary}, and patterns match its summary line. Byte streams (stream.c) hold
 * bytes only, so the queue of packets lives here.
 *
 * Sections: queue, capture callbacks, Lua primitives, registration. The waiting methods
 * (next, read_until, expect) are the prelude's stream methods (prelude/capture.lua).
 */
#include "capture_object.h"

#include <lauxlib.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "capture.h"
#include "runtime.h"
#include "types.h"
#include "waiter.h"

#define CAPTURE_MT         "provium.Capture"
#define CAPTURE_BUFFER_MAX (64u << 20) /* bytes of unread packets kept for Lua */
#define SUMMARY_MAX        256

typedef struct Packet {
        uint64_t ts_ns;
        size_t len, caplen;
        char *summary; /* in the same allocation, after data */
        uint8_t data[];
} Packet;

/* Owned by the userdata; the Capture's callbacks see it until capture_close returns. */
typedef struct LuaCapture {
        Capture *cap; /* NULL once closed */
        int linktype;
        char *name; /* "capture on lo", for messages */
        char *path;
        Packet **q; /* unread packets are q[head..n) */
        size_t head, n, size;
        size_t buffered;  /* bytes of unread packets */
        uint64_t count;   /* packets captured so far */
        uint64_t dropped; /* not kept for Lua: the buffer was full (the file has them) */
        bool ended;       /* no more packets will come */
        char *error;      /* why, when the capture failed */
        Waiter *waiter;
} LuaCapture;

typedef struct CaptureBox {
        LuaCapture *c;
} CaptureBox;

/* ---- queue ---- */

static size_t queued(const LuaCapture *c)
{
        return c->n - c->head;
}

static bool queue_push(LuaCapture *c, Packet *p)
{
        if (c->head > 0 && c->n == c->size) { /* reclaim consumed slots first */
                memmove(c->q, c->q + c->head, queued(c) * sizeof *c->q);
                c->n -= c->head;
                c->head = 0;
        }
        if (c->n == c->size) {
                size_t size = c->size ? c->size * 2 : 64;
                Packet **q = realloc(c->q, size * sizeof *q);
                if (!q)
                        return false;
                c->q = q;
                c->size = size;
        }
        c->q[c->n++] = p;
        c->buffered += p->caplen;
        return true;
}

static void queue_consume(LuaCapture *c, size_t k)
{
        for (; k > 0 && c->head < c->n; k--) {
                Packet *p = c->q[c->head++];
                c->buffered -= p->caplen;
                free(p);
        }
        if (c->head == c->n)
                c->head = c->n = 0;
}

/* ---- capture callbacks ---- */

static void on_packet(void *data, uint64_t ts_ns, const uint8_t *bytes, size_t caplen, size_t len)
{
        LuaCapture *c = data;
        c->count++;
        if (c->buffered + caplen > CAPTURE_BUFFER_MAX) {
                c->dropped++;
                return;
        }
        char line[SUMMARY_MAX];
        size_t n = capture_summarize(c->linktype, bytes, caplen, line, sizeof line);
        Packet *p = malloc(sizeof *p + caplen + n + 1);
        if (!p) {
                c->dropped++;
                return;
        }
        p->ts_ns = ts_ns;
        p->len = len;
        p->caplen = caplen;
        memcpy(p->data, bytes, caplen);
        p->summary = (char *) p->data + caplen;
        memcpy(p->summary, line, n + 1);
        if (!queue_push(c, p)) {
                free(p);
                c->dropped++;
                return;
        }
        waiter_wake(&c->waiter);
}

static void on_end(void *data, const char *msg)
{
        LuaCapture *c = data;
        c->ended = true;
        if (!c->error)
                c->error = strdup(msg);
        waiter_wake(&c->waiter);
}

/* Stops the capture (idempotent); unread packets stay readable. */
static void bind_capture_stop(LuaCapture *c)
{
        Capture *cap = c->cap;
        c->cap = NULL; /* first: the last packets' callbacks may resume a task that closes */
        (void) capture_close(cap);
        c->ended = true;
        waiter_wake(&c->waiter);
}

static void bind_capture_free(LuaCapture *c)
{
        queue_consume(c, queued(c));
        free(c->q);
        free(c->name);
        free(c->path);
        free(c->error);
        free(c);
}

/* ---- Lua primitives ---- */

static LuaCapture *check_capture(lua_State *L, int i)
{
        CaptureBox *b = luaL_checkudata(L, i, CAPTURE_MT);
        if (!b->c)
                luaL_error(L, "capture: already collected");
        return b->c;
}

/* internal.capture_open(ifname, filter | nil, pcap_path) -> Capture | nil, message */
static int l_capture_open(lua_State *L)
{
        runtime_refuse_if_listing(L, "a packet capture");
        const char *ifname = luaL_checkstring(L, 1);
        const char *filter = luaL_optstring(L, 2, NULL);
        const char *path = luaL_checkstring(L, 3);
        Runtime *rt = runtime_get(L);
        if (!rt)
                return luaL_error(L, "capture: no runtime");
        CaptureBox *b = lua_newuserdatauv(L, sizeof *b, 0);
        b->c = NULL; /* closed until everything is in place */
        luaL_setmetatable(L, CAPTURE_MT);
        LuaCapture *c = calloc(1, sizeof *c);
        if (!c || !(c->path = strdup(path)) ||
            !(c->name = malloc(strlen(ifname) + sizeof "capture on "))) {
                if (c)
                        free(c->path);
                free(c);
                return luaL_error(L, "capture on %s: out of memory", ifname);
        }
        strcpy(c->name, "capture on ");
        strcat(c->name, ifname);
        char err[512];
        c->cap =
            capture_open(runtime_loop(rt), ifname, filter, path, on_packet, c, err, sizeof err);
        if (!c->cap) {
                bind_capture_free(c);
                lua_pushnil(L);
                lua_pushstring(L, err);
                return 2;
        }
        capture_on_end(c->cap, on_end);
        c->linktype = capture_linktype(c->cap);
        b->c = c;
        return 1;
}

static void push_packet(lua_State *L, const Packet *p)
{
        lua_createtable(L, 0, 4);
        lua_pushnumber(L, (double) p->ts_ns / 1e9);
        lua_setfield(L, -2, "ts");
        lua_pushinteger(L, (lua_Integer) p->len);
        lua_setfield(L, -2, "len");
        lua_pushlstring(L, (const char *) p->data, p->caplen);
        lua_setfield(L, -2, "data");
        lua_pushstring(L, p->summary);
        lua_setfield(L, -2, "summary");
}

/* Index i (1-based) of the unread packets, or NULL. */
static const Packet *unread(lua_State *L, LuaCapture *c, int arg)
{
        lua_Integer i = luaL_checkinteger(L, arg);
        if (i < 1 || (size_t) i > queued(c))
                return NULL;
        return c->q[c->head + (size_t) i - 1];
}

/* _get(i) -> the i-th unread packet as a table, or nil */
static int l_get(lua_State *L)
{
        const Packet *p = unread(L, check_capture(L, 1), 2);
        if (!p)
                return 0;
        push_packet(L, p);
        return 1;
}

/* _summary(i) -> the i-th unread packet's summary, or nil */
static int l_summary(lua_State *L)
{
        const Packet *p = unread(L, check_capture(L, 1), 2);
        if (!p)
                return 0;
        lua_pushstring(L, p->summary);
        return 1;
}

static int l_buffered(lua_State *L)
{
        lua_pushinteger(L, (lua_Integer) queued(check_capture(L, 1)));
        return 1;
}

static int l_consume(lua_State *L)
{
        LuaCapture *c = check_capture(L, 1);
        lua_Integer n = luaL_checkinteger(L, 2);
        luaL_argcheck(L, n >= 0, 2, "count must be >= 0");
        queue_consume(c, (size_t) n);
        return 0;
}

/* _ended() -> ended, error message or nil */
static int l_ended(lua_State *L)
{
        LuaCapture *c = check_capture(L, 1);
        lua_pushboolean(L, c->ended);
        if (c->error)
                lua_pushstring(L, c->error);
        else
                lua_pushnil(L);
        return 2;
}

/* _wait(timeout, seen) -> true | nil, "timeout": returns once more than `seen` packets
 * (default 0) are unread, or the capture has ended. */
static int l_wait(lua_State *L)
{
        LuaCapture *c = check_capture(L, 1);
        double timeout = luaL_optnumber(L, 2, -1);
        lua_Integer seen = luaL_optinteger(L, 3, 0);
        if (queued(c) > (size_t) (seen > 0 ? seen : 0) || c->ended) {
                lua_pushboolean(L, 1);
                return 1;
        }
        return waiter_park(L, &c->waiter, timeout, c->name);
}

/* drain() -> every unread packet, as a list, without waiting */
static int l_drain(lua_State *L)
{
        LuaCapture *c = check_capture(L, 1);
        size_t n = queued(c);
        lua_createtable(L, (int) n, 0);
        for (size_t i = 0; i < n; i++) {
                push_packet(L, c->q[c->head + i]);
                lua_rawseti(L, -2, (lua_Integer) i + 1);
        }
        queue_consume(c, n);
        return 1;
}

/* eof() -> true once the capture has stopped and every packet was read */
static int l_eof(lua_State *L)
{
        LuaCapture *c = check_capture(L, 1);
        lua_pushboolean(L, c->ended && queued(c) == 0);
        return 1;
}

static int l_path(lua_State *L)
{
        lua_pushstring(L, check_capture(L, 1)->path);
        return 1;
}

static int l_count(lua_State *L)
{
        lua_pushinteger(L, (lua_Integer) check_capture(L, 1)->count);
        return 1;
}

static int l_name(lua_State *L)
{
        lua_pushstring(L, check_capture(L, 1)->name);
        return 1;
}

/* close(): stops capturing and completes the file; unread packets stay readable. */
static int l_close(lua_State *L)
{
        CaptureBox *b = luaL_checkudata(L, 1, CAPTURE_MT);
        if (b->c)
                bind_capture_stop(b->c);
        return 0;
}

static int l_gc(lua_State *L)
{
        CaptureBox *b = luaL_checkudata(L, 1, CAPTURE_MT);
        LuaCapture *c = b->c;
        if (!c)
                return 0;
        b->c = NULL;
        bind_capture_stop(c);
        bind_capture_free(c);
        return 0;
}

static int l_tostring(lua_State *L)
{
        CaptureBox *b = luaL_checkudata(L, 1, CAPTURE_MT);
        LuaCapture *c = b->c;
        if (!c) {
                lua_pushliteral(L, "Capture(collected)");
                return 1;
        }
        /* name is "capture on <ifname>" */
        lua_pushfstring(L, "Capture(%s, %s, %I packet%s%s", c->name + sizeof "capture on " - 1,
                        c->path, (lua_Integer) c->count, c->count == 1 ? "" : "s",
                        c->cap ? "" : ", stopped");
        if (c->dropped)
                lua_pushfstring(L, ", %I not kept: the buffer was full)", (lua_Integer) c->dropped);
        else
                lua_pushliteral(L, ")");
        lua_concat(L, 2);
        return 1;
}

/* ---- registration ---- */

void bind_capture_register(lua_State *L)
{
        static const luaL_Reg methods[] = {
            {"_get", l_get},
            {"_summary", l_summary},
            {"_buffered", l_buffered},
            {"_consume", l_consume},
            {"_ended", l_ended},
            {"_wait", l_wait},
            {"drain", l_drain},
            {"eof", l_eof},
            {"close", l_close},
            {"path", l_path},
            {"count", l_count},
            {"name", l_name},
            {NULL, NULL},
        };
        types_register(L, CAPTURE_MT, methods, l_gc, l_close, l_tostring);
        lua_setfield(L, -2, "Capture"); /* internal.Capture: the prelude adds next, expect... */
        lua_pushcfunction(L, l_capture_open);
        lua_setfield(L, -2, "capture_open");
}
