/* proto.c: framing, field access and packing for the agent protocol (see proto.h).
 *
 * Sections: reader, field access, writer, errno names.
 */
#include "proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "errno_names.h"

/* ---- reader ---- */

int proto_reader_init(ProtoReader *r)
{
        *r = (ProtoReader){.max_frame = PROTO_MAX_FRAME};
        r->zone = msgpack_zone_new(MSGPACK_ZONE_CHUNK_SIZE);
        return r->zone ? 0 : -ENOMEM;
}

void proto_reader_done(ProtoReader *r)
{
        free(r->buf);
        if (r->zone)
                msgpack_zone_free(r->zone);
        *r = (ProtoReader){0};
}

/* Objects returned for a frame point into buf, so the frame stays until the next call; then
 * its bytes are dropped by moving start past them (no copy: a stream of tiny frames would
 * otherwise move the whole buffer once per frame). */
static void reader_drop_returned(ProtoReader *r)
{
        r->start += r->consumed;
        r->consumed = 0;
        if (r->start == r->len)
                r->start = r->len = 0;
}

/* The bytes not returned yet move to the front, when the end lacks room. */
static void reader_compact(ProtoReader *r)
{
        if (r->start == 0)
                return;
        memmove(r->buf, r->buf + r->start, r->len - r->start);
        r->len -= r->start;
        r->start = 0;
}

uint8_t *proto_reader_space(ProtoReader *r, size_t want)
{
        reader_drop_returned(r);
        if (r->buf && r->cap - r->len < want)
                reader_compact(r);
        if (!r->buf || r->cap - r->len < want) {
                if (want > SIZE_MAX / 2 - r->len)
                        return NULL;
                size_t cap = r->cap ? r->cap : 4096;
                while (cap - r->len < want)
                        cap *= 2;
                uint8_t *b = realloc(r->buf, cap);
                if (!b)
                        return NULL;
                r->buf = b;
                r->cap = cap;
        }
        return r->buf + r->len;
}

void proto_reader_commit(ProtoReader *r, size_t n)
{
        r->len += n;
}

int proto_reader_feed(ProtoReader *r, const void *data, size_t n)
{
        uint8_t *p = proto_reader_space(r, n);
        if (!p)
                return -ENOMEM;
        memcpy(p, data, n);
        proto_reader_commit(r, n);
        return 0;
}

static uint32_t le32(const uint8_t *p)
{
        return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 |
               (uint32_t) p[3] << 24;
}

/* Walks one msgpack object without allocating. Fails when the body is cut short, declares
 * more elements than it has bytes left (each takes at least one: msgpack_unpack allocates
 * declared counts up front, so a 5-byte body could otherwise ask for ~100 GB), holds more than
 * PROTO_MAX_OBJECTS objects or nests deeper than PROTO_MAX_DEPTH. */
static bool body_fits(const uint8_t *p, size_t n)
{
        size_t pos = 0, objects = 0;
        uint64_t need = 1;                        /* objects still to read, at every level */
        uint64_t left[PROTO_MAX_DEPTH + 1] = {1}; /* of them, in each open container */
        int top = 0;
        while (need > 0) {
                if (need > n - pos || ++objects > PROTO_MAX_OBJECTS)
                        return false;
                while (left[top] == 0)
                        top--;
                left[top]--;
                uint8_t b = p[pos++];
                size_t w = 0;                 /* width of a length or count field */
                uint64_t skip = 0, items = 0; /* payload bytes, child objects */
                if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
                        ;
                else if (b <= 0x8f)
                        items = 2 * (b & 0x0f);
                else if (b <= 0x9f)
                        items = b & 0x0f;
                else if (b <= 0xbf)
                        skip = b & 0x1f;
                else if (b == 0xca || b == 0xcb)
                        skip = b == 0xca ? 4 : 8;
                else if (b >= 0xcc && b <= 0xd3) /* uint8..64, int8..64 */
                        skip = 1u << (b & 3);
                else if (b >= 0xd4 && b <= 0xd8) /* fixext: type byte and 1..16 bytes */
                        skip = 1 + (1u << (b - 0xd4));
                else if (b >= 0xc4 && b <= 0xc9) { /* bin8..32, ext8..32 (+ type byte) */
                        w = 1u << ((b - 0xc4) % 3);
                        skip = b >= 0xc7;
                } else if (b >= 0xd9 && b <= 0xdb) /* str8..32 */
                        w = 1u << (b - 0xd9);
                else if (b >= 0xdc) /* array16/32, map16/32 */
                        w = b & 1 ? 4 : 2;
                else
                        return false; /* 0xc1, never used */
                if (n - pos < w)
                        return false;
                uint64_t len = 0;
                for (size_t i = 0; i < w; i++)
                        len = len << 8 | p[pos++];
                bool container = (b >= 0x80 && b <= 0x9f) || (b >= 0xdc && b <= 0xdf);
                if (b >= 0xdc && b <= 0xdf)
                        items = b >= 0xde ? 2 * len : len;
                else
                        skip += len;
                if (n - pos < skip)
                        return false;
                pos += skip;
                need = need - 1 + items;
                if (container && items > 0) {
                        if (top == PROTO_MAX_DEPTH)
                                return false;
                        left[++top] = items;
                }
        }
        return true;
}

