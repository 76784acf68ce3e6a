/* fuzz_frames.c: libFuzzer target for the agent wire protocol's frame decoder (src/common/
 * proto.c), the code both ends run on what the other end sends: the host on a guest's replies
 * and chunks, the agent on the host's requests.
 *
 * The first input byte picks how the rest is cut into reads (1 to 256 bytes at a time, or all
 * at once), as a socket would deliver it; every frame returned has its fields looked up the
 * way the reply dispatch and the agent's request handling do. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "proto.h"

static void look_up(const msgpack_object *m, const ProtoReader *r)
{
        uint64_t u;
        int64_t i;
        bool b;
        double d;
        const char *s;
        size_t n;
        char text[64];
        (void) proto_get_uint(m, "id", &u);
        (void) proto_get_bool(m, "ok", &b);
        (void) proto_get_int(m, "errno", &i);
        (void) proto_get_double(m, "timeout", &d);
        (void) proto_get_bytes(m, "data", &s, &n);
        (void) proto_get_bytes(m, "chunk", &s, &n);
        (void) proto_copy_str(m, "error", text, sizeof text);
        char *dup = NULL;
        if (proto_dup_str(m, "msg", &dup) == 1)
                free(dup);
        const msgpack_object *op = proto_get(m, "op");
        if (op)
                (void) proto_str_eq(op, "run");
        if (!proto_reader_last_body(r, &n) || n == 0)
                abort(); /* a frame returned has a body */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size == 0)
                return 0;
        size_t step = data[0] ? data[0] : size;
        data++, size--;
        ProtoReader r;
        if (proto_reader_init(&r) < 0)
                return 0;
        r.max_frame = 64u << 10; /* the same paths, in inputs of a fuzzer's size */
        int status = 0;
        for (size_t at = 0; at < size && status >= 0; at += step) {
                size_t n = size - at < step ? size - at : step;
                if (proto_reader_feed(&r, data + at, n) < 0)
                        break;
                msgpack_object m;
                while ((status = proto_reader_next(&r, &m)) == 1) {
                        if (m.type != MSGPACK_OBJECT_MAP)
                                abort(); /* the decoder promises a map */
                        look_up(&m, &r);
                }
                if (status < 0 && status != -EMSGSIZE && status != -EBADMSG && status != -ENOMEM)
                        abort(); /* only the documented errors */
        }
        proto_reader_done(&r);
        return 0;
}
