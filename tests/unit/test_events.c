/* test_events.c: unit tests for reading an events file (src/cli/events_read.c) and writing
 * its events as JSON (src/cli/events_json.c), the parts of `provium events` that need no VM.
 *
 * Sections: helpers, 1 JSON strings, 2 JSON values, 3 object sizes, 4 the reader.
 * Cases are numbered like sqlite's (events-1.1, ...).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "events_json.h"
#include "events_read.h"

/* ---- helpers ---- */

/* The JSON text of the msgpack bytes mp[0..n) (one object), malloc'ed. */
static char *json_of(const void *mp, size_t n)
{
        msgpack_unpacked u;
        size_t off = 0, len = 0;
        char *text = NULL;
        FILE *f = open_memstream(&text, &len);

        assert_non_null(f);
        msgpack_unpacked_init(&u);
        assert_int_equal(msgpack_unpack_next(&u, mp, n, &off), MSGPACK_UNPACK_SUCCESS);
        assert_int_equal(events_json_write(f, &u.data), 0);
        assert_int_equal(fclose(f), 0);
        msgpack_unpacked_destroy(&u);
        return text;
}

static void expect_json(const char *mp, size_t n, const char *want)
{
        char *got = json_of(mp, n);
        assert_string_equal(got, want);
        free(got);
}

#define EXPECT(mp, want) expect_json(mp, sizeof mp - 1, want)

/* A msgpack string holding s[0..n). */
static void expect_str(const char *s, size_t n, const char *want)
{
        char mp[300];
        assert_true(n < 256);
        mp[0] = (char) 0xd9;
        mp[1] = (char) n;
        memcpy(mp + 2, s, n);
        expect_json(mp, n + 2, want);
}

#define EXPECT_STR(s, want) expect_str(s, sizeof s - 1, want)

/* ---- 1 JSON strings ---- */

static void str_plain_and_escapes(void **state)
{
        (void) state;
        EXPECT_STR("hello", "\"hello\"");
        EXPECT_STR("", "\"\"");
        EXPECT_STR("a\"b\\c/", "\"a\\\"b\\\\c/\"");
        EXPECT_STR("\n\t\r", "\"\\n\\t\\r\"");
}

static void str_control_chars(void **state)
{
        (void) state;
        EXPECT_STR("\x01\x1f\x7f\b\f", "\"\\u0001\\u001f\\u007f\\u0008\\u000c\"");
        expect_str("a\0b", 3, "\"a\\u0000b\"");
}

static void str_valid_utf8_kept(void **state)
{
        (void) state;
        EXPECT_STR("\xc3\xa9", "\"\xc3\xa9\"");                 /* é */
        EXPECT_STR("\xe2\x82\xac", "\"\xe2\x82\xac\"");         /* € */
        EXPECT_STR("\xf0\x9f\x98\x80", "\"\xf0\x9f\x98\x80\""); /* U+1F600 */
        EXPECT_STR("\xf4\x8f\xbf\xbf", "\"\xf4\x8f\xbf\xbf\""); /* U+10FFFF */
}

