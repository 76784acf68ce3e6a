/* cli.h: the provium command: options shared by the dispatcher and the file runner. */
#pragma once

#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>

#define CLI_MAX_EVENTS 8

typedef struct CliOptions {
        const char *accel;                  /* "auto", "kvm" or "tcg" */
        const char *vmm;                    /* "qemu" or "local": the VMs' default */
        const char *events[CLI_MAX_EVENTS]; /* --events FILE | unix:PATH, each given */
        int nevents;
        unsigned jobs;         /* files run at once */
        double test_timeout_s; /* per test */
        double op_timeout_s;   /* default per guest operation */
        double boot_timeout_s; /* default per boot */
        bool verbose;
        const char **filters;  /* -k PATTERN...: run only tests whose "FILE: name" contains one */
        int nfilters;          /* at most CLI_MAX_FILTERS */
        const char *junit;     /* --junit FILE, or NULL */
        const char *artifacts; /* --artifacts DIR (or $TEST_UNDECLARED_OUTPUTS_DIR), or NULL */
        bool tap;              /* --tap: stdout is TAP version 14 */
        const char *progress;  /* --progress auto|always|never: the live status line */
        const char *shard;     /* --shard K/N, or NULL */
        unsigned shard_total;  /* --shard-total N (with JOB_COMPLETION_INDEX), or 0 */
        uint64_t memory_mb;    /* --memory: the pool's memory budget; 0: what the host can give */
        unsigned cpus;         /* --cpus: its CPUs; 0: what the host can give */
        uint64_t claim_mb;     /* --default-claim: a file's claim when it makes none */
        unsigned claim_cpus;
        bool keep_on_failure; /* --keep-on-failure: a failed file's VMs stay up (keep/) */
        bool keep_always;     /* --keep-always: every file's VMs stay up (provium shell --image) */
        bool debug;           /* --pdb, provium debug: a prompt at each failure, one file at once */
        uint64_t seed;        /* --seed: every random choice derives from it (below 2^63) */
        bool seed_given;      /* else the dispatcher draws one */
} CliOptions;

#define CLI_MAX_FILTERS 64

/* dispatcher.c: runs every *.test.lua under paths, one child process per file. Returns the
 * process exit status (0 when nothing failed). */
int dispatcher_run(const CliOptions *o, char **paths, int npaths);
/* help_cmd.c: provium help TOPIC: a document of docs/ (paged on a terminal). */
int help_cmd_main(const char *topic);
/* The topics provium help knows, on f. */
void help_list_topics(FILE *f);
/* determinism_cmd.c: --check-determinism: the run (argv without that option) twice with one
 * seed, then their seeded choices compared; a difference is status 1, and says where. */
int determinism_check_main(int argc, char **argv, uint64_t seed, bool have_seed);
/* replay_cmd.c: provium replay EVENTS_FILE [run options...]: a run's failed tests again. */
int replay_cmd_main(int argc, char **argv);
/* init_cmd.c: provium init [DIR]: a starter tests/, a CI snippet and .luarc.json. */
int init_cmd_main(int argc, char **argv);
/* doctor_cmd.c: provium doctor: what this host offers (KVM's verdict, QEMU, the cache). */
int doctor_cmd_main(int argc, char **argv);

/* file_runner.c: the child side: runs one file; events go to fd 3. Returns the exit status. */
int file_runner_main(int argc, char **argv);
/* file_runner.c: what a test file's Lua may allocate, in bytes: $PROVIUM_LUA_MEMORY (MiB, or a
 * size like "8G"), else FILE_LUA_MEMORY_MB. Returns 0, or -EINVAL having said why on stderr. */
#define FILE_LUA_MEMORY_MB 4096
int file_runner_lua_memory(size_t *ret_bytes);
/* file_runner.c: provium list's child: runs one file's chunk with VM operations refused and
 * reports list.file and list.test events on fd 3. */
int file_lister_main(int argc, char **argv);
/* list_cmd.c: provium list. Returns the exit status (1 when a file could not be listed). */
int list_cmd_run(const CliOptions *o, bool json, char **paths, int npaths);

/* reporter.c: the terminal summary, a sink on the event bus; with tap, TAP version 14. */
void reporter_start(bool verbose, bool tap);
/* Tests reported so far, whatever their outcome (a crashed file counts as one). */
unsigned reporter_total(void);
/* Prints the final line "N passed, N failed, N skipped"; returns the number failed. */
unsigned reporter_finish(void);
/* Counts a file that ended without reporting (crashed runner) as one failure. */
void reporter_file_crashed(const char *file, const char *why);
