/* agent_client.c: host side of the agent protocol over a libuv stream (see agent_client.h).
 *
 * Sections: connection, reading and dispatch, requests, timeouts, teardown.
 */
#include "agent_client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "connect.h"
#include "env.h"
#include "events.h"

#define SWEEP_MS 50
#define HEARTBEAT_MS                                                                               \
        10000 /* quiet this long with requests in flight: probed; as long again                    \
               * with no frame: hung (PROVIUM_AGENT_HEARTBEAT overrides it) */

struct AgentClient {
        uv_loop_t *loop;
        char *name;
        uv_pipe_t *pipe;   /* NULL until connected; freed by its close callback */
        uv_timer_t *sweep; /* request deadlines; freed by its close callback */
        Connector *connector;
        ProtoReader reader;
        ProtoWriter writer;
        AgentRequest *pending; /* doubly linked, newest first */
        AgentRequest hello;
        bool ready;
        char *agent_version;
        char *kernel;
        char *arch;
        AgentReadyFn ready_cb;
        AgentLostFn lost_cb;
        void *cb_data;
        uint64_t hello_timeout_ms;
        void (*connected_fn)(AgentClient *c, void *data);
        bool retired;
        bool heartbeat_held;  /* the VM's vCPUs are stopped (paused, saving): no probe */
        uint64_t quiet_since; /* the last frame from the agent, or the first request after none */
        uint64_t probe_ns;    /* when the heartbeat probe went, 0 when none is out */
        uint64_t swept_ns;    /* the last sweep: one long after it follows a loop that stalled */
        int closed_status;    /* the first shutdown's status: why the connection closed */
        int depth;            /* callbacks running: agent_client_free then only marks it doomed */
        bool doomed;          /* freed by its owner inside a callback: destroyed when they return */
};

static void destroy(AgentClient *c);

/* Around callbacks: one may free the client (a test that restores or releases its VM from an
 * operation's continuation), which must then wait until the callback returns. */
static void enter(AgentClient *c)
{
        c->depth++;
}

static void leave(AgentClient *c)
{
        if (--c->depth == 0 && c->doomed)
                destroy(c);
}

/* Request ids are unique across every client of the process, and across processes: after a
 * restore the guest's agent can still hold requests of the connection that saved the state (a
 * fixture's service started with run_async, in another process), so a new request must not
 * reuse their ids, and their late frames must not match one. Each process starts at the wall
 * clock in microseconds: a process issues far fewer than one request a microsecond, so the ids
 * any earlier process issued are all below it. */
static uint64_t next_request_id;

