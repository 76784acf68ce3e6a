/* term_text.h: text from tests and guests, made safe for a terminal. A guest's error message
 * or console tail may hold escape sequences (clear the screen, retitle the window, move the
 * cursor over earlier lines): they are written visibly, as \xHH, instead of being obeyed. */
#pragma once

#include <stddef.h>
#include <stdio.h>

/* Writes n bytes of s to f: tabs and UTF-8 as they are, newlines only when keep_newlines, every
 * other C0 or C1 control and DEL as \xHH (\u00HH for a C1 in UTF-8). */
void term_text_write(FILE *f, const char *s, size_t n, int keep_newlines);
/* The same into buf (size bytes, NUL-terminated, cut where it is full), newlines included. */
void term_text_copy(char *buf, size_t size, const char *s, size_t n);
