/* ops_sys.c: layer 0: raw syscall(2) and ioctl(2) with integer or buffer arguments.
 *
 * The host is not trusted: argument counts and buffer sizes are bounded, and calls that would
 * replace, fork or end the agent are refused with EPERM. A call runs in a short-lived helper
 * thread, so one that blocks (a read of an empty pipe, a futex wait) never wedges the
 * connection: cancel answers ECANCELED at once and abandons the job, whose helper finishes the
 * call and frees it. Calls that act on or name the calling thread itself (gettid, unshare,
 * setns, the raw set*id calls, prctl...) run in the connection's thread, as if the connection
 * thread made them; so do FIOCLEX/FIONCLEX, which act on the descriptor itself.
 *
 * Sections: arguments, jobs (helper threads), syscall, ioctl, loop hooks.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>

#include "agent.h"

#define SYS_MAX_ARGS  6
#define SYS_MAX_BUF   (1u << 20)                      /* bytes per buffer argument */
#define SYS_MAX_TOTAL (PROTO_MAX_FRAME - (64u << 10)) /* all buffers, so the reply fits */
#define SYS_STACK     (256u << 10)                    /* helper thread stack */

typedef struct SysArg {
        bool is_buf;
        long val;     /* integer argument */
        uint8_t *buf; /* buffer argument (never NULL when is_buf) */
        size_t len;
} SysArg;

/* ---- arguments ---- */

static void args_free(SysArg *a, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(a[i].buf);
}

/* Parses one argument: an integer or {buf}, {buf, out: true} or {out: n}. Returns 0 or -EINVAL
 * / -E2BIG / -ENOMEM; *total accumulates buffer bytes. */
static int arg_parse(const msgpack_object *o, SysArg *ret, size_t *total)
{
        *ret = (SysArg){0};
        if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
                ret->val = (long) o->via.u64;
                return 0;
        }
        if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
                ret->val = (long) o->via.i64;
                return 0;
        }
        if (o->type != MSGPACK_OBJECT_MAP)
                return -EINVAL;
        const char *p = NULL;
        size_t n = 0;
        int r = proto_get_bytes(o, "buf", &p, &n);
        if (r < 0)
                return -EINVAL;
        const msgpack_object *out = proto_get(o, "out");
        if (r > 0) {
                bool b;
                if (out && proto_get_bool(o, "out", &b) < 0)
                        return -EINVAL;
        } else {
                uint64_t want;
                if (proto_get_uint(o, "out", &want) <= 0)
                        return -EINVAL;
                if (want > SYS_MAX_BUF)
                        return -E2BIG;
                n = (size_t) want;
        }
        if (n > SYS_MAX_BUF || n > SYS_MAX_TOTAL - *total)
                return -E2BIG;
        *total += n;
        ret->is_buf = true;
        ret->len = n;
        ret->buf = calloc(1, n ? n : 1);
        if (!ret->buf)
                return -ENOMEM;
        if (p && n)
                memcpy(ret->buf, p, n);
        return 0;
}

static long arg_reg(const SysArg *a)
{
        return a->is_buf ? (long) (uintptr_t) a->buf : a->val;
}

/* Packs {ret, errno, bufs} after the ok header. */
static int reply_result(Server *s, uint64_t id, long ret, int err, const SysArg *a, size_t n)
{
        size_t nb = 0;
        for (size_t i = 0; i < n; i++)
                nb += a[i].is_buf;
        server_begin_ok(s, id, 3);
        proto_kv_int(&s->wr, "ret", ret);
        proto_kv_int(&s->wr, "errno", err);
        proto_key(&s->wr, "bufs");
        msgpack_pack_array(&s->wr.pk, (uint32_t) nb);
        for (size_t i = 0; i < n; i++)
                if (a[i].is_buf) {
                        msgpack_pack_bin(&s->wr.pk, a[i].len);
                        msgpack_pack_bin_body(&s->wr.pk, a[i].buf, a[i].len);
                }
        return server_flush(s);
}

