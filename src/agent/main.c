/* main.c: provium-agent entry point: options, PID-1 setup, the connection threads and the
 * orphan reaper.
 *
 * Every connection (virtio port provium.0..N, each --fd, or --connect) is served by its own
 * thread. The main thread blocks SIGCHLD (before any thread exists, so every thread inherits
 * the mask), reaps orphans that no connection owns, looks for worker ports that appear late,
 * and exits when every --fd connection is done or a connection asks to quit.
 *
 * Sections: options, transports, connection threads, main loop.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

#define PORTS_DIR     "/sys/class/virtio-ports"
#define PORT_WAIT_MS  30000
#define PORT_FAST_MS  5    /* look for the port this often while the guest boots, */
#define PORT_FAST_FOR 2000 /* for this long after the agent starts, */
#define PORT_SLOW_MS  50   /* and this often afterwards */
#define RECONNECT_MS  100
#define HOST_WAIT_MS  5000 /* a port thread looks again at least this often (wait_for_host) */
#define PORT_PREFIX   "provium."
#define MAX_CONNS     64  /* connection threads */
#define SCAN_MS       500 /* period of the worker port scan */
#define REAP_AGAIN_MS 100 /* look again for orphans behind an owned zombie */

typedef struct Options {
        int fds[MAX_CONNS]; /* each --fd */
        size_t n_fds;
        int listens[MAX_CONNS]; /* each --listen: a listening socket, served one client at a time */
        size_t n_listens;
        bool local;               /* --local: PID 1 of a local VM (init_local) */
        int fd;                   /* first --fd, -1 when absent */
        const char *path;         /* --connect */
        const char *port;         /* --port or the default */
        const char *power_button; /* --power-button: the evdev device to watch */
} Options;

static void sleep_ms(int ms)
{
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static void usage(FILE *f)
{
        (void) fprintf(
            f, "usage: provium-agent [--fd N [--fd M...] | --connect PATH | --port NAME |\n"
               "                      --listen N [--listen M...]] [--local]\n"
               "                     [--power-button DEV]\n"
               "Serves the provium agent protocol (docs/protocol.md). Without options\n"
               "it serves the virtio-serial port named " AGENT_DEFAULT_PORT " and every\n"
               "other port named " PORT_PREFIX "*, each in its own thread.\n"
               "As PID 1 it powers off when the ACPI power button is pressed; with\n"
               "--power-button it watches the evdev device DEV instead (outside PID 1\n"
               "a KEY_POWER press makes it exit, as poweroff does).\n"
               "--listen N serves the clients of the listening socket N, one after the\n"
               "other; --local is PID 1 of a local VM, whose namespaces, root and mounts\n"
               "are made (src/host/vmm/vm_local.c): no module is loaded, nothing mounted.\n");
}

/* Returns 0, 1 after --help, or -EINVAL. */
static int parse_args(int argc, char **argv, Options *ret)
{
        static const struct option longopts[] = {
            {"fd", required_argument, NULL, 'f'},
            {"connect", required_argument, NULL, 'c'},
            {"port", required_argument, NULL, 'p'},
            {"power-button", required_argument, NULL, 'b'},
            {"listen", required_argument, NULL, 'l'},
            {"local", no_argument, NULL, 'L'},
            {"help", no_argument, NULL, 'h'},
            {0},
        };
        Options o = {.fd = -1, .port = AGENT_DEFAULT_PORT};
        int c;
        char *end;
        while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
                switch (c) {
                case 'f':
                        errno = 0;
                        long v = strtol(optarg, &end, 10);
                        if (errno || *end || end == optarg || v < 0 || v > INT32_MAX)
                                return -EINVAL;
                        if (o.n_fds == MAX_CONNS)
                                return -EINVAL;
                        o.fds[o.n_fds++] = (int) v;
                        o.fd = o.fds[0];
                        break;
                case 'l':
                        errno = 0;
                        long l = strtol(optarg, &end, 10);
                        if (errno || *end || end == optarg || l < 0 || l > INT32_MAX ||
                            o.n_listens == MAX_CONNS)
                                return -EINVAL;
                        o.listens[o.n_listens++] = (int) l;
                        break;
                case 'L':
                        o.local = true;
                        break;
                case 'c':
                        o.path = optarg;
                        break;
                case 'p':
                        o.port = optarg;
                        break;
                case 'b':
                        o.power_button = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return 1;
                default:
                        return -EINVAL;
                }
        }
        if (optind != argc || (o.n_fds > 0) + (o.path != NULL) + (o.n_listens > 0) > 1)
                return -EINVAL;
        *ret = o;
        return 0;
}

