/* events_cmd.h: `provium events FILE [--json]`: an events file (--events FILE) made readable. */
#pragma once

/* argv[0] is "events". Returns the exit status: 0, 1 when the file cannot be read or holds
 * something that is not an event (the events before it are printed), 2 on a usage error. */
int events_cmd_main(int argc, char **argv);
