/* kept_cmd.h: the commands over kept runs: provium ls, stop and shell. */
#pragma once

#include "kept.h"

/* provium ls [--json]: the kept runs. */
int ls_cmd_main(int argc, char **argv);
/* provium stop RUN... | --all: ends kept runs (their VMs stopped, their directories gone). */
int stop_cmd_main(int argc, char **argv);
/* Stops one kept run and waits (up to a minute) for its directory to go. Returns 0 or -errno,
 * having said why on stderr. */
int kept_stop(const KeptRun *k);

/* shell_cmd.c: provium shell [RUN] VM | --image NAME. */
int shell_cmd_main(int argc, char **argv);
/* A shell in vm of k until it exits. Returns the exit status for provium shell. */
int shell_attach(const KeptRun *k, const char *vm);
/* shell_image.c: provium shell --image NAME [--accel A]: argv[0] is "--image". */
int shell_image_main(int argc, char **argv);
