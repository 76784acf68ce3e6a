/* hwrng.c: the guest's /dev/hwrng, the stream of a seed. The VM boots with one (rng_seed:
 * provium.rng_seed=N on the kernel command line), or the host gives one derived from the run's
 * seed once the agent serves (the hwrng op). A FIFO that a thread of PID 1 keeps full with a
 * stream that depends on the seed alone: xoshiro256** seeded through SplitMix64, 8
 * little-endian bytes a step.
 *
 * Why not the kernel's own /dev/hwrng over a seeded virtio-rng device: Linux 6.1's hwrng
 * thread (drivers/char/hw_random/core.c) draws blocks from the current device for the entropy
 * pool whenever its timer says, and cannot be stopped while the device is in use, so what a
 * reader got depended on when it read (docs/api.md). Here nothing else reads the stream; it
 * is in guest memory, so snapshots and fixture clones carry its position.
 *
 * The thread writes only while it holds hwrng_lock, without blocking (it waits for room in
 * poll, unlocked), so a new seed takes effect at once: under the lock the FIFO is emptied and
 * the thread's next chunk comes from the new stream.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

#define HWRNG_PATH  "/dev/hwrng"
#define HWRNG_CHUNK 4096 /* bytes written at a time, and what the FIFO holds ahead */

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
static uint64_t hwrng_generation; /* counts seeds; the thread's chunk is of one generation */
static pthread_mutex_t hwrng_lock = PTHREAD_MUTEX_INITIALIZER;
static int hwrng_fd = -1;

static void hwrng_seed_gen(uint64_t seed)
{
        uint64_t x = seed;
        for (int i = 0; i < 4; i++)
                hwrng_gen.s[i] = splitmix64(&x);
        hwrng_generation++;
}

static void hwrng_fill(unsigned char *buf, size_t n)
{
        for (size_t i = 0; i + 8 <= n; i += 8) {
                uint64_t v = xoshiro_next(&hwrng_gen);
                for (int b = 0; b < 8; b++)
                        buf[i + b] = (unsigned char) (v >> (8 * b));
        }
}

/* One non-blocking write of what is left of the chunk, under the lock; a chunk of an older
 * generation is drawn again first. Returns the bytes written, or -errno. */
static ssize_t hwrng_write_some(unsigned char *buf, size_t *off, uint64_t *generation)
{
        (void) pthread_mutex_lock(&hwrng_lock);
        if (*generation != hwrng_generation || *off == HWRNG_CHUNK) {
                hwrng_fill(buf, HWRNG_CHUNK);
                *off = 0;
                *generation = hwrng_generation;
        }
        ssize_t w = write(hwrng_fd, buf + *off, HWRNG_CHUNK - *off);
        int err = errno;
        if (w > 0)
                *off += (size_t) w;
        (void) pthread_mutex_unlock(&hwrng_lock);
        return w < 0 ? -err : w;
}

static void *hwrng_thread(void *arg)
{
        static unsigned char buf[HWRNG_CHUNK];
        size_t off = HWRNG_CHUNK;
        uint64_t generation = 0;
        for (;;) {
                ssize_t w = hwrng_write_some(buf, &off, &generation);
                if (w >= 0 || w == -EINTR)
                        continue;
                if (w == -EAGAIN) { /* full: wait for a reader, unlocked */
                        struct pollfd p = {.fd = hwrng_fd, .events = POLLOUT};
                        if (poll(&p, 1, -1) < 0 && errno != EINTR) {
                                agent_log("%s: poll: %s; the stream stops", HWRNG_PATH,
                                          strerror(errno));
                                return arg;
                        }
                        continue;
                }
                agent_log("%s: write: %s; the stream stops", HWRNG_PATH, strerror((int) -w));
                return arg;
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
        hwrng_seed_gen(seed);
        if (unlink(HWRNG_PATH) < 0 && errno != ENOENT)
                return hwrng_fail("unlink", errno);
        if (mkfifo(HWRNG_PATH, 0444) < 0)
                return hwrng_fail("mkfifo", errno);
        /* Read-write, so that the FIFO always has a reader (no SIGPIPE between readers) and
         * this open never blocks; the thread only writes to it. */
        hwrng_fd = open(HWRNG_PATH, O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (hwrng_fd < 0) {
                int err = errno;
                (void) unlink(HWRNG_PATH); /* a FIFO nobody feeds would block its readers */
                return hwrng_fail("open", err);
        }
        /* one page ahead, not the default 64 KiB: a new seed (a fixture's clone) has less to
         * throw away and draw again, on a guest whose restored memory is cold */
        if (fcntl(hwrng_fd, F_SETPIPE_SZ, HWRNG_CHUNK) < 0)
                agent_log("%s: F_SETPIPE_SZ: %s; it holds the default", HWRNG_PATH,
                          strerror(errno));
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

int hwrng_reseed(uint64_t seed)
{
        if (hwrng_fd < 0)
                return hwrng_start(seed);
        (void) pthread_mutex_lock(&hwrng_lock);
        hwrng_seed_gen(seed);
        /* what the FIFO holds is the old stream's: read it out (the FIFO is ours, O_RDWR) */
        char sink[4096];
        ssize_t n;
        int err = 0;
        while ((n = read(hwrng_fd, sink, sizeof sink)) > 0 || (n < 0 && errno == EINTR))
                ;
        if (n < 0 && errno != EAGAIN)
                err = errno;
        (void) pthread_mutex_unlock(&hwrng_lock);
        return err ? hwrng_fail("read", err) : 0;
}
