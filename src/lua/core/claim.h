/* claim.h: the test file's claim on the resource pool (claim.c): what provium:claim asked for
 * (or the run's default), and its grant, asked of the dispatcher before the file's first test
 * or first VM boot. One per file runner. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The run's default claim and the descriptor the dispatcher answers on (-1: none, a run
 * without a dispatcher: every claim is granted at once). Called once, by the file runner. */
void claim_setup(uint64_t default_mb, unsigned default_cpus, int grant_fd);
/* provium:claim: only once, in the file's chunk (in_chunk), before its first VM boot. Returns
 * 0, or -EINVAL with err saying which rule it broke. */
int claim_set(uint64_t memory_mb, unsigned cpus, bool in_chunk, char *err, size_t errlen);
/* The file's claim: its own (returns true), or the default (false). */
bool claim_get(uint64_t *memory_mb, unsigned *cpus);
/* Waits for the dispatcher to grant the claim (at once when it was granted already). Returns
 * 0, or -E2BIG (larger than the whole budget) / -EPIPE (no dispatcher any more) / -EINTR
 * (the run was interrupted) with err saying so. */
int claim_acquire(char *err, size_t errlen);
/* Whether a VM of memory_mb fits in the claim beside the QEMUs alive already; else err says
 * what the claim is and what is in use. */
bool claim_fits_vm(uint64_t memory_mb, char *err, size_t errlen);
