/* keeper.h: a file runner that stays up after a failure (--keep-on-failure), serving
 * provium shell and provium stop on its control socket (kept.h has the directory and frames).
 */
#pragma once

#include <uv.h>

#include "runtime.h"

typedef struct Keeper Keeper;

/* After the file ended with a failure: moves the runner's directory to a kept one, writes its
 * info, listens, tells the dispatcher (a file.kept event) and lets go of it (fd 3, stdout and
 * stderr, the parent-death signal). Returns NULL, having said why on stderr, when the VMs
 * cannot be kept: the runner then ends as usual. */
Keeper *keeper_start(Runtime *rt, uv_loop_t *loop, const RuntimeConfig *cfg);
/* Serves until provium stop, or SIGTERM, SIGINT or SIGHUP; then closes its sessions. */
void keeper_serve(Keeper *k);
/* After the VMs were stopped: removes the kept directory. Accepts NULL. */
void keeper_free(Keeper *k);
