/* main.c: provium-agent entry point: options, PID-1 setup, choosing and (re)opening the transport.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "agent.h"

#define PORTS_DIR     "/sys/class/virtio-ports"
#define PORT_WAIT_MS  30000
#define PORT_RETRY_MS 50
#define RECONNECT_MS  100

typedef struct Options {
        int fd;           /* --fd, -1 when absent */
        const char *path; /* --connect */
        const char *port; /* --port or the default */
} Options;

static void sleep_ms(int ms)
{
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static void usage(FILE *f)
{
        (void) fprintf(f, "usage: provium-agent [--fd N | --connect PATH | --port NAME]\n"
                          "Serves the provium agent protocol (docs/protocol.md). Without options\n"
                          "it uses the virtio-serial port named " AGENT_DEFAULT_PORT ".\n");
}

/* Returns 0, 1 after --help, or -EINVAL. */
static int parse_args(int argc, char **argv, Options *ret)
{
        static const struct option longopts[] = {
            {"fd", required_argument, NULL, 'f'},
            {"connect", required_argument, NULL, 'c'},
            {"port", required_argument, NULL, 'p'},
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
                        o.fd = (int) v;
                        break;
                case 'c':
                        o.path = optarg;
                        break;
                case 'p':
                        o.port = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return 1;
                default:
                        return -EINVAL;
                }
        }
        if (optind != argc || (o.fd >= 0 && o.path))
                return -EINVAL;
        *ret = o;
        return 0;
}

/* ---- transports ---- */

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
                char p[512], buf[256];
                (void) snprintf(p, sizeof p, PORTS_DIR "/%s/name", e->d_name);
                int fd = open(p, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        continue;
                ssize_t n = read(fd, buf, sizeof buf - 1);
                (void) close(fd);
                if (n <= 0)
                        continue;
                buf[n] = 0;
                buf[strcspn(buf, "\n")] = 0;
                if (strcmp(buf, name) == 0) {
                        (void) snprintf(ret_dev, size, "/dev/%s", e->d_name);
                        r = 0;
                }
        }
        (void) closedir(d);
        return r;
}

/* Opens the virtio port, waiting up to PORT_WAIT_MS for it to appear. Returns fd or -errno. */
static int port_open(const char *name)
{
        int r = -ENOENT;
        for (int waited = 0; waited <= PORT_WAIT_MS; waited += PORT_RETRY_MS) {
                char dev[512];
                r = port_find(name, dev, sizeof dev);
                if (r >= 0) {
                        int fd = open(dev, O_RDWR | O_CLOEXEC | O_NOCTTY);
                        if (fd >= 0)
                                return fd;
                        r = -errno;
                }
                sleep_ms(PORT_RETRY_MS);
        }
        return r;
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

/* Serves a stream connection once: EOF ends the agent. Returns the exit code. */
static int serve_stream(Server *s, int fd)
{
        agent_log("ready");
        int r = server_serve(s, fd);
        if (r < 0) {
                agent_log("connection closed: %s", strerror(-r));
                return 1;
        }
        return 0;
}

/* Serves the virtio port forever: the host may disconnect and reconnect. Returns the exit
 * code when told to quit or when the port cannot be opened. */
static int serve_port(Server *s, const char *name)
{
        bool announced = false;
        int fd = -1;
        for (;;) {
                if (fd < 0 && (fd = port_open(name)) < 0) {
                        agent_log("virtio port %s: %s", name, strerror(-fd));
                        return 1;
                }
                if (!announced) {
                        agent_log("ready");
                        announced = true;
                }
                int r = server_serve(s, fd);
                if (r == 1) {
                        (void) close(fd);
                        return 0;
                }
                if (r < 0) {
                        agent_log("connection closed: %s", strerror(-r));
                        closep(&fd);
                }
                sleep_ms(RECONNECT_MS);
        }
}

static int agent_run(Server *s, const Options *o)
{
        if (o->fd >= 0) {
                int r = fd_adopt(o->fd);
                if (r < 0) {
                        agent_log("--fd %d: %s", o->fd, strerror(-r));
                        return 1;
                }
                return serve_stream(s, o->fd);
        }
        if (o->path) {
                _cleanup_close_ int fd = unix_connect(o->path);
                if (fd < 0) {
                        agent_log("connect %s: %s", o->path, strerror(-fd));
                        return 1;
                }
                return serve_stream(s, fd);
        }
        return serve_port(s, o->port);
}

int main(int argc, char **argv)
{
        bool pid1 = getpid() == 1;
        if (pid1)
                init_pid1();
        else
                init_ensure_stdio();
        Options o;
        int r = parse_args(argc, argv, &o);
        if (r != 0) {
                if (r < 0)
                        usage(stderr);
                init_exit(pid1, r < 0 ? 2 : 0);
        }
        if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
                agent_log("signal: %s", strerror(errno));
        Server s;
        r = server_init(&s, pid1);
        if (r < 0) {
                agent_log("init: %s", strerror(-r));
                init_exit(pid1, 1);
        }
        int code = agent_run(&s, &o);
        server_done(&s);
        init_exit(pid1, code);
}
