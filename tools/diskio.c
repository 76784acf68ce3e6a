/* diskio.c: block I/O in a guest, for Provium's disk tests and bench: what busybox's dd cannot
 * say precisely (O_DIRECT, O_DSYNC, latencies). Built static (provium-diskio) and copied into
 * a guest with vm:write_file. Every result is one line on stdout; errors go to stderr with the
 * errno's name, and the exit status is 1.
 *
 *   diskio write DEV LBA TEXT [direct] [dsync] [fsync]   TEXT padded to whole sectors
 *   diskio read DEV LBA COUNT                            O_DIRECT; prints the bytes up to NUL
 *   diskio seq-write DEV MIB | seq-read DEV MIB          1 MiB O_DIRECT blocks: "MB/s N"
 *   diskio rand-read DEV COUNT SEED                      4 KiB O_DIRECT: "us mean p50 p99 max"
 *   diskio lat-read DEV LBA COUNT                        512-byte O_DIRECT: "us mean min max"
 */
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SECTOR 512
#define BLOCK  (1 << 20)

static int fail(const char *what, const char *dev)
{
        fprintf(stderr, "diskio: %s %s: %s (%s)\n", what, dev, strerrorname_np(errno),
                strerror(errno));
        return 1;
}

static double now_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec * 1e6 + (double) ts.tv_nsec / 1e3;
}

static void *aligned(size_t n)
{
        void *p = NULL;
        if (posix_memalign(&p, 4096, n) != 0)
                return NULL;
        memset(p, 0, n);
        return p;
}

static bool has(int argc, char **argv, int from, const char *word)
{
        for (int i = from; i < argc; i++)
                if (strcmp(argv[i], word) == 0)
                        return true;
        return false;
}

static int cmd_write(int argc, char **argv)
{
        const char *dev = argv[2], *text = argv[4];
        off_t lba = atoll(argv[3]);
        size_t n = (strlen(text) + SECTOR - 1) / SECTOR * SECTOR;
        n = n ? n : SECTOR;
        int flags = O_WRONLY | (has(argc, argv, 5, "direct") ? O_DIRECT : 0) |
                    (has(argc, argv, 5, "dsync") ? O_DSYNC : 0);
        char *buf = aligned(n);
        int fd = open(dev, flags);
        if (!buf || fd < 0)
                return fail("open", dev);
        memcpy(buf, text, strlen(text));
        if (pwrite(fd, buf, n, lba * SECTOR) != (ssize_t) n)
                return fail("write", dev);
        if (has(argc, argv, 5, "fsync") && fsync(fd) < 0)
                return fail("fsync", dev);
        if (close(fd) < 0)
                return fail("close", dev);
        printf("wrote %zu\n", n);
        return 0;
}

static int cmd_read(char **argv)
{
        const char *dev = argv[2];
        off_t lba = atoll(argv[3]);
        size_t n = (size_t) atoll(argv[4]) * SECTOR;
        char *buf = aligned(n + 1);
        int fd = open(dev, O_RDONLY | O_DIRECT);
        if (!buf || fd < 0)
                return fail("open", dev);
        if (pread(fd, buf, n, lba * SECTOR) != (ssize_t) n)
                return fail("read", dev);
        printf("%s\n", buf);
        return 0;
}

static int cmd_seq(char **argv, bool write)
{
        const char *dev = argv[2];
        long mib = atol(argv[3]);
        char *buf = aligned(BLOCK);
        int fd = open(dev, (write ? O_WRONLY : O_RDONLY) | O_DIRECT);
        if (!buf || fd < 0)
                return fail("open", dev);
        memset(buf, 0x5a, BLOCK);
        double t0 = now_us();
        for (long i = 0; i < mib; i++) {
                ssize_t r = write ? pwrite(fd, buf, BLOCK, (off_t) i * BLOCK)
                                  : pread(fd, buf, BLOCK, (off_t) i * BLOCK);
                if (r != BLOCK)
                        return fail(write ? "write" : "read", dev);
        }
        if (write && fdatasync(fd) < 0)
                return fail("fdatasync", dev);
        double s = (now_us() - t0) / 1e6;
        printf("MB/s %.1f\n", (double) mib * BLOCK / 1e6 / s);
        return 0;
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

/* count reads of one size at lbas from the generator (or lba, lba+1...): their latencies */
static int cmd_latency(char **argv, bool random)
{
        const char *dev = argv[2];
        long count = atol(argv[random ? 3 : 4]);
        uint64_t x = random ? strtoull(argv[4], NULL, 10) : 0;
        off_t lba = random ? 0 : atoll(argv[3]);
        size_t size = random ? 4096 : SECTOR;
        char *buf = aligned(size);
        double *us = calloc((size_t) (count > 0 ? count : 1), sizeof *us);
        int fd = open(dev, O_RDONLY | O_DIRECT);
        off_t end = fd >= 0 ? lseek(fd, 0, SEEK_END) : 0;
        if (!buf || !us || fd < 0 || end < (off_t) size || count < 1)
                return fail("open", dev);
        for (long i = 0; i < count; i++) {
                off_t off = (off_t) (lba + i) * SECTOR;
                if (random) {
                        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                        off = (off_t) (x % (uint64_t) (end / (off_t) size)) * (off_t) size;
                }
                double t0 = now_us();
                if (pread(fd, buf, size, off) != (ssize_t) size)
                        return fail("read", dev);
                us[i] = now_us() - t0;
        }
        double sum = 0;
        for (long i = 0; i < count; i++)
                sum += us[i];
        qsort(us, (size_t) count, sizeof *us, cmp_double);
        if (random)
                printf("us %.1f %.1f %.1f %.1f\n", sum / count, us[count / 2], us[count * 99 / 100],
                       us[count - 1]);
        else
                printf("us %.1f %.1f %.1f\n", sum / count, us[0], us[count - 1]);
        return 0;
}

int main(int argc, char **argv)
{
        const char *cmd = argc > 1 ? argv[1] : "";
        if (strcmp(cmd, "write") == 0 && argc >= 5)
                return cmd_write(argc, argv);
        if (strcmp(cmd, "read") == 0 && argc == 5)
                return cmd_read(argv);
        if ((strcmp(cmd, "seq-write") == 0 || strcmp(cmd, "seq-read") == 0) && argc == 4)
                return cmd_seq(argv, cmd[4] == 'w');
        if (strcmp(cmd, "rand-read") == 0 && argc == 5)
                return cmd_latency(argv, true);
        if (strcmp(cmd, "lat-read") == 0 && argc == 5)
                return cmd_latency(argv, false);
        fprintf(stderr, "usage: diskio write DEV LBA TEXT [direct] [dsync] [fsync] | read DEV LBA "
                        "COUNT | seq-write DEV MIB | seq-read DEV MIB | rand-read DEV COUNT SEED | "
                        "lat-read DEV LBA COUNT\n");
        return 2;
}
