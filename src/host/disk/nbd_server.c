/* nbd_server.c: an NBD export on a Unix socket (nbd_server.h).
 *
 * A client connection goes through three phases: CLIENT_FLAGS (the 4 bytes after the
 * server's greeting), OPTIONS (haggling, until NBD_OPT_GO or NBD_OPT_EXPORT_NAME) and
 * TRANSMISSION (requests until NBD_CMD_DISC or the socket closes). Bytes are taken from one
 * growing buffer; a request is handled once all of it (with a write's data) is there. */
#include "nbd_server.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nbd_wire.h"

typedef enum ConnPhase {
        CONN_CLIENT_FLAGS,
        CONN_OPTIONS,
        CONN_TRANSMISSION,
        CONN_CLOSING
} ConnPhase;

struct NbdConn {
        uv_pipe_t pipe;
        NbdServer *server;
        ConnPhase phase;
        bool no_zeroes;
        bool clean; /* NBD_CMD_DISC */
        uint8_t *buf;
        size_t len, cap;
        unsigned inflight; /* requests handed over, not answered yet */
        /* a write whose data is still coming: read straight into its buffer */
        NbdRequest *filling;
        size_t filled;
        int filling_error;  /* answer it with this instead of handing it over */
        bool handle_closed; /* freed once this is true and inflight is 0 */
};

struct NbdServer {
        uv_pipe_t listener;
        char *path, *export_name;
        uint64_t size;
        NbdServerOps ops;
        void *data;
        NbdConn *conn;
        bool closing;
        int open_handles;
};

static void put16(uint8_t *p, uint16_t v)
{
        v = htobe16(v);
        memcpy(p, &v, 2);
}
static void put32(uint8_t *p, uint32_t v)
{
        v = htobe32(v);
        memcpy(p, &v, 4);
}
static void put64(uint8_t *p, uint64_t v)
{
        v = htobe64(v);
        memcpy(p, &v, 8);
}
static uint16_t get16(const uint8_t *p)
{
        uint16_t v;
        memcpy(&v, p, 2);
        return be16toh(v);
}
static uint32_t get32(const uint8_t *p)
{
        uint32_t v;
        memcpy(&v, p, 4);
        return be32toh(v);
}
static uint64_t get64(const uint8_t *p)
{
        uint64_t v;
        memcpy(&v, p, 8);
        return be64toh(v);
}

static void server_maybe_free(NbdServer *s)
{
        if (!s->closing || s->open_handles > 0)
                return;
        free(s->path);
        free(s->export_name);
        free(s);
}

/* ---- sending ---- */

static void on_written(uv_write_t *w, int status)
{
        free(w->data);
        free(w);
}

/* Sends buf[0..n) (a malloc'd block, freed once written). */
static void conn_send(NbdConn *c, uint8_t *buf, size_t n)
{
        uv_write_t *w = malloc(sizeof *w);
        uv_buf_t b = uv_buf_init((char *) buf, (unsigned) n);
        if (!w || c->phase == CONN_CLOSING ||
            uv_write(w, (uv_stream_t *) &c->pipe, &b, 1, on_written) < 0) {
                free(w);
                free(buf);
        } else
                w->data = buf;
}

static void option_reply(NbdConn *c, uint32_t option, uint32_t type, const uint8_t *data,
                         uint32_t len)
{
        uint8_t *b = malloc(20 + len);
        if (!b)
                return;
        put64(b, NBD_REP_MAGIC);
        put32(b + 8, option);
        put32(b + 12, type);
        put32(b + 16, len);
        if (len)
                memcpy(b + 20, data, len);
        conn_send(c, b, 20 + len);
}

/* ---- closing ---- */

static void conn_maybe_free(NbdConn *c)
{
        if (!c->handle_closed || c->inflight > 0)
                return;
        NbdServer *s = c->server;
        free(c->buf);
        free(c);
        s->open_handles--;
        server_maybe_free(s);
}

static void on_conn_closed(uv_handle_t *h)
{
        NbdConn *c = h->data;
        c->handle_closed = true;
        conn_maybe_free(c);
}

