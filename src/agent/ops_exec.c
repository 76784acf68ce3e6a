/* ops_exec.c: exec and spawn requests: their pipes, timeouts, proc_* ops and final replies.
 *
 * Children are forked and reaped through child.c; a connection waits for its own children
 * through a pidfd (or polls every EXEC_NOPIDFD_MS without one).
 *
 * Sections: request parsing, spawning, proc ops, loop hooks, completion.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "agent.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

#define EXEC_MAX_PER_CONN 1024 /* processes in flight on one connection */
#define EXEC_NOPIDFD_MS   20   /* reaping period without pidfds */

/* One stdin write: an exec's stdin bytes (id 0: no reply) or a proc_write request. */
typedef struct WriteReq {
        struct WriteReq *next;
        uint64_t id; /* proc_write request to answer, 0 for none */
        uint8_t *data;
        size_t len, off;
} WriteReq;

struct Exec {
        Exec *next;
        uint64_t id;
        pid_t pid;
        int fd_in, fd_out, fd_err; /* our ends of the child's pipes, -1 once closed */
        int pidfd;                 /* readable when the child exits, -1 without pidfd */
        WriteReq *wq;              /* stdin writes in order; the head is being written */
        bool close_in;             /* close stdin once wq is empty */
        bool spawn;                /* a spawn request (started chunk, stdin stays open) */
        bool owned;                /* pid is in the child table */
        int64_t start_ns;
        int64_t deadline_ns; /* timeout, 0 for none */
        int64_t exit_ns;     /* when the child was reaped, 0 while running */
        int status;          /* waitpid status once exit_ns != 0 */
        bool timed_out;
        bool detached; /* the connection is gone: reap silently */
        bool pty;      /* fd_out is a pseudo-terminal's master (fd_in a duplicate of it) */
        int pidx[4];   /* poll indices of fd_in, fd_out, fd_err, pidfd; -1 when not polled */
};

/* ---- request parsing ---- */

static void strv_free(char **v)
{
        for (size_t i = 0; v && v[i]; i++)
                free(v[i]);
        free(v);
}

static void spec_done(ChildSpec *sp)
{
        strv_free(sp->argv);
        strv_free(sp->env);
        free(sp->cwd);
}

static char *dup_obj_str(const msgpack_object *o)
{
        const char *p;
        uint32_t n;
        if (o->type == MSGPACK_OBJECT_STR) {
                p = o->via.str.ptr;
                n = o->via.str.size;
        } else if (o->type == MSGPACK_OBJECT_BIN) {
                p = o->via.bin.ptr;
                n = o->via.bin.size;
        } else
                return NULL;
        if (memchr(p, 0, n))
                return NULL;
        return strndup(p, n);
}

/* Fills sp->argv from argv or cmd. Returns 0, or the name of the bad field in *ret_field. */
static int spec_argv(ChildSpec *sp, const msgpack_object *req, const char **ret_field)
{
        const msgpack_object *a = proto_get(req, "argv");
        _cleanup_free_ char *cmd = NULL;
        int r = proto_dup_str(req, "cmd", &cmd);
        *ret_field = "cmd";
        if (r < 0 || (r > 0 && a && a->type != MSGPACK_OBJECT_NIL))
                return -EINVAL;
        if (r > 0) {
                sp->argv = calloc(4, sizeof(char *));
                if (!sp->argv || !(sp->argv[0] = strdup("/bin/sh")) ||
                    !(sp->argv[1] = strdup("-c")))
                        return -ENOMEM;
                sp->argv[2] = TAKE_PTR(cmd);
                return 0;
        }
        *ret_field = "argv";
        if (!a || a->type != MSGPACK_OBJECT_ARRAY || a->via.array.size == 0)
                return -EINVAL;
        sp->argv = calloc(a->via.array.size + 1, sizeof(char *));
        if (!sp->argv)
                return -ENOMEM;
        for (uint32_t i = 0; i < a->via.array.size; i++)
                if (!(sp->argv[i] = dup_obj_str(&a->via.array.ptr[i])))
                        return -EINVAL;
        return 0;
}

