// Tests of common/tokenizer.c: GPT-2's byte-level BPE against ids from independent
// implementations (tests/fixtures/tokenizer_cases.json, written by tests/ref/tokenizer_ref.js from
// the npm packages gpt-3-encoder and gpt-tokenizer), byte-exact round trips of arbitrary bytes
// (invalid UTF-8 included), hand-made vocabularies, every load error path, and the BPE trainer.
// Run from the repo root (it reads data/gpt2/ and tests/fixtures/).
#include "testlib.h"
#include "tokenizer.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static Tokenizer *gpt2;     // loaded once by test_load_gpt2, used by the later cases
static char tmp_root[64];   // scratch folder, removed at the end

// ---------------------------------------------------------------------------------------------
// helpers


static void write_file(const char *dir, const char *name, const void *data, size_t n) {
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) { CHECK_MSG(0, "cannot write %s", path); return; }
    fwrite(data, 1, n, f);
    fclose(f);
}
static void write_str(const char *dir, const char *name, const char *s) {
    write_file(dir, name, s, strlen(s));
}

// A fresh sub-folder of the scratch folder.
static const char *new_dir(const char *name) {
    static char path[256];   // test-only helper state
    snprintf(path, sizeof(path), "%s/%s", tmp_root, name);
    mkdir(path, 0755);
    return path;
}

static void remove_tree(const char *path) {
    DIR *d = opendir(path);
    if (!d) { unlink(path); return; }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char sub[512];
        snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
        remove_tree(sub);
    }
    closedir(d);
    rmdir(path);
}

static int same_ids(const TokIds *got, const int32_t *want, size_t n) {
    if (got->n != n) return 0;
    for (size_t i = 0; i < n; i++) if (got->ids[i] != want[i]) return 0;
    return 1;
}

// Appends the ids of text[0..n) under GPT-2 to ids: 0, or -1 (the cases check only that).
static int gpt2_encode(const void *text, size_t n, unsigned flags, TokIds *ids) {
    char err[256];
    return tok_encode(gpt2, text, n, flags, ids, err, sizeof err);
}

