// tokenizer.c: GPT-2 byte-level BPE. See tokenizer.h for the contract.
//
// Legend: V vocabulary size, M number of merges, a "piece" is one match of the pre-tokenizer
// pattern (or one invalid UTF-8 byte), a "symbol" is a token id inside a piece being merged.
//
// Encoding a piece: if the piece's bytes are a token whose own BPE is that single token (checked
// for every token at load time), that id is the answer; most English words take this path.
// Otherwise the piece goes through the merge loop: symbols in a linked list, candidate pairs in a
// min-heap keyed by (rank, position), processed in rounds so that the semantics are exactly those
// of GPT-2's encoder.py even for merges files whose ranks are out of order: each round takes the
// lowest rank present and merges all of its occurrences left to right; pairs created in a round
// join the heap after it. O(n log n) in the piece length, so a megabyte-long word is fine.
#define _GNU_SOURCE   // memmem
#include "tokenizer.h"
#include "tokenizer_impl.h"
#include "utf8.h"
#include "util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOK_MAX_VOCAB_FILE                                                                         \
    ((int64_t)64 << 20) // vocab.json / merges.txt larger: refused (GPT-2's: 1 MB)
#define TOK_MAX_TEXT_FILE ((int64_t)1 << 32)    // training text files larger: refused

static const char EOT_TEXT[] = "<|endoftext|>";

// ---------------------------------------------------------------------------------------------
// Small helpers: error messages, hashing

// Printable form of some bytes for error messages: at most 40 input bytes, \xNN for the rest.
const char *tok_show(char buf[200], const void *p, size_t n) {
    const unsigned char *s = p;
    size_t k = 0;
    for (size_t i = 0; i < n && i < 40; i++) {
        if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\\') buf[k++] = (char)s[i];
        else k += (size_t)snprintf(buf + k, 5, "\\x%02x", s[i]);
    }
    if (n > 40) { memcpy(buf + k, "...", 3); k += 3; }
    buf[k] = 0;
    return buf;
}

static uint64_t mix64(uint64_t h) {
    h ^= h >> 33; h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33; h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static uint64_t hash_bytes(const void *data, size_t n) {
    const unsigned char *p = data;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ ((uint64_t)n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        p += 8; n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, p, n);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
    }
    return mix64(h);
}

static uint64_t pow2_at_least(uint64_t n) {
    uint64_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

// Reads a whole regular file (at most max bytes) into a NUL-terminated buffer.
int tok_read_file(const char *path, int64_t max, char **data, size_t *len, char *err,
                     size_t errlen) {
    *data = NULL; *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return util_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return util_err(err, errlen, "%s: not a regular file", path);
    }
    if ((int64_t)st.st_size > max) {
        fclose(f);
        return util_err(err, errlen, "%s: file too large (%lld bytes, limit %lld)", path,
                    (long long)st.st_size, (long long)max);
    }
    size_t n = (size_t)st.st_size;
    char *buf = MALLOC_CHECK(n + 1);
    size_t got = n ? fread(buf, 1, n, f) : 0;
    int bad = ferror(f);
    fclose(f);
    if (bad || got != n) {
        free(buf);
        return util_err(err, errlen, "%s: read error (got %zu of %zu bytes)", path, got, n);
    }
    buf[n] = 0;
    *data = buf; *len = n;
    return 0;
}

// GPT-2's bytes_to_unicode(): printable Latin-1 bytes stand for themselves, the other 68 bytes
// for U+0100.. in byte order. order[i] is the byte whose base id is i (GPT-2's encoder.json order).
static void byte_alphabet(uint16_t byte_cp[256], int16_t cp_byte[N_CP], uint8_t order[256]) {
    int k = 0, extra = 0;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
        if (keep) { byte_cp[b] = (uint16_t)b; order[k++] = (uint8_t)b; }
    }
    for (int b = 0; b < 256; b++) {
        int keep = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
        if (!keep) { byte_cp[b] = (uint16_t)(256 + extra++); order[k++] = (uint8_t)b; }
    }
    for (int c = 0; c < N_CP; c++) cp_byte[c] = -1;
    for (int b = 0; b < 256; b++) cp_byte[byte_cp[b]] = (int16_t)b;
}

// ---------------------------------------------------------------------------------------------
// Growable byte buffer (also TokBytes) and id buffer

void tok_bytes_reserve(TokBytes *b, size_t extra) {
    if (b->n + extra + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + extra + 1) cap *= 2;
        b->data = REALLOC_CHECK(b->data, cap);
        b->cap = cap;
    }
}
void tok_bytes_put(TokBytes *b, const void *p, size_t n) {
    tok_bytes_reserve(b, n);
    if (n) memcpy(b->data + b->n, p, n);
    b->n += n;
    b->data[b->n] = 0;
}
void tok_bytes_puts(TokBytes *b, const char *s) { tok_bytes_put(b, s, strlen(s)); }

void tok_ids_push(TokIds *v, int32_t id) {
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 256;
        v->ids = REALLOC_CHECK(v->ids, v->cap * sizeof(int32_t));
    }
    v->ids[v->n++] = id;
}

void tok_ids_free(TokIds *v) {
    if (!v) return;
    free(v->ids);
    v->ids = NULL; v->n = v->cap = 0;
}
void tok_bytes_free(TokBytes *b) {
    if (!b) return;
    free(b->data);
    b->data = NULL; b->n = b->cap = 0;
}

// ---------------------------------------------------------------------------------------------
// The pre-tokenizer (PCRE2)


static int regex_compile(TokRegex *rx, char *err, size_t errlen) {
    int code;
    PCRE2_SIZE off;
    rx->jit = 0;
    rx->re = pcre2_compile((PCRE2_SPTR)TOK_GPT2_PATTERN, PCRE2_ZERO_TERMINATED,
                           PCRE2_UTF | PCRE2_UCP, &code, &off, NULL);
    if (!rx->re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof(msg));
        return util_err(err, errlen, "pcre2: cannot compile GPT-2's pattern at %zu: %s",
                    (size_t)off, (const char *)msg);
    }
    rx->jit = pcre2_jit_compile(rx->re, PCRE2_JIT_COMPLETE) == 0;
    return 0;
}

void tok_regex_free(TokRegex *rx) {
    pcre2_code_free(rx->re);
    rx->re = NULL;
}

typedef int (*PieceFn)(void *ctx, const unsigned char *p, size_t n);

