/* strfmt.c: see strfmt.h. */
#include "strfmt.h"

#include <stdlib.h>

#include <stdint.h>

#include <errno.h>

#include <stdarg.h>
#include <stdio.h>

void seterr(char *err, size_t errlen, const char *fmt, ...)
{
        va_list ap;
        if (!err || errlen == 0)
                return;
        va_start(ap, fmt);
        (void) vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
}

char *xasprintf(const char *fmt, ...)
{
        va_list ap;
        char *s;
        va_start(ap, fmt);
        int n = vasprintf(&s, fmt, ap);
        va_end(ap);
        return n < 0 ? NULL : s;
}

/* The length of the valid UTF-8 sequence at s[0..n) (1-4), or 0 when it is not one: a stray
 * continuation byte, an overlong form, a surrogate, beyond U+10FFFF, or cut short. */
size_t utf8_sequence(const unsigned char *s, size_t n)
{
        unsigned char c = s[0];
        size_t len;
        uint32_t cp;

        if (c < 0x80)
                return 1;
        if (c >= 0xc2 && c <= 0xdf) {
                len = 2;
                cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
                len = 3;
                cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
                len = 4;
                cp = c & 0x07;
        } else {
                return 0;
        }
        if (n < len)
                return 0;
        for (size_t i = 1; i < len; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (s[i] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return len;
}

int parse_size_mib(const char *s, uint64_t *ret_mb)
{
        char *end;
        *ret_mb = 0;
        if (!s || !*s || *s == '-')
                return -EINVAL;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s)
                return -EINVAL;
        if ((*end == 'G' || *end == 'g') && end[1] == 0 && v <= UINT64_MAX / 1024)
                v *= 1024;
        else if (!((*end == 'M' || *end == 'm') && end[1] == 0) && *end != 0)
                return -EINVAL;
        *ret_mb = v;
        return 0;
}
