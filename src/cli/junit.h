/* junit.h: the run as a JUnit XML report (junit.c), for --junit FILE and Bazel's
 * XML_OUTPUT_FILE. */
#pragma once

/* Starts collecting the run's test results from the event bus. */
void junit_start(void);
/* A file that ended without reporting (its runner crashed) counts as a failed "(file)". */
void junit_file_crashed(const char *file, const char *why);
/* Writes the report to path (replaced whole: written beside it, then renamed). Returns 0 or
 * -errno. */
int junit_write(const char *path);
void junit_free(void);
