/* test_proto_fields.c: the agent protocol codec (src/common/proto.c): reading fields of every type
 * and encoding. Cases are numbered like sqlite's (proto-1.1, ...). */
#include "proto_exit.h"
#include "proto_harness.h"

/* ---- 1 fields ---- */

/* proto-1.1: uint in every msgpack width, read back exactly. */
static void field_uint(void **state)
{
        static const uint64_t vals[] = {
            0, 1, 127, 128, 255, 256, 65535, 65536, UINT32_MAX, 1ull << 32, INT64_MAX, UINT64_MAX};
        ProtoWriter w;
        ProtoReader r;
        msgpack_object msg;
        char key[16];

        proto_writer_init(&w);
        proto_begin(&w, sizeof vals / sizeof vals[0]);
        for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
                snprintf(key, sizeof key, "u%zu", i);
                proto_kv_uint(&w, key, vals[i]);
        }
        assert_int_equal(proto_end(&w), 0);
        decode(&w, &r, &msg);
        for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
                uint64_t u = 42;
                snprintf(key, sizeof key, "u%zu", i);
                assert_int_equal(proto_get_uint(&msg, key, &u), 1);
                assert_true(u == vals[i]);
        }
        /* A uint above INT64_MAX is not an int; the output is left alone. */
        int64_t i64 = 42;
        assert_int_equal(proto_get_int(&msg, "u11", &i64), E_BAD);
        assert_int_equal(i64, 42);
        assert_int_equal(proto_get_int(&msg, "u10", &i64), 1);
        assert_true(i64 == INT64_MAX);
        proto_reader_done(&r);
        proto_writer_done(&w);
}

/* proto-1.2: int, negative and positive, INT64 bounds; sign rules between uint and int. */
static void field_int(void **state)
{
        static const int64_t vals[] = {0,         5,
                                       -1,        -32,
                                       -33,       -128,
                                       -129,      -32768,
                                       -32769,    INT32_MIN,
                                       INT32_MAX, (int64_t) INT32_MIN - 1,
                                       INT64_MIN, INT64_MIN + 1,
                                       INT64_MAX};
        ProtoWriter w;
        ProtoReader r;
        msgpack_object msg;
        char key[16];

        proto_writer_init(&w);
        proto_begin(&w, sizeof vals / sizeof vals[0]);
        for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
                snprintf(key, sizeof key, "i%zu", i);
                proto_kv_int(&w, key, vals[i]);
        }
        assert_int_equal(proto_end(&w), 0);
        decode(&w, &r, &msg);
        for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
                int64_t v = 42;
                uint64_t u = 42;
                snprintf(key, sizeof key, "i%zu", i);
                assert_int_equal(proto_get_int(&msg, key, &v), 1);
                assert_true(v == vals[i]);
                /* A non-negative int is also a uint; a negative one is not. */
                if (vals[i] >= 0) {
                        assert_int_equal(proto_get_uint(&msg, key, &u), 1);
                        assert_true(u == (uint64_t) vals[i]);
                } else {
                        assert_int_equal(proto_get_uint(&msg, key, &u), E_BAD);
                        assert_int_equal(u, 42);
                }
        }
        proto_reader_done(&r);
        proto_writer_done(&w);
}

/* proto-1.3: bool. */
static void field_bool(void **state)
{
        ProtoWriter w;
        ProtoReader r;
        msgpack_object msg;
        bool b;

        proto_writer_init(&w);
        proto_begin(&w, 2);
        proto_kv_bool(&w, "t", true);
        proto_kv_bool(&w, "f", false);
        assert_int_equal(proto_end(&w), 0);
        decode(&w, &r, &msg);
        b = false;
        assert_int_equal(proto_get_bool(&msg, "t", &b), 1);
        assert_true(b);
        b = true;
        assert_int_equal(proto_get_bool(&msg, "f", &b), 1);
        assert_false(b);
        proto_reader_done(&r);
        proto_writer_done(&w);
}

