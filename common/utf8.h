// utf8: well-formed UTF-8 (RFC 3629) for every module that checks, cuts or cleans text.
//
// A sequence is well-formed when its lead byte is C2..F4, it has the continuation bytes its lead
// asks for, and it stands for a code point that is not overlong, not a surrogate (D800..DFFF) and
// not above U+10FFFF. A sequence cut by the end of the buffer is not well-formed. Pure functions:
// no state, no allocation except utf8_clean's result (the caller frees it).
#ifndef UTF8_H
#define UTF8_H
#include <stddef.h>
#include <stdint.h>

// Length (1..4) of the well-formed sequence at s[0..n) (n >= 1), or 0 when s[0] starts none.
// *cp (may be NULL) receives the code point when the length is not 0.
int utf8_decode(const void *s, size_t n, uint32_t *cp);
// Length of the longest well-formed prefix of s[0..n) (n when the whole is valid).
size_t utf8_valid_len(const void *s, size_t n);
// s[0..n) as a malloc'd NUL-terminated string in which every byte that is not part of a
// well-formed sequence, and every NUL, is U+FFFD: text any SQLite client or JSON reader takes.
char *utf8_clean(const void *s, size_t n);
#endif
