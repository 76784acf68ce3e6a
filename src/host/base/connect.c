/* connect.c: retrying Unix-socket connect driven by a libuv timer (see connect.h). */
#include "connect.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "events.h"

#define RETRY_MS 5

struct Connector {
        uv_timer_t timer;
        struct sockaddr_un addr;
        uint64_t deadline_ns;
        ConnectFn cb;
        void *data;
        int done; /* cb called or cancelled */
};

static void on_close(uv_handle_t *h)
{
        free(h->data);
}

static void finish(Connector *c, int status, int fd)
{
        c->done = 1;
        uv_timer_stop(&c->timer);
        uv_close((uv_handle_t *) &c->timer, on_close);
        c->cb(c->data, status, fd);
}

static int try_connect(Connector *c)
{
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &c->addr, sizeof c->addr) < 0) {
                int r = -errno;
                (void) close(fd);
                return r;
        }
        return fd;
}

static void on_tick(uv_timer_t *t)
{
        Connector *c = t->data;
        int fd = try_connect(c);
        if (fd >= 0)
                return finish(c, 0, fd);
        bool retryable = fd == -ENOENT || fd == -ECONNREFUSED || fd == -EAGAIN;
        if (!retryable)
                return finish(c, fd, -1);
        if (events_mono_ns() > c->deadline_ns)
                return finish(c, -ETIMEDOUT, -1);
}

Connector *connector_start(uv_loop_t *loop, const char *path, uint64_t timeout_ms, ConnectFn cb,
                           void *data)
{
        Connector *c = calloc(1, sizeof *c);
        if (!c)
                return NULL;
        c->addr.sun_family = AF_UNIX;
        strncpy(c->addr.sun_path, path, sizeof c->addr.sun_path - 1);
        c->deadline_ns = events_mono_ns() + timeout_ms * 1000000u;
        c->cb = cb;
        c->data = data;
        c->timer.data = c;
        int r = uv_timer_init(loop, &c->timer);
        if (r < 0) {
                free(c);
                return NULL;
        }
        r = uv_timer_start(&c->timer, on_tick, 0, RETRY_MS);
        if (r < 0) {
                uv_close((uv_handle_t *) &c->timer, on_close);
                return NULL;
        }
        return c;
}

Connector *connector_cancel(Connector *c)
{
        if (c && !c->done) {
                c->done = 1;
                uv_timer_stop(&c->timer);
                uv_close((uv_handle_t *) &c->timer, on_close);
        }
        return NULL;
}
