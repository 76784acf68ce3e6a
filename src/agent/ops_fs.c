/* ops_fs.c: file ops: read_file (streamed), write_file and its uploads, stat, mkdir.
 *
 * Neither read_file nor write_file may wedge the connection: files are opened O_NONBLOCK, a
 * read or write that would block is parked and moved on from the connection's poll loop, and
 * read_file sends at most FS_READ_CHUNKS chunks per turn of the loop, so an endless file
 * (/dev/zero) streams while cancel and other requests are still served. A FIFO without a reader
 * cannot be opened for writing without blocking: write_file retries the open every
 * FS_OPEN_RETRY_MS until a reader comes (or cancel).
 *
 * Sections: read_file, write_file (acks each frame once written), loop hooks, stat, mkdir.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "agent.h"

#define FS_READ_CHUNKS    16          /* chunks a read_file sends per turn of the loop */
#define FS_OPEN_RETRY_MS  25          /* write_file to a FIFO without a reader: open again */
#define FS_UPLOAD_MAX_BUF (16u << 20) /* upload bytes held while the file does not take them */

struct Reader {
        Reader *next;
        uint64_t id;
        int fd;
        char *path;
        uint64_t total; /* bytes sent */
        bool regular;   /* a regular file: a short read is its end */
        bool wait;      /* the last read would block: wait for the fd to poll readable */
        int pidx;       /* poll index, -1 when not polled */
};

/* One upload frame the file has not taken yet. */
typedef struct UpFrame {
        struct UpFrame *next;
        uint8_t *data;
        size_t len, off;
        bool eof; /* the last frame: its reply ends the upload */
} UpFrame;

struct Upload {
        Upload *next;
        uint64_t id;
        int fd; /* the file, -1 once closed, after an error or while opening */
        char *path;
        mode_t mode;
        bool opening;     /* a FIFO without a reader: open again at retry_ns */
        int64_t retry_ns; /* when opening */
        UpFrame *q;       /* frames not written yet, oldest first */
        size_t q_bytes;
        uint64_t size; /* bytes written so far */
        int err;       /* first error (positive errno), reported at eof */
        char msg[512]; /* its message */
        int pidx;      /* poll index, -1 when not polled */
};

/* ---- read_file ---- */

static Reader *reader_free(Reader *rd)
{
        if (!rd)
                return NULL;
        closep(&rd->fd);
        free(rd->path);
        free(rd);
        return NULL;
}

/* Reads and sends up to FS_READ_CHUNKS chunks. Returns 1 when finished (replied), 0 when it
 * would block (rd->wait) or has more to send, or a connection -errno. */
static int reader_step(Server *s, Reader *rd)
{
        for (int i = 0; i < FS_READ_CHUNKS; i++) {
                ssize_t n = read(rd->fd, s->buf + SERVER_HEAD, PROTO_CHUNK);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN) {
                        rd->wait = true;
                        return 0;
                }
                if (n < 0) {
                        int r = server_reply_errno(s, rd->id, errno, "read %s", rd->path);
                        return r < 0 ? r : 1;
                }
                if (n == 0) {
                        server_begin_ok(s, rd->id, 1);
                        proto_kv_uint(&s->wr, "size", rd->total);
                        int r = server_flush(s);
                        return r < 0 ? r : 1;
                }
                rd->total += (uint64_t) n;
                if (rd->regular && n < PROTO_CHUNK) { /* the end: data and reply at once */
                        server_begin_ok(s, rd->id, 1);
                        proto_kv_uint(&s->wr, "size", rd->total);
                        int r = server_send_buf_and_flush(s, rd->id, "data", (size_t) n);
                        return r < 0 ? r : 1;
                }
                int r = server_send_buf(s, rd->id, "data", (size_t) n);
                if (r < 0)
                        return r;
        }
        rd->wait = false;
        return 0;
}

