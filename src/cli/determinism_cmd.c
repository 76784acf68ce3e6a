/* determinism_cmd.c: provium --check-determinism [options] PATH...: the run twice with one seed
 * (as madsim checks its simulations), then every seeded choice of the two compared, test by
 * test: provium.random's draws (seed.draws), drop patterns (bridge.drop_rate), grudges and
 * other impairments (bridge.impair, bridge.grudge), guests' /dev/hwrng seeds (vm.hwrng),
 * disks' draws (disk.draws: the first ones both runs reached) and the nemeses' faults
 * (nemesis.fault; of those, as many as both runs reached: how many fit is timing). A
 * difference fails the run and shows the first.
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
#include "run_seed.h"

/* One run's choices: "FILE: test\tKIND what\n" lines in event order. */
typedef struct Choices {
        char *text;
        size_t len;
} Choices;

static void choices_add(Choices *c, const msgpack_object *m, const char *kind, const char *what)
{
        char file[512], test[256], *line = NULL;
        proto_copy_str(m, "file", file, sizeof file);
        proto_copy_str(m, "test", test, sizeof test);
        int n = asprintf(&line, "%s: %s\t%s %s\n", file, test, kind, what);
        char *grown = n > 0 ? realloc(c->text, c->len + (size_t) n + 1) : NULL;
        if (grown) {
                memcpy(grown + c->len, line, (size_t) n + 1);
                c->text = grown;
                c->len += (size_t) n;
        }
        free(line);
}

/* The events that are seeded choices, each written as "KIND FIRST[SEP SECOND]" from two of its
 * fields (a number or a string). Of the nemeses' faults, only those applied count. */
static const struct ChoiceShape {
        const char *type, *kind, *first, *sep, *second;
} choice_shapes[] = {
    {"seed.draws", "provium.random", "draws", " draws, digest ", "digest"},
    {"bridge.drop_rate", "drop_rate", "vm", " pattern ", "pattern"},
    {"bridge.impair", "impair", "what", NULL, NULL},
    {"bridge.grudge", "grudge", "preset", ": ", "grudge"},
    {"vm.hwrng", "hwrng", "vm", " seed ", "seed"},
    {"disk.draws", "disk", "disk", " first ", "first"},
    {"nemesis.fault", "nemesis", "fault", " ", "targets"},
};

/* m's field key as text: its number, else its string ("" when it has neither). */
static void field_text(const msgpack_object *m, const char *key, char *out, size_t n)
{
        uint64_t v;
        if (proto_get_uint(m, key, &v) > 0)
                snprintf(out, n, "%llu", (unsigned long long) v);
        else
                proto_copy_str(m, key, out, n);
}

static void on_event(Choices *c, const msgpack_object *m)
{
        char type[32], first[1024], second[1024], what[2100];
        proto_copy_str(m, "type", type, sizeof type);
        for (size_t i = 0; i < sizeof choice_shapes / sizeof *choice_shapes; i++) {
                const struct ChoiceShape *sh = &choice_shapes[i];
                if (strcmp(type, sh->type) != 0)
                        continue;
                if (strcmp(type, "nemesis.fault") == 0) {
                        char action[16];
                        proto_copy_str(m, "action", action, sizeof action);
                        if (strcmp(action, "apply") != 0)
                                return;
                }
                field_text(m, sh->first, first, sizeof first);
                if (sh->second)
                        field_text(m, sh->second, second, sizeof second);
                snprintf(what, sizeof what, "%s%s%s", first, sh->sep ? sh->sep : "",
                         sh->second ? second : "");
                choices_add(c, m, sh->kind, what);
                return;
        }
}

static void on_event_cb(const msgpack_object *m, void *data)
{
        on_event(data, m);
}

static int read_choices(const char *path, Choices *c)
{
        return events_each(path, "provium: --check-determinism", on_event_cb, c);
}

static int run_once(int argc, char **argv, const char *seed, const char *events)
{
        char **args = calloc((size_t) argc + 8, sizeof *args);
        if (!args)
                return -ENOMEM;
        size_t n = 0;
        args[n++] = "provium";
        args[n++] = "run";
        args[n++] = "--seed";
        args[n++] = (char *) seed;
        args[n++] = "--events";
        args[n++] = (char *) events;
        for (int i = 1; i < argc; i++)
                if (strcmp(argv[i], "--check-determinism") != 0)
                        args[n++] = argv[i];
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
                execv("/proc/self/exe", args);
                _exit(127);
        }
        int st, status = -1;
        if (pid > 0 && waitpid(pid, &st, 0) == pid)
                status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        free(args);
        return status;
}