// Calls fn on each piece of s[0..n) in order: the pattern's matches within each valid UTF-8
// run, and each invalid byte on its own. The pieces tile s exactly.
static int pretokenize(const TokRegex *rx, pcre2_match_data *md, const unsigned char *s, size_t n,
                       PieceFn fn, void *ctx, char *err, size_t errlen) {
    size_t pos = 0;
    while (pos < n) {
        size_t run = utf8_valid_len(s + pos, n - pos);
        const unsigned char *r = s + pos;
        size_t off = 0;
        while (off < run) {
            int rc = -1;
            if (rx->jit) rc = pcre2_jit_match(rx->re, r, run, off, 0, md, NULL);
            if (!rx->jit || rc == PCRE2_ERROR_JIT_STACKLIMIT)
                rc = pcre2_match(rx->re, r, run, off, PCRE2_NO_UTF_CHECK, md, NULL);
            size_t a, b;
            if (rc == PCRE2_ERROR_NOMATCH) {   // cannot happen: every character matches one branch
                a = off; b = run;
            } else if (rc < 0) {
                PCRE2_UCHAR msg[160];
                pcre2_get_error_message(rc, msg, sizeof(msg));
                return util_err(err, errlen, "pcre2: match failed at byte %zu: %s",
                            (size_t)(r - s) + off, (const char *)msg);
            } else {
                PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
                a = ov[0]; b = ov[1];
                if (a != off) b = a, a = off;   // cannot happen either: keep the tiling exact
                if (b <= a) b = a + (size_t)utf8_decode(r + a, run - a, NULL);
            }
            int st = fn(ctx, r + a, b - a);
            if (st) return st;
            off = b;
        }
        pos += run;
        if (pos < n) {   // one invalid byte: a piece of its own
            int st = fn(ctx, s + pos, 1);
            if (st) return st;
            pos++;
        }
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// The tokenizer




int32_t tok_vmap_get(const Tokenizer *t, const void *p, size_t n) {
    uint64_t i = hash_bytes(p, n) & t->vmask;
    for (;; i = (i + 1) & t->vmask) {
        int32_t id = t->vmap[i];
        if (id < 0) return -1;
        if (tok_len(t, id) == n && memcmp(t->bytes + t->off[id], p, n) == 0) return id;
    }
}

// Builds the bytes -> id map; on a duplicate returns the id that repeats (sets *first), else -1.
int32_t tok_vmap_build(Tokenizer *t, int32_t *first) {
    free(t->vmap);
    t->vmask = pow2_at_least((uint64_t)t->n_vocab * 2) - 1;
    t->vmap = MALLOC_CHECK((t->vmask + 1) * sizeof(int32_t));
    memset(t->vmap, 0xff, (t->vmask + 1) * sizeof(int32_t));
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const char *p = t->bytes + t->off[id];
        size_t n = tok_len(t, id);
        uint64_t i = hash_bytes(p, n) & t->vmask;
        for (;; i = (i + 1) & t->vmask) {
            int32_t o = t->vmap[i];
            if (o < 0) { t->vmap[i] = id; break; }
            if (tok_len(t, o) == n && memcmp(t->bytes + t->off[o], p, n) == 0) {
                *first = o;
                return id;
            }
        }
    }
    return -1;
}

static int32_t pair_rank(const Tokenizer *t, int32_t a, int32_t b) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint64_t i = mix64(key) & t->pmask;
    for (;; i = (i + 1) & t->pmask) {
        if (t->pairs[i].key == key) return (int32_t)t->pairs[i].rank;
        if (t->pairs[i].key == UINT64_MAX) return -1;
    }
}

// Inserts merge `rank`; returns the earlier rank of the same pair when it is a duplicate, else -1.
int32_t tok_pairs_insert(Tokenizer *t, int32_t rank) {
    uint64_t key = (uint64_t)(uint32_t)t->m_a[rank] << 32 | (uint32_t)t->m_b[rank];
    uint64_t i = mix64(key) & t->pmask;
    for (;; i = (i + 1) & t->pmask) {
        if (t->pairs[i].key == key) return (int32_t)t->pairs[i].rank;
        if (t->pairs[i].key == UINT64_MAX) {
            t->pairs[i].key = key;
            t->pairs[i].rank = rank;
            return -1;
        }
    }
}

void tok_pairs_alloc(Tokenizer *t, int64_t n_merges) {
    t->pmask = pow2_at_least((uint64_t)n_merges * 2) - 1;
    t->pairs = MALLOC_CHECK((t->pmask + 1) * sizeof(PairSlot));
    for (uint64_t i = 0; i <= t->pmask; i++) t->pairs[i] = (PairSlot){UINT64_MAX, -1};
}

Tokenizer *tok_new(void) {
    Tokenizer *t = CALLOC_CHECK(1, sizeof(Tokenizer));
    byte_alphabet(t->byte_cp, t->cp_byte, t->base_order);
    t->eot = -1;
    return t;
}

void tok_free(Tokenizer *t) {
    if (!t) return;
    free(t->bytes); free(t->off); free(t->flags); free(t->vmap);
    free(t->m_a); free(t->m_b); free(t->m_res); free(t->pairs);
    free(t->special);
    if (t->rx.re) tok_regex_free(&t->rx);
    tokjson_free(t->js);
    free(t);
}

int64_t tok_vocab_size(const Tokenizer *t) { return t->n_vocab; }
int64_t tok_n_merges(const Tokenizer *t) { return t->n_merges; }
int32_t tok_eot(const Tokenizer *t) { return t->eot; }
int32_t tok_bos(const Tokenizer *t) { return t->js ? tokjson_bos(t) : -1; }
int32_t tok_eos(const Tokenizer *t) { return t->js ? tokjson_eos(t) : t->eot; }
int tok_is_json(const Tokenizer *t) { return t->js != NULL; }
int tok_is_special(const Tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && (t->flags[id] & FLAG_SPECIAL);
}
const char *tok_token(const Tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab) { if (len) *len = 0; return NULL; }
    if (t->js) return tokjson_token(t, id, len);
    if (len) *len = tok_len(t, id);
    return t->bytes + t->off[id];
}
int32_t tok_find(const Tokenizer *t, const void *text, size_t len) {
    return tok_vmap_get(t, text, len);
}

// ---------------------------------------------------------------------------------------------
// The merge loop



void tok_scratch_reserve(Scratch *s, size_t n) {
    if (n <= s->cap) return;
    size_t cap = s->cap ? s->cap : 64;
    while (cap < n) cap *= 2;
    s->sym = REALLOC_CHECK(s->sym, cap * sizeof(int32_t));
    s->next = REALLOC_CHECK(s->next, cap * sizeof(int64_t));
    s->prev = REALLOC_CHECK(s->prev, cap * sizeof(int64_t));
    s->heap = REALLOC_CHECK(s->heap, 3 * cap * sizeof(HeapEnt));
    s->defer = REALLOC_CHECK(s->defer, 2 * cap * sizeof(int64_t));
    s->cap = cap;
}

void tok_scratch_free(Scratch *s) {
    free(s->sym); free(s->next); free(s->prev); free(s->heap); free(s->defer);
    memset(s, 0, sizeof(*s));
}

static inline int heap_less(HeapEnt x, HeapEnt y) {
    return x.rank < y.rank || (x.rank == y.rank && x.pos < y.pos);
}

