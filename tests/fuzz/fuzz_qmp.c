/* fuzz_qmp.c: libFuzzer target for the QMP client (src/host/vmm/qmp.c), which reads what QEMU
 * writes on its QMP socket: a QEMU the guest took over could write anything there.
 *
 * Each input drives a real client over a real Unix socket and libuv loop, as a VM does. Its
 * first byte chooses whether the peer greets and accepts the capabilities (so that calls are
 * in flight, ids 2 to 4, when the rest arrives) and the size of the writes the rest is cut
 * into (1 to 256 bytes); then the peer hangs up. Checked beyond the sanitizers: every call's
 * callback runs exactly once, with a status the header documents; ready runs at most once; the
 * client lets go of every handle. */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "qmp.h"

#define NCALLS 3

static char dir[] = "/tmp/provium-fuzz-qmp-XXXXXX";
static struct sockaddr_un addr = {.sun_family = AF_UNIX};
static int listener = -1;
static uv_loop_t *loop;

typedef struct {
        int ready_calls, ready_status;
        int replies[NCALLS];
} Seen;

static void remove_dir(void)
{
        (void) unlink(addr.sun_path);
        (void) rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        (void) argc, (void) argv;
        if (!mkdtemp(dir))
                abort();
        snprintf(addr.sun_path, sizeof addr.sun_path, "%s/qmp.sock", dir);
        atexit(remove_dir);
        listener = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (listener < 0 || bind(listener, (struct sockaddr *) &addr, sizeof addr) < 0 ||
            listen(listener, 4) < 0)
                abort();
        loop = uv_default_loop();
        return 0;
}

static void on_ready(void *data, int status)
{
        Seen *s = data;
        s->ready_calls++;
        s->ready_status = status;
}

static void on_event(void *data, const char *event, json_t *event_data)
{
        (void) data, (void) event_data;
        if (!event)
                abort();
}

static void on_reply(void *data, int status, json_t *result)
{
        int *count = data;
        if (status != 0 && status != -EPROTO && status != -ECONNRESET && status != -ETIMEDOUT)
                abort();
        (void) result;
        ++*count;
}

static void spin(int rounds)
{
        for (int i = 0; i < rounds; i++)
                (void) uv_run(loop, UV_RUN_NOWAIT);
}

/* Writes all of data to fd (non-blocking), letting the client read in between. */
static void feed(int fd, const uint8_t *data, size_t len, size_t chunk)
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
                spin(2);
        }
}

static int accept_peer(void)
{
        for (int i = 0; i < 1000; i++) {
                spin(1);
                int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (fd >= 0)
                        return fd;
                struct pollfd p = {.fd = listener, .events = POLLIN};
                (void) poll(&p, 1, 1);
        }
        abort(); /* the connector never connected */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size == 0)
                return 0;
        bool greet = data[0] & 1;
        size_t chunk = (size_t) (data[0] >> 1) + 1;
        data++, size--;

        Seen seen = {0};
        Qmp *q = qmp_new(loop);
        if (!q || qmp_connect(q, addr.sun_path, 1000, on_ready, on_event, &seen) < 0)
                abort();
        int peer = accept_peer();
        if (greet) {
                static const char hello[] = "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n"
                                            "{\"return\": {}, \"id\": 1}\r\n";
                feed(peer, (const uint8_t *) hello, sizeof hello - 1, sizeof hello);
                spin(8);
                if (seen.ready_calls == 1 && seen.ready_status == 0)
                        for (int i = 0; i < NCALLS; i++)
                                if (qmp_execute(q, "query-status", NULL, on_reply,
                                                &seen.replies[i]) < 0)
                                        abort();
        }
        feed(peer, data, size, chunk);
        spin(8);
        (void) close(peer);
        spin(8);
        q = qmp_free(q);
        for (int i = 0; i < 100 && uv_loop_alive(loop); i++)
                spin(1);
        if (uv_loop_alive(loop) || seen.ready_calls > 1)
                abort();
        bool called = greet && seen.ready_calls == 1 && seen.ready_status == 0;
        for (int i = 0; i < NCALLS; i++)
                if (seen.replies[i] != (called ? 1 : 0))
                        abort();
        return 0;
}
