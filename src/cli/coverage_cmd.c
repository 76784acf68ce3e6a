/* coverage_cmd.c: provium coverage's command line: reads the streams, tallies them, writes the
 * outputs asked for (text by default; docs/coverage.md). */
#include "coverage_cmd.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coverage_output.h"
#include "coverage_read.h"

#define MAX_STREAMS 256

typedef struct CoverageOptions {
        const char *streams[MAX_STREAMS];
        int nstreams;
        bool json;
        const char *html; /* DIR, or NULL */
        bool universe;    /* --universe syscalls */
} CoverageOptions;

static void usage(FILE *f)
{
        fputs("usage: provium coverage FILE|unix:PATH... [--json] [--html DIR] [--universe "
              "syscalls]\n"
              "  what the suite whose events these are (--events FILE, or a run's live socket)\n"
              "  exercised in the guest: syscalls, ioctl requests, agent operations, lifecycle\n"
              "  actions, network impairments, disk faults, images and fixtures, each with its\n"
              "  calls, the tests that made them and their results\n"
              "  --json               one JSON document instead of the text\n"
              "  --html DIR           also write DIR/index.html, a self-contained page\n"
              "  --universe syscalls  also list the x86_64 syscalls no test made\n",
              f);
}

/* Returns 0, 1 for --help (done), or 2 on a usage error (said on stderr). */
static int parse(int argc, char **argv, CoverageOptions *o)
{
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];
                if (strcmp(a, "--json") == 0) {
                        o->json = true;
                } else if (strcmp(a, "--html") == 0 || strcmp(a, "--universe") == 0) {
                        if (i + 1 == argc) {
                                fprintf(stderr, "provium coverage: %s: %s expected\n", a,
                                        a[2] == 'h' ? "a directory" : "syscalls");
                                return 2;
                        }
                        const char *v = argv[++i];
                        if (a[2] == 'h')
                                o->html = v;
                        else if (strcmp(v, "syscalls") == 0)
                                o->universe = true;
                        else {
                                fprintf(stderr,
                                        "provium coverage: --universe %s: only syscalls is "
                                        "known\n",
                                        v);
                                return 2;
                        }
                } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
                        usage(stdout);
                        return 1;
                } else if (a[0] == '-') {
                        fprintf(stderr, "provium coverage: %s: unknown option\n", a);
                        usage(stderr);
                        return 2;
                } else if (o->nstreams == MAX_STREAMS) {
                        fprintf(stderr, "provium coverage: at most %d streams\n", MAX_STREAMS);
                        return 2;
                } else
                        o->streams[o->nstreams++] = a;
        }
        if (o->nstreams == 0) {
                usage(stderr);
                return 2;
        }
        return 0;
}

static int report(const CoverageOptions *o, const CoverageReport *rep)
{
        char err[4200];
        int status = 0;
        if (o->html && coverage_html_write(o->html, rep, err, sizeof err) < 0) {
                fprintf(stderr, "provium coverage: %s\n", err);
                status = 1;
        }
        int r = o->json ? coverage_json_write(stdout, rep) : coverage_text_write(stdout, rep);
        if ((fflush(stdout) != 0 || r < 0) && status == 0) {
                fprintf(stderr, "provium coverage: writing stdout failed\n");
                status = 1;
        }
        return status;
}

int coverage_cmd_main(int argc, char **argv)
{
        CoverageOptions o = {0};
        int r = parse(argc, argv, &o);
        if (r)
                return r == 1 ? 0 : r;
        signal(SIGPIPE, SIG_IGN);

        Coverage cov;
        coverage_init(&cov);
        int status = 0;
        char err[600];
        for (int i = 0; i < o.nstreams; i++)
                if (coverage_read(&cov, o.streams[i], err, sizeof err) < 0) {
                        fprintf(stderr, "provium coverage: %s\n", err);
                        status = 1;
                }
        CoverageReport rep = {.cov = &cov, .universe = o.universe};
        ssize_t n = 0;
        if (coverage_finish(&cov) < 0 ||
            (o.universe &&
             (n = coverage_unexercised_syscalls(&cov, &rep.unexercised, &rep.nsyscalls)) < 0)) {
                fprintf(stderr, "provium coverage: out of memory\n");
                coverage_free(&cov);
                return 1;
        }
        rep.nunexercised = (size_t) n;
        if (report(&o, &rep) != 0)
                status = 1;
        free(rep.unexercised);
        coverage_free(&cov);
        return status;
}