int proto_reader_next(ProtoReader *r, msgpack_object *ret_msg)
{
        if (r->error)
                return r->error;
        reader_drop_returned(r);
        const uint8_t *frame = r->buf + r->start;
        if (r->len - r->start < 4)
                return 0;
        uint32_t n = le32(frame);
        if (n > r->max_frame)
                return r->error = -EMSGSIZE;
        if (r->len - r->start - 4 < n)
                return 0;
        if (!body_fits(frame + 4, n))
                return r->error = -EBADMSG;

        msgpack_zone_clear(r->zone);
        msgpack_object obj;
        size_t off = 0;
        msgpack_unpack_return u = msgpack_unpack((const char *) frame + 4, n, &off, r->zone, &obj);
        if (u == MSGPACK_UNPACK_NOMEM_ERROR)
                return r->error = -ENOMEM;
        if (u != MSGPACK_UNPACK_SUCCESS || off != n || obj.type != MSGPACK_OBJECT_MAP)
                return r->error = -EBADMSG;
        for (uint32_t i = 0; i < obj.via.map.size; i++)
                if (obj.via.map.ptr[i].key.type != MSGPACK_OBJECT_STR)
                        return r->error = -EBADMSG;
        r->consumed = 4 + (size_t) n;
        r->last = r->start;
        *ret_msg = obj;
        return 1;
}

const uint8_t *proto_reader_last_body(const ProtoReader *r, size_t *ret_len)
{
        *ret_len = r->consumed >= 4 ? r->consumed - 4 : 0;
        return r->buf + r->last + 4;
}

/* ---- field access ---- */

bool proto_str_eq(const msgpack_object *o, const char *s)
{
        size_t n = strlen(s);
        return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
               memcmp(o->via.str.ptr, s, n) == 0;
}

bool proto_key_is(const msgpack_object_kv *kv, const char *key)
{
        return proto_str_eq(&kv->key, key);
}

const msgpack_object *proto_get(const msgpack_object *map, const char *key)
{
        if (!map || map->type != MSGPACK_OBJECT_MAP)
                return NULL;
        for (uint32_t i = 0; i < map->via.map.size; i++)
                if (proto_key_is(&map->via.map.ptr[i], key))
                        return &map->via.map.ptr[i].val;
        return NULL;
}

static const msgpack_object *get_present(const msgpack_object *map, const char *key)
{
        const msgpack_object *o = proto_get(map, key);
        return o && o->type != MSGPACK_OBJECT_NIL ? o : NULL;
}

int proto_get_uint(const msgpack_object *map, const char *key, uint64_t *ret)
{
        const msgpack_object *o = get_present(map, key);
        if (!o)
                return 0;
        if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                return -EBADMSG;
        *ret = o->via.u64;
        return 1;
}

int proto_get_int(const msgpack_object *map, const char *key, int64_t *ret)
{
        const msgpack_object *o = get_present(map, key);
        if (!o)
                return 0;
        if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
                *ret = o->via.i64;
        else if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)
                *ret = (int64_t) o->via.u64;
        else
                return -EBADMSG;
        return 1;
}

int proto_get_bool(const msgpack_object *map, const char *key, bool *ret)
{
        const msgpack_object *o = get_present(map, key);
        if (!o)
                return 0;
        if (o->type != MSGPACK_OBJECT_BOOLEAN)
                return -EBADMSG;
        *ret = o->via.boolean;
        return 1;
}

int proto_get_double(const msgpack_object *map, const char *key, double *ret)
{
        const msgpack_object *o = get_present(map, key);
        if (!o)
                return 0;
        switch (o->type) {
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
                *ret = o->via.f64;
                return 1;
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
                *ret = (double) o->via.u64;
                return 1;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
                *ret = (double) o->via.i64;
                return 1;
        default:
                return -EBADMSG;
        }
}

int proto_get_bytes(const msgpack_object *map, const char *key, const char **ret, size_t *ret_len)
{
        const msgpack_object *o = get_present(map, key);
        if (!o)
                return 0;
        if (o->type == MSGPACK_OBJECT_STR) {
                *ret = o->via.str.ptr;
                *ret_len = o->via.str.size;
        } else if (o->type == MSGPACK_OBJECT_BIN) {
                *ret = o->via.bin.ptr;
                *ret_len = o->via.bin.size;
        } else
                return -EBADMSG;
        return 1;
}

int proto_copy_str(const msgpack_object *map, const char *key, char *out, size_t size)
{
        const char *p = "";
        size_t n = 0;
        int r = proto_get_bytes(map, key, &p, &n);
        if (r != 1)
                n = 0;
        if (n >= size)
                n = size - 1;
        memcpy(out, p, n);
        out[n] = 0;
        return r;
}