/* ---- jobs (helper threads) ---- */

struct SysJob {
        SysJob *next;     /* in the connection's list (the connection's field) */
        atomic_int refs;  /* the connection's and the helper's */
        atomic_bool done; /* ret and err are set */
        int efd;          /* eventfd the helper signals when done, -1 when run inline */
        uint64_t id;
        bool is_ioctl;
        long nr;     /* syscall number or ioctl request */
        int fd;      /* ioctl: the descriptor, owned by the job unless borrowed */
        bool own_fd; /* close fd with the job */
        SysArg a[SYS_MAX_ARGS];
        size_t n; /* arguments in a[] (ioctl: 1) */
        long ret;
        int err;
        int pidx; /* poll index, -1 when not polled */
};

static SysJob *job_new(uint64_t id, bool is_ioctl, long nr)
{
        SysJob *j = calloc(1, sizeof *j);
        if (!j)
                return NULL;
        j->id = id;
        j->is_ioctl = is_ioctl;
        j->nr = nr;
        j->efd = j->fd = j->pidx = -1;
        atomic_init(&j->refs, 1);
        atomic_init(&j->done, false);
        return j;
}

/* Drops one reference; the last one frees the job, its buffers and its descriptors. */
static void job_unref(SysJob *j)
{
        if (!j || atomic_fetch_sub_explicit(&j->refs, 1, memory_order_acq_rel) != 1)
                return;
        args_free(j->a, j->n);
        closep(&j->efd);
        if (j->own_fd)
                closep(&j->fd);
        free(j);
}

/* Makes the call; sets ret and err. */
static void job_call(SysJob *j)
{
        long reg[SYS_MAX_ARGS] = {0};
        for (size_t i = 0; i < j->n; i++)
                reg[i] = arg_reg(&j->a[i]);
        errno = 0;
        if (j->is_ioctl) {
                j->ret = ioctl(j->fd, (unsigned long) j->nr, reg[0]);
                j->err = j->ret < 0 ? errno : 0;
        } else {
                j->ret = syscall(j->nr, reg[0], reg[1], reg[2], reg[3], reg[4], reg[5]);
                j->err = j->ret == -1 ? errno : 0;
        }
}

static void *job_helper(void *arg)
{
        SysJob *j = arg;
        job_call(j);
        atomic_store_explicit(&j->done, true, memory_order_release);
        uint64_t one = 1;
        (void) !write(j->efd, &one, sizeof one); /* the job, hence efd, lives until our unref */
        job_unref(j);
        return NULL;
}

/* Starts j in a detached helper thread. Returns 0, or -errno (j is then untouched). */
static int job_spawn(SysJob *j)
{
        j->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (j->efd < 0)
                return -errno;
        pthread_attr_t attr;
        int r = pthread_attr_init(&attr);
        if (r != 0)
                return -r;
        r = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (r == 0)
                r = pthread_attr_setstacksize(&attr, SYS_STACK);
        atomic_store(&j->refs, 2);
        pthread_t t;
        if (r == 0)
                r = pthread_create(&t, &attr, job_helper, j);
        (void) pthread_attr_destroy(&attr);
        if (r != 0) {
                atomic_store(&j->refs, 1);
                return -r;
        }
        return 0;
}

static int job_reply(Server *s, SysJob *j)
{
        return reply_result(s, j->id, j->ret, j->err, j->a, j->n);
}

/* Runs j: inline when inline_ is set (or no thread can be had), else in a helper thread
 * whose completion the connection's loop answers. Takes j over. Returns 0 or -errno. */
static int job_run(Server *s, SysJob *j, bool inline_)
{
        if (!inline_ && job_spawn(j) == 0) {
                j->next = s->sysjobs;
                s->sysjobs = j;
                return 0;
        }
        job_call(j);
        int r = job_reply(s, j);
        job_unref(j);
        return r;
}