/* ---- transports ---- */

/* Reads the name of virtio port `entry` (vportNpM) from sysfs into buf. Returns 0 or -errno
 * (a port whose name is not there yet: -ENOENT or -ENODATA). */
static int port_name(const char *entry, char *buf, size_t size)
{
        char p[512];
        (void) snprintf(p, sizeof p, PORTS_DIR "/%s/name", entry);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        ssize_t n = read(fd, buf, size - 1);
        int r = n < 0 ? -errno : 0;
        (void) close(fd);
        if (n <= 0)
                return r < 0 ? r : -ENODATA;
        buf[n] = 0;
        buf[strcspn(buf, "\n")] = 0;
        return 0;
}

/* Looks up the /dev node of the virtio port called name. Returns 0 or -ENOENT. */
static int port_find(const char *name, char *ret_dev, size_t size)
{
        DIR *d = opendir(PORTS_DIR);
        if (!d)
                return -errno;
        int r = -ENOENT;
        struct dirent *e;
        while (r < 0 && (e = readdir(d))) {
                if (e->d_name[0] == '.')
                        continue;
                char buf[256];
                if (port_name(e->d_name, buf, sizeof buf) < 0)
                        continue;
                if (strcmp(buf, name) == 0) {
                        (void) snprintf(ret_dev, size, "/dev/%s", e->d_name);
                        r = 0;
                }
        }
        (void) closedir(d);
        return r;
}

static int64_t agent_start_ns; /* when main() began */

/* Opens the virtio port, waiting up to PORT_WAIT_MS for it to appear. The port's name shows in
 * sysfs only after virtio_console and the host have talked (a while after its /dev node), so
 * look often (PORT_FAST_MS) while the guest is booting, then PORT_SLOW_MS. Returns fd or
 * -errno. */
static int port_open(const char *name)
{
        int r = -ENOENT;
        int64_t until = agent_now_ns() + (int64_t) PORT_WAIT_MS * 1000000LL;
        for (;;) {
                char dev[512];
                r = port_find(name, dev, sizeof dev);
                if (r >= 0) {
                        int fd = open(dev, O_RDWR | O_CLOEXEC | O_NOCTTY);
                        if (fd >= 0)
                                return fd;
                        r = -errno;
                }
                int64_t now = agent_now_ns();
                if (now >= until)
                        return r;
                bool fast = now - agent_start_ns < (int64_t) PORT_FAST_FOR * 1000000LL;
                sleep_ms(fast ? PORT_FAST_MS : PORT_SLOW_MS);
        }
}

static int unix_connect(const char *path)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(path) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                return -errno;
        return TAKE_FD(fd);
}

/* Prepares an inherited fd: close-on-exec and blocking. Returns 0 or -errno. */
static int fd_adopt(int fd)
{
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0 ||
            fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
                return -errno;
        return 0;
}

/* ---- connection threads ---- */

typedef enum { CONN_FD, CONN_PORT, CONN_LISTEN } ConnKind;

typedef struct Conn {
        pthread_t thread;
        ConnKind kind;
        int fd;         /* CONN_FD: the stream; CONN_LISTEN: the listening socket; CONN_PORT:
                           opened by the thread */
        char name[128]; /* port name, or "fd" */
        int code;       /* exit code of the thread */
        bool started;
} Conn;

static Conn conns[MAX_CONNS];
static size_t n_conns;
static bool agent_pid1, agent_debug;
static atomic_int live_conns;  /* threads still serving */
static atomic_bool agent_quit; /* a connection asked to exit (poweroff outside PID 1) */
static int wake_fd = -1;       /* eventfd: a thread ended or asked to quit */

