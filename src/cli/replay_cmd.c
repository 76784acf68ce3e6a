/* replay_cmd.c: provium replay EVENTS_FILE [run options...]: runs a recorded run's failing
 * tests again with its seed (run.seed), so that every seeded choice (drop patterns, grudges,
 * the nemesis's schedule, provium.random) is made again; then compares each test's nemesis
 * faults with the recording and says where they first differ. What is not reproduced, the
 * guest's own interleaving under TCG, docs/determinism.md says.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "events_read.h"
#include "proto.h"

#define REPLAY_MAX_FAILED 64
#define REPLAY_MAX_FILES  256

typedef struct Recording {
        bool have_seed;
        uint64_t seed;
        char *files[REPLAY_MAX_FILES]; /* files with a failed test, in order */
        size_t nfiles;
        char *failed[REPLAY_MAX_FAILED]; /* "FILE: test" */
        size_t nfailed;
        char *faults; /* "FILE: test\tfault targets\n" of every nemesis fault applied, in order */
        size_t faults_len;
} Recording;

static char *dup_field(const msgpack_object *m, const char *key)
{
        char *s = NULL;
        return proto_dup_str(m, key, &s) > 0 ? s : strdup("");
}

static void add_unique(char **v, size_t *n, size_t max, char *s)
{
        for (size_t i = 0; i < *n; i++)
                if (strcmp(v[i], s) == 0) {
                        free(s);
                        return;
                }
        if (*n < max)
                v[(*n)++] = s;
        else
                free(s);
}

static void add_fault(Recording *rec, const msgpack_object *m)
{
        char action[8];
        proto_copy_str(m, "action", action, sizeof action);
        if (strcmp(action, "apply") != 0)
                return;
        char *file = dup_field(m, "file"), *test = dup_field(m, "test"),
             *fault = dup_field(m, "fault"), *targets = dup_field(m, "targets"), *line = NULL;
        if (file && test && fault && targets &&
            asprintf(&line, "%s: %s\t%s %s\n", file, test, fault, targets) > 0) {
                char *grown = realloc(rec->faults, rec->faults_len + strlen(line) + 1);
                if (grown) {
                        memcpy(grown + rec->faults_len, line, strlen(line) + 1);
                        rec->faults = grown;
                        rec->faults_len += strlen(line);
                }
        }
        free(line);
        free(file);
        free(test);
        free(fault);
        free(targets);
}

static void on_event(Recording *rec, const msgpack_object *m)
{
        char type[32], status[8];
        proto_copy_str(m, "type", type, sizeof type);
        if (strcmp(type, "run.seed") == 0 && proto_get_uint(m, "seed", &rec->seed) == 1)
                rec->have_seed = true;
        else if (strcmp(type, "nemesis.fault") == 0)
                add_fault(rec, m);
        else if (strcmp(type, "test.end") == 0) {
                proto_copy_str(m, "status", status, sizeof status);
                if (strcmp(status, "fail") != 0)
                        return;
                char *file = dup_field(m, "file"), *test = dup_field(m, "test"), *what = NULL;
                if (file && test && asprintf(&what, "%s: %s", file, test) > 0) {
                        add_unique(rec->failed, &rec->nfailed, REPLAY_MAX_FAILED, what);
                        add_unique(rec->files, &rec->nfiles, REPLAY_MAX_FILES, strdup(file));
                }
                free(file);
                free(test);
        }
}

static void on_event_cb(const msgpack_object *m, void *data)
{
        on_event(data, m);
}

/* Reads path into rec. Returns 0, or -1 having said why. */
static int read_recording(const char *path, Recording *rec)
{
        return events_each(path, "provium replay", on_event_cb, rec);
}

static void recording_free(Recording *rec)
{
        for (size_t i = 0; i < rec->nfiles; i++)
                free(rec->files[i]);
        for (size_t i = 0; i < rec->nfailed; i++)
                free(rec->failed[i]);
        free(rec->faults);
}

/* The faults of one "FILE: test" in a fault log, one "fault targets" a line. */
static char *faults_of(const char *log, const char *what)
{
        size_t n = strlen(what), len = 0;
        char *out = calloc(1, 1);
        for (const char *p = log; p && *p && out;) {
                const char *end = strchr(p, '\n');
                size_t line = end ? (size_t) (end - p) : strlen(p);
                if (line > n && strncmp(p, what, n) == 0 && p[n] == '\t') {
                        char *grown = realloc(out, len + line - n + 1);
                        if (!grown)
                                break;
                        out = grown;
                        memcpy(out + len, p + n + 1, line - n - 1);
                        len += line - n - 1;
                        out[len++] = '\n';
                        out[len] = 0;
                }
                p = end ? end + 1 : NULL;
        }
        return out;
}

