/* agent_harness.c: the client side of the agent's unit tests (see agent_harness.h). */
#include "agent_harness.h"

char tmp_root[] = "/tmp/provium-agent-test.XXXXXX";

/* Starts one agent serving n connections (--fd 3, --fd 4, ...) with the options in extra
 * (NULL-terminated, or NULL); ret[0] owns the process. */
void client_start(size_t n, const char *const *extra, Client **ret)
{
        const char *agent = getenv("PROVIUM_AGENT");
        assert_non_null(agent);
        assert_true(n >= 1 && n <= 4);
        int sv[4][2];
        for (size_t i = 0; i < n; i++)
                assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv[i]), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                /* move the child ends above the target range first, then onto 3, 4, ... */
                int hi[4];
                for (size_t i = 0; i < n; i++)
                        if ((hi[i] = fcntl(sv[i][1], F_DUPFD, 20)) < 0)
                                _exit(126);
                char *argv[2 + 2 * 4 + 4 + 1];
                char nums[4][8];
                size_t k = 0;
                argv[k++] = (char *) agent;
                for (size_t i = 0; i < n; i++) {
                        if (dup2(hi[i], 3 + (int) i) < 0)
                                _exit(126);
                        (void) snprintf(nums[i], sizeof nums[i], "%d", 3 + (int) i);
                        argv[k++] = "--fd";
                        argv[k++] = nums[i];
                }
                for (size_t i = 0; extra && extra[i] && i < 4; i++)
                        argv[k++] = (char *) extra[i];
                argv[k] = NULL;
                execv(agent, argv);
                _exit(127);
        }
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(close(sv[i][1]), 0);
                struct timeval tv = {.tv_sec = 30};
                assert_int_equal(setsockopt(sv[i][0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
                Client *c = calloc(1, sizeof *c);
                assert_non_null(c);
                c->pid = i == 0 ? pid : 0;
                c->fd = sv[i][0];
                assert_int_equal(proto_reader_init(&c->rd), 0);
                proto_writer_init(&c->wr);
                ret[i] = c;
        }
}

void client_new_n(size_t n, Client **ret)
{
        client_start(n, NULL, ret);
}

Client *client_new(void)
{
        Client *c;
        client_new_n(1, &c);
        return c;
}

/* Closes the connection and returns the agent's wait status. */
int client_finish(Client *c)
{
        int status = 0;
        assert_int_equal(close(c->fd), 0);
        if (c->pid > 0)
                assert_int_equal(waitpid(c->pid, &status, 0), c->pid);
        proto_reader_done(&c->rd);
        proto_writer_done(&c->wr);
        free(c);
        return status;
}

/* EOF on the connection must make the agent exit 0. */
void client_free(Client *c)
{
        int status = client_finish(c);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
}

void send_raw(Client *c, const void *p, size_t n)
{
        const char *b = p;
        while (n > 0) {
                ssize_t k = write(c->fd, b, n);
                if (k < 0 && errno == EINTR)
                        continue;
                assert_true(k > 0);
                b += k;
                n -= (size_t) k;
        }
}

void req_begin(Client *c, uint64_t id, const char *op, uint32_t n_extra)
{
        proto_begin(&c->wr, 2 + n_extra);
        proto_kv_uint(&c->wr, "id", id);
        proto_kv_str(&c->wr, "op", op);
}

void req_send(Client *c)
{
        size_t n;
        assert_int_equal(proto_end(&c->wr), 0);
        const uint8_t *p = proto_writer_data(&c->wr, &n);
        send_raw(c, p, n);
        proto_writer_reset(&c->wr);
}

/* Reads the next frame: 1 with *ret (valid until the next call), 0 on EOF. */
int read_frame(Client *c, msgpack_object *ret)
{
        for (;;) {
                int r = proto_reader_next(&c->rd, ret);
                if (r < 0) {
                        for (size_t i = 0; i < c->rd.len && i < 120; i++)
                                fprintf(stderr, "%02x ", c->rd.buf[i]);
                        fail_msg("bad frame from the agent: %s", strerror(-r));
                }
                if (r == 1)
                        return 1;
                uint8_t *p = proto_reader_space(&c->rd, 65536);
                assert_non_null(p);
                ssize_t n = read(c->fd, p, 65536);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == ECONNRESET)
                        return 0;
                assert_true(n >= 0); /* a timeout here means the agent hung */
                if (n == 0)
                        return 0;
                proto_reader_commit(&c->rd, (size_t) n);
        }
}