static uint64_t request_id_next(void)
{
        if (next_request_id == 0) {
                struct timespec ts;
                (void) clock_gettime(CLOCK_REALTIME, &ts);
                next_request_id = (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
        }
        return next_request_id++;
}

static void on_handle_closed(uv_handle_t *h)
{
        free(h);
}

static void close_pipe(AgentClient *c)
{
        if (!c->pipe)
                return;
        c->pipe->data = NULL;
        uv_close((uv_handle_t *) c->pipe, on_handle_closed);
        c->pipe = NULL;
}

static void fail_all(AgentClient *c, int status)
{
        while (c->pending) {
                AgentRequest *req = c->pending;
                agent_request_cancel(req);
                if (req->on_reply)
                        req->on_reply(req, status, NULL);
        }
}

void agent_client_shutdown(AgentClient *c, int status)
{
        if (!c->closed_status)
                c->closed_status = status;
        c->connector = connector_cancel(c->connector);
        close_pipe(c);
        c->ready = false;
        fail_all(c, status);
}

/* ---- reading and dispatch ---- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
        AgentClient *c = h->data;
        size_t want = 64 * 1024;
        uint8_t *p = c ? proto_reader_space(&c->reader, want) : NULL;
        *buf = uv_buf_init((char *) p, p ? (unsigned) want : 0);
}

static AgentRequest *find_pending(AgentClient *c, uint64_t id)
{
        for (AgentRequest *r = c->pending; r; r = r->next)
                if (r->id == id)
                        return r;
        return NULL;
}

static int dispatch(AgentClient *c, const msgpack_object *msg)
{
        uint64_t id;
        if (proto_get_uint(msg, "id", &id) != 1)
                return -EBADMSG;
        AgentRequest *req = find_pending(c, id);
        const msgpack_object *chunk = proto_get(msg, "chunk");
        if (chunk) {
                const char *data = NULL;
                size_t len = 0;
                if (chunk->type != MSGPACK_OBJECT_STR || chunk->via.str.size > 15 ||
                    proto_get_bytes(msg, "data", &data, &len) < 0)
                        return -EBADMSG;
                char kind[16];
                memcpy(kind, chunk->via.str.ptr, chunk->via.str.size);
                kind[chunk->via.str.size] = 0;
                if (req && req->on_chunk)
                        req->on_chunk(req, kind, data, len, msg);
                return 0;
        }
        bool ok;
        if (proto_get_bool(msg, "ok", &ok) != 1)
                return -EBADMSG;
        if (req) {
                agent_request_cancel(req);
                if (req->on_reply)
                        req->on_reply(req, 0, msg);
        }
        return 0;
}

static void read_frames(AgentClient *c, ssize_t n)
{
        if (n < 0) {
                int status = n == UV_EOF ? -ECONNRESET : (int) n;
                close_pipe(c);
                if (c->ready && c->lost_cb && c->lost_cb(c, status, c->cb_data))
                        return;
                agent_client_shutdown(c, status);
                return;
        }
        proto_reader_commit(&c->reader, (size_t) n);
        c->quiet_since = events_mono_ns();
        for (;;) {
                msgpack_object msg;
                int r = proto_reader_next(&c->reader, &msg);
                if (r == 0)
                        return;
                if (r > 0)
                        r = dispatch(c, &msg);
                if (r < 0 && !c->doomed) {
                        /* The guest is not trusted: a bad frame ends the connection, not us. */
                        agent_client_shutdown(c, r);
                        return;
                }
                if (!c->pipe || c->doomed)
                        return;
        }
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
        AgentClient *c = s->data;
        if (!c)
                return;
        enter(c);
        read_frames(c, n);
        leave(c);
}

/* ---- connection ---- */

static char *dup_field(const msgpack_object *m, const char *key)
{
        char *s = NULL;
        return proto_dup_str(m, key, &s) == 1 ? s : NULL;
}

static void on_hello(AgentRequest *req, int status, const msgpack_object *reply)
{
        AgentClient *c = req->data;
        uint64_t version = 0;
        bool ok = false;
        if (status == 0) {
                if (proto_get_bool(reply, "ok", &ok) != 1 || !ok)
                        status = -EPROTO;
                else if (proto_get_uint(reply, "version", &version) != 1 ||
                         version != PROTO_VERSION)
                        status = -EPROTONOSUPPORT;
        }
        if (status == 0) {
                c->agent_version = dup_field(reply, "agent");
                c->kernel = dup_field(reply, "kernel");
                c->arch = dup_field(reply, "arch");
                c->ready = true;
        }
        AgentReadyFn cb = c->ready_cb;
        c->ready_cb = NULL;
        if (status < 0)
                agent_client_shutdown(c, status);
        if (cb)
                cb(c, status, c->cb_data);
}

static void connected(AgentClient *c, int status, int fd);

static void on_connected(void *data, int status, int fd)
{
        AgentClient *c = data;
        enter(c);
        connected(c, status, fd);
        leave(c);
}

