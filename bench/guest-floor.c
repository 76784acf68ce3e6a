/* guest-floor.c: the in-guest side of the round-trip floors (bench/run, docs/performance.md).
 * Built static and put into a copy of the default initrd by bench/bench.py.
 *
 *   guest-floor mark                     write "PROVIUM-INIT-MARK <CLOCK_MONOTONIC ns>" to the
 *                                        console, power off
 *                                        (also what it does as /init, with no arguments)
 *   guest-floor clock                    print CLOCK_MONOTONIC in ns
 *   guest-floor forkexec N PROG [ARG]... time N x (fork + execv PROG + waitpid), after N/10
 *                                        untimed ones; prints
 *                                        "FLOOR-FORKEXEC ns ns ..." (one value per run)
 *   guest-floor serve DEV                the "bare C responder": on DEV, a request is a 4-byte
 *                                        little-endian length L + L bytes; its first byte says
 *                                        'E' (reply the L bytes unchanged) or 'R' (the rest is
 *                                        a path: open, read up to 64 KiB, close, reply with a
 *                                        4-byte length + the contents), 'P' (push: the next 8
 *                                        bytes are a little-endian count N; reply with N bytes,
 *                                        written from memory as fast as the port takes them) or
 *                                        'G' (get: N likewise; read N bytes from the port and
 *                                        discard them, then reply with the 4 bytes "DONE").
 *                                        P and G are the raw port throughput floors.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

/* Moves all n bytes through fd (write when out, else read): 0, or -1 at EOF or an error. */
static int move_full(int fd, char *p, size_t n, bool out)
{
        while (n > 0) {
                ssize_t r = out ? write(fd, p, n) : read(fd, p, n);
                if (r <= 0)
                        return -1;
                p += r;
                n -= (size_t) r;
        }
        return 0;
}

static int read_full(int fd, void *p, size_t n)
{
        return move_full(fd, p, n, false);
}

static int write_full(int fd, const void *p, size_t n)
{
        return move_full(fd, (char *) p, n, true);
}

static int mark(void)
{
        /* the guest's CLOCK_MONOTONIC (time since the kernel's clock started) at init start */
        char m[64];
        int n = snprintf(m, sizeof m, "\nPROVIUM-INIT-MARK %llu\n", (unsigned long long) now_ns());
        if (write(1, m, (size_t) n) < 0) {
                int fd = open("/dev/console", O_WRONLY);
                if (fd >= 0 && write(fd, m, (size_t) n) < 0)
                        return 1;
        }
        sync();
        reboot(RB_POWER_OFF);
        return 0;
}

static int forkexec(int n, char **argv)
{
        static uint64_t t[10000];
        int warm = n / 10;
        if (n > 10000)
                n = 10000;
        for (int i = -warm; i < n; i++) {
                uint64_t t0 = now_ns();
                pid_t p = fork();
                if (p == 0) {
                        int fd = open("/dev/null", O_RDWR);
                        if (fd >= 0) {
                                dup2(fd, 0);
                                dup2(fd, 1);
                                dup2(fd, 2);
                        }
                        execv(argv[0], argv);
                        _exit(127);
                }
                int st;
                if (p < 0 || waitpid(p, &st, 0) != p || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                        printf("FLOOR-FORKEXEC FAILED\n");
                        return 1;
                }
                if (i >= 0)
                        t[i] = now_ns() - t0;
        }
        printf("FLOOR-FORKEXEC");
        for (int i = 0; i < n; i++)
                printf(" %llu", (unsigned long long) t[i]);
        printf("\n");
        fflush(stdout);
        return 0;
}

static int serve(const char *dev)
{
        int fd = open(dev, O_RDWR);
        if (fd < 0) {
                perror(dev);
                return 1;
        }
        printf("FLOOR-SERVE-READY %s\n", dev);
        fflush(stdout);
        static char req[65536], buf[65536 + 4];
        for (;;) {
                uint32_t len;
                if (read_full(fd, &len, 4) < 0) {
                        /* the host went away: wait for it to come back */
                        usleep(10000);
                        continue;
                }
                if (len == 0 || len >= sizeof req || read_full(fd, req, len) < 0)
                        continue;
                if (req[0] == 'E') {
                        if (write_full(fd, &len, 4) < 0 || write_full(fd, req, len) < 0)
                                continue;
                } else if (req[0] == 'R') {
                        req[len] = 0;
                        uint32_t n = 0;
                        int f = open(req + 1, O_RDONLY | O_CLOEXEC);
                        if (f >= 0) {
                                ssize_t r;
                                while (n < 65536 && (r = read(f, buf + 4 + n, 65536 - n)) > 0)
                                        n += (uint32_t) r;
                                close(f);
                        }
                        memcpy(buf, &n, 4);
                        if (write_full(fd, buf, 4 + n) < 0)
                                continue;
                } else if ((req[0] == 'P' || req[0] == 'G') && len == 9) {
                        uint64_t left;
                        memcpy(&left, req + 1, 8);
                        static char big[1 << 20];
                        while (left > 0) {
                                size_t n = left < sizeof big ? (size_t) left : sizeof big;
                                ssize_t r = req[0] == 'P' ? write(fd, big, n) : read(fd, big, n);
                                if (r <= 0)
                                        break;
                                left -= (uint64_t) r;
                        }
                        if (left == 0 && req[0] == 'G')
                                write_full(fd, "DONE", 4);
                }
        }
}

int main(int argc, char **argv)
{
        if (argc == 1 || strcmp(argv[1], "mark") == 0)
                return mark();
        if (argc >= 4 && strcmp(argv[1], "forkexec") == 0)
                return forkexec(atoi(argv[2]), argv + 3);
        if (argc == 2 && strcmp(argv[1], "clock") == 0) {
                printf("%llu\n", (unsigned long long) now_ns());
                return 0;
        }
        if (argc == 3 && strcmp(argv[1], "serve") == 0)
                return serve(argv[2]);
        fprintf(stderr, "usage: guest-floor mark | clock | forkexec N PROG [ARG]... | serve DEV\n");
        return 2;
}