static void conn_close(NbdConn *c)
{
        if (c->phase == CONN_CLOSING)
                return;
        bool was_up = c->phase == CONN_TRANSMISSION;
        NbdRequest *half = c->filling; /* its data will not come */
        c->filling = NULL;
        c->phase = CONN_CLOSING;
        NbdServer *s = c->server;
        if (s->conn == c)
                s->conn = NULL;
        uv_close((uv_handle_t *) &c->pipe, on_conn_closed);
        if (half)
                nbd_request_done(half, 0);
        if (was_up && !s->closing && s->ops.client)
                s->ops.client(s->data, false, c->clean);
}

/* ---- negotiation ---- */

static uint16_t transmission_flags(void)
{
        return NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM |
               NBD_FLAG_SEND_WRITE_ZEROES;
}

static void enter_transmission(NbdConn *c)
{
        c->phase = CONN_TRANSMISSION;
        if (c->server->ops.client)
                c->server->ops.client(c->server->data, true, false);
}

/* NBD_OPT_INFO / NBD_OPT_GO: u32 name length, name, u16 count, u16 info types. */
static void option_go(NbdConn *c, uint32_t option, const uint8_t *d, uint32_t len)
{
        NbdServer *s = c->server;
        uint32_t nlen = len >= 4 ? get32(d) : UINT32_MAX;
        if (nlen > len - 4 || len - 4 - nlen < 2 ||
            len - 4 - nlen - 2 != 2u * get16(d + 4 + nlen)) {
                option_reply(c, option, NBD_REP_ERR_INVALID, NULL, 0);
                return;
        }
        if (nlen != strlen(s->export_name) || memcmp(d + 4, s->export_name, nlen) != 0) {
                option_reply(c, option, NBD_REP_ERR_UNKNOWN, NULL, 0);
                return;
        }
        uint8_t info[18];
        put16(info, NBD_INFO_EXPORT);
        put64(info + 2, s->size);
        put16(info + 10, transmission_flags());
        option_reply(c, option, NBD_REP_INFO, info, 12);
        put16(info, NBD_INFO_BLOCK_SIZE);
        put32(info + 2, NBD_MIN_BLOCK);
        put32(info + 6, NBD_PREFERRED_BLOCK);
        put32(info + 10, NBD_MAX_REQUEST);
        option_reply(c, option, NBD_REP_INFO, info, 14);
        option_reply(c, option, NBD_REP_ACK, NULL, 0);
        if (option == NBD_OPT_GO)
                enter_transmission(c);
}

static void option_export_name(NbdConn *c, const uint8_t *d, uint32_t len)
{
        NbdServer *s = c->server;
        if (len != strlen(s->export_name) || memcmp(d, s->export_name, len) != 0) {
                conn_close(c); /* this option cannot fail but by hanging up */
                return;
        }
        size_t n = c->no_zeroes ? 10 : 134;
        uint8_t *b = calloc(1, n);
        if (!b) {
                conn_close(c);
                return;
        }
        put64(b, s->size);
        put16(b + 8, transmission_flags());
        conn_send(c, b, n);
        enter_transmission(c);
}

/* One option, if all of it is there: returns the bytes used, 0 for more, -1 to hang up. */
static ssize_t take_option(NbdConn *c, const uint8_t *p, size_t n)
{
        if (n < 16)
                return 0;
        uint32_t option = get32(p + 8), len = get32(p + 12);
        if (get64(p) != NBD_IHAVEOPT || len > NBD_MAX_OPTION)
                return -1;
        if (n < 16 + (size_t) len)
                return 0;
        const uint8_t *d = p + 16;
        if (option == NBD_OPT_GO || option == NBD_OPT_INFO)
                option_go(c, option, d, len);
        else if (option == NBD_OPT_EXPORT_NAME)
                option_export_name(c, d, len);
        else if (option == NBD_OPT_ABORT) {
                option_reply(c, option, NBD_REP_ACK, NULL, 0);
                return -1;
        } else /* structured replies, meta contexts, TLS, lists: not here */
                option_reply(c, option, NBD_REP_ERR_UNSUP, NULL, 0);
        return 16 + (ssize_t) len;
}

/* ---- transmission ---- */