static void str_invalid_utf8_replaced(void **state)
{
        (void) state;
        EXPECT_STR("a\x80z", "\"a\\ufffdz\"");                              /* stray continuation */
        EXPECT_STR("\xc0\xaf", "\"\\ufffd\\ufffd\"");                       /* overlong '/' */
        EXPECT_STR("\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\"");            /* overlong, 3 bytes */
        EXPECT_STR("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"");            /* surrogate U+D800 */
        EXPECT_STR("\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\""); /* > U+10FFFF */
        EXPECT_STR("\xe2\x82", "\"\\ufffd\\ufffd\"");                       /* cut short */
        EXPECT_STR("\xff", "\"\\ufffd\"");
}

/* ---- 2 JSON values ---- */

static void scalars(void **state)
{
        (void) state;
        EXPECT("\xc0", "null");
        EXPECT("\xc2", "false");
        EXPECT("\xc3", "true");
        EXPECT("\x7f", "127");
        EXPECT("\xff", "-1");
        EXPECT("\xcf\xff\xff\xff\xff\xff\xff\xff\xff", "18446744073709551615");
        EXPECT("\xd3\x80\x00\x00\x00\x00\x00\x00\x00", "-9223372036854775808");
        EXPECT("\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00", "1.5");
        EXPECT("\xca\x40\x20\x00\x00", "2.5");
}

static void floats_not_in_json(void **state)
{
        (void) state;
        EXPECT("\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00", "null"); /* NaN */
        EXPECT("\xcb\x7f\xf0\x00\x00\x00\x00\x00\x00", "null"); /* +inf */
        EXPECT("\xca\xff\x80\x00\x00", "null");                 /* -inf */
}

static void binary_as_base64(void **state)
{
        (void) state;
        EXPECT("\xc4\x00", "{\"$bin\":\"\"}");
        EXPECT("\xc4\x01"
               "f",
               "{\"$bin\":\"Zg==\"}");
        EXPECT("\xc4\x02"
               "fo",
               "{\"$bin\":\"Zm8=\"}");
        EXPECT("\xc4\x03"
               "foo",
               "{\"$bin\":\"Zm9v\"}");
        EXPECT("\xc4\x04\x00\xff\xfe\x80", "{\"$bin\":\"AP/+gA==\"}");
        EXPECT("\xd4\x05"
               "x",
               "{\"$ext\":5,\"$bin\":\"eA==\"}");
}

static void containers(void **state)
{
        (void) state;
        EXPECT("\x80", "{}");
        EXPECT("\x90", "[]");
        EXPECT("\x82\xa1"
               "a\x01\xa1"
               "b\x92\xc0\x81\xa1"
               "c\xa0",
               "{\"a\":1,\"b\":[null,{\"c\":\"\"}]}");
        /* keys that are not strings become their JSON text, as a string */
        EXPECT("\x83\x07\xa1"
               "x\xc3\xa1"
               "y\x91\x01\xa1"
               "z",
               "{\"7\":\"x\",\"true\":\"y\",\"[1]\":\"z\"}");
        EXPECT("\x81\xa2"
               "\x01\"\x01",
               "{\"\\u0001\\\"\":1}");
}

/* ---- 3 object sizes ---- */

/* Bytes and the size events_object_size gives them ('a' is \x61, 'b' \x62, 'x' \x78). */
typedef struct SizeCase {
        const char *mp;
        size_t len;
        ssize_t want;
} SizeCase;

#define SIZE(mp, want)                                                                             \
        {                                                                                          \
                mp, sizeof mp - 1, want                                                            \
        }

static void check_sizes(const SizeCase *cases, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                ssize_t got = events_object_size((const uint8_t *) cases[i].mp, cases[i].len);
                if (got != cases[i].want)
                        fail_msg("case %zu: size %zd, expected %zd", i, got, cases[i].want);
        }
}

static void size_complete(void **state)
{
        static const SizeCase cases[] = {
            SIZE("\x01", 1),
            SIZE("\x81\xa1\x61\x01\x02", 4), /* {a: 1}, then the next object */
            SIZE("\xd9\x02\x61\x62", 4),     /* str 8 */
            SIZE("\xc7\x01\x05\x78", 4),     /* ext 8 */
            SIZE("\xd8\x01\x30\x31\x32\x33\x34\x35\x36\x37\x38\x39\x61\x62\x63\x64\x65\x66", 18),
            SIZE("\xdc\x00\x02\xc0\xc3", 5), /* array 16 */
            SIZE("\xde\x00\x01\x01\x02", 5), /* map 16 */
            SIZE("\xcb\0\0\0\0\0\0\0\0", 9), /* float 64 */
        };

        (void) state;
        check_sizes(cases, sizeof cases / sizeof cases[0]);
}

static void size_incomplete(void **state)
{
        static const SizeCase cases[] = {
            SIZE("", 0),
            SIZE("\x82\xa1\x61\x01", 0), /* a map of 2 with 1 entry */
            SIZE("\xd9", 0),
            SIZE("\xd9\x05\x61\x62", 0),
            SIZE("\xcd\x01", 0),
            /* a huge declared count or length is only incomplete: nothing is allocated */
            SIZE("\xdf\xff\xff\xff\xff\x01\x02", 0),
            SIZE("\xdb\xff\xff\xff\xff\x61\x62", 0),
        };

        (void) state;
        check_sizes(cases, sizeof cases / sizeof cases[0]);
}

static void size_bad(void **state)
{
        uint8_t deep[EVENTS_MAX_DEPTH + 2];

        (void) state;
        assert_int_equal(events_object_size((const uint8_t *) "\xc1", 1), -EBADMSG);
        assert_int_equal(events_object_size((const uint8_t *) "\x92\x01\xc1", 3), -EBADMSG);
        memset(deep, 0x91, sizeof deep); /* arrays of one array of ... */
        deep[EVENTS_MAX_DEPTH] = 0x01;
        assert_int_equal(events_object_size(deep, EVENTS_MAX_DEPTH + 1), EVENTS_MAX_DEPTH + 1);
        deep[EVENTS_MAX_DEPTH] = 0x91;
        deep[EVENTS_MAX_DEPTH + 1] = 0x01;
        assert_int_equal(events_object_size(deep, sizeof deep), -EBADMSG);
}

/* ---- 4 the reader ---- */

static char *write_temp(const void *data, size_t n)
{
        char *path = strdup("/tmp/provium-test-events-XXXXXX");
        int fd;

        assert_non_null(path);
        fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, n), (ssize_t) n);
        assert_int_equal(close(fd), 0);
        return path;
}

/* Writes data[0..n) to a file and reads every event of it: returns the reader's verdict (the
 * error of next(), else end()'s), *ret_count the events read, ret_err its message with the
 * file's name replaced by FILE. */