static int spec_env(ChildSpec *sp, const msgpack_object *req)
{
        const msgpack_object *e = proto_get(req, "env");
        if (!e || e->type == MSGPACK_OBJECT_NIL)
                return 0;
        if (e->type != MSGPACK_OBJECT_MAP)
                return -EINVAL;
        sp->env = calloc(2 * (size_t) e->via.map.size + 1, sizeof(char *));
        if (!sp->env)
                return -ENOMEM;
        for (uint32_t i = 0; i < e->via.map.size; i++) {
                char *k = dup_obj_str(&e->via.map.ptr[i].key);
                sp->env[2 * i] = k;
                if (!k || !k[0] || strchr(k, '='))
                        return -EINVAL;
                if (!(sp->env[2 * i + 1] = dup_obj_str(&e->via.map.ptr[i].val)))
                        return -EINVAL;
        }
        return 0;
}

/* pty (spawn only), with the window's rows and cols (default 24 x 80). */
static int spec_pty(ChildSpec *sp, const msgpack_object *req, const char **ret_field)
{
        uint64_t rows = 24, cols = 80;
        *ret_field = "pty";
        if (proto_get_bool(req, "pty", &sp->pty) < 0)
                return -EINVAL;
        *ret_field = "rows";
        if (proto_get_uint(req, "rows", &rows) < 0 || rows == 0 || rows > UINT16_MAX)
                return -EINVAL;
        *ret_field = "cols";
        if (proto_get_uint(req, "cols", &cols) < 0 || cols == 0 || cols > UINT16_MAX)
                return -EINVAL;
        sp->rows = (uint16_t) rows;
        sp->cols = (uint16_t) cols;
        return 0;
}

/* Parses an exec request. Returns 0, or -EINVAL with the bad field in *ret_field, or -ENOMEM. */
static int spec_parse(ChildSpec *sp, const msgpack_object *req, const char **ret_field)
{
        int r = spec_argv(sp, req, ret_field);
        if (r < 0)
                return r;
        *ret_field = "env";
        r = spec_env(sp, req);
        if (r < 0)
                return r;
        *ret_field = "cwd";
        if (proto_dup_str(req, "cwd", &sp->cwd) < 0)
                return -EINVAL;
        *ret_field = "stdin";
        if (proto_get_bytes(req, "stdin", &sp->in, &sp->in_len) < 0)
                return -EINVAL;
        *ret_field = "timeout_ms";
        if (proto_get_uint(req, "timeout_ms", &sp->timeout_ms) < 0 ||
            sp->timeout_ms > (uint64_t) INT32_MAX * 1000)
                return -EINVAL;
        return spec_pty(sp, req, ret_field);
}

/* Reaps ex's child if it has exited (never blocks). Returns true once reaped. */
static bool exec_try_reap(Exec *ex)
{
        if (ex->exit_ns)
                return true;
        if (child_try_reap(ex->pid, &ex->status) == 0)
                return false;
        ex->exit_ns = agent_now_ns();
        ex->owned = false;
        closep(&ex->pidfd);
        return true;
}

/* ---- spawning ---- */

static WriteReq *wreq_free(WriteReq *w)
{
        if (w) {
                free(w->data);
                free(w);
        }
        return NULL;
}

static Exec *exec_free(Exec *ex)
{
        if (!ex)
                return NULL;
        if (ex->owned)
                child_disown(ex->pid);
        closep(&ex->fd_in);
        closep(&ex->fd_out);
        closep(&ex->fd_err);
        closep(&ex->pidfd);
        while (ex->wq) {
                WriteReq *w = ex->wq;
                ex->wq = w->next;
                wreq_free(w);
        }
        free(ex);
        return NULL;
}

/* Makes the child's pipes; in[0] is the shared /dev/null (not ours to close) without stdin. */
static int exec_pipes(int in[2], int out[2], int err[2], bool with_stdin)
{
        if (with_stdin) {
                if (pipe2(in, O_CLOEXEC) < 0)
                        return -errno;
        } else if ((in[0] = child_devnull()) < 0)
                return in[0];
        if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)
                return -errno;
        (void) fcntl(out[1], F_SETPIPE_SZ, (int) PROTO_CHUNK);
        (void) fcntl(err[1], F_SETPIPE_SZ, (int) PROTO_CHUNK);
        return 0;
}

