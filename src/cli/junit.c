/* junit.c: the run as JUnit XML, as Jenkins, GitLab and GitHub's test reporters read it: one
 * testsuite per file, one testcase per test with its time, failure with the message, skipped
 * with the reason, and a failure's console lines in system-out. A sink on the event bus. */
#include "junit.h"

#include <errno.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "events.h"
#include "strfmt.h"

#define CONSOLE_MARK "--- last console lines ---"

typedef struct Case {
        char *file, *name, *status, *message;
        double seconds;
} Case;

static struct {
        Case *v;
        size_t n, cap;
        bool on;
} junit;

static char *field(const msgpack_object *m, const char *key)
{
        const char *p = "";
        size_t n = 0;
        (void) proto_get_bytes(m, key, &p, &n);
        return strndup(p, n);
}

static void add_case(char *file, char *name, char *status, char *message, double seconds)
{
        if (junit.n == junit.cap) {
                size_t cap = junit.cap ? 2 * junit.cap : 64;
                Case *v = realloc(junit.v, cap * sizeof *v);
                if (!v)
                        goto drop;
                junit.v = v;
                junit.cap = cap;
        }
        if (!file || !name || !status || !message)
                goto drop;
        junit.v[junit.n++] = (Case){file, name, status, message, seconds};
        return;
drop: /* out of memory: the report lacks this test, the run itself goes on */
        free(file);
        free(name);
        free(status);
        free(message);
}

static void on_test_end(const msgpack_object *m, void *data)
{
        uint64_t ns = 0;
        (void) proto_get_uint(m, "duration_ns", &ns);
        add_case(field(m, "file"), field(m, "test"), field(m, "status"), field(m, "message"),
                 (double) ns / 1e9);
}

static void sink(void *data, const char *type, const uint8_t *mp, size_t len)
{
        if (strcmp(type, "test.end") == 0)
                (void) events_decode(mp, len, on_test_end, NULL);
}

void junit_start(void)
{
        junit.on = true;
        (void) events_subscribe(sink, NULL);
}

void junit_file_crashed(const char *file, const char *why)
{
        if (junit.on)
                add_case(strdup(file), strdup("(file)"), strdup("fail"), strdup(why), 0);
}

/* s as XML text or attribute value: markup escaped, characters XML 1.0 forbids (control
 * bytes, invalid UTF-8) replaced by U+FFFD. */
static void put_escaped(FILE *f, const char *s, size_t n)
{
        const unsigned char *p = (const unsigned char *) s;
        for (size_t i = 0; i < n;) {
                unsigned char c = p[i];
                if (c >= 0x80) {
                        size_t len = utf8_sequence(p + i, n - i);
                        if (len)
                                fwrite(p + i, 1, len, f);
                        else
                                fputs("\xef\xbf\xbd", f);
                        i += len ? len : 1;
                        continue;
                }
                if (c == '&')
                        fputs("&amp;", f);
                else if (c == '<')
                        fputs("&lt;", f);
                else if (c == '>')
                        fputs("&gt;", f);
                else if (c == '"')
                        fputs("&quot;", f);
                else if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
                        fputs("\xef\xbf\xbd", f);
                else
                        fputc(c, f);
                i++;
        }
}

static void put_str(FILE *f, const char *s)
{
        put_escaped(f, s, strlen(s));
}

static void put_case(FILE *f, const Case *c)
{
        fputs("    <testcase classname=\"", f);
        put_str(f, c->file);
        fputs("\" name=\"", f);
        put_str(f, c->name);
        fprintf(f, "\" time=\"%.3f\"", c->seconds);
        bool fail = strcmp(c->status, "fail") == 0, skip = strcmp(c->status, "skip") == 0;
        if (!fail && !skip) {
                fputs("/>\n", f);
                return;
        }
        size_t first = strcspn(c->message, "\n");
        fputs(">\n      <", f);
        fputs(fail ? "failure" : "skipped", f);
        fputs(" message=\"", f);
        put_escaped(f, c->message, first);
        if (skip) {
                fputs("\"/>\n    </testcase>\n", f);
                return;
        }
        fputs("\" type=\"failure\">", f);
        put_str(f, c->message);
        fputs("</failure>\n", f);
        const char *console = strstr(c->message, CONSOLE_MARK);
        if (console) {
                fputs("      <system-out>", f);
                put_str(f,
                        console + strlen(CONSOLE_MARK) + (console[strlen(CONSOLE_MARK)] == '\n'));
                fputs("</system-out>\n", f);
        }
        fputs("    </testcase>\n", f);
}

static void count(const char *file, unsigned *tests, unsigned *failures, unsigned *skipped,
                  double *seconds)
{
        *tests = *failures = *skipped = 0;
        *seconds = 0;
        for (size_t i = 0; i < junit.n; i++) {
                const Case *c = &junit.v[i];
                if (file && strcmp(c->file, file) != 0)
                        continue;
                (*tests)++;
                *failures += strcmp(c->status, "fail") == 0;
                *skipped += strcmp(c->status, "skip") == 0;
                *seconds += c->seconds;
        }
}

static void put_report(FILE *f)
{
        unsigned t, fl, s;
        double secs;
        count(NULL, &t, &fl, &s, &secs);
        fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n", f);
        fprintf(f,
                "<testsuites name=\"provium\" tests=\"%u\" failures=\"%u\" errors=\"0\" "
                "skipped=\"%u\" time=\"%.3f\">\n",
                t, fl, s, secs);
        for (size_t i = 0; i < junit.n; i++) {
                const char *file = junit.v[i].file;
                bool seen = false;
                for (size_t k = 0; k < i && !seen; k++)
                        seen = strcmp(junit.v[k].file, file) == 0;
                if (seen)
                        continue;
                count(file, &t, &fl, &s, &secs);
                fputs("  <testsuite name=\"", f);
                put_str(f, file);
                fprintf(f,
                        "\" tests=\"%u\" failures=\"%u\" errors=\"0\" skipped=\"%u\" "
                        "time=\"%.3f\">\n",
                        t, fl, s, secs);
                for (size_t k = i; k < junit.n; k++)
                        if (strcmp(junit.v[k].file, file) == 0)
                                put_case(f, &junit.v[k]);
                fputs("  </testsuite>\n", f);
        }
        fputs("</testsuites>\n", f);
}

int junit_write(const char *path)
{
        char *tmp = NULL;
        if (asprintf(&tmp, "%s.tmp.%d", path, (int) getpid()) < 0)
                return -ENOMEM;
        FILE *f = fopen(tmp, "we");
        int r = f ? 0 : -errno;
        if (f) {
                put_report(f);
                if (ferror(f))
                        r = -EIO;
                if (fclose(f) != 0 && r == 0)
                        r = -errno;
        }
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0)
                (void) unlink(tmp);
        free(tmp);
        return r;
}

void junit_free(void)
{
        for (size_t i = 0; i < junit.n; i++) {
                free(junit.v[i].file);
                free(junit.v[i].name);
                free(junit.v[i].status);
                free(junit.v[i].message);
        }
        free(junit.v);
        junit.v = NULL;
        junit.n = junit.cap = 0;
}
