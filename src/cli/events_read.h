/* events_read.h: reading an events file (`--events FILE`: msgpack maps back to back, see
 * docs/events.md) one event at a time, each checked before msgpack-c decodes it: an event
 * is at most EVENTS_MAX_EVENT bytes, nests at most EVENTS_MAX_DEPTH deep, and is a map. */
#pragma once

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define EVENTS_MAX_EVENT (16u << 20)

/* The size of the msgpack object at b[0..len): > 0 when it is all there, 0 when b holds only
 * its beginning, -EBADMSG when it is not msgpack (the unused type byte 0xc1) or nests deeper
 * than EVENTS_MAX_DEPTH. Reads nothing past len, and allocates nothing. */
ssize_t events_object_size(const uint8_t *b, size_t len);

typedef struct EventsReader {
        int fd;
        const char *path; /* for messages */
        uint8_t *buf;     /* bytes read and not yet returned: buf[pos..len) */
        size_t pos, len, cap;
        uint64_t offset; /* file offset of buf[pos] */
        bool socket;     /* a run's live socket: it ends when the run does */
        msgpack_unpacked unpacked;
        char err[512]; /* why the last call failed */
} EventsReader;

/* Opens path: an events file, or unix:PATH, a run's live socket (--events unix:PATH), whose
 * events then come as the run makes them. Returns 0 or -errno (message in r->err). */
int events_reader_open(EventsReader *r, const char *path);

/* The next event: 1 with *ret (valid until the next call) and *ret_offset (where it starts in
 * the file); 0 when the file has no more bytes for now (events_reader_end tells whether an
 * event was cut short; a file still being written may grow, and a later call goes on from
 * there); or -errno with r->err naming the file and the offset: -EBADMSG for bytes that are
 * not an event (not msgpack, not a map, larger than EVENTS_MAX_EVENT), another from read(). */
int events_reader_next(EventsReader *r, const msgpack_object **ret, uint64_t *ret_offset);

/* After next() returned 0: 0 when the file ended between events, -EBADMSG (r->err says where)
 * when it ends inside one. */
int events_reader_end(EventsReader *r);

/* Closes the file and frees the buffer. Safe on a reader that failed to open, and twice. */
void events_reader_close(EventsReader *r);

/* Calls fn for each event of the file at path, to its end. Returns 0, or -1 having said why on
 * stderr after who ("provium replay"). */
int events_each(const char *path, const char *who, void (*fn)(const msgpack_object *ev, void *data),
                void *data);
