/* coverage_tally.h: what a suite exercised in the guest, tallied from its events (provium
 * coverage, docs/coverage.md): per category, an entry per name with its calls, the tests that
 * made them and how they ended. */
#pragma once

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef enum CoverageKind {
        COV_SYSCALLS,
        COV_IOCTLS,
        COV_OPS,
        COV_LIFECYCLE,
        COV_NETWORK,
        COV_DISK_FAULTS,
        COV_IMAGES,
        COV_FIXTURES,
        COV_NKINDS
} CoverageKind;

typedef struct CoverageCount {
        char *name; /* a result ("ok", "ENOENT") */
        uint64_t n;
} CoverageCount;

typedef struct CoverageEntry {
        char *name;      /* "openat", "0x5413", "exec", "pause", "impair partition" */
        int64_t request; /* ioctls: the request */
        uint64_t calls;
        uint64_t hits; /* disk faults: requests the faults of this kind failed or delayed */
        char **tests;  /* "FILE: test", each once, in order of first use */
        size_t ntests;
        CoverageCount *results; /* in order of first result; coverage_finish sorts them */
        size_t nresults;
} CoverageEntry;

typedef struct CoverageCategory {
        const char *id;    /* "syscalls": the JSON key and the HTML anchor */
        const char *title; /* "ioctl requests" */
        const char *unit;  /* what its calls are: "calls", "times", "faults", "boots", "uses" */
        CoverageEntry *entries;
        size_t n, cap;
} CoverageCategory;

typedef struct CoverageFault CoverageFault;

typedef struct Coverage {
        CoverageCategory cat[COV_NKINDS];
        uint64_t events;       /* read, of every stream */
        uint64_t unattributed; /* events counted that name no test */
        uint64_t streams;      /* begun so far: a disk fault's id is its runner's */
        CoverageFault *faults; /* each disk fault's hits so far */
        size_t nfaults;
} Coverage;

void coverage_init(Coverage *c);
/* A new stream begins (its runners' disk fault ids are new ones). */
void coverage_stream_begin(Coverage *c);
/* Counts one event (a msgpack map as events_reader_next gives it). Returns 0 or -ENOMEM. */
int coverage_add(Coverage *c, const msgpack_object *ev);
/* After the last event: folds disk fault hits in, sorts entries by name and results by count.
 * Returns 0 or -ENOMEM. */
int coverage_finish(Coverage *c);
void coverage_free(Coverage *c);

/* The x86_64 syscalls (the build's table) no entry of c names, sorted; *ret_names is an array
 * the caller frees (the strings are static). Returns how many, or -ENOMEM. *ret_total: how
 * many the table has. */
ssize_t coverage_unexercised_syscalls(const Coverage *c, const char ***ret_names,
                                      size_t *ret_total);
