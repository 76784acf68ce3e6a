/* run_seed.h: the run's seed (--seed): drawn when not given, said at the start (a line and a
 * run.seed event) and at the end (run_summary.c), and passed to every runner. */
#pragma once

#include <stdint.h>

/* A fresh seed from the kernel's generator, below 2^63. */
uint64_t run_seed_draw(void);
/* Says it on stderr and as a run.seed event. */
void run_seed_announce(uint64_t seed);
