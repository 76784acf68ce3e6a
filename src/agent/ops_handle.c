/* ops_handle.c: file handles of a connection (open, fread, fwrite, seek, close) and tail.
 *
 * Handles are opened O_NONBLOCK. An fread or fwrite that would block is parked on its handle
 * (one at a time per handle) and finished from the connection's poll loop, so cancel and the
 * other requests of the connection keep working meanwhile. Tails poll their file every
 * TAIL_POLL_MS and follow the path like tail -F: a missing path is waited for, and a path that
 * comes to name another file (re-created, replaced by rename) is reopened and read from 0.
 *
 * Sections: handles, open/close/seek, fread/fwrite, tail, loop hooks.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "agent.h"

#define HND_MAX_PER_CONN 1024
#define TAIL_POLL_MS     25
#define TAIL_MAX_CHUNKS  16 /* chunks a tail forwards per turn of the loop */

enum { PEND_NONE, PEND_READ, PEND_WRITE };

struct Handle {
        Handle *next;
        uint64_t num; /* the handle number the host uses */
        int fd;
        char *path;
        int pend;         /* PEND_*: a parked fread or fwrite */
        uint64_t pend_id; /* its request */
        size_t pend_n;    /* fread: bytes wanted */
        uint8_t *wdata;   /* fwrite: bytes still to write from woff */
        size_t wlen, woff;
        int pidx; /* poll index, -1 when not polled */
};

struct Tail {
        Tail *next;
        uint64_t id;
        int fd; /* -1 while the path does not exist */
        char *path;
        bool regular; /* follow by position; else read what arrives */
        uint64_t off; /* next byte to send */
        dev_t dev;    /* the file fd reads */
        ino_t ino;
        int64_t check_ns; /* when to look at the path again */
};

/* ---- handles ---- */

static void hnd_pend_clear(Handle *h)
{
        free(h->wdata);
        h->wdata = NULL;
        h->wlen = h->woff = h->pend_n = 0;
        h->pend = PEND_NONE;
        h->pend_id = 0;
}

static Handle *hnd_free(Handle *h)
{
        if (!h)
                return NULL;
        hnd_pend_clear(h);
        closep(&h->fd);
        free(h->path);
        free(h);
        return NULL;
}

static Handle *hnd_find(const Server *s, uint64_t num)
{
        for (Handle *h = s->handles; h; h = h->next)
                if (h->num == num)
                        return h;
        return NULL;
}

int hnd_fd(const Server *s, uint64_t num)
{
        Handle *h = hnd_find(s, num);
        return h ? h->fd : -EBADF;
}

/* Finds the handle named by req's fd, or sends the error reply (status in *ret). */
static Handle *hnd_lookup(Server *s, uint64_t id, const msgpack_object *req, const char *op,
                          int *ret)
{
        uint64_t num;
        int r = proto_get_uint(req, "fd", &num);
        if (r <= 0) {
                *ret = server_reply_field(s, id, op, "fd", r);
                return NULL;
        }
        Handle *h = hnd_find(s, num);
        if (!h)
                *ret = server_reply_errno(s, id, EBADF, "%s %" PRIu64, op, num);
        return h;
}

/* ---- open/close/seek ---- */

/* Parses fopen-style flags. Returns the open(2) flags or -EINVAL. */
static int hnd_parse_flags(const char *f, size_t n)
{
        if (n == 0)
                return -EINVAL;
        int acc, fl;
        switch (f[0]) {
        case 'r':
                acc = O_RDONLY;
                fl = 0;
                break;
        case 'w':
                acc = O_WRONLY;
                fl = O_CREAT | O_TRUNC;
                break;
        case 'a':
                acc = O_WRONLY;
                fl = O_CREAT | O_APPEND;
                break;
        default:
                return -EINVAL;
        }
        for (size_t i = 1; i < n; i++) {
                if (f[i] == '+')
                        acc = O_RDWR;
                else if (f[i] == 'x' && f[0] != 'r')
                        fl |= O_EXCL;
                else if (f[i] != 'b' && f[i] != 'e')
                        return -EINVAL;
        }
        return acc | fl;
}