static int read_file(const void *data, size_t n, int *ret_count, char ret_err[512])
{
        const msgpack_object *ev;
        EventsReader rd;
        uint64_t off;
        char *path = write_temp(data, n);
        int r;

        *ret_count = 0;
        assert_int_equal(events_reader_open(&rd, path), 0);
        while ((r = events_reader_next(&rd, &ev, &off)) > 0)
                (*ret_count)++;
        if (r == 0)
                r = events_reader_end(&rd);
        ret_err[0] = '\0';
        if (r < 0) {
                size_t plen = strlen(path);
                assert_memory_equal(rd.err, path, plen);
                snprintf(ret_err, 512, "FILE%s", rd.err + plen);
        }
        events_reader_close(&rd);
        events_reader_close(&rd); /* twice is fine */
        unlink(path);
        free(path);
        return r;
}

/* A file's bytes, the reader's verdict, the events before it and its message. */
typedef struct ReadCase {
        const char *mp;
        size_t len;
        int want_r, want_n;
        const char *want_err;
} ReadCase;

#define READ(mp, r, n, err)                                                                        \
        {                                                                                          \
                mp, sizeof mp - 1, r, n, err                                                       \
        }

static void reader_verdicts(void **state)
{
        static const ReadCase cases[] = {
            READ("\x81\xa4\x74\x79\x70\x65\xa1\x61\x81\xa4\x74\x79\x70\x65\xa1\x62", 0, 2, ""),
            READ("", 0, 0, ""),
            READ("\x81\xa1\x61\x01\x82\xa1\x61\x01\xa1", -EBADMSG, 1,
                 "FILE: offset 4: the file ends inside an event (5 bytes of it)"),
            READ("\x80\x92\x01\x02", -EBADMSG, 1,
                 "FILE: offset 1: an event is a msgpack map, this is an array"),
            READ("\x80\x80\xa1\x61", -EBADMSG, 2,
                 "FILE: offset 2: an event is a msgpack map, this is a string"),
            READ("\x80\xc1", -EBADMSG, 1,
                 "FILE: offset 1: not an event (not msgpack, or nested deeper than 32)"),
        };
        char err[512];
        int n;

        (void) state;
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                int r = read_file(cases[i].mp, cases[i].len, &n, err);
                if (r != cases[i].want_r || n != cases[i].want_n ||
                    strcmp(err, cases[i].want_err) != 0)
                        fail_msg("case %zu: %d, %d events, '%s'", i, r, n, err);
        }
}

static void reader_refuses_huge_events(void **state)
{
        uint8_t *huge = malloc(EVENTS_MAX_EVENT + 16);
        char err[512];
        int n;

        (void) state;
        /* a map whose one string is over the bound: refused, not buffered without end */
        assert_non_null(huge);
        memcpy(huge, "\x81\xa1\x61\xdb\x01\x00\x00\x10", 8);
        memset(huge + 8, 'x', EVENTS_MAX_EVENT + 8);
        assert_int_equal(read_file(huge, EVENTS_MAX_EVENT + 16, &n, err), -EBADMSG);
        assert_int_equal(n, 0);
        assert_string_equal(err, "FILE: offset 0: an event larger than 16 MiB");
        free(huge);
}

static void reader_missing_file(void **state)
{
        EventsReader rd;

        (void) state;
        assert_int_equal(events_reader_open(&rd, "/nonexistent/events"), -ENOENT);
        assert_string_equal(rd.err, "/nonexistent/events: No such file or directory");
        events_reader_close(&rd);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            {"events-1.1 str_plain_and_escapes", str_plain_and_escapes, NULL, NULL, NULL},
            {"events-1.2 str_control_chars", str_control_chars, NULL, NULL, NULL},
            {"events-1.3 str_valid_utf8_kept", str_valid_utf8_kept, NULL, NULL, NULL},
            {"events-1.4 str_invalid_utf8_replaced", str_invalid_utf8_replaced, NULL, NULL, NULL},
            {"events-2.1 scalars", scalars, NULL, NULL, NULL},
            {"events-2.2 floats_not_in_json", floats_not_in_json, NULL, NULL, NULL},
            {"events-2.3 binary_as_base64", binary_as_base64, NULL, NULL, NULL},
            {"events-2.4 containers", containers, NULL, NULL, NULL},
            {"events-3.1 size_complete", size_complete, NULL, NULL, NULL},
            {"events-3.2 size_incomplete", size_incomplete, NULL, NULL, NULL},
            {"events-3.3 size_bad", size_bad, NULL, NULL, NULL},
            {"events-4.1 reader_verdicts", reader_verdicts, NULL, NULL, NULL},
            {"events-4.2 reader_refuses_huge_events", reader_refuses_huge_events, NULL, NULL, NULL},
            {"events-4.3 reader_missing_file", reader_missing_file, NULL, NULL, NULL},
        };
        return cmocka_run_group_tests_name("events", tests, NULL, NULL);
}
