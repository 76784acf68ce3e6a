/* keeper.c: a kept run's side of the control socket (keeper.h): its directory, and the shells
 * it runs in its VMs for provium shell, each on a pseudo-terminal through the VM's agent.
 *
 * A session is one client connection: IDLE until it asks for a shell, SPAWNING once the
 * agent's spawn is sent, RUNNING from its "started" chunk, ENDED once its exit was sent. It is
 * freed when its connection has closed and no agent request of its own is in flight.
 *
 * Sections: sessions, requests, the server, entry points.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "agent_client.h"
#include "cachedir.h"
#include "event_pipe.h"
#include "events.h"
#include "keeper.h"
#include "kept.h"
#include "vm.h"

#define KEEPER_WRITE_TIMEOUT_MS 60000
#define KEEPER_QUEUE_MAX        (16u << 20) /* output a slow client may have pending */

typedef enum SessionState {
        SESSION_IDLE,
        SESSION_SPAWNING,
        SESSION_RUNNING,
        SESSION_ENDED
} SessionState;

typedef struct Session Session;

struct Keeper {
        uv_loop_t *loop;
        Runtime *rt;
        char dir[256];
        char id[KEPT_ID_MAX];
        int lock_fd;
        uv_pipe_t server;
        uv_signal_t signals[3];
        bool server_open; /* server initialised and not closed */
        int nsignals;     /* signals initialised and not closed */
        int open_handles; /* of those, not closed yet */
        bool stop;
        Session *sessions;
};

struct Session {
        Keeper *k;
        uv_pipe_t conn;
        ProtoReader rd;
        SessionState state;
        AgentRequest shell; /* the spawn, in flight from SPAWNING until its reply */
        AgentClient *agent;
        char vm[64];
        bool conn_closed; /* closed or closing */
        Session *next;
};

/* One frame on its way to a client. */
typedef struct ClientWrite {
        uv_write_t req;
        uint8_t *data;
} ClientWrite;

/* A proc_write or proc_resize to the agent, freed by its reply. */
typedef struct AgentCall {
        AgentRequest req;
} AgentCall;

/* ---- sessions ---- */

static void session_maybe_free(Session *s)
{
        if (!s->conn_closed || s->state == SESSION_SPAWNING || s->state == SESSION_RUNNING)
                return;
        for (Session **p = &s->k->sessions; *p; p = &(*p)->next)
                if (*p == s) {
                        *p = s->next;
                        break;
                }
        proto_reader_done(&s->rd);
        free(s);
}

static void on_conn_closed(uv_handle_t *h)
{
        session_maybe_free(h->data);
}

static void session_close(Session *s)
{
        if (s->conn_closed)
                return;
        s->conn_closed = true;
        if (s->state == SESSION_SPAWNING || s->state == SESSION_RUNNING)
                agent_client_send_cancel(s->agent, s->shell.id); /* the shell is killed */
        uv_close((uv_handle_t *) &s->conn, on_conn_closed);
}

static void on_client_written(uv_write_t *req, int status)
{
        ClientWrite *cw = (ClientWrite *) req;
        Session *s = req->handle->data;
        free(cw->data);
        free(cw);
        if (status < 0 && status != UV_ECANCELED)
                session_close(s);
}

/* Sends the frame begun on w (proto_begin) to the client; frees w's buffer. */
static void session_send(Session *s, ProtoWriter *w)
{
        size_t len;
        int r = proto_end(w);
        const uint8_t *p = proto_writer_data(w, &len);
        ClientWrite *cw = r < 0 || s->conn_closed ? NULL : calloc(1, sizeof *cw);
        if (cw && (cw->data = malloc(len)))
                memcpy(cw->data, p, len);
        proto_writer_done(w);
        if (!cw || !cw->data ||
            uv_stream_get_write_queue_size((uv_stream_t *) &s->conn) > KEEPER_QUEUE_MAX) {
                if (cw)
                        free(cw->data);
                free(cw);
                session_close(s);
                return;
        }
        uv_buf_t buf = uv_buf_init((char *) cw->data, (unsigned) len);
        if (uv_write(&cw->req, (uv_stream_t *) &s->conn, &buf, 1, on_client_written) < 0) {
                free(cw->data);
                free(cw);
                session_close(s);
        }
}