int hnd_open(Server *s, uint64_t id, const msgpack_object *req)
{
        _cleanup_free_ char *path = NULL;
        int r = proto_dup_str(req, "path", &path);
        if (r <= 0)
                return server_reply_field(s, id, "open", "path", r);
        const char *fs;
        size_t fn;
        r = proto_get_bytes(req, "flags", &fs, &fn);
        int flags = r > 0 ? hnd_parse_flags(fs, fn) : -EINVAL;
        if (flags < 0)
                return server_reply_field(s, id, "open", "flags", r <= 0 ? r : -EINVAL);
        uint64_t mode = 0644;
        r = proto_get_uint(req, "mode", &mode);
        if (r < 0 || mode > 07777)
                return server_reply_field(s, id, "open", "mode", -EINVAL);
        if (s->n_handles >= HND_MAX_PER_CONN)
                return server_reply_errno(s, id, EMFILE, "open %s", path);
        Handle *h = calloc(1, sizeof *h);
        if (!h)
                return server_reply_errno(s, id, ENOMEM, "open %s", path);
        h->fd = open(path, flags | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, (mode_t) mode);
        if (h->fd < 0) {
                int err = errno;
                hnd_free(h);
                return server_reply_errno(s, id, err, "open %s", path);
        }
        h->num = s->next_handle++;
        h->path = TAKE_PTR(path);
        h->pidx = -1;
        h->next = s->handles;
        s->handles = h;
        s->n_handles++;
        server_begin_ok(s, id, 1);
        proto_kv_uint(&s->wr, "fd", h->num);
        return server_flush(s);
}

/* Ends h's parked request with ECANCELED. Returns 0 or a connection -errno. */
static int hnd_pend_cancel(Server *s, Handle *h)
{
        if (h->pend == PEND_NONE)
                return 0;
        uint64_t pid = h->pend_id;
        const char *op = h->pend == PEND_READ ? "fread" : "fwrite";
        hnd_pend_clear(h);
        return server_reply_errno(s, pid, ECANCELED, "%s %s", op, h->path);
}

/* Unlinks and frees handle h, cancelling its parked request. Returns 0 or -errno. */
static int hnd_remove(Server *s, Handle *h, int *ret_close_err)
{
        for (Handle **p = &s->handles; *p; p = &(*p)->next)
                if (*p == h) {
                        *p = h->next;
                        break;
                }
        s->n_handles--;
        int r = hnd_pend_cancel(s, h);
        int fd = TAKE_FD(h->fd);
        if (close(fd) < 0 && ret_close_err)
                *ret_close_err = errno;
        hnd_free(h);
        return r;
}

int hnd_close(Server *s, uint64_t id, const msgpack_object *req)
{
        int r;
        Handle *h = hnd_lookup(s, id, req, "close", &r);
        if (!h)
                return r;
        int err = 0;
        uint64_t num = h->num;
        r = hnd_remove(s, h, &err);
        if (r < 0)
                return r;
        if (err && err != EINTR)
                return server_reply_errno(s, id, err, "close %" PRIu64, num);
        server_begin_ok(s, id, 0);
        return server_flush(s);
}

int hnd_seek(Server *s, uint64_t id, const msgpack_object *req)
{
        int r;
        Handle *h = hnd_lookup(s, id, req, "seek", &r);
        if (!h)
                return r;
        const msgpack_object *w = proto_get(req, "whence");
        int whence = proto_str_eq(w, "set")   ? SEEK_SET
                     : proto_str_eq(w, "cur") ? SEEK_CUR
                     : proto_str_eq(w, "end") ? SEEK_END
                                              : -1;
        if (whence < 0)
                return server_reply_field(s, id, "seek", "whence", w ? -EINVAL : 0);
        int64_t off = 0;
        r = proto_get_int(req, "offset", &off);
        if (r < 0)
                return server_reply_field(s, id, "seek", "offset", r);
        off_t pos = lseek(h->fd, (off_t) off, whence);
        if (pos < 0)
                return server_reply_errno(s, id, errno, "seek %s", h->path);
        server_begin_ok(s, id, 1);
        proto_kv_uint(&s->wr, "pos", (uint64_t) pos);
        return server_flush(s);
}

/* ---- fread/fwrite ---- */

/* Tries the read of a fread. Returns 1 when replied, 0 when it would block, or -errno. */
static int hnd_try_read(Server *s, Handle *h, uint64_t id, size_t n)
{
        ssize_t k;
        do
                k = n ? read(h->fd, s->buf, n) : 0;
        while (k < 0 && errno == EINTR);
        if (k < 0 && errno == EAGAIN)
                return 0;
        if (k < 0) {
                int r = server_reply_errno(s, id, errno, "fread %s", h->path);
                return r < 0 ? r : 1;
        }
        server_begin_ok(s, id, 1);
        proto_kv_bin(&s->wr, "data", s->buf, (size_t) k);
        int r = server_flush(s);
        return r < 0 ? r : 1;
}