static void wake_main(void)
{
        uint64_t one = 1;
        (void) !write(wake_fd, &one, sizeof one);
}

void agent_request_quit(void)
{
        atomic_store(&agent_quit, true);
        wake_main();
}

/* Serves a stream connection once. Returns the exit code (0 on EOF or quit). */
static int serve_stream(Server *s, int fd)
{
        int r = server_serve(s, fd);
        if (r == 1)
                atomic_store(&agent_quit, true);
        if (r < 0) {
                agent_log("connection closed: %s", strerror(-r));
                return 1;
        }
        return 0;
}

/* A port whose host side is not connected reads as at its end, and polls as hung up, at once:
 * nothing blocks until the host connects. But virtio_console signals the port's owner
 * (O_ASYNC) when the host opens or closes it, so a thread waits for SIGIO (blocked in every
 * thread, agent_run) instead of polling the port every RECONNECT_MS: an idle VM's four worker
 * ports woke it 40 times a second. Returns whether the port now signals this thread. */
static bool watch_host(int fd)
{
        struct f_owner_ex owner = {.type = F_OWNER_TID, .pid = (pid_t) syscall(SYS_gettid)};
        int flags = fcntl(fd, F_GETFL);
        return flags >= 0 && fcntl(fd, F_SETOWN_EX, &owner) == 0 &&
               fcntl(fd, F_SETSIG, SIGIO) == 0 && fcntl(fd, F_SETFL, flags | O_ASYNC) == 0;
}

/* Waits until the host connects to a watched port, or HOST_WAIT_MS at most (a signal that came
 * while the port was served only means one more look). */
static void wait_for_host(bool watched)
{
        if (!watched)
                return sleep_ms(RECONNECT_MS);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGIO);
        struct timespec ts = {.tv_sec = HOST_WAIT_MS / 1000,
                              .tv_nsec = (long) (HOST_WAIT_MS % 1000) * 1000000L};
        (void) sigtimedwait(&set, NULL, &ts);
}

/* Serves a virtio port until told to quit: the host may disconnect and reconnect. Returns the
 * exit code when told to quit or when the port cannot be opened. */
static int serve_port(Server *s, const char *name)
{
        int fd = port_open(name);
        if (fd < 0) {
                agent_log("virtio port %s: %s", name, strerror(-fd));
                return 1;
        }
        bool watched = watch_host(fd);
        if (agent_debug)
                agent_log("ready on %s at %lld ms (agent started at %lld ms, console modules "
                          "loaded at %lld ms)",
                          name, (long long) (agent_now_ns() / 1000000),
                          (long long) (agent_start_ns / 1000000),
                          (long long) (init_modules_ns / 1000000));
        else
                agent_log("ready on %s", name);
        for (;;) {
                int r = server_serve(s, fd);
                if (r == 1) {
                        (void) close(fd);
                        atomic_store(&agent_quit, true);
                        return 0;
                }
                if (r < 0) {
                        agent_log("%s: connection closed: %s", name, strerror(-r));
                        (void) close(fd);
                        sleep_ms(RECONNECT_MS);
                        if ((fd = port_open(name)) < 0) {
                                agent_log("virtio port %s: %s", name, strerror(-fd));
                                return 1;
                        }
                        watched = watch_host(fd);
                        continue;
                }
                wait_for_host(watched);
        }
}

/* Serves the clients of a listening socket one after the other, as a port is served: the host
 * may disconnect and connect again. Returns the exit code when told to quit. */
static int serve_listen(Server *s, int lfd)
{
        for (;;) {
                int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        agent_log("accept: %s", strerror(errno));
                        return 1;
                }
                int r = server_serve(s, fd);
                (void) close(fd);
                if (r == 1) {
                        atomic_store(&agent_quit, true);
                        return 0;
                }
                if (r < 0)
                        agent_log("connection closed: %s", strerror(-r));
        }
}

