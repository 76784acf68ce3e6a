/* events_cmd.c: `provium events FILE|unix:PATH [--json] [--follow] [--type GLOB]`: prints the
 * events of an events file or of a run's live socket, one a line: with --json each as a JSON
 * object (for jq), else as a short readable line; --type keeps the matching types. */
#include "events_cmd.h"

#include <errno.h>
#include <fnmatch.h>
#include <signal.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "events_json.h"
#include "events_read.h"
#include "proto.h"

/* How an event is printed; a new format is one more function of this type. */
typedef int (*EventFormat)(FILE *out, const msgpack_object *ev);

static int format_json(FILE *out, const msgpack_object *ev)
{
        int r = events_json_write(out, ev);

        fputc('\n', out);
        return r;
}

static bool str_is(const msgpack_object *o, const char *s)
{
        size_t n = strlen(s);

        return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
               memcmp(o->via.str.ptr, s, n) == 0;
}

/* A string that needs no quotes in a readable line: non-empty, and letters, digits and
 * . _ / : @ + - only. */
static bool str_plain(const msgpack_object *o)
{
        if (o->type != MSGPACK_OBJECT_STR || o->via.str.size == 0)
                return false;
        for (uint32_t i = 0; i < o->via.str.size; i++) {
                unsigned char c = (unsigned char) o->via.str.ptr[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      strchr("._/:@+-", c)))
                        return false;
        }
        return true;
}

static void write_utc(FILE *out, uint64_t ns)
{
        time_t s = (time_t) (ns / 1000000000u);
        struct tm tm;
        char text[32];

        if (gmtime_r(&s, &tm) && strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &tm))
                fprintf(out, "%s.%03uZ", text, (unsigned) (ns / 1000000u % 1000u));
        else
                fprintf(out, "%" PRIu64, ns);
}

/* "TIME TYPE key=value ...": ts as UTC, v left out, a value in JSON unless it is a plain
 * string. */
