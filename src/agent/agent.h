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

typedef struct Exec Exec;     /* one running exec or spawn request (ops_exec.c) */
typedef struct Upload Upload; /* one write_file awaiting uploads (ops_fs.c) */
typedef struct Reader Reader; /* one read_file still streaming (ops_fs.c) */
typedef struct Handle Handle; /* one open file handle (ops_handle.c) */
typedef struct Tail Tail;     /* one tail request (ops_handle.c) */
typedef struct SysJob SysJob; /* one syscall/ioctl running in a helper thread (ops_sys.c) */

/* Headroom before the data in Server.buf, so a chunk's frame header can be written in front of
 * data read straight into the buffer (one write, no copy). */
#define SERVER_HEAD 64

/* One connection's state; each connection has its own thread and its own Server. */
typedef struct Server {
        int fd;           /* the connection, -1 between connections */
        const char *port; /* the port name for hello, "fd" in host mode */
        bool pid1;        /* running as init: poweroff really powers off */
        bool debug;       /* log each op to stderr */
        bool quit;        /* poweroff outside PID 1: stop serving after this frame */
        bool broken;      /* a write to the connection failed */
        ProtoReader rd;
        ProtoWriter wr;
        Exec *execs;
        Upload *uploads;
        Reader *readers;
        SysJob *sysjobs;
        Handle *handles;
        uint64_t next_handle; /* handle numbers are never reused on a connection */
        size_t n_handles;
        Tail *tails;
        uint8_t *buf; /* SERVER_HEAD + PROTO_CHUNK bytes of scratch for file and pipe reads */
        struct pollfd *pfd;
        size_t pfd_cap;
        size_t pfd_base[4]; /* where the execs', handles', files' and syscalls' fds start */
} Server;

/* ---- init.c ---- */

/* Logs one line "provium-agent: ..." to stderr (the console when PID 1). */
void agent_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* CLOCK_MONOTONIC when init_pid1() had loaded the console's modules (for debug logs). */
extern int64_t init_modules_ns;
/* PID-1 setup: mounts, environment, and the kernel modules the console needs (those listed up
 * to virtio_console). Logs failures and carries on. */
void init_pid1(void);
/* PID 1 of a local VM (--local): loopback, environment, hostname; no mount, no module. */
void init_local(void);
/* Whether init_local() ran: power off is then the end of PID 1, not a reboot(2). */
bool init_is_local(void);
/* ---- modules.c ---- */

/* Loads the modules the console needs (provium.order up to virtio_console); init_pid1's. */
void modules_load_boot(void);
/* Loads a module of provium.order or provium.bydevice now, ahead of its turn (the background
 * thread's later attempt counts EEXIST as loaded). Returns 0, -ENOENT when neither lists it,
 * or -errno. */
int modules_load_listed(const char *name);
/* Starts the thread that loads the remaining modules once modules_release() is called (or
 * after a while), and the drivers of the virtio devices there and hot-plugged later. Call with
 * SIGCHLD blocked, after init_pid1(); a no-op when nothing is left. */
void modules_start(void);
/* Lets the module thread begin (the agent has answered its first hello). Thread-safe, cheap. */
void modules_release(void);
/* Waits until every listed module has been tried (for ops that need disks or NICs). Returns at
 * once outside PID 1 or when nothing was deferred. Thread-safe. */
void modules_wait(void);
/* Like modules_wait(), but leaves the deferred modules their usual start (no early release). */
void modules_wait_loaded(void);
/* Loads the on-demand module name (shipped in /lib/modules/provium.ondemand, not loaded at boot)
 * after its dependencies listed there. Returns 0 (also when already loaded) or -errno: -ENOENT
 * when the list or the module is missing (outside PID 1, or another image). Thread-safe. */
int modules_load_ondemand(const char *name);
/* True when the kernel command line (PID 1) or PROVIUM_AGENT_DEBUG asks for op logging. */
bool init_debug_requested(bool pid1);
/* The agent's ports the host gave this VM (provium.ports=N on the kernel command line, the main
 * one and the workers), or 0 when it does not say. */
int init_ports_expected(void);
/* Leaves the agent: exit(code) normally, power off as PID 1 (init must never exit). */
_Noreturn void init_exit(bool pid1, int code);
/* Opens fds 0-2 on /dev/null (or /dev/console) where they are closed. */
void init_ensure_stdio(void);

/* ---- hwrng.c ---- */

/* Replaces /dev/hwrng with a FIFO that a thread keeps full with the stream of seed (PID 1,
 * provium.rng_seed on the command line). Returns 0, or -errno after logging the failed step
 * (and then leaves no FIFO behind). */
