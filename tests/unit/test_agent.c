/* test_agent.c: drives the real provium-agent ($PROVIUM_AGENT) over a socketpair, op by op.
 *
 * Sections: client, replies, ops (hello, exec, files), guest control (handles, tail, syscall,
 * ioctl, connections, spawn, cancel, reset), errors, bad frames, main.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/input.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"

#define MIB            (1024u * 1024u)
#define _cleanup_free_ __attribute__((cleanup(freep)))

static void freep(void *p)
{
        free(*(void **) p);
}

static char tmp_root[] = "/tmp/provium-agent-test.XXXXXX";

/* ---- client ---- */

typedef struct Client {
        pid_t pid;
        int fd;
        ProtoReader rd;
        ProtoWriter wr;
} Client;

typedef struct Result {
        char *out, *err, *data; /* chunk payloads by stream */
        size_t out_len, err_len, data_len;
        size_t n_chunks, max_chunk;
        size_t n_acks;     /* write_file ack chunks */
        uint64_t last_ack; /* their last n */
        uint64_t pid;      /* spawn's started chunk, 0 before it */
} Result;

/* Starts one agent serving n connections (--fd 3, --fd 4, ...) with the options in extra
 * (NULL-terminated, or NULL); ret[0] owns the process. */
static void client_start(size_t n, const char *const *extra, Client **ret)
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

static void client_new_n(size_t n, Client **ret)
{
        client_start(n, NULL, ret);
}

static Client *client_new(void)
{
        Client *c;
        client_new_n(1, &c);
        return c;
}

/* Closes the connection and returns the agent's wait status. */
static int client_finish(Client *c)
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
static void client_free(Client *c)
{
        int status = client_finish(c);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
}

static void send_raw(Client *c, const void *p, size_t n)
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

static void req_begin(Client *c, uint64_t id, const char *op, uint32_t n_extra)
{
        proto_begin(&c->wr, 2 + n_extra);
        proto_kv_uint(&c->wr, "id", id);
        proto_kv_str(&c->wr, "op", op);
}

static void req_send(Client *c)
{
        size_t n;
        assert_int_equal(proto_end(&c->wr), 0);
        const uint8_t *p = proto_writer_data(&c->wr, &n);
        send_raw(c, p, n);
        proto_writer_reset(&c->wr);
}

/* Reads the next frame: 1 with *ret (valid until the next call), 0 on EOF. */
static int read_frame(Client *c, msgpack_object *ret)
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

static void buf_append(char **buf, size_t *len, const char *p, size_t n)
{
        *buf = realloc(*buf, *len + n + 1);
        assert_non_null(*buf);
        memcpy(*buf + *len, p, n);
        *len += n;
        (*buf)[*len] = 0;
}

static void result_add_chunk(Result *res, const msgpack_object *m)
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

static void result_done(Result *res)
{
        free(res->out);
        free(res->err);
        free(res->data);
        *res = (Result){0};
}

/* Reads frames until the reply for id, collecting its chunks in res (may be NULL). Frames for
 * other ids fail the test. The reply stays valid until the next read. */
static msgpack_object wait_reply(Client *c, uint64_t id, Result *res)
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

/* ---- replies ---- */

static void assert_ok(const msgpack_object *m)
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

static uint64_t get_u(const msgpack_object *m, const char *key)
{
        uint64_t v = 0;
        assert_int_equal(proto_get_uint(m, key, &v), 1);
        return v;
}

static int64_t get_i(const msgpack_object *m, const char *key)
{
        int64_t v = 0;
        assert_int_equal(proto_get_int(m, key, &v), 1);
        return v;
}

static bool get_b(const msgpack_object *m, const char *key)
{
        bool v = false;
        assert_int_equal(proto_get_bool(m, key, &v), 1);
        return v;
}

static bool is_nil(const msgpack_object *m, const char *key)
{
        const msgpack_object *o = proto_get(m, key);
        return o && o->type == MSGPACK_OBJECT_NIL;
}

/* Checks an error reply and that its msg contains needle. */
static void assert_error(const msgpack_object *m, int errnum, const char *name, const char *needle)
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
static void send_expect_error(Client *c, uint64_t id, int errnum, const char *name,
                              const char *needle)
{
        req_send(c);
        msgpack_object m = wait_reply(c, id, NULL);
        assert_error(&m, errnum, name, needle);
}

/* Reads the next frame and returns its id. */
static uint64_t next_frame(Client *c, msgpack_object *m)
{
        assert_int_equal(read_frame(c, m), 1);
        return get_u(m, "id");
}

static bool is_chunk(const msgpack_object *m, const char *kind)
{
        const msgpack_object *o = proto_get(m, "chunk");
        return o && proto_str_eq(o, kind);
}

static int64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void hello_ok(Client *c, uint64_t id)
{
        req_begin(c, id, "hello", 1);
        proto_kv_uint(&c->wr, "version", 1);
        req_send(c);
        msgpack_object m = wait_reply(c, id, NULL);
        assert_ok(&m);
}

static char *tmp_path(const char *name)
{
        char *p = NULL;
        assert_true(asprintf(&p, "%s/%s", tmp_root, name) > 0);
        return p;
}

/* ---- hello ---- */

static void test_hello(void **state)
{
        Client *c = client_new();
        req_begin(c, 1, "hello", 1);
        proto_kv_uint(&c->wr, "version", 1);
        req_send(c);
        msgpack_object m = wait_reply(c, 1, NULL);
        assert_ok(&m);
        assert_int_equal(get_u(&m, "version"), 1);
        assert_true(proto_str_eq(proto_get(&m, "agent"), "provium-agent 0.1.0"));
        assert_false(get_b(&m, "pid1"));
        assert_int_equal(get_u(&m, "max_frame"), PROTO_MAX_FRAME);
        const msgpack_object *kernel = proto_get(&m, "kernel");
        assert_true(kernel && kernel->type == MSGPACK_OBJECT_STR && kernel->via.str.size > 0);
        const msgpack_object *caps = proto_get(&m, "caps");
        assert_true(caps && caps->type == MSGPACK_OBJECT_ARRAY);
        const char *want[] = {
            "hello",       "exec",    "read_file", "write_file", "stat",       "mkdir",
            "poweroff",    "cancel",  "reset",     "spawn",      "proc_write", "proc_close_stdin",
            "proc_signal", "open",    "fread",     "fwrite",     "seek",       "close",
            "tail",        "syscall", "ioctl"};
        assert_true(proto_str_eq(proto_get(&m, "port"), "fd"));
        struct utsname un;
        assert_int_equal(uname(&un), 0);
        assert_true(proto_str_eq(proto_get(&m, "arch"), un.machine));
        for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
                bool found = false;
                for (uint32_t j = 0; j < caps->via.array.size; j++)
                        found |= proto_str_eq(&caps->via.array.ptr[j], want[i]);
                assert_true(found);
        }

        req_begin(c, 2, "hello", 1);
        proto_kv_uint(&c->wr, "version", 2);
        send_expect_error(c, 2, EPROTONOSUPPORT, "EPROTONOSUPPORT", "hello");
        client_free(c);
}

/* ---- exec ---- */

/* Sends exec {cmd} and returns its reply; output lands in res. */
static msgpack_object run_cmd(Client *c, uint64_t id, const char *cmd, Result *res)
{
        req_begin(c, id, "exec", 1);
        proto_kv_str(&c->wr, "cmd", cmd);
        req_send(c);
        return wait_reply(c, id, res);
}

static void test_exec_argv(void **state)
{
        Client *c = client_new();
        req_begin(c, 1, "exec", 1);
        proto_key(&c->wr, "argv");
        msgpack_pack_array(&c->wr.pk, 2);
        proto_pack_str(&c->wr, "echo");
        proto_pack_str(&c->wr, "hello world");
        req_send(c);
        Result res = {0};
        msgpack_object m = wait_reply(c, 1, &res);
        assert_ok(&m);
        assert_int_equal(get_i(&m, "exit_code"), 0);
        assert_true(is_nil(&m, "signal"));
        assert_false(get_b(&m, "timed_out"));
        assert_true(get_u(&m, "duration_ns") > 0);
        assert_string_equal(res.out, "hello world\n");
        assert_null(res.err);
        result_done(&res);

        m = run_cmd(c, 2, "echo out; echo err >&2; exit 3", &res);
        assert_ok(&m);
        assert_int_equal(get_i(&m, "exit_code"), 3);
        assert_string_equal(res.out, "out\n");
        assert_string_equal(res.err, "err\n");
        result_done(&res);
        client_free(c);
}

