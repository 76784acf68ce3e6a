/* local-floor.c: the floors of a local VM's round trips (bench/local.py), on the host. Prints
 * medians of N, in ns:
 *   spawn    a bare fork+exec+wait of `/bin/sh -c true` (what vm:run("true") asks the agent for)
 *   socket   a bare Unix socket round trip between two processes, a small request and a 4 KiB
 *            answer, both sides blocking in read (what read_file of 4 KiB is, less the file)
 *   skeleton the system calls read_file of 4 KiB cannot do without, and nothing else: the client
 *            writes the request and waits in epoll_wait, then reads; the server waits in poll,
 *            reads the request, opens the file, fstats it, reads it, writes the answer and
 *            closes it (Provium's runner and agent make exactly these calls, one each) */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FILE_SIZE 4096

static uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t *v, int n)
{
        qsort(v, (size_t) n, sizeof *v, cmp);
        return v[n / 2];
}

static int full(int fd, char *p, size_t n, int writing)
{
        while (n > 0) {
                ssize_t r = writing ? write(fd, p, n) : read(fd, p, n);
                if (r <= 0)
                        return -1;
                p += r;
                n -= (size_t) r;
        }
        return 0;
}

static int floor_spawn(uint64_t *t, int n)
{
        for (int i = 0; i < n; i++) {
                uint64_t t0 = now_ns();
                pid_t pid = fork();
                if (pid == 0) {
                        execl("/bin/sh", "sh", "-c", "true", (char *) NULL);
                        _exit(127);
                }
                int st;
                if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
                        return -1;
                t[i] = now_ns() - t0;
        }
        return 0;
}

static char req[64], ans[FILE_SIZE + 64], buf[1 << 16];

static void serve_socket(int fd)
{
        while (full(fd, req, sizeof req, 0) == 0 && full(fd, ans, FILE_SIZE, 1) == 0)
                ;
}

static void serve_skeleton(int fd, const char *path)
{
        for (;;) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                if (poll(&p, 1, -1) < 0 || read(fd, buf, sizeof buf) <= 0)
                        return;
                int f = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
                struct stat st;
                if (f < 0 || fstat(f, &st) < 0 || read(f, ans, sizeof ans) != FILE_SIZE)
                        return;
                struct iovec iov[2] = {{ans, FILE_SIZE}, {req, 32}}; /* data, then the reply */
                if (writev(fd, iov, 2) != FILE_SIZE + 32 || close(f) < 0)
                        return;
        }
}

/* Round trips to a server process running serve (path: the file it reads, or NULL). */
static int floor_round_trip(uint64_t *t, int n, const char *path)
{
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return -1;
        pid_t server = fork();
        if (server < 0)
                return -1;
        if (server == 0) {
                close(sv[0]);
                if (path)
                        serve_skeleton(sv[1], path);
                else
                        serve_socket(sv[1]);
                _exit(0);
        }
        close(sv[1]);
        int ep = path ? epoll_create1(EPOLL_CLOEXEC) : -1;
        struct epoll_event ev = {.events = EPOLLIN};
        if (path && (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &ev) < 0))
                return -1;
        size_t want = path ? FILE_SIZE + 32 : FILE_SIZE;
        int r = 0;
        for (int i = 0; i < n && r == 0; i++) {
                uint64_t t0 = now_ns();
                if (!path) {
                        r = full(sv[0], req, sizeof req, 1) || full(sv[0], ans, want, 0);
                } else if (write(sv[0], req, 44) != 44) {
                        r = -1;
                } else {
                        for (size_t got = 0; got < want && r == 0;) {
                                ssize_t k = -1;
                                if (epoll_wait(ep, &ev, 1, -1) == 1)
                                        k = read(sv[0], buf, sizeof buf);
                                r = k > 0 ? 0 : -1;
                                got += k > 0 ? (size_t) k : 0;
                        }
                }
                t[i] = now_ns() - t0;
        }
        close(sv[0]);
        if (ep >= 0)
                close(ep);
        waitpid(server, NULL, 0);
        return r ? -1 : 0;
}

/* The file the skeleton's server reads: FILE_SIZE bytes in a fresh temporary file. */
static int make_file(char *path)
{
        int fd = mkstemp(path);
        if (fd < 0)
                return -1;
        memset(buf, 'x', FILE_SIZE);
        int r = write(fd, buf, FILE_SIZE) == FILE_SIZE ? 0 : -1;
        close(fd);
        return r;
}

int main(int argc, char **argv)
{
        int n = argc > 1 ? atoi(argv[1]) : 200;
        if (n < 1 || n > 100000)
                return 2;
        uint64_t *t = calloc((size_t) n, sizeof *t);
        char path[] = "/tmp/provium-local-floor-XXXXXX";
        if (!t || make_file(path) < 0)
                return fprintf(stderr, "local-floor: setting up: %s\n", strerror(errno)), 2;
        int r = floor_spawn(t, n);
        if (r == 0)
                printf("spawn %llu\n", (unsigned long long) median(t, n));
        if (r == 0 && (r = floor_round_trip(t, n, NULL)) == 0)
                printf("socket %llu\n", (unsigned long long) median(t, n));
        if (r == 0 && (r = floor_round_trip(t, n, path)) == 0)
                printf("skeleton %llu\n", (unsigned long long) median(t, n));
        if (r < 0)
                fprintf(stderr, "local-floor: %s\n", strerror(errno));
        unlink(path);
        free(t);
        return r < 0 ? 1 : 0;
}