int hnd_fread(Server *s, uint64_t id, const msgpack_object *req)
{
        int r;
        Handle *h = hnd_lookup(s, id, req, "fread", &r);
        if (!h)
                return r;
        uint64_t n;
        r = proto_get_uint(req, "n", &n);
        if (r <= 0)
                return server_reply_field(s, id, "fread", "n", r);
        if (n > PROTO_CHUNK)
                n = PROTO_CHUNK;
        if (h->pend != PEND_NONE)
                return server_reply_errno(s, id, EBUSY, "fread %" PRIu64, h->num);
        r = hnd_try_read(s, h, id, (size_t) n);
        if (r != 0)
                return r < 0 ? r : 0;
        h->pend = PEND_READ;
        h->pend_id = id;
        h->pend_n = (size_t) n;
        return 0;
}

/* Writes what h still holds. Returns 1 when finished (replied), 0 when it would block, or
 * -errno for the connection. */
static int hnd_try_write(Server *s, Handle *h)
{
        while (h->woff < h->wlen) {
                ssize_t k = write(h->fd, h->wdata + h->woff, h->wlen - h->woff);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0 && errno == EAGAIN)
                        return 0;
                if (k < 0) {
                        int err = errno;
                        uint64_t wid = h->pend_id;
                        hnd_pend_clear(h);
                        int r = server_reply_errno(s, wid, err, "fwrite %s", h->path);
                        return r < 0 ? r : 1;
                }
                h->woff += (size_t) k;
        }
        uint64_t wid = h->pend_id;
        size_t n = h->wlen;
        hnd_pend_clear(h);
        server_begin_ok(s, wid, 1);
        proto_kv_uint(&s->wr, "n", n);
        int r = server_flush(s);
        return r < 0 ? r : 1;
}

int hnd_fwrite(Server *s, uint64_t id, const msgpack_object *req)
{
        int r;
        Handle *h = hnd_lookup(s, id, req, "fwrite", &r);
        if (!h)
                return r;
        const char *p;
        size_t n;
        r = proto_get_bytes(req, "data", &p, &n);
        if (r <= 0)
                return server_reply_field(s, id, "fwrite", "data", r);
        if (h->pend != PEND_NONE)
                return server_reply_errno(s, id, EBUSY, "fwrite %" PRIu64, h->num);
        if (n > 0 && !(h->wdata = malloc(n)))
                return server_reply_errno(s, id, ENOMEM, "fwrite %s", h->path);
        if (n > 0)
                memcpy(h->wdata, p, n);
        h->wlen = n;
        h->woff = 0;
        h->pend = PEND_WRITE;
        h->pend_id = id;
        r = hnd_try_write(s, h);
        return r < 0 ? r : 0;
}

/* ---- tail ---- */

static Tail *tail_free(Tail *t)
{
        if (!t)
                return NULL;
        closep(&t->fd);
        free(t->path);
        free(t);
        return NULL;
}

/* Opens t->path and reads from its end (from_end) or from 0. Returns 0, or -errno with the
 * operation that failed in *ret_what (-ENOENT: the path does not exist). */
