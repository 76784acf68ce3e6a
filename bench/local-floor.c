/* local-floor.c: the floors of a local VM's round trips (bench/local.py), on the host: a bare
 * fork+exec+wait of `/bin/sh -c true` (what vm:run("true") asks the agent for), and a bare
 * Unix socket round trip of a small request and a 4 KiB answer between two processes (what
 * read_file of 4 KiB is, less the file). Prints "spawn NS" and "socket NS": medians of N. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

int main(int argc, char **argv)
{
        int n = argc > 1 ? atoi(argv[1]) : 200;
        if (n < 1 || n > 100000)
                return 2;
        uint64_t *t = calloc((size_t) n, sizeof *t);
        if (!t)
                return 2;
        for (int i = 0; i < n; i++) {
                uint64_t t0 = now_ns();
                pid_t pid = fork();
                if (pid == 0) {
                        execl("/bin/sh", "sh", "-c", "true", (char *) NULL);
                        _exit(127);
                }
                int st;
                if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
                        return fprintf(stderr, "local-floor: spawn: %s\n", strerror(errno)), 1;
                t[i] = now_ns() - t0;
        }
        printf("spawn %llu\n", (unsigned long long) median(t, n));
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
                return 1;
        static char req[64], ans[4096];
        pid_t server = fork();
        if (server == 0) {
                close(sv[0]);
                while (full(sv[1], req, sizeof req, 0) == 0 && full(sv[1], ans, sizeof ans, 1) == 0)
                        ;
                _exit(0);
        }
        close(sv[1]);
        for (int i = 0; i < n; i++) {
                uint64_t t0 = now_ns();
                if (full(sv[0], req, sizeof req, 1) < 0 || full(sv[0], ans, sizeof ans, 0) < 0)
                        return fprintf(stderr, "local-floor: socket: %s\n", strerror(errno)), 1;
                t[i] = now_ns() - t0;
        }
        close(sv[0]);
        waitpid(server, NULL, 0);
        printf("socket %llu\n", (unsigned long long) median(t, n));
        free(t);
        return 0;
}
