/* proto_harness.c: the helpers of the codec's unit tests (proto_harness.h). */
#include "proto_harness.h"

void put_le32(uint8_t *p, uint32_t v)
{
        p[0] = v & 0xff;
        p[1] = (v >> 8) & 0xff;
        p[2] = (v >> 16) & 0xff;
        p[3] = (v >> 24) & 0xff;
}

/* Feeds everything w holds into a fresh r and takes one message. */
void decode(ProtoWriter *w, ProtoReader *r, msgpack_object *msg)
{
        size_t n;
        const uint8_t *d = proto_writer_data(w, &n);
        assert_int_equal(proto_reader_init(r), 0);
        assert_int_equal(proto_reader_feed(r, d, n), 0);
        assert_int_equal(proto_reader_next(r, msg), 1);
}

/* Frames body[0..n) with a length prefix of len (normally n), feeds it to a fresh reader and
 * expects err from next(), sticky: again, and after a valid frame is fed. */
void expect_rejected_len(const void *body, size_t n, uint32_t len, int err)
{
        ProtoReader r;
        msgpack_object msg;
        uint8_t pre[4];
        static const uint8_t ok[] = {1, 0, 0, 0, 0x80}; /* {} */

        put_le32(pre, len);
        assert_int_equal(proto_reader_init(&r), 0);
        assert_int_equal(proto_reader_feed(&r, pre, 4), 0);
        assert_int_equal(proto_reader_feed(&r, body, n), 0);
        assert_int_equal(proto_reader_next(&r, &msg), err);
        assert_int_equal(proto_reader_next(&r, &msg), err);
        assert_int_equal(proto_reader_feed(&r, ok, sizeof ok), 0);
        assert_int_equal(proto_reader_next(&r, &msg), err);
        assert_int_equal(r.error, err);
        proto_reader_done(&r);
}

void expect_rejected(const void *body, size_t n, int err)
{
        expect_rejected_len(body, n, (uint32_t) n, err);
}

/* The standard test message {id, op}; returns proto_end(). */
int pack_msg(ProtoWriter *w, uint64_t id, const char *op)
{
        proto_begin(w, 2);
        proto_kv_uint(w, "id", id);
        proto_kv_str(w, "op", op);
        return proto_end(w);
}

void check_msg(const msgpack_object *msg, uint64_t id, const char *op)
{
        uint64_t u = 0;
        assert_int_equal(proto_get_uint(msg, "id", &u), 1);
        assert_int_equal(u, id);
        assert_true(proto_str_eq(proto_get(msg, "op"), op));
}

uint64_t rng_next(uint64_t *s) /* xorshift64*, fixed sequence on every libc */
{
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        return *s * 0x2545F4914F6CDD1DULL;
}