static void print_ids(const char *what, const int32_t *ids, size_t n) {
    fprintf(stderr, "      %s (%zu):", what, n);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

// encode then decode must give the same bytes back
static int round_trips(const Tokenizer *t, const void *s, size_t n, unsigned flags) {
    TokIds ids = {0};
    TokBytes back = {0};
    char err[256];
    int ok = tok_encode(t, s, n, flags, &ids, err, sizeof err) == 0 &&
             tok_decode(t, ids.ids, ids.n, &back, err, sizeof err) == 0 &&
             back.n == n && (n == 0 || memcmp(back.data, s, n) == 0);
    tok_ids_free(&ids);
    tok_bytes_free(&back);
    return ok;
}

static uint64_t rng_next(uint64_t *s) {   // xorshift64*
    *s ^= *s >> 12; *s ^= *s << 25; *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

// ---------------------------------------------------------------------------------------------
// GPT-2's own vocabulary

static void test_load_gpt2(void) {
    char err[256] = "";
    int st = tok_load(&gpt2, "data/gpt2", err, sizeof err);
    CHECK_MSG(st == 0, "tok_load(data/gpt2): %s", err);
    if (st) return;
    CHECK(tok_vocab_size(gpt2) == 50257);
    CHECK(tok_n_merges(gpt2) == 50000);
    CHECK(tok_eot(gpt2) == 50256);
    CHECK(tok_is_special(gpt2, 50256));
    CHECK(!tok_is_special(gpt2, 50255));
    size_t n;
    const char *s = tok_token(gpt2, 220, &n);
    CHECK(s && n == 1 && s[0] == ' ');
    s = tok_token(gpt2, 50256, &n);
    CHECK(s && n == 13 && !memcmp(s, "<|endoftext|>", 13));
    CHECK(tok_token(gpt2, 50257, &n) == NULL && n == 0);
    CHECK(tok_token(gpt2, -1, NULL) == NULL);
    CHECK(tok_find(gpt2, " the", 4) == 262);
    CHECK(tok_find(gpt2, "Hello", 5) == 15496);
    CHECK(tok_find(gpt2, "no such token here", 18) == -1);
    CHECK(tok_find(gpt2, "!", 1) == 0);          // GPT-2's byte order: '!' is id 0
    CHECK(tok_find(gpt2, "\0", 1) == 188);       // bytes without a glyph come after the 188 others
}

static int hexval(int c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

static void check_case_ids(const cJSON *c, const char *field, const unsigned char *text, size_t n,
                           unsigned flags, const char *name) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(c, field);
    int m = cJSON_GetArraySize(arr);
    int32_t *want = malloc(((size_t)m + 1) * sizeof(int32_t));
    for (int i = 0; i < m; i++) want[i] = (int32_t)cJSON_GetArrayItem(arr, i)->valuedouble;
    TokIds got = {0};
    char err[256];
    int st = tok_encode(gpt2, text, n, flags, &got, err, sizeof err);
    CHECK_MSG(st == 0, "%s: encode failed: %s", name, err);
    if (!same_ids(&got, want, (size_t)m)) {
        CHECK_MSG(0, "case %s (%s): ids differ", name, field);
        print_ids("want", want, (size_t)m);
        print_ids("got ", got.ids, got.n);
    }
    TokBytes back = {0};
    st = tok_decode(gpt2, want, (size_t)m, &back, err, sizeof err);
    CHECK_MSG(st == 0 && back.n == n && (n == 0 || !memcmp(back.data, text, n)),
              "case %s (%s): decode of the reference ids is not the text", name, field);
    tok_ids_free(&got);
    tok_bytes_free(&back);
    free(want);
}

static void test_reference_cases(void) {
    if (!gpt2) { CHECK_MSG(0, "GPT-2 vocabulary not loaded"); return; }
    char path[512];
    snprintf(path, sizeof(path), "%s/fixtures/tokenizer_cases.json", test_data_dir());
    size_t len;
    char *json = test_read_file(path, &len);
    CHECK_MSG(json, "cannot read %s", path);
    if (!json) return;
    cJSON *root = cJSON_ParseWithLength(json, len);
    free(json);
    CHECK_MSG(root, "%s: invalid JSON", path);
    if (!root) return;
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(root, "cases");
    int n_cases = cJSON_GetArraySize(cases);
    CHECK_MSG(n_cases >= 60, "only %d reference cases", n_cases);
    for (int k = 0; k < n_cases; k++) {
        const cJSON *c = cJSON_GetArrayItem(cases, k);
        const char *name = cJSON_GetObjectItemCaseSensitive(c, "name")->valuestring;
        const char *hex = cJSON_GetObjectItemCaseSensitive(c, "hex")->valuestring;
        size_t n = strlen(hex) / 2;
        unsigned char *text = malloc(n + 1);
        for (size_t i = 0; i < n; i++)
            text[i] = (unsigned char)(hexval(hex[2 * i]) << 4 | hexval(hex[2 * i + 1]));
        check_case_ids(c, "ids", text, n, 0, name);
        check_case_ids(c, "ids_special", text, n, TOK_ALLOW_SPECIAL, name);
        free(text);
    }
    cJSON_Delete(root);
}

// "<|endoftext|>" in text: ordinary text unless asked (as in GPT-2's encoder.py and gpt-3-encoder).
static void test_special_tokens(void) {
    if (!gpt2) return;
    const char *s = "a<|endoftext|>b";
    TokIds ids = {0};
    CHECK(gpt2_encode(s, strlen(s), 0, &ids) == 0);
    const int32_t plain[] = {64, 27, 91, 437, 1659, 5239, 91, 29, 65};
    CHECK(same_ids(&ids, plain, 9));
    ids.n = 0;
    CHECK(gpt2_encode(s, strlen(s), TOK_ALLOW_SPECIAL, &ids) == 0);
    const int32_t special[] = {64, 50256, 65};
    CHECK(same_ids(&ids, special, 3));
    tok_ids_free(&ids);
}

// A copy of GPT-2 with extra special tokens: a new one, an existing token, and two that overlap.
static void test_add_special(void) {
    char err[256];
    Tokenizer *t;
    if (tok_load(&t, "data/gpt2", err, sizeof err)) { CHECK_MSG(0, "%s", err); return; }
    int32_t im, hello, ab, abc;
    CHECK(tok_add_special(t, "<|im_start|>", 12, &im, err, sizeof err) == 0 && im == 50257);
    CHECK(tok_vocab_size(t) == 50258 && tok_is_special(t, im));
    CHECK(tok_add_special(t, "Hello", 5, &hello, err, sizeof err) == 0 && hello == 15496);
    CHECK(tok_vocab_size(t) == 50258);
    CHECK(tok_add_special(t, "", 0, NULL, err, sizeof err) == -1);
    CHECK(tok_add_special(t, "[AB]", 4, &ab, err, sizeof err) == 0 &&
          tok_add_special(t, "[AB]C", 5, &abc, err, sizeof err) == 0);
    const char *s = "<|im_start|>user Hello[AB]C[AB]";
    TokIds ids = {0}, part = {0};
    CHECK(tok_encode(t, s, strlen(s), TOK_ALLOW_SPECIAL, &ids, err, sizeof err) == 0);
    // im, " user " as text, Hello, abc (the longer special wins at a tie), ab
    CHECK(tok_encode(t, "user ", 5, 0, &part, err, sizeof err) == 0);
    CHECK(ids.n == part.n + 4 && ids.ids[0] == im && ids.ids[part.n + 1] == hello &&
          ids.ids[part.n + 2] == abc && ids.ids[part.n + 3] == ab);
    CHECK(part.n >= 1 && !memcmp(ids.ids + 1, part.ids, part.n * sizeof(int32_t)));
    CHECK(round_trips(t, s, strlen(s), TOK_ALLOW_SPECIAL));
    CHECK(round_trips(t, s, strlen(s), 0));
    // a new special token survives save + load (its "<|name|>" form marks it special again)
    const char *dir = new_dir("special");
    CHECK_MSG(tok_save(t, dir, err, sizeof err) == 0, "%s", err);
    Tokenizer *u;
    CHECK_MSG(tok_load(&u, dir, err, sizeof err) == 0, "%s", err);
    if (u) {
        CHECK(tok_vocab_size(u) == 50260 && tok_find(u, "<|im_start|>", 12) == 50257 &&
              tok_is_special(u, 50257));
        CHECK(!tok_is_special(u, tok_find(u, "[AB]", 4)));   // not of the <|name|> form
        tok_free(u);
    }
    tok_ids_free(&ids);
    tok_ids_free(&part);
    tok_free(t);
}

// Whitespace follows PCRE2's UCP \s, which like GPT-2's Python `regex` includes U+0085 (NEL)
// and excludes U+FEFF: " \u0085x" is " ", "\u0085", "x" (JavaScript's \s makes " \u0085" one
// piece), and " \ufeffx" is " \ufeff", "x".
static void test_whitespace_choice(void) {
    if (!gpt2) return;
    TokIds all = {0}, parts = {0};
    const char *s = " \xc2\x85x";
    gpt2_encode(s, strlen(s), 0, &all);
    gpt2_encode(" ", 1, 0, &parts);
    gpt2_encode("\xc2\x85", 2, 0, &parts);
    gpt2_encode("x", 1, 0, &parts);
    CHECK(all.n == parts.n && !memcmp(all.ids, parts.ids, all.n * sizeof(int32_t)));
    all.n = parts.n = 0;
    s = " \xef\xbb\xbfx";
    gpt2_encode(s, strlen(s), 0, &all);
    gpt2_encode(" \xef\xbb\xbf", 4, 0, &parts);
    gpt2_encode("x", 1, 0, &parts);
    CHECK(all.n == parts.n && !memcmp(all.ids, parts.ids, all.n * sizeof(int32_t)));
    tok_ids_free(&all);
    tok_ids_free(&parts);
}

// Invalid UTF-8: cut there; each invalid byte is its own piece (its byte token).
static void test_invalid_utf8(void) {
    if (!gpt2) return;
    TokIds got = {0}, want = {0};
    const char *s = "abc\xff" "def \xc3(\xed\xa0\x80x\xc0\xaf";
    CHECK(gpt2_encode(s, strlen(s), 0, &got) == 0);
    gpt2_encode("abc", 3, 0, &want);
    const unsigned char ff[] = {0xff};
    gpt2_encode(ff, 1, 0, &want);
    gpt2_encode("def ", 4, 0, &want);
    const unsigned char rest[] = {0xc3};
    gpt2_encode(rest, 1, 0, &want);
    gpt2_encode("(", 1, 0, &want);
    const unsigned char sur[] = {0xed, 0xa0, 0x80};   // a UTF-16 surrogate: three invalid bytes
    for (int i = 0; i < 3; i++) gpt2_encode(sur + i, 1, 0, &want);
    gpt2_encode("x", 1, 0, &want);
    const unsigned char ovl[] = {0xc0, 0xaf};          // overlong '/'
    for (int i = 0; i < 2; i++) gpt2_encode(ovl + i, 1, 0, &want);
    CHECK(same_ids(&got, want.ids, want.n));
    // each single byte encodes to its own token, and its token decodes to it
    for (int b = 0; b < 256; b++) {
        unsigned char c = (unsigned char)b;
        got.n = 0;
        gpt2_encode(&c, 1, 0, &got);
        size_t n;
        const char *tb = got.n == 1 ? tok_token(gpt2, got.ids[0], &n) : NULL;
        CHECK_MSG(tb && n == 1 && (unsigned char)tb[0] == c, "byte 0x%02x", b);
    }
    tok_ids_free(&got);
    tok_ids_free(&want);
}

// decode(encode(x)) == x for random byte strings, valid UTF-8 or not (fixed seed).
static void test_random_round_trip(void) {
    if (!gpt2) return;
    static const char *frag[] = {"the", " ", "  ", "\n", "\t", "'s", "'ll", "<|endoftext|>", "<|", "|>",
                                 "\xc3\xa9", "\xe4\xb8\xad", "\xf0\x9f\x98\x80", "\xc2\xa0", "\xe3\x80\x80",
                                 "\xc2\x85", "\xef\xbb\xbf", "\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80",
                                 "\xe2\x82", "\xf0\x9f", "\x80", "\xff", "123", "!!", ".", "A"};
    const int nfrag = (int)(sizeof(frag) / sizeof(frag[0]));
    uint64_t seed = 0x1234abcdull;
    unsigned char buf[512];
    int bad = 0;
    for (int k = 0; k < 3000; k++) {
        size_t n = 0, want = rng_next(&seed) % 300;
        int mode = k % 3;
        while (n < want) {
            if (mode == 0) buf[n++] = (unsigned char)rng_next(&seed);            // raw bytes
            else if (mode == 1)
                buf[n++] =
                    (unsigned char)(rng_next(&seed) % 128 | (rng_next(&seed) % 4 == 0 ? 0x80 : 0));
            else {                                                               // fragments
                const char *f = frag[rng_next(&seed) % (uint64_t)nfrag];
                size_t fl = strlen(f);
                if (n + fl > sizeof(buf)) break;
                memcpy(buf + n, f, fl);
                n += fl;
            }
        }
        if (!round_trips(gpt2, buf, n, 0) || !round_trips(gpt2, buf, n, TOK_ALLOW_SPECIAL)) {
            if (bad++ < 3) CHECK_MSG(0, "string %d (%zu bytes) does not round-trip", k, n);
        }
    }
    CHECK_MSG(bad == 0, "%d of 3000 random strings do not round-trip", bad);
}

// Long inputs: a megabyte-long word goes through the heap merge loop; long whitespace runs.
static void test_long_inputs(void) {
    if (!gpt2) return;
    size_t n = 1 << 20;
    char *s = malloc(n);
    const char *fill[] = {"a", " ", "\n", "ab", "\xe4\xb8\xad", "1"};
    for (int f = 0; f < 6; f++) {
        size_t fl = strlen(fill[f]), i;
        for (i = 0; i + fl <= n; i += fl) memcpy(s + i, fill[f], fl);
        CHECK_MSG(round_trips(gpt2, s, i, 0), "1 MB of \"%s\" does not round-trip", fill[f]);
    }
    // a long letter run merges exactly as shorter ones do: "aaaa..." of 2^k letters gives
    // copies of one token, whatever k
    TokIds ids = {0};
    char err[256];
    memset(s, 'a', n);
    CHECK(tok_encode(gpt2, s, n, 0, &ids, err, sizeof err) == 0);
    int uniform = ids.n > 0;
    for (size_t i = 1; i < ids.n; i++) uniform &= ids.ids[i] == ids.ids[0];
    CHECK_MSG(uniform && ids.n <= n / 4, "1 MB of 'a': %zu tokens", ids.n);
    tok_ids_free(&ids);
    free(s);
}

static void test_decode_errors(void) {
    if (!gpt2) return;
    char err[256] = "";
    TokBytes out = {0};
    const int32_t ok[] = {15496, 995};
    CHECK(tok_decode(gpt2, ok, 2, &out, err, sizeof err) == 0 && out.n == 11 &&
          !strcmp(out.data, "Hello world"));
    const int32_t bad[] = {15496, 50257};
    CHECK(tok_decode(gpt2, bad, 2, &out, err, sizeof err) == -1 && out.n == 11);
    CHECK(strstr(err, "50257") != NULL);
    const int32_t neg[] = {-1};
    CHECK(tok_decode(gpt2, neg, 1, &out, err, sizeof err) == -1 && out.n == 11);
    CHECK(tok_decode(gpt2, NULL, 0, &out, err, sizeof err) == 0 && out.n == 11);
    TokIds ids = {0};
    CHECK(tok_encode(gpt2, NULL, 0, 0, &ids, err, sizeof err) == 0 && ids.n == 0);
    CHECK(tok_encode(gpt2, NULL, 0, TOK_ALLOW_SPECIAL, &ids, err, sizeof err) == 0 && ids.n == 0);
    tok_ids_free(&ids);
    tok_bytes_free(&out);
}

// Saving GPT-2's vocabulary reproduces the original files byte for byte.
static void test_save_identical(void) {
    if (!gpt2) return;
    char err[256];
    const char *dir = new_dir("saved");
    CHECK_MSG(tok_save(gpt2, dir, err, sizeof err) == 0, "%s", err);
    const char *names[] = {"vocab.json", "merges.txt"};
    for (int i = 0; i < 2; i++) {
        char p1[512], p2[512];
        snprintf(p1, sizeof(p1), "data/gpt2/%s", names[i]);
        snprintf(p2, sizeof(p2), "%s/%s", dir, names[i]);
        size_t n1 = 0, n2 = 0;
        char *a = test_read_file(p1, &n1), *b = test_read_file(p2, &n2);
        CHECK_MSG(a && b && n1 == n2 && !memcmp(a, b, n1), "%s differs from the original", p2);
        free(a);
        free(b);
    }
}

// The older names encoder.json + vocab.bpe are accepted.
static void test_old_names(void) {
    const char *dir = new_dir("oldnames");
    size_t n1, n2;
    char *v = test_read_file("data/gpt2/vocab.json", &n1),
         *m = test_read_file("data/gpt2/merges.txt", &n2);
    if (!v || !m) { CHECK(0); free(v); free(m); return; }
    write_file(dir, "encoder.json", v, n1);
    write_file(dir, "vocab.bpe", m, n2);
    free(v);
    free(m);
    Tokenizer *t;
    char err[256];
    CHECK_MSG(tok_load(&t, dir, err, sizeof err) == 0, "%s", err);
    if (t) {
        CHECK(tok_vocab_size(t) == 50257 && tok_n_merges(t) == 50000);
        tok_free(t);
    }
}

// Encoding from many threads at once on one Tokenizer gives the same ids.
static void test_threads(void) {
    if (!gpt2) return;
    const char *s = "Concurrent encoding of the same text, with numbers 12345 and émojis 😀.\n";
    TokIds want = {0};
    gpt2_encode(s, strlen(s), 0, &want);
    int bad = 0;
    #pragma omp parallel for reduction(+:bad)
    for (int i = 0; i < 64; i++) {
        TokIds got = {0};
        gpt2_encode(s, strlen(s), 0, &got);
        bad += !same_ids(&got, want.ids, want.n);
        tok_ids_free(&got);
    }
    CHECK(bad == 0);
    tok_ids_free(&want);
}

// ---------------------------------------------------------------------------------------------
// Small hand-made vocabularies

// The 256 byte tokens in GPT-2's order as JSON entries ("!": 0, ...), then extra tokens.
static char *byte_vocab_json(const char *extra) {
    size_t cap = 8192 + strlen(extra);
    char *s = malloc(cap);
    size_t k = 0;
    k += (size_t)snprintf(s + k, cap - k, "{");
    int id = 0, n = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int b = 0; b < 256; b++) {
            int keep =
                (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
            if (keep != (pass == 0)) continue;
            int cp = keep ? b : 256 + n++;
            if (cp == '"' || cp == '\\')
                k += (size_t)snprintf(s + k, cap - k, "%s\"\\%c\": %d", id ? ", " : "", cp, id);
            else if (cp < 0x80)
                k += (size_t)snprintf(s + k, cap - k, "%s\"%c\": %d", id ? ", " : "", cp, id);
            else k += (size_t)snprintf(s + k, cap - k, "%s\"\\u%04x\": %d", id ? ", " : "", cp, id);
            id++;
        }
    k += (size_t)snprintf(s + k, cap - k, "%s}", extra);
    return s;
}

static Tokenizer *load_small(const char *name, const char *extra_vocab, const char *merges,
                             char *err, size_t errlen) {
    const char *dir = new_dir(name);
    char *v = byte_vocab_json(extra_vocab);
    write_str(dir, "vocab.json", v);
    write_str(dir, "merges.txt", merges);
    free(v);
    Tokenizer *t = NULL;
    tok_load(&t, dir, err, errlen);
    return t;
}

static void expect_encoding(const Tokenizer *t, const char *text, const int32_t *want, size_t n) {
    TokIds got = {0};
    char err[256];
    CHECK(tok_encode(t, text, strlen(text), 0, &got, err, sizeof err) == 0);
    if (!same_ids(&got, want, n)) {
        CHECK_MSG(0, "encoding of \"%s\" differs", text);
        print_ids("want", want, n);
        print_ids("got ", got.ids, got.n);
    }
    tok_ids_free(&got);
}

// Merge semantics worked out by hand: lowest rank first, all occurrences left to right, and
// GPT-2's rounds even when ranks are out of order.
static void test_small_vocab(void) {
    char err[256] = "";
    // ids: a=64 b=65 c=66 x=87; 256 "ab", 257 "abc", 258 "bc", 259 "xx", 260 "xxx", 261 "xxxx"
    Tokenizer *t = load_small("small", ", \"ab\": 256, \"abc\": 257, \"bc\": 258, \"xx\": 259, \"xxx\": 260, \"xxxx\": 261",
                              "#version: 0.2\nb c\na b\nxx x\nx x\nxx xx\n", err, sizeof err);
    CHECK_MSG(t, "%s", err);
    if (!t) return;
    CHECK(tok_vocab_size(t) == 262 && tok_n_merges(t) == 5 && tok_eot(t) == -1);
    const int32_t w1[] = {64, 258};                 // "abc": (b,c) has the lower rank
    expect_encoding(t, "abc", w1, 2);
    const int32_t w2[] = {256};                     // "ab"
    expect_encoding(t, "ab", w2, 1);
    const int32_t w3[] = {256, 256, 64};            // "ababa": every occurrence
    expect_encoding(t, "ababa", w3, 3);
    // "xxxx": round of (x,x) makes xx xx (not xxx x, though (xx,x) has a lower rank), then xxxx
    const int32_t w4[] = {261};
    expect_encoding(t, "xxxx", w4, 1);
    const int32_t w5[] = {260};                     // "xxx": xx x, then (xx,x)
    expect_encoding(t, "xxx", w5, 1);
    // "xxxxx": xx xx x; then (xx,x) has the lowest rank present: xx xxx (as encoder.py does)
    const int32_t w6[] = {259, 260};
    expect_encoding(t, "xxxxx", w6, 2);
    const int32_t w7[] = {64, 258, 220, 87};        // pieces "abc", " x"
    expect_encoding(t, "abc x", w7, 4);
    CHECK(round_trips(t, "abc xxxx \xff\xfe", 11, 0));
    tok_free(t);
}

// vocab.json with every JSON string escape: \" \\ \/ \b \f \n \r \t \uXXXX (upper and lower
// case), and a surrogate pair (valid JSON, but not a byte-level character: rejected by name).
static void test_json_escapes(void) {
    char err[256] = "";
    // "\u0120" is Ġ (space); "\/" is '/'; "\"\\" is the token "\ (two bytes, needs no merge)
    Tokenizer *t = load_small(
        "escapes",
        ", \"\\u0120\\/\": 256, \"\\\"\\\\\": 257, \"\\u0120\\u0120\": 258, \"\xc4\xa0\\u0120\\u0120\": 259",
        "#version: 0.2\n\xc4\xa0 /\n\" \\\n\xc4\xa0 \xc4\xa0\n\xc4\xa0 \xc4\xa0\xc4\xa0\n", err,
        sizeof err);
    CHECK_MSG(t, "%s", err);
    if (t) {
        CHECK(tok_find(t, " /", 2) == 256 && tok_find(t, "\"\\", 2) == 257 &&
              tok_find(t, "   ", 3) == 259);
        tok_free(t);
    }
    const char *bad[][2] = {
        {", \"\\ud83d\\ude00\": 256", "U+1F600"},   // surrogate pair decoded, then refused
        {", \"a\\nb\": 256", "U+000A"},             // \n is not in the byte-level alphabet
        {", \"a\\tb\": 256", "U+0009"},
        {", \"\\b\": 256", "U+0008"},
        {", \"\\f\": 256", "U+000C"},
        {", \"\\r\": 256", "U+000D"},
        {", \"x\\u0000y\": 256", "\\u0000"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = 0;
        t = load_small("escapes_bad", bad[i][0], "#version: 0.2\n", err, sizeof err);
        CHECK_MSG(!t && strstr(err, bad[i][1]) && strstr(err, "vocab.json"), "%s: got \"%s\"",
                  bad[i][1], err);
        tok_free(t);
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile files: each gives -1 and a message naming the file and the problem.

static void expect_load_error(const char *name, const char *vocab, size_t vocab_len,
                              const char *merges, const char *want_file, const char *want_text) {
    const char *dir = new_dir(name);
    char path_v[300], path_m[300];
    snprintf(path_v, sizeof(path_v), "%s/vocab.json", dir);
    snprintf(path_m, sizeof(path_m), "%s/merges.txt", dir);
    unlink(path_v);
    unlink(path_m);
    if (vocab) write_file(dir, "vocab.json", vocab, vocab_len);
    if (merges) write_str(dir, "merges.txt", merges);
    Tokenizer *t = (Tokenizer *)1;
    char err[256] = "";
    int st = tok_load(&t, dir, err, sizeof err);
    CHECK_MSG(st == -1, "%s: status %d, want -1 (%s)", name, st, err);
    CHECK_MSG(t == NULL, "%s: *out not NULL on error", name);
    CHECK_MSG(strstr(err, want_file) != NULL, "%s: message does not name %s: \"%s\"", name,
              want_file, err);
    CHECK_MSG(strstr(err, want_text) != NULL, "%s: message lacks \"%s\": \"%s\"", name, want_text,
              err);
}

// A byte-level vocab.json with `extra` entries appended, an empty merges.txt: loading fails with
// want_text in a message that names vocab.json.
static void expect_vocab_error(const char *name, const char *extra, const char *want_text) {
    char *v = byte_vocab_json(extra);
    expect_load_error(name, v, strlen(v), "#version: 0.2\n", "vocab.json", want_text);
    free(v);
}

static void test_load_errors(void) {
    char err[256] = "";
    Tokenizer *t = (Tokenizer *)1;
    CHECK(tok_load(&t, "/nonexistent/dir", err, sizeof err) == -1 && t == NULL && strstr(err, "/nonexistent/dir"));
    CHECK(tok_load_files(&t, "/nonexistent/v.json", "data/gpt2/merges.txt", err, sizeof err) == -1 &&
          strstr(err, "/nonexistent/v.json") && strstr(err, "cannot open"));
    CHECK(tok_load_files(&t, "data/gpt2/vocab.json", "/nonexistent/m.txt", err, sizeof err) == -1 &&
          strstr(err, "/nonexistent/m.txt"));
    CHECK(tok_load_files(&t, "data/gpt2", "data/gpt2/merges.txt", err, sizeof err) == -1 &&
          strstr(err, "not a regular file"));

    size_t n;
    char *gv = test_read_file("data/gpt2/vocab.json", &n);
    if (!gv) { CHECK(0); return; }
    const char *gm = "#version: 0.2\n";
    expect_load_error("truncated", gv, 100000, gm, "vocab.json", "truncated");
    expect_load_error("truncated_mid_escape", gv, 3000, gm, "vocab.json", "invalid JSON");
    expect_load_error("empty_vocab", "", 0, gm, "vocab.json", "invalid JSON");
    expect_load_error("no_merges", gv, n, NULL, "merges.txt", "cannot open");
    free(gv);

    char *v = byte_vocab_json("");
    expect_load_error("array", "[1, 2]", 6, gm, "vocab.json", "expected a JSON object");
    expect_load_error("empty_object", "{}", 2, gm, "vocab.json", "0 tokens");
    expect_load_error("garbage_after", "{\"a\": 0} x", 10, gm, "vocab.json", "after the JSON");
    // an empty token, also what a raw NUL byte at the start of a key becomes in cJSON (found by
    // fuzz_tokenizer: it reached memcpy from a NULL buffer)
    expect_load_error("empty_token", "{\"\": 0}", 7, gm, "vocab.json", "empty string");
    expect_load_error("nul_token", "{\"\0x\": 0}", 9, gm, "vocab.json", "empty string");
    // 100000 nested arrays: cJSON stops at its nesting limit (no stack overflow)
    size_t depth = 100000;
    char *deep = malloc(2 * depth);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    expect_load_error("deep", deep, 2 * depth, gm, "vocab.json", "invalid JSON");
    free(deep);
    expect_vocab_error("string_id", ", \"ab\": \"256\"", "not a number");
    expect_vocab_error("fractional_id", ", \"ab\": 256.5", "not an integer");
    expect_vocab_error("gap", ", \"ab\": 999", "without gaps");
    expect_vocab_error("negative_id", ", \"ab\": -1", "\"ab\"");
    expect_vocab_error("duplicate_id", ", \"ab\": 256, \"cd\": 256", "id 256 is used twice");
    expect_vocab_error("duplicate_token", ", \"ab\": 256, \"ab\": 257", "duplicate token");
    expect_vocab_error("space_in_token", ", \"a b\": 256", "U+0020");
    expect_vocab_error("bad_utf8_token", ", \"\xff\": 256", "not valid UTF-8");
    // a vocabulary without byte 'z' (drop the "z": 89 entry by renaming it)
    char *s = byte_vocab_json("");
    char *z = strstr(s, "\"z\": 89");
    if (z) memcpy(z, "\"zz\":89", 7);
    expect_load_error("missing_byte", s, strlen(s), gm, "vocab.json", "byte 0x7a has no token");
    free(s);

    s = byte_vocab_json(", \"ab\": 256");
    expect_load_error("three_fields", s, strlen(s), "#version: 0.2\na b c\n", "merges.txt",
                      "line 2");
    expect_load_error("one_field", s, strlen(s), "#version: 0.2\nab\n", "merges.txt", "line 2");
    expect_load_error("two_spaces", s, strlen(s), "#version: 0.2\na  b\n", "merges.txt",
                      "one space");
    expect_load_error("unknown_part", s, strlen(s), "#version: 0.2\na b\nab q\xc4\xa0\n",
                      "merges.txt", "line 3: token \"q\\xc4\\xa0\" is not in the vocabulary");
    expect_load_error("result_missing", s, strlen(s), "#version: 0.2\na b\nb c\n", "merges.txt",
                      "line 3: the merge result \"bc\"");
    expect_load_error("duplicate_merge", s, strlen(s), "#version: 0.2\na b\na b\n", "merges.txt",
                      "line 3: merge \"a b\" repeats merge 1");
    expect_load_error("blank_inside", s, strlen(s), "#version: 0.2\n\na b\n", "merges.txt",
                      "line 2: empty line");
    expect_load_error("not_byte_level", s, strlen(s), "#version: 0.2\na \xe2\x82\xac\n",
                      "merges.txt", "line 2");
    expect_load_error("binary", s, strlen(s), "\x01\x02\x03\x00\xff\n", "merges.txt", "line 1");
    // a huge file (sparse: takes no disk) is refused before it is read
    const char *hd = new_dir("huge");
    write_str(hd, "merges.txt", "#version: 0.2\n");
    char hp[300];
    snprintf(hp, sizeof(hp), "%s/vocab.json", hd);
    FILE *hf = fopen(hp, "wb");
    CHECK(hf && ftruncate(fileno(hf), (off_t)1 << 30) == 0);
    if (hf) fclose(hf);
    CHECK(tok_load(&t, hd, err, sizeof err) == -1 && strstr(err, "vocab.json") &&
          strstr(err, "too large"));
    // accepted: no version line, CRLF line ends, trailing blank lines
    const char *dir = new_dir("lenient");
    write_str(dir, "vocab.json", s);
    write_str(dir, "merges.txt", "a b\r\n\r\n\n");
    CHECK_MSG(tok_load(&t, dir, err, sizeof err) == 0 && tok_n_merges(t) == 1, "%s", err);
    tok_free(t);
    free(s);
    free(v);
}

// ---------------------------------------------------------------------------------------------
// The trainer

// Training worked out by hand: pieces "ab" x1, " ab" x2, " cd" x2 give pair counts (a,b) 3,
// then ties of 2 broken by the smaller first id: 'c' (66) before 'Ġ' (220), then (Ġ,ab) before
// (Ġ,cd) because ab (256) < cd (257).
static void test_train_by_hand(void) {
    const char *dir = new_dir("train_hand");
    write_str(dir, "text.txt", "ab ab ab cd cd");
    char path[300];
    snprintf(path, sizeof(path), "%s/text.txt", dir);
    const char *paths[] = {path};
    TokTrainOptions opt = {.vocab_size = 256 + 4 + 1, .min_frequency = 2};
    Tokenizer *t;
    char err[256] = "";
    CHECK_MSG(tok_train(paths, 1, &opt, dir, &t, err, sizeof err) == 0, "%s", err);
    if (!t) return;
    CHECK(tok_vocab_size(t) == 261 && tok_n_merges(t) == 4 && tok_eot(t) == 260);
    char mp[300];
    snprintf(mp, sizeof(mp), "%s/merges.txt", dir);
    char *m = test_read_file(mp, NULL);
    CHECK_MSG(m && !strcmp(m, "#version: 0.2\na b\nc d\n\xc4\xa0 ab\n\xc4\xa0 cd\n"),
              "merges.txt: %s", m ? m : "(none)");
    free(m);
    const int32_t w[] = {256, 258, 259, 259, 260};
    TokIds ids = {0};
    CHECK(tok_encode(t, "ab ab cd cd<|endoftext|>", 24, TOK_ALLOW_SPECIAL, &ids, err, sizeof err) == 0);
    CHECK(same_ids(&ids, w, 5));
    tok_ids_free(&ids);
    tok_free(t);
    // asking for more than the text allows gives a smaller vocabulary
    opt.vocab_size = 1000;
    CHECK(tok_train(paths, 1, &opt, NULL, &t, err, sizeof err) == 0 && tok_vocab_size(t) == 261);
    tok_free(t);
    opt.min_frequency = 3;   // only (a,b) is seen 3 times
    CHECK(tok_train(paths, 1, &opt, NULL, &t, err, sizeof err) == 0 && tok_n_merges(t) == 1);
    tok_free(t);
}

// Deterministic text: sentences of words from a small list and invented words, with numbers,
// punctuation, accents, invalid bytes and document separators.
static size_t make_text(char *buf, size_t cap, uint64_t seed) {
    static const char *words[] = {"the",    "model", "reward", "policy",  "human",       "feedback",
                                  "learns", "to",    "rank",   "answers", "better",      "than",
                                  "before", "it's",  "we're",  "données", "naïve",       "東京",
                                  "😀",      "1234",  "3.14",   "GPT-2",   "InstructGPT", "PPO"};
    const int nw = (int)(sizeof(words) / sizeof(words[0]));
    size_t n = 0;
    static const char *syl[] = {"ka",  "ri", "to",  "men", "sa", "lo", "qu", "ex", "ion", "ber",
                                "ung", "zo", "pha", "tri", "ck", "el", "wa", "ny", "gh",  "st"};
    const int ns = (int)(sizeof(syl) / sizeof(syl[0]));
    while (n + 64 < cap) {
        if (rng_next(&seed) % 2) {   // a word from the list
            const char *w = words[rng_next(&seed) % (uint64_t)nw];
            memcpy(buf + n, w, strlen(w));
            n += strlen(w);
        } else {                     // an invented word of 1-4 syllables
            for (uint64_t k = 1 + rng_next(&seed) % 4; k > 0; k--) {
                const char *w = syl[rng_next(&seed) % (uint64_t)ns];
                memcpy(buf + n, w, strlen(w));
                n += strlen(w);
            }
        }
        uint64_t r = rng_next(&seed) % 40;
        const char *sep = r < 30   ? " "
                          : r < 34 ? ", "
                          : r < 37 ? ".\n"
                          : r < 38 ? "\n\n"
                          : r < 39 ? "<|endoftext|>"
                                   : " \xff\xfe ";
        memcpy(buf + n, sep, strlen(sep));
        n += strlen(sep);
    }
    return n;
}

static void test_train_round_trip(void) {
    const char *dir = new_dir("train");
    char *text = malloc(200000);
    size_t n = make_text(text, 200000, 42);
    write_file(dir, "a.txt", text, n / 2);
    write_file(dir, "b.txt", text + n / 2, n - n / 2);
    char pa[300], pb[300];
    snprintf(pa, sizeof(pa), "%s/a.txt", dir);
    snprintf(pb, sizeof(pb), "%s/b.txt", dir);
    const char *paths[] = {pa, pb};
    TokTrainOptions opt = {.vocab_size = 400};
    char err[256] = "";
    const char *d1 = new_dir("train/one");
    char dir1[300];
    snprintf(dir1, sizeof(dir1), "%s", d1);
    Tokenizer *t1 = NULL, *t2 = NULL;
    CHECK_MSG(tok_train(paths, 2, &opt, dir1, &t1, err, sizeof err) == 0, "%s", err);
    const char *d2 = new_dir("train/two");
    char dir2[300];
    snprintf(dir2, sizeof(dir2), "%s", d2);
    CHECK_MSG(tok_train(paths, 2, &opt, dir2, NULL, err, sizeof err) == 0, "%s", err);
    if (!t1) { free(text); return; }
    CHECK_MSG(tok_vocab_size(t1) == 400 && tok_eot(t1) == 399 && tok_n_merges(t1) >= 143,
              "V %lld, M %lld", (long long)tok_vocab_size(t1), (long long)tok_n_merges(t1));
    // determinism: the two runs wrote identical files
    const char *names[] = {"vocab.json", "merges.txt"};
    for (int i = 0; i < 2; i++) {
        char p1[400], p2[400];
        snprintf(p1, sizeof(p1), "%s/%s", dir1, names[i]);
        snprintf(p2, sizeof(p2), "%s/%s", dir2, names[i]);
        size_t n1 = 0, n2 = 0;
        char *a = test_read_file(p1, &n1), *b = test_read_file(p2, &n2);
        CHECK_MSG(a && b && n1 == n2 && !memcmp(a, b, n1), "%s differs between two training runs",
                  names[i]);
        if (i == 1) CHECK(a && !strncmp(a, "#version: 0.2\n", 14));
        free(a);
        free(b);
    }
    // reload: same vocabulary, same encoding as the trained tokenizer, round trips
    CHECK_MSG(tok_load(&t2, dir1, err, sizeof err) == 0, "%s", err);
    if (t2) {
        CHECK(tok_vocab_size(t2) == 400 && tok_n_merges(t2) == tok_n_merges(t1) &&
              tok_eot(t2) == 399);
        TokIds a = {0}, b = {0};
        tok_encode(t1, text, n, TOK_ALLOW_SPECIAL, &a, err, sizeof err);
        tok_encode(t2, text, n, TOK_ALLOW_SPECIAL, &b, err, sizeof err);
        CHECK(a.n == b.n && !memcmp(a.ids, b.ids, a.n * sizeof(int32_t)));
        CHECK_MSG(a.n < n / 2, "trained vocabulary compresses poorly: %zu tokens for %zu bytes",
                  a.n, n);
        CHECK(round_trips(t2, text, n, 0) && round_trips(t2, text, n, TOK_ALLOW_SPECIAL));
        uint64_t seed = 7;
        unsigned char rb[256];
        for (int k = 0; k < 200; k++) {
            size_t len = rng_next(&seed) % 256;
            for (size_t i = 0; i < len; i++) rb[i] = (unsigned char)rng_next(&seed);
            CHECK(round_trips(t2, rb, len, 0));
        }
        tok_ids_free(&a);
        tok_ids_free(&b);
        tok_free(t2);
    }
    // max_bytes limits the text read; bad options and files are errors
    TokTrainOptions small = {.vocab_size = 300, .max_bytes = 1000};
    Tokenizer *t3 = NULL;
    CHECK(tok_train(paths, 2, &small, NULL, &t3, err, sizeof err) == 0 && t3);
    tok_free(t3);
    TokTrainOptions bad = {.vocab_size = 100};
    CHECK(tok_train(paths, 2, &bad, NULL, NULL, err, sizeof err) == -1 &&
          strstr(err, "vocab_size"));
    const char *missing[] = {"/nonexistent/text.txt"};
    CHECK(tok_train(missing, 1, &opt, NULL, NULL, err, sizeof err) == -1 &&
          strstr(err, "/nonexistent/text.txt"));
    CHECK(tok_train(paths, 2, &opt, "/nonexistent/out", NULL, err, sizeof err) == -1 &&
          strstr(err, "/nonexistent/out"));
    tok_free(t1);
    free(text);
}

int main(void) {
    snprintf(tmp_root, sizeof(tmp_root), "/tmp/test_tokenizer_XXXXXX");
    if (!mkdtemp(tmp_root)) { perror("mkdtemp"); return 1; }
    test_case("tokenizer: load GPT-2's vocab.json + merges.txt", test_load_gpt2);
    test_case("tokenizer: reference ids (gpt-3-encoder, gpt-tokenizer)", test_reference_cases);
    test_case("tokenizer: <|endoftext|> is text unless special tokens are allowed",
              test_special_tokens);
    test_case("tokenizer: tok_add_special", test_add_special);
    test_case("tokenizer: whitespace is PCRE2's UCP \\s", test_whitespace_choice);
    test_case("tokenizer: invalid UTF-8 bytes are pieces of their own", test_invalid_utf8);
    test_case("tokenizer: random byte strings round-trip", test_random_round_trip);
    test_case("tokenizer: 1 MB words and whitespace runs", test_long_inputs);
    test_case("tokenizer: decode rejects unknown ids; empty input", test_decode_errors);
    test_case("tokenizer: tok_save reproduces GPT-2's files", test_save_identical);
    test_case("tokenizer: encoder.json + vocab.bpe", test_old_names);
    test_case("tokenizer: encode from many threads", test_threads);
    test_case("tokenizer: hand-made vocabulary, merge order", test_small_vocab);
    test_case("tokenizer: JSON string escapes in vocab.json", test_json_escapes);
    test_case("tokenizer: hostile files give messages", test_load_errors);
    test_case("tokenizer: trainer, worked by hand", test_train_by_hand);
    test_case("tokenizer: trainer, reload, round trip, determinism", test_train_round_trip);
    tok_free(gpt2);
    remove_tree(tmp_root);
    return test_summary();
}
