/* reporter.c: the summary on stdout: a line per test and the final counts, for a person or, with
 * --tap, as TAP version 14 for a harness. */
#include <msgpack.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "env.h"
#include "cli.h"
#include "events.h"
#include "progress.h"
#include "term_text.h"

static struct {
        unsigned passed, failed, skipped;
        bool verbose;
        bool color;
        bool tap;
} rep;

/* TAP: s on one line, '#' and '\\' escaped (TAP 14), control bytes as '?'. */
static void tap_text(const char *s, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) s[i];
                if (c == '#' || c == '\\')
                        putchar('\\');
                putchar(c < 0x20 ? '?' : c);
        }
}

/* One TAP test point; a failure's message follows as a YAML block. */
static void tap_point(const char *file, const char *test, const char *status, const char *msg,
                      size_t mlen)
{
        bool fail = strcmp(status, "fail") == 0, skip = strcmp(status, "skip") == 0;
        printf("%s %u - ", fail ? "not ok" : "ok", rep.passed + rep.failed + rep.skipped);
        tap_text(file, strlen(file));
        fputs(": ", stdout);
        tap_text(test, strlen(test));
        if (skip) {
                fputs(" # SKIP ", stdout);
                tap_text(msg, mlen);
        }
        putchar('\n');
        if (!fail || !mlen)
                return;
        fputs("  ---\n  message: |\n    ", stdout);
        for (size_t i = 0; i < mlen; i++) {
                unsigned char c = (unsigned char) msg[i];
                if (c == '\n')
                        fputs("\n    ", stdout);
                else
                        putchar(c < 0x20 && c != '\t' ? '?' : c);
        }
        fputs("\n  ...\n", stdout);
}

static void print_indented(const char *msg)
{
        const char *line = msg;
        while (*line) {
                const char *nl = strchr(line, '\n');
                size_t len = nl ? (size_t) (nl - line) : strlen(line);
                fputs("      ", stdout);
                term_text_write(stdout, line, len, 0);
                putchar('\n');
                if (!nl)
                        break;
                line = nl + 1;
        }
}

static void on_test_end(const msgpack_object *m, void *data)
{
        char file[1024], test[1024], status[16];
        (void) proto_copy_str(m, "file", file, sizeof file);
        (void) proto_copy_str(m, "test", test, sizeof test);
        (void) proto_copy_str(m, "status", status, sizeof status);
        uint64_t dur = 0;
        (void) proto_get_uint(m, "duration_ns", &dur);
        const char *msg = "";
        size_t mlen = 0;
        (void) proto_get_bytes(m, "message", &msg, &mlen);
        const char *label, *color;
        if (rep.tap) {
                rep.passed += strcmp(status, "pass") == 0;
                rep.skipped += strcmp(status, "skip") == 0;
                rep.failed += strcmp(status, "pass") != 0 && strcmp(status, "skip") != 0;
                tap_point(file, test, status, msg, mlen);
                fflush(stdout);
                return;
        }
        if (strcmp(status, "pass") == 0) {
                rep.passed++;
                label = "PASS";
                color = "\033[32m";
        } else if (strcmp(status, "skip") == 0) {
                rep.skipped++;
                label = "SKIP";
                color = "\033[33m";
        } else {
                rep.failed++;
                label = "FAIL";
                color = "\033[31m";
        }
        progress_hide();
        printf("%s%s%s  ", rep.color ? color : "", label, rep.color ? "\033[0m" : "");
        term_text_write(stdout, file, strlen(file), 0);
        fputs(": ", stdout);
        term_text_write(stdout, test, strlen(test), 0);
        printf(" (%.2fs)", (double) dur / 1e9);
        if (strcmp(status, "skip") == 0 && mlen) {
                fputs(": ", stdout);
                term_text_write(stdout, msg, mlen, 0);
        }
        printf("\n");
        if (strcmp(status, "fail") == 0 && mlen) {
                char *copy = strndup(msg, mlen);
                if (copy)
                        print_indented(copy);
                free(copy);
        }
        fflush(stdout);
        progress_show();
}

static void on_boot(const msgpack_object *m, void *data)
{
        char vm[64];
        uint64_t dur = 0;
        (void) proto_copy_str(m, "vm", vm, sizeof vm);
        (void) proto_get_uint(m, "duration_ns", &dur);
        progress_hide();
        printf("      vm %s booted in %.2fs\n", vm, (double) dur / 1e9);
        progress_show();
}

static void sink(void *data, const char *type, const uint8_t *mp, size_t len)
{
        if (strcmp(type, "test.end") == 0)
                (void) events_decode(mp, len, on_test_end, NULL);
        else if (rep.verbose && strcmp(type, "vm.boot") == 0)
                (void) events_decode(mp, len, on_boot, NULL);
}

void reporter_start(bool verbose, bool tap)
{
        rep.verbose = verbose && !tap;
        rep.tap = tap;
        if (tap)
                printf("TAP version 14\n");
        rep.color = isatty(STDOUT_FILENO) && !env_get()->no_color;
        (void) events_subscribe(sink, NULL);
}

void reporter_file_crashed(const char *file, const char *why)
{
        rep.failed++;
        if (rep.tap) {
                tap_point(file, "(file)", "fail", why, strlen(why));
                fflush(stdout);
                return;
        }
        progress_hide();
        printf("FAIL  %s: (file) (0.00s)\n", file);
        print_indented(why);
        fflush(stdout);
        progress_show();
}

unsigned reporter_total(void)
{
        return rep.passed + rep.failed + rep.skipped;
}

unsigned reporter_finish(void)
{
        if (rep.tap)
                printf("1..%u\n# ", rep.passed + rep.failed + rep.skipped);
        printf("%u passed, %u failed, %u skipped\n", rep.passed, rep.failed, rep.skipped);
        fflush(stdout);
        return rep.failed;
}
