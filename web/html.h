// html: a growable string buffer for building HTML (and SVG, CSV, JSON lines) with escaping, and
// the reading of a URL query string.
//
// An HtmlBuf starts zeroed ({0}); every append grows it (out of memory aborts with file:line, as
// util.h does) and keeps it NUL-terminated. html_take hands the text to the caller (who frees it)
// and leaves the buffer empty; html_free releases it.
//
// Escaping: html_esc writes text for element content and for attribute values in double or
// single quotes: & < > " ' become entities; bytes that are not valid UTF-8 become U+FFFD, and
// control characters other than tab, newline and carriage return become U+FFFD too (they are not
// allowed in HTML), so any bytes from the database give a well-formed document.
#ifndef HTML_H
#define HTML_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *s;          // the text (NULL until the first append)
    size_t n, cap;    // length (without the NUL), allocated bytes
} HtmlBuf;

void html_put(HtmlBuf *b, const char *s);                    // raw text
void html_putn(HtmlBuf *b, const char *s, size_t n);         // raw bytes s[0..n)
void html_printf(HtmlBuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void html_esc(HtmlBuf *b, const char *s);                    // escaped text (NULL: nothing)
void html_escn(HtmlBuf *b, const char *s, size_t n);         // escaped s[0..n)
// Escaped, at most max_chars characters (UTF-8), with "…" appended when cut.
void html_esc_short(HtmlBuf *b, const char *s, size_t max_chars);
void html_url_esc(HtmlBuf *b, const char *s);                // percent-encoded for a query value
char *html_take(HtmlBuf *b);                                 // never NULL ("" when empty)
void html_free(HtmlBuf *b);

// The value of KEY in query string Q ("a=1&b=x%20y", '+' is a space), percent-decoded, into a
// malloc'd string (caller frees); NULL when absent or when Q is NULL. With several KEY=...
// parameters, their values are joined with commas (run=1&run=2 reads as "1,2").
char *html_query_get(const char *q, const char *key);
#endif