/* proto-1.4: double incl. specials; float32 and integers are accepted as doubles. */
static void field_double(void **state)
{
        static const double vals[] = {0.0,     -1.5,    1e300,    -1e-300,
                                      DBL_MIN, DBL_MAX, INFINITY, -INFINITY};
        ProtoWriter w;
        ProtoReader r;
        msgpack_object msg;
        char key[16];
        double d;

        proto_writer_init(&w);
        proto_begin(&w, sizeof vals / sizeof vals[0] + 5);
        for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
                snprintf(key, sizeof key, "d%zu", i);
                proto_kv_double(&w, key, vals[i]);
        }
        proto_kv_double(&w, "nan", NAN);
        proto_kv_double(&w, "negzero", -0.0);
        proto_key(&w, "f32");
        msgpack_pack_float(&w.pk, 0.25f);
        proto_kv_uint(&w, "u", 1ull << 53);
        proto_kv_int(&w, "i", -7);
        assert_int_equal(proto_end(&w), 0);
        decode(&w, &r, &msg);
        for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
                snprintf(key, sizeof key, "d%zu", i);
                d = 42;
                assert_int_equal(proto_get_double(&msg, key, &d), 1);
                assert_true(d == vals[i]);
        }
        assert_int_equal(proto_get_double(&msg, "nan", &d), 1);
        assert_true(isnan(d));
        assert_int_equal(proto_get_double(&msg, "negzero", &d), 1);
        assert_true(d == 0.0 && signbit(d));
        assert_int_equal(proto_get_double(&msg, "f32", &d), 1);
        assert_true(d == 0.25);
        assert_int_equal(proto_get_double(&msg, "u", &d), 1);
        assert_true(d == 9007199254740992.0);
        assert_int_equal(proto_get_double(&msg, "i", &d), 1);
        assert_true(d == -7.0);
        proto_reader_done(&r);
        proto_writer_done(&w);
}

/* proto-1.5: nil and absent fields read as 0 and leave every output alone. */
static void field_nil_absent(void **state)
{
        ProtoWriter w;
        ProtoReader r;
        msgpack_object msg;
        static const char *const keys[] = {"nil", "absent"};

        proto_writer_init(&w);
        proto_begin(&w, 1);
        proto_kv_nil(&w, "nil");
        assert_int_equal(proto_end(&w), 0);
        decode(&w, &r, &msg);
        const msgpack_object *o = proto_get(&msg, "nil");
        assert_non_null(o);
        assert_int_equal(o->type, MSGPACK_OBJECT_NIL);
        assert_null(proto_get(&msg, "absent"));
        for (size_t i = 0; i < 2; i++) {
                uint64_t u = 42;
                int64_t v = 42;
                bool b = true;
                double d = 42;
                const char *p = "x";
                size_t n = 42;
                char *s = (char *) "x";
                assert_int_equal(proto_get_uint(&msg, keys[i], &u), 0);
                assert_int_equal(proto_get_int(&msg, keys[i], &v), 0);
                assert_int_equal(proto_get_bool(&msg, keys[i], &b), 0);
                assert_int_equal(proto_get_double(&msg, keys[i], &d), 0);
                assert_int_equal(proto_get_bytes(&msg, keys[i], &p, &n), 0);
                assert_int_equal(proto_dup_str(&msg, keys[i], &s), 0);
                assert_true(u == 42 && v == 42 && b && d == 42 && n == 42);
                assert_string_equal(p, "x");
                assert_string_equal(s, "x");
        }
        proto_reader_done(&r);
        proto_writer_done(&w);
}

/* proto-1.6: str and bin round trips, both accepted as bytes, embedded NULs kept. */
static void field_str_bin(void **state)
{
        ProtoWriter w;
        ProtoReader r;
        msgpack_object msg;
        static const uint8_t blob[] = {0, 1, 2, 0xff, 0, 0x80};
        const size_t big_n = 100000;
        char *big = malloc(big_n);
        const char *p;
        size_t n;

        assert_non_null(big);
        for (size_t i = 0; i < big_n; i++)
                big[i] = (char) ('a' + i % 26);
        proto_writer_init(&w);
        proto_begin(&w, 7);
        proto_kv_str(&w, "s", "hello");
        proto_kv_str(&w, "empty", "");
        proto_kv_strn(&w, "nul", "a\0b", 3);
        proto_kv_bin(&w, "bin", blob, sizeof blob);
        proto_kv_bin(&w, "bin0", NULL, 0);
        proto_kv_strn(&w, "big", big, big_n);
        proto_key(&w, "packed");
        proto_pack_str(&w, "via pack_str");
        assert_int_equal(proto_end(&w), 0);
        decode(&w, &r, &msg);

        assert_int_equal(proto_get(&msg, "s")->type, MSGPACK_OBJECT_STR);
        assert_int_equal(proto_get_bytes(&msg, "s", &p, &n), 1);
        assert_int_equal(n, 5);
        assert_memory_equal(p, "hello", 5);
        assert_int_equal(proto_get_bytes(&msg, "empty", &p, &n), 1);
        assert_int_equal(n, 0);
        assert_int_equal(proto_get_bytes(&msg, "nul", &p, &n), 1);
        assert_int_equal(n, 3);
        assert_memory_equal(p, "a\0b", 3);
        assert_int_equal(proto_get(&msg, "bin")->type, MSGPACK_OBJECT_BIN);
        assert_int_equal(proto_get_bytes(&msg, "bin", &p, &n), 1);
        assert_int_equal(n, sizeof blob);
        assert_memory_equal(p, blob, sizeof blob);
        assert_int_equal(proto_get_bytes(&msg, "bin0", &p, &n), 1);
        assert_int_equal(n, 0);
        assert_int_equal(proto_get_bytes(&msg, "big", &p, &n), 1);
        assert_int_equal(n, big_n);
        assert_memory_equal(p, big, big_n);
        assert_true(proto_str_eq(proto_get(&msg, "packed"), "via pack_str"));
        proto_reader_done(&r);
        proto_writer_done(&w);
        free(big);
}