int fs_read_file(Server *s, uint64_t id, const msgpack_object *req)
{
        _cleanup_free_ char *path = NULL;
        int r = proto_dup_str(req, "path", &path);
        if (r <= 0)
                return server_reply_field(s, id, "read_file", "path", r);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return server_reply_errno(s, id, errno, "open %s", path);
        struct stat st;
        if (fstat(fd, &st) < 0)
                return server_reply_errno(s, id, errno, "stat %s", path);
        if (S_ISREG(st.st_mode) && st.st_size > PROTO_CHUNK)
                (void) posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        /* Most reads end in their first step: they need no Reader of their own on the heap. */
        Reader first = {
            .id = id, .fd = fd, .path = path, .pidx = -1, .regular = S_ISREG(st.st_mode)};
        /* A FIFO without a writer reads as EOF at once; a blocking open would have waited for
         * one, so wait until poll reports data or a writer that came and went. */
        if (S_ISFIFO(st.st_mode))
                first.wait = true;
        else if ((r = reader_step(s, &first)) != 0)
                return r < 0 ? r : 0;
        Reader *rd = malloc(sizeof *rd);
        if (!rd)
                return server_reply_errno(s, id, ENOMEM, "read_file %s", path);
        *rd = first;
        fd = -1; /* rd owns them now */
        path = NULL;
        rd->next = s->readers;
        s->readers = rd;
        return 0;
}

/* ---- write_file ---- */

static void upframe_free(UpFrame *f)
{
        if (f) {
                free(f->data);
                free(f);
        }
}

static void upload_drop_queue(Upload *u)
{
        while (u->q) {
                UpFrame *f = u->q;
                u->q = f->next;
                upframe_free(f);
        }
        u->q_bytes = 0;
}

static Upload *upload_free(Upload *u)
{
        if (!u)
                return NULL;
        closep(&u->fd);
        upload_drop_queue(u);
        free(u->path);
        free(u);
        return NULL;
}

/* Records the first error of an upload (what failed, on u->path) and closes the file. */
static void upload_fail(Upload *u, int err, const char *what)
{
        if (u->err)
                return;
        u->err = err;
        (void) snprintf(u->msg, sizeof u->msg, "%s %s", what, u->path ? u->path : "");
        closep(&u->fd);
        u->opening = false;
}

static void upload_fail_field(Upload *u, const char *field)
{
        if (u->err)
                return;
        u->err = EINVAL;
        (void) snprintf(u->msg, sizeof u->msg, "write_file: missing or mistyped field %s", field);
        closep(&u->fd);
        u->opening = false;
}

/* Opens u->path; a FIFO without a reader leaves u->opening set to try again later. */
static void upload_open(Upload *u)
{
        u->fd = open(u->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
                     u->mode);
        if (u->fd < 0) {
                struct stat st;
                int err = errno;
                if (err == ENXIO && stat(u->path, &st) == 0 && S_ISFIFO(st.st_mode)) {
                        u->opening = true;
                        u->retry_ns = agent_now_ns() + FS_OPEN_RETRY_MS * 1000000LL;
                        return;
                }
                u->opening = false;
                upload_fail(u, err, "open");
                return;
        }
        u->opening = false;
        if (fchmod(u->fd, u->mode) < 0)
                upload_fail(u, errno, "chmod");
}

/* Writes from p while the file takes it. Returns the bytes taken; stops early when the write
 * would block (or failed: u->err is then set). */
static size_t upload_write(Upload *u, const uint8_t *p, size_t n)
{
        size_t done = 0;
        while (done < n && !u->err) {
                ssize_t k = write(u->fd, p + done, n - done);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0 && errno == EAGAIN)
                        break;
                if (k < 0) {
                        upload_fail(u, errno, "write");
                        break;
                }
                done += (size_t) k;
                u->size += (uint64_t) k;
        }
        return done;
}

/* Acknowledges an upload frame: {id, chunk: "ack", n: bytes written so far}. */
static int upload_ack(Server *s, Upload *u)
{
        proto_begin(&s->wr, 3);
        proto_kv_uint(&s->wr, "id", u->id);
        proto_kv_str(&s->wr, "chunk", "ack");
        proto_kv_uint(&s->wr, "n", u->size);
        return server_flush(s);
}

/* Sends the reply of a finished upload. Returns 0 or a connection -errno. */
static int upload_finish(Server *s, Upload *u)
{
        if (!u->err && u->fd >= 0) {
                int fd = u->fd;
                u->fd = -1;
                if (close(fd) < 0)
                        upload_fail(u, errno, "close");
        }
        if (u->err)
                return server_reply_errno(s, u->id, u->err, "%s", u->msg);
        server_begin_ok(s, u->id, 1);
        proto_kv_uint(&s->wr, "size", u->size);
        return server_flush(s);
}

/* Writes queued frames while the file takes them, acknowledging each (the last one gets the
 * reply). Returns 1 when the upload is finished (replied), 0 when it waits for the file or
 * more frames, or a connection -errno. */
