/* events_read.c: an events file, one checked event at a time (see events_read.h). */
#include "events_read.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "events_json.h"

#define READ_CHUNK (64u << 10)

/* A big-endian unsigned integer of n bytes (1, 2, 4 or 8). */
static uint64_t be_uint(const uint8_t *p, size_t n)
{
        uint64_t v = 0;

        for (size_t i = 0; i < n; i++)
                v = v << 8 | p[i];
        return v;
}

/* What follows type byte t: a length field of *lenbytes bytes, then *fixed bytes (ext's type
 * byte), then the length's value in bytes (strings, binary, ext) when *counts is false, or
 * that many objects (*per objects each: 2 for a map) when it is true. Returns false for 0xc1. */
static bool header_shape(uint8_t t, size_t *lenbytes, uint64_t *fixed, bool *counts, uint64_t *per)
{
        static const uint8_t pow2[4] = {1, 2, 4, 8};

        *lenbytes = 0;
        *fixed = 0;
        *counts = false;
        *per = 1;
        if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3)
                return true;
        if (t <= 0x8f || (t >= 0xde && t <= 0xdf))
                *per = 2; /* maps: a key and a value per entry */
        if (t <= 0x9f || (t >= 0xdc && t <= 0xdf)) {
                *counts = true;
                if (t >= 0xdc)
                        *lenbytes = (t & 1) ? 4 : 2;
                else
                        *fixed = t & 0x0f; /* fixmap, fixarray: the count is in t */
                return true;
        }
        if (t <= 0xbf) {
                *fixed = t & 0x1f; /* fixstr */
                return true;
        }
        if (t >= 0xc4 && t <= 0xc6) { /* bin 8/16/32 */
                *lenbytes = pow2[t - 0xc4];
                return true;
        }
        if (t >= 0xc7 && t <= 0xc9) { /* ext 8/16/32: length, type byte, data */
                *lenbytes = pow2[t - 0xc7];
                *fixed = 1;
                return true;
        }
        if (t == 0xca || t == 0xcb) { /* float 32/64 */
                *fixed = t == 0xca ? 4 : 8;
                return true;
        }
        if (t >= 0xcc && t <= 0xd3) { /* uint, int 8-64 */
                *fixed = pow2[(t - 0xcc) & 3];
                return true;
        }
        if (t >= 0xd4 && t <= 0xd8) { /* fixext 1-16: type byte and data */
                *fixed = 1 + (1u << (t - 0xd4));
                return true;
        }
        if (t >= 0xd9 && t <= 0xdb) { /* str 8/16/32 */
                *lenbytes = pow2[t - 0xd9];
                return true;
        }
        return false; /* 0xc1: never used */
}

ssize_t events_object_size(const uint8_t *b, size_t len)
{
        uint64_t left[EVENTS_MAX_DEPTH + 1]; /* objects still to read at each level */
        int depth = 0;
        size_t pos = 0;

        left[0] = 1;
        while (depth >= 0) {
                if (left[depth] == 0) {
                        depth--;
                        continue;
                }
                left[depth]--;
                if (pos >= len)
                        return 0;
                uint8_t t = b[pos++];
                size_t lenbytes;
                uint64_t fixed, per, n = 0;
                bool counts;
                if (!header_shape(t, &lenbytes, &fixed, &counts, &per))
                        return -EBADMSG;
                if (lenbytes) {
                        if (len - pos < lenbytes)
                                return 0;
                        n = be_uint(b + pos, lenbytes);
                        pos += lenbytes;
                }
                if (counts) {
                        n = (lenbytes ? n : fixed) * per;
                        if (n == 0)
                                continue;
                        if (depth == EVENTS_MAX_DEPTH)
                                return -EBADMSG;
                        left[++depth] = n;
                        continue;
                }
                if (fixed > len - pos || n > len - pos - fixed)
                        return 0;
                pos += fixed + n;
        }
        return (ssize_t) pos;
}

/* unix:PATH: a run's live socket (--events unix:PATH). */
static int connect_socket(const char *path)
{
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        if (strlen(path) >= sizeof a.sun_path) {
                errno = ENAMETOOLONG;
                return -1;
        }
        snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *) &a, sizeof a) < 0) {
                int e = errno;
                (void) close(fd);
                errno = e;
                return -1;
        }
        return fd;
}

int events_reader_open(EventsReader *r, const char *path)
{
        *r = (EventsReader){.fd = -1, .path = path};
        msgpack_unpacked_init(&r->unpacked);
        r->socket = strncmp(path, "unix:", 5) == 0;
        r->fd = r->socket ? connect_socket(path + 5) : open(path, O_RDONLY | O_CLOEXEC);
        if (r->fd < 0) {
                int e = errno;
                snprintf(r->err, sizeof r->err, "%s: %s", path, strerror(e));
                return -e;
        }
        return 0;
}

