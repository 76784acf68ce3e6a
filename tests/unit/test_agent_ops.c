/* test_agent_ops.c: the real provium-agent over a socketpair: hello, exec, and the file operations
 * (read_file, write_file, stat, mkdir). */
#include "agent_harness.h"

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

/* read_file must never wedge its connection: a FIFO without a writer waits until cancel, an
 * endless file streams until cancel; the connection answers at once afterwards. */
static void test_read_file_cancel(void **state)
{
        Client *c = client_new();
        _cleanup_free_ char *fifo = tmp_fifo("read-fifo");
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
        _cleanup_free_ char *fifo = tmp_fifo("write-fifo");
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
        assert_local_file(small, "hello", 5);

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
        assert_local_file(big, data, total);
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
        };
        (void) signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
