/* test_files.h: which test files a command line names (test_files.c): every *.test.lua under
 * the paths (directories walked in sorted order, hidden entries skipped), sorted, then this
 * run's shard of them (shard.h). Shared by `provium run` and `provium list`. */
#pragma once

#include <stddef.h>

#include "cli.h"

typedef struct TestFiles {
        char **v; /* the paths, as found from the command line's */
        size_t n, cap;
        size_t all; /* before sharding */
} TestFiles;

/* Finds the files and keeps o's shard of them; prints the shard line when there are shards.
 * Returns 0, or -errno after printing what went wrong (a path that does not exist, a bad
 * shard). */
int test_files_find(TestFiles *f, const CliOptions *o, char **paths, int npaths);
void test_files_free(TestFiles *f);