/* The line of text starting at p, without its newline. */
static int line_len(const char *p)
{
        return (int) strcspn(p, "\n");
}

/* Two disk.draws lines agree when they name one disk and one's draws begin the other's: how
 * many requests met a fault by the end of a test is the guest's timing. */
static bool same_disk_draws(const char *p, const char *q)
{
        const char *dp = strstr(p, "\tdisk "), *dq = strstr(q, "\tdisk ");
        if (!dp || !dq || dp >= p + line_len(p) || dq >= q + line_len(q))
                return false;
        const char *fp = strstr(dp, " first "), *fq = strstr(dq, " first ");
        if (!fp || !fq || fp - p != fq - q || strncmp(p, q, (size_t) (fp - p)) != 0)
                return false;
        int np = line_len(fp), nq = line_len(fq);
        return strncmp(fp, fq, (size_t) (np < nq ? np : nq)) == 0;
}

/* The first difference between two runs' choices, or 0 when there is none. Nemesis lines are
 * compared only while both runs have them. */
static int compare(const Choices *a, const Choices *b)
{
        const char *p = a->text ? a->text : "", *q = b->text ? b->text : "";
        unsigned k = 1;
        while (*p || *q) {
                bool pn =
                    *p && strstr(p, "\tnemesis ") && strstr(p, "\tnemesis ") < p + line_len(p);
                bool qn =
                    *q && strstr(q, "\tnemesis ") && strstr(q, "\tnemesis ") < q + line_len(q);
                if (*p && *q &&
                    (line_len(p) != line_len(q) || strncmp(p, q, (size_t) line_len(p)) != 0) &&
                    !same_disk_draws(p, q)) {
                        if (pn && !qn) { /* this run's nemesis got further: skip its extra faults */
                                p += line_len(p) + 1;
                                continue;
                        }
                        if (qn && !pn) {
                                q += line_len(q) + 1;
                                continue;
                        }
                        printf(
                            "provium: --check-determinism: choice %u differs:\n  first run:  %.*s\n"
                            "  second run: %.*s\n",
                            k, line_len(p), p, line_len(q), q);
                        return 1;
                }
                if (!*p || !*q) {
                        const char *rest = *p ? p : q;
                        bool nem = strstr(rest, "\tnemesis ") &&
                                   strstr(rest, "\tnemesis ") < rest + line_len(rest);
                        if (nem) { /* more faults in one run: timing */
                                rest += line_len(rest) + 1;
                                if (*p)
                                        p = rest;
                                else
                                        q = rest;
                                continue;
                        }
                        printf(
                            "provium: --check-determinism: choice %u is only in the %s run: %.*s\n",
                            k, *p ? "first" : "second", line_len(rest), rest);
                        return 1;
                }
                p += line_len(p) + (p[line_len(p)] == '\n');
                q += line_len(q) + (q[line_len(q)] == '\n');
                k++;
        }
        printf("provium: --check-determinism: the two runs made the same %u choice%s\n", k - 1,
               k == 2 ? "" : "s");
        return 0;
}

int determinism_check_main(int argc, char **argv, uint64_t seed_given, bool have_seed)
{
        char seed[32], ev1[] = "/tmp/provium-determinism-XXXXXX",
                       ev2[] = "/tmp/provium-determinism-XXXXXX";
        snprintf(seed, sizeof seed, "%llu",
                 (unsigned long long) (have_seed ? seed_given : run_seed_draw()));
        int f1 = mkstemp(ev1), f2 = f1 < 0 ? -1 : mkstemp(ev2);
        if (f1 < 0 || f2 < 0) {
                fprintf(stderr, "provium: --check-determinism: mkstemp: %s\n", strerror(errno));
                if (f1 >= 0) {
                        close(f1);
                        unlink(ev1);
                }
                return 2;
        }
        close(f1);
        close(f2);
        printf("provium: --check-determinism: the run twice with seed %s\n", seed);
        int s1 = run_once(argc, argv, seed, ev1);
        int s2 = s1 == 0 || s1 == 1 ? run_once(argc, argv, seed, ev2) : s1;
        Choices a = {0}, b = {0};
        int diff = 0;
        if ((s1 == 0 || s1 == 1) && (s2 == 0 || s2 == 1) && read_choices(ev1, &a) == 0 &&
            read_choices(ev2, &b) == 0)
                diff = compare(&a, &b);
        free(a.text);
        free(b.text);
        unlink(ev1);
        unlink(ev2);
        if (s1 != 0 && s1 != 1)
                return s1;
        if (diff)
                return 1;
        return s1 > s2 ? s1 : s2;
}