static void session_error(Session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void session_error(Session *s, const char *fmt, ...)
{
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        ProtoWriter w;
        proto_writer_init(&w);
        proto_begin(&w, 2);
        proto_kv_str(&w, "type", "error");
        proto_kv_str(&w, "message", msg);
        session_send(s, &w);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
        (void) status;
        session_close(req->handle->data);
        free(req);
}

/* The client has been told everything: close once what is queued has gone. */
static void session_finish(Session *s)
{
        uv_shutdown_t *req = s->conn_closed ? NULL : calloc(1, sizeof *req);
        if (req && uv_shutdown(req, (uv_stream_t *) &s->conn, on_shutdown) == 0)
                return;
        free(req);
        session_close(s);
}

/* ---- the shell's agent requests ---- */

static void on_shell_chunk(AgentRequest *req, const char *kind, const char *data, size_t len,
                           const msgpack_object *msg)
{
        (void) msg;
        Session *s = req->data;
        ProtoWriter w;
        proto_writer_init(&w);
        if (strcmp(kind, "started") == 0) {
                s->state = SESSION_RUNNING;
                proto_begin(&w, 1);
                proto_kv_str(&w, "type", "started");
        } else if (data && (strcmp(kind, "stdout") == 0 || strcmp(kind, "stderr") == 0)) {
                proto_begin(&w, 2);
                proto_kv_str(&w, "type", "out");
                proto_kv_bin(&w, "data", data, len);
        } else {
                proto_writer_done(&w);
                return;
        }
        session_send(s, &w);
}

static void on_shell_reply(AgentRequest *req, int status, const msgpack_object *reply)
{
        Session *s = req->data;
        s->state = SESSION_ENDED;
        bool ok = false;
        char msg[256] = "";
        if (status < 0)
                snprintf(msg, sizeof msg, "%s", agent_client_close_text(status));
        else if (proto_get_bool(reply, "ok", &ok) != 1 || !ok)
                proto_copy_str(reply, "msg", msg, sizeof msg);
        if (s->conn_closed) {
                session_maybe_free(s);
                return;
        }
        if (status < 0 || !ok) {
                session_error(s, "the shell in VM %s: %s", s->vm, msg[0] ? msg : "failed");
        } else {
                int64_t code, sig;
                ProtoWriter w;
                proto_writer_init(&w);
                proto_begin(&w, 3);
                proto_kv_str(&w, "type", "exit");
                if (proto_get_int(reply, "exit_code", &code) == 1)
                        proto_kv_int(&w, "code", code);
                else
                        proto_kv_nil(&w, "code");
                if (proto_get_int(reply, "signal", &sig) == 1)
                        proto_kv_int(&w, "signal", sig);
                else
                        proto_kv_nil(&w, "signal");
                session_send(s, &w);
        }
        session_finish(s);
}

static void on_call_reply(AgentRequest *req, int status, const msgpack_object *reply)
{
        (void) status;
        (void) reply;
        free(req->data);
}

/* A request about the running shell (proc_write, proc_resize): {proc, ...}. */
static ProtoWriter *shell_call_begin(Session *s, const char *op, uint32_t nargs, AgentCall **ret)
{
        AgentCall *c = calloc(1, sizeof *c);
        if (!c)
                return NULL;
        c->req.on_reply = on_call_reply;
        c->req.data = c;
        *ret = c;
        ProtoWriter *w = agent_request_begin(s->agent, &c->req, op, nargs + 1);
        proto_kv_uint(w, "proc", s->shell.id);
        return w;
}

static void shell_call_send(Session *s, AgentCall *c)
{
        if (agent_request_send(s->agent, &c->req, KEEPER_WRITE_TIMEOUT_MS) < 0)
                free(c);
}

/* ---- requests ---- */

static Vm *keeper_find_vm(Keeper *k, const char *name)
{
        for (size_t i = 0; i < runtime_vm_count(k->rt); i++) {
                Vm *vm = runtime_vm(k->rt, i);
                if (vm && strcmp(vm_name(vm), name) == 0)
                        return vm;
        }
        return NULL;
}

/* The shell: bash when the image has it, else sh; its prompt names the VM. */
static void session_spawn(Session *s, const msgpack_object *m)
{
        char term[64];
        uint64_t rows = 24, cols = 80;
        proto_copy_str(m, "vm", s->vm, sizeof s->vm);
        proto_copy_str(m, "term", term, sizeof term);
        if (proto_get_uint(m, "rows", &rows) < 0 || proto_get_uint(m, "cols", &cols) < 0 || !rows ||
            !cols || rows > UINT16_MAX || cols > UINT16_MAX)
                rows = 24, cols = 80;
        Vm *vm = keeper_find_vm(s->k, s->vm);
        if (!vm) {
                session_error(s, "no VM '%s' in kept run %s", s->vm, s->k->id);
                return session_finish(s);
        }
        if (vm_state(vm) != VM_RUNNING || !vm_agent(vm) || !agent_client_ready(vm_agent(vm))) {
                session_error(s, "VM %s is %s, not running: no shell", s->vm,
                              vm_state_name(vm_state(vm)));
                return session_finish(s);
        }
        char ps1[96];
        snprintf(ps1, sizeof ps1, "%s# ", s->vm);
        s->agent = vm_agent(vm);
        s->shell =
            (AgentRequest){.on_chunk = on_shell_chunk, .on_reply = on_shell_reply, .data = s};
        ProtoWriter *w = agent_request_begin(s->agent, &s->shell, "spawn", 5);
        proto_key(w, "argv");
        msgpack_pack_array(&w->pk, 3);
        proto_pack_str(w, "/bin/sh");
        proto_pack_str(w, "-c");
        proto_pack_str(w, "cd /root 2>/dev/null || cd /; command -v bash >/dev/null 2>&1 && "
                          "exec bash --norc -i; exec sh -i");
        proto_key(w, "env");
        msgpack_pack_map(&w->pk, 3);
        proto_pack_str(w, "TERM");
        proto_pack_str(w, term[0] ? term : "xterm");
        proto_pack_str(w, "PS1");
        proto_pack_str(w, ps1);
        proto_pack_str(w, "HOME");
        proto_pack_str(w, "/root");
        proto_kv_bool(w, "pty", true);
        proto_kv_uint(w, "rows", rows);
        proto_kv_uint(w, "cols", cols);
        int r = agent_request_send(s->agent, &s->shell, 0);
        if (r < 0) {
                session_error(s, "VM %s: cannot start a shell: %s", s->vm, strerror(-r));
                return session_finish(s);
        }
        s->state = SESSION_SPAWNING;
}

static void session_stdin(Session *s, const msgpack_object *m)
{
        const char *data;
        size_t len;
        AgentCall *c;
        if (proto_get_bytes(m, "data", &data, &len) != 1 || len == 0)
                return;
        ProtoWriter *w = shell_call_begin(s, "proc_write", 1, &c);
        if (!w)
                return;
        proto_kv_bin(w, "data", data, len);
        shell_call_send(s, c);
}

static void session_resize(Session *s, const msgpack_object *m)
{
        uint64_t rows, cols;
        AgentCall *c;
        if (proto_get_uint(m, "rows", &rows) != 1 || proto_get_uint(m, "cols", &cols) != 1)
                return;
        ProtoWriter *w = shell_call_begin(s, "proc_resize", 2, &c);
        if (!w)
                return;
        proto_kv_uint(w, "rows", rows);
        proto_kv_uint(w, "cols", cols);
        shell_call_send(s, c);
}

static void session_handle(Session *s, const msgpack_object *m)
{
        char op[16];
        proto_copy_str(m, "op", op, sizeof op);
        bool shell = s->state == SESSION_SPAWNING || s->state == SESSION_RUNNING;
        if (strcmp(op, "shell") == 0 && s->state == SESSION_IDLE)
                session_spawn(s, m);
        else if (strcmp(op, "stdin") == 0 && shell)
                session_stdin(s, m);
        else if (strcmp(op, "resize") == 0 && shell)
                session_resize(s, m);
        else if (strcmp(op, "stop") == 0) {
                ProtoWriter w;
                proto_writer_init(&w);
                proto_begin(&w, 1);
                proto_kv_str(&w, "type", "stopping");
                session_send(s, &w);
                s->k->stop = true;
        } else if (!shell) {
                session_error(s, "kept run %s: unknown request '%s'", s->k->id, op);
                session_finish(s);
        }
}

static void on_conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
        (void) suggested;
        Session *s = h->data;
        uint8_t *p = proto_reader_space(&s->rd, 65536);
        *buf = uv_buf_init((char *) p, p ? 65536 : 0);
}