void buf_append(char **buf, size_t *len, const char *p, size_t n)
{
        *buf = realloc(*buf, *len + n + 1);
        assert_non_null(*buf);
        memcpy(*buf + *len, p, n);
        *len += n;
        (*buf)[*len] = 0;
}

void result_add_chunk(Result *res, const msgpack_object *m)
{
        const char *p;
        size_t n;
        if (proto_str_eq(proto_get(m, "chunk"), "ack")) {
                uint64_t v = 0;
                assert_int_equal(proto_get_uint(m, "n", &v), 1);
                assert_true(v >= res->last_ack);
                res->last_ack = v;
                res->n_acks++;
                return;
        }
        if (proto_str_eq(proto_get(m, "chunk"), "started")) {
                assert_int_equal(res->pid, 0);
                assert_int_equal(proto_get_uint(m, "pid", &res->pid), 1);
                return;
        }
        assert_int_equal(proto_get_bytes(m, "data", &p, &n), 1);
        const msgpack_object *kind = proto_get(m, "chunk");
        res->n_chunks++;
        if (n > res->max_chunk)
                res->max_chunk = n;
        if (proto_str_eq(kind, "stdout"))
                buf_append(&res->out, &res->out_len, p, n);
        else if (proto_str_eq(kind, "stderr"))
                buf_append(&res->err, &res->err_len, p, n);
        else if (proto_str_eq(kind, "data"))
                buf_append(&res->data, &res->data_len, p, n);
        else
                fail_msg("bad chunk kind");
}

void result_done(Result *res)
{
        free(res->out);
        free(res->err);
        free(res->data);
        *res = (Result){0};
}

/* Reads frames until the reply for id, collecting its chunks in res (may be NULL). Frames for
 * other ids fail the test. The reply stays valid until the next read. */
msgpack_object wait_reply(Client *c, uint64_t id, Result *res)
{
        Result scratch = {0};
        if (!res)
                res = &scratch;
        msgpack_object m;
        for (;;) {
                assert_int_equal(read_frame(c, &m), 1);
                uint64_t got;
                assert_int_equal(proto_get_uint(&m, "id", &got), 1);
                assert_int_equal(got, id);
                if (!proto_get(&m, "chunk"))
                        break;
                result_add_chunk(res, &m);
        }
        result_done(&scratch);
        return m;
}

void assert_ok(const msgpack_object *m)
{
        bool ok = false;
        assert_int_equal(proto_get_bool(m, "ok", &ok), 1);
        if (!ok) {
                const char *msg = "?";
                size_t n = 1;
                (void) proto_get_bytes(m, "msg", &msg, &n);
                fail_msg("error reply: %.*s", (int) n, msg);
        }
}

uint64_t get_u(const msgpack_object *m, const char *key)
{
        uint64_t v = 0;
        assert_int_equal(proto_get_uint(m, key, &v), 1);
        return v;
}

int64_t get_i(const msgpack_object *m, const char *key)
{
        int64_t v = 0;
        assert_int_equal(proto_get_int(m, key, &v), 1);
        return v;
}

bool get_b(const msgpack_object *m, const char *key)
{
        bool v = false;
        assert_int_equal(proto_get_bool(m, key, &v), 1);
        return v;
}

bool is_nil(const msgpack_object *m, const char *key)
{
        const msgpack_object *o = proto_get(m, key);
        return o && o->type == MSGPACK_OBJECT_NIL;
}

/* Checks an error reply and that its msg contains needle. */
void assert_error(const msgpack_object *m, int errnum, const char *name, const char *needle)
{
        assert_false(get_b(m, "ok"));
        assert_int_equal(get_i(m, "errno"), errnum);
        assert_true(proto_str_eq(proto_get(m, "error"), name));
        char *msg = NULL;
        assert_int_equal(proto_dup_str(m, "msg", &msg), 1);
        if (needle && !strstr(msg, needle))
                fail_msg("msg \"%s\" lacks \"%s\"", msg, needle);
        free(msg);
}

/* Sends the request begun, and checks that its reply is the error errnum (name) mentioning
 * needle. */
void send_expect_error(Client *c, uint64_t id, int errnum, const char *name, const char *needle)
{
        req_send(c);
        msgpack_object m = wait_reply(c, id, NULL);
        assert_error(&m, errnum, name, needle);
}

/* Reads the next frame and returns its id. */
uint64_t next_frame(Client *c, msgpack_object *m)
{
        assert_int_equal(read_frame(c, m), 1);
        return get_u(m, "id");
}

