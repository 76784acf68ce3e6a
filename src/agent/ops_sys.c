/* ops_sys.c: layer 0: raw syscall(2) and ioctl(2) with integer or buffer arguments.
 *
 * The host is not trusted: argument counts and buffer sizes are bounded, and calls that would
 * replace, fork or end the agent are refused with EPERM. Other calls run as asked, in the
 * connection's thread (a blocking call blocks only this connection).
 *
 * Sections: arguments, syscall, ioctl.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>

#include "agent.h"

#define SYS_MAX_ARGS  6
#define SYS_MAX_BUF   (1u << 20)                      /* bytes per buffer argument */
#define SYS_MAX_TOTAL (PROTO_MAX_FRAME - (64u << 10)) /* all buffers, so the reply fits */

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
        SysArg a[SYS_MAX_ARGS] = {0};
        size_t total = 0;
        for (size_t i = 0; i < n; i++) {
                r = arg_parse(&args->via.array.ptr[i], &a[i], &total);
                if (r < 0) {
                        args_free(a, i + 1);
                        return r == -EINVAL ? server_reply_field(s, id, "syscall", "args", r)
                                            : server_reply_errno(s, id, -r, "syscall args");
                }
        }
        long reg[SYS_MAX_ARGS] = {0};
        for (size_t i = 0; i < n; i++)
                reg[i] = arg_reg(&a[i]);
        errno = 0;
        long ret = syscall((long) nr, reg[0], reg[1], reg[2], reg[3], reg[4], reg[5]);
        int err = ret == -1 ? errno : 0;
        r = reply_result(s, id, ret, err, a, n);
        args_free(a, n);
        return r;
}

/* ---- ioctl ---- */

int sys_ioctl(Server *s, uint64_t id, const msgpack_object *req)
{
        uint64_t request;
        int r = proto_get_uint(req, "request", &request);
        if (r <= 0 || request > UINT32_MAX)
                return server_reply_field(s, id, "ioctl", "request", r <= 0 ? r : -EINVAL);
        const msgpack_object *arg = proto_get(req, "arg");
        SysArg a = {0};
        size_t total = 0;
        if (arg && arg->type != MSGPACK_OBJECT_NIL) {
                r = arg_parse(arg, &a, &total);
                if (r < 0) {
                        free(a.buf);
                        return r == -EINVAL ? server_reply_field(s, id, "ioctl", "arg", r)
                                            : server_reply_errno(s, id, -r, "ioctl arg");
                }
        }
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int own = -1;
        int fd;
        uint64_t num;
        int rf = proto_get_uint(req, "fd", &num);
        int rp = proto_dup_str(req, "path", &path);
        if (rf < 0 || rp < 0 || (rf > 0) == (rp > 0)) {
                free(a.buf);
                return server_reply_field(s, id, "ioctl", rf != 0 ? "fd" : "path",
                                          rf < 0 || rp < 0 ? -EINVAL
                                          : rf > 0         ? -EINVAL
                                                           : 0);
        }
        if (rf > 0) {
                fd = hnd_fd(s, num);
                if (fd < 0) {
                        free(a.buf);
                        return server_reply_errno(s, id, EBADF, "ioctl %" PRIu64, num);
                }
        } else {
                own = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
                if (own < 0) {
                        int err = errno;
                        free(a.buf);
                        return server_reply_errno(s, id, err, "open %s", path);
                }
                fd = own;
        }
        errno = 0;
        int ret = ioctl(fd, (unsigned long) request, arg_reg(&a));
        int err = ret < 0 ? errno : 0;
        r = reply_result(s, id, ret, err, &a, 1);
        free(a.buf);
        return r;
}
