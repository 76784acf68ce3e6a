/* events.h: the internal event bus. Every host-side action becomes one msgpack map,
 * {v, type, ts, ...fields}, handed to every subscribed sink in emission order.
 * docs/events.md lists the types and their fields.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "proto.h"

#define EVENTS_SCHEMA_VERSION 1

/* A sink receives each event as one msgpack map (no length prefix). It must not emit. */
typedef void (*EventSinkFn)(void *userdata, const char *type, const uint8_t *mp, size_t len);

/* Returns a sink id >= 0, or -ENOMEM. */
int events_subscribe(EventSinkFn fn, void *userdata);
void events_unsubscribe(int id);

/* Emitting: begin with the number of fields you will add, pack them on ev->w with the
 * proto_kv_* helpers, then end. The bus adds v, type and ts itself. */
typedef struct EventBuilder {
        ProtoWriter w;
        const char *type;
} EventBuilder;

void event_begin(EventBuilder *ev, const char *type, uint32_t nfields);

/* A file runner's scope: while it is set, every event carries `file` and `test` (the running
 * test, "(file)" outside any), added by event_begin, so that the events of files run in
 * parallel can be told apart in one stream. The strings are the caller's and must outlive the
 * scope; a NULL file ends it. */
void events_set_scope(const char *file, const char *test);
void event_end(EventBuilder *ev);

/* infra.error: what a run needs of its host is not there, so a VM or a network could not be
 * made: what is "qemu" (QEMU cannot be started), "image" (the default image cannot be had) or
 * "netns" (no network namespace); error is the message the test got. A run in which no VM
 * started and this happened exits with its own status (docs/ci.md). */
void events_infra_error(const char *what, const char *error);

/* Re-emits an event received from elsewhere (a file runner's pipe) to the local sinks. */
void events_forward(const char *type, const uint8_t *mp, size_t len);
/* Decodes one event as a sink receives it and calls fn with it (valid during the call only).
 * Returns 0, or -EBADMSG / -ENOMEM (fn not called). */
int events_decode(const uint8_t *mp, size_t len, void (*fn)(const msgpack_object *ev, void *data),
                  void *data);

/* Wall-clock time in nanoseconds since the epoch, and monotonic nanoseconds. */
uint64_t events_now_ns(void);
uint64_t events_mono_ns(void);