static int upload_flush(Server *s, Upload *u)
{
        while (u->q) {
                UpFrame *f = u->q;
                if (u->opening)
                        return 0;
                if (!u->err) {
                        f->off += upload_write(u, f->data + f->off, f->len - f->off);
                        if (!u->err && f->off < f->len)
                                return 0;
                }
                u->q = f->next;
                u->q_bytes -= f->len;
                bool eof = f->eof || u->err; /* an error ends the upload at once */
                upframe_free(f);
                if (u->err)
                        upload_drop_queue(u);
                int r = eof ? upload_finish(s, u) : upload_ack(s, u);
                if (r < 0)
                        return r;
                if (eof)
                        return 1;
        }
        return 0;
}

/* Appends a frame to u's queue (its data copied, none once the upload has failed). Returns 0
 * or -ENOMEM. */
static int upload_queue(Upload *u, const char *p, size_t n, bool eof)
{
        if (!u->err && u->q_bytes + n > FS_UPLOAD_MAX_BUF)
                upload_fail(u, ENOBUFS, "write_file (frames sent ahead of acks)");
        if (u->err)
                n = 0;
        UpFrame *f = calloc(1, sizeof *f);
        if (!f || (n > 0 && !(f->data = malloc(n)))) {
                free(f);
                return -ENOMEM;
        }
        if (n > 0)
                memcpy(f->data, p, n);
        f->len = n;
        f->eof = eof;
        u->q_bytes += n;
        UpFrame **t = &u->q;
        while (*t)
                t = &(*t)->next;
        *t = f;
        return 0;
}

/* Takes the data and eof fields of a write_file or an upload. Returns 1 when the upload is
 * finished (replied), 0 while it goes on, or a connection -errno. */
static int upload_feed(Server *s, Upload *u, const msgpack_object *req)
{
        bool eof = true;
        const char *p = NULL;
        size_t n = 0;
        if (proto_get_bool(req, "eof", &eof) < 0) {
                upload_fail_field(u, "eof");
                eof = true;
        } else if (proto_get_bytes(req, "data", &p, &n) < 0) {
                upload_fail_field(u, "data");
                n = 0;
        }
        if (!u->q && !u->opening && !u->err) { /* the usual case: write at once, no copy */
                size_t k = upload_write(u, (const uint8_t *) p, n);
                p += k;
                n -= k;
        }
        if (u->err) {
                /* Fail fast: the host keeps at most a window of frames unacknowledged, so it
                 * learns of the error now instead of waiting for acks; later frames for this
                 * id are dropped. */
                upload_drop_queue(u);
                int r = upload_finish(s, u);
                return r < 0 ? r : 1;
        }
        if (u->q || u->opening || (!u->err && n > 0)) {
                if (upload_queue(u, p, n, eof) == 0)
                        return upload_flush(s, u);
                /* out of memory: end the upload now; later frames are dropped */
                upload_fail(u, ENOMEM, "write_file");
                upload_drop_queue(u);
                int r = upload_finish(s, u);
                return r < 0 ? r : 1;
        }
        int r = eof ? upload_finish(s, u) : upload_ack(s, u);
        return r < 0 ? r : eof;
}

/* Creates the upload for a write_file request; errors are kept in it for the reply. */
static Upload *upload_new(uint64_t id, const msgpack_object *req)
{
        Upload *u = calloc(1, sizeof *u);
        if (!u)
                return NULL;
        *u = (Upload){.id = id, .fd = -1, .pidx = -1};
        uint64_t mode = 0644;
        if (proto_dup_str(req, "path", &u->path) <= 0) {
                upload_fail_field(u, "path");
                return u;
        }
        if (proto_get_uint(req, "mode", &mode) < 0 || mode > 07777) {
                upload_fail_field(u, "mode");
                return u;
        }
        u->mode = (mode_t) mode;
        upload_open(u);
        return u;
}

int fs_write_file(Server *s, uint64_t id, const msgpack_object *req)
{
        Upload *u = upload_new(id, req);
        if (!u)
                return server_reply_errno(s, id, ENOMEM, "write_file");
        int r = upload_feed(s, u, req);
        if (r != 0) {
                upload_free(u);
                return r < 0 ? r : 0;
        }
        u->next = s->uploads;
        s->uploads = u;
        return 0;
}

/* Unlinks upload *p and frees it. */
static void upload_remove(Upload **p)
{
        Upload *u = *p;
        *p = u->next;
        upload_free(u);
}