/* A new pseudo-terminal of rows x cols: the master in *ret_master, the slave (the child's
 * stdin, stdout and stderr) in *ret_slave; both close-on-exec. */
static int exec_open_pty(const ChildSpec *sp, int *ret_master, int *ret_slave)
{
        char name[64];
        _cleanup_close_ int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0 || ptsname_r(m, name, sizeof name) != 0)
                return -errno;
        struct winsize ws = {.ws_row = sp->rows, .ws_col = sp->cols};
        if (ioctl(m, TIOCSWINSZ, &ws) < 0)
                return -errno;
        int s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (s < 0)
                return -errno;
        *ret_master = TAKE_FD(m);
        *ret_slave = s;
        return 0;
}

/* The child's ends and ours as exec_pipes() lays them out, all on one pseudo-terminal: the
 * child's 0-2 are the slave, our stdin and stdout ends the master, and no stderr of ours. */
static int exec_pty_ends(const ChildSpec *sp, int in[2], int out[2], int err[2])
{
        int r = exec_open_pty(sp, &out[0], &in[0]);
        if (r < 0)
                return r;
        in[1] = fcntl(out[0], F_DUPFD_CLOEXEC, 3);
        out[1] = fcntl(in[0], F_DUPFD_CLOEXEC, 3);
        err[1] = fcntl(in[0], F_DUPFD_CLOEXEC, 3);
        return in[1] < 0 || out[1] < 0 || err[1] < 0 ? -errno : 0;
}

/* Our end of a new pipe: its only status flag is the one set here (no F_GETFL needed). */
static void pipe_end_nonblock(uint64_t id, int fd)
{
        if (fd >= 0 && fcntl(fd, F_SETFL, O_NONBLOCK) < 0)
                agent_log("exec %" PRIu64 ": fcntl: %s", id, strerror(errno));
}

static void close_pair(int p[2])
{
        closep(&p[0]);
        closep(&p[1]);
}

/* Forks the child and fills ex. Returns 0, or -errno with a failure reply already sent
 * (then *ret_replied is set), or -errno from the system. */
static int exec_spawn(Server *s, Exec *ex, const ChildSpec *sp, bool *ret_replied)
{
        const bool with_stdin = sp->in != NULL || ex->spawn;
        int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
        int r = sp->pty ? exec_pty_ends(sp, in, out, err) : exec_pipes(in, out, err, with_stdin);
        if (r < 0)
                goto done;
        ex->start_ns = agent_now_ns();
        ChildFail f;
        pid_t pid = child_fork(sp, in[0], out[1], err[1], &f);
        if (pid < 0) {
                r = pid;
                goto done;
        }
        if (pid == 0) {
                *ret_replied = true;
                r = server_reply_errno(s, ex->id, f.err, "%s %s",
                                       f.step == CHILD_STEP_EXEC    ? "exec"
                                       : f.step == CHILD_STEP_CHDIR ? "chdir"
                                                                    : "spawn",
                                       f.step == CHILD_STEP_CHDIR ? sp->cwd : sp->argv[0]);
                goto done;
        }
        ex->pid = pid;
        ex->owned = true;
        ex->pty = sp->pty;
        ex->pidfd = (int) syscall(SYS_pidfd_open, pid, 0); /* always close-on-exec */
        ex->fd_in = TAKE_FD(in[1]);
        ex->fd_out = TAKE_FD(out[0]);
        ex->fd_err = TAKE_FD(err[0]);
        pipe_end_nonblock(ex->id, ex->fd_in);
        pipe_end_nonblock(ex->id, ex->fd_out);
        pipe_end_nonblock(ex->id, ex->fd_err);
done:
        if (!with_stdin && !sp->pty)
                in[0] = -1; /* the shared /dev/null */
        close_pair(in);
        close_pair(out);
        close_pair(err);
        return r;
}

/* Queues len bytes for the child's stdin, answered to id when written (0: no reply). */
static int exec_queue(Exec *ex, uint64_t id, const void *p, size_t len)
{
        WriteReq *w = calloc(1, sizeof *w);
        if (!w)
                return -ENOMEM;
        w->id = id;
        w->len = len;
        if (len > 0 && !(w->data = malloc(len))) {
                free(w);
                return -ENOMEM;
        }
        if (len > 0)
                memcpy(w->data, p, len);
        WriteReq **t = &ex->wq;
        while (*t)
                t = &(*t)->next;
        *t = w;
        return 0;
}

