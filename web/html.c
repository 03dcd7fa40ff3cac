// html: see html.h.
#include "html.h"
#include "utf8.h"
#include "util.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void html_reserve(HtmlBuf *b, size_t more) {
    if (b->n + more + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more + 1) cap *= 2;
    b->s = REALLOC_CHECK(b->s, cap);
    b->cap = cap;
}

void html_putn(HtmlBuf *b, const char *s, size_t n) {
    html_reserve(b, n);
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

void html_put(HtmlBuf *b, const char *s) { html_putn(b, s, strlen(s)); }

void html_printf(HtmlBuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0) return;
    html_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)n;
}

// The length of the well-formed UTF-8 sequence at s (at most n bytes), or 0 when it is not one.
static size_t html_utf8_len(const unsigned char *s, size_t n) {
    return (size_t)utf8_decode(s, n, NULL);
}

void html_escn(HtmlBuf *b, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t len = html_utf8_len(u + i, n - i);
        unsigned c = u[i];
        if (len == 1) {
            const char *e = c == '&' ? "&amp;" : c == '<' ? "&lt;" : c == '>' ? "&gt;"
                          : c == '"' ? "&quot;" : c == '\'' ? "&#39;" : NULL;
            if (e) html_put(b, e);
            else if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') html_put(b, "\xEF\xBF\xBD");
            else if (c == 0x7F) html_put(b, "\xEF\xBF\xBD");
            else html_putn(b, s + i, 1);
            i++;
        } else if (len) {
            html_putn(b, s + i, len);
            i += len;
        } else {   // not UTF-8: one replacement character per byte
            html_put(b, "\xEF\xBF\xBD");
            i++;
        }
    }
}

void html_esc(HtmlBuf *b, const char *s) {
    if (s) html_escn(b, s, strlen(s));
}

void html_esc_short(HtmlBuf *b, const char *s, size_t max_chars) {
    if (!s) return;
    size_t n = strlen(s), i = 0, chars = 0;
    while (i < n && chars < max_chars) {
        size_t len = html_utf8_len((const unsigned char *)s + i, n - i);
        i += len ? len : 1;
        chars++;
    }
    html_escn(b, s, i);
    if (i < n) html_put(b, "\xE2\x80\xA6");
}

void html_url_esc(HtmlBuf *b, const char *s) {
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *u = (const unsigned char *)s; *u; u++) {
        if ((*u >= 'a' && *u <= 'z') || (*u >= 'A' && *u <= 'Z') || (*u >= '0' && *u <= '9') ||
            strchr("-._~", *u)) {
            html_putn(b, (const char *)u, 1);
        } else {
            char e[3] = {'%', hex[*u >> 4], hex[*u & 15]};
            html_putn(b, e, 3);
        }
    }
}

char *html_take(HtmlBuf *b) {
    char *s = b->s ? b->s : STRDUP_CHECK("");
    *b = (HtmlBuf){0};
    return s;
}

void html_free(HtmlBuf *b) {
    free(b->s);
    *b = (HtmlBuf){0};
}

static int html_hex(int c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

// Percent-decodes s[0..n) onto b ('+' is a space; a NUL decoded is dropped).
static void html_url_decode(HtmlBuf *b, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int h, l;
        if (c == '+') c = ' ';
        else if (c == '%' && i + 2 < n && (h = html_hex(s[i + 1])) >= 0 &&
                 (l = html_hex(s[i + 2])) >= 0) {
            c = (char)(h << 4 | l);
            i += 2;
        }
        if (c) html_putn(b, &c, 1);
    }
}

char *html_query_get(const char *q, const char *key) {
    if (!q) return NULL;
    if (*q == '?') q++;
    size_t klen = strlen(key);
    HtmlBuf b = {0};
    int found = 0;
    while (*q) {
        size_t len = strcspn(q, "&;");
        const char *eq = memchr(q, '=', len);
        size_t nlen = eq ? (size_t)(eq - q) : len;
        if (nlen == klen && !memcmp(q, key, klen)) {
            if (found++) html_put(&b, ",");
            if (eq) html_url_decode(&b, eq + 1, len - nlen - 1);
        }
        q += len;
        if (*q) q++;
    }
    return found ? html_take(&b) : NULL;
}