/* proto-1.7: proto_dup_str copies str or bin, NUL-terminates, rejects embedded NULs. */
static void field_dup_str(void **state)
{
        ProtoWriter w;
        ProtoReader r;
        msgpack_object msg;
        char *s = NULL;
        char sentinel[] = "untouched";

        proto_writer_init(&w);
        proto_begin(&w, 7);
        proto_kv_str(&w, "s", "/etc/passwd");
        proto_kv_bin(&w, "b", "bytes", 5);
        proto_kv_str(&w, "empty", "");
        proto_kv_strn(&w, "nul", "a\0b", 3);
        proto_kv_strn(&w, "nulend", "ab\0", 3);
        proto_kv_bin(&w, "binnul", "\0", 1);
        proto_kv_uint(&w, "n", 1);
        assert_int_equal(proto_end(&w), 0);
        decode(&w, &r, &msg);

        assert_int_equal(proto_dup_str(&msg, "s", &s), 1);
        assert_string_equal(s, "/etc/passwd");
        free(s);
        assert_int_equal(proto_dup_str(&msg, "b", &s), 1);
        assert_string_equal(s, "bytes");
        free(s);
        assert_int_equal(proto_dup_str(&msg, "empty", &s), 1);
        assert_string_equal(s, "");
        free(s);
        static const char *const bad[] = {"nul", "nulend", "binnul", "n"};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                s = sentinel;
                assert_int_equal(proto_dup_str(&msg, bad[i], &s), E_BAD);
                assert_ptr_equal(s, sentinel);
        }
        assert_int_equal(proto_dup_str(&msg, "absent", &s), 0);
        assert_ptr_equal(s, sentinel);
        proto_reader_done(&r);
        proto_writer_done(&w);
}

/* proto-1.8: every getter against every value type: 1, 0 (nil) or -EBADMSG, and on anything
 * but 1 the outputs are not written. */
