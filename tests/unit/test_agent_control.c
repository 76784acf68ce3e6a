/* test_agent_control.c: the real provium-agent over a socketpair: guest control: file handles,
 * tail, syscall, ioctl, several connections. */
#include "agent_harness.h"

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
        assert_local_file(app, "abcd", 4);
        client_free(c);
}

static void test_fread_fifo_cancel(void **state)
{
        Client *c = client_new();
        _cleanup_free_ char *fifo = tmp_fifo("fifo-cancel");
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
        assert_local_file(path, "written", 7);

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
        _cleanup_free_ char *fifo = tmp_fifo("fifo-ioctl");
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

static void test_two_connections(void **state)
{
        Client *cs[2];
        client_new_n(2, cs);
        Client *a = cs[0], *b = cs[1];
        hello_ok(a, 1);
        hello_ok(b, 1); /* ids are per connection */

        /* a's thread blocks inside read(2) on a FIFO without data */
        _cleanup_free_ char *fifo = tmp_fifo("fifo-block");
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

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_handles), cmocka_unit_test(test_fread_fifo_cancel),
            cmocka_unit_test(test_tail),    cmocka_unit_test(test_tail_missing),
            cmocka_unit_test(test_syscall), cmocka_unit_test(test_syscall_cancel),
            cmocka_unit_test(test_ioctl),   cmocka_unit_test(test_two_connections),
        };
        (void) signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
