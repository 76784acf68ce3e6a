/* ops_fs.c: file ops: read_file (streamed), write_file and its uploads, stat, mkdir.
 *
 * Sections: read_file, write_file (acks each frame), stat, mkdir.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "agent.h"

struct Upload {
        Upload *next;
        uint64_t id;
        int fd; /* the file, -1 once closed or after an error */
        char *path;
        uint64_t size; /* bytes written so far */
        int err;       /* first error (positive errno), reported at eof */
        char msg[512]; /* its message */
};

/* ---- read_file ---- */

int fs_read_file(Server *s, uint64_t id, const msgpack_object *req)
{
        _cleanup_free_ char *path = NULL;
        int r = proto_dup_str(req, "path", &path);
        if (r <= 0)
                return server_reply_field(s, id, "read_file", "path", r);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return server_reply_errno(s, id, errno, "open %s", path);
        (void) posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        uint64_t total = 0;
        for (;;) {
                ssize_t n = read(fd, s->buf + SERVER_HEAD, PROTO_CHUNK);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return server_reply_errno(s, id, errno, "read %s", path);
                if (n == 0)
                        break;
                r = server_send_buf(s, id, "data", (size_t) n);
                if (r < 0)
                        return r;
                total += (uint64_t) n;
        }
        server_begin_ok(s, id, 1);
        proto_kv_uint(&s->wr, "size", total);
        return server_flush(s);
}

/* ---- write_file ---- */

static Upload *upload_free(Upload *u)
{
        if (!u)
                return NULL;
        closep(&u->fd);
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
}

static void upload_fail_field(Upload *u, const char *field)
{
        if (u->err)
                return;
        u->err = EINVAL;
        (void) snprintf(u->msg, sizeof u->msg, "write_file: missing or mistyped field %s", field);
        closep(&u->fd);
}

static void upload_write(Upload *u, const char *p, size_t n)
{
        while (n > 0 && !u->err) {
                ssize_t k = write(u->fd, p, n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        upload_fail(u, errno, "write");
                        return;
                }
                p += k;
                n -= (size_t) k;
                u->size += (uint64_t) k;
        }
}

/* Takes the data and eof fields of a write_file or an upload. Returns true at eof. */
static bool upload_feed(Upload *u, const msgpack_object *req)
{
        bool eof = true;
        if (proto_get_bool(req, "eof", &eof) < 0) {
                upload_fail_field(u, "eof");
                return true;
        }
        const char *p = NULL;
        size_t n = 0;
        if (proto_get_bytes(req, "data", &p, &n) < 0)
                upload_fail_field(u, "data");
        else
                upload_write(u, p, n);
        return eof;
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

/* Creates the upload for a write_file request; errors are kept in it for the reply. */
static Upload *upload_new(uint64_t id, const msgpack_object *req)
{
        Upload *u = calloc(1, sizeof *u);
        if (!u)
                return NULL;
        *u = (Upload){.id = id, .fd = -1};
        uint64_t mode = 0644;
        if (proto_dup_str(req, "path", &u->path) <= 0) {
                upload_fail_field(u, "path");
                return u;
        }
        if (proto_get_uint(req, "mode", &mode) < 0 || mode > 07777) {
                upload_fail_field(u, "mode");
                return u;
        }
        u->fd = open(u->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, (mode_t) mode);
        if (u->fd < 0)
                upload_fail(u, errno, "open");
        else if (fchmod(u->fd, (mode_t) mode) < 0)
                upload_fail(u, errno, "chmod");
        return u;
}

int fs_write_file(Server *s, uint64_t id, const msgpack_object *req)
{
        Upload *u = upload_new(id, req);
        if (!u)
                return server_reply_errno(s, id, ENOMEM, "write_file");
        if (!upload_feed(u, req)) {
                u->next = s->uploads;
                s->uploads = u;
                return upload_ack(s, u);
        }
        int r = upload_finish(s, u);
        upload_free(u);
        return r;
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
        Upload *u = *p;
        if (!upload_feed(u, req))
                return upload_ack(s, u);
        *p = u->next;
        int r = upload_finish(s, u);
        upload_free(u);
        return r;
}

bool fs_id_busy(const Server *s, uint64_t id)
{
        for (const Upload *u = s->uploads; u; u = u->next)
                if (u->id == id)
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
                *p = u->next;
                if (r >= 0)
                        r = server_reply_errno(s, u->id, ECANCELED, "write_file %s",
                                               u->path ? u->path : "");
                upload_free(u);
        }
        return r;
}

void fs_drop_uploads(Server *s)
{
        while (s->uploads) {
                Upload *u = s->uploads;
                s->uploads = u->next;
                upload_free(u);
        }
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