static void test_exec_env_cwd_stdin(void **state)
{
        Client *c = client_new();
        req_begin(c, 1, "exec", 4);
        proto_kv_str(&c->wr, "cmd", "cat; printf '%s|%s\\n' \"$PROVIUM_T\" \"$(pwd)\"");
        proto_key(&c->wr, "env");
        msgpack_pack_map(&c->wr.pk, 1);
        proto_pack_str(&c->wr, "PROVIUM_T");
        proto_pack_str(&c->wr, "bar baz");
        proto_kv_str(&c->wr, "cwd", tmp_root);
        proto_kv_bin(&c->wr, "stdin", "input\n", 6);
        req_send(c);
        Result res = {0};
        msgpack_object m = wait_reply(c, 1, &res);
        assert_ok(&m);
        char *want = NULL;
        assert_true(asprintf(&want, "input\nbar baz|%s\n", tmp_root) > 0);
        assert_string_equal(res.out, want);
        free(want);
        result_done(&res);

        /* no stdin: /dev/null */
        m = run_cmd(c, 2, "cat; echo end", &res);
        assert_ok(&m);
        assert_string_equal(res.out, "end\n");
        result_done(&res);

        /* 2 MiB through cat: stdin is written while stdout is read */
        char *big = malloc(2 * MIB);
        assert_non_null(big);
        for (size_t i = 0; i < 2 * MIB; i++)
                big[i] = (char) ('a' + i % 23);
        req_begin(c, 3, "exec", 2);
        proto_kv_str(&c->wr, "cmd", "cat");
        proto_kv_bin(&c->wr, "stdin", big, 2 * MIB);
        req_send(c);
        m = wait_reply(c, 3, &res);
        assert_ok(&m);
        assert_int_equal(get_i(&m, "exit_code"), 0);
        assert_int_equal(res.out_len, 2 * MIB);
        assert_memory_equal(res.out, big, 2 * MIB);
        free(big);
        result_done(&res);
        client_free(c);
}

static void test_exec_signal_timeout(void **state)
{
        Client *c = client_new();
        msgpack_object m = run_cmd(c, 1, "kill -TERM $$", NULL);
        assert_ok(&m);
        assert_true(is_nil(&m, "exit_code"));
        assert_int_equal(get_i(&m, "signal"), SIGTERM);
        assert_false(get_b(&m, "timed_out"));

        req_begin(c, 2, "exec", 2);
        proto_key(&c->wr, "argv");
        msgpack_pack_array(&c->wr.pk, 2);
        proto_pack_str(&c->wr, "sleep");
        proto_pack_str(&c->wr, "10");
        proto_kv_uint(&c->wr, "timeout_ms", 300);
        req_send(c);
        m = wait_reply(c, 2, NULL);
        assert_ok(&m);
        assert_true(get_b(&m, "timed_out"));
        assert_int_equal(get_i(&m, "signal"), SIGKILL);
        assert_true(is_nil(&m, "exit_code"));
        uint64_t ns = get_u(&m, "duration_ns");
        assert_true(ns >= 300000000ull && ns < 5000000000ull);

        /* a background grandchild holding stdout open does not hold the reply forever */
        m = run_cmd(c, 3, "sleep 5 & echo started", NULL);
        assert_ok(&m);
        assert_int_equal(get_i(&m, "exit_code"), 0);
        client_free(c);
}

static void test_exec_not_found(void **state)
{
        Client *c = client_new();
        Result res = {0};
        msgpack_object m = run_cmd(c, 1, "provium-no-such-command", &res);
        assert_ok(&m);
        assert_int_equal(get_i(&m, "exit_code"), 127);
        assert_true(res.err_len > 0);
        result_done(&res);

        req_begin(c, 2, "exec", 1);
        proto_key(&c->wr, "argv");
        msgpack_pack_array(&c->wr.pk, 1);
        proto_pack_str(&c->wr, "provium-no-such-command");
        send_expect_error(c, 2, ENOENT, "ENOENT", "exec provium-no-such-command: No such file");

        req_begin(c, 3, "exec", 2);
        proto_kv_str(&c->wr, "cmd", "true");
        proto_kv_str(&c->wr, "cwd", "/provium-no-such-dir");
        send_expect_error(c, 3, ENOENT, "ENOENT", "chdir /provium-no-such-dir");
        client_free(c);
}

static void test_exec_big_output(void **state)
{
        Client *c = client_new();
        Result res = {0};
        msgpack_object m = run_cmd(c, 1, "head -c 10485760 /dev/zero", &res);
        assert_ok(&m);
        assert_int_equal(get_i(&m, "exit_code"), 0);
        assert_int_equal(res.out_len, 10 * MIB);
        assert_true(res.n_chunks > 1);
        assert_true(res.max_chunk <= PROTO_CHUNK);
        for (size_t i = 0; i < res.out_len; i++)
                if (res.out[i] != 0)
                        fail_msg("byte %zu is not zero", i);
        result_done(&res);
        client_free(c);
}

static void test_exec_concurrent(void **state)
{
        Client *c = client_new();
        req_begin(c, 1, "exec", 1);
        proto_kv_str(&c->wr, "cmd", "sleep 0.4; echo slow");
        req_send(c);
        req_begin(c, 2, "exec", 1);
        proto_kv_str(&c->wr, "cmd", "echo fast");
        req_send(c);
        int order[2], n = 0;
        while (n < 2) {
                msgpack_object m;
                assert_int_equal(read_frame(c, &m), 1);
                if (proto_get(&m, "chunk"))
                        continue;
                assert_ok(&m);
                order[n++] = (int) get_u(&m, "id");
        }
        assert_int_equal(order[0], 2);
        assert_int_equal(order[1], 1);
        client_free(c);
}

/* ---- files ---- */

static void write_local(const char *path, const void *p, size_t n)
{
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        assert_int_equal(fwrite(p, 1, n, f), n);
        assert_int_equal(fclose(f), 0);
}

static char *read_local(const char *path, size_t *ret_len)
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

static msgpack_object read_file(Client *c, uint64_t id, const char *path, Result *res)
{
        req_begin(c, id, "read_file", 1);
        proto_kv_str(&c->wr, "path", path);
        req_send(c);
        return wait_reply(c, id, res);
}

static void test_read_file(void **state)
{
        Client *c = client_new();
        _cleanup_free_ char *missing = tmp_path("missing");
        msgpack_object m = read_file(c, 1, missing, NULL);
        char *want = NULL;
        assert_true(asprintf(&want, "open %s: No such file or directory", missing) > 0);
        assert_error(&m, ENOENT, "ENOENT", want);
        free(want);

        m = read_file(c, 2, tmp_root, NULL);
        assert_error(&m, EISDIR, "EISDIR", tmp_root);

        _cleanup_free_ char *path = tmp_path("big-read");
        char *big = malloc(MIB);
        assert_non_null(big);
        for (size_t i = 0; i < MIB; i++)
                big[i] = (char) (i * 7 + i / 4096);
        write_local(path, big, MIB);
        Result res = {0};
        m = read_file(c, 3, path, &res);
        assert_ok(&m);
        assert_int_equal(get_u(&m, "size"), MIB);
        assert_int_equal(res.data_len, MIB);
        assert_true(res.n_chunks >= MIB / PROTO_CHUNK);
        assert_true(res.max_chunk <= PROTO_CHUNK);
        assert_memory_equal(res.data, big, MIB);
        free(big);
        result_done(&res);

        _cleanup_free_ char *empty = tmp_path("empty");
        write_local(empty, "", 0);
        m = read_file(c, 4, empty, &res);
        assert_ok(&m);
        assert_int_equal(get_u(&m, "size"), 0);
        assert_int_equal(res.n_chunks, 0);
        client_free(c);
}

/* Sends hello and checks that the reply comes within max_ms. */
static void hello_within(Client *c, uint64_t id, int64_t max_ms)
{
        int64_t t0 = now_ms();
        hello_ok(c, id);
        int64_t dt = now_ms() - t0;
        if (dt > max_ms)
                fail_msg("hello took %lld ms", (long long) dt);
}

/* Cancels target and checks both replies: {} for the cancel, ECANCELED naming op for the
 * target. Data chunks of target that were already under way are skipped. */
static void cancel_expect(Client *c, uint64_t id, uint64_t target, const char *op)
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

/* read_file must never wedge its connection: a FIFO without a writer waits until cancel, an
 * endless file streams until cancel; the connection answers at once afterwards. */
static void test_read_file_cancel(void **state)
{
        Client *c = client_new();
        _cleanup_free_ char *fifo = tmp_path("read-fifo");
        assert_int_equal(mkfifo(fifo, 0600), 0);
        req_begin(c, 1, "read_file", 1);
        proto_kv_str(&c->wr, "path", fifo);
        req_send(c);
        hello_within(c, 2, 1000); /* the parked read_file does not block the connection */
        cancel_expect(c, 3, 1, "read_file");
        hello_within(c, 4, 100);

        /* a writer that comes later: read until it closes */
        req_begin(c, 5, "read_file", 1);
        proto_kv_str(&c->wr, "path", fifo);
        req_send(c);
        hello_ok(c, 6);
        int w = open(fifo, O_WRONLY | O_CLOEXEC);
        assert_true(w >= 0);
        assert_int_equal(write(w, "from fifo", 9), 9);
        assert_int_equal(close(w), 0);
        Result res = {0};
        msgpack_object m = wait_reply(c, 5, &res);
        assert_ok(&m);
        assert_int_equal(get_u(&m, "size"), 9);
        assert_int_equal(res.data_len, 9);
        assert_memory_equal(res.data, "from fifo", 9);
        result_done(&res);

        /* an endless file streams chunks until cancel */
        req_begin(c, 7, "read_file", 1);
        proto_kv_str(&c->wr, "path", "/dev/zero");
        req_send(c);
        for (int i = 0; i < 20; i++) {
                assert_int_equal(next_frame(c, &m), 7);
                assert_true(is_chunk(&m, "data"));
        }
        cancel_expect(c, 8, 7, "read_file");
        hello_within(c, 9, 1000);
        client_free(c);
}

