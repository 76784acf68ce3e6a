/* test_agent_proc.c: the real provium-agent over a socketpair: processes (spawn, proc_*), cancel,
 * reset, errors, bad frames, power. */
#include "agent_harness.h"

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

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_unknown_op),   cmocka_unit_test(test_bad_fields),
            cmocka_unit_test(test_bad_frames),   cmocka_unit_test(test_poweroff_exits),
            cmocka_unit_test(test_power_button), cmocka_unit_test(test_spawn_cat),
            cmocka_unit_test(test_spawn_signal), cmocka_unit_test(test_spawn_many),
            cmocka_unit_test(test_cancel),       cmocka_unit_test(test_reset),
        };
        (void) signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