static int exec_setup(Server *s, Exec *ex, const ChildSpec *sp, bool *ret_replied)
{
        if (sp->in && sp->in_len > 0) {
                int r = exec_queue(ex, 0, sp->in, sp->in_len);
                if (r < 0)
                        return r;
        }
        ex->close_in = !ex->spawn;
        int r = exec_spawn(s, ex, sp, ret_replied);
        if (r < 0 || *ret_replied)
                return r;
        if (!ex->wq && ex->close_in)
                closep(&ex->fd_in);
        if (sp->timeout_ms > 0)
                ex->deadline_ns = ex->start_ns + (int64_t) sp->timeout_ms * 1000000LL;
        return 0;
}

static int exec_start_common(Server *s, uint64_t id, const msgpack_object *req, bool spawn)
{
        const char *op = spawn ? "spawn" : "exec";
        ChildSpec sp = {0};
        const char *field = NULL;
        int r = spec_parse(&sp, req, &field);
        if (r < 0) {
                spec_done(&sp);
                return r == -EINVAL
                           ? server_reply_field(s, id, op, field, proto_get(req, field) ? r : 0)
                           : server_reply_errno(s, id, -r, "%s", op);
        }
        if (sp.pty && !spawn) {
                spec_done(&sp);
                return server_reply_errno(s, id, EINVAL, "exec: pty is for spawn");
        }
        if (exec_count(s) >= EXEC_MAX_PER_CONN) {
                spec_done(&sp);
                return server_reply_errno(s, id, EAGAIN, "%s: too many processes", op);
        }
        Exec *ex = calloc(1, sizeof *ex);
        bool replied = false;
        if (!ex)
                r = -ENOMEM;
        else {
                *ex = (Exec){
                    .id = id, .fd_in = -1, .fd_out = -1, .fd_err = -1, .pidfd = -1, .spawn = spawn};
                r = exec_setup(s, ex, &sp, &replied);
        }
        spec_done(&sp);
        if (r < 0 || replied) {
                if (ex && ex->pid > 0 && !replied) { /* cannot happen after a fork, but be safe */
                        (void) kill(-ex->pid, SIGKILL);
                        ex->detached = true;
                }
                exec_free(ex);
                return replied ? r : server_reply_errno(s, id, -r, "%s", op);
        }
        ex->next = s->execs;
        s->execs = ex;
        if (!spawn)
                return 0;
        proto_begin(&s->wr, 3);
        proto_kv_uint(&s->wr, "id", id);
        proto_kv_str(&s->wr, "chunk", "started");
        proto_kv_uint(&s->wr, "pid", (uint64_t) ex->pid);
        return server_flush(s);
}

int exec_start(Server *s, uint64_t id, const msgpack_object *req)
{
        return exec_start_common(s, id, req, false);
}

int exec_spawn_op(Server *s, uint64_t id, const msgpack_object *req)
{
        return exec_start_common(s, id, req, true);
}

/* ---- proc ops ---- */

/* Finds the running process of request proc, or replies ESRCH / EINVAL and returns NULL with
 * the reply's status in *ret. */
static Exec *exec_lookup(Server *s, uint64_t id, const msgpack_object *req, const char *op,
                         int *ret)
{
        uint64_t proc;
        int r = proto_get_uint(req, "proc", &proc);
        if (r <= 0) {
                *ret = server_reply_field(s, id, op, "proc", r);
                return NULL;
        }
        for (Exec *ex = s->execs; ex; ex = ex->next)
                if (ex->id == proc && !ex->detached && ex->exit_ns == 0)
                        return ex;
        *ret = server_reply_errno(s, id, ESRCH, "%s %" PRIu64, op, proc);
        return NULL;
}

static int exec_write_stdin(Server *s, Exec *ex);

