/* shell_cmd.c: provium shell [RUN] VM: an interactive shell in a kept run's VM, on a
 * pseudo-terminal in the guest (keeper.c serves it). The terminal is raw while it runs, so
 * Ctrl-C, Ctrl-Z and the rest reach the guest's foreground job; a resize follows the window.
 *
 * provium shell --image NAME boots a fresh VM of an image for poking around (shell_image.c)
 * and stops it when the shell ends.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "fdio.h"
#include "kept.h"
#include "kept_cmd.h"

static struct termios saved_tty;
static bool tty_raw;
static volatile sig_atomic_t winch_seen;

static void on_winch(int signo)
{
        (void) signo;
        winch_seen = 1;
}

static void tty_restore(void)
{
        if (tty_raw)
                (void) tcsetattr(STDIN_FILENO, TCSADRAIN, &saved_tty);
        tty_raw = false;
}

static void tty_make_raw(void)
{
        if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_tty) < 0)
                return;
        struct termios raw = saved_tty;
        cfmakeraw(&raw);
        if (tcsetattr(STDIN_FILENO, TCSADRAIN, &raw) == 0)
                tty_raw = true;
}

static void window_size(uint64_t *rows, uint64_t *cols)
{
        struct winsize ws;
        *rows = 24;
        *cols = 80;
        if (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col)
                *rows = ws.ws_row, *cols = ws.ws_col;
}

static int send_shell(int fd, const char *vm)
{
        uint64_t rows, cols;
        window_size(&rows, &cols);
        const char *term = getenv("TERM");
        ProtoWriter w;
        proto_writer_init(&w);
        proto_begin(&w, 5);
        proto_kv_str(&w, "op", "shell");
        proto_kv_str(&w, "vm", vm);
        proto_kv_uint(&w, "rows", rows);
        proto_kv_uint(&w, "cols", cols);
        proto_kv_str(&w, "term", term && strlen(term) < 64 ? term : "xterm");
        int r = kept_send(fd, &w);
        proto_writer_done(&w);
        return r;
}

static int send_resize(int fd)
{
        uint64_t rows, cols;
        window_size(&rows, &cols);
        ProtoWriter w;
        proto_writer_init(&w);
        proto_begin(&w, 3);
        proto_kv_str(&w, "op", "resize");
        proto_kv_uint(&w, "rows", rows);
        proto_kv_uint(&w, "cols", cols);
        int r = kept_send(fd, &w);
        proto_writer_done(&w);
        return r;
}

static int send_stdin(int fd, const void *p, size_t n)
{
        ProtoWriter w;
        proto_writer_init(&w);
        proto_begin(&w, 2);
        proto_kv_str(&w, "op", "stdin");
        proto_kv_bin(&w, "data", p, n);
        int r = kept_send(fd, &w);
        proto_writer_done(&w);
        return r;
}

/* Handles one frame from the keeper. Returns -1 to go on, else the exit status. */
static int on_frame(const msgpack_object *m, const char *vm)
{
        char type[16], msg[512];
        proto_copy_str(m, "type", type, sizeof type);
        if (strcmp(type, "out") == 0) {
                const char *data;
                size_t len;
                if (proto_get_bytes(m, "data", &data, &len) == 1 &&
                    fd_write_all(STDOUT_FILENO, data, len) < 0)
                        return 1;
                return -1;
        }
        if (strcmp(type, "exit") == 0) {
                int64_t code = 0, sig = 0;
                if (proto_get_int(m, "code", &code) == 1)
                        return (int) (code & 0xff);
                (void) proto_get_int(m, "signal", &sig);
                tty_restore();
                fprintf(stderr, "provium shell: the shell in %s was killed by signal %d\n", vm,
                        (int) sig);
                return 128 + (int) (sig & 0x7f);
        }
        if (strcmp(type, "error") == 0) {
                proto_copy_str(m, "message", msg, sizeof msg);
                tty_restore();
                fprintf(stderr, "provium shell: %s\n", msg);
                return 1;
        }
        return -1;
}

/* Relays the terminal and the keeper's frames until the shell ends. Returns the exit status. */
static int relay(int fd, const char *vm)
{
        ProtoReader rd;
        if (proto_reader_init(&rd) < 0)
                return 1;
        bool in_open = true;
        int status = -1;
        while (status < 0) {
                if (winch_seen) {
                        winch_seen = 0;
                        (void) send_resize(fd);
                }
                struct pollfd p[2] = {{.fd = fd, .events = POLLIN},
                                      {.fd = in_open ? STDIN_FILENO : -1, .events = POLLIN}};
                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        status = 1;
                        break;
                }
                if (p[1].revents) {
                        char buf[4096];
                        ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
                        if (n > 0 && send_stdin(fd, buf, (size_t) n) < 0)
                                status = 1;
                        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
                                in_open = false; /* input ended: the shell sees end of file */
                                (void) send_stdin(fd, "\004", 1);
                        }
                }
                if (!p[0].revents)
                        continue;
                uint8_t *space = proto_reader_space(&rd, 65536);
                ssize_t n = space ? read(fd, space, 65536) : -1;
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        tty_restore();
                        fprintf(stderr, "provium shell: the kept run closed the connection\n");
                        status = 1;
                        break;
                }
                proto_reader_commit(&rd, (size_t) n);
                msgpack_object m;
                int got = 0;
                while (status < 0 && (got = proto_reader_next(&rd, &m)) > 0)
                        status = on_frame(&m, vm);
        }
        proto_reader_done(&rd);
        return status;
}

int shell_attach(const KeptRun *k, const char *vm)
{
        if (!kept_has_vm(k, vm)) {
                fprintf(stderr, "provium shell: no VM '%s' in kept run %s (its VMs: %s)\n", vm,
                        k->id, k->vms);
                return 2;
        }
        int fd = kept_connect(k);
        if (fd < 0) {
                fprintf(stderr, "provium shell: kept run %s: cannot connect: %s\n", k->id,
                        strerror(-fd));
                return 1;
        }
        struct sigaction sa = {.sa_handler = on_winch};
        sigemptyset(&sa.sa_mask);
        (void) sigaction(SIGWINCH, &sa, NULL);
        int status = 1;
        if (send_shell(fd, vm) == 0) {
                tty_make_raw();
                status = relay(fd, vm);
                tty_restore();
        }
        (void) close(fd);
        return status;
}

static void shell_usage(FILE *f)
{
        fprintf(f, "usage: provium shell [RUN] VM          a shell in a VM of a kept run\n"
                   "       provium shell --image NAME [--accel auto|kvm|tcg]\n"
                   "                                       a fresh VM of an image, stopped "
                   "when the shell ends\n");
}

int shell_cmd_main(int argc, char **argv)
{
        if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
                shell_usage(stdout);
                return 0;
        }
        if (argc >= 2 && strcmp(argv[1], "--image") == 0)
                return shell_image_main(argc - 1, argv + 1);
        if (argc < 2 || argc > 3 || argv[1][0] == '-') {
                shell_usage(stderr);
                return 2;
        }
        KeptRun k;
        char err[512];
        if (kept_find(argc == 3 ? argv[1] : NULL, &k, err, sizeof err) < 0) {
                fprintf(stderr, "provium shell: %s\n", err);
                return 2;
        }
        return shell_attach(&k, argv[argc - 1]);
}