int hwrng_start(uint64_t seed);
/* Gives /dev/hwrng the stream of seed from its start: a new FIFO when there is none yet,
 * else the same one emptied (the hwrng op). Returns 0 or -errno, logged. */
int hwrng_reseed(uint64_t seed);

/* ---- power.c ---- */

/* PID 1's clean shutdown: SIGTERM to every process, up to 2 s for them to exit (reaping them),
 * SIGKILL to the rest, sync, then power off (or reboot). No wait when no process is left.
 * Returns only on failure, with -errno. Thread-safe. */
int power_off(bool reboot);
/* Starts the thread that watches the ACPI power button: as PID 1, every input device named
 * "Power Button" (once the deferred modules are loaded), or the evdev device path when not
 * NULL (borrowed for the process's life). KEY_POWER pressed logs "power button: powering off"
 * and calls power_off() as PID 1; outside PID 1 it calls agent_request_quit(). A no-op outside
 * PID 1 without path. Call with SIGCHLD blocked. Returns 0 or -errno (no thread). */
int power_button_start(const char *path, bool pid1, bool debug);

/* ---- main.c ---- */

/* Makes the agent leave as after poweroff outside PID 1 (main thread exits 0). Thread-safe. */
void agent_request_quit(void);

/* ---- server.c ---- */

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t agent_now_ns(void);
/* Prepares a connection's state. port is borrowed for the Server's life. Returns 0 or -ENOMEM. */
int server_init(Server *s, const char *port, bool pid1, bool debug);
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
/* Sends a chunk whose n payload bytes are already at s->buf + SERVER_HEAD (no copy). */
int server_send_buf(Server *s, uint64_t id, const char *kind, size_t n);
/* The same chunk, then the frame begun with proto_begin on s->wr (a last reply), in one write. */
int server_send_buf_and_flush(Server *s, uint64_t id, const char *kind, size_t n);
/* True when id names a request in flight on this connection. */
bool server_id_busy(const Server *s, uint64_t id);
/* Milliseconds from now until the monotonic time at_ns (>= 0), or -1 when at_ns is 0. */
int server_ms_until(int64_t at_ns);

/* ---- child.c ---- */

/* What to run: parsed from an exec or spawn request (ops_exec.c), used by the child. */
typedef struct ChildSpec {
        char **argv; /* NULL-terminated, owned */
        char **env;  /* name, value, name, value, ..., NULL; owned */
        char *cwd;
        const char *in; /* stdin bytes in the request, or NULL */
        size_t in_len;
        uint64_t timeout_ms;
        bool pty;            /* spawn on a new pseudo-terminal (stdin, stdout, stderr) */
        uint16_t rows, cols; /* its window size */
} ChildSpec;

/* Why a child failed before exec. */
enum { CHILD_STEP_NONE = -1, CHILD_STEP_SETUP, CHILD_STEP_CHDIR, CHILD_STEP_EXEC };
typedef struct ChildFail {
        int step; /* CHILD_STEP_SETUP, _CHDIR or _EXEC */
        int err;
} ChildFail;

/* Raises RLIMIT_NOFILE for the agent and remembers the old limit for children; call once. */
void child_init_limits(void);
/* The calling thread runs ahead of the commands it starts (nice -5; they get 0 back). For the
 * agent's threads as PID 1 of a guest only, not on a host (--local). */
void child_raise_priority(void);
/* Forks a child that runs sp with in/out/err as fds 0-2, in its own session, and records it in
 * the child table (owned by the caller's connection). Returns the pid; 0 when the child failed
 * before its exec (it is reaped, and *ret_fail says why); or -errno. Thread-safe. */
pid_t child_fork(const ChildSpec *sp, int in, int out, int err, ChildFail *ret_fail);
/* /dev/null opened read-only (close-on-exec) at child_init_limits(), or -EBADF. */
int child_devnull(void);
/* Reaps pid if it has exited (never blocks). Returns 1 with *ret_status, 0 while it runs.
 * A pid reaped elsewhere is reported as killed by SIGKILL. Thread-safe. */
int child_try_reap(pid_t pid, int *ret_status);
/* Gives pid up to the orphan reaper. Thread-safe. */
void child_disown(pid_t pid);
/* Reaps zombies that no connection owns (PID 1's orphans). Returns true when a zombie owned by
 * a connection is waiting, so the caller should look again soon. Thread-safe. */
bool child_reap_orphans(void);

