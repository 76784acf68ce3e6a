/* fuzz_peer.c: see fuzz_peer.h. */
#include "fuzz_peer.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static char dir[64];
static struct sockaddr_un addr = {.sun_family = AF_UNIX};
static int listener = -1;
static uv_loop_t *loop;

static void remove_dir(void)
{
        (void) unlink(addr.sun_path);
        (void) rmdir(dir);
}

void fuzz_peer_init(const char *name)
{
        snprintf(dir, sizeof dir, "/tmp/provium-fuzz-%s-XXXXXX", name);
        if (!mkdtemp(dir))
                abort();
        snprintf(addr.sun_path, sizeof addr.sun_path, "%s/%s.sock", dir, name);
        atexit(remove_dir);
        listener = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (listener < 0 || bind(listener, (struct sockaddr *) &addr, sizeof addr) < 0 ||
            listen(listener, 4) < 0)
                abort();
        loop = uv_default_loop();
}

const char *fuzz_peer_path(void)
{
        return addr.sun_path;
}

uv_loop_t *fuzz_peer_loop(void)
{
        return loop;
}

void fuzz_spin(int rounds)
{
        for (int i = 0; i < rounds; i++)
                (void) uv_run(loop, UV_RUN_NOWAIT);
}

int fuzz_peer_accept(void)
{
        for (int i = 0; i < 1000; i++) {
                fuzz_spin(1);
                int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (fd >= 0)
                        return fd;
                struct pollfd p = {.fd = listener, .events = POLLIN};
                (void) poll(&p, 1, 1);
        }
        abort(); /* the client never connected */
}

void fuzz_feed(int fd, const uint8_t *data, size_t len, size_t chunk,
               void (*after)(int fd, void *arg), void *arg)
{
        while (len > 0) {
                size_t n = len < chunk ? len : chunk;
                ssize_t w = send(fd, data, n, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
                        return; /* the client hung up: what it read was enough */
                if (w > 0) {
                        data += w;
                        len -= (size_t) w;
                }
                fuzz_spin(2);
                if (after)
                        after(fd, arg);
        }
}

int fuzz_loop_idle(void)
{
        for (int i = 0; i < 100 && uv_loop_alive(loop); i++)
                fuzz_spin(1);
        return !uv_loop_alive(loop);
}