static void heap_push(HeapEnt *h, size_t *n, HeapEnt e) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(e, h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

static HeapEnt heap_pop(HeapEnt *h, size_t *n) {
    HeapEnt top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(h[c + 1], h[c])) c++;
        if (!heap_less(h[c], last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

// BPE over the n >= 1 symbols s->sym[0..n) (scratch reserved for n); appends the resulting ids to
// out. GPT-2's encoder.py semantics (rounds) unless immediate is set: then each new pair joins the
// heap at once and the lowest (rank, position) is always merged next, as HF tokenizers' BPE does.
// Both agree whenever ranks grow with token length, as in every real merges list.
void tok_bpe_merge(const Tokenizer *t, size_t n, Scratch *s, int immediate, TokIds *out) {
    int32_t *sym = s->sym;
    int64_t *next = s->next, *prev = s->prev;
    HeapEnt *heap = s->heap;
    size_t nh = 0;
    for (size_t i = 0; i < n; i++) {
        next[i] = i + 1 < n ? (int64_t)i + 1 : -1;
        prev[i] = (int64_t)i - 1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        int32_t r = pair_rank(t, sym[i], sym[i + 1]);
        if (r >= 0) heap_push(heap, &nh, (HeapEnt){r, (int64_t)i});
    }
    while (nh > 0) {
        int32_t r = heap[0].rank;
        size_t nd = 0;
        while (nh > 0 && heap[0].rank == r) {   // one round: every occurrence of pair r
            int64_t i = heap_pop(heap, &nh).pos;
            if (sym[i] != t->m_a[r]) continue;          // stale: symbol i changed or merged away
            int64_t j = next[i];
            if (j < 0 || sym[j] != t->m_b[r]) continue;   // stale: its right neighbour changed
            sym[i] = t->m_res[r];
            sym[j] = -1;
            next[i] = next[j];
            if (next[j] >= 0) prev[next[j]] = i;
            if (prev[i] >= 0) s->defer[nd++] = prev[i];
            s->defer[nd++] = i;
            if (immediate) break;
        }
        for (size_t k = 0; k < nd; k++) {   // pairs created in this round join the heap now
            int64_t i = s->defer[k];
            if (sym[i] < 0 || next[i] < 0) continue;
            int32_t r2 = pair_rank(t, sym[i], sym[next[i]]);
            if (r2 >= 0) heap_push(heap, &nh, (HeapEnt){r2, i});
        }
    }
    for (int64_t i = 0; i >= 0; i = next[i]) tok_ids_push(out, sym[i]);
}

// GPT-2's BPE of one piece p[0..n), n >= 1: the symbols are the bytes' tokens.
static void bpe_piece(const Tokenizer *t, const unsigned char *p, size_t n, Scratch *s,
                      TokIds *out) {
    if (n == 1) { tok_ids_push(out, t->byte_tok[p[0]]); return; }
    tok_scratch_reserve(s, n);
    for (size_t i = 0; i < n; i++) s->sym[i] = t->byte_tok[p[i]];
    tok_bpe_merge(t, n, s, 0, out);
}

typedef struct {
    const Tokenizer *t;
    Scratch *s;
    TokIds *out;
} EncodeCtx;

static int encode_piece(void *ctx, const unsigned char *p, size_t n) {
    EncodeCtx *e = ctx;
    const Tokenizer *t = e->t;
    if (n == 1) { tok_ids_push(e->out, t->byte_tok[p[0]]); return 0; }
    int32_t id = tok_vmap_get(t, p, n);
    if (id >= 0 && (t->flags[id] & FLAG_WHOLE)) tok_ids_push(e->out, id);
    else bpe_piece(t, p, n, e->s, e->out);
    return 0;
}

// Marks the tokens whose own BPE is themselves (FLAG_WHOLE).
void tok_mark_whole(Tokenizer *t) {
    Scratch s = {0};
    TokIds tmp = {0};
    for (int32_t id = 0; id < t->n_vocab; id++) {
        t->flags[id] &= (uint8_t)~FLAG_WHOLE;
        size_t n = tok_len(t, id);
        if (n == 0) continue;
        tmp.n = 0;
        if (t->flags[id] & FLAG_NOTMODEL) continue;
        if (t->js) tokjson_model(t, (const unsigned char *)t->bytes + t->off[id], n, &s, &tmp);
        else bpe_piece(t, (const unsigned char *)t->bytes + t->off[id], n, &s, &tmp);
        if (tmp.n == 1 && tmp.ids[0] == id) t->flags[id] |= FLAG_WHOLE;
    }
    tok_scratch_free(&s);
    tok_ids_free(&tmp);
}

void tok_special_add_id(Tokenizer *t, int32_t id) {
    if (t->flags[id] & FLAG_SPECIAL) return;
    t->flags[id] |= FLAG_SPECIAL;
    t->special = REALLOC_CHECK(t->special, (size_t)(t->n_special + 1) * sizeof(int32_t));
    t->special[t->n_special++] = id;
}

// Final steps shared by load and train once tokens and merges are in place (vmap and the pair
// map included): byte tokens, special tokens, regex, the whole-token flags.
static int tok_finish(Tokenizer *t, const char *what, char *err, size_t errlen) {
    for (int b = 0; b < 256; b++) {
        unsigned char c = (unsigned char)b;
        t->byte_tok[b] = tok_vmap_get(t, &c, 1);
        if (t->byte_tok[b] < 0)
            return util_err(err, errlen, "%s: byte 0x%02x has no token (a byte-level vocabulary "
                        "needs all 256)", what, b);
    }
    for (int32_t id = 0; id < t->n_vocab; id++) {
        size_t n = tok_len(t, id);
        const char *p = t->bytes + t->off[id];
        if (n < 5 || memcmp(p, "<|", 2) != 0 || memcmp(p + n - 2, "|>", 2) != 0) continue;
        size_t i = 2;   // "<|" name "|>", the name made of [A-Za-z0-9_]
        while (i < n - 2 && (p[i] == '_' || (p[i] >= '0' && p[i] <= '9') ||
                             (p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z')))
            i++;
        if (i == n - 2) tok_special_add_id(t, id);
    }
    t->eot = tok_vmap_get(t, EOT_TEXT, sizeof(EOT_TEXT) - 1);
    int st = regex_compile(&t->rx, err, errlen);
    if (st) return st;
    tok_mark_whole(t);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Loading

// Converts a byte-level string (UTF-8 of GPT-2's alphabet) to the bytes it stands for, appended
// to b. Returns 0, or -1 with *bad_cp set (-1 for malformed UTF-8).
int tok_unbyte(const Tokenizer *t, const unsigned char *s, size_t n, TokBytes *b, long *bad_cp) {
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        int k = utf8_decode(s + i, n - i, &cp);
        if (!k) { *bad_cp = -1; return -1; }
        if (cp >= N_CP || t->cp_byte[cp] < 0) { *bad_cp = cp; return -1; }
        unsigned char c = (unsigned char)t->cp_byte[cp];
        tok_bytes_put(b, &c, 1);
        i += (size_t)k;
    }
    return 0;
}

// Line and column (1-based) of byte offset `at` in text.
static void line_col(const char *text, size_t at, long long *line, long long *col) {
    *line = 1; *col = 1;
    for (size_t i = 0; i < at; i++) {
        if (text[i] == '\n') { (*line)++; *col = 1; }
        else (*col)++;
    }
}

// vocab.json's text as a cJSON tree in *root: refuses an escaped NUL, invalid JSON and text after
// the object (each with line and column). Frees text.
int tok_json_parse(const char *path, char *text, size_t len, cJSON **root, char *err,
                       size_t errlen) {
    // cJSON turns "\u0000" into a NUL inside a C string, which would silently cut the key: refuse
    // it here (no byte-level token contains U+0000 anyway).
    for (const char *q = text; (q = memmem(q, len - (size_t)(q - text), "u0000", 5)); q += 5) {
        size_t at = (size_t)(q - text), bs = 0;
        while (bs < at && text[at - bs - 1] == '\\') bs++;
        if (bs % 2 == 1) {
            long long line, col;
            line_col(text, (size_t)(q - text), &line, &col);
            free(text);
            return util_err(err, errlen, "%s: line %lld, column %lld: \\u0000 is not a byte-level "
                            "token character", path, line, col);
        }
    }
    const char *end = NULL;
    *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!*root) {
        size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : len;
        long long line, col;
        line_col(text, at, &line, &col);
        free(text);
        return util_err(err, errlen, "%s: invalid JSON at line %lld, column %lld%s", path, line,
                        col, at >= len ? " (truncated file?)" : "");
    }
    // Trailing garbage after the object is an error too.
    for (const char *q = end; q && q < text + len; q++)
        if (!(*q == ' ' || *q == '\n' || *q == '\r' || *q == '\t')) {
            long long line, col;
            line_col(text, (size_t)(q - text), &line, &col);
            cJSON_Delete(*root);
            *root = NULL;
            free(text);
            return util_err(err, errlen, "%s: unexpected text after the JSON object at line %lld, "
                            "column %lld", path, line, col);
        }
    free(text);
    return 0;
}

// The n tokens of vocab.json's object: each token's bytes into `all` in file order (start[k] the
// offset of the k-th), order[id] = its file position. Checks ids (0..n-1, each once) and that
// each token is a non-empty string of GPT-2's byte-level alphabet.
static int vocab_read_tokens(const Tokenizer *t, const char *path, const cJSON *root, int64_t n,
                             TokBytes *all, int64_t *start, int32_t *order, char *err,
                             size_t errlen) {
    for (int64_t i = 0; i < n; i++) order[i] = -1;
    int64_t k = 0;
    char sb[200];
    int st = 0;
    for (const cJSON *c = root->child; c; c = c->next, k++) {
        const char *key = c->string ? c->string : "";
        if (!cJSON_IsNumber(c)) {
            st = util_err(err, errlen, "%s: token \"%s\": value is not a number", path,
                          tok_show(sb, key, strlen(key)));
            break;
        }
        double v = c->valuedouble;
        if (!(v >= 0 && v < (double)n && v == (double)(int64_t)v)) {
            st = util_err(err, errlen,
                          "%s: token \"%s\": id %.17g is not an integer in 0..%lld "
                          "(ids must be 0..V-1 without gaps)",
                          path, tok_show(sb, key, strlen(key)), v, (long long)n - 1);
            break;
        }
        int64_t id = (int64_t)v;
        if (order[id] >= 0) {
            st = util_err(err, errlen, "%s: id %lld is used twice (token \"%s\")", path,
                          (long long)id, tok_show(sb, key, strlen(key)));
            break;
        }
        // a token must stand for at least one byte (cJSON also ends a key at an escaped NUL)
        if (!key[0]) {
            st = util_err(err, errlen, "%s: token id %lld is the empty string", path,
                          (long long)id);
            break;
        }
        order[id] = (int32_t)k;
        start[k] = (int64_t)all->n;
        long bad;
        if (tok_unbyte(t, (const unsigned char *)key, strlen(key), all, &bad)) {
            if (bad < 0)
                st = util_err(err, errlen, "%s: token id %lld is not valid UTF-8", path,
                              (long long)id);
            else
                st = util_err(err, errlen, "%s: token \"%s\" (id %lld): U+%04lX is not in GPT-2's "
                              "byte-level alphabet", path, tok_show(sb, key, strlen(key)),
                              (long long)id, bad);
            break;
        }
    }
    start[n] = (int64_t)all->n;
    return st;
}

// The token table in id order from vocab_read_tokens' result; refuses two ids with one spelling.
static int vocab_place(Tokenizer *t, const char *path, int64_t n, const TokBytes *all,
                       const int64_t *start, const int32_t *order, char *err, size_t errlen) {
    t->n_vocab = n;
    t->off = MALLOC_CHECK((size_t)(n + 1) * sizeof(int64_t));
    t->bytes = MALLOC_CHECK(all->n + 1);
    t->flags = CALLOC_CHECK((size_t)n, 1);
    int64_t o = 0;
    for (int64_t id = 0; id < n; id++) {
        int64_t f = order[id];
        t->off[id] = o;
        if (start[f + 1] > start[f])
            memcpy(t->bytes + o, all->data + start[f], (size_t)(start[f + 1] - start[f]));
        o += start[f + 1] - start[f];
    }
    t->off[n] = o;
    int32_t first, dup = tok_vmap_build(t, &first);
    if (dup < 0) return 0;
    char sb[200];
    return util_err(err, errlen, "%s: duplicate token: ids %d and %d are both \"%s\"", path, first,
                    dup, tok_show(sb, t->bytes + t->off[dup], tok_len(t, dup)));
}

static int load_vocab(Tokenizer *t, const char *path, char *err, size_t errlen) {
    char *text;
    size_t len;
    cJSON *root;
    if (tok_read_file(path, TOK_MAX_VOCAB_FILE, &text, &len, err, errlen)) return -1;
    if (tok_json_parse(path, text, len, &root, err, errlen)) return -1;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return util_err(err, errlen, "%s: expected a JSON object {\"token\": id, ...}", path);
    }
    int64_t n = 0;
    for (cJSON *c = root->child; c; c = c->next) n++;
    if (n == 0 || n > TOK_MAX_VOCAB) {
        cJSON_Delete(root);
        return util_err(err, errlen, "%s: %lld tokens (need 1 .. %lld)", path, (long long)n,
                        (long long)TOK_MAX_VOCAB);
    }
    TokBytes all = {0};
    int64_t *start = MALLOC_CHECK((size_t)(n + 1) * sizeof(int64_t));
    int32_t *order = MALLOC_CHECK((size_t)n * sizeof(int32_t));
    int st = vocab_read_tokens(t, path, root, n, &all, start, order, err, errlen);
    cJSON_Delete(root);
    if (st == 0) st = vocab_place(t, path, n, &all, start, order, err, errlen);
    tok_bytes_free(&all);
    free(start);
    free(order);
    return st;
}

static int load_merges(Tokenizer *t, const char *path, char *err, size_t errlen) {
    char *text;
    size_t len;
    int st = tok_read_file(path, TOK_MAX_VOCAB_FILE, &text, &len, err, errlen);
    if (st) return st;
    int64_t cap = 0;   // number of lines: an upper bound on the merges
    for (size_t i = 0; i < len; i++) cap += text[i] == '\n';
    cap++;
    t->m_a = MALLOC_CHECK((size_t)cap * sizeof(int32_t));
    t->m_b = MALLOC_CHECK((size_t)cap * sizeof(int32_t));
    t->m_res = MALLOC_CHECK((size_t)cap * sizeof(int32_t));
    tok_pairs_alloc(t, cap);
    TokBytes a = {0}, b = {0};
    char sb[200], sb2[200];
    long long line = 0, blank_line = 0;
    size_t pos = 0;
    while (pos < len && st == 0) {
        line++;
        const char *s = text + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        pos += n + (nl ? 1 : 0);
        if (n && s[n - 1] == '\r') n--;
        if (line == 1 && n >= 8 && memcmp(s, "#version", 8) == 0) continue;
        if (n == 0) { if (!blank_line) blank_line = line; continue; }
        if (blank_line) {
            st = util_err(err, errlen, "%s: line %lld: empty line inside the merges", path,
                          blank_line);
            break;
        }
        const char *sp = memchr(s, ' ', n);
        if (!sp || sp == s || sp == s + n - 1 || memchr(sp + 1, ' ', (size_t)(s + n - sp - 1))) {
            st = util_err(err, errlen, "%s: line %lld: expected two tokens separated by one space, "
                      "got \"%s\"", path, line, tok_show(sb, s, n));
            break;
        }
        size_t na = (size_t)(sp - s), nb = n - na - 1;
        long bad;
        a.n = b.n = 0;
        if (tok_unbyte(t, (const unsigned char *)s, na, &a, &bad) ||
            tok_unbyte(t, (const unsigned char *)sp + 1, nb, &b, &bad)) {
            st = util_err(err, errlen, "%s: line %lld: \"%s\" is not a byte-level token pair", path,
                      line, tok_show(sb, s, n));
            break;
        }
        int32_t ia = tok_vmap_get(t, a.data, a.n), ib = tok_vmap_get(t, b.data, b.n);
        if (ia < 0 || ib < 0) {
            st = util_err(err, errlen, "%s: line %lld: token \"%s\" is not in the vocabulary", path,
                      line, ia < 0 ? tok_show(sb, s, na) : tok_show(sb, sp + 1, nb));
            break;
        }
        tok_bytes_put(&a, b.data, b.n);
        int32_t ir = tok_vmap_get(t, a.data, a.n);
        if (ir < 0) {
            st = util_err(err, errlen,
                          "%s: line %lld: the merge result \"%s\" is not in the vocabulary", path,
                          line, tok_show(sb2, a.data, a.n));
            break;
        }
        int64_t r = t->n_merges;
        t->m_a[r] = ia; t->m_b[r] = ib; t->m_res[r] = ir;
        int32_t prev = tok_pairs_insert(t, (int32_t)r);
        if (prev >= 0) {
            st = util_err(err, errlen, "%s: line %lld: merge \"%s\" repeats merge %d", path, line,
                      tok_show(sb, s, n), prev + 1);
            break;
        }
        t->n_merges++;
    }
    tok_bytes_free(&a);
    tok_bytes_free(&b);
    free(text);
    return st;
}

int tok_load_files(Tokenizer **out, const char *vocab_path, const char *merges_path, char *err,
                   size_t errlen) {
    *out = NULL;
    Tokenizer *t = tok_new();
    int st = load_vocab(t, vocab_path, err, errlen);
    if (!st) st = load_merges(t, merges_path, err, errlen);
    if (!st) st = tok_finish(t, vocab_path, err, errlen);
    if (st) { tok_free(t); return st; }
    *out = t;
    return 0;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int tok_load(Tokenizer **out, const char *dir, char *err, size_t errlen) {
    *out = NULL;
    size_t n = strlen(dir);
    char *v = MALLOC_CHECK(n + 32), *m = MALLOC_CHECK(n + 32);
    snprintf(v, n + 32, "%s/tokenizer.json", dir);
    snprintf(m, n + 32, "%s/tokenizer_config.json", dir);
    if (file_exists(v)) {
        int st = tok_load_json(out, v, file_exists(m) ? m : NULL, err, errlen);
        free(v); free(m);
        return st;
    }
    snprintf(v, n + 32, "%s/vocab.json", dir);
    snprintf(m, n + 32, "%s/merges.txt", dir);
    if (!file_exists(v) && !file_exists(m)) {
        snprintf(v, n + 32, "%s/encoder.json", dir);
        snprintf(m, n + 32, "%s/vocab.bpe", dir);
        if (!file_exists(v) && !file_exists(m)) {
            free(v); free(m);
            return util_err(err, errlen,
                            "%s: no vocab.json + merges.txt (or encoder.json + vocab.bpe)", dir);
        }
    }
    int st = tok_load_files(out, v, m, err, errlen);
    free(v); free(m);
    return st;
}

// ---------------------------------------------------------------------------------------------
// Saving

// Writes data to path atomically: a temporary file next to it, fsync, rename.
static int write_atomic(const char *path, const char *data, size_t n, char *err, size_t errlen) {
    size_t pl = strlen(path);
    char *tmp = MALLOC_CHECK(pl + 16);
    snprintf(tmp, pl + 16, "%s.tmpXXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return util_err(err, errlen, "%s: cannot create a temporary file: %s", path, strerror(e));
    }
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, data + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        done += (size_t)w;
    }
    int e = errno;
    int ok = done == n && fsync(fd) == 0;
    if (!ok) e = errno;
    if (close(fd) != 0 && ok) { ok = 0; e = errno; }
    if (ok && rename(tmp, path) != 0) { ok = 0; e = errno; }
    if (!ok) {
        unlink(tmp);
        free(tmp);
        return util_err(err, errlen, "%s: write failed: %s", path, strerror(e));
    }
    free(tmp);
    return 0;
}

// Appends token `id` as the byte-level string GPT-2 writes (JSON-escaped when json is set:
// \" \\ and \uXXXX for non-ASCII, as Python's json.dumps does).
static void put_token(const Tokenizer *t, int32_t id, int json, TokBytes *b) {
    const unsigned char *p = (const unsigned char *)t->bytes + t->off[id];
    size_t n = tok_len(t, id);
    for (size_t i = 0; i < n; i++) {
        unsigned cp = t->byte_cp[p[i]];
        char u[8];
        if (cp < 0x80) {
            if (json && (cp == '"' || cp == '\\')) tok_bytes_put(b, "\\", 1);
            u[0] = (char)cp;
            tok_bytes_put(b, u, 1);
        } else if (json) {
            snprintf(u, sizeof(u), "\\u%04x", cp);
            tok_bytes_put(b, u, 6);
        } else {
            u[0] = (char)(0xc0 | (cp >> 6));
            u[1] = (char)(0x80 | (cp & 0x3f));
            tok_bytes_put(b, u, 2);
        }
    }
}

int tok_save(const Tokenizer *t, const char *dir, char *err, size_t errlen) {
    if (t->js)
        return util_err(err, errlen, "%s: a tokenizer.json tokenizer is not saved as vocab.json + "
                        "merges.txt (copy its tokenizer.json instead)", dir);
    TokBytes b = {0};
    size_t n = strlen(dir);
    char *path = MALLOC_CHECK(n + 32);
    tok_bytes_puts(&b, "{");
    for (int32_t id = 0; id < t->n_vocab; id++) {
        char num[32];
        tok_bytes_puts(&b, id ? ", \"" : "\"");
        put_token(t, id, 1, &b);
        snprintf(num, sizeof(num), "\": %d", id);
        tok_bytes_puts(&b, num);
    }
    tok_bytes_puts(&b, "}");
    snprintf(path, n + 32, "%s/vocab.json", dir);
    int st = write_atomic(path, b.data, b.n, err, errlen);
    if (!st) {
        b.n = 0;
        tok_bytes_puts(&b, "#version: 0.2\n");
        for (int64_t r = 0; r < t->n_merges; r++) {
            put_token(t, t->m_a[r], 0, &b);
            tok_bytes_puts(&b, " ");
            put_token(t, t->m_b[r], 0, &b);
            tok_bytes_puts(&b, "\n");
        }
        snprintf(path, n + 32, "%s/merges.txt", dir);
        st = write_atomic(path, b.data, b.n, err, errlen);
    }
    tok_bytes_free(&b);
    free(path);
    return st;
}

// ---------------------------------------------------------------------------------------------
// Special tokens, encode, decode

int tok_add_special(Tokenizer *t, const void *text, size_t len, int32_t *id, char *err,
                    size_t errlen) {
    if (len == 0) return util_err(err, errlen, "tok_add_special: empty token");
    if (t->js)
        return util_err(err, errlen, "tok_add_special: a tokenizer.json has its added tokens");
    int32_t found = tok_vmap_get(t, text, len);
    if (found < 0) {
        if (t->n_vocab >= TOK_MAX_VOCAB)
            return util_err(err, errlen, "tok_add_special: vocabulary is full");
        int64_t v = t->n_vocab;
        t->bytes = REALLOC_CHECK(t->bytes, (size_t)t->off[v] + len + 1);
        memcpy(t->bytes + t->off[v], text, len);
        t->off = REALLOC_CHECK(t->off, (size_t)(v + 2) * sizeof(int64_t));
        t->off[v + 1] = t->off[v] + (int64_t)len;
        t->flags = REALLOC_CHECK(t->flags, (size_t)(v + 1));
        t->flags[v] = 0;
        t->n_vocab = v + 1;
        int32_t first;
        tok_vmap_build(t, &first);   // cannot find a duplicate: text was not a token
        found = (int32_t)v;
    }
    tok_special_add_id(t, found);
    if (len == sizeof(EOT_TEXT) - 1 && memcmp(text, EOT_TEXT, len) == 0) t->eot = found;
    if (id) *id = found;
    return 0;
}

int tok_encode(const Tokenizer *t, const void *text, size_t len, unsigned flags, TokIds *out,
               char *err, size_t errlen) {
    const unsigned char *s = text;
    size_t n_before = out->n;
    if (t->js) {
        int st = tokjson_encode(t, s, len, flags, out, err, errlen);
        if (st) out->n = n_before;
        return st;
    }
    Scratch scratch = {0};
    EncodeCtx ctx = {t, &scratch, out};
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(t->rx.re, NULL);
    if (!md) { fprintf(stderr, "%s:%d: out of memory\n", __FILE__, __LINE__); abort(); }
    int st = 0;
    if (!(flags & TOK_ALLOW_SPECIAL) || t->n_special == 0) {
        st = pretokenize(&t->rx, md, s, len, encode_piece, &ctx, err, errlen);
    } else {
        // next[k]: position of the next occurrence of special token k at or after pos (len: none)
        size_t *next = MALLOC_CHECK((size_t)t->n_special * sizeof(size_t));
        for (int64_t k = 0; k < t->n_special; k++) next[k] = 0;
        size_t pos = 0;
        int first = 1;
        while (pos <= len && st == 0) {
            size_t best = len, best_len = 0;
            int32_t best_id = -1;
            for (int64_t k = 0; k < t->n_special; k++) {
                int32_t id = t->special[k];
                size_t n = tok_len(t, id);
                if (first || (next[k] < pos && next[k] != len)) {
                    const char *f = n <= len - pos
                                        ? memmem(s + pos, len - pos, t->bytes + t->off[id], n)
                                        : NULL;
                    next[k] = f ? (size_t)((const unsigned char *)f - s) : len;
                }
                if (next[k] < len && (next[k] < best || (next[k] == best && n > best_len))) {
                    best = next[k]; best_len = n; best_id = id;
                }
            }
            first = 0;
            st = pretokenize(&t->rx, md, s + pos, best - pos, encode_piece, &ctx, err, errlen);
            if (best_id < 0) break;
            tok_ids_push(out, best_id);
            pos = best + best_len;
        }
        free(next);
    }
    pcre2_match_data_free(md);
    tok_scratch_free(&scratch);
    if (st) out->n = n_before;   // nothing appended on error
    return st;
}

int tok_decode(const Tokenizer *t, const int32_t *ids, size_t n, TokBytes *out, char *err,
               size_t errlen) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return util_err(err, errlen, "tok_decode: id %d at position %zu is outside 0..%lld",
                            ids[i], i, (long long)t->n_vocab - 1);
        total += tok_len(t, ids[i]);
    }
    if (t->js) return tokjson_decode(t, ids, n, out);
    tok_bytes_reserve(out, total);
    for (size_t i = 0; i < n; i++) {
        size_t k = tok_len(t, ids[i]);
        memcpy(out->data + out->n, t->bytes + t->off[ids[i]], k);
        out->n += k;
    }
    if (out->data) out->data[out->n] = 0;
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Training
//
// Pieces are counted once (a word seen 1000 times is one entry with count 1000). Each distinct
// pair keeps its total count and the list of words it occurs in; a max-heap of (count, a, b)
// with lazy deletion finds the best pair: a popped entry whose count is out of date is pushed
// again with the current count. Merging a pair rewrites only the words that contain it.

typedef struct {
    char *bytes;          // piece bytes back to back
    int64_t *off;         // [n+1]
    int64_t *count;       // [n]
    int64_t *slot;        // [mask+1] piece index, -1 empty
    uint64_t mask;
    int64_t n, cap;
    size_t nbytes, bcap;
} PieceCounts;

static void pc_grow(PieceCounts *pc) {
    uint64_t cap = (pc->mask + 1) * 2;
    int64_t *slot = MALLOC_CHECK(cap * sizeof(int64_t));
    memset(slot, 0xff, cap * sizeof(int64_t));
    for (int64_t w = 0; w < pc->n; w++) {
        uint64_t i =
            hash_bytes(pc->bytes + pc->off[w], (size_t)(pc->off[w + 1] - pc->off[w])) & (cap - 1);
        while (slot[i] >= 0) i = (i + 1) & (cap - 1);
        slot[i] = w;
    }
    free(pc->slot);
    pc->slot = slot;
    pc->mask = cap - 1;
}

// Counts one more occurrence of p[0..n); returns its index (pieces are numbered as first seen).
static int64_t pc_count(PieceCounts *pc, const unsigned char *p, size_t n) {
    if ((uint64_t)(pc->n + 1) * 2 > pc->mask + 1) pc_grow(pc);
    uint64_t i = hash_bytes(p, n) & pc->mask;
    for (;; i = (i + 1) & pc->mask) {
        int64_t w = pc->slot[i];
        if (w < 0) break;
        if ((size_t)(pc->off[w + 1] - pc->off[w]) == n &&
            memcmp(pc->bytes + pc->off[w], p, n) == 0) {
            pc->count[w]++;
            return w;
        }
    }
    if (pc->n + 2 > pc->cap) {
        pc->cap = pc->cap ? pc->cap * 2 : 1024;
        pc->off = REALLOC_CHECK(pc->off, (size_t)(pc->cap + 1) * sizeof(int64_t));
        pc->count = REALLOC_CHECK(pc->count, (size_t)pc->cap * sizeof(int64_t));
    }
    if (pc->nbytes + n > pc->bcap) {
        pc->bcap = pc->bcap ? pc->bcap * 2 : 65536;
        while (pc->bcap < pc->nbytes + n) pc->bcap *= 2;
        pc->bytes = REALLOC_CHECK(pc->bytes, pc->bcap);
    }
    memcpy(pc->bytes + pc->nbytes, p, n);
    if (pc->n == 0) pc->off[0] = 0;
    pc->nbytes += n;
    pc->off[pc->n + 1] = (int64_t)pc->nbytes;
    pc->count[pc->n] = 1;
    pc->slot[i] = pc->n;
    return pc->n++;
}

static int pc_add(void *ctx, const unsigned char *p, size_t n) {   // a PieceFn
    pc_count(ctx, p, n);
    return 0;
}

typedef struct {
    int32_t a, b;
    int64_t count;        // occurrences over all words, weighted by word counts
    int64_t *where;       // words that contain (or contained) the pair
    int64_t n_where, cap_where;
    int64_t last_word;    // the word added last to `where` (avoids repeats)
} PairInfo;

typedef struct {
    PairInfo *p;
    int64_t n, cap;
    uint64_t *key;        // [mask+1] (a << 32 | b), UINT64_MAX empty
    int64_t *idx;         // [mask+1] index into p
    uint64_t mask;
} PairTable;

static int64_t pt_get(PairTable *pt, int32_t a, int32_t b, int create) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    if (create && (uint64_t)(pt->n + 1) * 2 > pt->mask + 1) {
        uint64_t cap = pt->mask ? (pt->mask + 1) * 2 : 1024;
        uint64_t *nk = MALLOC_CHECK(cap * sizeof(uint64_t));
        int64_t *ni = MALLOC_CHECK(cap * sizeof(int64_t));
        memset(nk, 0xff, cap * sizeof(uint64_t));
        for (int64_t k = 0; k < pt->n; k++) {
            uint64_t kk = (uint64_t)(uint32_t)pt->p[k].a << 32 | (uint32_t)pt->p[k].b;
            uint64_t i = mix64(kk) & (cap - 1);
            while (nk[i] != UINT64_MAX) i = (i + 1) & (cap - 1);
            nk[i] = kk; ni[i] = k;
        }
        free(pt->key); free(pt->idx);
        pt->key = nk; pt->idx = ni; pt->mask = cap - 1;
    }
    if (!pt->key) return -1;
    uint64_t i = mix64(key) & pt->mask;
    for (;; i = (i + 1) & pt->mask) {
        if (pt->key[i] == key) return pt->idx[i];
        if (pt->key[i] == UINT64_MAX) break;
    }
    if (!create) return -1;
    if (pt->n == pt->cap) {
        pt->cap = pt->cap ? pt->cap * 2 : 1024;
        pt->p = REALLOC_CHECK(pt->p, (size_t)pt->cap * sizeof(PairInfo));
    }
    pt->p[pt->n] = (PairInfo){a, b, 0, NULL, 0, 0, -1};
    pt->key[i] = key;
    pt->idx[i] = pt->n;
    return pt->n++;
}

static void pair_add_word(PairInfo *pi, int64_t w) {
    if (pi->last_word == w) return;
    pi->last_word = w;
    if (pi->n_where == pi->cap_where) {
        pi->cap_where = pi->cap_where ? pi->cap_where * 2 : 4;
        pi->where = REALLOC_CHECK(pi->where, (size_t)pi->cap_where * sizeof(int64_t));
    }
    pi->where[pi->n_where++] = w;
}

typedef struct {
    int64_t count;
    int32_t a, b;
} TrainEnt;

static inline int train_better(TrainEnt x, TrainEnt y) {   // x comes out of the heap before y
    if (x.count != y.count) return x.count > y.count;
    if (x.a != y.a) return x.a < y.a;
    return x.b < y.b;
}

typedef struct {
    TrainEnt *e;
    size_t n, cap;
} TrainHeap;

static void th_push(TrainHeap *h, TrainEnt e) {
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 1024;
        h->e = REALLOC_CHECK(h->e, h->cap * sizeof(TrainEnt));
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!train_better(e, h->e[p])) break;
        h->e[i] = h->e[p];
        i = p;
    }
    h->e[i] = e;
}

