/* run_summary.h: what a run says at its end, above the final counts (run_summary.c): the
 * slowest tests, VMs booted and restored from fixtures, their VM-seconds, the cache's hits and
 * builds, and the failures again with their file:line, so that they are the last thing on the
 * screen. A sink on the event bus. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* The run's seed, said in the summary. */
void run_summary_set_seed(uint64_t seed);
/* Subscribes (once per run). */
void run_summary_start(void);
/* Prints the summary on stdout (nothing for a run without tests); with keep_hint, after the
 * failures, how to look inside the VMs of the first one that had any. */
void run_summary_print(bool keep_hint);
/* A file that ended without reporting, among the failures. */
void run_summary_file_crashed(const char *file, const char *why);
void run_summary_free(void);
