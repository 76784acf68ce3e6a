/* ops_exec.c: the exec op: spawning, stdin/stdout/stderr pipes, timeouts, reaping, replies.
 *
 * Sections: request parsing, child, spawning, loop hooks, completion.
 */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "agent.h"

struct Exec {
        Exec *next;
        uint64_t id;
        pid_t pid;
        int fd_in, fd_out, fd_err; /* our ends of the child's pipes, -1 once closed */
        uint8_t *in;               /* stdin bytes still to write from in_off */
        size_t in_len, in_off;
        int64_t start_ns;
        int64_t deadline_ns; /* timeout, 0 for none */
        int64_t exit_ns;     /* when the child was reaped, 0 while running */
        int status;          /* waitpid status once exit_ns != 0 */
        bool timed_out;
        bool detached; /* the connection is gone: reap silently */
        int pidx[3];   /* poll indices of fd_in, fd_out, fd_err, -1 when not polled */
};

typedef struct ExecSpec {
        char **argv; /* NULL-terminated, owned */
        char **env;  /* name, value, name, value, ..., NULL; owned */
        char *cwd;
        const char *in; /* stdin bytes in the request, or NULL */
        size_t in_len;
        uint64_t timeout_ms;
} ExecSpec;

typedef struct ExecFail {
        int step; /* 0 setup, 1 chdir, 2 exec */
        int err;
} ExecFail;

/* ---- request parsing ---- */

static void strv_free(char **v)
{
        for (size_t i = 0; v && v[i]; i++)
                free(v[i]);
        free(v);
}

static void spec_done(ExecSpec *sp)
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
static int spec_argv(ExecSpec *sp, const msgpack_object *req, const char **ret_field)
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

static int spec_env(ExecSpec *sp, const msgpack_object *req)
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

/* Parses an exec request. Returns 0, or -EINVAL with the bad field in *ret_field, or -ENOMEM. */
static int spec_parse(ExecSpec *sp, const msgpack_object *req, const char **ret_field)
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
        return 0;
}

/* ---- child ---- */

static _Noreturn void exec_child_fail(int st, int step)
{
        ExecFail f = {.step = step, .err = errno};
        (void) !write(st, &f, sizeof f);
        _exit(127);
}

