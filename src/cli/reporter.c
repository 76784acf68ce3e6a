/* reporter.c: the human-readable summary: a line per test and the final counts. */
#include <msgpack.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "env.h"
#include "cli.h"
#include "events.h"

static struct {
        unsigned passed, failed, skipped;
        bool verbose;
        bool color;
} rep;

static void field(const msgpack_object *m, const char *key, char *out, size_t outlen)
{
        const char *p;
        size_t n;
        if (proto_get_bytes(m, key, &p, &n) != 1)
                n = 0;
        snprintf(out, outlen, "%.*s", (int) n, n ? p : "");
}

static void print_indented(const char *msg)
{
        const char *line = msg;
        while (*line) {
                const char *nl = strchr(line, '\n');
                int len = nl ? (int) (nl - line) : (int) strlen(line);
                printf("      %.*s\n", len, line);
                if (!nl)
                        break;
                line = nl + 1;
        }
}

static void on_test_end(const msgpack_object *m, void *data)
{
        char file[1024], test[1024], status[16];
        field(m, "file", file, sizeof file);
        field(m, "test", test, sizeof test);
        field(m, "status", status, sizeof status);
        uint64_t dur = 0;
        (void) proto_get_uint(m, "duration_ns", &dur);
        const char *msg = "";
        size_t mlen = 0;
        (void) proto_get_bytes(m, "message", &msg, &mlen);
        const char *label, *color;
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
        printf("%s%s%s  %s: %s (%.2fs)", rep.color ? color : "", label, rep.color ? "\033[0m" : "",
               file, test, (double) dur / 1e9);
        if (strcmp(status, "skip") == 0 && mlen)
                printf(": %.*s", (int) mlen, msg);
        printf("\n");
        if (strcmp(status, "fail") == 0 && mlen) {
                char *copy = strndup(msg, mlen);
                if (copy)
                        print_indented(copy);
                free(copy);
        }
        fflush(stdout);
}

static void on_boot(const msgpack_object *m, void *data)
{
        char vm[64];
        uint64_t dur = 0;
        field(m, "vm", vm, sizeof vm);
        (void) proto_get_uint(m, "duration_ns", &dur);
        printf("      vm %s booted in %.2fs\n", vm, (double) dur / 1e9);
}

static void sink(void *data, const char *type, const uint8_t *mp, size_t len)
{
        if (strcmp(type, "test.end") == 0)
                (void) events_decode(mp, len, on_test_end, NULL);
        else if (rep.verbose && strcmp(type, "vm.boot") == 0)
                (void) events_decode(mp, len, on_boot, NULL);
}

void reporter_start(bool verbose)
{
        rep.verbose = verbose;
        rep.color = isatty(STDOUT_FILENO) && !env_get()->no_color;
        (void) events_subscribe(sink, NULL);
}

void reporter_file_crashed(const char *file, const char *why)
{
        rep.failed++;
        printf("FAIL  %s: (file) (0.00s)\n", file);
        print_indented(why);
        fflush(stdout);
}

unsigned reporter_total(void)
{
        return rep.passed + rep.failed + rep.skipped;
}

unsigned reporter_finish(void)
{
        printf("%u passed, %u failed, %u skipped\n", rep.passed, rep.failed, rep.skipped);
        fflush(stdout);
        return rep.failed;
}