int exec_proc_write(Server *s, uint64_t id, const msgpack_object *req)
{
        int r;
        Exec *ex = exec_lookup(s, id, req, "proc_write", &r);
        if (!ex)
                return r;
        const char *p;
        size_t n;
        r = proto_get_bytes(req, "data", &p, &n);
        if (r <= 0)
                return server_reply_field(s, id, "proc_write", "data", r);
        if (ex->fd_in < 0 || ex->close_in)
                return server_reply_errno(s, id, EPIPE, "proc_write %" PRIu64 " stdin", ex->id);
        r = exec_queue(ex, id, p, n);
        if (r < 0)
                return server_reply_errno(s, id, -r, "proc_write");
        return exec_write_stdin(s, ex);
}

int exec_proc_close_stdin(Server *s, uint64_t id, const msgpack_object *req)
{
        int r;
        Exec *ex = exec_lookup(s, id, req, "proc_close_stdin", &r);
        if (!ex)
                return r;
        ex->close_in = true;
        if (!ex->wq)
                closep(&ex->fd_in);
        server_begin_ok(s, id, 0);
        return server_flush(s);
}

int exec_proc_signal(Server *s, uint64_t id, const msgpack_object *req)
{
        int r;
        Exec *ex = exec_lookup(s, id, req, "proc_signal", &r);
        if (!ex)
                return r;
        int64_t sig;
        r = proto_get_int(req, "signal", &sig);
        if (r <= 0 || sig < 0 || sig > SIGRTMAX)
                return server_reply_field(s, id, "proc_signal", "signal", r <= 0 ? r : -EINVAL);
        bool group = true;
        r = proto_get_bool(req, "group", &group);
        if (r < 0)
                return server_reply_field(s, id, "proc_signal", "group", r);
        if (kill(group ? -ex->pid : ex->pid, (int) sig) < 0)
                return server_reply_errno(s, id, errno, "kill %s%d", group ? "-" : "",
                                          (int) ex->pid);
        server_begin_ok(s, id, 0);
        return server_flush(s);
}

int exec_proc_resize(Server *s, uint64_t id, const msgpack_object *req)
{
        int r;
        Exec *ex = exec_lookup(s, id, req, "proc_resize", &r);
        if (!ex)
                return r;
        uint64_t rows, cols;
        if ((r = proto_get_uint(req, "rows", &rows)) <= 0 || rows == 0 || rows > UINT16_MAX)
                return server_reply_field(s, id, "proc_resize", "rows", r <= 0 ? r : -EINVAL);
        if ((r = proto_get_uint(req, "cols", &cols)) <= 0 || cols == 0 || cols > UINT16_MAX)
                return server_reply_field(s, id, "proc_resize", "cols", r <= 0 ? r : -EINVAL);
        if (!ex->pty || ex->fd_out < 0)
                return server_reply_errno(s, id, ENOTTY, "proc_resize %" PRIu64 ": no terminal",
                                          ex->id);
        struct winsize ws = {.ws_row = (unsigned short) rows, .ws_col = (unsigned short) cols};
        if (ioctl(ex->fd_out, TIOCSWINSZ, &ws) < 0) /* the kernel sends the group SIGWINCH */
                return server_reply_errno(s, id, errno, "proc_resize %" PRIu64, ex->id);
        server_begin_ok(s, id, 0);
        return server_flush(s);
}

static void exec_kill(Exec *ex)
{
        if (ex->exit_ns == 0 && !ex->detached && kill(-ex->pid, SIGKILL) < 0 && errno != ESRCH)
                agent_log("kill -%d: %s", (int) ex->pid, strerror(errno));
}

void exec_cancel(Server *s, uint64_t target, bool all)
{
        for (Exec *ex = s->execs; ex; ex = ex->next)
                if (all || ex->id == target)
                        exec_kill(ex);
}

/* Answers and drops every queued stdin write with err (0: drop silently). */
static int exec_fail_writes(Server *s, Exec *ex, int err)
{
        int r = 0;
        while (ex->wq) {
                WriteReq *w = ex->wq;
                ex->wq = w->next;
                if (w->id && err && r >= 0)
                        r = server_reply_errno(s, w->id, err, "proc_write %" PRIu64, ex->id);
                wreq_free(w);
        }
        return r;
}