static void connected(AgentClient *c, int status, int fd)
{
        c->connector = NULL;
        int r = status;
        if (r == 0) {
                c->pipe = calloc(1, sizeof *c->pipe);
                if (!c->pipe) {
                        r = -ENOMEM;
                        (void) close(fd);
                }
        }
        if (r == 0) {
                r = uv_pipe_init(c->loop, c->pipe, 0);
                if (r == 0) {
                        c->pipe->data = c;
                        r = uv_pipe_open(c->pipe, fd);
                        if (r < 0)
                                (void) close(fd);
                        else
                                r = uv_read_start((uv_stream_t *) c->pipe, alloc_cb, read_cb);
                        if (r < 0)
                                close_pipe(c);
                } else {
                        free(c->pipe);
                        c->pipe = NULL;
                        (void) close(fd);
                }
        }
        if (r == 0 && c->connected_fn)
                c->connected_fn(c, c->cb_data);
        if (c->doomed)
                return;
        if (r == 0) {
                c->hello = (AgentRequest){.on_reply = on_hello, .data = c};
                ProtoWriter *w = agent_request_begin(c, &c->hello, "hello", 1);
                proto_kv_uint(w, "version", PROTO_VERSION);
                r = agent_request_send(c, &c->hello, c->hello_timeout_ms);
        }
        if (r < 0) {
                AgentReadyFn cb = c->ready_cb;
                c->ready_cb = NULL;
                agent_client_shutdown(c, r);
                if (cb)
                        cb(c, r, c->cb_data);
        }
}

AgentClient *agent_client_new(uv_loop_t *loop, const char *name)
{
        AgentClient *c = calloc(1, sizeof *c);
        if (!c)
                return NULL;
        c->loop = loop;
        c->name = strdup(name);
        proto_writer_init(&c->writer);
        if (!c->name || proto_reader_init(&c->reader) < 0)
                return agent_client_free(c);
        return c;
}

int agent_client_connect(AgentClient *c, const char *path, uint64_t timeout_ms,
                         AgentReadyFn ready_cb, AgentLostFn lost_cb, void *data)
{
        if (c->pipe || c->connector)
                return -EALREADY;
        c->ready_cb = ready_cb;
        c->lost_cb = lost_cb;
        c->cb_data = data;
        c->hello_timeout_ms = timeout_ms;
        c->connector = connector_start(c->loop, path, timeout_ms, on_connected, c);
        return c->connector ? 0 : -ENOMEM;
}

int agent_client_set_owner(AgentClient *c, const char *name, void *data)
{
        c->cb_data = data;
        char *copy = strdup(name);
        if (!copy)
                return -ENOMEM;
        free(c->name);
        c->name = copy;
        return 0;
}

bool agent_client_ready(const AgentClient *c)
{
        return c && c->ready;
}

bool agent_client_connected(const AgentClient *c)
{
        return c && c->pipe;
}

const char *agent_client_arch(const AgentClient *c)
{
        return c->arch;
}

/* ---- requests ---- */

ProtoWriter *agent_frame_begin(AgentClient *c, uint32_t npairs)
{
        proto_writer_reset(&c->writer);
        proto_begin(&c->writer, npairs);
        return &c->writer;
}

ProtoWriter *agent_request_begin(AgentClient *c, AgentRequest *req, const char *op, uint32_t nargs)
{
        req->id = request_id_next();
        ProtoWriter *w = agent_frame_begin(c, nargs + 2);
        proto_kv_uint(w, "id", req->id);
        proto_kv_str(w, "op", op);
        return w;
}

static void on_write_done(uv_write_t *wr, int status)
{
        free(wr);
}

int agent_frame_send(AgentClient *c)
{
        int r = proto_end(&c->writer);
        if (r < 0)
                return r;
        if (!c->pipe)
                return c->retired ? -ESTALE : -ENOTCONN;
        size_t len;
        const uint8_t *p = proto_writer_data(&c->writer, &len);
        /* Mostly the socket takes the frame at once: no request, no callback, no epoll change.
         * uv_try_write refuses (EAGAIN) while earlier writes are queued, so order holds. */
        uv_buf_t now = uv_buf_init((char *) p, (unsigned) len);
        r = uv_try_write((uv_stream_t *) c->pipe, &now, 1);
        if (r >= 0) {
                p += r;
                len -= (size_t) r;
                if (len == 0)
                        return 0;
        } else if (r != UV_EAGAIN)
                return r;
        /* The rest waits: one allocation holds the write request and a copy of it. */
        uv_write_t *wr = malloc(sizeof *wr + len);
        if (!wr)
                return -ENOMEM;
        memcpy(wr + 1, p, len);
        uv_buf_t buf = uv_buf_init((char *) (wr + 1), (unsigned) len);
        r = uv_write(wr, (uv_stream_t *) c->pipe, &buf, 1, on_write_done);
        if (r < 0)
                free(wr);
        return r;
}

