/* term_text.c: text made safe for a terminal (term_text.h). */
#include "term_text.h"

#include <stdbool.h>
#include <string.h>

/* The visible form of the control at s (its length in *len), or NULL when s is plain text. */
static const char *control(const unsigned char *s, size_t n, size_t *len, char out[8])
{
        if (s[0] == 0x7f || (s[0] < 0x20 && s[0] != '\t')) {
                snprintf(out, 8, "\\x%02x", s[0]);
                *len = 1;
                return out;
        }
        if (s[0] == 0xc2 && n > 1 && s[1] >= 0x80 && s[1] <= 0x9f) { /* U+0080..U+009F */
                snprintf(out, 8, "\\u%04x", s[1]);
                *len = 2;
                return out;
        }
        return NULL;
}

void term_text_write(FILE *f, const char *s, size_t n, int keep_newlines)
{
        const unsigned char *p = (const unsigned char *) s;
        size_t plain = 0;
        for (size_t i = 0; i < n;) {
                char out[8];
                size_t len;
                const char *c =
                    keep_newlines && p[i] == '\n' ? NULL : control(p + i, n - i, &len, out);
                if (!c) {
                        i++;
                        plain++;
                        continue;
                }
                (void) fwrite(p + i - plain, 1, plain, f);
                plain = 0;
                (void) fputs(c, f);
                i += len;
        }
        (void) fwrite(p + n - plain, 1, plain, f);
}

void term_text_copy(char *buf, size_t size, const char *s, size_t n)
{
        const unsigned char *p = (const unsigned char *) s;
        size_t o = 0;
        for (size_t i = 0; i < n && size > 0;) {
                char out[8];
                size_t len = 1;
                const char *c = control(p + i, n - i, &len, out);
                size_t need = c ? strlen(c) : 1;
                if (o + need >= size)
                        break;
                if (c)
                        memcpy(buf + o, c, need);
                else
                        buf[o] = (char) p[i];
                o += need;
                i += len;
        }
        if (size > 0)
                buf[o] = 0;
}
