/* claim.c: the file's claim on the pool, and its grant over the dispatcher's pipe.
 *
 * The request goes out as a pool.request event (fd 3, as every event); the dispatcher answers
 * on grant_fd with one line: "G" (granted) or "D <why>" (denied). The runner waits blocked: it
 * has nothing else to do before its first test or VM. */
#include "claim.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "events.h"
#include "vm.h"

static struct {
        uint64_t memory_mb;
        unsigned cpus;
        int grant_fd;
        bool own;     /* provium:claim was called */
        bool granted; /* the dispatcher said so */
} claim = {.memory_mb = 1024, .cpus = 1, .grant_fd = -1};

void claim_setup(uint64_t default_mb, unsigned default_cpus, int grant_fd)
{
        claim.memory_mb = default_mb;
        claim.cpus = default_cpus;
        claim.grant_fd = grant_fd;
}

int claim_set(uint64_t memory_mb, unsigned cpus, bool in_chunk, char *err, size_t errlen)
{
        const char *why = !in_chunk       ? "only at the file's top level, before its first test"
                          : claim.own     ? "the file has claimed once already"
                          : claim.granted ? "must come before the file's first vm:boot"
                                          : NULL;
        if (why) {
                snprintf(err, errlen, "provium:claim: %s", why);
                return -EINVAL;
        }
        claim.memory_mb = memory_mb;
        claim.cpus = cpus;
        claim.own = true;
        return 0;
}

bool claim_get(uint64_t *memory_mb, unsigned *cpus)
{
        *memory_mb = claim.memory_mb;
        *cpus = claim.cpus;
        return claim.own;
}

static void emit_request(void)
{
        EventBuilder ev;
        event_begin(&ev, "pool.request", 3);
        proto_kv_uint(&ev.w, "memory_mb", claim.memory_mb);
        proto_kv_uint(&ev.w, "cpus", claim.cpus);
        proto_kv_bool(&ev.w, "declared", claim.own);
        event_end(&ev);
}

/* One line from fd (at most len - 1 bytes, newline cut): its length, 0 at EOF, -errno. */
static ssize_t read_line(int fd, char *buf, size_t len)
{
        size_t n = 0;
        while (n + 1 < len) {
                ssize_t r = read(fd, buf + n, 1);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                if (r == 0 || buf[n] == '\n')
                        break;
                n++;
        }
        buf[n] = 0;
        return (ssize_t) n;
}

int claim_acquire(char *err, size_t errlen)
{
        if (claim.granted)
                return 0;
        if (claim.grant_fd < 0) {
                claim.granted = true;
                return 0;
        }
        emit_request();
        char line[1024];
        ssize_t n = read_line(claim.grant_fd, line, sizeof line);
        if (n > 0 && line[0] == 'G') {
                claim.granted = true;
                vm_set_memory_limit(claim.memory_mb);
                return 0;
        }
        if (n > 2 && line[0] == 'D') {
                snprintf(err, errlen, "%s", line + 2);
                return strstr(line, "interrupted") ? -EINTR : -E2BIG;
        }
        snprintf(err, errlen, "the resource pool: no answer from the dispatcher (%s)",
                 n < 0 ? strerror((int) -n) : "it is gone");
        return -EPIPE;
}

bool claim_fits_vm(uint64_t memory_mb, char *err, size_t errlen)
{
        uint64_t used;
        unsigned vcpus;
        vm_live_totals(&used, &vcpus);
        if (used + memory_mb <= claim.memory_mb)
                return true;
        snprintf(err, errlen,
                 "it needs %" PRIu64 " MiB, and the file's claim is %" PRIu64
                 " MiB, of which its QEMUs (VMs, spares, fixture builders) use %" PRIu64
                 " MiB already: ask for more with provium:claim{memory = ...} at the file's top%s",
                 memory_mb, claim.memory_mb, used,
                 claim.own ? "" : " (without one, a file gets the run's --default-claim)");
        return false;
}
