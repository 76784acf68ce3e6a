/* qmp.c: QMP client (see qmp.h). Messages are JSON objects, one per line (CRLF). */
#include "qmp.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "connect.h"
#include "env.h"
#include "events.h"

#define QMP_MAX_LINE  (16u << 20)
#define QMP_ANSWER_MS 30000 /* to greet us, and to answer each command: else it is wedged */
#define QMP_WATCH_MS  250   /* how often the oldest call's deadline is checked */

typedef struct QmpCall {
        uint64_t id;
        QmpReplyFn cb;
        void *data;
        uint64_t deadline_ns;
        struct QmpCall *next;
} QmpCall;

struct Qmp {
        uv_loop_t *loop;
        uv_pipe_t *pipe;
        Connector *connector;
        char *buf;
        size_t len, cap;
        bool greeted;
        bool negotiated;
        uint64_t next_id;
        QmpCall *calls; /* in flight, oldest first */
        QmpReadyFn ready_cb;
        QmpEventFn event_cb;
        void *data;
        int depth;            /* callbacks running: qmp_free then only marks it doomed */
        bool doomed;          /* freed by the owner inside a callback: free when they return */
        uv_timer_t *watch;    /* the greeting's and the calls' deadlines, while connected */
        uint64_t greet_by_ns; /* the greeting and negotiation are due by then */
};

/* How long QEMU has to answer (PROVIUM_QMP_TIMEOUT overrides it, for tests), in ns. */
static uint64_t answer_ns(void)
{
        const char *v = env_get()->qmp_timeout;
        long ms = v ? strtol(v, NULL, 10) : 0;
        return (uint64_t) (ms > 0 && ms <= 600000 ? ms : QMP_ANSWER_MS) * 1000000u;
}

static void qmp_destroy(Qmp *q)
{
        free(q->buf);
        free(q);
}

/* Around callbacks: a callback may call qmp_free (a VM restored from a reply's continuation). */
static void enter(Qmp *q)
{
        q->depth++;
}

static bool leave(Qmp *q)
{
        if (--q->depth == 0 && q->doomed) {
                qmp_destroy(q);
                return false;
        }
        return true;
}

static void on_pipe_closed(uv_handle_t *h)
{
        free(h);
}

static void fail_calls(Qmp *q, int status)
{
        while (q->calls) {
                QmpCall *call = q->calls;
                q->calls = call->next;
                if (call->cb)
                        call->cb(call->data, status, NULL);
                free(call);
        }
}

static void qmp_disconnect(Qmp *q, int status)
{
        enter(q);
        q->connector = connector_cancel(q->connector);
        if (q->watch) {
                uv_close((uv_handle_t *) q->watch, on_pipe_closed); /* frees it, not q */
                q->watch = NULL;
        }
        if (q->pipe) {
                uv_close((uv_handle_t *) q->pipe, on_pipe_closed);
                q->pipe = NULL;
        }
        QmpReadyFn ready = q->negotiated ? NULL : q->ready_cb;
        q->ready_cb = NULL;
        fail_calls(q, status);
        if (ready)
                ready(q->data, status);
        (void) leave(q);
}

static void on_capabilities(void *data, int status, json_t *result)
{
        Qmp *q = data;
        q->negotiated = status == 0;
        QmpReadyFn ready = q->ready_cb;
        q->ready_cb = NULL;
        if (ready)
                ready(q->data, status);
}

static void complete_call(Qmp *q, json_t *msg)
{
        json_t *id = json_object_get(msg, "id");
        QmpCall **pp = &q->calls;
        while (*pp && (!json_is_integer(id) || (*pp)->id != (uint64_t) json_integer_value(id)))
                pp = &(*pp)->next;
        QmpCall *call = *pp;
        if (!call)
                return;
        *pp = call->next;
        json_t *ret = json_object_get(msg, "return");
        if (call->cb) {
                if (ret)
                        call->cb(call->data, 0, ret);
                else
                        call->cb(call->data, -EPROTO, json_object_get(msg, "error"));
        }
        free(call);
}

static int handle_message(Qmp *q, json_t *msg)
{
        if (!json_is_object(msg))
                return -EPROTO;
        if (!q->greeted) {
                if (!json_object_get(msg, "QMP"))
                        return -EPROTO;
                q->greeted = true;
                return qmp_execute(q, "qmp_capabilities", NULL, on_capabilities, q);
        }
        const char *event = json_string_value(json_object_get(msg, "event"));
        if (event) {
                if (q->event_cb)
                        q->event_cb(q->data, event, json_object_get(msg, "data"));
                return 0;
        }
        complete_call(q, msg);
        return 0;
}

static int parse_lines(Qmp *q)
{
        char *start = q->buf, *end = q->buf + q->len, *nl;
        while (q->pipe && (nl = memchr(start, '\n', (size_t) (end - start)))) {
                json_error_t err;
                json_t *msg = json_loadb(start, (size_t) (nl - start), 0, &err);
                start = nl + 1;
                if (!msg)
                        return -EPROTO;
                int r = handle_message(q, msg);
                json_decref(msg);
                if (r < 0)
                        return r;
        }
        if (q->buf) {
                q->len = (size_t) (end - start);
                memmove(q->buf, start, q->len);
        }
        return q->len > QMP_MAX_LINE ? -EMSGSIZE : 0;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
        Qmp *q = h->data;
        if (q->cap - q->len < 4096) {
                size_t cap = q->cap ? q->cap * 2 : 8192;
                char *b = realloc(q->buf, cap);
                if (!b) {
                        *buf = uv_buf_init(NULL, 0);
                        return;
                }
                q->buf = b;
                q->cap = cap;
        }
        *buf = uv_buf_init(q->buf + q->len, (unsigned) (q->cap - q->len));
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
        Qmp *q = s->data;
        if (n < 0) {
                qmp_disconnect(q, n == UV_EOF ? -ECONNRESET : (int) n);
                return;
        }
        q->len += (size_t) n;
        enter(q);
        int r = parse_lines(q);
        if (r < 0 && !q->doomed)
                qmp_disconnect(q, r);
        (void) leave(q);
}