static void on_conn_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
        (void) buf;
        Session *s = st->data;
        if (n < 0) {
                session_close(s); /* the client went: its shell is killed */
                return;
        }
        proto_reader_commit(&s->rd, (size_t) n);
        msgpack_object m;
        int r = 0;
        while (!s->conn_closed && (r = proto_reader_next(&s->rd, &m)) > 0)
                session_handle(s, &m);
        if (!s->conn_closed && r < 0)
                session_close(s); /* not our frames */
}

/* ---- the server ---- */

static void on_connection(uv_stream_t *server, int status)
{
        Keeper *k = server->data;
        Session *s = status < 0 ? NULL : calloc(1, sizeof *s);
        if (!s)
                return;
        s->k = k;
        if (proto_reader_init(&s->rd) < 0) {
                free(s);
                return;
        }
        uv_pipe_init(k->loop, &s->conn, 0);
        s->conn.data = s;
        s->next = k->sessions;
        k->sessions = s;
        if (uv_accept(server, (uv_stream_t *) &s->conn) < 0 ||
            uv_read_start((uv_stream_t *) &s->conn, on_conn_alloc, on_conn_read) < 0)
                session_close(s);
}

static void on_stop_signal(uv_signal_t *h, int signum)
{
        (void) signum;
        Keeper *k = h->data;
        k->stop = true;
}

