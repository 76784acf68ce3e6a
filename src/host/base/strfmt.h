/* strfmt.h: formatting into caller buffers and new strings, for the host modules' messages. */
#pragma once

#include <stddef.h>

/* Formats into err (errlen bytes, always NUL-terminated); does nothing when err is NULL or
 * errlen is 0. */
void seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A new formatted string (free it), or NULL on -ENOMEM. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
