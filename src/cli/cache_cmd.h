/* cache_cmd.h: `provium cache ls|clear`: the images and fixtures in the cache. */
#pragma once

/* argv[0] is "cache". Returns the exit status: 0, 1 on an error, 2 on a usage error. */
int cache_cmd_main(int argc, char **argv);

/* `provium image rm NAME...`: removes every built version of the named images (not while one
 * is being built). Returns the exit status: 1 when a name has no built image. */
int cache_remove_images(char **names, int nnames);
