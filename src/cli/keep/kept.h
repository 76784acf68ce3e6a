/* kept.h: kept runs: a file runner that stayed up after a failure (--keep-on-failure), with its
 * VMs, and what provium shell, ls and stop need to find and reach it.
 *
 * A kept run is a directory <run parent>/provium-kept/ID (ID: the file's stem and the runner's
 * pid), holding the runner's own run directory moved there, and:
 *   lock          flock()ed by the runner while it keeps: a directory whose lock can be taken
 *                 is stale (the runner was killed) and is removed by the next listing
 *   info          what it keeps, "key=value" lines: file, test, vms (space-separated), pid
 *   control.sock  the runner's control socket (kept_proto below)
 *   log           the runner's stdout and stderr from then on
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "proto.h"

#define KEPT_ID_MAX   64
#define KEPT_VMS_MAX  1024
#define KEPT_INFO_MAX 8192 /* an info file larger than this is not ours */

typedef struct KeptRun {
        char id[KEPT_ID_MAX];
        char dir[256];
        char file[1024];
        char test[256];
        char vms[KEPT_VMS_MAX]; /* names separated by single spaces */
        long pid;
} KeptRun;

/* The directory kept runs live in; with create, made 0700 when missing (NULL with errno set
 * when that fails). */
const char *kept_parent(bool create);
/* Removes that directory when no run is kept in it any more. */
void kept_parent_tidy(void);
/* The live kept runs, oldest first (malloc'd array in *ret, n in *ret_n); stale ones are
 * removed on the way. Returns 0 or -errno. */
int kept_list(KeptRun **ret, size_t *ret_n);
/* The kept run named id, or with id NULL the only one. Returns 0, or -ENOENT / -EEXIST (more
 * than one and none named) with a sentence for a person in err. */
int kept_find(const char *id, KeptRun *ret, char *err, size_t errlen);
/* Whether name is one of the run's VMs. */
bool kept_has_vm(const KeptRun *k, const char *name);
/* Connects to the run's control socket. Returns the fd or -errno. */
int kept_connect(const KeptRun *k);

/* ---- the control socket's frames (proto.h framing, one map each) ----
 *
 *   client -> keeper  {op: "shell", vm, rows, cols, term}   a shell on a new PTY in vm
 *                     {op: "stdin", data: bin}              typed bytes (Ctrl-C included)
 *                     {op: "resize", rows, cols}
 *                     {op: "stop"}                          end the run: VMs stopped
 *   keeper -> client  {type: "started"} {type: "out", data: bin}
 *                     {type: "exit", code: int|nil, signal: int|nil}
 *                     {type: "error", message: str}  {type: "stopping"}
 */

/* Sends the frame built on w, blocking. Returns 0 or -errno. */
int kept_send(int fd, ProtoWriter *w);
/* Reads the next frame into *ret (valid until the next call), blocking. Returns 1, 0 at EOF,
 * or -errno. */
int kept_recv(int fd, ProtoReader *r, msgpack_object *ret);
