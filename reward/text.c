// Small helpers of the reward program: UTF-8 checks and cleaning for the terminal and JSON, help flags.
#include "cmd.h"
#include "util.h"
#include <string.h>

// Length of the well-formed UTF-8 sequence at p (n bytes left), or 0 when it is not one
// (overlong forms, surrogates and code points above U+10FFFF are not).
static int utf8_seq(const unsigned char *p, size_t n) {
    unsigned c = p[0];
    if (c < 0x80) return 1;
    int len;
    unsigned min;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; min = 0x10000; }
    else return 0;
    if (n < (size_t)len) return 0;
    unsigned cp = c & (0xFF >> (len + 1));
    for (int i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

size_t rm_utf8_valid_len(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        int l = utf8_seq(p + i, n - i);
        if (!l) return i;
        i += (size_t)l;
    }
    return n;
}

char *rm_text_clean(const char *s, int oneline) {
    size_t n = strlen(s);
    char *out = MALLOC_CHECK(3 * n + 1), *o = out;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        int l = utf8_seq(p + i, n - i);
        if (!l) { memcpy(o, "\xEF\xBF\xBD", 3); o += 3; i++; continue; }
        if (l == 1 && (p[i] < 0x20 || p[i] == 0x7F)) {
            if ((p[i] == '\n' || p[i] == '\t') && !oneline) *o++ = (char)p[i];
            else *o++ = p[i] == '\n' || p[i] == '\t' || p[i] == '\r' ? ' ' : '?';
            i++;
            continue;
        }
        memcpy(o, p + i, (size_t)l);
        o += l; i += (size_t)l;
    }
    *o = 0;
    return out;
}

const char *rm_basename(const char *path) {
    const char *b = strrchr(path, '/');
    return b && b[1] ? b + 1 : path;
}

