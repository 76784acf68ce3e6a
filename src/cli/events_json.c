/* events_json.c: msgpack objects as JSON text (see events_json.h). */
#include "events_json.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "strfmt.h"

int events_json_string(FILE *out, const char *str, size_t n)
{
        const unsigned char *s = (const unsigned char *) str;

        fputc('"', out);
        for (size_t i = 0; i < n;) {
                unsigned char c = s[i];
                size_t len = utf8_sequence(s + i, n - i);
                if (len == 0) {
                        fputs("\\ufffd", out); /* one replacement per invalid byte */
                        i++;
                        continue;
                }
                if (len > 1) {
                        fwrite(s + i, 1, len, out);
                } else if (c == '"' || c == '\\') {
                        fputc('\\', out);
                        fputc(c, out);
                } else if (c == '\n') {
                        fputs("\\n", out);
                } else if (c == '\t') {
                        fputs("\\t", out);
                } else if (c == '\r') {
                        fputs("\\r", out);
                } else if (c < 0x20 || c == 0x7f) {
                        fprintf(out, "\\u%04x", c);
                } else {
                        fputc(c, out);
                }
                i += len;
        }
        fputc('"', out);
        return ferror(out) ? -EIO : 0;
}

static void write_base64(FILE *out, const unsigned char *s, size_t n)
{
        static const char digits[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

        fputc('"', out);
        for (size_t i = 0; i < n; i += 3) {
                uint32_t v = (uint32_t) s[i] << 16 | (i + 1 < n ? (uint32_t) s[i + 1] << 8 : 0) |
                             (i + 2 < n ? s[i + 2] : 0);
                fputc(digits[v >> 18 & 63], out);
                fputc(digits[v >> 12 & 63], out);
                fputc(i + 1 < n ? digits[v >> 6 & 63] : '=', out);
                fputc(i + 2 < n ? digits[v & 63] : '=', out);
        }
        fputc('"', out);
}

static void write_double(FILE *out, double d)
{
        if (!isfinite(d)) {
                fputs("null", out); /* JSON has no NaN or infinity */
                return;
        }
        fprintf(out, "%.17g", d);
}

static int write_value(FILE *out, const msgpack_object *o, int depth);

/* A map key: a string as itself, anything else as its JSON text inside a string. */
static int write_key(FILE *out, const msgpack_object *k, int depth)
{
        char *text = NULL;
        size_t len = 0;
        FILE *mem;
        int r;

        if (k->type == MSGPACK_OBJECT_STR)
                return events_json_string(out, k->via.str.ptr, k->via.str.size);
        mem = open_memstream(&text, &len);
        if (!mem)
                return -errno;
        r = write_value(mem, k, depth);
        if (fclose(mem) != 0 && r == 0)
                r = -EIO;
        if (r == 0)
                r = events_json_string(out, text, len);
        free(text);
        return r;
}

/* An array, or a map (its keys through write_key). */
static int write_container(FILE *out, const msgpack_object *o, int depth)
{
        bool map = o->type == MSGPACK_OBJECT_MAP;
        uint32_t n = map ? o->via.map.size : o->via.array.size;
        int r = 0;

        fputc(map ? '{' : '[', out);
        for (uint32_t i = 0; i < n && r == 0; i++) {
                if (i)
                        fputc(',', out);
                if (map) {
                        r = write_key(out, &o->via.map.ptr[i].key, depth + 1);
                        fputc(':', out);
                }
                if (r == 0)
                        r = write_value(out, map ? &o->via.map.ptr[i].val : &o->via.array.ptr[i],
                                        depth + 1);
        }
        fputc(map ? '}' : ']', out);
        return r;
}

static int write_value(FILE *out, const msgpack_object *o, int depth)
{
        int r = 0;

        if (depth > EVENTS_MAX_DEPTH)
                return -ELOOP;
        switch (o->type) {
        case MSGPACK_OBJECT_NIL:
                fputs("null", out);
                break;
        case MSGPACK_OBJECT_BOOLEAN:
                fputs(o->via.boolean ? "true" : "false", out);
                break;
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
                fprintf(out, "%" PRIu64, o->via.u64);
                break;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
                fprintf(out, "%" PRId64, o->via.i64);
                break;
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
                write_double(out, o->via.f64);
                break;
        case MSGPACK_OBJECT_STR:
                r = events_json_string(out, o->via.str.ptr, o->via.str.size);
                break;
        case MSGPACK_OBJECT_BIN:
                fputs("{\"$bin\":", out);
                write_base64(out, (const unsigned char *) o->via.bin.ptr, o->via.bin.size);
                fputc('}', out);
                break;
        case MSGPACK_OBJECT_EXT:
                fprintf(out, "{\"$ext\":%d,\"$bin\":", (int) o->via.ext.type);
                write_base64(out, (const unsigned char *) o->via.ext.ptr, o->via.ext.size);
                fputc('}', out);
                break;
        case MSGPACK_OBJECT_ARRAY:
        case MSGPACK_OBJECT_MAP:
                r = write_container(out, o, depth);
                break;
        default:
                fputs("null", out); /* msgpack-c knows no other type */
                break;
        }
        if (r == 0 && ferror(out))
                r = -EIO;
        return r;
}

int events_json_write(FILE *out, const msgpack_object *o)
{
        return write_value(out, o, 0);
}
