/* progress.h: the live status line of a run on a terminal (progress.c): files done of all,
 * the files running with their current test and how long it has run, VMs up, and the pool's
 * use; redrawn in place every quarter second and around every line the reporter prints. Never
 * in a log or a pipe: --progress auto (the default) draws only when stdout is a terminal and
 * not TAP; always and never force it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

/* mode: "auto", "always" or "never". Subscribes to the events. */
void progress_start(const char *mode, bool tap, size_t files);
/* Starts the redraw timer on the run's loop (unref'd: it never keeps the run going). */
void progress_attach(uv_loop_t *loop);
/* Around a line of the reporter's: the status line off, then back. */
void progress_hide(void);
void progress_show(void);
/* The run is over: the line goes for good, and the timer with it. */
void progress_stop(void);
