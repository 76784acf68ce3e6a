/* coverage_json.c: provium coverage --json: the whole report as one JSON document
 * (docs/coverage.md has its shape). */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "coverage_output.h"
#include "events_json.h"

static void str(FILE *out, const char *s)
{
        (void) events_json_string(out, s, strlen(s));
}

static void write_entry(FILE *out, const CoverageCategory *cat, const CoverageEntry *e)
{
        fputs("{\"name\": ", out);
        str(out, e->name);
        if (strcmp(cat->id, "ioctls") == 0)
                fprintf(out, ", \"request\": %" PRId64, e->request);
        fprintf(out, ", \"calls\": %" PRIu64, e->calls);
        if (strcmp(cat->id, "disk_faults") == 0)
                fprintf(out, ", \"hits\": %" PRIu64, e->hits);
        fputs(", \"tests\": [", out);
        for (size_t i = 0; i < e->ntests; i++) {
                fputs(i ? ", " : "", out);
                str(out, e->tests[i]);
        }
        fputs("], \"results\": {", out);
        for (size_t i = 0; i < e->nresults; i++) {
                fputs(i ? ", " : "", out);
                str(out, e->results[i].name);
                fprintf(out, ": %" PRIu64, e->results[i].n);
        }
        fputs("}}", out);
}

static void write_category(FILE *out, const CoverageCategory *cat)
{
        str(out, cat->id);
        fputs(": {\"title\": ", out);
        str(out, cat->title);
        fputs(", \"unit\": ", out);
        str(out, cat->unit);
        fputs(", \"entries\": [", out);
        for (size_t i = 0; i < cat->n; i++) {
                fputs(i ? ",\n      " : "\n      ", out);
                write_entry(out, cat, &cat->entries[i]);
        }
        fputs(cat->n ? "\n    ]}" : "]}", out);
}

int coverage_json_write(FILE *out, const CoverageReport *rep)
{
        const Coverage *c = rep->cov;
        fprintf(out, "{\"version\": 1, \"events\": %" PRIu64 ", \"unattributed\": %" PRIu64 ",\n",
                c->events, c->unattributed);
        fputs(" \"categories\": {", out);
        for (int k = 0; k < COV_NKINDS; k++) {
                fputs(k ? ",\n    " : "\n    ", out);
                write_category(out, &c->cat[k]);
        }
        fputs("\n }", out);
        if (rep->universe) {
                fprintf(out, ",\n \"unexercised\": {\"syscalls\": {\"total\": %zu, \"names\": [",
                        rep->nsyscalls);
                for (size_t i = 0; i < rep->nunexercised; i++) {
                        fputs(i ? ", " : "", out);
                        str(out, rep->unexercised[i]);
                }
                fputs("]}}", out);
        }
        fputs("\n}\n", out);
        return ferror(out) ? -EIO : 0;
}