static int tail_open(Tail *t, bool from_end, const char **ret_what)
{
        *ret_what = "open";
        _cleanup_close_ int fd = open(t->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        struct stat st;
        *ret_what = "stat";
        if (fstat(fd, &st) < 0)
                return -errno;
        *ret_what = "tail";
        if (S_ISDIR(st.st_mode))
                return -EISDIR;
        closep(&t->fd);
        t->fd = TAKE_FD(fd);
        t->regular = S_ISREG(st.st_mode);
        t->off = from_end ? (uint64_t) st.st_size : 0;
        t->dev = st.st_dev;
        t->ino = st.st_ino;
        return 0;
}

int hnd_tail(Server *s, uint64_t id, const msgpack_object *req)
{
        _cleanup_free_ char *path = NULL;
        int r = proto_dup_str(req, "path", &path);
        if (r <= 0)
                return server_reply_field(s, id, "tail", "path", r);
        Tail *t = calloc(1, sizeof *t);
        if (!t)
                return server_reply_errno(s, id, ENOMEM, "tail %s", path);
        *t = (Tail){.id = id, .fd = -1, .path = TAKE_PTR(path)};
        const char *what;
        r = tail_open(t, true, &what);
        if (r < 0 && r != -ENOENT) {
                r = server_reply_errno(s, id, -r, "%s %s", what, t->path);
                tail_free(t);
                return r;
        }
        t->check_ns = agent_now_ns() + TAIL_POLL_MS * 1000000LL;
        t->next = s->tails;
        s->tails = t;
        return 0;
}

/* Forwards what t's file gained. Returns 0 or a connection -errno. */
static int tail_step(Server *s, Tail *t)
{
        for (int i = 0; i < TAIL_MAX_CHUNKS && t->fd >= 0; i++) {
                size_t want = PROTO_CHUNK;
                ssize_t k;
                if (t->regular) {
                        struct stat st;
                        if (fstat(t->fd, &st) < 0)
                                return 0;
                        if ((uint64_t) st.st_size < t->off)
                                t->off = 0; /* truncated: start over */
                        if ((uint64_t) st.st_size == t->off)
                                return 0;
                        if ((uint64_t) st.st_size - t->off < want)
                                want = (size_t) ((uint64_t) st.st_size - t->off);
                        k = pread(t->fd, s->buf + SERVER_HEAD, want, (off_t) t->off);
                } else
                        k = read(t->fd, s->buf + SERVER_HEAD, want);
                if (k <= 0)
                        return 0;
                t->off += (uint64_t) k;
                int r = server_send_buf(s, t->id, "data", (size_t) k);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Follows t's path (every TAIL_POLL_MS): opens it once it exists, and once it names another
 * file, forwards what the old one still holds and switches to the new one from 0. A path that
 * goes away leaves the old file followed. Returns 1 when the tail ended with an error reply
 * (the path became a directory, or cannot be opened), 0, or a connection -errno. */
static int tail_follow(Server *s, Tail *t)
{
        int64_t now = agent_now_ns();
        if (now < t->check_ns)
                return 0;
        t->check_ns = now + TAIL_POLL_MS * 1000000LL;
        if (t->fd >= 0) {
                struct stat st;
                if (stat(t->path, &st) < 0 || (st.st_dev == t->dev && st.st_ino == t->ino))
                        return 0;
                int r = tail_step(s, t);
                if (r < 0)
                        return r;
                closep(&t->fd);
        }
        const char *what;
        int r = tail_open(t, false, &what);
        if (r >= 0 || r == -ENOENT)
                return 0;
        r = server_reply_errno(s, t->id, -r, "%s %s", what, t->path);
        return r < 0 ? r : 1;
}

/* ---- loop hooks ---- */

size_t hnd_count(const Server *s)
{
        return s->n_handles;
}

bool hnd_id_busy(const Server *s, uint64_t id)
{
        for (const Handle *h = s->handles; h; h = h->next)
                if (h->pend != PEND_NONE && h->pend_id == id)
                        return true;
        for (const Tail *t = s->tails; t; t = t->next)
                if (t->id == id)
                        return true;
        return false;
}

size_t hnd_poll_fill(Server *s, struct pollfd *pfd)
{
        size_t n = 0;
        for (Handle *h = s->handles; h; h = h->next) {
                h->pidx = -1;
                if (h->pend == PEND_NONE)
                        continue;
                h->pidx = (int) n;
                pfd[n++] =
                    (struct pollfd){.fd = h->fd, .events = h->pend == PEND_READ ? POLLIN : POLLOUT};
        }
        return n;
}

int hnd_poll_handle(Server *s, const struct pollfd *pfd)
{
        for (Handle *h = s->handles; h; h = h->next) {
                if (h->pidx < 0 || !pfd[h->pidx].revents || h->pend == PEND_NONE)
                        continue;
                int r;
                if (h->pend == PEND_READ) {
                        r = hnd_try_read(s, h, h->pend_id, h->pend_n);
                        if (r > 0)
                                hnd_pend_clear(h);
                } else
                        r = hnd_try_write(s, h);
                if (r < 0)
                        return r;
        }
        return 0;
}

int hnd_poll_timeout(const Server *s)
{
        return s->tails ? TAIL_POLL_MS : -1;
}

int hnd_tick(Server *s)
{
        for (Tail **p = &s->tails; *p;) {
                Tail *t = *p;
                int r = tail_follow(s, t);
                if (r == 0)
                        r = tail_step(s, t);
                if (r < 0)
                        return r;
                if (r == 0) {
                        p = &t->next;
                        continue;
                }
                *p = t->next;
                tail_free(t);
        }
        return 0;
}

int hnd_cancel(Server *s, uint64_t target, bool all)
{
        int r = 0;
        for (Tail **p = &s->tails; *p;) {
                Tail *t = *p;
                if (!all && t->id != target) {
                        p = &t->next;
                        continue;
                }
                *p = t->next;
                if (r >= 0)
                        r = server_reply_errno(s, t->id, ECANCELED, "tail %s", t->path);
                tail_free(t);
        }
        for (Handle *h = s->handles; h && r >= 0; h = h->next)
                if (all || (h->pend != PEND_NONE && h->pend_id == target))
                        r = hnd_pend_cancel(s, h);
        while (all && r >= 0 && s->handles)
                r = hnd_remove(s, s->handles, NULL);
        return r;
}

void hnd_drop_all(Server *s)
{
        while (s->tails) {
                Tail *t = s->tails;
                s->tails = t->next;
                tail_free(t);
        }
        while (s->handles) {
                Handle *h = s->handles;
                s->handles = h->next;
                hnd_free(h);
        }
        s->n_handles = 0;
}
