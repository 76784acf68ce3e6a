/* run_seed.c: the run's seed (run_seed.h). */
#include <stdio.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "events.h"
#include "run_seed.h"

uint64_t run_seed_draw(void)
{
        uint64_t v = 0;
        if (getrandom(&v, sizeof v, 0) != (ssize_t) sizeof v) { /* never seen: still a seed */
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                v = (uint64_t) ts.tv_sec * 1000000007ull ^ (uint64_t) ts.tv_nsec ^
                    (uint64_t) getpid() << 32;
        }
        return v & 0x7fffffffffffffffull;
}

void run_seed_announce(uint64_t seed)
{
        fprintf(stderr, "provium: seed %llu (--seed %llu makes the same choices again)\n",
                (unsigned long long) seed, (unsigned long long) seed);
        EventBuilder ev;
        event_begin(&ev, "run.seed", 1);
        proto_kv_uint(&ev.w, "seed", seed);
        event_end(&ev);
}
