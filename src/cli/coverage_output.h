/* coverage_output.h: the outputs of provium coverage: text (coverage_text.c), one JSON
 * document (coverage_json.c), a self-contained HTML page (coverage_html.c). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "coverage_tally.h"

typedef struct CoverageReport {
        const Coverage *cov;      /* finished (coverage_finish) */
        bool universe;            /* --universe syscalls: the list below is wanted */
        const char **unexercised; /* x86_64 syscalls no test made, sorted */
        size_t nunexercised;
        size_t nsyscalls; /* in the x86_64 table */
} CoverageReport;

/* Each returns 0, or -EIO when writing failed. */
int coverage_text_write(FILE *out, const CoverageReport *rep);
int coverage_json_write(FILE *out, const CoverageReport *rep);
/* Writes DIR/index.html (DIR is made if missing). Returns 0, or -errno with err set. */
int coverage_html_write(const char *dir, const CoverageReport *rep, char *err, size_t errlen);
