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
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "fuzz_peer.h"
#include "qmp.h"

#define NCALLS 3

typedef struct {
        int ready_calls, ready_status;
        int replies[NCALLS];
} Seen;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        (void) argc, (void) argv;
        fuzz_peer_init("qmp");
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size == 0)
                return 0;
        bool greet = data[0] & 1;
        size_t chunk = (size_t) (data[0] >> 1) + 1;
        data++, size--;

        Seen seen = {0};
        Qmp *q = qmp_new(fuzz_peer_loop());
        if (!q || qmp_connect(q, fuzz_peer_path(), 1000, on_ready, on_event, &seen) < 0)
                abort();
        int peer = fuzz_peer_accept();
        if (greet) {
                static const char hello[] = "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n"
                                            "{\"return\": {}, \"id\": 1}\r\n";
                fuzz_feed(peer, (const uint8_t *) hello, sizeof hello - 1, sizeof hello, NULL,
                          NULL);
                fuzz_spin(8);
                if (seen.ready_calls == 1 && seen.ready_status == 0)
                        for (int i = 0; i < NCALLS; i++)
                                if (qmp_execute(q, "query-status", NULL, on_reply,
                                                &seen.replies[i]) < 0)
                                        abort();
        }
        fuzz_feed(peer, data, size, chunk, NULL, NULL);
        fuzz_spin(8);
        (void) close(peer);
        fuzz_spin(8);
        q = qmp_free(q);
        if (!fuzz_loop_idle() || seen.ready_calls > 1)
                abort();
        bool called = greet && seen.ready_calls == 1 && seen.ready_status == 0;
        for (int i = 0; i < NCALLS; i++)
                if (seen.replies[i] != (called ? 1 : 0))
                        abort();
        return 0;
}
