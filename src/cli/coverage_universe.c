/* coverage_universe.c: what could have been exercised: the x86_64 syscalls of the build's table
 * (src/lua/bind's syscalls.h, generated from asm/unistd_64.h), against what was. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "coverage_tally.h"
#include "syscalls.h"

#define NSYSCALLS (sizeof syscalls_x86_64 / sizeof syscalls_x86_64[0])

static bool exercised(const CoverageCategory *cat, const char *name)
{
        for (size_t i = 0; i < cat->n; i++)
                if (strcmp(cat->entries[i].name, name) == 0)
                        return true;
        return false;
}

ssize_t coverage_unexercised_syscalls(const Coverage *c, const char ***ret_names, size_t *ret_total)
{
        const char **names = calloc(NSYSCALLS, sizeof *names);
        if (!names)
                return -ENOMEM;
        size_t n = 0;
        for (size_t k = 0; k < NSYSCALLS; k++) /* the table is sorted by name */
                if (!exercised(&c->cat[COV_SYSCALLS], syscalls_x86_64[k].name))
                        names[n++] = syscalls_x86_64[k].name;
        *ret_names = names;
        *ret_total = NSYSCALLS;
        return (ssize_t) n;
}