static TrainEnt th_pop(TrainHeap *h) {
    TrainEnt top = h->e[0], last = h->e[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && train_better(h->e[c + 1], h->e[c])) c++;
        if (!train_better(h->e[c], last)) break;
        h->e[i] = h->e[c];
        i = c;
    }
    if (h->n) h->e[i] = last;
    return top;
}

// Adds sign * count to every adjacent pair of word w (symbols sym[0..n)); records w in the
// `where` list of pairs that contain `mark` (pass -1 to record it everywhere).
static void word_pairs(PairTable *pt, const int32_t *sym, int64_t n, int64_t w, int64_t count,
                       int sign, int32_t mark) {
    for (int64_t i = 0; i + 1 < n; i++) {
        int64_t k = pt_get(pt, sym[i], sym[i + 1], sign > 0);
        if (k < 0) continue;
        pt->p[k].count += sign * count;
        if (sign > 0 && (mark < 0 || sym[i] == mark || sym[i + 1] == mark))
            pair_add_word(&pt->p[k], w);
    }
}

// An empty PieceCounts with a 1024-slot table.
static void pc_init(PieceCounts *pc) {
    memset(pc, 0, sizeof *pc);
    pc->mask = 1023;
    pc->slot = MALLOC_CHECK(1024 * sizeof(int64_t));
    memset(pc->slot, 0xff, 1024 * sizeof(int64_t));
}

