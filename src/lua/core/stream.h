/* stream.h: a byte stream fed by the host (process output, a tail, the console) and read from
 * Lua through one interface: next, read_until, expect, drain, close, eof.
 */
#pragma once

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct Stream Stream;

/* A new stream with one reference, the producer's. NULL on -ENOMEM. name is for messages. */
Stream *stream_new(const char *name);
/* What a stream holds unread at most: a producer that outruns its reader by more ends the
 * stream with an error saying so (the bytes past it are dropped, not silently). */
#define STREAM_UNREAD_MAX (64u << 20)

/* Appends bytes and wakes a reader. After stream_end, ignored. */
void stream_push(Stream *s, const char *p, size_t n);
/* No more data will come; error (may be NULL) says why, when it is not a normal end. */
void stream_end(Stream *s, const char *error);
/* Called once when Lua closes the stream (to cancel a tail...), with data. */
void stream_on_close(Stream *s, void (*fn)(void *data), void *data);
/* Drops the producer's reference. The close hook will no longer run. Accepts NULL. */
void stream_release(Stream *s);
/* Unread bytes, without consuming them. */
const char *stream_peek(const Stream *s, size_t *ret_len);
void stream_consume(Stream *s, size_t n);

/* Pushes a provium.Stream userdata for s (takes a reference of its own). */
void bind_stream_push(lua_State *L, Stream *s);
/* Registers the Stream metatable and pushes its methods table (the prelude adds to it). */
void bind_stream_register(lua_State *L);