static void on_keeper_handle_closed(uv_handle_t *h)
{
        Keeper *k = h->data;
        k->open_handles--;
}

static int keeper_listen(Keeper *k)
{
        char sock[300];
        snprintf(sock, sizeof sock, "%s/control.sock", k->dir);
        int r = uv_pipe_init(k->loop, &k->server, 0);
        if (r < 0)
                return r;
        k->server.data = k;
        k->server_open = true;
        k->open_handles++;
        r = uv_pipe_bind(&k->server, sock);
        if (r == 0)
                r = uv_listen((uv_stream_t *) &k->server, 8, on_connection);
        const int sigs[3] = {SIGTERM, SIGINT, SIGHUP};
        for (int i = 0; i < 3 && r == 0; i++) {
                uv_signal_init(k->loop, &k->signals[i]);
                k->signals[i].data = k;
                k->nsignals++;
                k->open_handles++;
                r = uv_signal_start(&k->signals[i], on_stop_signal, sigs[i]);
        }
        return r;
}

/* ---- entry points ---- */

/* "name" of tests/name.test.lua, with only [A-Za-z0-9_-], at most 24 characters. */
static void file_stem(const char *file, char *out, size_t size)
{
        const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
        size_t n = 0;
        for (const char *p = base; *p && n + 1 < size && n < 24; p++) {
                if (strcmp(p, ".test.lua") == 0 || strcmp(p, ".lua") == 0)
                        break;
                bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                          (*p >= '0' && *p <= '9') || *p == '-' || *p == '_';
                out[n++] = ok ? *p : '_';
        }
        out[n] = 0;
}

/* The VMs a shell can reach, in creation order, separated by single spaces. */
static void keeper_vm_names(Keeper *k, char *out, size_t size)
{
        size_t n = 0;
        out[0] = 0;
        for (size_t i = 0; i < runtime_vm_count(k->rt); i++) {
                Vm *vm = runtime_vm(k->rt, i);
                if (!vm || (vm_state(vm) != VM_RUNNING && vm_state(vm) != VM_PAUSED))
                        continue;
                int w = snprintf(out + n, size - n, "%s%s", n ? " " : "", vm_name(vm));
                if (w < 0 || (size_t) w >= size - n) {
                        out[n] = 0;
                        return;
                }
                n += (size_t) w;
        }
}

static int keeper_write_info(Keeper *k, const RuntimeConfig *cfg, const char *vms)
{
        char tmp[300], path[300];
        snprintf(tmp, sizeof tmp, "%s/info.tmp", k->dir);
        snprintf(path, sizeof path, "%s/info", k->dir);
        FILE *f = fopen(tmp, "we");
        if (!f)
                return -errno;
        const char *test = runtime_first_failure(k->rt);
        fprintf(f, "file=%s\ntest=%s\nvms=%s\npid=%ld\n", cfg->file, test ? test : "", vms,
                (long) getpid());
        if (fclose(f) != 0 || rename(tmp, path) < 0)
                return -errno;
        return 0;
}

