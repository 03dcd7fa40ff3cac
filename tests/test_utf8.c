// Tests for common/utf8: every case below is worked out by hand from RFC 3629's table of
// well-formed byte sequences (lead C2..DF, E0 A0..BF, E1..EC, ED 80..9F, EE..EF, F0 90..BF,
// F1..F3, F4 80..8F; continuation bytes 80..BF).
#include "testlib.h"
#include "utf8.h"
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *bytes;   // the input (length given separately: NULs may be inside)
    size_t n;
    int len;             // utf8_decode's answer at bytes[0]
    uint32_t cp;         // the code point when len > 0
} DecodeCase;

#define S(lit) lit, sizeof(lit) - 1

static void test_decode(void) {
    static const DecodeCase cases[] = {
        {S("A"), 1, 0x41},
        {S("\x7F"), 1, 0x7F},
        {S("\xC2\x80"), 2, 0x80},                 // smallest 2-byte form
        {S("\xDF\xBF"), 2, 0x7FF},
        {S("\xC3\xA9"), 2, 0xE9},                 // é
        {S("\xE0\xA0\x80"), 3, 0x800},            // smallest 3-byte form
        {S("\xE2\x82\xAC"), 3, 0x20AC},           // €
        {S("\xED\x9F\xBF"), 3, 0xD7FF},           // just below the surrogates
        {S("\xEE\x80\x80"), 3, 0xE000},           // just above them
        {S("\xEF\xBF\xBF"), 3, 0xFFFF},
        {S("\xF0\x90\x80\x80"), 4, 0x10000},      // smallest 4-byte form
        {S("\xF0\x9F\x98\x80"), 4, 0x1F600},      // 😀
        {S("\xF4\x8F\xBF\xBF"), 4, 0x10FFFF},     // the last code point
        {S("\x80"), 0, 0},                        // a lone continuation byte
        {S("\xBF"), 0, 0},
        {S("\xC0\x80"), 0, 0},                    // overlong NUL
        {S("\xC1\xBF"), 0, 0},                    // overlong U+007F
        {S("\xE0\x9F\xBF"), 0, 0},                // overlong U+07FF
        {S("\xF0\x8F\xBF\xBF"), 0, 0},            // overlong U+FFFF
        {S("\xED\xA0\x80"), 0, 0},                // surrogate U+D800
        {S("\xED\xBF\xBF"), 0, 0},                // surrogate U+DFFF
        {S("\xF4\x90\x80\x80"), 0, 0},            // U+110000
        {S("\xF5\x80\x80\x80"), 0, 0},            // lead bytes F5..FF never occur
        {S("\xFF"), 0, 0},
        {S("\xC3"), 0, 0},                        // truncated tails
        {S("\xE2\x82"), 0, 0},
        {S("\xF0\x9F\x98"), 0, 0},
        {S("\xC3\x41"), 0, 0},                    // a lead without its continuation
        {S("\xE2\x41\xAC"), 0, 0},
        {S("\xF0\x9F\x98\x41"), 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const DecodeCase *c = &cases[i];
        uint32_t cp = 0xDEADBEEF;
        int len = utf8_decode(c->bytes, c->n, &cp);
        CHECK_MSG(len == c->len, "case %zu: length %d, want %d", i, len, c->len);
        if (c->len) CHECK_MSG(cp == c->cp, "case %zu: U+%04X, want U+%04X", i, cp, c->cp);
        else CHECK_MSG(cp == 0xDEADBEEF, "case %zu: cp written for an invalid sequence", i);
        CHECK(utf8_decode(c->bytes, c->n, NULL) == c->len);
    }
    // the length limit n counts: a valid sequence cut by n is not one
    CHECK(utf8_decode("\xE2\x82\xAC", 2, NULL) == 0);
    CHECK(utf8_decode("\xE2\x82\xAC", 3, NULL) == 3);
}

static void test_valid_len(void) {
    CHECK(utf8_valid_len("", 0) == 0);
    CHECK(utf8_valid_len(S("hello, world")) == 12);
    CHECK(utf8_valid_len(S("caf\xC3\xA9 \xE2\x82\xAC")) == 9);
    CHECK(utf8_valid_len(S("abc\x80" "def")) == 3);              // stops at the bad byte
    CHECK(utf8_valid_len(S("abcdefgh\xC3")) == 8);              // after the 8-byte fast path
    CHECK(utf8_valid_len(S("abcdefghijklmnop\xED\xA0\x80x")) == 16);
    CHECK(utf8_valid_len(S("\xF0\x9F\x98\x80\xF0\x9F\x98")) == 4);  // truncated second emoji
    CHECK(utf8_valid_len(S("a\0b")) == 3);                     // NUL is valid UTF-8
}

static void check_clean(const char *in, size_t n, const char *want) {
    char *got = utf8_clean(in, n);
    CHECK_MSG(!strcmp(got, want), "clean gave \"%s\", want \"%s\"", got, want);
    free(got);
}

static void test_clean(void) {
    check_clean("", 0, "");
    check_clean(S("plain text"), "plain text");
    check_clean(S("caf\xC3\xA9"), "caf\xC3\xA9");
    check_clean(S("a\x80" "b"), "a\xEF\xBF\xBD" "b");                       // one byte, one U+FFFD
    check_clean(S("\xC0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD");                  // overlong: both bytes
    check_clean(S("\xED\xA0\x80!"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD!");  // surrogate
    check_clean(S("ok\xF0\x9F\x98"), "ok\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // cut emoji
    check_clean(S("x\0y"), "x\xEF\xBF\xBDy");                                // NUL too
    check_clean(S("\xF0\x9F\x98\x80"), "\xF0\x9F\x98\x80");
}

int main(void) {
    test_case("utf8: decode lengths and code points (valid, overlong, surrogate, truncated)",
              test_decode);
    test_case("utf8: longest valid prefix", test_valid_len);
    test_case("utf8: clean replaces each bad byte and NUL with U+FFFD", test_clean);
    return test_summary();
}