/* A QEMU that stops answering (stopped, wedged) fails what waits on it, as a closed socket
 * would: later replies could no longer be matched to their calls anyway. */
static void on_watch(uv_timer_t *t)
{
        Qmp *q = t->data;
        uint64_t now = events_mono_ns();
        bool late =
            (!q->negotiated && now > q->greet_by_ns) || (q->calls && now > q->calls->deadline_ns);
        if (late)
                qmp_disconnect(q, -ETIMEDOUT);
}

static int start_watch(Qmp *q)
{
        q->watch = malloc(sizeof *q->watch);
        if (!q->watch || uv_timer_init(q->loop, q->watch) < 0) {
                free(q->watch);
                q->watch = NULL;
                return -ENOMEM;
        }
        q->watch->data = q;
        uv_unref((uv_handle_t *) q->watch); /* it never keeps the loop alive on its own */
        q->greet_by_ns = events_mono_ns() + answer_ns();
        return uv_timer_start(q->watch, on_watch, QMP_WATCH_MS, QMP_WATCH_MS);
}

static void on_connected(void *data, int status, int fd)
{
        Qmp *q = data;
        q->connector = NULL;
        int r = status;
        if (r == 0) {
                q->pipe = calloc(1, sizeof *q->pipe);
                r = q->pipe ? uv_pipe_init(q->loop, q->pipe, 0) : -ENOMEM;
                if (r < 0) {
                        free(q->pipe);
                        q->pipe = NULL;
                        (void) close(fd);
                } else {
                        q->pipe->data = q;
                        r = uv_pipe_open(q->pipe, fd);
                        if (r < 0)
                                (void) close(fd);
                        else
                                r = uv_read_start((uv_stream_t *) q->pipe, alloc_cb, read_cb);
                }
        }
        if (r == 0)
                r = start_watch(q);
        if (r < 0)
                qmp_disconnect(q, r);
}

const char *qmp_error_text(int status, json_t *result)
{
        json_t *d = status == -EPROTO && result ? json_object_get(result, "desc") : NULL;
        if (json_is_string(d))
                return json_string_value(d);
        if (status == -ETIMEDOUT)
                return "QEMU did not answer QMP in time: it is stopped or wedged";
        if (status == -ECONNRESET || status == -ENOTCONN)
                return "QMP connection lost";
        return status < 0 ? strerror(-status) : "failed";
}

Qmp *qmp_new(uv_loop_t *loop)
{
        Qmp *q = calloc(1, sizeof *q);
        if (q) {
                q->loop = loop;
                q->next_id = 1;
        }
        return q;
}

bool qmp_ready(const Qmp *q)
{
        return q && q->negotiated && q->pipe;
}

int qmp_connect(Qmp *q, const char *path, uint64_t timeout_ms, QmpReadyFn ready_cb,
                QmpEventFn event_cb, void *data)
{
        q->ready_cb = ready_cb;
        q->event_cb = event_cb;
        q->data = data;
        q->connector = connector_start(q->loop, path, timeout_ms, on_connected, q);
        return q->connector ? 0 : -ENOMEM;
}

static void on_write_done(uv_write_t *wr, int status)
{
        free(wr);
}

int qmp_execute(Qmp *q, const char *cmd, json_t *args, QmpReplyFn cb, void *data)
{
        if (!q->pipe) {
                json_decref(args);
                return -ENOTCONN;
        }
        QmpCall *call = calloc(1, sizeof *call);
        json_t *msg = json_pack("{s:s, s:I}", "execute", cmd, "id", (json_int_t) q->next_id);
        if (!call || !msg || (args && json_object_set_new(msg, "arguments", args) < 0)) {
                free(call);
                json_decref(msg);
                return -ENOMEM;
        }
        char *text = json_dumps(msg, JSON_COMPACT);
        json_decref(msg);
        size_t len = text ? strlen(text) : 0;
        uv_write_t *wr = text ? malloc(sizeof *wr + len + 1) : NULL;
        if (!wr) {
                free(text);
                free(call);
                return -ENOMEM;
        }
        memcpy(wr + 1, text, len);
        ((char *) (wr + 1))[len] = '\n';
        free(text);
        uv_buf_t buf = uv_buf_init((char *) (wr + 1), (unsigned) len + 1);
        int r = uv_write(wr, (uv_stream_t *) q->pipe, &buf, 1, on_write_done);
        if (r < 0) {
                free(wr);
                free(call);
                return r;
        }
        call->id = q->next_id++;
        call->cb = cb;
        call->data = data;
        call->deadline_ns = events_mono_ns() + answer_ns();
        QmpCall **pp = &q->calls;
        while (*pp)
                pp = &(*pp)->next;
        *pp = call;
        return 0;
}

void qmp_set_data(Qmp *q, void *data)
{
        for (QmpCall *call = q->calls; call; call = call->next)
                if (call->data == q->data)
                        call->data = data;
        q->data = data;
}

Qmp *qmp_free(Qmp *q)
{
        if (!q)
                return NULL;
        q->ready_cb = NULL;
        q->event_cb = NULL;
        if (q->doomed)
                return NULL;
        enter(q);
        q->doomed = true;
        qmp_disconnect(q, -ECONNRESET);
        (void) leave(q);
        return NULL;
}