/* ---- syscall ---- */

/* Calls that would fork, replace or end the agent (or return into nowhere). */
static bool sys_refused(uint64_t nr)
{
        static const long refused[] = {
            SYS_exit,     SYS_exit_group, SYS_clone,        SYS_execve,
            SYS_execveat, SYS_reboot,     SYS_rt_sigreturn,
#ifdef SYS_fork
            SYS_fork,
#endif
#ifdef SYS_vfork
            SYS_vfork,
#endif
#ifdef SYS_clone3
            SYS_clone3,
#endif
        };
        for (size_t i = 0; i < ELEMENTSOF(refused); i++)
                if (nr == (uint64_t) refused[i])
                        return true;
        return false;
}

/* Calls that act on or name the calling thread: they run in the connection's thread. */
static bool sys_thread_bound(uint64_t nr)
{
        static const long bound[] = {
            SYS_gettid,
            SYS_set_tid_address,
            SYS_set_robust_list,
            SYS_get_robust_list,
            SYS_unshare,
            SYS_setns,
            SYS_setuid,
            SYS_setgid,
            SYS_setreuid,
            SYS_setregid,
            SYS_setresuid,
            SYS_setresgid,
            SYS_setfsuid,
            SYS_setfsgid,
            SYS_setgroups,
            SYS_capset,
            SYS_prctl,
            SYS_seccomp,
            SYS_personality,
            SYS_sched_setaffinity,
            SYS_sched_setscheduler,
            SYS_sched_setparam,
            SYS_setpriority,
            SYS_ioprio_set,
            SYS_rt_sigprocmask,
            SYS_sigaltstack,
            SYS_set_mempolicy,
#ifdef SYS_arch_prctl
            SYS_arch_prctl,
#endif
#ifdef SYS_sched_setattr
            SYS_sched_setattr,
#endif
#ifdef SYS_rseq
            SYS_rseq,
#endif
#ifdef SYS_landlock_restrict_self
            SYS_landlock_restrict_self,
#endif
        };
        for (size_t i = 0; i < ELEMENTSOF(bound); i++)
                if (nr == (uint64_t) bound[i])
                        return true;
        return false;
}

int sys_syscall(Server *s, uint64_t id, const msgpack_object *req)
{
        uint64_t nr;
        int r = proto_get_uint(req, "nr", &nr);
        if (r <= 0 || nr > 4096)
                return server_reply_field(s, id, "syscall", "nr", r <= 0 ? r : -EINVAL);
        const msgpack_object *args = proto_get(req, "args");
        if (args && args->type != MSGPACK_OBJECT_NIL &&
            (args->type != MSGPACK_OBJECT_ARRAY || args->via.array.size > SYS_MAX_ARGS))
                return server_reply_field(s, id, "syscall", "args", -EINVAL);
        size_t n = args && args->type == MSGPACK_OBJECT_ARRAY ? args->via.array.size : 0;
        if (sys_refused(nr))
                return server_reply_errno(s, id, EPERM, "syscall %" PRIu64, nr);
        SysJob *j = job_new(id, false, (long) nr);
        if (!j)
                return server_reply_errno(s, id, ENOMEM, "syscall %" PRIu64, nr);
        size_t total = 0;
        for (size_t i = 0; i < n; i++) {
                j->n = i + 1;
                r = arg_parse(&args->via.array.ptr[i], &j->a[i], &total);
                if (r < 0) {
                        job_unref(j);
                        return r == -EINVAL ? server_reply_field(s, id, "syscall", "args", r)
                                            : server_reply_errno(s, id, -r, "syscall args");
                }
        }
        return job_run(s, j, sys_thread_bound(nr));
}

/* ---- ioctl ---- */