int exec_cancel_write(Server *s, uint64_t target)
{
        for (Exec *ex = s->execs; ex; ex = ex->next)
                for (WriteReq **p = &ex->wq; *p; p = &(*p)->next)
                        if ((*p)->id == target) {
                                WriteReq *w = *p;
                                *p = w->next;
                                wreq_free(w);
                                return server_reply_errno(s, target, ECANCELED,
                                                          "proc_write %" PRIu64, ex->id);
                        }
        return 0;
}

/* ---- loop hooks ---- */

size_t exec_count(const Server *s)
{
        size_t n = 0;
        for (const Exec *ex = s->execs; ex; ex = ex->next)
                n++;
        return n;
}

bool exec_id_busy(const Server *s, uint64_t id)
{
        for (const Exec *ex = s->execs; ex; ex = ex->next) {
                if (!ex->detached && ex->id == id)
                        return true;
                for (const WriteReq *w = ex->wq; w; w = w->next)
                        if (w->id == id)
                                return true;
        }
        return false;
}

size_t exec_poll_fill(Server *s, struct pollfd *pfd)
{
        size_t n = 0;
        for (Exec *ex = s->execs; ex; ex = ex->next) {
                const int fds[4] = {ex->wq ? ex->fd_in : -1, ex->fd_out, ex->fd_err,
                                    ex->exit_ns ? -1 : ex->pidfd};
                for (int i = 0; i < 4; i++) {
                        ex->pidx[i] = -1;
                        if (fds[i] < 0)
                                continue;
                        ex->pidx[i] = (int) n;
                        pfd[n++] =
                            (struct pollfd){.fd = fds[i], .events = i == 0 ? POLLOUT : POLLIN};
                }
        }
        return n;
}

/* Writes queued stdin while the pipe takes it; answers finished proc_writes. Returns 0 or a
 * connection -errno. */
static int exec_write_stdin(Server *s, Exec *ex)
{
        while (ex->wq && ex->fd_in >= 0) {
                WriteReq *w = ex->wq;
                if (w->off < w->len) {
                        ssize_t n = write(ex->fd_in, w->data + w->off, w->len - w->off);
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n < 0 && errno == EAGAIN)
                                return 0;
                        if (n < 0) {
                                int err = errno;
                                closep(&ex->fd_in);
                                return exec_fail_writes(s, ex, err);
                        }
                        w->off += (size_t) n;
                        continue;
                }
                ex->wq = w->next;
                uint64_t wid = w->id;
                size_t len = w->len;
                wreq_free(w);
                if (wid) {
                        server_begin_ok(s, wid, 1);
                        proto_kv_uint(&s->wr, "n", len);
                        int r = server_flush(s);
                        if (r < 0)
                                return r;
                }
        }
        if (!ex->wq && ex->close_in)
                closep(&ex->fd_in);
        return 0;
}

/* Forwards one read of a pipe as a chunk. Returns 1 if data moved, 0, or a connection -errno. */
static int exec_read_pipe(Server *s, Exec *ex, int *fd, const char *kind)
{
        ssize_t n = read(*fd, s->buf + SERVER_HEAD, PROTO_CHUNK);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (n <= 0) {
                closep(fd);
                return 0;
        }
        int r = server_send_buf(s, ex->id, kind, (size_t) n);
        return r < 0 ? r : 1;
}

int exec_poll_handle(Server *s, const struct pollfd *pfd)
{
        for (Exec *ex = s->execs; ex; ex = ex->next) {
                int r = 0;
                if (ex->pidx[0] >= 0 && pfd[ex->pidx[0]].revents && ex->fd_in >= 0)
                        r = exec_write_stdin(s, ex);
                if (r >= 0 && ex->pidx[1] >= 0 && pfd[ex->pidx[1]].revents && ex->fd_out >= 0)
                        r = exec_read_pipe(s, ex, &ex->fd_out, "stdout");
                if (r >= 0 && ex->pidx[2] >= 0 && pfd[ex->pidx[2]].revents && ex->fd_err >= 0)
                        r = exec_read_pipe(s, ex, &ex->fd_err, "stderr");
                if (r < 0)
                        return r;
                if (ex->pidx[3] >= 0 && pfd[ex->pidx[3]].revents)
                        (void) exec_try_reap(ex);
        }
        return 0;
}

