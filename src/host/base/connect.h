/* connect.h: connecting to a Unix socket that another process (QEMU) is about to create. */
#pragma once

#include <stdint.h>
#include <uv.h>

typedef struct Connector Connector;
/* fd >= 0 is a connected socket now owned by the callee; otherwise status is -errno. */
typedef void (*ConnectFn)(void *data, int status, int fd);

/* Retries connect(2) every few milliseconds until it succeeds, timeout_ms passes, or the
 * connector is cancelled. Calls cb exactly once unless cancelled first. Returns NULL on
 * -ENOMEM (cb is then never called). */
Connector *connector_start(uv_loop_t *loop, const char *path, uint64_t timeout_ms, ConnectFn cb,
                           void *data);
/* Stops retrying; cb will not be called. Safe on NULL; not after cb ran (the owner clears
 * its pointer inside cb). Returns NULL. */
Connector *connector_cancel(Connector *c);