static int format_line(FILE *out, const msgpack_object *ev)
{
        const msgpack_object_map *m = &ev->via.map;
        const msgpack_object *type = NULL, *ts = NULL;
        int r = 0;

        for (uint32_t i = 0; i < m->size; i++) {
                if (str_is(&m->ptr[i].key, "type"))
                        type = &m->ptr[i].val;
                else if (str_is(&m->ptr[i].key, "ts"))
                        ts = &m->ptr[i].val;
        }
        if (ts && ts->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                write_utc(out, ts->via.u64);
        else
                fputc('-', out);
        fputc(' ', out);
        if (type && type->type == MSGPACK_OBJECT_STR)
                fwrite(type->via.str.ptr, 1, type->via.str.size, out);
        else
                fputc('?', out);
        for (uint32_t i = 0; i < m->size && r == 0; i++) {
                const msgpack_object *k = &m->ptr[i].key, *v = &m->ptr[i].val;
                if (str_is(k, "v") || str_is(k, "type") || str_is(k, "ts"))
                        continue;
                fputc(' ', out);
                if (k->type == MSGPACK_OBJECT_STR)
                        fwrite(k->via.str.ptr, 1, k->via.str.size, out);
                else
                        r = events_json_write(out, k);
                fputc('=', out);
                if (r == 0 && str_plain(v))
                        fwrite(v->via.str.ptr, 1, v->via.str.size, out);
                else if (r == 0)
                        r = events_json_write(out, v);
        }
        fputc('\n', out);
        return r;
}

static void usage(FILE *f)
{
        fputs("usage: provium events FILE|unix:PATH [--json] [--follow] [--type GLOB]...\n"
              "  prints the events of FILE (written by --events FILE) or of a run's live socket\n"
              "  (--events unix:PATH), one a line: a readable line (time, type, fields), or\n"
              "  with --json one JSON object per event\n"
              "  --follow      a file: wait for it, and for more as it grows (until interrupted)\n"
              "  --type GLOB   only events whose type matches (vm.*, disk.fault); repeat for any\n",
              f);
}

#define MAX_TYPES 16

typedef struct Filter {
        const char *globs[MAX_TYPES];
        int n;
} Filter;

static bool wanted(const Filter *f, const msgpack_object *ev)
{
        if (f->n == 0)
                return true;
        const char *t;
        size_t n;
        char type[128];
        if (proto_get_bytes(ev, "type", &t, &n) != 1 || n >= sizeof type)
                return false;
        memcpy(type, t, n);
        type[n] = 0;
        for (int i = 0; i < f->n; i++)
                if (fnmatch(f->globs[i], type, 0) == 0)
                        return true;
        return false;
}

static volatile sig_atomic_t stop;

static void on_stop(int signo)
{
        stop = 1;
}

/* Prints every event of path with fmt that f wants; with follow, a file is read on as it grows.
 * Returns the exit status. */
static int print_events(const char *path, EventFormat fmt, const Filter *f, bool follow)
{
        EventsReader rd;
        const msgpack_object *ev;
        uint64_t offset;
        int r = events_reader_open(&rd, path);
        while (r == -ENOENT && follow && !rd.socket && !stop) { /* a file yet to be made */
                events_reader_close(&rd);
                (void) usleep(200 * 1000);
                r = events_reader_open(&rd, path);
        }

        for (;;) {
                while (r >= 0 && !stop && (r = events_reader_next(&rd, &ev, &offset)) > 0) {
                        if (!wanted(f, ev))
                                continue;
                        if (fmt(stdout, ev) < 0) {
                                snprintf(rd.err, sizeof rd.err, "%s: offset %" PRIu64 ": %s", path,
                                         offset,
                                         ferror(stdout) ? "writing stdout failed"
                                                        : "event nests too deep");
                                r = -EIO;
                        }
                        if (follow || rd.socket)
                                (void) fflush(stdout); /* live: each as it comes */
                }
                if (r != 0 || !follow || rd.socket || stop)
                        break;
                (void) fflush(stdout);
                (void) usleep(200 * 1000); /* a file that grows: look again */
        }
        if (r == 0 && !stop)
                r = events_reader_end(&rd);
        if (fflush(stdout) != 0 && r >= 0) {
                snprintf(rd.err, sizeof rd.err, "writing stdout: %s", strerror(errno));
                r = -EIO;
        }
        if (r < 0)
                fprintf(stderr, "provium events: %s\n", rd.err);
        events_reader_close(&rd);
        return r < 0 ? 1 : 0;
}

int events_cmd_main(int argc, char **argv)
{
        EventFormat fmt = format_line;
        const char *path = NULL;
        Filter filter = {0};
        bool follow = false;

        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];
                if (strcmp(a, "--json") == 0) {
                        fmt = format_json;
                } else if (strcmp(a, "--follow") == 0 || strcmp(a, "-f") == 0) {
                        follow = true;
                } else if (strcmp(a, "--type") == 0 || strcmp(a, "-t") == 0) {
                        if (i + 1 == argc || filter.n == MAX_TYPES) {
                                fprintf(stderr, "provium events: %s: %s\n", a,
                                        i + 1 == argc ? "a type (or a glob: vm.*) expected"
                                                      : "at most 16");
                                return 2;
                        }
                        filter.globs[filter.n++] = argv[++i];
                } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
                        usage(stdout);
                        return 0;
                } else if (a[0] == '-' || path) {
                        fprintf(stderr, "provium events: %s: %s\n", a,
                                a[0] == '-' ? "unknown option" : "one FILE only");
                        usage(stderr);
                        return 2;
                } else {
                        path = a;
                }
        }
        if (!path) {
                usage(stderr);
                return 2;
        }
        struct sigaction sa = {.sa_handler = on_stop};
        sigemptyset(&sa.sa_mask);
        (void) sigaction(SIGINT, &sa, NULL);
        (void) sigaction(SIGTERM, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        return print_events(path, fmt, &filter, follow);
}
