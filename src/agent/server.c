/* server.c: one connection of provium-agent: the poll loop, frame dispatch and replies.
 *
 * Each connection runs in its own thread with its own Server; nothing here is shared.
 *
 * Sections: sending, small ops (hello, poweroff, cancel, reset), dispatch, loop.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

#include "agent.h"
#include "fdio.h"

#define READ_SIZE (PROTO_CHUNK + (64u << 10)) /* one upload frame per read */

int64_t agent_now_ns(void)
{
        struct timespec ts;
        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int server_ms_until(int64_t at_ns)
{
        if (at_ns == 0)
                return -1;
        int64_t ms = (at_ns - agent_now_ns() + 999999) / 1000000;
        return ms < 0 ? 0 : ms > INT32_MAX ? INT32_MAX : (int) ms;
}

/* ---- sending ---- */

/* Writes out everything buffered in s->wr. Returns 0 or -errno (the connection is then dead). */
static int server_send_buffered(Server *s)
{
        size_t n;
        const uint8_t *p = proto_writer_data(&s->wr, &n);
        int r = s->broken ? -EPIPE : fd_write_all(s->fd, p, n);
        proto_writer_reset(&s->wr);
        if (r < 0)
                s->broken = true;
        return r;
}

int server_flush(Server *s)
{
        int r = proto_end(&s->wr);
        if (r < 0) {
                proto_writer_reset(&s->wr);
                return r;
        }
        return server_send_buffered(s);
}

void server_begin_ok(Server *s, uint64_t id, uint32_t n_extra)
{
        proto_begin(&s->wr, 2 + n_extra);
        proto_kv_uint(&s->wr, "id", id);
        proto_kv_bool(&s->wr, "ok", true);
}

static int reply_error(Server *s, uint64_t id, int err, const char *msg)
{
        if (s->debug)
                agent_log("reply %" PRIu64 " error: %s", id, msg);
        int r = proto_write_error(&s->wr, id, err, msg);
        if (r < 0)
                return r;
        return server_send_buffered(s);
}

int server_reply_errno(Server *s, uint64_t id, int err, const char *fmt, ...)
{
        char msg[1024];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t) n < sizeof msg)
                (void) snprintf(msg + n, sizeof msg - (size_t) n, ": %s", strerror(err));
        return reply_error(s, id, err, msg);
}

int server_reply_field(Server *s, uint64_t id, const char *op, const char *field, int r)
{
        char msg[256];
        (void) snprintf(msg, sizeof msg, "%s: %s field %s", op,
                        r == 0 ? "missing" : "wrong type or value for", field);
        return reply_error(s, id, EINVAL, msg);
}

/* msgpack write callback into a fixed buffer (a chunk's header). */
typedef struct HeadBuf {
        uint8_t b[SERVER_HEAD];
        size_t n;
        bool overflow;
} HeadBuf;

static int head_write(void *data, const char *p, size_t n)
{
        HeadBuf *h = data;
        if (n > sizeof h->b - h->n) {
                h->overflow = true;
                return -1;
        }
        memcpy(h->b + h->n, p, n);
        h->n += n;
        return 0;
}

/* Writes the frame header of a chunk of the n bytes at s->buf + SERVER_HEAD in front of them:
 * *ret_start, *ret_len is the whole frame. Returns 0 or -EMSGSIZE. */
static int chunk_frame(Server *s, uint64_t id, const char *kind, size_t n, uint8_t **ret_start,
                       size_t *ret_len)
{
        assert(n <= PROTO_CHUNK);
        HeadBuf h = {.n = 4};
        msgpack_packer pk;
        msgpack_packer_init(&pk, &h, head_write);
        size_t klen = strlen(kind);
        msgpack_pack_map(&pk, 3);
        msgpack_pack_str_with_body(&pk, "id", 2);
        msgpack_pack_uint64(&pk, id);
        msgpack_pack_str_with_body(&pk, "chunk", 5);
        msgpack_pack_str_with_body(&pk, kind, klen);
        msgpack_pack_str_with_body(&pk, "data", 4);
        msgpack_pack_bin(&pk, n);
        if (h.overflow)
                return -EMSGSIZE;
        uint32_t body = (uint32_t) (h.n - 4 + n);
        h.b[0] = (uint8_t) body;
        h.b[1] = (uint8_t) (body >> 8);
        h.b[2] = (uint8_t) (body >> 16);
        h.b[3] = (uint8_t) (body >> 24);
        *ret_start = s->buf + SERVER_HEAD - h.n;
        memcpy(*ret_start, h.b, h.n);
        *ret_len = h.n + n;
        return 0;
}

