/* run_verdict.h: the exit status of `provium run` (run_verdict.c), one table for all of it:
 *   0   every selected test passed (or skipped)
 *   1   a test failed, or -k selected nothing
 *   2   bad usage, or a set-up that failed before any file ran
 *   3   no VM could start at all, for want of what the host must give (QEMU, the default
 *       image, a network namespace: infra.error events), and a test failed for it
 *   130 interrupted (SIGINT or SIGTERM)
 * It watches the run's events for VMs that started and for infra.error. */
#pragma once

#include <stdbool.h>

enum {
        RUN_PASSED = 0,
        RUN_FAILED = 1,
        RUN_USAGE = 2,
        RUN_NO_INFRA = 3,
        RUN_INTERRUPTED = 130,
};

/* Subscribes to the events (once per run). */
void run_verdict_start(void);
/* The status of a run that went to its end with failed tests failing (no_match: -k selected
 * none); for RUN_NO_INFRA it says why on stderr, first. */
int run_verdict_finish(unsigned failed, bool no_match, bool interrupted);
