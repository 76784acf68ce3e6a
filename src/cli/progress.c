/* progress.c: the status line of a run (progress.h). */
#include "progress.h"

#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "env.h"
#include "events.h"
#include "term_text.h"

#define MAX_RUNNING 32

typedef struct Running {
        char file[128];
        char test[128];
        uint64_t since_ns; /* the test's start, monotonic */
} Running;

static struct {
        bool on, shown;
        size_t files, done;
        Running running[MAX_RUNNING];
        unsigned nrunning;
        int vms;
        uint64_t budget_mb, free_mb;
        uv_timer_t timer;
        bool timer_on;
} pg;

static Running *running_of(const char *file, bool make)
{
        for (unsigned i = 0; i < pg.nrunning; i++)
                if (strcmp(pg.running[i].file, file) == 0)
                        return &pg.running[i];
        if (!make || pg.nrunning == MAX_RUNNING)
                return NULL;
        Running *r = &pg.running[pg.nrunning++];
        *r = (Running){0};
        term_text_copy(r->file, sizeof r->file, file, strlen(file));
        return r;
}

static void on_file(const msgpack_object *m, void *start)
{
        char file[128];
        (void) proto_copy_str(m, "file", file, sizeof file);
        Running *r = running_of(file, start != NULL);
        if (start || !r)
                return;
        *r = pg.running[--pg.nrunning];
        pg.done++;
}

static void on_test_start(const msgpack_object *m, void *data)
{
        char file[128];
        (void) proto_copy_str(m, "file", file, sizeof file);
        Running *r = running_of(file, true);
        if (r) {
                char raw[sizeof r->test];
                (void) proto_copy_str(m, "test", raw, sizeof raw);
                term_text_copy(r->test, sizeof r->test, raw, strlen(raw));
                r->since_ns = events_mono_ns();
        }
}

static void on_pool(const msgpack_object *m, void *budget)
{
        uint64_t mb;
        if (proto_get_uint(m, budget ? "memory_mb" : "free_memory_mb", &mb) == 1)
                *(budget ? &pg.budget_mb : &pg.free_mb) = mb;
        if (budget)
                pg.free_mb = pg.budget_mb;
}

static void draw(void)
{
        if (!pg.on)
                return;
        struct winsize ws;
        int width = ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20 ? ws.ws_col : 80;
        char line[1024];
        int n = snprintf(line, sizeof line, "[%zu/%zu files] %d VM%s", pg.done, pg.files, pg.vms,
                         pg.vms == 1 ? "" : "s");
        if (pg.budget_mb && n < (int) sizeof line)
                n += snprintf(line + n, sizeof line - (size_t) n, ", pool %llu/%llu MiB",
                              (unsigned long long) (pg.budget_mb - pg.free_mb),
                              (unsigned long long) pg.budget_mb);
        uint64_t now = events_mono_ns();
        for (unsigned i = 0; i < pg.nrunning && n < (int) sizeof line; i++) {
                const Running *r = &pg.running[i];
                const char *base = strrchr(r->file, '/');
                n += snprintf(line + n, sizeof line - (size_t) n, " | %s: %s %.0fs",
                              base ? base + 1 : r->file, r->test[0] ? r->test : "(starting)",
                              r->since_ns ? (double) (now - r->since_ns) / 1e9 : 0.0);
        }
        if (n >= width)
                n = width - 1; /* one line: the terminal must not wrap it */
        printf("\r\033[K%.*s", n, line);
        fflush(stdout);
        pg.shown = true;
}

static void progress_sink(void *data, const char *type, const uint8_t *mp, size_t len)
{
        if (strcmp(type, "file.start") == 0)
                (void) events_decode(mp, len, on_file, (void *) 1);
        else if (strcmp(type, "file.end") == 0)
                (void) events_decode(mp, len, on_file, NULL);
        else if (strcmp(type, "test.start") == 0)
                (void) events_decode(mp, len, on_test_start, NULL);
        else if (strcmp(type, "vm.spawn") == 0)
                pg.vms++;
        else if (strcmp(type, "vm.exit") == 0)
                pg.vms -= pg.vms > 0;
        else if (strcmp(type, "pool.budget") == 0)
                (void) events_decode(mp, len, on_pool, (void *) 1);
        else if (strcmp(type, "pool.state") == 0)
                (void) events_decode(mp, len, on_pool, NULL);
        else
                return;
        if (pg.shown)
                draw();
}

void progress_start(const char *mode, bool tap, size_t files)
{
        const char *term = env_get()->term;
        bool tty = isatty(STDOUT_FILENO) && !(term && strcmp(term, "dumb") == 0);
        pg.on = strcmp(mode, "always") == 0 || (strcmp(mode, "auto") == 0 && tty && !tap);
        pg.files = files;
        if (pg.on)
                (void) events_subscribe(progress_sink, NULL);
}

static void on_tick(uv_timer_t *t)
{
        draw();
}

void progress_attach(uv_loop_t *loop)
{
        if (!pg.on || uv_timer_init(loop, &pg.timer) < 0)
                return;
        pg.timer_on = true;
        uv_unref((uv_handle_t *) &pg.timer);
        (void) uv_timer_start(&pg.timer, on_tick, 250, 250);
}

void progress_hide(void)
{
        if (pg.on && pg.shown) {
                printf("\r\033[K");
                pg.shown = false;
        }
}

void progress_show(void)
{
        draw();
}

void progress_stop(void)
{
        progress_hide();
        fflush(stdout);
        if (pg.timer_on) {
                uv_close((uv_handle_t *) &pg.timer, NULL);
                pg.timer_on = false;
        }
        pg.on = false;
}