static bool request_fits(const NbdServer *s, uint16_t type, uint64_t off, uint32_t len)
{
        if (type == NBD_CMD_FLUSH)
                return true;
        if (len > NBD_MAX_REQUEST && type != NBD_CMD_TRIM && type != NBD_CMD_WRITE_ZEROES)
                return false;
        return off <= s->size && len <= s->size - off;
}

/* The answer to a request that was not handed over (malformed, out of range). */
static void answer_now(NbdConn *c, uint64_t handle, int error)
{
        uint8_t *b = malloc(NBD_REPLY_SIZE);
        if (!b)
                return;
        put32(b, NBD_SIMPLE_REPLY_MAGIC);
        put32(b + 4, (uint32_t) error);
        put64(b + 8, handle);
        conn_send(c, b, NBD_REPLY_SIZE);
}

static NbdRequest *request_new(NbdConn *c, uint16_t type, uint16_t flags, uint64_t handle,
                               uint64_t off, uint32_t len, uint8_t *target)
{
        NbdRequest *r = calloc(1, sizeof *r);
        size_t data = !target && (type == NBD_CMD_READ || type == NBD_CMD_WRITE) ? len : 0;
        uint8_t *buf = malloc(NBD_REPLY_SIZE + data);
        if (!r || !buf) {
                free(r);
                free(buf);
                return NULL;
        }
        *r = (NbdRequest){.type = type,
                          .flags = flags,
                          .offset = off,
                          .length = len,
                          .handle = handle,
                          .conn = c,
                          .buf = buf};
        r->data = target ? target : data ? buf + NBD_REPLY_SIZE : NULL;
        r->direct = target != NULL;
        c->inflight++;
        return r;
}

/* A request whose data is all here: to its owner, or answered with error. */
static void dispatch(NbdConn *c, NbdRequest *r, int error)
{
        if (error)
                nbd_request_done(r, error);
        else
                c->server->ops.request(c->server->data, r);
}

/* One request: returns the bytes used, 0 for more, -1 to hang up. A write whose data is not
 * all here yet becomes c->filling, which the next reads go into. */
static ssize_t take_request(NbdConn *c, const uint8_t *p, size_t n)
{
        NbdServer *s = c->server;
        if (n < NBD_REQUEST_SIZE)
                return 0;
        if (get32(p) != NBD_REQ_MAGIC)
                return -1;
        uint16_t flags = get16(p + 4), type = get16(p + 6);
        uint64_t handle = get64(p + 8), off = get64(p + 16);
        uint32_t len = get32(p + 24);
        if (type == NBD_CMD_WRITE && len > NBD_MAX_REQUEST)
                return -1; /* its data cannot even be skipped safely */
        if (type == NBD_CMD_DISC) {
                c->clean = true;
                return -1;
        }
        bool known = type == NBD_CMD_READ || type == NBD_CMD_WRITE || type == NBD_CMD_FLUSH ||
                     type == NBD_CMD_TRIM || type == NBD_CMD_WRITE_ZEROES;
        int error = !known ? ENOTSUP : !request_fits(s, type, off, len) ? EINVAL : 0;
        size_t payload = type == NBD_CMD_WRITE ? len : 0;
        if (error && !payload) {
                answer_now(c, handle, error);
                return NBD_REQUEST_SIZE;
        }
        uint8_t *target = !error && payload && s->ops.write_target
                              ? s->ops.write_target(s->data, off, len)
                              : NULL;
        NbdRequest *r = request_new(c, type, flags, handle, off, len, target);
        if (!r) {
                if (payload)
                        return -1; /* nowhere to put its data */
                answer_now(c, handle, ENOMEM);
                return NBD_REQUEST_SIZE;
        }
        size_t here = n - NBD_REQUEST_SIZE < payload ? n - NBD_REQUEST_SIZE : payload;
        if (here)
                memcpy(r->data, p + NBD_REQUEST_SIZE, here);
        if (here < payload) {
                c->filling = r;
                c->filled = here;
                c->filling_error = error;
        } else
                dispatch(c, r, error);
        return NBD_REQUEST_SIZE + (ssize_t) here;
}

