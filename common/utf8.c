// utf8: see utf8.h.
#include "utf8.h"
#include "util.h"
#include <string.h>

int utf8_decode(const void *s, size_t n, uint32_t *cp) {
    const unsigned char *p = s;
    unsigned c = p[0];
    if (c < 0x80) {
        if (cp) *cp = c;
        return 1;
    }
    int len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
    if (!len || c > 0xF4 || (size_t)len > n) return 0;
    uint32_t v = c & (0x3Fu >> (len - 1));
    for (int i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        v = v << 6 | (p[i] & 0x3Fu);
    }
    static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};   // shortest form's floor
    if (v < least[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    if (cp) *cp = v;
    return len;
}

size_t utf8_valid_len(const void *s, size_t n) {
    const unsigned char *p = s;
    size_t i = 0;
    while (i < n) {
        if (n - i >= 8) {   // fast path: 8 ASCII bytes at a time
            uint64_t w;
            memcpy(&w, p + i, 8);
            if (!(w & 0x8080808080808080ull)) {
                i += 8;
                continue;
            }
        }
        int k = utf8_decode(p + i, n - i, NULL);
        if (!k) break;
        i += (size_t)k;
    }
    return i;
}

char *utf8_clean(const void *s, size_t n) {
    const unsigned char *p = s;
    char *out = MALLOC_CHECK(3 * n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        int len = p[i] ? utf8_decode(p + i, n - i, NULL) : 0;
        if (len) {
            memcpy(out + k, p + i, (size_t)len);
            k += (size_t)len;
            i += (size_t)len;
            continue;
        }
        memcpy(out + k, "\xEF\xBF\xBD", 3);
        k += 3;
        i++;
    }
    out[k] = 0;
    return out;
}
