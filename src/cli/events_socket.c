/* events_socket.c: the run's events to the clients of a Unix socket (events_socket.h).
 *
 * A client's phases: CONNECTED (events written to it; it is dropped when its queue is full),
 * DRAINING (the run is over: its queue is being written, then the connection shut down),
 * CLOSING. Sinks must not emit, so a drop is said later, from a zero-delay timer. */
#include "events_socket.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "env.h"
#include "events.h"

#define DRAIN_MS 2000

typedef enum ClientPhase { CLIENT_CONNECTED, CLIENT_DRAINING, CLIENT_CLOSING } ClientPhase;

typedef struct Client {
        uv_pipe_t pipe;
        struct EventsSocket *s;
        ClientPhase phase;
        size_t queued; /* bytes handed to uv_write, not written yet */
        uv_shutdown_t shutdown;
        struct Client *next;
} Client;

struct EventsSocket {
        uv_loop_t *loop;
        char *path;
        uv_pipe_t listener;
        bool listening;
        int sink;
        Client *clients;
        unsigned nclients;
        uint64_t dropped, dropped_reported;
        size_t queue_max; /* EVENTS_CLIENT_QUEUE, or $PROVIUM_EVENTS_QUEUE */
        uv_timer_t timer; /* says drops; bounds the drain */
        bool draining, closing;
        int open_handles;
        char buf[64]; /* what a client sends is read and ignored */
};

static void socket_maybe_free(EventsSocket *s)
{
        if (s->closing && s->open_handles == 0) {
                free(s->path);
                free(s);
        }
}

/* The listener's and the timer's (data: the socket). */
static void on_handle_closed(uv_handle_t *h)
{
        EventsSocket *s = h->data;
        s->open_handles--;
        socket_maybe_free(s);
}

static void on_client_closed(uv_handle_t *h)
{
        Client *c = h->data;
        EventsSocket *s = c->s;
        free(c);
        s->open_handles--;
        socket_maybe_free(s);
}

static void client_close(Client *c)
{
        if (c->phase == CLIENT_CLOSING)
                return;
        c->phase = CLIENT_CLOSING;
        EventsSocket *s = c->s;
        for (Client **p = &s->clients; *p; p = &(*p)->next)
                if (*p == c) {
                        *p = c->next;
                        break;
                }
        s->nclients--;
        uv_close((uv_handle_t *) &c->pipe, on_client_closed);
        if (s->draining && !s->clients)
                (void) uv_timer_stop(&s->timer);
}

/* ---- events out ---- */

typedef struct Write {
        uv_write_t req;
        Client *c;
        size_t len;
        uint8_t data[];
} Write;

static void on_written(uv_write_t *req, int status)
{
        Write *w = (Write *) req;
        if (status != UV_ECANCELED) /* a cancelled one belongs to a client already closed */
                w->c->queued -= w->len;
        if (status < 0 && status != UV_ECANCELED)
                client_close(w->c);
        free(w);
}

static void say_drops(uv_timer_t *t)
{
        EventsSocket *s = t->data;
        if (s->draining) { /* the drain's time is up: what is left is dropped */
                while (s->clients)
                        client_close(s->clients);
                return;
        }
        uint64_t n = s->dropped - s->dropped_reported;
        s->dropped_reported = s->dropped;
        EventBuilder ev;
        event_begin(&ev, "events.client_dropped", 3);
        proto_kv_str(&ev.w, "socket", s->path);
        proto_kv_uint(&ev.w, "clients", n);
        proto_kv_uint(&ev.w, "queue_bytes", s->queue_max);
        event_end(&ev);
}

static void send_event(Client *c, const uint8_t *mp, size_t len)
{
        EventsSocket *s = c->s;
        if (c->queued + len > s->queue_max) { /* it does not keep up: let it go */
                client_close(c);
                s->dropped++;
                (void) uv_timer_start(&s->timer, say_drops, 0, 0);
                return;
        }
        Write *w = malloc(sizeof *w + len);
        if (!w)
                return client_close(c);
        w->c = c;
        w->len = len;
        memcpy(w->data, mp, len);
        uv_buf_t b = uv_buf_init((char *) w->data, (unsigned) len);
        c->queued += len;
        if (uv_write(&w->req, (uv_stream_t *) &c->pipe, &b, 1, on_written) < 0) {
                c->queued -= len;
                free(w);
                client_close(c);
        }
}

static void socket_sink(void *data, const char *type, const uint8_t *mp, size_t len)
{
        EventsSocket *s = data;
        for (Client *c = s->clients, *next; c; c = next) {
                next = c->next;
                if (c->phase == CLIENT_CONNECTED)
                        send_event(c, mp, len);
        }
}

/* ---- clients ---- */

static void client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
        Client *c = h->data;
        *b = uv_buf_init(c->s->buf, sizeof c->s->buf);
}

static void client_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
        if (n < 0) /* it went away */
                client_close(st->data);
}