/* Runs in the forked child: never returns. */
static _Noreturn void exec_child(const ExecSpec *sp, int in, int out, int err, int st)
{
        sigset_t none;
        sigemptyset(&none);
        if (sigprocmask(SIG_SETMASK, &none, NULL) < 0 || signal(SIGPIPE, SIG_DFL) == SIG_ERR ||
            setsid() < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
                exec_child_fail(st, 0);
        for (size_t i = 0; sp->env && sp->env[i]; i += 2)
                if (setenv(sp->env[i], sp->env[i + 1], 1) < 0)
                        exec_child_fail(st, 0);
        if (sp->cwd && chdir(sp->cwd) < 0)
                exec_child_fail(st, 1);
        execvp(sp->argv[0], sp->argv);
        exec_child_fail(st, 2);
}

/* ---- spawning ---- */

static Exec *exec_free(Exec *ex)
{
        if (!ex)
                return NULL;
        closep(&ex->fd_in);
        closep(&ex->fd_out);
        closep(&ex->fd_err);
        free(ex->in);
        free(ex);
        return NULL;
}

static int exec_pipes(int in[2], int out[2], int err[2], bool with_stdin)
{
        if (with_stdin) {
                if (pipe2(in, O_CLOEXEC) < 0)
                        return -errno;
        } else {
                in[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (in[0] < 0)
                        return -errno;
        }
        if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)
                return -errno;
        (void) fcntl(out[1], F_SETPIPE_SZ, (int) PROTO_CHUNK);
        (void) fcntl(err[1], F_SETPIPE_SZ, (int) PROTO_CHUNK);
        return 0;
}

/* Waits for the status pipe: 0 once the child exec'd, or its failure in *ret. */
static int exec_wait_status(int st, ExecFail *ret)
{
        for (;;) {
                ssize_t n = read(st, ret, sizeof *ret);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                return n == (ssize_t) sizeof *ret ? 1 : 0;
        }
}

static void exec_wait_pid(pid_t pid)
{
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
}

static void close_pair(int p[2])
{
        closep(&p[0]);
        closep(&p[1]);
}

static int set_nonblock(int fd)
{
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
                return -errno;
        return 0;
}

/* Forks the child and fills ex. Returns 0, or -errno with a failure reply already sent
 * (then *ret_replied is set), or -errno from the system. */
static int exec_spawn(Server *s, Exec *ex, const ExecSpec *sp, bool *ret_replied)
{
        int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, st[2] = {-1, -1};
        int r = exec_pipes(in, out, err, sp->in != NULL);
        if (r >= 0 && pipe2(st, O_CLOEXEC) < 0)
                r = -errno;
        if (r < 0)
                goto done;
        ex->start_ns = agent_now_ns();
        pid_t pid = fork();
        if (pid < 0) {
                r = -errno;
                goto done;
        }
        if (pid == 0)
                exec_child(sp, in[0], out[1], err[1], st[1]);
        closep(&st[1]);
        ExecFail f;
        r = exec_wait_status(st[0], &f);
        if (r != 0) {
                exec_wait_pid(pid);
                *ret_replied = r > 0;
                if (r > 0)
                        r = server_reply_errno(s, ex->id, f.err, "%s %s",
                                               f.step == 2   ? "exec"
                                               : f.step == 1 ? "chdir"
                                                             : "spawn",
                                               f.step == 1 ? sp->cwd : sp->argv[0]);
                goto done;
        }
        ex->pid = pid;
        ex->fd_in = TAKE_FD(in[1]);
        ex->fd_out = TAKE_FD(out[0]);
        ex->fd_err = TAKE_FD(err[0]);
        if ((ex->fd_in >= 0 && set_nonblock(ex->fd_in) < 0) || set_nonblock(ex->fd_out) < 0 ||
            set_nonblock(ex->fd_err) < 0)
                agent_log("exec %" PRIu64 ": fcntl: %s", ex->id, strerror(errno));
done:
        close_pair(in);
        close_pair(out);
        close_pair(err);
        close_pair(st);
        return r;
}

static int exec_setup(Server *s, Exec *ex, const ExecSpec *sp, bool *ret_replied)
{
        if (sp->in && sp->in_len > 0) {
                ex->in = malloc(sp->in_len);
                if (!ex->in)
                        return -ENOMEM;
                memcpy(ex->in, sp->in, sp->in_len);
                ex->in_len = sp->in_len;
        }
        int r = exec_spawn(s, ex, sp, ret_replied);
        if (r < 0 || *ret_replied)
                return r;
        if (ex->in_len == 0)
                closep(&ex->fd_in);
        if (sp->timeout_ms > 0)
                ex->deadline_ns = ex->start_ns + (int64_t) sp->timeout_ms * 1000000LL;
        return 0;
}

int exec_start(Server *s, uint64_t id, const msgpack_object *req)
{
        ExecSpec sp = {0};
        const char *field = NULL;
        int r = spec_parse(&sp, req, &field);
        if (r < 0) {
                spec_done(&sp);
                return r == -EINVAL
                           ? server_reply_field(s, id, "exec", field, proto_get(req, field) ? r : 0)
                           : server_reply_errno(s, id, -r, "exec");
        }
        Exec *ex = calloc(1, sizeof *ex);
        bool replied = false;
        if (!ex)
                r = -ENOMEM;
        else {
                *ex = (Exec){.id = id, .fd_in = -1, .fd_out = -1, .fd_err = -1};
                r = exec_setup(s, ex, &sp, &replied);
        }
        spec_done(&sp);
        if (r < 0 || replied) {
                exec_free(ex);
                return replied ? r : server_reply_errno(s, id, -r, "exec");
        }
        ex->next = s->execs;
        s->execs = ex;
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
        for (const Exec *ex = s->execs; ex; ex = ex->next)
                if (!ex->detached && ex->id == id)
                        return true;
        return false;
}

size_t exec_poll_fill(Server *s, struct pollfd *pfd)
{
        size_t n = 0;
        for (Exec *ex = s->execs; ex; ex = ex->next) {
                const int fds[3] = {ex->fd_in, ex->fd_out, ex->fd_err};
                for (int i = 0; i < 3; i++) {
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

static void exec_write_stdin(Exec *ex)
{
        ssize_t n = write(ex->fd_in, ex->in + ex->in_off, ex->in_len - ex->in_off);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (n > 0)
                ex->in_off += (size_t) n;
        if (n < 0 || ex->in_off == ex->in_len) {
                closep(&ex->fd_in);
        }
}

/* Forwards one read of a pipe as a chunk. Returns 1 if data moved, 0, or a connection -errno. */
static int exec_read_pipe(Server *s, Exec *ex, int *fd, const char *kind)
{
        ssize_t n = read(*fd, s->buf, PROTO_CHUNK);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (n <= 0) {
                closep(fd);
                return 0;
        }
        int r = server_send_chunk(s, ex->id, kind, s->buf, (size_t) n);
        return r < 0 ? r : 1;
}

int exec_poll_handle(Server *s, const struct pollfd *pfd)
{
        for (Exec *ex = s->execs; ex; ex = ex->next) {
                if (ex->pidx[0] >= 0 && pfd[ex->pidx[0]].revents && ex->fd_in >= 0)
                        exec_write_stdin(ex);
                if (ex->pidx[1] >= 0 && pfd[ex->pidx[1]].revents && ex->fd_out >= 0) {
                        int r = exec_read_pipe(s, ex, &ex->fd_out, "stdout");
                        if (r < 0)
                                return r;
                }
                if (ex->pidx[2] >= 0 && pfd[ex->pidx[2]].revents && ex->fd_err >= 0) {
                        int r = exec_read_pipe(s, ex, &ex->fd_err, "stderr");
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

void exec_reap(Server *s)
{
        for (;;) {
                int status;
                pid_t pid = waitpid(-1, &status, WNOHANG);
                if (pid < 0 && errno == EINTR)
                        continue;
                if (pid <= 0)
                        return;
                for (Exec *ex = s->execs; ex; ex = ex->next)
                        if (ex->pid == pid && ex->exit_ns == 0) {
                                ex->status = status;
                                ex->exit_ns = agent_now_ns();
                                break;
                        }
        }
}

int exec_poll_timeout(const Server *s)
{
        int64_t next = 0;
        for (const Exec *ex = s->execs; ex; ex = ex->next) {
                int64_t d = ex->exit_ns ? ex->exit_ns + AGENT_EXEC_GRACE_NS
                                        : (ex->timed_out ? 0 : ex->deadline_ns);
                if (d > 0 && (next == 0 || d < next))
                        next = d;
        }
        if (next == 0)
                return -1;
        int64_t ms = (next - agent_now_ns() + 999999) / 1000000;
        return ms < 0 ? 0 : ms > INT32_MAX ? INT32_MAX : (int) ms;
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
        if (ex->exit_ns == 0) {
                if (ex->deadline_ns && !ex->timed_out && now >= ex->deadline_ns) {
                        if (kill(-ex->pid, SIGKILL) < 0 && errno != ESRCH)
                                agent_log("kill -%d: %s", (int) ex->pid, strerror(errno));
                        ex->timed_out = true;
                }
                return 0;
        }
        if (ex->detached)
                return 1;
        if ((ex->fd_out >= 0 || ex->fd_err >= 0) && now < ex->exit_ns + AGENT_EXEC_GRACE_NS)
                return 0;
        int r = exec_drain(s, ex);
        if (r < 0)
                return r;
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
                if (ex->exit_ns == 0 && !ex->detached && kill(-ex->pid, SIGKILL) < 0 &&
                    errno != ESRCH)
                        agent_log("kill -%d: %s", (int) ex->pid, strerror(errno));
                ex->detached = true;
                closep(&ex->fd_in);
                closep(&ex->fd_out);
                closep(&ex->fd_err);
        }
        exec_reap(s);
        (void) exec_tick(s);
}
