/* coverage_cmd.h: `provium coverage FILE|unix:PATH... [--json] [--html DIR] [--universe
 * syscalls]` (also installed as provium-coverage): what a suite exercised in the guest. */
#pragma once

/* argv[0] is "coverage" (or the program's name). Returns the exit status: 0; 1 when a stream
 * could not be read whole (what was read is reported) or an output could not be written; 2 on
 * a usage error. */
int coverage_cmd_main(int argc, char **argv);