int proto_dup_str(const msgpack_object *map, const char *key, char **ret)
{
        const char *p;
        size_t n;
        int r = proto_get_bytes(map, key, &p, &n);
        if (r <= 0)
                return r;
        if (memchr(p, 0, n))
                return -EBADMSG;
        char *s = malloc(n + 1);
        if (!s)
                return -ENOMEM;
        memcpy(s, p, n);
        s[n] = 0;
        *ret = s;
        return 1;
}

/* ---- writer ---- */

static int sbuffer_write(void *data, const char *buf, size_t len)
{
        ProtoWriter *w = data;
        if (w->error)
                return -1;
        if (msgpack_sbuffer_write(&w->sb, buf, len) < 0) {
                w->error = -ENOMEM;
                return -1;
        }
        return 0;
}

void proto_writer_init(ProtoWriter *w)
{
        *w = (ProtoWriter){0};
        msgpack_sbuffer_init(&w->sb);
        msgpack_packer_init(&w->pk, w, sbuffer_write);
}

void proto_writer_done(ProtoWriter *w)
{
        msgpack_sbuffer_destroy(&w->sb);
        *w = (ProtoWriter){0};
}

void proto_writer_reset(ProtoWriter *w)
{
        w->sb.size = 0;
        w->error = 0;
}

void proto_begin(ProtoWriter *w, uint32_t n)
{
        static const char zero[4] = {0};
        w->start = w->sb.size;
        sbuffer_write(w, zero, sizeof zero);
        msgpack_pack_map(&w->pk, n);
}

int proto_end(ProtoWriter *w)
{
        if (w->error) {
                int r = w->error;
                w->sb.size = w->start < w->sb.size ? w->start : w->sb.size;
                w->error = 0;
                return r;
        }
        size_t n = w->sb.size - w->start - 4;
        if (n > PROTO_MAX_FRAME) {
                w->sb.size = w->start;
                return -EMSGSIZE;
        }
        proto_put_frame_len((uint8_t *) w->sb.data + w->start, n);
        return 0;
}

void proto_put_frame_len(uint8_t hdr[4], size_t len)
{
        hdr[0] = len & 0xff;
        hdr[1] = (len >> 8) & 0xff;
        hdr[2] = (len >> 16) & 0xff;
        hdr[3] = (len >> 24) & 0xff;
}

const uint8_t *proto_writer_data(const ProtoWriter *w, size_t *ret_len)
{
        *ret_len = w->sb.size;
        return (const uint8_t *) w->sb.data;
}

void proto_pack_strn(ProtoWriter *w, const char *s, size_t n)
{
        msgpack_pack_str(&w->pk, n);
        msgpack_pack_str_body(&w->pk, s, n);
}

void proto_pack_str(ProtoWriter *w, const char *s)
{
        proto_pack_strn(w, s, strlen(s));
}

void proto_key(ProtoWriter *w, const char *key)
{
        proto_pack_str(w, key);
}

void proto_kv_uint(ProtoWriter *w, const char *key, uint64_t v)
{
        proto_key(w, key);
        msgpack_pack_uint64(&w->pk, v);
}

void proto_kv_int(ProtoWriter *w, const char *key, int64_t v)
{
        proto_key(w, key);
        msgpack_pack_int64(&w->pk, v);
}

void proto_kv_bool(ProtoWriter *w, const char *key, bool v)
{
        proto_key(w, key);
        if (v)
                msgpack_pack_true(&w->pk);
        else
                msgpack_pack_false(&w->pk);
}

void proto_kv_double(ProtoWriter *w, const char *key, double v)
{
        proto_key(w, key);
        msgpack_pack_double(&w->pk, v);
}

void proto_kv_nil(ProtoWriter *w, const char *key)
{
        proto_key(w, key);
        msgpack_pack_nil(&w->pk);
}

void proto_kv_strn(ProtoWriter *w, const char *key, const char *s, size_t n)
{
        proto_key(w, key);
        proto_pack_strn(w, s, n);
}

void proto_kv_str(ProtoWriter *w, const char *key, const char *s)
{
        proto_kv_strn(w, key, s, strlen(s));
}

void proto_kv_bin(ProtoWriter *w, const char *key, const void *p, size_t n)
{
        proto_key(w, key);
        msgpack_pack_bin(&w->pk, n);
        msgpack_pack_bin_body(&w->pk, p, n);
}

int proto_write_error(ProtoWriter *w, uint64_t id, int errnum, const char *msg)
{
        const char *name = proto_errno_name(errnum);
        proto_begin(w, 5);
        proto_kv_uint(w, "id", id);
        proto_kv_bool(w, "ok", false);
        proto_kv_int(w, "errno", errnum);
        proto_kv_str(w, "error", name ? name : "EUNKNOWN");
        proto_kv_str(w, "msg", msg ? msg : (name ? name : "error"));
        return proto_end(w);
}

/* ---- errno names ---- */

const char *proto_errno_name(int errnum)
{
        unsigned u = errnum < 0 ? 0u - (unsigned) errnum : (unsigned) errnum; /* INT_MIN too */
        if (u >= sizeof proto_errno_names / sizeof proto_errno_names[0])
                return NULL;
        return proto_errno_names[u];
}