static void field_wrong_types(void **state)
{
        enum {
                V_U,
                V_NEG,
                V_BIG,
                V_BOOL,
                V_DBL,
                V_F32,
                V_STR,
                V_BIN,
                V_ARR,
                V_MAP,
                V_EXT,
                V_NIL,
                V_N
        };
        static const char *const keys[V_N] = {"u",   "neg", "big", "bool", "dbl", "f32",
                                              "str", "bin", "arr", "map",  "ext", "nil"};
        enum { G_UINT, G_INT, G_BOOL, G_DBL, G_BYTES, G_DUP, G_N };
        static const int want[G_N][V_N] = {
            /*            u  neg  big  bool dbl  f32  str  bin  arr  map  ext  nil */
            [G_UINT] = {1, E_BAD, 1, E_BAD, E_BAD, E_BAD, E_BAD, E_BAD, E_BAD, E_BAD, E_BAD, 0},
            [G_INT] = {1, 1, E_BAD, E_BAD, E_BAD, E_BAD, E_BAD, E_BAD, E_BAD, E_BAD, E_BAD, 0},
            [G_BOOL] = {E_BAD, E_BAD, E_BAD, 1, E_BAD, E_BAD, E_BAD, E_BAD, E_BAD, E_BAD, E_BAD, 0},
            [G_DBL] = {1, 1, 1, E_BAD, 1, 1, E_BAD, E_BAD, E_BAD, E_BAD, E_BAD, 0},
            [G_BYTES] = {E_BAD, E_BAD, E_BAD, E_BAD, E_BAD, E_BAD, 1, 1, E_BAD, E_BAD, E_BAD, 0},
            [G_DUP] = {E_BAD, E_BAD, E_BAD, E_BAD, E_BAD, E_BAD, 1, 1, E_BAD, E_BAD, E_BAD, 0},
        };
        ProtoWriter w;
        ProtoReader r;
        msgpack_object msg;

        proto_writer_init(&w);
        proto_begin(&w, V_N);
        proto_kv_uint(&w, keys[V_U], 5);
        proto_kv_int(&w, keys[V_NEG], -5);
        proto_kv_uint(&w, keys[V_BIG], UINT64_MAX);
        proto_kv_bool(&w, keys[V_BOOL], true);
        proto_kv_double(&w, keys[V_DBL], 2.5);
        proto_key(&w, keys[V_F32]);
        msgpack_pack_float(&w.pk, 2.5f);
        proto_kv_str(&w, keys[V_STR], "s");
        proto_kv_bin(&w, keys[V_BIN], "b", 1);
        proto_key(&w, keys[V_ARR]);
        msgpack_pack_array(&w.pk, 1);
        msgpack_pack_uint8(&w.pk, 1);
        proto_key(&w, keys[V_MAP]);
        msgpack_pack_map(&w.pk, 1);
        proto_pack_str(&w, "k");
        msgpack_pack_uint8(&w.pk, 1);
        proto_key(&w, keys[V_EXT]);
        msgpack_pack_ext(&w.pk, 1, 7);
        msgpack_pack_ext_body(&w.pk, "e", 1);
        proto_kv_nil(&w, keys[V_NIL]);
        assert_int_equal(proto_end(&w), 0);
        decode(&w, &r, &msg);

        for (int v = 0; v < V_N; v++) {
                uint64_t u = 42;
                int64_t i = 42;
                bool b = false;
                double d = 42;
                const char *p = NULL;
                size_t n = 42;
                char *s = NULL;
                int got[G_N] = {
                    proto_get_uint(&msg, keys[v], &u),      proto_get_int(&msg, keys[v], &i),
                    proto_get_bool(&msg, keys[v], &b),      proto_get_double(&msg, keys[v], &d),
                    proto_get_bytes(&msg, keys[v], &p, &n), proto_dup_str(&msg, keys[v], &s),
                };
                for (int g = 0; g < G_N; g++) {
                        if (got[g] != want[g][v])
                                fail_msg("getter %d on %s: got %d, want %d", g, keys[v], got[g],
                                         want[g][v]);
                }
                if (got[G_UINT] != 1)
                        assert_int_equal(u, 42);
                if (got[G_INT] != 1)
                        assert_int_equal(i, 42);
                if (got[G_BOOL] != 1)
                        assert_false(b);
                if (got[G_DBL] != 1)
                        assert_true(d == 42);
                if (got[G_BYTES] != 1)
                        assert_true(p == NULL && n == 42);
                if (got[G_DUP] != 1)
                        assert_null(s);
                free(s);
        }
        proto_reader_done(&r);
        proto_writer_done(&w);
}

/* proto-1.9: lookups: exact keys only, first duplicate wins, NULL or non-map input. */
static void field_lookup(void **state)
{
        ProtoWriter w;
        ProtoReader r;
        msgpack_object msg;
        uint64_t u = 0;

        proto_writer_init(&w);
        proto_begin(&w, 4);
        proto_kv_uint(&w, "id", 1);
        proto_kv_uint(&w, "id", 2);
        proto_kv_uint(&w, "idx", 3);
        proto_kv_strn(&w, "op", "ex\0ec", 5);
        assert_int_equal(proto_end(&w), 0);
        decode(&w, &r, &msg);

        assert_int_equal(proto_get_uint(&msg, "id", &u), 1);
        assert_int_equal(u, 1);
        assert_int_equal(proto_get_uint(&msg, "idx", &u), 1);
        assert_int_equal(u, 3);
        assert_null(proto_get(&msg, "i"));
        assert_null(proto_get(&msg, ""));
        assert_null(proto_get(&msg, "ID"));
        assert_true(proto_key_is(&msg.via.map.ptr[0], "id"));
        assert_false(proto_key_is(&msg.via.map.ptr[0], "i"));
        assert_false(proto_key_is(&msg.via.map.ptr[2], "id"));
        const msgpack_object *op = proto_get(&msg, "op");
        assert_false(proto_str_eq(op, "ex"));
        assert_false(proto_str_eq(op, "exec"));
        assert_false(proto_str_eq(proto_get(&msg, "id"), "1"));

        assert_null(proto_get(NULL, "id"));
        assert_int_equal(proto_get_uint(NULL, "id", &u), 0);
        msgpack_object notmap = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER, .via.u64 = 1};
        assert_null(proto_get(&notmap, "id"));
        assert_int_equal(proto_get_uint(&notmap, "id", &u), 0);
        proto_reader_done(&r);
        proto_writer_done(&w);
}