static void pc_free(PieceCounts *pc) {
    free(pc->bytes); free(pc->off); free(pc->count); free(pc->slot);
}

// Step 1: the pieces of every file (at most opt->max_bytes in all), counted into pc.
static int train_count_pieces(const char *const *paths, size_t n_paths, const TokTrainOptions *opt,
                              PieceCounts *pc, char *err, size_t errlen) {
    TokRegex rx;
    int st = regex_compile(&rx, err, errlen);
    if (st) return st;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(rx.re, NULL);
    pc_init(pc);
    int64_t budget = opt->max_bytes ? opt->max_bytes : INT64_MAX;
    for (size_t f = 0; f < n_paths && st == 0 && budget > 0; f++) {
        char *text;
        size_t len;
        st = tok_read_file(paths[f], TOK_MAX_TEXT_FILE, &text, &len, err, errlen);
        if (st) break;
        if ((int64_t)len > budget) len = (size_t)budget;
        budget -= (int64_t)len;
        size_t pos = 0;
        while (pos <= len && st == 0) {   // documents separated by <|endoftext|>
            const char *e = memmem(text + pos, len - pos, EOT_TEXT, sizeof(EOT_TEXT) - 1);
            size_t end = e ? (size_t)(e - text) : len;
            st = pretokenize(&rx, md, (const unsigned char *)text + pos, end - pos, pc_add, pc,
                             err, errlen);
            if (!e) break;
            pos = end + sizeof(EOT_TEXT) - 1;
        }
        free(text);
        if (opt->progress)
            opt->progress(opt->progress_ctx, "files", (int64_t)f + 1, (int64_t)n_paths);
    }
    pcre2_match_data_free(md);
    tok_regex_free(&rx);
    return st;
}