static void on_written_header(uv_write_t *w, int status)
{
        free(w->data); /* the header; the data was the export's */
        free(w);
}

void nbd_request_done_from(NbdRequest *r, const uint8_t *from)
{
        NbdConn *c = r->conn;
        if (c->phase != CONN_TRANSMISSION || r->type != NBD_CMD_READ)
                return nbd_request_done(r, c->phase != CONN_TRANSMISSION ? ESHUTDOWN : EINVAL);
        c->inflight--;
        uint8_t *hdr = realloc(r->buf, NBD_REPLY_SIZE); /* the data buffer is not needed */
        hdr = hdr ? hdr : r->buf;
        put32(hdr, NBD_SIMPLE_REPLY_MAGIC);
        put32(hdr + 4, 0);
        put64(hdr + 8, r->handle);
        uv_buf_t b[2] = {uv_buf_init((char *) hdr, NBD_REPLY_SIZE),
                         uv_buf_init((char *) from, r->length)};
        uv_write_t *w = malloc(sizeof *w);
        if (!w || uv_write(w, (uv_stream_t *) &c->pipe, b, 2, on_written_header) < 0) {
                free(w);
                free(hdr);
        } else
                w->data = hdr;
        free(r);
}

void nbd_request_done(NbdRequest *r, int error)
{
        NbdConn *c = r->conn;
        c->inflight--;
        if (c->phase != CONN_TRANSMISSION) { /* its client is gone */
                free(r->buf);
                free(r);
                conn_maybe_free(c);
                return;
        }
        put32(r->buf, NBD_SIMPLE_REPLY_MAGIC);
        put32(r->buf + 4, (uint32_t) error);
        put64(r->buf + 8, r->handle);
        /* QEMU reads a read's data only when it worked (block/nbd.c, simple replies) */
        size_t n = NBD_REPLY_SIZE + (r->type == NBD_CMD_READ && !error ? r->length : 0);
        conn_send(c, r->buf, n);
        free(r);
}

/* ---- reading ---- */

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
        NbdConn *c = h->data;
        if (c->filling) { /* the rest of a write's data, and nothing more */
                *b = uv_buf_init((char *) c->filling->data + c->filled,
                                 (unsigned) (c->filling->length - c->filled));
                return;
        }
        size_t want = 256 * 1024;
        if (c->cap - c->len < want) {
                size_t cap = c->cap ? c->cap : want;
                while (cap - c->len < want)
                        cap *= 2;
                uint8_t *p = realloc(c->buf, cap);
                if (!p) {
                        *b = uv_buf_init(NULL, 0);
                        return;
                }
                c->buf = p;
                c->cap = cap;
        }
        *b = uv_buf_init((char *) c->buf + c->len, (unsigned) (c->cap - c->len));
}

static ssize_t take(NbdConn *c, const uint8_t *p, size_t n)
{
        switch (c->phase) {
        case CONN_CLIENT_FLAGS: {
                if (n < 4)
                        return 0;
                uint32_t flags = get32(p);
                if (!(flags & NBD_FLAG_C_FIXED_NEWSTYLE))
                        return -1;
                c->no_zeroes = flags & NBD_FLAG_C_NO_ZEROES;
                c->phase = CONN_OPTIONS;
                return 4;
        }
        case CONN_OPTIONS:
                return take_option(c, p, n);
        case CONN_TRANSMISSION:
                return take_request(c, p, n);
        case CONN_CLOSING:
                break;
        }
        return -1;
}

static void conn_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
        NbdConn *c = st->data;
        if (nread < 0) {
                conn_close(c);
                return;
        }
        if (c->filling) {
                c->filled += (size_t) nread;
                if (c->filled < c->filling->length)
                        return;
                NbdRequest *r = c->filling;
                c->filling = NULL;
                dispatch(c, r, c->filling_error);
                return;
        }
        c->len += (size_t) nread;
        size_t pos = 0;
        while (c->phase != CONN_CLOSING) {
                ssize_t used = take(c, c->buf + pos, c->len - pos);
                if (used < 0) {
                        conn_close(c);
                        return;
                }
                if (used == 0)
                        break;
                pos += (size_t) used;
        }
        memmove(c->buf, c->buf + pos, c->len - pos);
        c->len -= pos;
        /* a buffer grown for one big write goes back to its usual size */
        if (c->len == 0 && c->cap > (4u << 20)) {
                free(c->buf);
                c->buf = NULL;
                c->cap = 0;
        }
}

