/* run_root.h: a run's own directory, where its runners keep their sockets and guest RAM files. */
#pragma once

typedef struct RunRoot {
        char path[64]; /* short: Unix socket paths below it must fit in 108 bytes */
        int lock_fd;   /* flock()ed while the run lives; -1 when there is no directory */
} RunRoot;

/* Removes the directories that runs killed before their end left in the same parent, then
 * creates this run's and locks it. Returns 0, or -errno with the reason printed. */
int run_root_create(RunRoot *rr);

/* Where runs' directories go: $PROVIUM_RUN_DIR, /dev/shm, $TMPDIR or /tmp (kept runs too). */
const char *run_root_parent(void);

/* Removes the run's directory, then lets go of its lock. */
void run_root_remove(RunRoot *rr);