int fs_upload(Server *s, uint64_t id, const msgpack_object *req)
{
        Upload **p = &s->uploads;
        while (*p && (*p)->id != id)
                p = &(*p)->next;
        if (!*p) {
                if (s->debug)
                        agent_log("data for unknown upload %" PRIu64 " dropped", id);
                return 0;
        }
        int r = upload_feed(s, *p, req);
        if (r > 0)
                upload_remove(p);
        return r < 0 ? r : 0;
}

/* ---- loop hooks ---- */

bool fs_id_busy(const Server *s, uint64_t id)
{
        for (const Upload *u = s->uploads; u; u = u->next)
                if (u->id == id)
                        return true;
        for (const Reader *rd = s->readers; rd; rd = rd->next)
                if (rd->id == id)
                        return true;
        return false;
}

int fs_cancel(Server *s, uint64_t target, bool all)
{
        int r = 0;
        for (Upload **p = &s->uploads; *p;) {
                Upload *u = *p;
                if (!all && u->id != target) {
                        p = &u->next;
                        continue;
                }
                if (r >= 0)
                        r = server_reply_errno(s, u->id, ECANCELED, "write_file %s",
                                               u->path ? u->path : "");
                upload_remove(p);
        }
        for (Reader **p = &s->readers; *p;) {
                Reader *rd = *p;
                if (!all && rd->id != target) {
                        p = &rd->next;
                        continue;
                }
                *p = rd->next;
                if (r >= 0)
                        r = server_reply_errno(s, rd->id, ECANCELED, "read_file %s", rd->path);
                reader_free(rd);
        }
        return r;
}

void fs_drop_all(Server *s)
{
        while (s->uploads)
                upload_remove(&s->uploads);
        while (s->readers) {
                Reader *rd = s->readers;
                s->readers = rd->next;
                reader_free(rd);
        }
}

size_t fs_count(const Server *s)
{
        size_t n = 0;
        for (const Upload *u = s->uploads; u; u = u->next)
                n++;
        for (const Reader *rd = s->readers; rd; rd = rd->next)
                n++;
        return n;
}

size_t fs_poll_fill(Server *s, struct pollfd *pfd)
{
        size_t n = 0;
        for (Reader *rd = s->readers; rd; rd = rd->next) {
                rd->pidx = -1;
                if (!rd->wait)
                        continue;
                rd->pidx = (int) n;
                pfd[n++] = (struct pollfd){.fd = rd->fd, .events = POLLIN};
        }
        for (Upload *u = s->uploads; u; u = u->next) {
                u->pidx = -1;
                if (!u->q || u->opening || u->fd < 0)
                        continue;
                u->pidx = (int) n;
                pfd[n++] = (struct pollfd){.fd = u->fd, .events = POLLOUT};
        }
        return n;
}

int fs_poll_handle(Server *s, const struct pollfd *pfd)
{
        for (Reader **p = &s->readers; *p;) {
                Reader *rd = *p;
                int r = 0;
                if (rd->pidx >= 0 && pfd[rd->pidx].revents) {
                        rd->wait = false;
                        r = reader_step(s, rd);
                }
                if (r < 0)
                        return r;
                if (r == 0) {
                        p = &rd->next;
                        continue;
                }
                *p = rd->next;
                reader_free(rd);
        }
        for (Upload **p = &s->uploads; *p;) {
                int r = 0;
                if ((*p)->pidx >= 0 && pfd[(*p)->pidx].revents)
                        r = upload_flush(s, *p);
                if (r < 0)
                        return r;
                if (r == 0)
                        p = &(*p)->next;
                else
                        upload_remove(p);
        }
        return 0;
}

int fs_poll_timeout(const Server *s)
{
        for (const Reader *rd = s->readers; rd; rd = rd->next)
                if (!rd->wait)
                        return 0;
        int64_t next = 0;
        for (const Upload *u = s->uploads; u; u = u->next)
                if (u->opening && (next == 0 || u->retry_ns < next))
                        next = u->retry_ns;
        return server_ms_until(next);
}

int fs_tick(Server *s)
{
        for (Reader **p = &s->readers; *p;) {
                Reader *rd = *p;
                int r = rd->wait ? 0 : reader_step(s, rd);
                if (r < 0)
                        return r;
                if (r == 0) {
                        p = &rd->next;
                        continue;
                }
                *p = rd->next;
                reader_free(rd);
        }
        int64_t now = agent_now_ns();
        for (Upload **p = &s->uploads; *p;) {
                Upload *u = *p;
                int r = 0;
                if (u->opening && now >= u->retry_ns) {
                        upload_open(u);
                        r = upload_flush(s, u);
                }
                if (r < 0)
                        return r;
                if (r == 0)
                        p = &u->next;
                else
                        upload_remove(p);
        }
        return 0;
}

