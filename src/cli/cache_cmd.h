/* cache_cmd.h: `provium cache ls|clear|trim`: the images and fixtures in the cache. */
#pragma once

#include <stdbool.h>

/* argv[0] is "cache". Returns the exit status: 0, 1 on an error, 2 on a usage error. */
int cache_cmd_main(int argc, char **argv);

/* A run's start: the cache trimmed to $PROVIUM_CACHE_MAX (cache_trim.h), each entry removed
 * said on stderr and as a cache.evict event. Returns 0, or -EINVAL when the variable is bad
 * (said). */
int cache_trim_for_run(void);

/* `provium image rm NAME...`: removes every built version of the named images (not while one
 * is being built). Returns the exit status: 1 when a name has no built image. */
int cache_remove_images(char **names, int nnames);
