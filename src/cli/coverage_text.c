/* coverage_text.c: provium coverage's readable report: per category a line per entry,
 * "openat: 12 calls in 4 tests; ok 9, ENOENT 3", then with --universe the syscalls not made. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "coverage_output.h"

static void write_entry(FILE *out, const CoverageCategory *cat, const CoverageEntry *e)
{
        int unit = (int) strlen(cat->unit) - (e->calls == 1); /* "1 call", "2 calls" */
        fprintf(out, "  %s: %" PRIu64 " %.*s in %zu test%s", e->name, e->calls, unit, cat->unit,
                e->ntests, e->ntests == 1 ? "" : "s");
        if (e->hits || strcmp(cat->id, "disk_faults") == 0)
                fprintf(out, "; %" PRIu64 " hit%s", e->hits, e->hits == 1 ? "" : "s");
        for (size_t i = 0; i < e->nresults; i++)
                fprintf(out, "%s%s %" PRIu64, i ? ", " : "; ", e->results[i].name, e->results[i].n);
        fputc('\n', out);
}

/* The names in lines of at most about 100 columns, indented. */
static void write_names(FILE *out, const char **names, size_t n)
{
        size_t col = 0;
        for (size_t i = 0; i < n; i++) {
                size_t len = strlen(names[i]);
                if (col && col + 1 + len > 100) {
                        fputc('\n', out);
                        col = 0;
                }
                fputs(col ? " " : "  ", out);
                fputs(names[i], out);
                col += len + (col ? 1 : 2);
        }
        if (col)
                fputc('\n', out);
}

int coverage_text_write(FILE *out, const CoverageReport *rep)
{
        const Coverage *c = rep->cov;
        for (int k = 0; k < COV_NKINDS; k++) {
                const CoverageCategory *cat = &c->cat[k];
                uint64_t calls = 0;
                for (size_t i = 0; i < cat->n; i++)
                        calls += cat->entries[i].calls;
                if (cat->n == 0) {
                        fprintf(out, "%s: none\n", cat->title);
                        continue;
                }
                fprintf(out, "%s: %zu, %" PRIu64 " %s\n", cat->title, cat->n, calls, cat->unit);
                for (size_t i = 0; i < cat->n; i++)
                        write_entry(out, cat, &cat->entries[i]);
        }
        if (rep->universe) {
                fprintf(out, "syscalls no test made: %zu of %zu\n", rep->nunexercised,
                        rep->nsyscalls);
                write_names(out, rep->unexercised, rep->nunexercised);
        }
        fprintf(out, "%" PRIu64 " events", c->events);
        if (c->unattributed)
                fprintf(out, ", %" PRIu64 " counted for no test (they name no file)",
                        c->unattributed);
        fputc('\n', out);
        return ferror(out) ? -EIO : 0;
}