static void *conn_main(void *arg)
{
        Conn *c = arg;
        Server s;
        if (agent_pid1 && !init_is_local())
                child_raise_priority();
        int r = server_init(&s, c->name, agent_pid1, agent_debug);
        if (r < 0) {
                agent_log("%s: init: %s", c->name, strerror(-r));
                c->code = 1;
        } else if (c->kind == CONN_PORT)
                c->code = serve_port(&s, c->name);
        else if (c->kind == CONN_LISTEN)
                c->code = serve_listen(&s, c->fd);
        else
                c->code = serve_stream(&s, c->fd);
        server_done(&s);
        if (c->kind != CONN_PORT)
                closep(&c->fd);
        atomic_fetch_sub(&live_conns, 1);
        wake_main();
        return NULL;
}

/* Starts a thread for a connection. Returns 0 or -errno. */
static int conn_start(ConnKind kind, int fd, const char *name)
{
        if (n_conns == MAX_CONNS)
                return -EMFILE;
        Conn *c = &conns[n_conns];
        *c = (Conn){.kind = kind, .fd = fd};
        (void) snprintf(c->name, sizeof c->name, "%s", name);
        pthread_attr_t attr;
        int r = pthread_attr_init(&attr);
        if (r == 0)
                r = pthread_attr_setstacksize(&attr, 1u << 20);
        atomic_fetch_add(&live_conns, 1);
        if (r == 0)
                r = pthread_create(&c->thread, &attr, conn_main, c);
        (void) pthread_attr_destroy(&attr);
        if (r != 0) {
                atomic_fetch_sub(&live_conns, 1);
                return -r;
        }
        c->started = true;
        n_conns++;
        return 0;
}

static bool port_served(const char *name)
{
        for (size_t i = 0; i < n_conns; i++)
                if (conns[i].kind == CONN_PORT && strcmp(conns[i].name, name) == 0)
                        return true;
        return false;
}

/* Starts a thread for every port named provium.* not served yet. Returns whether the scan is
 * over: the `expected` ports the host said it gave (init_ports_expected; 0: unknown) are served. */
static bool ports_scan(int expected)
{
        DIR *d = opendir(PORTS_DIR);
        if (!d)
                return false;
        struct dirent *e;
        while ((e = readdir(d))) {
                if (e->d_name[0] == '.')
                        continue;
                char buf[128];
                if (port_name(e->d_name, buf, sizeof buf) < 0)
                        continue;
                if (strncmp(buf, PORT_PREFIX, strlen(PORT_PREFIX)) != 0 || port_served(buf))
                        continue;
                int r = conn_start(CONN_PORT, -1, buf);
                if (r < 0)
                        agent_log("thread for %s: %s", buf, strerror(-r));
        }
        (void) closedir(d);
        size_t served = 0;
        for (size_t i = 0; i < n_conns; i++)
                served += conns[i].kind == CONN_PORT;
        return expected > 0 && served >= (size_t) expected;
}

/* ---- main loop ---- */

/* Starts the connection threads. Returns 0 or the exit code. */
static int agent_start(const Options *o)
{
        for (size_t i = 0; i < o->n_fds; i++) {
                int r = fd_adopt(o->fds[i]);
                if (r < 0) {
                        agent_log("--fd %d: %s", o->fds[i], strerror(-r));
                        return 1;
                }
        }
        for (size_t i = 0; i < o->n_fds; i++) {
                int r = conn_start(CONN_FD, o->fds[i], "fd");
                if (r < 0) {
                        agent_log("thread: %s", strerror(-r));
                        return 1;
                }
        }
        if (o->n_fds > 0) {
                agent_log("ready");
                return 0;
        }
        for (size_t i = 0; i < o->n_listens; i++) {
                int r = fd_adopt(o->listens[i]);
                if (r == 0)
                        r = conn_start(CONN_LISTEN, o->listens[i], "listen");
                if (r < 0) {
                        agent_log("--listen %d: %s", o->listens[i], strerror(-r));
                        return 1;
                }
        }
        if (o->n_listens > 0) {
                agent_log("ready");
                return 0;
        }
        if (o->path) {
                int fd = unix_connect(o->path);
                if (fd < 0) {
                        agent_log("connect %s: %s", o->path, strerror(-fd));
                        return 1;
                }
                int r = conn_start(CONN_FD, fd, "fd");
                if (r < 0) {
                        (void) close(fd);
                        agent_log("thread: %s", strerror(-r));
                        return 1;
                }
                agent_log("ready");
                return 0;
        }
        int r = conn_start(CONN_PORT, -1, o->port);
        if (r < 0) {
                agent_log("thread: %s", strerror(-r));
                return 1;
        }
        return 0;
}

