/* check_cmd.h: `provium check PATH...`: mistakes in test files found without booting anything
 * (docs/check.md). */
#pragma once

/* argv[0] is "check". Returns 0 when nothing was found, 1 when something was (each printed as
 * "FILE:LINE: message"), 2 on a usage error or a path that does not exist. */
int check_cmd_main(int argc, char **argv);
