/* coverage_read.h: feeding event streams (files, unix:PATH sockets) into a tally. */
#pragma once

#include <stddef.h>

#include "coverage_tally.h"

/* Counts every event of path (an events file, or unix:PATH: a run's live socket, read until
 * the run ends) into c. Returns 0, or -errno with err naming the path and the offset: the
 * events before that point are counted. */
int coverage_read(Coverage *c, const char *path, char *err, size_t errlen);