/* ---- stat ---- */

static const char *fs_type_name(mode_t m)
{
        switch (m & S_IFMT) {
        case S_IFREG:
                return "file";
        case S_IFDIR:
                return "dir";
        case S_IFLNK:
                return "link";
        case S_IFCHR:
                return "chr";
        case S_IFBLK:
                return "blk";
        case S_IFIFO:
                return "fifo";
        default:
                return "sock";
        }
}

static uint64_t fs_ns(const struct timespec *ts)
{
        if (ts->tv_sec < 0)
                return 0;
        return (uint64_t) ts->tv_sec * 1000000000u + (uint64_t) ts->tv_nsec;
}

int fs_stat(Server *s, uint64_t id, const msgpack_object *req)
{
        _cleanup_free_ char *path = NULL;
        int r = proto_dup_str(req, "path", &path);
        if (r <= 0)
                return server_reply_field(s, id, "stat", "path", r);
        bool follow = true;
        r = proto_get_bool(req, "follow", &follow);
        if (r < 0)
                return server_reply_field(s, id, "stat", "follow", r);
        struct stat st;
        if ((follow ? stat(path, &st) : lstat(path, &st)) < 0)
                return server_reply_errno(s, id, errno, "stat %s", path);
        server_begin_ok(s, id, 10);
        proto_kv_str(&s->wr, "type", fs_type_name(st.st_mode));
        proto_kv_uint(&s->wr, "size", (uint64_t) st.st_size);
        proto_kv_uint(&s->wr, "mode", st.st_mode & 07777);
        proto_kv_uint(&s->wr, "uid", st.st_uid);
        proto_kv_uint(&s->wr, "gid", st.st_gid);
        proto_kv_uint(&s->wr, "nlink", st.st_nlink);
        proto_kv_uint(&s->wr, "ino", st.st_ino);
        proto_kv_uint(&s->wr, "mtime_ns", fs_ns(&st.st_mtim));
        proto_kv_uint(&s->wr, "atime_ns", fs_ns(&st.st_atim));
        proto_kv_uint(&s->wr, "ctime_ns", fs_ns(&st.st_ctim));
        return server_flush(s);
}

/* ---- mkdir ---- */

/* mkdir(2) that accepts an existing directory when exist_ok. Returns 0 or -errno. */
static int fs_mkdir_one(const char *path, mode_t mode, bool exist_ok)
{
        if (mkdir(path, mode) == 0)
                return chmod(path, mode) < 0 ? -errno : 0;
        if (errno != EEXIST || !exist_ok)
                return -errno;
        struct stat st;
        if (stat(path, &st) < 0)
                return -errno;
        return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

/* Creates the missing parents of path (like mkdir -p). Returns 0, or -errno with the failing
 * prefix left NUL-terminated in path. */
static int fs_mkdir_parents(char *path)
{
        for (char *p = path + strspn(path, "/"); (p = strchr(p, '/')); p += strspn(p, "/")) {
                *p = 0;
                int r = fs_mkdir_one(path, 0755, true);
                if (r < 0)
                        return r;
                *p = '/';
        }
        return 0;
}

int fs_mkdir(Server *s, uint64_t id, const msgpack_object *req)
{
        _cleanup_free_ char *path = NULL;
        int r = proto_dup_str(req, "path", &path);
        if (r <= 0)
                return server_reply_field(s, id, "mkdir", "path", r);
        uint64_t mode = 0755;
        r = proto_get_uint(req, "mode", &mode);
        if (r < 0 || mode > 07777)
                return server_reply_field(s, id, "mkdir", "mode", -EINVAL);
        bool parents = false;
        r = proto_get_bool(req, "parents", &parents);
        if (r < 0)
                return server_reply_field(s, id, "mkdir", "parents", r);
        if (parents && (r = fs_mkdir_parents(path)) < 0)
                return server_reply_errno(s, id, -r, "mkdir %s", path);
        r = fs_mkdir_one(path, (mode_t) mode, parents);
        if (r < 0)
                return server_reply_errno(s, id, -r, "mkdir %s", path);
        server_begin_ok(s, id, 0);
        return server_flush(s);
}
