/* proto.h: the agent wire protocol, shared by provium (host) and provium-agent (guest).
 *
 * A connection carries frames. A frame is a little-endian u32 body length followed by
 * that many bytes holding exactly one msgpack map. Bodies larger than PROTO_MAX_FRAME are
 * a protocol violation: the reader reports -EMSGSIZE and the connection is closed.
 *
 * Messages (all maps, string keys):
 *   request  host->agent   {id: uint, op: str, ...arguments}
 *   upload   host->agent   {id, op: "data", data: bin, eof: bool}     (write_file beyond a chunk)
 *   chunk    agent->host   {id, chunk: "stdout"|"stderr"|"data", data: bin}
 *   reply    agent->host   {id, ok: true, ...results}
 *                          {id, ok: false, errno: int, error: "ENOENT", msg: str}
 * A request gets any number of chunks and then exactly one reply. docs/protocol.md has the
 * operations and their fields.
 */
#pragma once

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_VERSION 1
/* Not a frame: the line the agent prints on the console when booted with provium.probe=1,
 * as PID 1, before it powers off. The host's KVM probe (src/cli/accel_probe.c) waits for it. */
#define PROTO_PROBE_MARKER "provium-probe: init reached"
#define PROTO_MAX_FRAME    (4u << 20)   /* hard limit on one frame body, bytes */
#define PROTO_CHUNK        (256u << 10) /* payload bytes carried by one data frame */
/* A frame's objects: at most this many (each costs the decoder 24 bytes: 12 MiB; a full frame
 * of nils would be 100 MB), and containers with elements nested at most this deep, the
 * top-level map included (msgpack-c fails one deeper). */
#define PROTO_MAX_OBJECTS (1u << 19)
#define PROTO_MAX_DEPTH   31

/* ---- reading frames from a byte stream ---- */

typedef struct ProtoReader {
        uint8_t *buf;
        size_t start; /* where the bytes not returned yet begin; moved down only for space */
        size_t len;   /* end of the bytes buffered */
        size_t cap;
        size_t consumed;    /* bytes of frames already returned; dropped on the next call */
        size_t last;        /* where the last frame returned begins */
        int error;          /* sticky: once a stream is bad it stays bad */
        size_t max_frame;   /* PROTO_MAX_FRAME unless a test lowers it */
        msgpack_zone *zone; /* owns the objects of the last message returned */
} ProtoReader;

int proto_reader_init(ProtoReader *r);
void proto_reader_done(ProtoReader *r);
/* Appends n bytes. Returns 0 or -ENOMEM. Invalidates the last message returned. */
int proto_reader_feed(ProtoReader *r, const void *data, size_t n);
/* Takes the next complete frame. Returns 1 and a map in *ret_msg (valid until the next call
 * on r), 0 when more bytes are needed, -EMSGSIZE for an oversized frame, -EBADMSG for a body
 * that is not exactly one msgpack map, -ENOMEM. After an error the reader stays failed. */
int proto_reader_next(ProtoReader *r, msgpack_object *ret_msg);
/* The raw body (msgpack bytes) of the message last returned by proto_reader_next. */
const uint8_t *proto_reader_last_body(const ProtoReader *r, size_t *ret_len);
/* Where a reader can place bytes read straight from a fd: ensures room for want bytes and
 * returns the write position (NULL on -ENOMEM); call proto_reader_commit(r, n) after filling
 * n of them. Invalidates the last message returned. */
uint8_t *proto_reader_space(ProtoReader *r, size_t want);
void proto_reader_commit(ProtoReader *r, size_t n);

/* ---- looking fields up in a message ---- */

const msgpack_object *proto_get(const msgpack_object *map, const char *key);
/* Each returns 1 when found with the right type, 0 when absent or nil, -EBADMSG on a wrong type. */
int proto_get_uint(const msgpack_object *map, const char *key, uint64_t *ret);
int proto_get_int(const msgpack_object *map, const char *key, int64_t *ret);
int proto_get_bool(const msgpack_object *map, const char *key, bool *ret);
int proto_get_double(const msgpack_object *map, const char *key, double *ret);
/* str and bin are both accepted for strings and for bytes; the result is not NUL-terminated. */
int proto_get_bytes(const msgpack_object *map, const char *key, const char **ret, size_t *ret_len);
/* Copies a string field into out[size] (size > 0), NUL-terminated and cut to fit; "" when it is
 * absent or not a string. Returns what proto_get_bytes does. */
int proto_copy_str(const msgpack_object *map, const char *key, char *out, size_t size);
/* Copies a string field into a new NUL-terminated string (caller frees); rejects embedded NULs. */
int proto_dup_str(const msgpack_object *map, const char *key, char **ret);
bool proto_key_is(const msgpack_object_kv *kv, const char *key);
bool proto_str_eq(const msgpack_object *o, const char *s);

/* ---- writing frames ---- */

typedef struct ProtoWriter {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        size_t start; /* offset of the current frame's length prefix */
        int error;    /* first error, sticky */
} ProtoWriter;

void proto_writer_init(ProtoWriter *w);
void proto_writer_done(ProtoWriter *w);
/* Drops everything buffered. */
void proto_writer_reset(ProtoWriter *w);
/* Starts a frame holding a map of n pairs. Pack the pairs with the helpers below or with
 * msgpack_pack_* on &w->pk, then call proto_end(). */
void proto_begin(ProtoWriter *w, uint32_t n);
/* Finishes the frame. Returns 0, or -EMSGSIZE when the body is over PROTO_MAX_FRAME (the
 * frame is then dropped), or -ENOMEM. */
int proto_end(ProtoWriter *w);
const uint8_t *proto_writer_data(const ProtoWriter *w, size_t *ret_len);
/* Writes a frame's length prefix for a body of len bytes into hdr. */
void proto_put_frame_len(uint8_t hdr[4], size_t len);

void proto_key(ProtoWriter *w, const char *key);
void proto_kv_uint(ProtoWriter *w, const char *key, uint64_t v);
void proto_kv_int(ProtoWriter *w, const char *key, int64_t v);
void proto_kv_bool(ProtoWriter *w, const char *key, bool v);
void proto_kv_double(ProtoWriter *w, const char *key, double v);
void proto_kv_nil(ProtoWriter *w, const char *key);
void proto_kv_str(ProtoWriter *w, const char *key, const char *s);
void proto_kv_strn(ProtoWriter *w, const char *key, const char *s, size_t n);
void proto_kv_bin(ProtoWriter *w, const char *key, const void *p, size_t n);
void proto_pack_str(ProtoWriter *w, const char *s);
void proto_pack_strn(ProtoWriter *w, const char *s, size_t n);

/* Convenience: a whole error reply {id, ok=false, errno, error, msg}. */
int proto_write_error(ProtoWriter *w, uint64_t id, int errnum, const char *msg);

/* ---- errno names, identical on both sides (Linux numbering) ---- */

/* "ENOENT" for 2; NULL when unknown. */
const char *proto_errno_name(int errnum);
