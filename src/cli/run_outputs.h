/* run_outputs.h: what a run leaves for whoever reads it afterwards (run_outputs.c): the events
 * files (--events FILE, and events.msgpack in the artifacts directory), the artifacts
 * directory itself (--artifacts DIR or Bazel's TEST_UNDECLARED_OUTPUTS_DIR, where runners put
 * failed tests' consoles and captures), and Bazel's TEST_PREMATURE_EXIT_FILE, which exists
 * while the run does and is removed when it ends as it should. */
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include "cli.h"
#include "events_socket.h"

typedef struct EventsFile {
        FILE *f;
        char *path;
        int sink; /* its subscription, -1 when closed */
} EventsFile;

typedef struct RunOutputs {
        EventsFile events[CLI_MAX_EVENTS + 1]; /* --events FILE..., the artifacts directory's */
        EventsSocket *sockets[CLI_MAX_EVENTS]; /* --events unix:PATH... */
        const char *artifacts;                 /* the directory, or NULL */
        const char *premature;                 /* Bazel's premature-exit file, or NULL */
} RunOutputs;

/* Opens them all. Returns 0, or -errno after saying which could not be made. */
int run_outputs_open(RunOutputs *r, const CliOptions *o);
/* The last file has ended: the sockets' clients get what is queued for them (a bounded
 * while), and then the loop need not wait for them. */
void run_outputs_drain(RunOutputs *r);
/* Closes the sockets, before the loop's handles are closed. */
void run_outputs_close_sockets(RunOutputs *r);
/* Closes the events files and, when the run ended rather than died (finished), removes the
 * premature-exit file. */
void run_outputs_close(RunOutputs *r, bool finished);