int exec_poll_timeout(const Server *s)
{
        int64_t next = 0;
        bool nopidfd = false;
        for (const Exec *ex = s->execs; ex; ex = ex->next) {
                int64_t d = ex->exit_ns ? ex->exit_ns + AGENT_EXEC_GRACE_NS
                                        : (ex->timed_out ? 0 : ex->deadline_ns);
                if (d > 0 && (next == 0 || d < next))
                        next = d;
                nopidfd |= ex->exit_ns == 0 && ex->pidfd < 0;
        }
        int ms = server_ms_until(next);
        if (nopidfd && (ms < 0 || ms > EXEC_NOPIDFD_MS))
                ms = EXEC_NOPIDFD_MS;
        return ms;
}

/* ---- completion ---- */

/* After the grace period, forwards what one pipe holds now (bounded) and closes it. */
static int exec_drain_pipe(Server *s, Exec *ex, int *fd, const char *kind)
{
        for (int i = 0; i < 16 && *fd >= 0; i++) {
                int r = exec_read_pipe(s, ex, fd, kind);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
        }
        closep(fd);
        return 0;
}

static int exec_drain(Server *s, Exec *ex)
{
        int r = exec_drain_pipe(s, ex, &ex->fd_out, "stdout");
        if (r < 0)
                return r;
        return exec_drain_pipe(s, ex, &ex->fd_err, "stderr");
}

static int exec_reply(Server *s, Exec *ex)
{
        server_begin_ok(s, ex->id, 4);
        if (WIFEXITED(ex->status))
                proto_kv_int(&s->wr, "exit_code", WEXITSTATUS(ex->status));
        else
                proto_kv_nil(&s->wr, "exit_code");
        if (WIFSIGNALED(ex->status))
                proto_kv_int(&s->wr, "signal", WTERMSIG(ex->status));
        else
                proto_kv_nil(&s->wr, "signal");
        proto_kv_bool(&s->wr, "timed_out", ex->timed_out);
        proto_kv_uint(&s->wr, "duration_ns", (uint64_t) (ex->exit_ns - ex->start_ns));
        return server_flush(s);
}

/* Moves ex one step on. Returns 1 when it is finished (reply sent), 0, or -errno. */
static int exec_advance(Server *s, Exec *ex, int64_t now)
{
        if (ex->exit_ns == 0 && ex->pidfd < 0)
                (void) exec_try_reap(ex);
        if (ex->exit_ns == 0) {
                if (ex->deadline_ns && !ex->timed_out && now >= ex->deadline_ns) {
                        exec_kill(ex);
                        ex->timed_out = true;
                }
                return 0;
        }
        if (ex->detached)
                return 1;
        if ((ex->fd_out >= 0 || ex->fd_err >= 0) && now < ex->exit_ns + AGENT_EXEC_GRACE_NS)
                return 0;
        int r = exec_drain(s, ex);
        if (r >= 0) {
                closep(&ex->fd_in);
                r = exec_fail_writes(s, ex, EPIPE);
        }
        if (r >= 0)
                r = exec_reply(s, ex);
        return r < 0 ? r : 1;
}

int exec_tick(Server *s)
{
        int64_t now = agent_now_ns();
        for (Exec **p = &s->execs; *p;) {
                int r = exec_advance(s, *p, now);
                if (r < 0)
                        return r;
                if (r == 0) {
                        p = &(*p)->next;
                        continue;
                }
                Exec *done = *p;
                *p = done->next;
                exec_free(done);
        }
        return 0;
}

void exec_detach_all(Server *s)
{
        for (Exec *ex = s->execs; ex; ex = ex->next) {
                exec_kill(ex);
                ex->detached = true;
                closep(&ex->fd_in);
                closep(&ex->fd_out);
                closep(&ex->fd_err);
                (void) exec_fail_writes(s, ex, 0);
        }
        /* Killed children not yet reaped go to the orphan reaper (exec_free disowns them). */
        while (s->execs) {
                Exec *ex = s->execs;
                s->execs = ex->next;
                (void) exec_try_reap(ex);
                exec_free(ex);
        }
}