/* Reaps orphans and waits for the connections. Returns the exit code. */
static int agent_loop(int sigfd, bool ports)
{
        int64_t scan_until = ports ? agent_now_ns() + (int64_t) PORT_WAIT_MS * 1000000LL : 0;
        int expected = ports ? init_ports_expected() : 0;
        bool again = false;
        for (;;) {
                if (atomic_load(&agent_quit))
                        return 0;
                if (!ports && atomic_load(&live_conns) == 0)
                        break;
                if (ports && atomic_load(&live_conns) == 0 && agent_now_ns() >= scan_until)
                        break;
                int timeout = again ? REAP_AGAIN_MS : -1;
                if (ports && agent_now_ns() < scan_until)
                        timeout = again ? REAP_AGAIN_MS : SCAN_MS;
                struct pollfd pfd[2] = {{.fd = sigfd, .events = POLLIN},
                                        {.fd = wake_fd, .events = POLLIN}};
                if (poll(pfd, 2, timeout) < 0 && errno != EINTR) {
                        agent_log("poll: %s", strerror(errno));
                        sleep_ms(REAP_AGAIN_MS);
                }
                struct signalfd_siginfo si;
                while (read(sigfd, &si, sizeof si) == (ssize_t) sizeof si)
                        ;
                uint64_t v;
                (void) !read(wake_fd, &v, sizeof v);
                again = child_reap_orphans();
                if (ports && agent_now_ns() < scan_until && ports_scan(expected))
                        scan_until = 0; /* an idle guest is not woken every SCAN_MS for 30 s */
        }
        int code = 0;
        for (size_t i = 0; i < n_conns; i++) {
                (void) pthread_join(conns[i].thread, NULL);
                if (conns[i].code > code)
                        code = conns[i].code;
        }
        return code;
}

/* Returns the exit code. */
static int agent_run(const Options *o)
{
        sigset_t mask, blocked;
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        blocked = mask;
        sigaddset(&blocked, SIGIO); /* taken by the port threads (wait_for_host) */
        if (sigprocmask(SIG_BLOCK, &blocked, NULL) < 0) {
                agent_log("sigprocmask: %s", strerror(errno));
                return 1;
        }
        _cleanup_close_ int sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
        wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (sigfd < 0 || wake_fd < 0) {
                agent_log("signalfd/eventfd: %s", strerror(errno));
                return 1;
        }
        modules_start(); /* after SIGCHLD is blocked; the thread blocks every signal */
        int r = o->local ? 0 : power_button_start(o->power_button, agent_pid1, agent_debug);
        if (r < 0)
                agent_log("power button thread: %s", strerror(-r));
        int code = agent_start(o);
        if (code != 0 && n_conns == 0)
                return code;
        r = agent_loop(sigfd, o->n_fds == 0 && !o->path && o->n_listens == 0);
        return code ? code : r;
}

int main(int argc, char **argv)
{
        agent_start_ns = agent_now_ns();
        bool pid1 = getpid() == 1;
        Options o;
        int r = parse_args(argc, argv, &o);
        if (r == 0 && o.local)
                init_local();
        else if (pid1)
                init_pid1();
        else
                init_ensure_stdio();
        if (r != 0) {
                if (r < 0)
                        usage(stderr);
                init_exit(pid1, r < 0 ? 2 : 0);
        }
        if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
                agent_log("signal: %s", strerror(errno));
        agent_pid1 = pid1;
        agent_debug = init_debug_requested(pid1 && !o.local); /* /proc/cmdline is the host's */
        child_init_limits();
        int code = agent_run(&o);
        init_exit(pid1, code);
}