int sys_ioctl(Server *s, uint64_t id, const msgpack_object *req)
{
        uint64_t request;
        int r = proto_get_uint(req, "request", &request);
        if (r <= 0 || request > UINT32_MAX)
                return server_reply_field(s, id, "ioctl", "request", r <= 0 ? r : -EINVAL);
        _cleanup_free_ char *path = NULL;
        uint64_t num;
        int rf = proto_get_uint(req, "fd", &num);
        int rp = proto_dup_str(req, "path", &path);
        if (rf < 0 || rp < 0 || (rf > 0) == (rp > 0))
                return server_reply_field(s, id, "ioctl", rf != 0 ? "fd" : "path",
                                          rf < 0 || rp < 0 ? -EINVAL
                                          : rf > 0         ? -EINVAL
                                                           : 0);
        SysJob *j = job_new(id, true, (long) request);
        if (!j)
                return server_reply_errno(s, id, ENOMEM, "ioctl");
        j->n = 1;
        const msgpack_object *arg = proto_get(req, "arg");
        size_t total = 0;
        if (arg && arg->type != MSGPACK_OBJECT_NIL && (r = arg_parse(arg, &j->a[0], &total)) < 0) {
                job_unref(j);
                return r == -EINVAL ? server_reply_field(s, id, "ioctl", "arg", r)
                                    : server_reply_errno(s, id, -r, "ioctl arg");
        }
        /* FIOCLEX/FIONCLEX change the descriptor itself: no copy, no thread */
        bool on_fd = request == FIOCLEX || request == FIONCLEX;
        if (rf > 0) {
                int fd = hnd_fd(s, num);
                if (fd >= 0 && !on_fd)
                        fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                if (fd < 0) {
                        int err = fd == -EBADF ? EBADF : errno;
                        job_unref(j);
                        return server_reply_errno(s, id, err, "ioctl %" PRIu64, num);
                }
                j->fd = fd;
                j->own_fd = !on_fd;
        } else {
                j->fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
                if (j->fd < 0) {
                        int err = errno;
                        job_unref(j);
                        return server_reply_errno(s, id, err, "open %s", path);
                }
                j->own_fd = true;
        }
        return job_run(s, j, on_fd);
}

/* ---- loop hooks ---- */

size_t sys_count(const Server *s)
{
        size_t n = 0;
        for (const SysJob *j = s->sysjobs; j; j = j->next)
                n++;
        return n;
}

size_t sys_poll_fill(Server *s, struct pollfd *pfd)
{
        size_t n = 0;
        for (SysJob *j = s->sysjobs; j; j = j->next) {
                j->pidx = (int) n;
                pfd[n++] = (struct pollfd){.fd = j->efd, .events = POLLIN};
        }
        return n;
}

int sys_poll_handle(Server *s, const struct pollfd *pfd)
{
        for (SysJob **p = &s->sysjobs; *p;) {
                SysJob *j = *p;
                if (j->pidx < 0 || !pfd[j->pidx].revents ||
                    !atomic_load_explicit(&j->done, memory_order_acquire)) {
                        p = &j->next;
                        continue;
                }
                *p = j->next;
                int r = job_reply(s, j);
                job_unref(j);
                if (r < 0)
                        return r;
        }
        return 0;
}

bool sys_id_busy(const Server *s, uint64_t id)
{
        for (const SysJob *j = s->sysjobs; j; j = j->next)
                if (j->id == id)
                        return true;
        return false;
}

int sys_cancel(Server *s, uint64_t target, bool all)
{
        int r = 0;
        for (SysJob **p = &s->sysjobs; *p;) {
                SysJob *j = *p;
                if (!all && j->id != target) {
                        p = &j->next;
                        continue;
                }
                *p = j->next;
                if (r >= 0)
                        r = server_reply_errno(s, j->id, ECANCELED, "%s %ld",
                                               j->is_ioctl ? "ioctl" : "syscall", j->nr);
                job_unref(j);
        }
        return r;
}

void sys_drop_all(Server *s)
{
        while (s->sysjobs) {
                SysJob *j = s->sysjobs;
                s->sysjobs = j->next;
                job_unref(j);
        }
}
