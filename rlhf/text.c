// Text the rlhf commands put into JSON: a prompt or a sampled answer may hold bytes that are not
// UTF-8 (a byte-level tokenizer can cut a character in two), and JSON must stay valid.
#include "commands.h"
#include "util.h"
#include <string.h>

// The length of the well-formed UTF-8 character at s[i] (0 when it is not one): no NUL, no
// overlong form, no surrogate, nothing above U+10FFFF.
static size_t rlhf_utf8_char_len(const char *s, size_t i, size_t n) {
    unsigned char c = (unsigned char)s[i];
    size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    int ok = k > 0 && i + k <= n && c != 0;
    for (size_t j = 1; ok && j < k; j++) ok = ((unsigned char)s[i + j] >> 6) == 2;
    if (ok && k == 2) ok = c >= 0xC2;
    if (ok && k == 3) {
        unsigned cp = ((c & 15u) << 12) | (((unsigned char)s[i + 1] & 63u) << 6) |
                      ((unsigned char)s[i + 2] & 63u);
        ok = cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF);
    }
    if (ok && k == 4) {
        unsigned cp = ((c & 7u) << 18) | (((unsigned char)s[i + 1] & 63u) << 12);
        ok = cp >= 0x10000 && cp <= 0x10FFFF;
    }
    return ok ? k : 0;
}

char *rlhf_utf8_clean(const char *s, size_t n) {
    char *o = MALLOC_CHECK(3 * n + 1), *q = o;
    for (size_t i = 0; i < n;) {
        size_t k = rlhf_utf8_char_len(s, i, n);
        if (k) {
            memcpy(q, s + i, k);
            q += k;
            i += k;
        } else {
            memcpy(q, "\xEF\xBF\xBD", 3);
            q += 3;
            i++;
        }
    }
    *q = 0;
    return o;
}
