/* event_pipe.c: a file runner's side of the event pipe to the dispatcher.
 *
 * Every event is a frame: a u32 length (little-endian) and the msgpack map. Each write wakes
 * the dispatcher, and on a machine of two cores that wakeup competes with the guest call being
 * timed: an `op` event is held (EVENT_PIPE_HOLD_MS at most, a buffer's worth) and goes with
 * the next event of any other type, which is written at once, in order behind them. Nothing
 * but `op` is ever late, so a test's start and end, a VM's boot and every failure reach the
 * dispatcher when they happen; a runner killed with SIGKILL loses at most the held ops. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "event_pipe.h"
#include "events.h"
#include <unistd.h>

#include "fdio.h"
#include "proto.h"

#define EVENT_PIPE_HOLD_MS  20
#define EVENT_PIPE_HELD_MAX (64 * 1024)

static struct {
        int fd;
        bool broken;
        uv_timer_t timer;
        bool attached; /* timer is on a loop: op events may be held */
        size_t held;
        uint8_t buf[EVENT_PIPE_HELD_MAX];
} pipe_out = {.fd = -1};

static void write_out(const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
        if (!pipe_out.broken && fd_write2_all(pipe_out.fd, a, na, b, nb) < 0)
                pipe_out.broken = true;
}

/* Writes what is held, then the frame of mp when there is one: as one write (one wakeup over
 * there) when its length prefix fits behind them. */
static void write_held_then(const uint8_t *mp, size_t len)
{
        if (mp && pipe_out.held + 4 <= sizeof pipe_out.buf) {
                proto_put_frame_len(pipe_out.buf + pipe_out.held, len);
                write_out(pipe_out.buf, pipe_out.held + 4, mp, len);
        } else {
                if (pipe_out.held > 0)
                        write_out(pipe_out.buf, pipe_out.held, NULL, 0);
                if (mp) {
                        uint8_t hdr[4];
                        proto_put_frame_len(hdr, len);
                        write_out(hdr, 4, mp, len);
                }
        }
        pipe_out.held = 0;
        if (pipe_out.attached)
                (void) uv_timer_stop(&pipe_out.timer);
}

static void event_pipe_flush(void)
{
        write_held_then(NULL, 0);
}

static void on_hold_over(uv_timer_t *t)
{
        (void) t;
        event_pipe_flush();
}

static bool hold(const uint8_t *mp, size_t len)
{
        if (!pipe_out.attached || pipe_out.held + 4 + len > sizeof pipe_out.buf)
                return false;
        bool first = pipe_out.held == 0;
        proto_put_frame_len(pipe_out.buf + pipe_out.held, len);
        memcpy(pipe_out.buf + pipe_out.held + 4, mp, len);
        pipe_out.held += 4 + len;
        if (first && uv_timer_start(&pipe_out.timer, on_hold_over, EVENT_PIPE_HOLD_MS, 0) < 0)
                event_pipe_flush();
        return true;
}

static void pipe_sink(void *data, const char *type, const uint8_t *mp, size_t len)
{
        (void) data;
        if (pipe_out.broken)
                return;
        if (strcmp(type, "op") == 0 && hold(mp, len))
                return;
        write_held_then(mp, len);
}

void event_pipe_open(int fd)
{
        pipe_out.fd = fd;
        (void) events_subscribe(pipe_sink, NULL);
}

int event_pipe_attach(uv_loop_t *loop)
{
        int r = uv_timer_init(loop, &pipe_out.timer);
        if (r < 0)
                return r;
        uv_unref((uv_handle_t *) &pipe_out.timer); /* a held op never keeps a loop running */
        pipe_out.attached = true;
        return 0;
}

void event_pipe_detach(void)
{
        event_pipe_flush();
        pipe_out.attached = false;
}

void event_pipe_close(void)
{
        event_pipe_flush();
        pipe_out.broken = true;
        if (pipe_out.fd >= 0)
                (void) close(pipe_out.fd);
        pipe_out.fd = -1;
}
