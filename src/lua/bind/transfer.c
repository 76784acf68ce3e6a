/* transfer.c: whole-file transfers, vm:read_file and vm:write_file, to and from Lua strings
 * or host files, in chunks and with a bounded window, so that neither side holds more than a
 * few chunks beyond the data itself.
 *
 * Sections: the transfer, downloads, uploads.
 */
#include "transfer.h"
#include "fdio.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "op.h"

#define UPLOAD_WINDOW (8 * (uint64_t) PROTO_CHUNK) /* bytes sent and not yet acknowledged */

typedef struct Chunk {
        struct Chunk *next;
        size_t len;
        char data[];
} Chunk;

/* What read_file keeps in memory at most (a Lua string); {to = path} has no limit. */
#define READ_MEMORY_MAX (1ull << 30)

typedef struct Transfer {
        Op op; /* first: op_free frees the whole transfer */
        lua_State *main;
        int data_ref; /* upload from a Lua string: keeps it alive */
        const char *data;
        int fd; /* the host file (source or destination), -1 for memory */
        char *host_path;
        uint64_t total; /* upload: bytes to send */
        uint64_t done;  /* upload: bytes sent; download: bytes received */
        uint64_t acked; /* upload: bytes the agent has written */
        bool finished;  /* the reply came: send nothing more */
        int io_error;   /* host-side read or write error (-errno) */
        Chunk *head, *tail;
} Transfer;

/* ---- the transfer ---- */

static void transfer_cleanup(Op *op)
{
        Transfer *t = (Transfer *) op;
        t->finished = true;
        if (t->data_ref != LUA_NOREF)
                luaL_unref(t->main, LUA_REGISTRYINDEX, t->data_ref);
        if (t->fd >= 0)
                (void) close(t->fd);
        while (t->head) {
                Chunk *c = t->head;
                t->head = c->next;
                free(c);
        }
        free(t->host_path);
}

static Transfer *transfer_new(lua_State *L, const Target *tg, const char *name, const char *path,
                              double timeout_s)
{
        Transfer *t = (Transfer *) op_new_sized(tg, name, path, timeout_s, sizeof(Transfer));
        if (!t)
                luaL_error(L, "vm %s: %s %s: out of memory", tg->label, name, path);
        t->op.cleanup = transfer_cleanup;
        t->data_ref = LUA_NOREF;
        t->fd = -1;
        lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
        t->main = lua_tothread(L, -1);
        lua_pop(L, 1);
        return t;
}

/* Asks the agent to stop the transfer (after a host-side failure). */
static void send_cancel(Transfer *t)
{
        if (t->op.req.client)
                agent_client_send_cancel(t->op.req.client, t->op.req.id);
}

/* Replaces a success with the host-side error, naming the host file. */
static int push_host_error(lua_State *co, Transfer *t)
{
        lua_pushnil(co);
        if (t->io_error == -EFBIG && t->fd < 0) {
                lua_pushfstring(co,
                                "vm %s: %s %s: more than %d MiB, more than read_file keeps in "
                                "memory: read it into a host file with {to = path}",
                                t->op.vm_name, t->op.name, t->op.object,
                                (int) (READ_MEMORY_MAX >> 20));
                return 2;
        }
        lua_pushfstring(co, "vm %s: %s %s: host file %s: %s", t->op.vm_name, t->op.name,
                        t->op.object, t->host_path, strerror(-t->io_error));
        return 2;
}

/* ---- downloads ---- */

static void on_download_chunk(AgentRequest *req, const char *kind, const char *data, size_t len,
                              const msgpack_object *msg)
{
        Transfer *t = req->data;
        if (!data || t->io_error)
                return;
        t->done += len;
        if (t->fd >= 0) {
                t->io_error = fd_write_all(t->fd, data, len);
                if (t->io_error)
                        send_cancel(t);
                return;
        }
        Chunk *c = t->done <= READ_MEMORY_MAX ? malloc(sizeof *c + len) : NULL;
        if (!c) {
                t->io_error = t->done > READ_MEMORY_MAX ? -EFBIG : -ENOMEM;
                send_cancel(t);
                return;
        }
        c->next = NULL;
        c->len = len;
        memcpy(c->data, data, len);
        if (t->tail)
                t->tail->next = c;
        else
                t->head = c;
        t->tail = c;
}

/* The whole file as one Lua string; each chunk is freed as soon as it is copied. */
static int push_download(lua_State *co, Op *op, const msgpack_object *reply)
{
        Transfer *t = (Transfer *) op;
        if (t->io_error)
                return push_host_error(co, t);
        if (t->fd >= 0) {
                lua_pushinteger(co, (lua_Integer) t->done);
                return 1;
        }
        luaL_Buffer b;
        char *p = luaL_buffinitsize(co, &b, t->done);
        size_t off = 0;
        while (t->head) {
                Chunk *c = t->head;
                t->head = c->next;
                memcpy(p + off, c->data, c->len);
                off += c->len;
                free(c);
        }
        t->tail = NULL;
        luaL_pushresultsize(&b, off);
        return 1;
}

/* vm:_read_file(path, opts) -> string (or, with opts.to, the bytes written) | nil, message */
int bind_vm_read_file(lua_State *L)
{
        Target tg = check_target(L, 1);
        const char *path = check_cstring(L, 2);
        const char *to = opt_string(L, 3, "to");
        int n = check_running(L, &tg, "read_file", path);
        if (n)
                return n;
        Transfer *t = transfer_new(L, &tg, "read_file", path, opt_timeout(L, 3, "timeout"));
        t->op.req.on_chunk = on_download_chunk;
        t->op.push_ok = push_download;
        if (to) {
                t->host_path = strdup(to);
                t->fd = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                if (t->fd < 0 || !t->host_path) {
                        lua_pushnil(L);
                        lua_pushfstring(L, "vm %s: read_file %s: host file %s: %s", tg.label, path,
                                        to, strerror(errno));
                        op_free(&t->op);
                        return 2;
                }
        }
        ProtoWriter *w = agent_request_begin(tg.agent, &t->op.req, "read_file", 1);
        proto_kv_str(w, "path", path);
        return op_send(L, &t->op);
}

