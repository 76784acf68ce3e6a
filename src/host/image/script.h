/* script.h: running the image build scripts (scripts/build-*-image) and reading what they
 * print. */
#pragma once

#include <stddef.h>

/* Runs `INTERP SCRIPT args...` (args NULL-terminated, at most 5) with PROVIUM_CACHE_DIR=cache,
 * stdin /dev/null, stdout to out_fd and stderr to err_fd, and waits for it. Returns the exit
 * status (0-255), 256+signal when killed, or -errno when it could not be started. Once
 * script_set_wrapper() named our own executable, the script runs under `provium __build`
 * (script_wrapper_main): it and all it starts die with the caller, and at its timeout. */
int script_run(const char *interp, const char *script, const char *const *args, const char *cache,
               int out_fd, int err_fd);

/* Like script_run, with stdout and stderr captured into new strings *out and *errtext (free
 * both, also on failure). Returns like script_run. */
int script_capture(const char *interp, const char *script, const char *const *args,
                   const char *cache, char **out, char **errtext);

/* Scripts run under `EXE __build` from now on (main sets it; unit tests run them bare). */
void script_set_wrapper(const char *exe);

/* `provium __build PPID TIMEOUT PROGRAM ARGS...`: runs PROGRAM as the first process of a PID
 * namespace of its own (where it may: as root), so that when it dies the kernel ends every
 * process it started; it dies with PPID (PR_SET_PDEATHSIG), and is killed after TIMEOUT
 * seconds (0: none), which script_describe_status calls a timeout. Returns like PROGRAM. */
int script_wrapper_main(int argc, char **argv);

/* "exit status N", "killed by signal N" or "stopped at its timeout" for a status from
 * script_run. */
void script_describe_status(int status, char *buf, size_t len);

/* Sets err to prefix, a newline, and the last `lines` lines of text. */
void script_seterr_tail(char *err, size_t errlen, const char *prefix, const char *text, int lines);

/* Reads all of fd from offset 0 (or all of the file at path) into a new NUL-terminated string.
 * Returns 0 or -errno. */
int script_read_fd(int fd, char **ret, size_t *ret_len);
int script_read_file(const char *path, char **ret);