static void keeper_announce(Keeper *k, const char *vms)
{
        EventBuilder ev;
        const char *test = runtime_first_failure(k->rt);
        event_begin(&ev, "file.kept", 4);
        proto_kv_str(&ev.w, "id", k->id);
        proto_kv_str(&ev.w, "failed_test", test ? test : "");
        proto_kv_str(&ev.w, "dir", k->dir);
        proto_kv_str(&ev.w, "vms", vms);
        event_end(&ev);
}

/* Before the dispatcher is told: no signal when it exits (it may do so as soon as it knows),
 * and our output to the log. */
static int keeper_detach(Keeper *k)
{
        if (prctl(PR_SET_PDEATHSIG, 0) < 0)
                return -errno;
        char log[300];
        snprintf(log, sizeof log, "%s/log", k->dir);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        fflush(stdout);
        fflush(stderr);
        int r = dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0 ? -errno : 0;
        (void) close(fd);
        return r;
}

/* Takes the lock in the runner's own directory, then moves it: the kept directory is locked
 * from the moment it appears, so no listing takes it for a stale one. */
static int keeper_claim_dir(Keeper *k, const RuntimeConfig *cfg)
{
        const char *parent = kept_parent(true);
        char stem[32], lock[300];
        if (!parent)
                return -errno;
        file_stem(cfg->file, stem, sizeof stem);
        snprintf(k->id, sizeof k->id, "%s-%ld", stem[0] ? stem : "run", (long) getpid());
        snprintf(k->dir, sizeof k->dir, "%s/%s", parent, k->id);
        snprintf(lock, sizeof lock, "%s/lock", cfg->run_dir);
        k->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (k->lock_fd < 0 || flock(k->lock_fd, LOCK_EX) < 0)
                return -errno;
        if (rename(cfg->run_dir, k->dir) < 0) {
                int r = -errno;
                (void) unlink(lock);
                return r;
        }
        return 0;
}

Keeper *keeper_start(Runtime *rt, uv_loop_t *loop, const RuntimeConfig *cfg)
{
        Keeper *k = calloc(1, sizeof *k);
        if (!k)
                return NULL;
        *k = (Keeper){.loop = loop, .rt = rt, .lock_fd = -1};
        char vms[KEPT_VMS_MAX];
        keeper_vm_names(k, vms, sizeof vms);
        int r = vms[0] ? keeper_claim_dir(k, cfg) : -ESRCH;
        bool moved = r == 0;
        if (r == 0)
                r = keeper_write_info(k, cfg, vms);
        if (r == 0)
                r = keeper_listen(k);
        if (r == 0)
                r = keeper_detach(k);
        if (r == 0) {
                keeper_announce(k, vms);
                event_pipe_close();
        }
        if (r < 0) {
                fprintf(stderr, "provium: %s: cannot keep the VMs after the failure: %s\n",
                        cfg->file, r == -ESRCH ? "none is running" : strerror(-r));
                if (moved && rename(k->dir, cfg->run_dir) < 0)
                        fprintf(stderr, "provium: %s: cannot move %s back: %s\n", cfg->file, k->dir,
                                strerror(errno));
                k->dir[0] = 0;
                k->stop = true;
                keeper_serve(k);
                keeper_free(k);
                return NULL;
        }
        return k;
}

void keeper_serve(Keeper *k)
{
        while (!k->stop && uv_run(k->loop, UV_RUN_ONCE) != 0)
                ;
        for (Session *s = k->sessions; s; s = s->next) {
                if (s->state == SESSION_SPAWNING || s->state == SESSION_RUNNING) {
                        agent_request_cancel(&s->shell);
                        agent_client_send_cancel(s->agent, s->shell.id);
                        s->state = SESSION_ENDED;
                }
        }
        for (Session *s = k->sessions, *next; s; s = next) {
                next = s->next;
                session_close(s);
        }
        if (k->server_open)
                uv_close((uv_handle_t *) &k->server, on_keeper_handle_closed);
        for (int i = 0; i < k->nsignals; i++)
                uv_close((uv_handle_t *) &k->signals[i], on_keeper_handle_closed);
        k->server_open = false;
        k->nsignals = 0;
        while ((k->open_handles > 0 || k->sessions) && uv_run(k->loop, UV_RUN_ONCE) != 0)
                ;
}

void keeper_free(Keeper *k)
{
        if (!k)
                return;
        if (k->dir[0]) {
                (void) cachedir_rm_rf(k->dir);
                kept_parent_tidy();
        }
        if (k->lock_fd >= 0)
                (void) close(k->lock_fd);
        free(k);
}
