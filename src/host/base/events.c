/* events.c: the event bus (see events.h). Single-threaded by design, like the loop it serves. */
#include "events.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#define MAX_SINKS 8

static struct {
        EventSinkFn fn;
        void *userdata;
} sinks[MAX_SINKS];

static struct {
        const char *file, *test;
} scope;

void events_set_scope(const char *file, const char *test)
{
        scope.file = file;
        scope.test = file ? (test ? test : "(file)") : NULL;
}

int events_subscribe(EventSinkFn fn, void *userdata)
{
        for (int i = 0; i < MAX_SINKS; i++)
                if (!sinks[i].fn) {
                        sinks[i].fn = fn;
                        sinks[i].userdata = userdata;
                        return i;
                }
        return -ENOMEM;
}

void events_unsubscribe(int id)
{
        if (id >= 0 && id < MAX_SINKS)
                sinks[id].fn = NULL;
}

uint64_t events_now_ns(void)
{
        struct timespec ts;
        (void) clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

uint64_t events_mono_ns(void)
{
        struct timespec ts;
        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

void event_begin(EventBuilder *ev, const char *type, uint32_t nfields)
{
        proto_writer_init(&ev->w);
        ev->type = type;
        proto_begin(&ev->w, nfields + (scope.file ? 5 : 3));
        proto_kv_uint(&ev->w, "v", EVENTS_SCHEMA_VERSION);
        proto_kv_str(&ev->w, "type", type);
        proto_kv_uint(&ev->w, "ts", events_now_ns());
        if (scope.file) {
                proto_kv_str(&ev->w, "file", scope.file);
                proto_kv_str(&ev->w, "test", scope.test);
        }
}

void events_forward(const char *type, const uint8_t *mp, size_t len)
{
        for (int i = 0; i < MAX_SINKS; i++)
                if (sinks[i].fn)
                        sinks[i].fn(sinks[i].userdata, type, mp, len);
}

void event_end(EventBuilder *ev)
{
        /* An event that fails to pack (out of memory) is dropped rather than half-sent. */
        if (proto_end(&ev->w) == 0) {
                size_t len;
                const uint8_t *p = proto_writer_data(&ev->w, &len);
                events_forward(ev->type, p + 4, len - 4);
        }
        proto_writer_done(&ev->w);
}

int events_decode(const uint8_t *mp, size_t len, void (*fn)(const msgpack_object *ev, void *data),
                  void *data)
{
        msgpack_zone zone;
        if (!msgpack_zone_init(&zone, 4096))
                return -ENOMEM;
        msgpack_object obj;
        size_t off = 0;
        int r = msgpack_unpack((const char *) mp, len, &off, &zone, &obj) == MSGPACK_UNPACK_SUCCESS
                    ? 0
                    : -EBADMSG;
        if (r == 0)
                fn(&obj, data);
        msgpack_zone_destroy(&zone);
        return r;
}

void events_infra_error(const char *what, const char *error)
{
        EventBuilder ev;
        event_begin(&ev, "infra.error", 2);
        proto_kv_str(&ev.w, "what", what);
        proto_kv_str(&ev.w, "error", error ? error : "");
        event_end(&ev);
}
