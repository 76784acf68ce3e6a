/* server.c: one connection of provium-agent: the poll loop, frame dispatch and replies.
 *
 * Sections: sending, small ops (hello, poweroff), dispatch, loop.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/utsname.h>
#include <time.h>

#include "agent.h"

#define READ_SIZE (64u << 10)

int64_t agent_now_ns(void)
{
        struct timespec ts;
        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- sending ---- */

static int write_all(int fd, const uint8_t *p, size_t n)
{
        while (n > 0) {
                ssize_t k = write(fd, p, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN) {
                                struct pollfd pfd = {.fd = fd, .events = POLLOUT};
                                (void) poll(&pfd, 1, -1);
                                continue;
                        }
                        return -errno;
                }
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

/* Writes out everything buffered in s->wr. Returns 0 or -errno (the connection is then dead). */
static int server_send_buffered(Server *s)
{
        size_t n;
        const uint8_t *p = proto_writer_data(&s->wr, &n);
        int r = s->broken ? -EPIPE : write_all(s->fd, p, n);
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

int server_reply_errno(Server *s, uint64_t id, int err, const char *fmt, ...)
{
        char msg[1024];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t) n < sizeof msg)
                (void) snprintf(msg + n, sizeof msg - (size_t) n, ": %s", strerror(err));
        if (s->debug)
                agent_log("reply %" PRIu64 " error: %s", id, msg);
        int r = proto_write_error(&s->wr, id, err, msg);
        if (r < 0)
                return r;
        return server_send_buffered(s);
}

int server_reply_field(Server *s, uint64_t id, const char *op, const char *field, int r)
{
        char msg[256];
        (void) snprintf(msg, sizeof msg, "%s: %s field %s", op,
                        r == 0 ? "missing" : "wrong type or value for", field);
        if (s->debug)
                agent_log("reply %" PRIu64 " error: %s", id, msg);
        int k = proto_write_error(&s->wr, id, EINVAL, msg);
        if (k < 0)
                return k;
        return server_send_buffered(s);
}

int server_send_chunk(Server *s, uint64_t id, const char *kind, const void *p, size_t n)
{
        proto_begin(&s->wr, 3);
        proto_kv_uint(&s->wr, "id", id);
        proto_kv_str(&s->wr, "chunk", kind);
        proto_kv_bin(&s->wr, "data", p, n);
        return server_flush(s);
}

/* ---- small ops ---- */

static const char *const server_caps[] = {"hello", "exec",  "read_file", "write_file",
                                          "stat",  "mkdir", "poweroff"};

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
        server_begin_ok(s, id, 6);
        proto_kv_uint(&s->wr, "version", PROTO_VERSION);
        proto_kv_str(&s->wr, "agent", AGENT_NAME);
        proto_key(&s->wr, "caps");
        msgpack_pack_array(&s->wr.pk, ELEMENTSOF(server_caps));
        for (size_t i = 0; i < ELEMENTSOF(server_caps); i++)
                proto_pack_str(&s->wr, server_caps[i]);
        proto_kv_bool(&s->wr, "pid1", s->pid1);
        proto_kv_str(&s->wr, "kernel", u.release);
        proto_kv_uint(&s->wr, "max_frame", PROTO_MAX_FRAME);
        return server_flush(s);
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
        r = init_poweroff(reboot_);
        agent_log("reboot: %s", strerror(-r));
        return 0;
}

/* ---- dispatch ---- */

typedef int (*OpFn)(Server *s, uint64_t id, const msgpack_object *req);

static const struct {
        const char *name;
        OpFn fn;
} server_ops[] = {
    {"hello", op_hello},           {"exec", exec_start},      {"read_file", fs_read_file},
    {"write_file", fs_write_file}, {"data", fs_upload},       {"stat", fs_stat},
    {"mkdir", fs_mkdir},           {"poweroff", op_poweroff},
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
                agent_log("op %" PRIu64 " %.*s", id, (int) op->via.str.size, op->via.str.ptr);
        bool upload = proto_str_eq(op, "data");
        if (!upload && (exec_id_busy(s, id) || fs_id_busy(s, id)))
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

static void server_drain_signals(Server *s)
{
        struct signalfd_siginfo si;
        while (read(s->sigfd, &si, sizeof si) == (ssize_t) sizeof si)
                ;
        exec_reap(s);
}

static int server_poll(Server *s)
{
        size_t need = 2 + 3 * exec_count(s);
        if (need > s->pfd_cap) {
                struct pollfd *p = realloc(s->pfd, need * sizeof *p);
                if (!p)
                        return -ENOMEM;
                s->pfd = p;
                s->pfd_cap = need;
        }
        s->pfd[0] = (struct pollfd){.fd = s->fd, .events = POLLIN};
        s->pfd[1] = (struct pollfd){.fd = s->sigfd, .events = POLLIN};
        size_t n = 2 + exec_poll_fill(s, s->pfd + 2);
        if (poll(s->pfd, n, exec_poll_timeout(s)) < 0)
                return errno == EINTR ? 0 : -errno;
        return 1;
}

/* One turn of the loop. Returns 0 to go on, 1 on EOF, -errno to stop. */
static int server_step(Server *s)
{
        int r = server_poll(s);
        if (r <= 0)
                return r;
        if (s->pfd[1].revents)
                server_drain_signals(s);
        r = exec_poll_handle(s, s->pfd + 2);
        if (r < 0)
                return r;
        if (s->pfd[0].revents) {
                r = server_read(s);
                if (r != 0)
                        return r;
        }
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
        fs_drop_uploads(s);
        s->fd = -1;
        return r;
}

int server_init(Server *s, bool pid1)
{
        *s = (Server){.fd = -1, .sigfd = -1, .pid1 = pid1};
        s->debug = init_debug_requested(pid1);
        proto_writer_init(&s->wr);
        s->buf = malloc(PROTO_CHUNK);
        if (!s->buf || proto_reader_init(&s->rd) < 0)
                return -ENOMEM;
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return -errno;
        s->sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
        if (s->sigfd < 0)
                return -errno;
        return 0;
}

void server_done(Server *s)
{
        exec_detach_all(s);
        fs_drop_uploads(s);
        proto_reader_done(&s->rd);
        proto_writer_done(&s->wr);
        free(s->buf);
        free(s->pfd);
        if (s->sigfd >= 0)
                (void) close(s->sigfd);
        *s = (Server){.fd = -1, .sigfd = -1};
}