int server_send_buf(Server *s, uint64_t id, const char *kind, size_t n)
{
        uint8_t *start;
        size_t len;
        int r = chunk_frame(s, id, kind, n, &start, &len);
        if (r < 0)
                return r;
        if (s->broken)
                return -EPIPE;
        if ((r = fd_write_all(s->fd, start, len)) < 0)
                s->broken = true;
        return r;
}

int server_send_buf_and_flush(Server *s, uint64_t id, const char *kind, size_t n)
{
        uint8_t *start;
        size_t len, flen;
        int r = chunk_frame(s, id, kind, n, &start, &len);
        if (r == 0)
                r = proto_end(&s->wr);
        if (r < 0) {
                proto_writer_reset(&s->wr);
                return r;
        }
        const uint8_t *frame = proto_writer_data(&s->wr, &flen);
        r = s->broken ? -EPIPE : fd_write2_all(s->fd, start, len, frame, flen);
        proto_writer_reset(&s->wr);
        if (r < 0)
                s->broken = true;
        return r;
}

/* ---- small ops ---- */

static const char *const server_caps[] = {
    "hello",       "exec",    "read_file", "write_file", "stat",       "mkdir",
    "poweroff",    "cancel",  "reset",     "spawn",      "proc_write", "proc_close_stdin",
    "proc_signal", "open",    "fread",     "fwrite",     "seek",       "close",
    "tail",        "syscall", "ioctl",     "set_time",   "netem",      "proc_resize",
    "hwrng"};

static int op_hello(Server *s, uint64_t id, const msgpack_object *req)
{
        uint64_t version;
        int r = proto_get_uint(req, "version", &version);
        if (r <= 0)
                return server_reply_field(s, id, "hello", "version", r);
        if (version != PROTO_VERSION)
                return server_reply_errno(s, id, EPROTONOSUPPORT, "hello version %" PRIu64,
                                          version);
        struct utsname u;
        if (uname(&u) < 0)
                return server_reply_errno(s, id, errno, "uname");
        server_begin_ok(s, id, 8);
        proto_kv_uint(&s->wr, "version", PROTO_VERSION);
        proto_kv_str(&s->wr, "port", s->port);
        proto_kv_str(&s->wr, "arch", u.machine);
        proto_kv_str(&s->wr, "agent", AGENT_NAME);
        proto_key(&s->wr, "caps");
        msgpack_pack_array(&s->wr.pk, ELEMENTSOF(server_caps));
        for (size_t i = 0; i < ELEMENTSOF(server_caps); i++)
                proto_pack_str(&s->wr, server_caps[i]);
        proto_kv_bool(&s->wr, "pid1", s->pid1);
        proto_kv_str(&s->wr, "kernel", u.release);
        proto_kv_uint(&s->wr, "max_frame", PROTO_MAX_FRAME);
        r = server_flush(s);
        modules_release(); /* the agent is ready: the deferred modules may load now */
        return r;
}

static int op_poweroff(Server *s, uint64_t id, const msgpack_object *req)
{
        bool reboot_ = false;
        int r = proto_get_bool(req, "reboot", &reboot_);
        if (r < 0)
                return server_reply_field(s, id, "poweroff", "reboot", r);
        server_begin_ok(s, id, 0);
        r = server_flush(s);
        if (r < 0)
                return r;
        if (!s->pid1) {
                s->quit = true;
                return 0;
        }
        exec_detach_all(s);
        r = power_off(reboot_);
        agent_log("reboot: %s", strerror(-r));
        return 0;
}

/* Sets CLOCK_REALTIME: a VM restored from a fixture built days ago gets the host's time. Done
 * here, not as a syscall op, because a restored guest runs cold code slowly under TCG and a
 * helper thread would cost tens of milliseconds. */