// The trainer's working state between steps.
typedef struct {
    Tokenizer *t;         // the vocabulary so far: t->off, t->m_* (bytes in tb until the end)
    TokBytes tb;          // token bytes back to back
    int64_t tcap, mcap;   // capacity of t->off (tokens) and of t->m_* (merges)
    PieceCounts pc;       // the distinct pieces ("words") and their counts
    PieceCounts known;    // bytes -> id of the tokens so far (index == id)
    int32_t *sym;         // words as symbol arrays, at pc.off[w]
    int64_t *wlen;        // [n_words] current symbol count of each word
    int64_t n_words;
    PairTable pt;         // adjacent pairs, their counts and the words holding them
    TrainHeap heap;       // pairs by count (entries may be out of date)
    int64_t *stamp;       // [n_words] the last merge rank that rewrote the word
    int64_t *touched;     // pairs that the current merge created or changed
    int64_t n_touched, cap_touched;
} Trainer;

// Step 2: words as symbol arrays over the 256 base ids (GPT-2's byte order), their pairs counted
// and queued; the token table starts with the 256 bytes.
static void train_setup(Trainer *tr) {
    Tokenizer *t = tr->t;
    int32_t base_id[256];
    for (int i = 0; i < 256; i++) base_id[t->base_order[i]] = i;
    const PieceCounts *pc = &tr->pc;
    tr->n_words = pc->n;
    tr->sym = MALLOC_CHECK((size_t)pc->nbytes * sizeof(int32_t) + 1);
    tr->wlen = MALLOC_CHECK((size_t)tr->n_words * sizeof(int64_t) + 1);
    for (int64_t w = 0; w < tr->n_words; w++) {
        for (int64_t i = pc->off[w]; i < pc->off[w + 1]; i++)
            tr->sym[i] = base_id[(unsigned char)pc->bytes[i]];
        tr->wlen[w] = pc->off[w + 1] - pc->off[w];
    }
    for (int64_t w = 0; w < tr->n_words; w++)
        word_pairs(&tr->pt, tr->sym + pc->off[w], tr->wlen[w], w, pc->count[w], +1, -1);
    for (int64_t k = 0; k < tr->pt.n; k++)
        if (tr->pt.p[k].count > 0)
            th_push(&tr->heap, (TrainEnt){tr->pt.p[k].count, tr->pt.p[k].a, tr->pt.p[k].b});

    tr->tcap = 1024;
    tr->mcap = 1024;
    t->off = MALLOC_CHECK((size_t)(tr->tcap + 1) * sizeof(int64_t));
    t->m_a = MALLOC_CHECK((size_t)tr->mcap * sizeof(int32_t));
    t->m_b = MALLOC_CHECK((size_t)tr->mcap * sizeof(int32_t));
    t->m_res = MALLOC_CHECK((size_t)tr->mcap * sizeof(int32_t));
    t->off[0] = 0;
    for (int i = 0; i < 256; i++) {
        tok_bytes_put(&tr->tb, &t->base_order[i], 1);
        t->off[i + 1] = (int64_t)tr->tb.n;
    }
    t->n_vocab = 256;
    pc_init(&tr->known);
    for (int i = 0; i < 256; i++) pc_count(&tr->known, &t->base_order[i], 1);
    tr->stamp = MALLOC_CHECK((size_t)tr->n_words * sizeof(int64_t) + 1);
    for (int64_t w = 0; w < tr->n_words; w++) tr->stamp[w] = -1;
}

