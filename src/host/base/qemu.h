/* qemu.h: which QEMU program Provium runs, and its version. The one place that uses
 * $PROVIUM_QEMU (as env.c read it). */
#pragma once

#include <stddef.h>

/* $PROVIUM_QEMU when set and non-empty, else "qemu-system-x86_64" (looked up in $PATH by
 * whoever execs it). Never NULL. */
const char *qemu_program(void);

/* qemu_program() as an absolute path: as given when it holds a '/', else the first executable
 * of that name in $PATH. Writes the path found, or the bare name when none is, to ret_path
 * (n bytes, NUL-terminated). Returns 0, -ENOENT when there is none, or -ENOMEM. */
int qemu_find(char *ret_path, size_t n);

/* QEMU's version line ("QEMU emulator version 7.2.22 (Debian ...)"): the one the dispatcher
 * handed a file runner (env_get()->qemu_version) when there is one, else the first line of
 * `qemu_program() --version`, run once per process. It runs a process and waits for it: the
 * dispatcher asks before its loop starts, so a runner never runs it on its loop. The string
 * lives as long as the process. NULL with err on failure. Not thread-safe. */
const char *qemu_version(char *err, size_t errlen);