static void on_connection(uv_stream_t *l, int status)
{
        EventsSocket *s = l->data;
        Client *c = status == 0 ? calloc(1, sizeof *c) : NULL;
        if (!c)
                return;
        c->s = s;
        uv_pipe_init(s->loop, &c->pipe, 0);
        c->pipe.data = c;
        s->open_handles++;
        if (uv_accept(l, (uv_stream_t *) &c->pipe) < 0 || s->nclients >= EVENTS_MAX_CLIENTS ||
            s->draining) {
                c->phase = CLIENT_CLOSING;
                uv_close((uv_handle_t *) &c->pipe, on_client_closed);
                return;
        }
        uv_unref((uv_handle_t *) &c->pipe); /* a client does not keep the run going */
        /* What a client has not read is bounded by its queue here, not by a large kernel
         * buffer in between. */
        uv_os_fd_t fd;
        int size = 64 * 1024;
        if (uv_fileno((uv_handle_t *) &c->pipe, &fd) == 0)
                (void) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
        c->next = s->clients;
        s->clients = c;
        s->nclients++;
        if (uv_read_start((uv_stream_t *) &c->pipe, client_alloc, client_read) < 0)
                client_close(c);
}

/* ---- the socket ---- */

/* A socket file nobody listens on (a run that died) is removed; a live one is an error. */
static int clear_stale(const char *path)
{
        struct stat st;
        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISSOCK(st.st_mode))
                return -EEXIST;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
        int r = fd < 0                                               ? -errno
                : connect(fd, (struct sockaddr *) &a, sizeof a) == 0 ? -EADDRINUSE
                                                                     : 0;
        if (fd >= 0)
                (void) close(fd);
        return r == 0 && unlink(path) < 0 ? -errno : r;
}

EventsSocket *events_socket_open(uv_loop_t *loop, const char *path, char *err, size_t errlen)
{
        EventsSocket *s = calloc(1, sizeof *s);
        if (!s || !(s->path = strdup(path))) {
                free(s);
                snprintf(err, errlen, "--events unix:%s: out of memory", path);
                return NULL;
        }
        s->loop = loop;
        s->sink = -1;
        const char *q = env_get()->events_queue;
        s->queue_max = q && atol(q) > 0 ? (size_t) atol(q) : EVENTS_CLIENT_QUEUE;
        int r = strlen(path) >= sizeof((struct sockaddr_un *) 0)->sun_path ? -ENAMETOOLONG
                                                                           : clear_stale(path);
        if (r < 0) {
                snprintf(err, errlen, "--events unix:%s: %s", path,
                         r == -EADDRINUSE ? "another run is listening there"
                         : r == -EEXIST   ? "a file that is not a socket is there"
                                          : strerror(-r));
                free(s->path);
                free(s);
                return NULL;
        }
        uv_pipe_init(loop, &s->listener, 0);
        uv_timer_init(loop, &s->timer);
        s->listener.data = s->timer.data = s;
        s->open_handles = 2;
        mode_t old = umask(0177); /* 0600 from the start (no thread runs yet) */
        r = uv_pipe_bind(&s->listener, path);
        umask(old);
        if (r == 0)
                r = uv_listen((uv_stream_t *) &s->listener, 16, on_connection);
        if (r == 0 && (s->sink = events_subscribe(socket_sink, s)) < 0)
                r = UV_ENOMEM;
        if (r < 0) {
                snprintf(err, errlen, "--events unix:%s: %s", path, uv_strerror(r));
                (void) unlink(path);
                s->closing = true;
                uv_close((uv_handle_t *) &s->listener, on_handle_closed);
                uv_close((uv_handle_t *) &s->timer, on_handle_closed);
                return NULL;
        }
        s->listening = true;
        uv_unref((uv_handle_t *) &s->listener);
        uv_unref((uv_handle_t *) &s->timer);
        return s;
}

static void on_shut(uv_shutdown_t *req, int status)
{
        client_close(req->data);
}

void events_socket_drain(EventsSocket *s)
{
        if (!s || s->draining || s->closing)
                return;
        s->draining = true;
        if (s->listening) {
                s->listening = false;
                uv_close((uv_handle_t *) &s->listener, on_handle_closed);
                (void) unlink(s->path);
        }
        if (!s->clients)
                return;
        uv_ref((uv_handle_t *) &s->timer); /* the drain is bounded, and waited for */
        (void) uv_timer_start(&s->timer, say_drops, DRAIN_MS, 0);
        for (Client *c = s->clients, *next; c; c = next) {
                next = c->next;
                c->phase = CLIENT_DRAINING;
                c->shutdown.data = c;
                uv_ref((uv_handle_t *) &c->pipe);
                if (uv_shutdown(&c->shutdown, (uv_stream_t *) &c->pipe, on_shut) < 0)
                        client_close(c);
        }
}

void events_socket_close(EventsSocket *s)
{
        if (!s || s->closing)
                return;
        if (s->sink >= 0)
                events_unsubscribe(s->sink);
        s->sink = -1;
        while (s->clients)
                client_close(s->clients);
        if (s->listening) {
                s->listening = false;
                uv_close((uv_handle_t *) &s->listener, on_handle_closed);
        }
        (void) unlink(s->path);
        s->closing = true;
        uv_close((uv_handle_t *) &s->timer, on_handle_closed);
        socket_maybe_free(s);
}