/* proto-1.10: every msgpack encoding, nested, passes the reader (each size class of str, bin,
 * ext, array and map, fixext 1..16, all int widths, float32/64). */
static void field_every_encoding(void **state)
{
        static const size_t str_sizes[] = {0, 31, 32, 255, 256, 65535, 65536};
        static const size_t bin_sizes[] = {0, 255, 256, 65535, 65536};
        static const size_t ext_sizes[] = {1, 2, 4, 8, 16, 0, 3, 255, 256, 65536};
        static const size_t arr_sizes[] = {0, 15, 16, 65535, 65536};
        char *buf = calloc(1, 65536);
        ProtoWriter w;
        ProtoReader r;
        msgpack_object msg;
        char key[16];
        uint32_t npairs = 0;

        assert_non_null(buf);
        memset(buf, 'x', 65536);
        proto_writer_init(&w);
        proto_begin(&w, 7 + 5 + 10 + 5 + 5 + 3);
        for (size_t i = 0; i < sizeof str_sizes / sizeof str_sizes[0]; i++, npairs++) {
                snprintf(key, sizeof key, "s%zu", str_sizes[i]);
                proto_kv_strn(&w, key, buf, str_sizes[i]);
        }
        for (size_t i = 0; i < sizeof bin_sizes / sizeof bin_sizes[0]; i++, npairs++) {
                snprintf(key, sizeof key, "b%zu", bin_sizes[i]);
                proto_kv_bin(&w, key, buf, bin_sizes[i]);
        }
        for (size_t i = 0; i < sizeof ext_sizes / sizeof ext_sizes[0]; i++, npairs++) {
                snprintf(key, sizeof key, "e%zu", i);
                proto_key(&w, key);
                msgpack_pack_ext(&w.pk, ext_sizes[i], -3);
                msgpack_pack_ext_body(&w.pk, buf, ext_sizes[i]);
        }
        for (size_t i = 0; i < sizeof arr_sizes / sizeof arr_sizes[0]; i++, npairs++) {
                snprintf(key, sizeof key, "a%zu", arr_sizes[i]);
                proto_key(&w, key);
                msgpack_pack_array(&w.pk, arr_sizes[i]);
                for (size_t j = 0; j < arr_sizes[i]; j++)
                        msgpack_pack_int64(&w.pk, j % 2 ? -(int64_t) j : (int64_t) j);
        }
        for (size_t i = 0; i < sizeof arr_sizes / sizeof arr_sizes[0]; i++, npairs++) {
                snprintf(key, sizeof key, "m%zu", arr_sizes[i]);
                proto_key(&w, key);
                msgpack_pack_map(&w.pk, arr_sizes[i]);
                for (size_t j = 0; j < arr_sizes[i]; j++) {
                        msgpack_pack_uint32(&w.pk, (uint32_t) j); /* nested keys need not be str */
                        msgpack_pack_nil(&w.pk);
                }
        }
        static const int64_t ints[] = {-1,  -128, -32768, INT32_MIN,  INT64_MIN,
                                       127, 255,  65535,  UINT32_MAX, INT64_MAX};
        proto_key(&w, "ints");
        msgpack_pack_array(&w.pk, sizeof ints / sizeof ints[0] + 1);
        for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
                msgpack_pack_int64(&w.pk, ints[i]);
        msgpack_pack_uint64(&w.pk, UINT64_MAX);
        proto_key(&w, "floats");
        msgpack_pack_array(&w.pk, 2);
        msgpack_pack_float(&w.pk, 1.5f);
        msgpack_pack_double(&w.pk, 1.5);
        proto_key(&w, "deep"); /* [[[...{"k": true}...]]] 20 levels */
        for (int i = 0; i < 20; i++)
                msgpack_pack_array(&w.pk, 1);
        msgpack_pack_map(&w.pk, 1);
        proto_pack_str(&w, "k");
        msgpack_pack_true(&w.pk);
        npairs += 3;
        assert_int_equal(npairs, 7 + 5 + 10 + 5 + 5 + 3);
        assert_int_equal(proto_end(&w), 0);
        decode(&w, &r, &msg);

        assert_int_equal(msg.via.map.size, npairs);
        const char *p;
        size_t n;
        assert_int_equal(proto_get_bytes(&msg, "s65536", &p, &n), 1);
        assert_int_equal(n, 65536);
        assert_int_equal(proto_get_bytes(&msg, "b65536", &p, &n), 1);
        assert_int_equal(n, 65536);
        const msgpack_object *o = proto_get(&msg, "e9");
        assert_int_equal(o->type, MSGPACK_OBJECT_EXT);
        assert_int_equal(o->via.ext.size, 65536);
        assert_int_equal(o->via.ext.type, -3);
        assert_int_equal(proto_get(&msg, "a65536")->via.array.size, 65536);
        assert_int_equal(proto_get(&msg, "m65536")->via.map.size, 65536);
        o = proto_get(&msg, "ints");
        assert_true(o->via.array.ptr[4].via.i64 == INT64_MIN);
        assert_true(o->via.array.ptr[10].via.u64 == UINT64_MAX);
        proto_reader_done(&r);
        proto_writer_done(&w);
        free(buf);
}

