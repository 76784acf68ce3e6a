/* agent.h: declarations shared by provium-agent's files (init, server, ops). */
#pragma once

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "proto.h"

#define AGENT_NAME          "provium-agent 0.1.0"
#define AGENT_DEFAULT_PORT  "provium.0"
#define AGENT_EXEC_GRACE_NS (100 * 1000 * 1000LL) /* output grace after the child exits */

static inline void freep(void *p)
{
        free(*(void **) p);
}

/* Closes *fd if open and marks it closed; also the _cleanup_close_ destructor. */
static inline void closep(int *fd)
{
        if (*fd >= 0)
                (void) close(*fd);
        *fd = -1;
}

#define _cleanup_(f)    __attribute__((cleanup(f)))
#define _cleanup_free_  _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define TAKE_FD(fd)                                                                                \
        ({                                                                                         \
                int _t = (fd);                                                                     \
                (fd) = -1;                                                                         \
                _t;                                                                                \
        })
#define TAKE_PTR(p)                                                                                \
        ({                                                                                         \
                __typeof__(p) _t = (p);                                                            \
                (p) = NULL;                                                                        \
                _t;                                                                                \
        })
#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))

typedef struct Exec Exec;     /* one running exec request (ops_exec.c) */
typedef struct Upload Upload; /* one write_file awaiting uploads (ops_fs.c) */

typedef struct Server {
        int fd;      /* the connection, -1 between connections */
        int sigfd;   /* signalfd for SIGCHLD */
        bool pid1;   /* running as init: poweroff really powers off */
        bool debug;  /* log each op to stderr */
        bool quit;   /* poweroff outside PID 1: stop serving after this frame */
        bool broken; /* a write to the connection failed */
        ProtoReader rd;
        ProtoWriter wr;
        Exec *execs;
        Upload *uploads;
        uint8_t *buf; /* PROTO_CHUNK bytes of scratch for file and pipe reads */
        struct pollfd *pfd;
        size_t pfd_cap;
} Server;

/* ---- init.c ---- */

/* Logs one line "provium-agent: ..." to stderr (the console when PID 1). */
void agent_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* PID-1 setup: mounts, environment, kernel modules. Logs failures and carries on. */
void init_pid1(void);
/* True when the kernel command line (PID 1) or PROVIUM_AGENT_DEBUG asks for op logging. */
bool init_debug_requested(bool pid1);
/* Powers off (or reboots) as PID 1; returns only on failure, with -errno. */
int init_poweroff(bool reboot);
/* Leaves the agent: exit(code) normally, power off as PID 1 (init must never exit). */
_Noreturn void init_exit(bool pid1, int code);
/* Opens fds 0-2 on /dev/null (or /dev/console) where they are closed. */
void init_ensure_stdio(void);

/* ---- server.c ---- */

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t agent_now_ns(void);
int server_init(Server *s, bool pid1);
void server_done(Server *s);
/* Serves one connection on fd (not taken over). Returns 0 on EOF, 1 when asked to quit,
 * -EBADMSG/-EMSGSIZE on a bad frame, another -errno when the connection failed. All exec
 * and upload state of the connection is dropped on return. */
int server_serve(Server *s, int fd);
/* Sends the frame begun with proto_begin on s->wr. Returns 0 or -errno (connection dead). */
int server_flush(Server *s);
/* Begins a reply {id, ok: true} with n_extra more pairs to pack before server_flush(). */
void server_begin_ok(Server *s, uint64_t id, uint32_t n_extra);
/* Error reply whose msg is the printf-formatted text, ": ", and strerror(err). */
int server_reply_errno(Server *s, uint64_t id, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* EINVAL reply for a field that is missing (r == 0) or mistyped (r < 0). */
int server_reply_field(Server *s, uint64_t id, const char *op, const char *field, int r);
int server_send_chunk(Server *s, uint64_t id, const char *kind, const void *p, size_t n);

/* ---- ops_exec.c ---- */

int exec_start(Server *s, uint64_t id, const msgpack_object *req);
size_t exec_count(const Server *s);
/* Adds the pipes of running execs to pfd[] and returns how many it added. */
size_t exec_poll_fill(Server *s, struct pollfd *pfd);
/* Handles revents of the fds exec_poll_fill() added. Returns 0 or a connection -errno. */
int exec_poll_handle(Server *s, const struct pollfd *pfd);
/* Reaps every exited child and routes statuses to their execs; orphans are just reaped. */
void exec_reap(Server *s);
/* Milliseconds until the next exec deadline, -1 for none. */
int exec_poll_timeout(const Server *s);
/* Applies timeouts and grace periods and replies for finished execs. Returns 0 or -errno. */
int exec_tick(Server *s);
/* Connection lost: kills every running exec's process group and forgets its output. */
void exec_detach_all(Server *s);
bool exec_id_busy(const Server *s, uint64_t id);

/* ---- ops_fs.c ---- */

int fs_read_file(Server *s, uint64_t id, const msgpack_object *req);
int fs_write_file(Server *s, uint64_t id, const msgpack_object *req);
int fs_upload(Server *s, uint64_t id, const msgpack_object *req);
int fs_stat(Server *s, uint64_t id, const msgpack_object *req);
int fs_mkdir(Server *s, uint64_t id, const msgpack_object *req);
void fs_drop_uploads(Server *s);
bool fs_id_busy(const Server *s, uint64_t id);
