/* strfmt.h: formatting into caller buffers and new strings, for the host modules' messages;
 * and the text they read back: UTF-8 sequences, sizes. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Formats into err (errlen bytes, always NUL-terminated); does nothing when err is NULL or
 * errlen is 0. */
void seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A new formatted string (free it), or NULL on -ENOMEM. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The length of the valid UTF-8 sequence at s[0..n) (1-4), or 0 when it is not one: a stray
 * continuation byte, an overlong form, a surrogate, beyond U+10FFFF, or cut short. */
size_t utf8_sequence(const unsigned char *s, size_t n);
/* A size in MiB: "2G", "512M" (either case), or a plain number of MiB. Returns 0, or -EINVAL
 * (*ret_mb 0) on anything else. */
int parse_size_mib(const char *s, uint64_t *ret_mb);
