/* test_proto_faults.c: the agent protocol codec (src/common/proto.c): every allocation failed in
 * turn. Cases are numbered like sqlite's (proto-1.1, ...). */
#include "proto_harness.h"

/* ---- allocation fault injection ----
 * malloc and realloc (the only allocators proto.c and libmsgpackc call) are interposed here
 * and forward to the next definition (libc, or the sanitizer's), so the fault loop can fail
 * the Nth allocation without changing proto.c. */

static long fault_at = -1; /* index of the allocation to fail; -1: none */
static bool fault_persist; /* also fail every later one */
static long fault_count;   /* allocations seen since fault_arm() */
static long fault_hits;    /* allocations failed since fault_arm() */

static void fault_arm(long at, bool persist)
{
        fault_count = 0;
        fault_hits = 0;
        fault_persist = persist;
        fault_at = at;
}

static long fault_disarm(void)
{
        fault_at = -1;
        return fault_hits;
}

static bool fault_now(void)
{
        if (fault_at < 0)
                return false;
        long i = fault_count++;
        if (i == fault_at || (fault_persist && i > fault_at)) {
                fault_hits++;
                return true;
        }
        return false;
}

static void *(*real_malloc)(size_t);
static void *(*real_realloc)(void *, size_t);
static bool resolving;

static void resolve(void)
{
        if (real_malloc && real_realloc)
                return;
        resolving = true;
        real_malloc = (void *(*) (size_t)) dlsym(RTLD_NEXT, "malloc");
        real_realloc = (void *(*) (void *, size_t)) dlsym(RTLD_NEXT, "realloc");
        resolving = false;
}

void *malloc(size_t n)
{
        if (resolving)
                return NULL; /* dlsym allocating for itself; it copes with failure */
        resolve();
        return fault_now() ? NULL : real_malloc(n);
}

void *realloc(void *p, size_t n)
{
        if (resolving)
                return NULL;
        resolve();
        return fault_now() ? NULL : real_realloc(p, n);
}

static int teardown_fault(void **state)
{
        (void) fault_disarm();
        return 0;
}

/* ---- 6 fault loop ---- */

/* Writes a request with a 400-pair map (so the reader's zone must grow) and an error reply,
 * reads both back through a fresh reader and copies a string out. Returns 0, or the first
 * error. Every allocation of writer, reader and msgpack is on this path. */
static int fault_scenario(void)
{
        ProtoWriter w;
        ProtoReader r;
        msgpack_object msg;
        char key[16];
        char *s = NULL;
        size_t n;
        int rc;
        bool in_next = false; /* the failure, if any, came from proto_reader_next */

        proto_writer_init(&w);
        proto_begin(&w, 402);
        proto_kv_uint(&w, "id", 1);
        proto_kv_str(&w, "op", "exec");
        for (int i = 0; i < 400; i++) {
                snprintf(key, sizeof key, "k%03d", i);
                proto_kv_int(&w, key, -i);
        }
        rc = proto_end(&w);
        if (rc < 0)
                goto out_w;
        rc = proto_write_error(&w, 2, ENOENT, "open x");
        if (rc < 0)
                goto out_w;
        rc = proto_reader_init(&r);
        if (rc < 0)
                goto out_r;
        const uint8_t *d = proto_writer_data(&w, &n);
        rc = proto_reader_feed(&r, d, 10);
        if (rc < 0)
                goto out_r;
        rc = proto_reader_feed(&r, d + 10, n - 10);
        if (rc < 0)
                goto out_r;
        in_next = true;
        rc = proto_reader_next(&r, &msg);
        if (rc <= 0)
                goto out_r;
        in_next = false;
        check_msg(&msg, 1, "exec");
        assert_int_equal(msg.via.map.size, 402);
        int64_t v;
        assert_int_equal(proto_get_int(&msg, "k399", &v), 1);
        assert_int_equal(v, -399);
        rc = proto_dup_str(&msg, "op", &s);
        if (rc < 0)
                goto out_r;
        assert_string_equal(s, "exec");
        free(s);
        in_next = true;
        rc = proto_reader_next(&r, &msg);
        if (rc <= 0)
                goto out_r;
        assert_true(proto_str_eq(proto_get(&msg, "error"), "ENOENT"));
        rc = proto_reader_next(&r, &msg);
        assert_int_equal(rc, 0);
out_r:
        if (rc < 0 && in_next) /* a failed next() leaves the reader failed */
                assert_int_equal(proto_reader_next(&r, &msg), rc);
        proto_reader_done(&r);
out_w:
        proto_writer_done(&w);
        return rc < 0 ? rc : 0;
}

/* proto-6.1: fail each allocation in turn, once and from then on: every failure comes back as
 * -ENOMEM, nothing crashes or leaks (ASan/LSan), and past the last allocation all succeed. */
static void fault_each_allocation(void **state)
{
        for (int persist = 0; persist <= 1; persist++) {
                long at;
                for (at = 0;; at++) {
                        fault_arm(at, persist);
                        int rc = fault_scenario();
                        long hits = fault_disarm();
                        if (hits == 0) {
                                assert_int_equal(rc, 0);
                                break;
                        }
                        if (rc != -ENOMEM)
                                fail_msg("allocation %ld (persist %d): got %d", at, persist, rc);
                }
                assert_true(at >= 5); /* writer, zone, zone growth, reader buffer, dup_str */
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            {.name = "proto-6.1 fault_each_allocation",
             .test_func = fault_each_allocation,
             .teardown_func = teardown_fault},
        };
        return cmocka_run_group_tests_name("proto_faults", tests, NULL, NULL);
}