/* ---- uploads ---- */

static int read_chunk(Transfer *t, char *buf, size_t n)
{
        size_t got = 0;
        while (got < n) {
                ssize_t r = pread(t->fd, buf + got, n - got, (off_t) (t->done + got));
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                if (r == 0)
                        return -EIO; /* the file shrank while we sent it */
                got += (size_t) r;
        }
        return 0;
}

/* Packs the next piece of data as a `data` field; returns 0 or -errno. */
static int pack_piece(Transfer *t, ProtoWriter *w, size_t k)
{
        proto_key(w, "data");
        msgpack_pack_bin(&w->pk, k);
        if (t->fd < 0) {
                msgpack_pack_bin_body(&w->pk, t->data + t->done, k);
                return 0;
        }
        static char buf[PROTO_CHUNK];
        int r = read_chunk(t, buf, k);
        if (r < 0)
                memset(buf, 0, k); /* keep the frame well-formed; the transfer is cancelled */
        msgpack_pack_bin_body(&w->pk, buf, k);
        return r;
}

/* Sends data frames while the window allows. */
static void upload_pump(Transfer *t)
{
        AgentClient *c = t->op.req.client;
        while (c && !t->finished && !t->io_error && t->done < t->total &&
               t->done - t->acked < UPLOAD_WINDOW) {
                size_t k = t->total - t->done < PROTO_CHUNK ? t->total - t->done : PROTO_CHUNK;
                ProtoWriter *w = agent_frame_begin(c, 4);
                proto_kv_uint(w, "id", t->op.req.id);
                proto_kv_str(w, "op", "data");
                int r = pack_piece(t, w, k);
                proto_kv_bool(w, "eof", t->done + k == t->total);
                if (r == 0)
                        r = agent_frame_send(c);
                if (r < 0) {
                        t->io_error = r;
                        send_cancel(t);
                        return;
                }
                t->done += k;
        }
}

static void on_upload_chunk(AgentRequest *req, const char *kind, const char *data, size_t len,
                            const msgpack_object *msg)
{
        Transfer *t = req->data;
        uint64_t n;
        if (strcmp(kind, "ack") == 0 && proto_get_uint(msg, "n", &n) == 1 && n <= t->done) {
                t->acked = n;
                upload_pump(t);
        }
}

static int push_upload(lua_State *co, Op *op, const msgpack_object *reply)
{
        Transfer *t = (Transfer *) op;
        if (t->io_error)
                return push_host_error(co, t);
        lua_pushinteger(co, (lua_Integer) t->total);
        return 1;
}

/* Opens the upload's source: the Lua string at index 3, or the host file opts.from. */
static int upload_source(lua_State *L, Transfer *t, const char *from)
{
        if (!from) {
                size_t len;
                t->data = lua_tolstring(L, 3, &len);
                t->total = len;
                lua_pushvalue(L, 3);
                t->data_ref = luaL_ref(L, LUA_REGISTRYINDEX);
                return 0;
        }
        struct stat st;
        t->host_path = strdup(from);
        t->fd = open(from, O_RDONLY | O_CLOEXEC);
        if (!t->host_path || t->fd < 0 || fstat(t->fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EINVAL;
        t->total = (uint64_t) st.st_size;
        return 0;
}

/* vm:_write_file(path, data | nil, opts) -> bytes written | nil, message */
int bind_vm_write_file(lua_State *L)
{
        Target tg = check_target(L, 1);
        const char *path = check_cstring(L, 2);
        const char *from = opt_string(L, 4, "from");
        if (!from)
                luaL_checkstring(L, 3);
        else
                luaL_argcheck(L, lua_isnoneornil(L, 3), 3, "give the data or opts.from, not both");
        lua_Integer mode = opt_mode(L, 4, "mode", 0644);
        int n = check_running(L, &tg, "write_file", path);
        if (n)
                return n;
        Transfer *t = transfer_new(L, &tg, "write_file", path, opt_timeout(L, 4, "timeout"));
        t->op.req.on_chunk = on_upload_chunk;
        t->op.push_ok = push_upload;
        int r = upload_source(L, t, from);
        if (r < 0) {
                lua_pushnil(L);
                lua_pushfstring(L, "vm %s: write_file %s: host file %s: %s", tg.label, path, from,
                                r == -EINVAL ? "not a regular file" : strerror(-r));
                op_free(&t->op);
                return 2;
        }
        size_t first = t->total < PROTO_CHUNK ? t->total : PROTO_CHUNK;
        ProtoWriter *w = agent_request_begin(tg.agent, &t->op.req, "write_file", 4);
        proto_kv_str(w, "path", path);
        proto_kv_uint(w, "mode", (uint64_t) mode);
        r = pack_piece(t, w, first);
        proto_kv_bool(w, "eof", first == t->total);
        if (r == 0)
                r = agent_request_send(tg.agent, &t->op.req, seconds_to_ms(t->op.timeout_s));
        if (r < 0) {
                agent_request_cancel(&t->op.req);
                lua_pushnil(L);
                lua_pushfstring(L, "vm %s: write_file %s: %s", tg.label, path, strerror(-r));
                op_free(&t->op);
                return 2;
        }
        t->done = first;
        upload_pump(t);
        return runtime_wait(L, &t->op.pending);
}
