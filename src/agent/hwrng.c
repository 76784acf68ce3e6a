/* hwrng.c: the guest's /dev/hwrng when a VM boots with rng_seed (provium.rng_seed=N on the
 * kernel command line). A FIFO that a thread of PID 1 keeps full with a stream that depends
 * on the seed alone: xoshiro256** seeded through SplitMix64, 8 little-endian bytes a step.
 *
 * Why not the kernel's own /dev/hwrng over a seeded virtio-rng device: Linux 6.1's hwrng
 * thread (drivers/char/hw_random/core.c) draws blocks from the current device for the entropy
 * pool whenever its timer says, and cannot be stopped while the device is in use, so what a
 * reader got depended on when it read (docs/api.md). Here nothing else reads the stream; it
 * is in guest memory, so snapshots and fixture clones carry its position.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

#define HWRNG_PATH  "/dev/hwrng"
#define HWRNG_CHUNK 4096 /* bytes written at a time; the FIFO holds 64 KiB ahead */

typedef struct Xoshiro {
        uint64_t s[4];
} Xoshiro;

static uint64_t splitmix64(uint64_t *x)
{
        uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
        return (x << k) | (x >> (64 - k));
}

static uint64_t xoshiro_next(Xoshiro *g)
{
        uint64_t *s = g->s;
        uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = rotl(s[3], 45);
        return result;
}

static Xoshiro hwrng_gen;
static int hwrng_fd = -1;

static void *hwrng_thread(void *arg)
{
        unsigned char buf[HWRNG_CHUNK];
        for (;;) {
                for (size_t i = 0; i < sizeof buf; i += 8) {
                        uint64_t v = xoshiro_next(&hwrng_gen);
                        for (int b = 0; b < 8; b++)
                                buf[i + b] = (unsigned char) (v >> (8 * b));
                }
                for (size_t off = 0; off < sizeof buf;) {
                        ssize_t w = write(hwrng_fd, buf + off, sizeof buf - off);
                        if (w < 0 && errno == EINTR)
                                continue;
                        if (w < 0) {
                                agent_log("%s: write: %s; the stream stops", HWRNG_PATH,
                                          strerror(errno));
                                return NULL;
                        }
                        off += (size_t) w;
                }
        }
}

/* Logs "/dev/hwrng: STEP: reason" and returns -err. */
static int hwrng_fail(const char *step, int err)
{
        agent_log("%s: %s: %s; rng_seed has no /dev/hwrng", HWRNG_PATH, step, strerror(err));
        return -err;
}

int hwrng_start(uint64_t seed)
{
        uint64_t x = seed;
        for (int i = 0; i < 4; i++)
                hwrng_gen.s[i] = splitmix64(&x);
        if (unlink(HWRNG_PATH) < 0 && errno != ENOENT)
                return hwrng_fail("unlink", errno);
        if (mkfifo(HWRNG_PATH, 0444) < 0)
                return hwrng_fail("mkfifo", errno);
        /* Read-write, so that the FIFO always has a reader (no SIGPIPE between readers) and
         * this open never blocks; the thread only writes to it. */
        hwrng_fd = open(HWRNG_PATH, O_RDWR | O_CLOEXEC);
        if (hwrng_fd < 0) {
                int err = errno;
                (void) unlink(HWRNG_PATH); /* a FIFO nobody feeds would block its readers */
                return hwrng_fail("open", err);
        }
        sigset_t all, old;
        (void) sigfillset(&all);
        (void) pthread_sigmask(SIG_SETMASK, &all, &old); /* the thread takes no signal */
        pthread_t t;
        pthread_attr_t attr;
        int r = pthread_attr_init(&attr);
        if (r == 0) {
                (void) pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                r = pthread_create(&t, &attr, hwrng_thread, NULL);
                (void) pthread_attr_destroy(&attr);
        }
        (void) pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r != 0) {
                (void) close(hwrng_fd);
                hwrng_fd = -1;
                (void) unlink(HWRNG_PATH);
                return hwrng_fail("pthread_create", r);
        }
        return 0;
}