/* ---- ops_exec.c ---- */

int exec_start(Server *s, uint64_t id, const msgpack_object *req);
size_t exec_count(const Server *s);
/* Adds the pipes of running execs to pfd[] and returns how many it added. */
size_t exec_poll_fill(Server *s, struct pollfd *pfd);
/* Handles revents of the fds exec_poll_fill() added. Returns 0 or a connection -errno. */
int exec_poll_handle(Server *s, const struct pollfd *pfd);
int exec_proc_write(Server *s, uint64_t id, const msgpack_object *req);
int exec_proc_close_stdin(Server *s, uint64_t id, const msgpack_object *req);
int exec_proc_signal(Server *s, uint64_t id, const msgpack_object *req);
int exec_proc_resize(Server *s, uint64_t id, const msgpack_object *req);
int exec_spawn_op(Server *s, uint64_t id, const msgpack_object *req);
/* cancel/reset: kills the process of request target (or every process when all). */
void exec_cancel(Server *s, uint64_t target, bool all);
/* Fails a pending proc_write target with ECANCELED. Returns 0 or a connection -errno. */
int exec_cancel_write(Server *s, uint64_t target);
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
/* Connection gone: drops every read_file and upload without replies. */
void fs_drop_all(Server *s);
bool fs_id_busy(const Server *s, uint64_t id);
/* Ends the read_file or upload target (or all) with ECANCELED. Returns 0 or a connection
 * -errno. */
int fs_cancel(Server *s, uint64_t target, bool all);
/* Upper bound of the fds fs_poll_fill() adds. */
size_t fs_count(const Server *s);
/* Adds the fds of parked read_files and uploads to pfd[]; returns how many it added. */
size_t fs_poll_fill(Server *s, struct pollfd *pfd);
/* Moves on the read_files and uploads whose fds are ready. Returns 0 or a connection -errno. */
int fs_poll_handle(Server *s, const struct pollfd *pfd);
/* 0 when a read_file has more to send now, the FIFO open retry period, or -1. */
int fs_poll_timeout(const Server *s);
/* Streams the read_files that have more now and retries parked opens. Returns 0 or -errno. */
int fs_tick(Server *s);

/* ---- ops_handle.c ---- */

int hnd_open(Server *s, uint64_t id, const msgpack_object *req);
int hnd_fread(Server *s, uint64_t id, const msgpack_object *req);
int hnd_fwrite(Server *s, uint64_t id, const msgpack_object *req);
int hnd_seek(Server *s, uint64_t id, const msgpack_object *req);
int hnd_close(Server *s, uint64_t id, const msgpack_object *req);
int hnd_tail(Server *s, uint64_t id, const msgpack_object *req);
/* The guest fd of handle num, or -EBADF. */
int hnd_fd(const Server *s, uint64_t num);
size_t hnd_count(const Server *s);
size_t hnd_poll_fill(Server *s, struct pollfd *pfd);
int hnd_poll_handle(Server *s, const struct pollfd *pfd);
int hnd_poll_timeout(const Server *s);
/* Forwards what tails gained. Returns 0 or a connection -errno. */
int hnd_tick(Server *s);
bool hnd_id_busy(const Server *s, uint64_t id);
/* Ends the pending fread/fwrite or tail target (every one when all) with ECANCELED; with all,
 * also closes every handle. Returns 0 or a connection -errno. */
int hnd_cancel(Server *s, uint64_t target, bool all);
/* Connection gone: closes handles and drops tails without replies. */
void hnd_drop_all(Server *s);

/* ---- ops_net.c ---- */

int net_netem(Server *s, uint64_t id, const msgpack_object *req);

/* ---- ops_sys.c ---- */

int sys_syscall(Server *s, uint64_t id, const msgpack_object *req);
int sys_ioctl(Server *s, uint64_t id, const msgpack_object *req);
size_t sys_count(const Server *s);
/* Adds the completion eventfds of running calls to pfd[]; returns how many it added. */
size_t sys_poll_fill(Server *s, struct pollfd *pfd);
/* Replies for the calls that finished. Returns 0 or a connection -errno. */
int sys_poll_handle(Server *s, const struct pollfd *pfd);
bool sys_id_busy(const Server *s, uint64_t id);
/* Ends call target (every one when all) with ECANCELED at once; its helper thread finishes the
 * call on its own and frees it. Returns 0 or a connection -errno. */
int sys_cancel(Server *s, uint64_t target, bool all);
/* Connection gone: abandons every running call without replies. */
void sys_drop_all(Server *s);