// Records the merge (a, b): its result is bytes(a) + bytes(b), an existing id when those bytes
// are a token already. Returns the merge's rank; *c receives the result's id.
static int64_t train_add_merge(Trainer *tr, int32_t a, int32_t b, int32_t *c) {
    Tokenizer *t = tr->t;
    size_t la = (size_t)(t->off[a + 1] - t->off[a]), lb = (size_t)(t->off[b + 1] - t->off[b]);
    char *nb = MALLOC_CHECK(la + lb);
    memcpy(nb, tr->tb.data + t->off[a], la);
    memcpy(nb + la, tr->tb.data + t->off[b], lb);
    int64_t before = tr->known.n;
    *c = (int32_t)pc_count(&tr->known, (const unsigned char *)nb, la + lb);   // index == id
    if (tr->known.n > before) {   // new token
        if (t->n_vocab + 1 > tr->tcap) {
            tr->tcap *= 2;
            t->off = REALLOC_CHECK(t->off, (size_t)(tr->tcap + 1) * sizeof(int64_t));
        }
        tok_bytes_put(&tr->tb, nb, la + lb);
        t->off[++t->n_vocab] = (int64_t)tr->tb.n;
    }
    free(nb);
    if (t->n_merges == tr->mcap) {
        tr->mcap *= 2;
        t->m_a = REALLOC_CHECK(t->m_a, (size_t)tr->mcap * sizeof(int32_t));
        t->m_b = REALLOC_CHECK(t->m_b, (size_t)tr->mcap * sizeof(int32_t));
        t->m_res = REALLOC_CHECK(t->m_res, (size_t)tr->mcap * sizeof(int32_t));
    }
    t->m_a[t->n_merges] = a; t->m_b[t->n_merges] = b; t->m_res[t->n_merges] = *c;
    return t->n_merges++;
}