/* write_file to a FIFO without a reader waits for one (or cancel) without blocking the
 * connection. */
static void test_write_file_fifo(void **state)
{
        Client *c = client_new();
        _cleanup_free_ char *fifo = tmp_path("write-fifo");
        assert_int_equal(mkfifo(fifo, 0600), 0);
        req_begin(c, 1, "write_file", 3);
        proto_kv_str(&c->wr, "path", fifo);
        proto_kv_bin(&c->wr, "data", "abc", 3);
        proto_kv_bool(&c->wr, "eof", true);
        req_send(c);
        hello_within(c, 2, 1000);
        cancel_expect(c, 3, 1, "write_file");
        hello_within(c, 4, 100);

        /* a reader that comes later gets the data; a full pipe parks the rest */
        size_t big = 3 * PROTO_CHUNK;
        char *data = malloc(big);
        assert_non_null(data);
        for (size_t i = 0; i < big; i++)
                data[i] = (char) (i * 13);
        req_begin(c, 5, "write_file", 3);
        proto_kv_str(&c->wr, "path", fifo);
        proto_kv_bin(&c->wr, "data", data, PROTO_CHUNK);
        proto_kv_bool(&c->wr, "eof", false);
        req_send(c);
        hello_ok(c, 6);
        int rfd = open(fifo, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        assert_true(rfd >= 0);
        for (int i = 1; i < 3; i++) {
                req_begin(c, 5, "data", 2);
                proto_kv_bin(&c->wr, "data", data + i * PROTO_CHUNK, PROTO_CHUNK);
                proto_kv_bool(&c->wr, "eof", i == 2);
                req_send(c);
        }
        hello_ok(c, 7); /* the pipe is full and nobody reads: still answered */
        char *got = malloc(big);
        assert_non_null(got);
        size_t n = 0;
        while (n < big) { /* until the agent's open, read() would see EOF: poll first */
                struct pollfd pfd = {.fd = rfd, .events = POLLIN};
                assert_int_equal(poll(&pfd, 1, 10000), 1);
                ssize_t k = read(rfd, got + n, big - n);
                assert_true(k > 0);
                n += (size_t) k;
        }
        Result res = {0};
        msgpack_object m = wait_reply(c, 5, &res);
        assert_ok(&m);
        assert_int_equal(get_u(&m, "size"), big);
        assert_int_equal(res.n_acks, 2);
        assert_int_equal(res.last_ack, 2 * PROTO_CHUNK);
        assert_memory_equal(got, data, big);
        assert_int_equal(close(rfd), 0);
        free(got);
        free(data);
        result_done(&res);
        client_free(c);
}

static msgpack_object stat_path(Client *c, uint64_t id, const char *path, bool follow)
{
        req_begin(c, id, "stat", 2);
        proto_kv_str(&c->wr, "path", path);
        proto_kv_bool(&c->wr, "follow", follow);
        req_send(c);
        return wait_reply(c, id, NULL);
}

static void test_write_file(void **state)
{
        Client *c = client_new();
        _cleanup_free_ char *small = tmp_path("small");
        req_begin(c, 1, "write_file", 4);
        proto_kv_str(&c->wr, "path", small);
        proto_kv_uint(&c->wr, "mode", 0600);
        proto_kv_bin(&c->wr, "data", "hello", 5);
        proto_kv_bool(&c->wr, "eof", true);
        req_send(c);
        msgpack_object m = wait_reply(c, 1, NULL);
        assert_ok(&m);
        assert_int_equal(get_u(&m, "size"), 5);
        m = stat_path(c, 2, small, true);
        assert_ok(&m);
        assert_int_equal(get_u(&m, "mode"), 0600);
        assert_int_equal(get_u(&m, "size"), 5);
        size_t len;
        char *got = read_local(small, &len);
        assert_int_equal(len, 5);
        assert_memory_equal(got, "hello", 5);
        free(got);

        /* three frames: 256 KiB, 256 KiB, 100 KiB; mode 0751 beyond the umask */
        _cleanup_free_ char *big = tmp_path("big-write");
        const size_t sizes[] = {PROTO_CHUNK, PROTO_CHUNK, 100 * 1024};
        const size_t total = sizes[0] + sizes[1] + sizes[2];
        char *data = malloc(total);
        assert_non_null(data);
        for (size_t i = 0; i < total; i++)
                data[i] = (char) (i % 251);
        req_begin(c, 3, "write_file", 4);
        proto_kv_str(&c->wr, "path", big);
        proto_kv_uint(&c->wr, "mode", 0751);
        proto_kv_bin(&c->wr, "data", data, sizes[0]);
        proto_kv_bool(&c->wr, "eof", false);
        req_send(c);
        for (size_t i = 1, off = sizes[0]; i < 3; off += sizes[i], i++) {
                req_begin(c, 3, "data", 2);
                proto_kv_bin(&c->wr, "data", data + off, sizes[i]);
                proto_kv_bool(&c->wr, "eof", i == 2);
                req_send(c);
        }
        Result acks = {0};
        m = wait_reply(c, 3, &acks);
        assert_ok(&m);
        assert_int_equal(get_u(&m, "size"), total);
        assert_int_equal(acks.n_acks, 2); /* after each frame but the last (it gets the reply) */
        assert_int_equal(acks.last_ack, sizes[0] + sizes[1]);
        got = read_local(big, &len);
        assert_int_equal(len, total);
        assert_memory_equal(got, data, total);
        free(got);
        free(data);
        m = stat_path(c, 4, big, true);
        assert_ok(&m);
        assert_int_equal(get_u(&m, "mode"), 0751);
        assert_int_equal(get_u(&m, "size"), total);

        /* an error at open is reported once, after the last upload */
        _cleanup_free_ char *bad = tmp_path("no-dir/file");
        req_begin(c, 5, "write_file", 3);
        proto_kv_str(&c->wr, "path", bad);
        proto_kv_bin(&c->wr, "data", "a", 1);
        proto_kv_bool(&c->wr, "eof", false);
        req_send(c);
        for (int i = 0; i < 2; i++) {
                req_begin(c, 5, "data", 2);
                proto_kv_bin(&c->wr, "data", "b", 1);
                proto_kv_bool(&c->wr, "eof", i == 1);
                req_send(c);
        }
        m = wait_reply(c, 5, NULL);
        assert_error(&m, ENOENT, "ENOENT", "open ");
        hello_ok(c, 6); /* exactly one reply for id 5 came */
        client_free(c);
}

static void test_stat(void **state)
{
        Client *c = client_new();
        _cleanup_free_ char *file = tmp_path("stat-file");
        _cleanup_free_ char *link = tmp_path("stat-link");
        write_local(file, "12345678", 8);
        assert_int_equal(chmod(file, 04710), 0);
        assert_int_equal(symlink(file, link), 0);
        struct stat st;
        assert_int_equal(stat(file, &st), 0);

        msgpack_object m = stat_path(c, 1, file, true);
        assert_ok(&m);
        assert_true(proto_str_eq(proto_get(&m, "type"), "file"));
        assert_int_equal(get_u(&m, "size"), 8);
        assert_int_equal(get_u(&m, "mode"), 04710);
        assert_int_equal(get_u(&m, "uid"), st.st_uid);
        assert_int_equal(get_u(&m, "gid"), st.st_gid);
        assert_int_equal(get_u(&m, "nlink"), 1);
        assert_int_equal(get_u(&m, "ino"), st.st_ino);
        assert_int_equal(get_u(&m, "mtime_ns"),
                         (uint64_t) st.st_mtim.tv_sec * 1000000000u + st.st_mtim.tv_nsec);
        assert_true(get_u(&m, "atime_ns") > 0 && get_u(&m, "ctime_ns") > 0);

        m = stat_path(c, 2, link, false);
        assert_ok(&m);
        assert_true(proto_str_eq(proto_get(&m, "type"), "link"));
        m = stat_path(c, 3, link, true);
        assert_ok(&m);
        assert_true(proto_str_eq(proto_get(&m, "type"), "file"));
        m = stat_path(c, 4, tmp_root, true);
        assert_ok(&m);
        assert_true(proto_str_eq(proto_get(&m, "type"), "dir"));
        m = stat_path(c, 5, "/dev/null", true);
        assert_ok(&m);
        assert_true(proto_str_eq(proto_get(&m, "type"), "chr"));
        _cleanup_free_ char *missing = tmp_path("stat-missing");
        m = stat_path(c, 6, missing, true);
        assert_error(&m, ENOENT, "ENOENT", "stat ");
        client_free(c);
}

static msgpack_object mkdir_path(Client *c, uint64_t id, const char *path, int mode, bool parents)
{
        req_begin(c, id, "mkdir", mode >= 0 ? 3 : 2);
        proto_kv_str(&c->wr, "path", path);
        proto_kv_bool(&c->wr, "parents", parents);
        if (mode >= 0)
                proto_kv_uint(&c->wr, "mode", (uint64_t) mode);
        req_send(c);
        return wait_reply(c, id, NULL);
}

static void test_mkdir(void **state)
{
        Client *c = client_new();
        _cleanup_free_ char *d = tmp_path("d1");
        msgpack_object m = mkdir_path(c, 1, d, 0700, false);
        assert_ok(&m);
        struct stat st;
        assert_int_equal(stat(d, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0700);
        m = mkdir_path(c, 2, d, -1, false);
        assert_error(&m, EEXIST, "EEXIST", "mkdir ");

        _cleanup_free_ char *deep = tmp_path("a/b/c");
        m = mkdir_path(c, 3, deep, -1, false);
        assert_error(&m, ENOENT, "ENOENT", "mkdir ");
        m = mkdir_path(c, 4, deep, -1, true);
        assert_ok(&m);
        assert_int_equal(stat(deep, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0755);
        m = mkdir_path(c, 5, deep, -1, true);
        assert_ok(&m);

        _cleanup_free_ char *file = tmp_path("mkdir-file");
        write_local(file, "x", 1);
        _cleanup_free_ char *under = tmp_path("mkdir-file/sub/dir");
        m = mkdir_path(c, 6, under, -1, true);
        assert_error(&m, ENOTDIR, "ENOTDIR", "mkdir ");
        client_free(c);
}

/* ---- guest control: handles, tail ---- */

static msgpack_object open_req(Client *c, uint64_t id, const char *path, const char *flags)
{
        req_begin(c, id, "open", 2);
        proto_kv_str(&c->wr, "path", path);
        proto_kv_str(&c->wr, "flags", flags);
        req_send(c);
        return wait_reply(c, id, NULL);
}

static uint64_t open_handle(Client *c, uint64_t id, const char *path, const char *flags)
{
        msgpack_object m = open_req(c, id, path, flags);
        assert_ok(&m);
        uint64_t fd = get_u(&m, "fd");
        assert_true(fd > 0);
        return fd;
}

static msgpack_object fread_req(Client *c, uint64_t id, uint64_t fd, uint64_t n)
{
        req_begin(c, id, "fread", 2);
        proto_kv_uint(&c->wr, "fd", fd);
        proto_kv_uint(&c->wr, "n", n);
        req_send(c);
        return wait_reply(c, id, NULL);
}

static uint64_t seek_req(Client *c, uint64_t id, uint64_t fd, const char *whence, int64_t off)
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

static void assert_data(const msgpack_object *m, const char *want)
{
        const char *p;
        size_t n;
        assert_int_equal(proto_get_bytes(m, "data", &p, &n), 1);
        assert_int_equal(n, strlen(want));
        assert_memory_equal(p, want, n);
}

static void hello_ok_any(Client *c, uint64_t id)
{
        req_begin(c, id, "hello", 1);
        proto_kv_uint(&c->wr, "version", 1);
        req_send(c);
}

static void test_handles(void **state)
{
        Client *c = client_new();
        _cleanup_free_ char *path = tmp_path("handle-file");
        uint64_t fd = open_handle(c, 1, path, "w+");
        req_begin(c, 2, "fwrite", 2);
        proto_kv_uint(&c->wr, "fd", fd);
        proto_kv_bin(&c->wr, "data", "hello world", 11);
        req_send(c);
        msgpack_object m = wait_reply(c, 2, NULL);
        assert_ok(&m);
        assert_int_equal(get_u(&m, "n"), 11);
        assert_int_equal(seek_req(c, 3, fd, "set", 0), 0);
        m = fread_req(c, 4, fd, 5);
        assert_ok(&m);
        assert_data(&m, "hello");
        assert_int_equal(seek_req(c, 5, fd, "cur", 0), 5);
        assert_int_equal(seek_req(c, 6, fd, "end", -5), 6);
        m = fread_req(c, 7, fd, 100);
        assert_ok(&m);
        assert_data(&m, "world");
        m = fread_req(c, 8, fd, 100);
        assert_ok(&m);
        assert_data(&m, ""); /* EOF */

        uint64_t fd2 = open_handle(c, 9, path, "r");
        assert_true(fd2 != fd);
        req_begin(c, 10, "fwrite", 2); /* read-only handle */
        proto_kv_uint(&c->wr, "fd", fd2);
        proto_kv_bin(&c->wr, "data", "x", 1);
        send_expect_error(c, 10, EBADF, "EBADF", "fwrite");

        req_begin(c, 11, "close", 1);
        proto_kv_uint(&c->wr, "fd", fd);
        req_send(c);
        m = wait_reply(c, 11, NULL);
        assert_ok(&m);
        m = fread_req(c, 12, fd, 1);
        assert_error(&m, EBADF, "EBADF", "fread");
        req_begin(c, 13, "close", 1);
        proto_kv_uint(&c->wr, "fd", fd);
        send_expect_error(c, 13, EBADF, "EBADF", "close");

        _cleanup_free_ char *missing = tmp_path("handle-missing");
        m = open_req(c, 14, missing, "r");
        assert_error(&m, ENOENT, "ENOENT", "open ");
        m = open_req(c, 15, path, "wx");
        assert_error(&m, EEXIST, "EEXIST", "open ");
        m = open_req(c, 16, path, "q");
        assert_error(&m, EINVAL, "EINVAL", "flags");
        req_begin(c, 17, "seek", 3);
        proto_kv_uint(&c->wr, "fd", fd2);
        proto_kv_str(&c->wr, "whence", "middle");
        proto_kv_int(&c->wr, "offset", 0);
        send_expect_error(c, 17, EINVAL, "EINVAL", "whence");
        assert_int_equal(chmod(path, 0), 0);
        if (geteuid() != 0) {
                m = open_req(c, 18, path, "r");
                assert_error(&m, EACCES, "EACCES", "open ");
        }

        /* appending handle */
        _cleanup_free_ char *app = tmp_path("handle-append");
        write_local(app, "ab", 2);
        uint64_t fa = open_handle(c, 19, app, "a");
        req_begin(c, 20, "fwrite", 2);
        proto_kv_uint(&c->wr, "fd", fa);
        proto_kv_bin(&c->wr, "data", "cd", 2);
        req_send(c);
        m = wait_reply(c, 20, NULL);
        assert_ok(&m);
        size_t len;
        char *got = read_local(app, &len);
        assert_int_equal(len, 4);
        assert_memory_equal(got, "abcd", 4);
        free(got);
        client_free(c);
}

static void test_fread_fifo_cancel(void **state)
{
        Client *c = client_new();
        _cleanup_free_ char *fifo = tmp_path("fifo-cancel");
        assert_int_equal(mkfifo(fifo, 0600), 0);
        uint64_t fd = open_handle(c, 1, fifo, "r+");
        req_begin(c, 2, "fread", 2);
        proto_kv_uint(&c->wr, "fd", fd);
        proto_kv_uint(&c->wr, "n", 10);
        req_send(c);
        hello_ok(c, 3); /* the parked fread does not block the connection */
        req_begin(c, 4, "cancel", 1);
        proto_kv_uint(&c->wr, "target", 2);
        req_send(c);
        msgpack_object m = wait_reply(c, 4, NULL);
        assert_ok(&m);
        m = wait_reply(c, 2, NULL);
        assert_error(&m, ECANCELED, "ECANCELED", "fread");

        /* a parked fread completes when data arrives */
        req_begin(c, 5, "fread", 2);
        proto_kv_uint(&c->wr, "fd", fd);
        proto_kv_uint(&c->wr, "n", 10);
        req_send(c);
        hello_ok(c, 6);
        int w = open(fifo, O_WRONLY | O_CLOEXEC);
        assert_true(w >= 0);
        assert_int_equal(write(w, "abc", 3), 3);
        m = wait_reply(c, 5, NULL);
        assert_ok(&m);
        assert_data(&m, "abc");
        assert_int_equal(close(w), 0);
        client_free(c);
}

static void append_local(const char *path, const char *s)
{
        FILE *f = fopen(path, "ae");
        assert_non_null(f);
        assert_int_equal(fputs(s, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
}

/* Reads data chunks of tail id until want has been collected. */
static void tail_expect(Client *c, uint64_t id, const char *want)
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

static void test_tail(void **state)
{
        Client *c = client_new();
        _cleanup_free_ char *path = tmp_path("tail-file");
        write_local(path, "old line\n", 9);
        req_begin(c, 1, "tail", 1);
        proto_kv_str(&c->wr, "path", path);
        req_send(c);
        hello_ok(c, 2); /* the tail is registered once hello is answered */
        append_local(path, "line 1\n");
        tail_expect(c, 1, "line 1\n");
        append_local(path, "line 2\n");
        tail_expect(c, 1, "line 2\n");
        write_local(path, "new\n", 4); /* truncation: starts over */
        tail_expect(c, 1, "new\n");
        req_begin(c, 3, "cancel", 1);
        proto_kv_uint(&c->wr, "target", 1);
        req_send(c);
        msgpack_object m = wait_reply(c, 3, NULL);
        assert_ok(&m);
        m = wait_reply(c, 1, NULL);
        assert_error(&m, ECANCELED, "ECANCELED", "tail");

        req_begin(c, 4, "tail", 1); /* a directory is still an error */
        proto_kv_str(&c->wr, "path", tmp_root);
        send_expect_error(c, 4, EISDIR, "EISDIR", "tail ");
        client_free(c);
}

/* tail of a path that does not exist yet waits for it (like tail -F), then streams it from 0;
 * a re-created path is reopened and streamed from 0 too. */
static void test_tail_missing(void **state)
{
        Client *c = client_new();
        _cleanup_free_ char *path = tmp_path("tail-later");
        _cleanup_free_ char *tmp = tmp_path("tail-later.new");
        req_begin(c, 1, "tail", 1);
        proto_kv_str(&c->wr, "path", path);
        req_send(c);
        hello_ok(c, 2); /* no error reply came first: the tail waits */
        write_local(path, "first\n", 6);
        tail_expect(c, 1, "first\n");
        append_local(path, "more\n");
        tail_expect(c, 1, "more\n");
        /* replaced by rename: a new inode, streamed from its start */
        write_local(tmp, "replaced\n", 9);
        assert_int_equal(rename(tmp, path), 0);
        tail_expect(c, 1, "replaced\n");
        /* removed, then created again */
        assert_int_equal(unlink(path), 0);
        hello_ok(c, 3);
        write_local(path, "again\n", 6);
        tail_expect(c, 1, "again\n");
        req_begin(c, 4, "cancel", 1);
        proto_kv_uint(&c->wr, "target", 1);
        req_send(c);
        msgpack_object m = wait_reply(c, 4, NULL);
        assert_ok(&m);
        m = wait_reply(c, 1, NULL);
        assert_error(&m, ECANCELED, "ECANCELED", "tail");

        /* a path that never comes: cancel ends the wait */
        _cleanup_free_ char *never = tmp_path("tail-never");
        req_begin(c, 5, "tail", 1);
        proto_kv_str(&c->wr, "path", never);
        req_send(c);
        hello_ok(c, 6);
        req_begin(c, 7, "cancel", 1);
        proto_kv_uint(&c->wr, "target", 5);
        req_send(c);
        m = wait_reply(c, 7, NULL);
        assert_ok(&m);
        m = wait_reply(c, 5, NULL);
        assert_error(&m, ECANCELED, "ECANCELED", "tail");
        client_free(c);
}

/* ---- guest control: syscall, ioctl ---- */

static void test_syscall(void **state)
{
        Client *c = client_new();
        req_begin(c, 1, "syscall", 2);
        proto_kv_uint(&c->wr, "nr", SYS_getpid);
        proto_key(&c->wr, "args");
        msgpack_pack_array(&c->wr.pk, 0);
        req_send(c);
        msgpack_object m = wait_reply(c, 1, NULL);
        assert_ok(&m);
        assert_int_equal(get_i(&m, "ret"), c->pid);
        assert_int_equal(get_i(&m, "errno"), 0);

        req_begin(c, 2, "syscall", 2);
        proto_kv_uint(&c->wr, "nr", SYS_uname);
        proto_key(&c->wr, "args");
        msgpack_pack_array(&c->wr.pk, 1);
        msgpack_pack_map(&c->wr.pk, 1);
        proto_kv_uint(&c->wr, "out", 390);
        req_send(c);
        m = wait_reply(c, 2, NULL);
        assert_ok(&m);
        assert_int_equal(get_i(&m, "ret"), 0);
        const msgpack_object *bufs = proto_get(&m, "bufs");
        assert_true(bufs && bufs->type == MSGPACK_OBJECT_ARRAY && bufs->via.array.size == 1);
        const msgpack_object *b = &bufs->via.array.ptr[0];
        assert_int_equal(b->type, MSGPACK_OBJECT_BIN);
        assert_int_equal(b->via.bin.size, 390);
        assert_memory_equal(b->via.bin.ptr, "Linux", 6);

        /* openat + write + close on a file, through buffers and integers */
        _cleanup_free_ char *path = tmp_path("syscall-file");
        req_begin(c, 3, "syscall", 2);
        proto_kv_uint(&c->wr, "nr", SYS_openat);
        proto_key(&c->wr, "args");
        msgpack_pack_array(&c->wr.pk, 4);
        msgpack_pack_int(&c->wr.pk, AT_FDCWD);
        msgpack_pack_map(&c->wr.pk, 1);
        proto_kv_bin(&c->wr, "buf", path, strlen(path) + 1);
        msgpack_pack_int(&c->wr.pk, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC);
        msgpack_pack_int(&c->wr.pk, 0600);
        req_send(c);
        m = wait_reply(c, 3, NULL);
        assert_ok(&m);
        int64_t gfd = get_i(&m, "ret");
        assert_true(gfd >= 0);
        req_begin(c, 4, "syscall", 2);
        proto_kv_uint(&c->wr, "nr", SYS_write);
        proto_key(&c->wr, "args");
        msgpack_pack_array(&c->wr.pk, 3);
        msgpack_pack_int64(&c->wr.pk, gfd);
        msgpack_pack_map(&c->wr.pk, 1);
        proto_kv_bin(&c->wr, "buf", "written", 7);
        msgpack_pack_int(&c->wr.pk, 7);
        req_send(c);
        m = wait_reply(c, 4, NULL);
        assert_ok(&m);
        assert_int_equal(get_i(&m, "ret"), 7);
        req_begin(c, 5, "syscall", 2);
        proto_kv_uint(&c->wr, "nr", SYS_close);
        proto_key(&c->wr, "args");
        msgpack_pack_array(&c->wr.pk, 1);
        msgpack_pack_int64(&c->wr.pk, gfd);
        req_send(c);
        m = wait_reply(c, 5, NULL);
        assert_ok(&m);
        assert_int_equal(get_i(&m, "ret"), 0);
        size_t len;
        char *got = read_local(path, &len);
        assert_int_equal(len, 7);
        assert_memory_equal(got, "written", 7);
        free(got);

        /* a failing call: ret -1 and errno, not an error reply */
        req_begin(c, 6, "syscall", 2);
        proto_kv_uint(&c->wr, "nr", SYS_close);
        proto_key(&c->wr, "args");
        msgpack_pack_array(&c->wr.pk, 1);
        msgpack_pack_int(&c->wr.pk, 100000);
        req_send(c);
        m = wait_reply(c, 6, NULL);
        assert_ok(&m);
        assert_int_equal(get_i(&m, "ret"), -1);
        assert_int_equal(get_i(&m, "errno"), EBADF);

        /* refused calls */
        const long refused[] = {
            SYS_exit_group, SYS_exit, SYS_execve, SYS_clone, SYS_reboot,
#ifdef SYS_fork
            SYS_fork,
#endif
        };
        for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
                req_begin(c, 7, "syscall", 1);
                proto_kv_uint(&c->wr, "nr", (uint64_t) refused[i]);
                req_send(c);
                m = wait_reply(c, 7, NULL);
                assert_error(&m, EPERM, "EPERM", "syscall");
        }

        /* bad arguments */
        req_begin(c, 8, "syscall", 2);
        proto_kv_uint(&c->wr, "nr", SYS_getpid);
        proto_key(&c->wr, "args");
        msgpack_pack_array(&c->wr.pk, 7);
        for (int i = 0; i < 7; i++)
                msgpack_pack_int(&c->wr.pk, 0);
        send_expect_error(c, 8, EINVAL, "EINVAL", "args");
        req_begin(c, 9, "syscall", 2);
        proto_kv_uint(&c->wr, "nr", SYS_getpid);
        proto_key(&c->wr, "args");
        msgpack_pack_array(&c->wr.pk, 1);
        msgpack_pack_map(&c->wr.pk, 1);
        proto_kv_uint(&c->wr, "out", 2 * MIB);
        send_expect_error(c, 9, E2BIG, "E2BIG", NULL);
        req_begin(c, 10, "syscall", 2);
        proto_kv_uint(&c->wr, "nr", SYS_getpid);
        proto_key(&c->wr, "args");
        msgpack_pack_array(&c->wr.pk, 1);
        proto_pack_str(&c->wr, "str");
        send_expect_error(c, 10, EINVAL, "EINVAL", "args");
        req_begin(c, 11, "syscall", 0);
        send_expect_error(c, 11, EINVAL, "EINVAL", "nr");
        hello_ok(c, 12);
        client_free(c);
}

/* A blocking syscall runs beside the connection: cancel answers at once, and the helper
 * finishes the call and frees it later. */
static void test_syscall_cancel(void **state)
{
        Client *c = client_new();
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 300 * 1000000L};
        req_begin(c, 1, "syscall", 2);
        proto_kv_uint(&c->wr, "nr", SYS_nanosleep);
        proto_key(&c->wr, "args");
        msgpack_pack_array(&c->wr.pk, 2);
        msgpack_pack_map(&c->wr.pk, 1);
        proto_kv_bin(&c->wr, "buf", &ts, sizeof ts);
        msgpack_pack_int(&c->wr.pk, 0);
        req_send(c);
        hello_within(c, 2, 250); /* answered while the call sleeps */
        cancel_expect(c, 3, 1, "syscall");
        hello_within(c, 4, 100);

        /* not cancelled: the reply comes when the call returns */
        ts.tv_nsec = 50 * 1000000L;
        req_begin(c, 5, "syscall", 2);
        proto_kv_uint(&c->wr, "nr", SYS_nanosleep);
        proto_key(&c->wr, "args");
        msgpack_pack_array(&c->wr.pk, 2);
        msgpack_pack_map(&c->wr.pk, 1);
        proto_kv_bin(&c->wr, "buf", &ts, sizeof ts);
        msgpack_pack_int(&c->wr.pk, 0);
        req_send(c);
        msgpack_object m = wait_reply(c, 5, NULL);
        assert_ok(&m);
        assert_int_equal(get_i(&m, "ret"), 0);

        /* gettid runs in the connection's thread: the same answer twice */
        int64_t tid[2];
        for (int i = 0; i < 2; i++) {
                req_begin(c, 6, "syscall", 1);
                proto_kv_uint(&c->wr, "nr", SYS_gettid);
                req_send(c);
                m = wait_reply(c, 6, NULL);
                assert_ok(&m);
                tid[i] = get_i(&m, "ret");
        }
        assert_int_equal(tid[0], tid[1]);
        usleep(400 * 1000); /* let the abandoned call end and free itself */
        client_free(c);
}

static void test_ioctl(void **state)
{
        Client *c = client_new();
        _cleanup_free_ char *fifo = tmp_path("fifo-ioctl");
        assert_int_equal(mkfifo(fifo, 0600), 0);
        uint64_t fd = open_handle(c, 1, fifo, "r+");
        req_begin(c, 2, "fwrite", 2);
        proto_kv_uint(&c->wr, "fd", fd);
        proto_kv_bin(&c->wr, "data", "12345", 5);
        req_send(c);
        msgpack_object m = wait_reply(c, 2, NULL);
        assert_ok(&m);
        req_begin(c, 3, "ioctl", 3);
        proto_kv_uint(&c->wr, "fd", fd);
        proto_kv_uint(&c->wr, "request", FIONREAD);
        proto_key(&c->wr, "arg");
        msgpack_pack_map(&c->wr.pk, 1);
        proto_kv_uint(&c->wr, "out", sizeof(int));
        req_send(c);
        m = wait_reply(c, 3, NULL);
        assert_ok(&m);
        assert_int_equal(get_i(&m, "ret"), 0);
        const msgpack_object *bufs = proto_get(&m, "bufs");
        assert_true(bufs && bufs->type == MSGPACK_OBJECT_ARRAY && bufs->via.array.size == 1);
        int avail = 0;
        assert_int_equal(bufs->via.array.ptr[0].via.bin.size, sizeof avail);
        memcpy(&avail, bufs->via.array.ptr[0].via.bin.ptr, sizeof avail);
        assert_int_equal(avail, 5);

        req_begin(c, 4, "ioctl", 3); /* integer argument */
        proto_kv_uint(&c->wr, "fd", fd);
        proto_kv_uint(&c->wr, "request", FIOCLEX);
        proto_kv_uint(&c->wr, "arg", 0);
        req_send(c);
        m = wait_reply(c, 4, NULL);
        assert_ok(&m);
        assert_int_equal(get_i(&m, "ret"), 0);
        bufs = proto_get(&m, "bufs");
        assert_true(bufs && bufs->type == MSGPACK_OBJECT_ARRAY && bufs->via.array.size == 0);

        /* by path: a pty master's window size */
        req_begin(c, 5, "ioctl", 3);
        proto_kv_str(&c->wr, "path", "/dev/ptmx");
        proto_kv_uint(&c->wr, "request", TIOCGWINSZ);
        proto_key(&c->wr, "arg");
        msgpack_pack_map(&c->wr.pk, 1);
        proto_kv_uint(&c->wr, "out", sizeof(struct winsize));
        req_send(c);
        m = wait_reply(c, 5, NULL);
        if (get_b(&m, "ok")) {
                assert_int_equal(get_i(&m, "ret"), 0);
                bufs = proto_get(&m, "bufs");
                assert_int_equal(bufs->via.array.ptr[0].via.bin.size, sizeof(struct winsize));
        }
        /* ENOTTY comes back as errno, not as an error reply */
        req_begin(c, 6, "ioctl", 3);
        proto_kv_uint(&c->wr, "fd", fd);
        proto_kv_uint(&c->wr, "request", TIOCGWINSZ);
        proto_key(&c->wr, "arg");
        msgpack_pack_map(&c->wr.pk, 1);
        proto_kv_uint(&c->wr, "out", sizeof(struct winsize));
        req_send(c);
        m = wait_reply(c, 6, NULL);
        assert_ok(&m);
        assert_int_equal(get_i(&m, "ret"), -1);
        assert_int_equal(get_i(&m, "errno"), ENOTTY);

        req_begin(c, 7, "ioctl", 2);
        proto_kv_uint(&c->wr, "fd", 999);
        proto_kv_uint(&c->wr, "request", FIONREAD);
        send_expect_error(c, 7, EBADF, "EBADF", "ioctl");
        _cleanup_free_ char *missing = tmp_path("ioctl-missing");
        req_begin(c, 8, "ioctl", 2);
        proto_kv_str(&c->wr, "path", missing);
        proto_kv_uint(&c->wr, "request", FIONREAD);
        send_expect_error(c, 8, ENOENT, "ENOENT", "open ");
        req_begin(c, 9, "ioctl", 1);
        proto_kv_uint(&c->wr, "request", FIONREAD);
        send_expect_error(c, 9, EINVAL, "EINVAL", NULL);
        client_free(c);
}

/* ---- guest control: connections ---- */

static void test_two_connections(void **state)
{
        Client *cs[2];
        client_new_n(2, cs);
        Client *a = cs[0], *b = cs[1];
        hello_ok(a, 1);
        hello_ok(b, 1); /* ids are per connection */

        /* a's thread blocks inside read(2) on a FIFO without data */
        _cleanup_free_ char *fifo = tmp_path("fifo-block");
        assert_int_equal(mkfifo(fifo, 0600), 0);
        req_begin(a, 2, "syscall", 2);
        proto_kv_uint(&a->wr, "nr", SYS_openat);
        proto_key(&a->wr, "args");
        msgpack_pack_array(&a->wr.pk, 3);
        msgpack_pack_int(&a->wr.pk, AT_FDCWD);
        msgpack_pack_map(&a->wr.pk, 1);
        proto_kv_bin(&a->wr, "buf", fifo, strlen(fifo) + 1);
        msgpack_pack_int(&a->wr.pk, O_RDWR | O_CLOEXEC);
        req_send(a);
        msgpack_object m = wait_reply(a, 2, NULL);
        assert_ok(&m);
        int64_t gfd = get_i(&m, "ret");
        assert_true(gfd >= 0);
        req_begin(a, 3, "syscall", 2);
        proto_kv_uint(&a->wr, "nr", SYS_read);
        proto_key(&a->wr, "args");
        msgpack_pack_array(&a->wr.pk, 3);
        msgpack_pack_int64(&a->wr.pk, gfd);
        msgpack_pack_map(&a->wr.pk, 1);
        proto_kv_uint(&a->wr, "out", 16);
        msgpack_pack_int(&a->wr.pk, 16);
        req_send(a);
        req_begin(a, 4, "exec", 1);
        proto_kv_str(&a->wr, "cmd", "sleep 5");
        req_send(a);
        usleep(50 * 1000);

        /* b answers at once */
        int64_t t0 = now_ms();
        hello_ok(b, 2);
        m = stat_path(b, 3, "/", true);
        assert_ok(&m);
        assert_true(now_ms() - t0 < 100);
        /* b's exec runs while a is blocked */
        Result res = {0};
        m = run_cmd(b, 4, "echo b", &res);
        assert_ok(&m);
        assert_string_equal(res.out, "b\n");
        result_done(&res);

        /* unblock a */
        int w = open(fifo, O_WRONLY | O_CLOEXEC);
        assert_true(w >= 0);
        assert_int_equal(write(w, "wake", 4), 4);
        assert_int_equal(close(w), 0);
        m = wait_reply(a, 3, NULL);
        assert_ok(&m);
        assert_int_equal(get_i(&m, "ret"), 4);
        req_begin(a, 5, "cancel", 1);
        proto_kv_uint(&a->wr, "target", 4);
        req_send(a);
        m = wait_reply(a, 5, NULL);
        assert_ok(&m);
        m = wait_reply(a, 4, NULL);
        assert_ok(&m);
        assert_int_equal(get_i(&m, "signal"), SIGKILL);

        /* closing b alone leaves a served; the agent exits after both */
        int status = client_finish(b);
        assert_int_equal(status, 0);
        hello_ok(a, 6);
        client_free(a);
}

/* ---- guest control: spawn, proc_*, cancel, reset ---- */

static void spawn_cmd(Client *c, uint64_t id, const char *cmd)
{
        req_begin(c, id, "spawn", 1);
        proto_kv_str(&c->wr, "cmd", cmd);
        req_send(c);
}

/* Reads frames until the started chunk of spawn id; returns the pid. */
static uint64_t wait_started(Client *c, uint64_t id)
{
        msgpack_object m;
        assert_int_equal(next_frame(c, &m), id);
        assert_true(is_chunk(&m, "started"));
        uint64_t pid = get_u(&m, "pid");
        assert_true(pid > 0);
        return pid;
}

static void send_proc(Client *c, uint64_t id, const char *op, uint64_t proc)
{
        req_begin(c, id, op, 1);
        proto_kv_uint(&c->wr, "proc", proc);
        req_send(c);
}

static void test_spawn_cat(void **state)
{
        Client *c = client_new();
        spawn_cmd(c, 1, "cat");
        uint64_t pid = wait_started(c, 1);
        assert_int_equal(kill((pid_t) pid, 0), 0);

        req_begin(c, 2, "proc_write", 2);
        proto_kv_uint(&c->wr, "proc", 1);
        proto_kv_bin(&c->wr, "data", "ping\n", 5);
        req_send(c);
        /* the echo arrives while the process still runs */
        bool replied = false, echoed = false;
        while (!replied || !echoed) {
                msgpack_object m;
                uint64_t id = next_frame(c, &m);
                if (id == 2) {
                        assert_ok(&m);
                        assert_int_equal(get_u(&m, "n"), 5);
                        replied = true;
                } else {
                        assert_int_equal(id, 1);
                        assert_true(is_chunk(&m, "stdout"));
                        const char *p;
                        size_t n;
                        assert_int_equal(proto_get_bytes(&m, "data", &p, &n), 1);
                        assert_int_equal(n, 5);
                        assert_memory_equal(p, "ping\n", 5);
                        echoed = true;
                }
        }

        /* 1 MiB through the pipe: proc_write waits for room without blocking the loop */
        char *big = malloc(MIB);
        assert_non_null(big);
        memset(big, 'z', MIB);
        req_begin(c, 3, "proc_write", 2);
        proto_kv_uint(&c->wr, "proc", 1);
        proto_kv_bin(&c->wr, "data", big, MIB);
        req_send(c);
        free(big);
        hello_ok_any(c, 4);
        send_proc(c, 5, "proc_close_stdin", 1);
        size_t got = 0;
        bool w_ok = false, close_ok = false;
        for (;;) {
                msgpack_object m;
                uint64_t id = next_frame(c, &m);
                if (id == 3) {
                        assert_ok(&m);
                        assert_int_equal(get_u(&m, "n"), MIB);
                        w_ok = true;
                } else if (id == 5) {
                        assert_ok(&m);
                        close_ok = true;
                } else if (id == 4) {
                        assert_ok(&m);
                } else {
                        assert_int_equal(id, 1);
                        if (!proto_get(&m, "chunk")) {
                                assert_ok(&m);
                                assert_int_equal(get_i(&m, "exit_code"), 0);
                                break;
                        }
                        const char *p;
                        size_t n;
                        assert_int_equal(proto_get_bytes(&m, "data", &p, &n), 1);
                        got += n;
                }
        }
        assert_true(w_ok && close_ok);
        assert_int_equal(got, MIB);

        /* the process is gone: ESRCH */
        req_begin(c, 6, "proc_write", 2);
        proto_kv_uint(&c->wr, "proc", 1);
        proto_kv_bin(&c->wr, "data", "x", 1);
        send_expect_error(c, 6, ESRCH, "ESRCH", "proc_write");
        send_proc(c, 7, "proc_close_stdin", 99);
        msgpack_object m = wait_reply(c, 7, NULL);
        assert_error(&m, ESRCH, "ESRCH", NULL);

        /* a missing program is an error reply, as for exec */
        req_begin(c, 8, "spawn", 1);
        proto_key(&c->wr, "argv");
        msgpack_pack_array(&c->wr.pk, 1);
        proto_pack_str(&c->wr, "provium-no-such-command");
        send_expect_error(c, 8, ENOENT, "ENOENT", "exec provium-no-such-command");
        client_free(c);
}

static void test_spawn_signal(void **state)
{
        Client *c = client_new();
        spawn_cmd(c, 1, "echo up; exec sleep 100");
        wait_started(c, 1);
        msgpack_object m;
        assert_int_equal(next_frame(c, &m), 1);
        assert_true(is_chunk(&m, "stdout"));
        req_begin(c, 2, "proc_signal", 2);
        proto_kv_uint(&c->wr, "proc", 1);
        proto_kv_int(&c->wr, "signal", SIGTERM);
        req_send(c);
        m = wait_reply(c, 2, NULL);
        assert_ok(&m);
        m = wait_reply(c, 1, NULL);
        assert_ok(&m);
        assert_true(is_nil(&m, "exit_code"));
        assert_int_equal(get_i(&m, "signal"), SIGTERM);

        req_begin(c, 3, "proc_signal", 2);
        proto_kv_uint(&c->wr, "proc", 1);
        proto_kv_int(&c->wr, "signal", SIGTERM);
        send_expect_error(c, 3, ESRCH, "ESRCH", NULL);

        spawn_cmd(c, 4, "sleep 100");
        wait_started(c, 4);
        req_begin(c, 5, "proc_signal", 2);
        proto_kv_uint(&c->wr, "proc", 4);
        proto_kv_int(&c->wr, "signal", 1000);
        send_expect_error(c, 5, EINVAL, "EINVAL", "signal");
        client_free(c); /* EOF kills the process */
}

static void test_spawn_many(void **state)
{
        enum { N = 64 };
        Client *c = client_new();
        for (uint64_t i = 1; i <= N; i++) {
                char cmd[64];
                (void) snprintf(cmd, sizeof cmd, "sleep 0.3; echo %u", (unsigned) i);
                spawn_cmd(c, i, cmd);
        }
        bool started[N + 1] = {0}, out[N + 1] = {0}, done[N + 1] = {0};
        size_t n_done = 0;
        while (n_done < N) {
                msgpack_object m;
                uint64_t id = next_frame(c, &m);
                assert_true(id >= 1 && id <= N);
                if (is_chunk(&m, "started")) {
                        assert_false(started[id] || done[id]);
                        started[id] = true;
                } else if (is_chunk(&m, "stdout")) {
                        char *data = NULL;
                        assert_int_equal(proto_dup_str(&m, "data", &data), 1);
                        assert_int_equal(strtoul(data, NULL, 10), id);
                        free(data);
                        out[id] = true;
                } else {
                        assert_ok(&m);
                        assert_true(started[id] && out[id] && !done[id]);
                        assert_int_equal(get_i(&m, "exit_code"), 0);
                        done[id] = true;
                        n_done++;
                }
        }
        client_free(c);
}

static void test_cancel(void **state)
{
        Client *c = client_new();
        spawn_cmd(c, 1, "sleep 100");
        wait_started(c, 1);
        req_begin(c, 2, "cancel", 1);
        proto_kv_uint(&c->wr, "target", 1);
        req_send(c);
        msgpack_object m = wait_reply(c, 2, NULL);
        assert_ok(&m);
        m = wait_reply(c, 1, NULL);
        assert_ok(&m);
        assert_int_equal(get_i(&m, "signal"), SIGKILL);

        req_begin(c, 3, "exec", 1);
        proto_kv_str(&c->wr, "cmd", "sleep 100");
        req_send(c);
        req_begin(c, 4, "cancel", 1);
        proto_kv_uint(&c->wr, "target", 3);
        req_send(c);
        m = wait_reply(c, 4, NULL);
        assert_ok(&m);
        m = wait_reply(c, 3, NULL);
        assert_ok(&m);
        assert_int_equal(get_i(&m, "signal"), SIGKILL);
        assert_true(get_u(&m, "duration_ns") < 5000000000ull);

        req_begin(c, 5, "cancel", 1);
        proto_kv_uint(&c->wr, "target", 3);
        send_expect_error(c, 5, ESRCH, "ESRCH", "cancel 3");
        req_begin(c, 6, "cancel", 0);
        send_expect_error(c, 6, EINVAL, "EINVAL", "target");
        client_free(c);
}

static void test_reset(void **state)
{
        Client *c = client_new();
        _cleanup_free_ char *path = tmp_path("reset-file");
        write_local(path, "x", 1);
        spawn_cmd(c, 1, "sleep 100");
        wait_started(c, 1);
        uint64_t fd = open_handle(c, 2, path, "r");
        req_begin(c, 3, "tail", 1);
        proto_kv_str(&c->wr, "path", path);
        req_send(c);
        req_begin(c, 4, "reset", 0);
        req_send(c);
        msgpack_object m = wait_reply(c, 4, NULL);
        assert_ok(&m);
        bool tail_done = false, proc_done = false;
        while (!tail_done || !proc_done) {
                uint64_t id = next_frame(c, &m);
                if (id == 3) {
                        assert_error(&m, ECANCELED, "ECANCELED", "tail");
                        tail_done = true;
                } else {
                        assert_int_equal(id, 1);
                        assert_ok(&m);
                        assert_int_equal(get_i(&m, "signal"), SIGKILL);
                        proc_done = true;
                }
        }
        req_begin(c, 5, "fread", 2);
        proto_kv_uint(&c->wr, "fd", fd);
        proto_kv_uint(&c->wr, "n", 1);
        send_expect_error(c, 5, EBADF, "EBADF", NULL);
        client_free(c);
}

/* ---- errors ---- */

static void test_unknown_op(void **state)
{
        Client *c = client_new();
        req_begin(c, 7, "frobnicate", 0);
        send_expect_error(c, 7, ENOSYS, "ENOSYS", "frobnicate");
        hello_ok(c, 8);
        client_free(c);
}

static void test_bad_fields(void **state)
{
        Client *c = client_new();
        req_begin(c, 1, "exec", 1);
        proto_kv_uint(&c->wr, "argv", 5);
        send_expect_error(c, 1, EINVAL, "EINVAL", "argv");

        req_begin(c, 2, "exec", 0);
        send_expect_error(c, 2, EINVAL, "EINVAL", "argv");

        req_begin(c, 3, "exec", 2);
        proto_kv_str(&c->wr, "cmd", "true");
        proto_kv_str(&c->wr, "timeout_ms", "soon");
        send_expect_error(c, 3, EINVAL, "EINVAL", "timeout_ms");

        req_begin(c, 4, "exec", 2);
        proto_kv_str(&c->wr, "cmd", "true");
        proto_key(&c->wr, "env");
        msgpack_pack_map(&c->wr.pk, 1);
        proto_pack_str(&c->wr, "A");
        msgpack_pack_int(&c->wr.pk, 1);
        send_expect_error(c, 4, EINVAL, "EINVAL", "env");

        req_begin(c, 5, "read_file", 1);
        proto_kv_uint(&c->wr, "path", 7);
        send_expect_error(c, 5, EINVAL, "EINVAL", "path");

        req_begin(c, 6, "stat", 2);
        proto_kv_str(&c->wr, "path", "/");
        proto_kv_str(&c->wr, "follow", "yes");
        send_expect_error(c, 6, EINVAL, "EINVAL", "follow");

        req_begin(c, 7, "mkdir", 2);
        proto_kv_str(&c->wr, "path", "/tmp/x");
        proto_kv_int(&c->wr, "mode", -1);
        send_expect_error(c, 7, EINVAL, "EINVAL", "mode");

        req_begin(c, 8, "write_file", 2);
        proto_kv_str(&c->wr, "path", "/tmp/x");
        proto_kv_uint(&c->wr, "data", 1);
        send_expect_error(c, 8, EINVAL, "EINVAL", "data");

        proto_begin(&c->wr, 2); /* op not a string */
        proto_kv_uint(&c->wr, "id", 9);
        proto_kv_uint(&c->wr, "op", 1);
        send_expect_error(c, 9, EINVAL, "EINVAL", "op");

        proto_begin(&c->wr, 1); /* no id: answered as id 0 */
        proto_kv_str(&c->wr, "op", "hello");
        send_expect_error(c, 0, EINVAL, "EINVAL", "id");

        req_begin(c, 10, "read_file", 1); /* embedded NUL */
        proto_kv_strn(&c->wr, "path", "/etc\0x", 6);
        send_expect_error(c, 10, EINVAL, "EINVAL", "path");

        hello_ok(c, 11);
        client_free(c);
}

/* ---- bad frames ---- */

/* Sends raw bytes (then half-closes when shut) and expects the agent to hang up cleanly. */
static void expect_hangup(const void *bytes, size_t n, bool shut)
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

static void test_bad_frames(void **state)
{
        static const uint8_t oversized[] = {0xff, 0xff, 0xff, 0xff, 0x81, 0xa2, 'i', 'd', 1};
        expect_hangup(oversized, sizeof oversized, false);
        static const uint8_t just_over[] = {0x01, 0x00, 0x40, 0x00}; /* 4 MiB + 1 */
        expect_hangup(just_over, sizeof just_over, false);
        static const uint8_t not_map[] = {0x01, 0, 0, 0, 0x05};
        expect_hangup(not_map, sizeof not_map, false);
        static const uint8_t int_key[] = {0x03, 0, 0, 0, 0x81, 0x01, 0x02};
        expect_hangup(int_key, sizeof int_key, false);
        static const uint8_t two_objects[] = {0x02, 0, 0, 0, 0x80, 0x80};
        expect_hangup(two_objects, sizeof two_objects, false);
        static const uint8_t huge_map[] = {0x05, 0, 0, 0, 0xdf, 0xff, 0xff, 0xff, 0xff};
        expect_hangup(huge_map, sizeof huge_map, false);
        static const uint8_t huge_array[] = {0x0b, 0,    0,    0,    0x81, 0xa1, 'a', 0xdd,
                                             0xff, 0xff, 0xff, 0xff, 0x01, 0x02, 0x03};
        expect_hangup(huge_array, sizeof huge_array, false);
        static const uint8_t empty[] = {0, 0, 0, 0};
        expect_hangup(empty, sizeof empty, false);
        static const uint8_t truncated_map[] = {0x04, 0, 0, 0, 0x83, 0xa2, 'i', 'd'};
        expect_hangup(truncated_map, sizeof truncated_map, false);
        static const uint8_t truncated[] = {0x40, 0, 0, 0, 0x85, 0xa2, 'i', 'd', 0x01, 0xa2};
        expect_hangup(truncated, sizeof truncated, true);
        uint8_t garbage[4096];
        srand(42);
        for (size_t i = 0; i < sizeof garbage; i++)
                garbage[i] = (uint8_t) rand();
        garbage[3] = 0; /* keep the length plausible so the body is parsed */
        expect_hangup(garbage, sizeof garbage, true);
}

static void test_poweroff_exits(void **state)
{
        Client *c = client_new();
        req_begin(c, 1, "poweroff", 0);
        req_send(c);
        msgpack_object m = wait_reply(c, 1, NULL);
        assert_ok(&m);
        assert_int_equal(read_frame(c, &m), 0);
        client_free(c);
}

/* Writes one struct input_event to fd (a FIFO standing in for /dev/input/eventN). */
static void send_input_event(int fd, uint16_t type, uint16_t code, int32_t value)
{
        struct input_event ev = {.type = type, .code = code, .value = value};
        assert_int_equal(write(fd, &ev, sizeof ev), (ssize_t) sizeof ev);
}

/* --power-button outside PID 1: other keys, SYN and KEY_POWER released are ignored; KEY_POWER
 * pressed makes the agent exit 0, as poweroff does. */
static void test_power_button(void **state)
{
        _cleanup_free_ char *path = tmp_path("power-button");
        assert_int_equal(mkfifo(path, 0600), 0);
        int fd = open(path, O_RDWR | O_CLOEXEC); /* a writer, so the agent's open never waits */
        assert_true(fd >= 0);
        const char *extra[] = {"--power-button", path, NULL};
        Client *c;
        client_start(1, extra, &c);
        hello_ok(c, 1);
        send_input_event(fd, EV_KEY, KEY_POWER, 0);
        send_input_event(fd, EV_KEY, KEY_SLEEP, 1);
        send_input_event(fd, EV_SYN, SYN_REPORT, 0);
        struct timespec ts = {.tv_nsec = 200 * 1000 * 1000};
        assert_int_equal(nanosleep(&ts, NULL), 0);
        hello_ok(c, 2); /* still serving */
        send_input_event(fd, EV_KEY, KEY_POWER, 1);
        send_input_event(fd, EV_SYN, SYN_REPORT, 0);
        msgpack_object m;
        assert_int_equal(read_frame(c, &m), 0); /* the agent left: EOF */
        assert_int_equal(close(fd), 0);
        assert_int_equal(unlink(path), 0);
        client_free(c);
}

/* ---- main ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        return remove(path);
}

static int group_setup(void **state)
{
        return mkdtemp(tmp_root) ? 0 : -1;
}

static int group_teardown(void **state)
{
        return nftw(tmp_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_hello),
            cmocka_unit_test(test_exec_argv),
            cmocka_unit_test(test_exec_env_cwd_stdin),
            cmocka_unit_test(test_exec_signal_timeout),
            cmocka_unit_test(test_exec_not_found),
            cmocka_unit_test(test_exec_big_output),
            cmocka_unit_test(test_exec_concurrent),
            cmocka_unit_test(test_read_file),
            cmocka_unit_test(test_read_file_cancel),
            cmocka_unit_test(test_write_file_fifo),
            cmocka_unit_test(test_write_file),
            cmocka_unit_test(test_stat),
            cmocka_unit_test(test_mkdir),
            cmocka_unit_test(test_unknown_op),
            cmocka_unit_test(test_bad_fields),
            cmocka_unit_test(test_bad_frames),
            cmocka_unit_test(test_poweroff_exits),
            cmocka_unit_test(test_power_button),
            cmocka_unit_test(test_spawn_cat),
            cmocka_unit_test(test_spawn_signal),
            cmocka_unit_test(test_spawn_many),
            cmocka_unit_test(test_cancel),
            cmocka_unit_test(test_reset),
            cmocka_unit_test(test_handles),
            cmocka_unit_test(test_fread_fifo_cancel),
            cmocka_unit_test(test_tail),
            cmocka_unit_test(test_tail_missing),
            cmocka_unit_test(test_syscall),
            cmocka_unit_test(test_syscall_cancel),
            cmocka_unit_test(test_ioctl),
            cmocka_unit_test(test_two_connections),
        };
        (void) signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