/* One exit reply {exit_code?, signal?, timed_out?, duration_ns?}: k < 0 leaves a field out,
 * k == INT64_MIN writes nil. */
static const char *read_exit(int64_t code, int64_t sig, int mistype, ProtoExit *e)
{
        ProtoWriter w;
        ProtoReader r;
        msgpack_object msg;
        proto_writer_init(&w);
        proto_begin(&w, (code != -1) + (sig != -1) + 2);
        if (code == INT64_MIN)
                proto_kv_nil(&w, "exit_code");
        else if (code != -1)
                proto_kv_int(&w, "exit_code", code);
        if (sig == INT64_MIN)
                proto_kv_nil(&w, "signal");
        else if (sig != -1)
                proto_kv_int(&w, "signal", sig);
        if (mistype)
                proto_kv_str(&w, "timed_out", "yes");
        else
                proto_kv_bool(&w, "timed_out", true);
        proto_kv_uint(&w, "duration_ns", 1500);
        assert_int_equal(proto_end(&w), 0);
        decode(&w, &r, &msg);
        const char *bad = proto_read_exit(&msg, e);
        proto_reader_done(&r);
        proto_writer_done(&w);
        return bad;
}

/* proto-1.11: a command's end from the guest: exactly one of an exit code and a signal, each
 * in range; anything else is refused, saying why, and leaves nothing set. */
static void field_exit(void **state)
{
        ProtoExit e;
        assert_null(read_exit(3, INT64_MIN, 0, &e));
        assert_true(e.has_code && e.code == 3 && e.timed_out && e.duration_ns == 1500);
        assert_null(read_exit(INT64_MIN, 9, 0, &e));
        assert_true(!e.has_code && e.sig == 9);
        assert_null(read_exit(0, 0, 0, &e)); /* signal 0 beside a code: exited */
        assert_true(e.has_code && e.code == 0);
        const int64_t bad[][2] = {{3, 9},    {-1, -1},        {INT64_MIN, INT64_MIN},
                                  {256, -1}, {-4, INT64_MIN}, {INT64_MIN, 65},
                                  {-1, -7}};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                assert_string_equal(read_exit(bad[i][0], bad[i][1], 0, &e),
                                    "not one exit code (0-255) or signal (1-64)");
                assert_false(e.has_code || e.code || e.sig);
        }
        assert_string_equal(read_exit(0, -1, 1, &e), "a mistyped timed_out or duration_ns");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            CASE("proto-1.1", field_uint),       CASE("proto-1.2", field_int),
            CASE("proto-1.3", field_bool),       CASE("proto-1.4", field_double),
            CASE("proto-1.5", field_nil_absent), CASE("proto-1.6", field_str_bin),
            CASE("proto-1.7", field_dup_str),    CASE("proto-1.8", field_wrong_types),
            CASE("proto-1.9", field_lookup),     CASE("proto-1.10", field_every_encoding),
            CASE("proto-1.11", field_exit),
        };
        return cmocka_run_group_tests_name("proto_fields", tests, NULL, NULL);
}
