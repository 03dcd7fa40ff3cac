// Small helpers of the reward program: UTF-8 checks and cleaning for the terminal and JSON, help flags.
#include "cmd.h"
#include "utf8.h"
#include "util.h"
#include <string.h>

size_t rm_utf8_valid_len(const char *s, size_t n) {
    return utf8_valid_len(s, n);
}

char *rm_text_clean(const char *s, int oneline) {
    size_t n = strlen(s);
    char *out = MALLOC_CHECK(3 * n + 1), *o = out;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        int l = utf8_decode(p + i, n - i, NULL);
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