// Rewrites word w if it holds (a, b): its pairs are uncounted, every (a, b) becomes c, the new
// pairs are counted and those holding c are noted in tr->touched.
static void train_rewrite_word(Trainer *tr, int64_t w, int32_t a, int32_t b, int32_t c) {
    PairTable *pt = &tr->pt;
    int32_t *s = tr->sym + tr->pc.off[w];
    int64_t n = tr->wlen[w], has = 0, count = tr->pc.count[w];
    for (int64_t i = 0; i + 1 < n && !has; i++) has = s[i] == a && s[i + 1] == b;
    if (!has) return;
    word_pairs(pt, s, n, w, count, -1, -1);
    int64_t o = 0;
    for (int64_t i = 0; i < n;) {
        if (i + 1 < n && s[i] == a && s[i + 1] == b) { s[o++] = c; i += 2; }
        else s[o++] = s[i++];
    }
    tr->wlen[w] = o;
    word_pairs(pt, s, o, w, count, +1, c);
    for (int64_t i = 0; i + 1 < o; i++)
        if (s[i] == c || s[i + 1] == c) {
            int64_t kk = pt_get(pt, s[i], s[i + 1], 0);
            if (tr->n_touched == tr->cap_touched) {
                tr->cap_touched = tr->cap_touched ? tr->cap_touched * 2 : 256;
                tr->touched = REALLOC_CHECK(tr->touched, (size_t)tr->cap_touched * sizeof(int64_t));
            }
            tr->touched[tr->n_touched++] = kk;
        }
}

// Merges pair k = (e.a, e.b) everywhere: a new merge, every word holding it rewritten, the pair's
// word list freed and the pairs the merge changed queued (once each).
static void train_merge(Trainer *tr, int64_t k, TrainEnt e) {
    int32_t c;
    int64_t rank = train_add_merge(tr, e.a, e.b, &c);
    // `where` may grow while we walk it (new pairs contain c, never (a, b)), so iterate over a
    // snapshot of its length.
    tr->n_touched = 0;
    int64_t nw = tr->pt.p[k].n_where;
    for (int64_t q = 0; q < nw; q++) {
        int64_t w = tr->pt.p[k].where[q];
        if (tr->stamp[w] == rank) continue;
        tr->stamp[w] = rank;
        train_rewrite_word(tr, w, e.a, e.b, c);
    }
    PairInfo *gone = &tr->pt.p[k];
    free(gone->where);
    gone->where = NULL; gone->n_where = gone->cap_where = 0; gone->last_word = -1;
    for (int64_t q = 0; q < tr->n_touched; q++) {
        PairInfo *pi = &tr->pt.p[tr->touched[q]];
        if (pi->count > 0 && pi->last_word != -2 - rank) {
            th_push(&tr->heap, (TrainEnt){pi->count, pi->a, pi->b});
            pi->last_word = -2 - rank;   // pushed once per merge
        }
    }
}

// The greedy loop: the most frequent pair first, until the vocabulary is full, no pair is left
// or the best is seen fewer than min_freq times.
static void train_learn(Trainer *tr, const TokTrainOptions *opt, int64_t want_tokens,
                        int64_t min_freq) {
    while (tr->t->n_vocab < want_tokens && tr->heap.n > 0) {
        if (opt->progress) opt->progress(opt->progress_ctx, "tokens", tr->t->n_vocab, want_tokens);
        TrainEnt e = th_pop(&tr->heap);
        int64_t k = pt_get(&tr->pt, e.a, e.b, 0);
        int64_t cur = k >= 0 ? tr->pt.p[k].count : 0;
        if (cur != e.count) {   // out of date: requeue with the current count
            if (cur > 0) th_push(&tr->heap, (TrainEnt){cur, e.a, e.b});
            continue;
        }
        if (cur < min_freq) break;
        train_merge(tr, k, e);
    }
}

// Step 3: <|endoftext|> last, then the Tokenizer proper (lookup tables, pattern).
static int train_finish(Trainer *tr, char *err, size_t errlen) {
    Tokenizer *t = tr->t;
    tok_bytes_put(&tr->tb, EOT_TEXT, sizeof(EOT_TEXT) - 1);
    if (t->n_vocab + 1 > tr->tcap)
        t->off = REALLOC_CHECK(t->off, (size_t)(t->n_vocab + 2) * sizeof(int64_t));
    t->off[++t->n_vocab] = (int64_t)tr->tb.n;
    t->bytes = tr->tb.data;
    tr->tb.data = NULL;
    t->flags = CALLOC_CHECK((size_t)t->n_vocab, 1);
    int32_t first;
    if (tok_vmap_build(t, &first) >= 0)
        return util_err(err, errlen, "tok_train: a learned token spells <|endoftext|>");
    tok_pairs_alloc(t, t->n_merges);
    for (int64_t r = 0; r < t->n_merges; r++) tok_pairs_insert(t, (int32_t)r);
    return tok_finish(t, "tok_train", err, errlen);
}

static void train_free(Trainer *tr) {
    for (int64_t k = 0; k < tr->pt.n; k++) free(tr->pt.p[k].where);
    free(tr->pt.p); free(tr->pt.key); free(tr->pt.idx);
    free(tr->heap.e); free(tr->touched); free(tr->stamp); free(tr->sym); free(tr->wlen);
    free(tr->tb.data);
    pc_free(&tr->pc);
    pc_free(&tr->known);
}

int tok_train(const char *const *paths, size_t n_paths, const TokTrainOptions *opt,
              const char *out_dir, Tokenizer **out, char *err, size_t errlen) {
    if (out) *out = NULL;
    if (!opt || opt->vocab_size < 257 || opt->vocab_size > TOK_MAX_VOCAB)
        return util_err(err, errlen, "tok_train: vocab_size must be 257 .. %lld",
                        (long long)TOK_MAX_VOCAB);
    if (opt->min_frequency < 0 || opt->max_bytes < 0)
        return util_err(err, errlen, "tok_train: min_frequency and max_bytes must not be negative");
    int64_t min_freq = opt->min_frequency ? opt->min_frequency : 2;
    if (n_paths == 0) return util_err(err, errlen, "tok_train: no training files");

    Trainer tr = {0};
    int st = train_count_pieces(paths, n_paths, opt, &tr.pc, err, errlen);
    if (st) {
        pc_free(&tr.pc);
        return st;
    }
    tr.t = tok_new();
    train_setup(&tr);
    train_learn(&tr, opt, opt->vocab_size - 1, min_freq);   // all but <|endoftext|>
    st = train_finish(&tr, err, errlen);
    if (st == 0 && out_dir) st = tok_save(tr.t, out_dir, err, errlen);
    if (st != 0 || !out) tok_free(tr.t);
    else *out = tr.t;
    train_free(&tr);
    return st;
}