static void on_sweep(uv_timer_t *t);

static int ensure_sweep(AgentClient *c)
{
        if (c->sweep)
                return 0;
        c->sweep = calloc(1, sizeof *c->sweep);
        if (!c->sweep)
                return -ENOMEM;
        int r = uv_timer_init(c->loop, c->sweep);
        if (r < 0) {
                free(c->sweep);
                c->sweep = NULL;
                return r;
        }
        c->sweep->data = c;
        r = uv_timer_start(c->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
        uv_unref((uv_handle_t *) c->sweep);
        return r;
}

int agent_request_send(AgentClient *c, AgentRequest *req, uint64_t timeout_ms)
{
        int r = ensure_sweep(c);
        if (r < 0)
                return r;
        r = agent_frame_send(c);
        if (r < 0)
                return r;
        req->client = c;
        req->started_ns = events_mono_ns();
        if (!c->pending)
                c->quiet_since = req->started_ns;
        req->deadline_ns = timeout_ms ? req->started_ns + timeout_ms * 1000000u : 0;
        req->prev = NULL;
        req->next = c->pending;
        if (c->pending)
                c->pending->prev = req;
        c->pending = req;
        return 0;
}

void agent_request_cancel(AgentRequest *req)
{
        AgentClient *c = req->client;
        if (!c)
                return;
        if (req->prev)
                req->prev->next = req->next;
        else
                c->pending = req->next;
        if (req->next)
                req->next->prev = req->prev;
        req->prev = req->next = NULL;
        req->client = NULL;
}

/* ---- timeouts ---- */

void agent_client_send_cancel(AgentClient *c, uint64_t target)
{
        ProtoWriter *w = agent_frame_begin(c, 3);
        proto_kv_uint(w, "id", 0); /* id 0 is never a request of ours: its reply is dropped */
        proto_kv_str(w, "op", "cancel");
        proto_kv_uint(w, "target", target);
        (void) agent_frame_send(c);
}

static uint64_t heartbeat_ns(void)
{
        const char *v = env_get()->agent_heartbeat;
        long ms = v ? strtol(v, NULL, 10) : 0;
        return (uint64_t) (ms > 0 && ms <= 600000 ? ms : HEARTBEAT_MS) * 1000000u;
}

void agent_client_hold_heartbeat(AgentClient *c, bool held)
{
        c->heartbeat_held = held;
        c->probe_ns = 0;
        c->quiet_since = events_mono_ns(); /* a resumed guest gets a whole period */
}

/* Requests of the caller's in flight (the hello is the connection's own, with its timeout). */
static bool requests_waiting(const AgentClient *c)
{
        for (const AgentRequest *r = c->pending; r; r = r->next)
                if (r != &c->hello)
                        return true;
        return false;
}

static bool past_deadline(const AgentRequest *req, uint64_t now)
{
        return req->deadline_ns && now >= req->deadline_ns;
}

/* Sent before now: a request a failed one's callback sends gets its own time. */
static bool in_flight_before(const AgentRequest *req, uint64_t now)
{
        return req->started_ns <= now;
}

/* Fails each request in flight that due picks with status, the agent asked to stop it; the
 * connection stays up, and a late reply is dropped by id. */
static void fail_due(AgentClient *c, uint64_t now, bool (*due)(const AgentRequest *, uint64_t),
                     int status)
{
        for (AgentRequest *req = c->pending; req && !c->doomed;) {
                AgentRequest *next = req->next;
                if (due(req, now)) {
                        agent_client_send_cancel(c, req->id);
                        agent_request_cancel(req);
                        if (req->on_reply)
                                req->on_reply(req, status, NULL);
                        next = c->pending; /* the callback may have changed the list */
                }
                req = next;
        }
}

/* A connection quiet for a period with requests in flight gets a probe (a cancel of id 0,
 * which the agent answers at once, from its poll loop, however busy its requests are); one
 * that then stays quiet for another period has a hung agent or guest: its requests fail with
 * -EHOSTDOWN, and the connection stays (a guest that wakes up is served again). An operation
 * without a timeout of its own, or with a long one, thus learns within two periods. */
static void heartbeat(AgentClient *c, uint64_t now)
{
        uint64_t period = heartbeat_ns();
        /* after a stall of the loop (a test's blocking call) the answer may be unread yet:
         * nothing is declared hung before the loop has polled again */
        bool stalled = c->swept_ns && now - c->swept_ns > 20u * SWEEP_MS * 1000000u;
        c->swept_ns = now;
        if (!c->ready || c->retired || c->heartbeat_held || !requests_waiting(c)) {
                c->probe_ns = 0;
                return;
        }
        if (c->probe_ns && c->quiet_since >= c->probe_ns)
                c->probe_ns = 0; /* answered */
        if (!c->probe_ns) {
                if (now - c->quiet_since >= period) {
                        agent_client_send_cancel(c, 0);
                        c->probe_ns = now;
                }
                return;
        }
        if (now - c->probe_ns < period || stalled)
                return;
        c->probe_ns = 0;
        c->quiet_since = now;
        fail_due(c, now, in_flight_before, -EHOSTDOWN);
}

uint64_t agent_client_heartbeat_ms(void)
{
        return heartbeat_ns() / 1000000u;
}

static void on_sweep(uv_timer_t *t)
{
        AgentClient *c = t->data;
        if (!c)
                return;
        uint64_t now = events_mono_ns();
        enter(c);
        fail_due(c, now, past_deadline, -ETIMEDOUT);
        if (!c->doomed)
                heartbeat(c, now);
        leave(c);
}

/* ---- teardown ---- */

void agent_client_on_connected(AgentClient *c, void (*fn)(AgentClient *c, void *data))
{
        c->connected_fn = fn;
}

void agent_client_retire(AgentClient *c)
{
        c->lost_cb = NULL;
        c->ready_cb = NULL;
        c->connected_fn = NULL;
        agent_client_shutdown(c, -ESTALE);
        c->retired = true;
}

bool agent_client_retired(const AgentClient *c)
{
        return c && c->retired;
}

static void destroy(AgentClient *c)
{
        proto_reader_done(&c->reader);
        proto_writer_done(&c->writer);
        free(c->agent_version);
        free(c->kernel);
        free(c->arch);
        free(c->name);
        free(c);
}

AgentClient *agent_client_free(AgentClient *c)
{
        if (!c || c->doomed)
                return NULL;
        c->lost_cb = NULL;
        c->ready_cb = NULL;
        c->connected_fn = NULL;
        enter(c);
        c->doomed = true;
        agent_client_shutdown(c, -ECANCELED);
        if (c->sweep) {
                c->sweep->data = NULL;
                uv_close((uv_handle_t *) c->sweep, on_handle_closed);
                c->sweep = NULL;
        }
        leave(c);
        return NULL;
}

int agent_client_closed_status(const AgentClient *c)
{
        return c ? c->closed_status : 0;
}

const char *agent_client_close_text(int status)
{
        switch (status) {
        case -EMSGSIZE:
                return "the agent sent a frame over 4 MiB";
        case -EBADMSG:
                return "the agent sent a frame that is not a reply or a chunk";
        case -ECONNRESET:
                return "the agent's connection was lost";
        case -EPROTO:
                return "the agent refused the connection's hello";
        case -EPROTONOSUPPORT:
                return "the agent speaks another protocol version";
        case -EHOSTDOWN:
                return "no frame from the agent, not even an answer to its heartbeat: the agent "
                       "or the guest is hung";
        default:
                return status < 0 ? strerror(-status) : "the connection is not open";
        }
}