bool is_chunk(const msgpack_object *m, const char *kind)
{
        const msgpack_object *o = proto_get(m, "chunk");
        return o && proto_str_eq(o, kind);
}

int64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void hello_ok(Client *c, uint64_t id)
{
        req_begin(c, id, "hello", 1);
        proto_kv_uint(&c->wr, "version", 1);
        req_send(c);
        msgpack_object m = wait_reply(c, id, NULL);
        assert_ok(&m);
}

char *tmp_path(const char *name)
{
        char *p = NULL;
        assert_true(asprintf(&p, "%s/%s", tmp_root, name) > 0);
        return p;
}

/* Sends op {key = value} and returns its reply; streamed output lands in res. */
static msgpack_object call_str(Client *c, uint64_t id, const char *op, const char *key,
                               const char *value, Result *res)
{
        req_begin(c, id, op, 1);
        proto_kv_str(&c->wr, key, value);
        req_send(c);
        return wait_reply(c, id, res);
}

/* Sends exec {cmd} and returns its reply; output lands in res. */
msgpack_object run_cmd(Client *c, uint64_t id, const char *cmd, Result *res)
{
        return call_str(c, id, "exec", "cmd", cmd, res);
}

void write_local(const char *path, const void *p, size_t n)
{
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        assert_int_equal(fwrite(p, 1, n, f), n);
        assert_int_equal(fclose(f), 0);
}

char *read_local(const char *path, size_t *ret_len)
{
        FILE *f = fopen(path, "re");
        assert_non_null(f);
        char *b = NULL;
        size_t len = 0;
        char tmp[65536];
        size_t k;
        while ((k = fread(tmp, 1, sizeof tmp, f)) > 0)
                buf_append(&b, &len, tmp, k);
        assert_int_equal(fclose(f), 0);
        *ret_len = len;
        return b;
}

void assert_local_file(const char *path, const void *want, size_t n)
{
        size_t len;
        char *got = read_local(path, &len);
        assert_int_equal(len, n);
        assert_memory_equal(got, want, n);
        free(got);
}

char *tmp_fifo(const char *name)
{
        char *path = tmp_path(name);
        assert_int_equal(mkfifo(path, 0600), 0);
        return path;
}

msgpack_object read_file(Client *c, uint64_t id, const char *path, Result *res)
{
        return call_str(c, id, "read_file", "path", path, res);
}

/* Sends hello and checks that the reply comes within max_ms. */
void hello_within(Client *c, uint64_t id, int64_t max_ms)
{
        int64_t t0 = now_ms();
        hello_ok(c, id);
        int64_t dt = now_ms() - t0;
        if (dt > max_ms)
                fail_msg("hello took %lld ms", (long long) dt);
}

/* Cancels target and checks both replies: {} for the cancel, ECANCELED naming op for the
 * target. Data chunks of target that were already under way are skipped. */
void cancel_expect(Client *c, uint64_t id, uint64_t target, const char *op)
{
        req_begin(c, id, "cancel", 1);
        proto_kv_uint(&c->wr, "target", target);
        req_send(c);
        bool cancel_done = false, target_done = false;
        while (!cancel_done || !target_done) {
                msgpack_object m;
                uint64_t got = next_frame(c, &m);
                if (got == target && proto_get(&m, "chunk")) {
                        assert_false(target_done);
                        continue;
                }
                if (got == id) {
                        assert_ok(&m);
                        cancel_done = true;
                } else {
                        assert_int_equal(got, target);
                        assert_error(&m, ECANCELED, "ECANCELED", op);
                        target_done = true;
                }
        }
}

msgpack_object stat_path(Client *c, uint64_t id, const char *path, bool follow)
{
        req_begin(c, id, "stat", 2);
        proto_kv_str(&c->wr, "path", path);
        proto_kv_bool(&c->wr, "follow", follow);
        req_send(c);
        return wait_reply(c, id, NULL);
}

msgpack_object mkdir_path(Client *c, uint64_t id, const char *path, int mode, bool parents)
{
        req_begin(c, id, "mkdir", mode >= 0 ? 3 : 2);
        proto_kv_str(&c->wr, "path", path);
        proto_kv_bool(&c->wr, "parents", parents);
        if (mode >= 0)
                proto_kv_uint(&c->wr, "mode", (uint64_t) mode);
        req_send(c);
        return wait_reply(c, id, NULL);
}

msgpack_object open_req(Client *c, uint64_t id, const char *path, const char *flags)
{
        req_begin(c, id, "open", 2);
        proto_kv_str(&c->wr, "path", path);
        proto_kv_str(&c->wr, "flags", flags);
        req_send(c);
        return wait_reply(c, id, NULL);
}