static void greet(NbdConn *c)
{
        uint8_t *b = malloc(18);
        if (!b)
                return;
        put64(b, NBD_MAGIC);
        put64(b + 8, NBD_IHAVEOPT);
        put16(b + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
        conn_send(c, b, 18);
}

static void on_connection(uv_stream_t *l, int status)
{
        NbdServer *s = l->data;
        NbdConn *c = status == 0 ? calloc(1, sizeof *c) : NULL;
        if (!c)
                return;
        c->server = s;
        uv_pipe_init(l->loop, &c->pipe, 0);
        c->pipe.data = c;
        s->open_handles++;
        if (uv_accept(l, (uv_stream_t *) &c->pipe) < 0 || s->conn) {
                c->phase = CONN_CLOSING; /* closed at once, without telling the owner */
                uv_close((uv_handle_t *) &c->pipe, on_conn_closed);
                return;
        }
        s->conn = c;
        uv_os_fd_t fd;
        int size = 4 << 20; /* a 1 MiB read's reply in one go */
        if (uv_fileno((uv_handle_t *) &c->pipe, &fd) == 0) {
                (void) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
                (void) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
        }
        greet(c);
        if (uv_read_start((uv_stream_t *) &c->pipe, conn_alloc, conn_read) < 0)
                conn_close(c);
}

/* ---- the server ---- */

static void on_listener_closed(uv_handle_t *h)
{
        NbdServer *s = h->data;
        s->open_handles--;
        server_maybe_free(s);
}

NbdServer *nbd_server_new(uv_loop_t *loop, const char *path, const char *export_name, uint64_t size,
                          const NbdServerOps *ops, void *data, char *err, size_t errlen)
{
        NbdServer *s = calloc(1, sizeof *s);
        if (!s || !(s->path = strdup(path)) || !(s->export_name = strdup(export_name))) {
                if (s)
                        free(s->path);
                free(s);
                snprintf(err, errlen, "NBD server %s: out of memory", path);
                return NULL;
        }
        s->size = size;
        s->ops = *ops;
        s->data = data;
        int r = uv_pipe_init(loop, &s->listener, 0);
        if (r == 0) {
                s->listener.data = s;
                s->open_handles = 1;
                r = uv_pipe_bind(&s->listener, path);
                if (r == 0)
                        r = uv_listen((uv_stream_t *) &s->listener, 4, on_connection);
                if (r < 0) {
                        snprintf(err, errlen, "NBD server %s: %s", path, uv_strerror(r));
                        (void) unlink(path);
                        s->closing = true;
                        uv_close((uv_handle_t *) &s->listener, on_listener_closed);
                        return NULL;
                }
                return s;
        }
        snprintf(err, errlen, "NBD server %s: %s", path, uv_strerror(r));
        free(s->path);
        free(s->export_name);
        free(s);
        return NULL;
}

void nbd_server_close(NbdServer *s)
{
        if (!s || s->closing)
                return;
        s->closing = true;
        if (s->conn)
                conn_close(s->conn);
        (void) unlink(s->path);
        uv_close((uv_handle_t *) &s->listener, on_listener_closed);
}

void nbd_server_client_gone(NbdServer *s)
{
        NbdConn *c = s->conn;
        uv_os_fd_t fd;
        if (!c || uv_fileno((uv_handle_t *) &c->pipe, &fd) < 0)
                return;
        /* what it sent before it died (NBD_CMD_DISC among it, for a QEMU that quit) */
        for (;;) {
                uv_buf_t b;
                conn_alloc((uv_handle_t *) &c->pipe, 0, &b);
                ssize_t n = b.len ? recv(fd, b.base, b.len, MSG_DONTWAIT) : -1;
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                conn_read((uv_stream_t *) &c->pipe, n, &b);
                if (s->conn != c)
                        return; /* that ended it */
        }
        conn_close(c);
}
