/* qmp.h: a QMP (QEMU Machine Protocol) client: JSON commands and events over a Unix socket. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct Qmp Qmp;

/* status 0 and the "return" value, or -EPROTO with the "error" object (desc in it), or
 * -ECONNRESET / -ETIMEDOUT with NULL. Borrowed references: valid during the call only.
 * QEMU has 30 s to greet and to answer each command; one that does not is taken as wedged:
 * the connection is closed and everything waiting on it fails with -ETIMEDOUT. */
typedef void (*QmpReplyFn)(void *data, int status, json_t *result);
/* What a failed call's status and result say, for messages: QEMU's own description, that it
 * did not answer in time (stopped or wedged), or that the connection is gone. */
const char *qmp_error_text(int status, json_t *result);
/* An asynchronous event such as "SHUTDOWN", "STOP", "GUEST_PANICKED". */
typedef void (*QmpEventFn)(void *data, const char *event, json_t *event_data);
/* Negotiation finished (status 0) or failed. */
typedef void (*QmpReadyFn)(void *data, int status);

Qmp *qmp_new(uv_loop_t *loop);
/* Connected, and capabilities negotiated: commands may be sent. */
bool qmp_ready(const Qmp *q);
/* Connects (retrying until QEMU creates the socket), reads the greeting and negotiates
 * capabilities; then calls ready_cb. Returns 0 or -errno. */
int qmp_connect(Qmp *q, const char *path, uint64_t timeout_ms, QmpReadyFn ready_cb,
                QmpEventFn event_cb, void *data);
/* Sends {"execute": cmd, "arguments": args}; steals args (may be NULL). cb may be NULL. */
int qmp_execute(Qmp *q, const char *cmd, json_t *args, QmpReplyFn cb, void *data);
/* The data passed to the callbacks from now on (a QEMU handed from one owner to another),
 * also to those of the commands in flight that were sent with the old data. */
void qmp_set_data(Qmp *q, void *data);
/* Closes the connection; pending commands fail with -ECONNRESET. Accepts NULL; returns NULL. */
Qmp *qmp_free(Qmp *q);