/* Says, for each replayed test with nemesis faults, whether the replay's came in the same
 * order, and where they first differ. */
static void compare_faults(const Recording *was, const Recording *now)
{
        for (size_t i = 0; i < was->nfailed; i++) {
                char *a = faults_of(was->faults, was->failed[i]);
                char *b = faults_of(now->faults, was->failed[i]);
                if (a && b && (a[0] || b[0])) {
                        size_t k = 0, line = 1;
                        while (a[k] && a[k] == b[k]) {
                                if (a[k] == '\n')
                                        line++;
                                k++;
                        }
                        if (!a[k] || !b[k])
                                printf(
                                    "provium replay: %s: the nemesis made the same faults in the "
                                    "same order (%s)\n",
                                    was->failed[i],
                                    !a[k] && !b[k] ? "all of them"
                                    : !a[k]        ? "and more this time"
                                                   : "fewer this time");
                        else {
                                size_t start = k; /* the lines differ from here: show them whole */
                                while (start > 0 && a[start - 1] != '\n')
                                        start--;
                                printf(
                                    "provium replay: %s: the nemesis's fault %zu differs: it was "
                                    "\"%.*s\", now \"%.*s\"\n",
                                    was->failed[i], line, (int) strcspn(a + start, "\n"), a + start,
                                    (int) strcspn(b + start, "\n"), b + start);
                        }
                }
                free(a);
                free(b);
        }
}

int replay_cmd_main(int argc, char **argv)
{
        if (argc < 2 || argv[1][0] == '-') {
                fprintf(stderr, "usage: provium replay EVENTS_FILE [run options...]   a recorded "
                                "run's failed tests again, with its seed\n");
                return 2;
        }
        Recording was = {0}, now = {0};
        if (read_recording(argv[1], &was) < 0)
                return 2;
        if (!was.have_seed) {
                fprintf(stderr,
                        "provium replay: %s has no run.seed event (a run of a provium "
                        "before --seed?)\n",
                        argv[1]);
                recording_free(&was);
                return 2;
        }
        if (was.nfailed == 0) {
                printf("provium replay: no test failed in %s: nothing to replay\n", argv[1]);
                recording_free(&was);
                return 0;
        }
        char events[] = "/tmp/provium-replay-XXXXXX";
        int fd = mkstemp(events);
        if (fd < 0) {
                fprintf(stderr, "provium replay: mkstemp %s: %s\n", events, strerror(errno));
                recording_free(&was);
                return 1;
        }
        (void) close(fd);
        bool own_k = false;
        for (int i = 2; i < argc; i++)
                own_k |= strcmp(argv[i], "-k") == 0 || strncmp(argv[i], "--filter", 8) == 0;
        char seed[32];
        snprintf(seed, sizeof seed, "%llu", (unsigned long long) was.seed);
        size_t n = 0, max = 8 + (size_t) argc + 2 * was.nfailed + was.nfiles;
        char **args = calloc(max, sizeof *args);
        if (!args) {
                unlink(events);
                recording_free(&was);
                return 1;
        }
        args[n++] = "provium";
        args[n++] = "run";
        args[n++] = "--seed";
        args[n++] = seed;
        args[n++] = "--events";
        args[n++] = events;
        for (int i = 2; i < argc; i++)
                args[n++] = argv[i];
        for (size_t i = 0; !own_k && i < was.nfailed; i++) {
                args[n++] = "-k";
                args[n++] = was.failed[i];
        }
        for (size_t i = 0; i < was.nfiles; i++)
                args[n++] = was.files[i];
        printf("provium replay: %zu failed test%s of %s, with seed %s\n", was.nfailed,
               was.nfailed == 1 ? "" : "s", argv[1], seed);
        fflush(stdout);
        int status = 1;
        pid_t pid = fork();
        if (pid == 0) {
                execv("/proc/self/exe", args);
                _exit(127);
        }
        int st;
        if (pid > 0 && waitpid(pid, &st, 0) == pid)
                status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (read_recording(events, &now) == 0)
                compare_faults(&was, &now);
        printf("provium replay: %s\n",
               status == 1   ? "it failed again"
               : status == 0 ? "it passed this time: the seed's choices were made again, not the "
                               "guest's timing (docs/determinism.md)"
                             : "the run did not finish");
        unlink(events);
        free(args);
        recording_free(&was);
        recording_free(&now);
        return status;
}