static int op_set_time(Server *s, uint64_t id, const msgpack_object *req)
{
        int64_t ns;
        int r = proto_get_int(req, "realtime_ns", &ns);
        if (r <= 0)
                return server_reply_field(s, id, "set_time", "realtime_ns", r);
        if (ns < 0)
                return server_reply_errno(s, id, EINVAL, "set_time %" PRId64, ns);
        struct timespec ts = {.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
        if (clock_settime(CLOCK_REALTIME, &ts) < 0)
                return server_reply_errno(s, id, errno, "clock_settime");
        server_begin_ok(s, id, 0);
        return server_flush(s);
}

/* /dev/hwrng becomes the stream of seed (hwrng.c): the default a VM booted without rng_seed
 * gets from the run's seed. Only as PID 1: a local VM's /dev is the host's. */
static int op_hwrng(Server *s, uint64_t id, const msgpack_object *req)
{
        uint64_t seed;
        int r = proto_get_uint(req, "seed", &seed);
        if (r <= 0)
                return server_reply_field(s, id, "hwrng", "seed", r);
        if (!s->pid1)
                return server_reply_errno(s, id, ENOTSUP, "hwrng: not the guest's init");
        r = hwrng_reseed(seed);
        if (r < 0)
                return server_reply_errno(s, id, -r, "hwrng");
        server_begin_ok(s, id, 0);
        return server_flush(s);
}

bool server_id_busy(const Server *s, uint64_t id)
{
        return exec_id_busy(s, id) || fs_id_busy(s, id) || hnd_id_busy(s, id) || sys_id_busy(s, id);
}

/* Replies {} at once; the target then sends its own final reply. */
static int op_cancel(Server *s, uint64_t id, const msgpack_object *req)
{
        uint64_t target;
        int r = proto_get_uint(req, "target", &target);
        if (r <= 0)
                return server_reply_field(s, id, "cancel", "target", r);
        if (!server_id_busy(s, target))
                return server_reply_errno(s, id, ESRCH, "cancel %" PRIu64, target);
        server_begin_ok(s, id, 0);
        r = server_flush(s);
        if (r < 0)
                return r;
        exec_cancel(s, target, false);
        r = exec_cancel_write(s, target);
        if (r >= 0)
                r = fs_cancel(s, target, false);
        if (r >= 0)
                r = hnd_cancel(s, target, false);
        if (r >= 0)
                r = sys_cancel(s, target, false);
        return r;
}

/* Replies {}, then ends everything of the connection: pending requests get ECANCELED,
 * processes are killed (their final replies follow when they are reaped). */
static int op_reset(Server *s, uint64_t id, const msgpack_object *req)
{
        server_begin_ok(s, id, 0);
        int r = server_flush(s);
        if (r < 0)
                return r;
        exec_cancel(s, 0, true);
        r = fs_cancel(s, 0, true);
        if (r >= 0)
                r = hnd_cancel(s, 0, true);
        if (r >= 0)
                r = sys_cancel(s, 0, true);
        return r;
}

/* ---- dispatch ---- */

typedef int (*OpFn)(Server *s, uint64_t id, const msgpack_object *req);

static const struct {
        const char *name;
        OpFn fn;
} server_ops[] = {
    {"hello", op_hello},
    {"exec", exec_start},
    {"read_file", fs_read_file},
    {"write_file", fs_write_file},
    {"data", fs_upload},
    {"stat", fs_stat},
    {"mkdir", fs_mkdir},
    {"poweroff", op_poweroff},
    {"set_time", op_set_time},
    {"cancel", op_cancel},
    {"reset", op_reset},
    {"spawn", exec_spawn_op},
    {"proc_write", exec_proc_write},
    {"proc_close_stdin", exec_proc_close_stdin},
    {"proc_signal", exec_proc_signal},
    {"proc_resize", exec_proc_resize},
    {"open", hnd_open},
    {"fread", hnd_fread},
    {"fwrite", hnd_fwrite},
    {"seek", hnd_seek},
    {"close", hnd_close},
    {"tail", hnd_tail},
    {"syscall", sys_syscall},
    {"ioctl", sys_ioctl},
    {"netem", net_netem},
    {"hwrng", op_hwrng},
};

/* Handles one request. Returns 0, or -errno when the connection is unusable. */
static int server_dispatch(Server *s, const msgpack_object *req)
{
        uint64_t id = 0;
        int r = proto_get_uint(req, "id", &id);
        if (r <= 0)
                return server_reply_field(s, 0, "request", "id", r);
        const msgpack_object *op = proto_get(req, "op");
        if (!op || op->type != MSGPACK_OBJECT_STR)
                return server_reply_field(s, id, "request", "op", op ? -EBADMSG : 0);
        if (s->debug)
                agent_log("op %" PRIu64 " %.*s at %lld ms", id, (int) op->via.str.size,
                          op->via.str.ptr, (long long) (agent_now_ns() / 1000000));
        bool upload = proto_str_eq(op, "data");
        if (!upload && server_id_busy(s, id))
                return server_reply_errno(s, id, EBUSY, "request id %" PRIu64, id);
        for (size_t i = 0; i < ELEMENTSOF(server_ops); i++)
                if (proto_str_eq(op, server_ops[i].name))
                        return server_ops[i].fn(s, id, req);
        return server_reply_errno(s, id, ENOSYS, "op %.*s", (int) op->via.str.size,
                                  op->via.str.ptr);
}

/* ---- loop ---- */

/* Reads what the connection has and handles every complete frame. Returns 1 on EOF, 0, or
 * -errno on a bad frame or a dead connection. */
static int server_read(Server *s)
{
        uint8_t *p = proto_reader_space(&s->rd, READ_SIZE);
        if (!p)
                return -ENOMEM;
        ssize_t n = read(s->fd, p, READ_SIZE);
        if (n < 0)
                return errno == EINTR || errno == EAGAIN ? 0 : -errno;
        if (n == 0)
                return 1;
        proto_reader_commit(&s->rd, (size_t) n);
        for (;;) {
                msgpack_object msg;
                int r = proto_reader_next(&s->rd, &msg);
                if (r <= 0)
                        return r;
                r = server_dispatch(s, &msg);
                if (r < 0)
                        return r;
                if (s->quit)
                        return 0;
        }
}

static int min_timeout(int a, int b)
{
        if (a < 0)
                return b;
        if (b < 0)
                return a;
        return a < b ? a : b;
}

/* Polls the connection and every fd a request waits on: pfd[0] is the connection, then the
 * execs', handles', files' and syscalls' fds from s->pfd_base[0..3]. Returns 1 when poll
 * returned events, 0 on EINTR, or -errno. */
static int server_poll(Server *s)
{
        size_t need = 1 + 4 * exec_count(s) + hnd_count(s) + fs_count(s) + sys_count(s);
        if (need > s->pfd_cap) {
                struct pollfd *p = realloc(s->pfd, need * sizeof *p);
                if (!p)
                        return -ENOMEM;
                s->pfd = p;
                s->pfd_cap = need;
        }
        s->pfd[0] = (struct pollfd){.fd = s->fd, .events = POLLIN};
        size_t n = 1;
        s->pfd_base[0] = n;
        n += exec_poll_fill(s, s->pfd + n);
        s->pfd_base[1] = n;
        n += hnd_poll_fill(s, s->pfd + n);
        s->pfd_base[2] = n;
        n += fs_poll_fill(s, s->pfd + n);
        s->pfd_base[3] = n;
        n += sys_poll_fill(s, s->pfd + n);
        int timeout =
            min_timeout(min_timeout(exec_poll_timeout(s), hnd_poll_timeout(s)), fs_poll_timeout(s));
        if (poll(s->pfd, n, timeout) < 0)
                return errno == EINTR ? 0 : -errno;
        return 1;
}

/* One turn of the loop. Returns 0 to go on, 1 on EOF, -errno to stop. */
static int server_step(Server *s)
{
        int r = server_poll(s);
        if (r < 0)
                return r;
        if (r > 0) {
                r = exec_poll_handle(s, s->pfd + s->pfd_base[0]);
                if (r >= 0)
                        r = hnd_poll_handle(s, s->pfd + s->pfd_base[1]);
                if (r >= 0)
                        r = fs_poll_handle(s, s->pfd + s->pfd_base[2]);
                if (r >= 0)
                        r = sys_poll_handle(s, s->pfd + s->pfd_base[3]);
                if (r < 0)
                        return r;
                if (s->pfd[0].revents) {
                        r = server_read(s);
                        if (r != 0)
                                return r;
                }
        }
        r = hnd_tick(s);
        if (r >= 0)
                r = fs_tick(s);
        if (r < 0)
                return r;
        return exec_tick(s);
}

int server_serve(Server *s, int fd)
{
        int r;
        s->fd = fd;
        s->broken = false;
        s->quit = false;
        proto_reader_done(&s->rd);
        r = proto_reader_init(&s->rd);
        while (r == 0 && !s->quit && !s->broken)
                r = server_step(s);
        if (r == 0 && s->broken)
                r = -EPIPE;
        if (r == 0 && s->quit)
                r = 1;
        else if (r == 1)
                r = 0;
        exec_detach_all(s);
        fs_drop_all(s);
        hnd_drop_all(s);
        sys_drop_all(s);
        s->fd = -1;
        return r;
}

int server_init(Server *s, const char *port, bool pid1, bool debug)
{
        *s = (Server){.fd = -1, .port = port, .pid1 = pid1, .debug = debug, .next_handle = 1};
        proto_writer_init(&s->wr);
        s->buf = malloc(SERVER_HEAD + PROTO_CHUNK);
        if (!s->buf || proto_reader_init(&s->rd) < 0)
                return -ENOMEM;
        return 0;
}

void server_done(Server *s)
{
        exec_detach_all(s);
        fs_drop_all(s);
        hnd_drop_all(s);
        sys_drop_all(s);
        proto_reader_done(&s->rd);
        proto_writer_done(&s->wr);
        free(s->buf);
        free(s->pfd);
        *s = (Server){.fd = -1};
}