uint64_t open_handle(Client *c, uint64_t id, const char *path, const char *flags)
{
        msgpack_object m = open_req(c, id, path, flags);
        assert_ok(&m);
        uint64_t fd = get_u(&m, "fd");
        assert_true(fd > 0);
        return fd;
}

msgpack_object fread_req(Client *c, uint64_t id, uint64_t fd, uint64_t n)
{
        req_begin(c, id, "fread", 2);
        proto_kv_uint(&c->wr, "fd", fd);
        proto_kv_uint(&c->wr, "n", n);
        req_send(c);
        return wait_reply(c, id, NULL);
}

uint64_t seek_req(Client *c, uint64_t id, uint64_t fd, const char *whence, int64_t off)
{
        req_begin(c, id, "seek", 3);
        proto_kv_uint(&c->wr, "fd", fd);
        proto_kv_str(&c->wr, "whence", whence);
        proto_kv_int(&c->wr, "offset", off);
        req_send(c);
        msgpack_object m = wait_reply(c, id, NULL);
        assert_ok(&m);
        return get_u(&m, "pos");
}

void assert_data(const msgpack_object *m, const char *want)
{
        const char *p;
        size_t n;
        assert_int_equal(proto_get_bytes(m, "data", &p, &n), 1);
        assert_int_equal(n, strlen(want));
        assert_memory_equal(p, want, n);
}

void hello_ok_any(Client *c, uint64_t id)
{
        req_begin(c, id, "hello", 1);
        proto_kv_uint(&c->wr, "version", 1);
        req_send(c);
}

void append_local(const char *path, const char *s)
{
        FILE *f = fopen(path, "ae");
        assert_non_null(f);
        assert_int_equal(fputs(s, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
}

/* Reads data chunks of tail id until want has been collected. */
void tail_expect(Client *c, uint64_t id, const char *want)
{
        char got[256] = "";
        size_t len = 0, n_want = strlen(want);
        while (len < n_want) {
                msgpack_object m;
                assert_int_equal(next_frame(c, &m), id);
                assert_true(is_chunk(&m, "data"));
                const char *p;
                size_t n;
                assert_int_equal(proto_get_bytes(&m, "data", &p, &n), 1);
                assert_true(len + n < sizeof got);
                memcpy(got + len, p, n);
                len += n;
        }
        assert_int_equal(len, n_want);
        assert_memory_equal(got, want, len);
}

void spawn_cmd(Client *c, uint64_t id, const char *cmd)
{
        req_begin(c, id, "spawn", 1);
        proto_kv_str(&c->wr, "cmd", cmd);
        req_send(c);
}

/* Reads frames until the started chunk of spawn id; returns the pid. */
uint64_t wait_started(Client *c, uint64_t id)
{
        msgpack_object m;
        assert_int_equal(next_frame(c, &m), id);
        assert_true(is_chunk(&m, "started"));
        uint64_t pid = get_u(&m, "pid");
        assert_true(pid > 0);
        return pid;
}

void send_proc(Client *c, uint64_t id, const char *op, uint64_t proc)
{
        req_begin(c, id, op, 1);
        proto_kv_uint(&c->wr, "proc", proc);
        req_send(c);
}

/* Sends raw bytes (then half-closes when shut) and expects the agent to hang up cleanly. */
void expect_hangup(const void *bytes, size_t n, bool shut)
{
        Client *c = client_new();
        hello_ok(c, 1);
        send_raw(c, bytes, n);
        if (shut)
                assert_int_equal(shutdown(c->fd, SHUT_WR), 0);
        msgpack_object m;
        int frames = 0;
        while (read_frame(c, &m) == 1)
                assert_true(++frames < 2); /* at most an error reply */
        int status = client_finish(c);
        assert_true(WIFEXITED(status));
        assert_true(WEXITSTATUS(status) <= 1);
}

/* Writes one struct input_event to fd (a FIFO standing in for /dev/input/eventN). */
void send_input_event(int fd, uint16_t type, uint16_t code, int32_t value)
{
        struct input_event ev = {.type = type, .code = code, .value = value};
        assert_int_equal(write(fd, &ev, sizeof ev), (ssize_t) sizeof ev);
}

int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        return remove(path);
}

int group_setup(void **state)
{
        return mkdtemp(tmp_root) ? 0 : -1;
}

int group_teardown(void **state)
{
        return nftw(tmp_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}