static const char *type_name(msgpack_object_type t)
{
        switch (t) {
        case MSGPACK_OBJECT_NIL:
                return "nil";
        case MSGPACK_OBJECT_BOOLEAN:
                return "a boolean";
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
                return "an integer";
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
                return "a float";
        case MSGPACK_OBJECT_STR:
                return "a string";
        case MSGPACK_OBJECT_ARRAY:
                return "an array";
        case MSGPACK_OBJECT_BIN:
                return "binary";
        case MSGPACK_OBJECT_EXT:
                return "an ext";
        default:
                return "not a map";
        }
}

static int fail(EventsReader *r, int e, const char *what)
{
        snprintf(r->err, sizeof r->err, "%s: offset %" PRIu64 ": %s", r->path, r->offset, what);
        return e;
}

/* Reads more of the file into the buffer: returns the bytes read (0 at its end) or -errno. */
static ssize_t fill(EventsReader *r)
{
        if (r->pos > 0) {
                memmove(r->buf, r->buf + r->pos, r->len - r->pos);
                r->len -= r->pos;
                r->pos = 0;
        }
        /* Room for at least as much again as is pending, so an event arriving in pieces is
         * scanned O(log n) times, not once per chunk. */
        size_t want = r->len + (r->len > READ_CHUNK ? r->len : READ_CHUNK);
        if (want > r->cap) {
                uint8_t *nb = realloc(r->buf, want);
                if (!nb)
                        return -ENOMEM;
                r->buf = nb;
                r->cap = want;
        }
        for (;;) {
                ssize_t n = read(r->fd, r->buf + r->len, r->cap - r->len);
                if (n >= 0) {
                        r->len += (size_t) n;
                        return n;
                }
                if (errno != EINTR)
                        return -errno;
        }
}

int events_reader_next(EventsReader *r, const msgpack_object **ret, uint64_t *ret_offset)
{
        char what[128];

        for (;;) {
                size_t pending = r->len - r->pos;
                ssize_t n = pending ? events_object_size(r->buf + r->pos, pending) : 0;
                if (n < 0) {
                        snprintf(what, sizeof what,
                                 "not an event (not msgpack, or nested deeper than %d)",
                                 EVENTS_MAX_DEPTH);
                        return fail(r, -EBADMSG, what);
                }
                if ((n == 0 && pending >= EVENTS_MAX_EVENT) || (size_t) n > EVENTS_MAX_EVENT) {
                        snprintf(what, sizeof what, "an event larger than %u MiB",
                                 EVENTS_MAX_EVENT >> 20);
                        return fail(r, -EBADMSG, what);
                }
                if (n > 0) {
                        size_t off = 0;
                        if (msgpack_unpack_next(&r->unpacked, (const char *) r->buf + r->pos,
                                                (size_t) n, &off) != MSGPACK_UNPACK_SUCCESS ||
                            off != (size_t) n)
                                return fail(r, -EBADMSG, "msgpack-c could not decode the event");
                        if (r->unpacked.data.type != MSGPACK_OBJECT_MAP) {
                                snprintf(what, sizeof what, "an event is a msgpack map, this is %s",
                                         type_name(r->unpacked.data.type));
                                return fail(r, -EBADMSG, what);
                        }
                        *ret = &r->unpacked.data;
                        *ret_offset = r->offset;
                        r->pos += (size_t) n;
                        r->offset += (uint64_t) n;
                        return 1;
                }
                ssize_t got = fill(r);
                if (got < 0) {
                        snprintf(r->err, sizeof r->err, "%s: read: %s", r->path,
                                 strerror((int) -got));
                        return (int) got;
                }
                if (got == 0)
                        return 0;
        }
}

int events_reader_end(EventsReader *r)
{
        char what[128];

        if (r->len == r->pos)
                return 0;
        snprintf(what, sizeof what, "the file ends inside an event (%zu bytes of it)",
                 r->len - r->pos);
        return fail(r, -EBADMSG, what);
}

void events_reader_close(EventsReader *r)
{
        if (r->fd >= 0)
                (void) close(r->fd);
        r->fd = -1;
        free(r->buf);
        r->buf = NULL;
        r->pos = r->len = r->cap = 0;
        msgpack_unpacked_destroy(&r->unpacked);
        msgpack_unpacked_init(&r->unpacked);
}

int events_each(const char *path, const char *who, void (*fn)(const msgpack_object *ev, void *data),
                void *data)
{
        EventsReader r;
        if (events_reader_open(&r, path) < 0) {
                fprintf(stderr, "%s: %s\n", who, r.err);
                events_reader_close(&r);
                return -1;
        }
        const msgpack_object *m;
        uint64_t off;
        int got;
        while ((got = events_reader_next(&r, &m, &off)) > 0)
                fn(m, data);
        if (got == 0)
                got = events_reader_end(&r);
        if (got < 0)
                fprintf(stderr, "%s: %s\n", who, r.err);
        events_reader_close(&r);
        return got < 0 ? -1 : 0;
}
