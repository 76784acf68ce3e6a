/* artifacts.h: what a failed test leaves for whoever looks into it later (artifacts.c): the
 * console log of each of the file's VMs, the packet captures of its run directory and the files
 * the test named with t:artifact (a history, a log), copied
 * into DIR/<file>/<NN>-<test>/ (names made safe: letters, digits, . _ - kept, the rest '_';
 * NN, the test's place in its file, keeps two names that differ only there apart). DIR is
 * --artifacts or Bazel's TEST_UNDECLARED_OUTPUTS_DIR. One test.artifacts event says where. */
#pragma once

#include <stddef.h>

typedef struct Vm Vm;

/* Saves what there is, and the host files the test named (t:artifact, extra: nextra paths),
 * each under its own base name; a file that cannot be read or written is said on stderr and
 * skipped. */
void artifacts_save(const char *dir, const char *file, int index, const char *test, Vm **const *vms,
                    size_t nvms, const char *run_dir, const char *const *extra, size_t nextra);
