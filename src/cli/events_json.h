/* events_json.h: one msgpack object as JSON text, for `provium events` (docs/events.md,
 * "Reading an events file"): strings escaped (control characters as \u00XX, invalid UTF-8
 * as U+FFFD), binary as {"$bin": "<base64>"}, ext as {"$ext": TYPE, "$bin": "<base64>"},
 * NaN and infinities as null, a map key that is not a string as its JSON text. */
#pragma once

#include <msgpack.h>
#include <stddef.h>
#include <stdio.h>

/* Deepest nesting of arrays and maps written (and read: events_read.h). */
#define EVENTS_MAX_DEPTH 32

/* Writes o as JSON to out. Returns 0, -ELOOP when o nests deeper than EVENTS_MAX_DEPTH, or
 * -EIO when out reports an error. */
int events_json_write(FILE *out, const msgpack_object *o);

/* Writes the bytes s[0..n) as a JSON string (quotes included). Returns 0 or -EIO. */
int events_json_string(FILE *out, const char *s, size_t n);
