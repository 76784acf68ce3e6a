/* run_outputs.c: the events files, the artifacts directory and the premature-exit file. */
#include "run_outputs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "env.h"
#include "events.h"
#include "strfmt.h"

static void events_file_sink(void *data, const char *type, const uint8_t *mp, size_t len)
{
        EventsFile *e = data;
        if (fwrite(mp, 1, len, e->f) != len) {
                fprintf(stderr, "provium: writing events to %s: %s; events file closed\n", e->path,
                        strerror(errno));
                events_unsubscribe(e->sink);
                e->sink = -1;
        }
}

static int events_file_open(EventsFile *e, const char *path, const char *what)
{
        e->sink = -1;
        e->path = strdup(path);
        e->f = e->path ? fopen(path, "we") : NULL;
        if (!e->f) {
                int r = e->path ? -errno : -ENOMEM;
                fprintf(stderr, "provium: %s %s: %s\n", what, path, strerror(-r));
                return r;
        }
        e->sink = events_subscribe(events_file_sink, e);
        return e->sink < 0 ? -ENOMEM : 0;
}

static void events_file_close(EventsFile *e)
{
        if (e->sink >= 0)
                events_unsubscribe(e->sink);
        if (e->f && fclose(e->f) != 0)
                fprintf(stderr, "provium: events file %s: %s\n", e->path, strerror(errno));
        free(e->path);
        *e = (EventsFile){.sink = -1};
}

/* mkdir -p, for a directory the user named (Bazel makes its own). */
static int make_dirs(const char *path)
{
        char p[4096];
        if (snprintf(p, sizeof p, "%s", path) >= (int) sizeof p)
                return -ENAMETOOLONG;
        for (char *s = strchr(p + 1, '/');; s = strchr(s + 1, '/')) {
                if (s)
                        *s = 0;
                if (mkdir(p, 0755) < 0 && errno != EEXIST)
                        return -errno;
                if (!s)
                        return 0;
                *s = '/';
        }
}

int run_outputs_open(RunOutputs *r, const CliOptions *o)
{
        *r = (RunOutputs){0};
        for (int i = 0; i <= CLI_MAX_EVENTS; i++)
                r->events[i].sink = -1;
        const ProviumEnv *env = env_get();
        if (env->premature_exit_file) {
                int fd = open(env->premature_exit_file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                if (fd < 0) {
                        fprintf(stderr, "provium: TEST_PREMATURE_EXIT_FILE %s: %s\n",
                                env->premature_exit_file, strerror(errno));
                        return -errno;
                }
                (void) close(fd);
                r->premature = env->premature_exit_file;
        }
        for (int i = 0; i < o->nevents; i++) {
                const char *e = o->events[i];
                char err[512];
                if (strncmp(e, "unix:", 5) == 0) {
                        r->sockets[i] =
                            events_socket_open(uv_default_loop(), e + 5, err, sizeof err);
                        if (!r->sockets[i]) {
                                fprintf(stderr, "provium: %s\n", err);
                                return -EIO;
                        }
                } else if (events_file_open(&r->events[i], e, "--events") < 0)
                        return -EIO;
        }
        r->artifacts = o->artifacts ? o->artifacts : env->undeclared_outputs_dir;
        if (!r->artifacts)
                return 0;
        int e = make_dirs(r->artifacts);
        if (e < 0) {
                fprintf(stderr, "provium: artifacts directory %s: %s\n", r->artifacts,
                        strerror(-e));
                return e;
        }
        char *path = xasprintf("%s/events.msgpack", r->artifacts);
        e = path ? events_file_open(&r->events[CLI_MAX_EVENTS], path, "artifacts") : -ENOMEM;
        free(path);
        return e;
}

void run_outputs_drain(RunOutputs *r)
{
        for (int i = 0; i < CLI_MAX_EVENTS; i++)
                events_socket_drain(r->sockets[i]);
}

void run_outputs_close_sockets(RunOutputs *r)
{
        for (int i = 0; i < CLI_MAX_EVENTS; i++) {
                events_socket_close(r->sockets[i]);
                r->sockets[i] = NULL;
        }
}

void run_outputs_close(RunOutputs *r, bool finished)
{
        bool open = false;
        for (int i = 0; i < CLI_MAX_EVENTS; i++)
                open = open || r->sockets[i];
        run_outputs_close_sockets(r);
        if (open) /* a run that stopped before its loop: the sockets' handles close now */
                (void) uv_run(uv_default_loop(), UV_RUN_NOWAIT);
        for (int i = 0; i <= CLI_MAX_EVENTS; i++)
                events_file_close(&r->events[i]);
        if (finished && r->premature && unlink(r->premature) < 0 && errno != ENOENT)
                fprintf(stderr, "provium: TEST_PREMATURE_EXIT_FILE %s: %s\n", r->premature,
                        strerror(errno));
        r->premature = NULL;
}
