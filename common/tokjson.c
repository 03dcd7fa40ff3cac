// tokjson.c: Hugging Face tokenizer.json, the part of the tokenizer module (tokenizer.h) that loads
// and runs it; the Tokenizer, BPE and GPT-2's files are in tokenizer.c (shared parts:
// tokenizer_impl.h).
#define _GNU_SOURCE   // memmem
#include "tokenizer.h"
#include "tokenizer_impl.h"
#include "utf8.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define TJ_MAX_STEPS 16   // normalizer / pre-tokenizer steps after flattening Sequences
#define TJ_MAX_TEMPLATE 8 // ids the post-processor adds before / after the text
#define TOK_MAX_JSON_FILE ((int64_t)256 << 20)

enum { NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD, NORM_PREPEND, NORM_REPLACE };
enum { PRE_SPLIT, PRE_BYTELEVEL, PRE_METASPACE };
enum { BEH_REMOVED, BEH_ISOLATED, BEH_MERGED_PREV, BEH_MERGED_NEXT, BEH_CONTIGUOUS };
enum { PREPEND_NEVER, PREPEND_FIRST, PREPEND_ALWAYS };

typedef struct {
    int kind;          // NORM_*
    char *a, *b;       // Prepend: a; Replace: a -> b (NUL-terminated)
    size_t na, nb;
} TjNorm;

typedef struct {
    int kind;               // PRE_*
    TokRegex rx;            // Split's pattern; ByteLevel's GPT-2 pattern when use_regex
    int behavior, invert;   // Split
    int add_prefix_space, use_regex;   // ByteLevel
    char repl[8];           // Metaspace's replacement (UTF-8)
    size_t nrepl;
    int prepend, split;     // Metaspace
} TjPre;

typedef struct {
    int32_t id;
    uint8_t special, lstrip, rstrip, single_word;
} TjAdded;

typedef struct TokJson {
    TjNorm norm[TJ_MAX_STEPS];
    int n_norm;
    TjPre pre[TJ_MAX_STEPS];
    int n_pre;
    int byte_level;           // ByteLevel pre-tokenizer: model space is raw bytes
    int byte_fallback, fuse_unk, ignore_merges;
    int32_t unk;              // -1: none (unknown characters are dropped, as HF does)
    int32_t byte_fb[256];     // <0xNN> tokens when byte_fallback
    TjAdded *added;           // [n_added] sorted by first byte, then longest first
    int64_t n_added;
    int64_t added_at[257];    // added[added_at[b] .. added_at[b+1]) start with byte b
    uint8_t starts[256];      // some added token starts with this byte
    int32_t prefix[TJ_MAX_TEMPLATE], suffix[TJ_MAX_TEMPLATE];
    int n_prefix, n_suffix;
    int32_t bos, eos;
    char *dbytes;             // decoded bytes of every token, back to back
    int64_t *doff;            // [V+1]
    char strip[8];            // the decoder's Strip content (UTF-8) and counts
    size_t nstrip;
    int strip_start, strip_stop;
} TokJson;

void tokjson_free(TokJson *j) {
    if (!j) return;
    for (int i = 0; i < j->n_norm; i++) { free(j->norm[i].a); free(j->norm[i].b); }
    for (int i = 0; i < j->n_pre; i++)
        if (j->pre[i].rx.re) tok_regex_free(&j->pre[i].rx);
    free(j->added); free(j->dbytes); free(j->doff);
    free(j);
}



// ---------------------------------------------------------------------------------------------
// Hugging Face tokenizer.json
//
// The pipeline HF tokenizers runs, step for step: added tokens are found in the raw text first;
// each stretch between them goes through the normalizer steps, then the pre-tokenizer steps (each
// step cuts the pieces it is given into smaller ones, called in a chain: no list is built), then
// the BPE model; the post-processor's template adds BOS/EOS on request. Token bytes are kept in
// "model space": the raw bytes for byte-level vocabularies (the ByteLevel alphabet undone at load
// time, so pieces need no mapping), the UTF-8 strings as written otherwise (SentencePiece-style,
// with U+2581 for spaces). Each token's decoded bytes (the decoder's per-token steps applied) are
// computed at load time; decoding is then a concatenation plus the decoder's Strip.

// --- Encoding

typedef struct {
    const Tokenizer *t;
    Scratch *s;
    TokIds *out;
    pcre2_match_data *md[TJ_MAX_STEPS];
    TokBytes buf[TJ_MAX_STEPS];
    int64_t calls[TJ_MAX_STEPS];   // pieces seen by each step in this stretch
    int first;                     // the stretch starts the text
    char *err;
    size_t errlen;
} TjCtx;

static int tj_piece(TjCtx *c, int k, const unsigned char *p, size_t n);

// The BPE model on one piece of model-space bytes.
void tokjson_model(const Tokenizer *t, const unsigned char *p, size_t n, Scratch *s,
                     TokIds *out) {
    const TokJson *j = t->js;
    if (n == 0) return;
    int32_t id = tok_vmap_get(t, p, n);
    if (id >= 0 && !(t->flags[id] & FLAG_NOTMODEL) &&
        (j->ignore_merges || (t->flags[id] & FLAG_WHOLE))) {
        tok_ids_push(out, id);
        return;
    }
    tok_scratch_reserve(s, n);
    size_t m = 0;
    if (j->byte_level) {
        for (size_t i = 0; i < n; i++) s->sym[m++] = t->byte_tok[p[i]];
    } else {
        int prev_unk = 0;
        for (size_t i = 0; i < n;) {
            size_t k = (size_t)utf8_decode(p + i, n - i, NULL);
            if (k == 0) k = 1;   // an invalid byte: a unit of its own
            int32_t c = tok_vmap_get(t, p + i, k);
            if (c >= 0 && (t->flags[c] & FLAG_NOTMODEL)) c = -1;
            if (c >= 0) {
                s->sym[m++] = c;
                prev_unk = 0;
            } else if (j->byte_fallback) {
                for (size_t b = 0; b < k; b++) s->sym[m++] = j->byte_fb[p[i + b]];
                prev_unk = 0;
            } else if (j->unk >= 0 && !(j->fuse_unk && prev_unk)) {
                s->sym[m++] = j->unk;
                prev_unk = 1;
            }
            i += k;
        }
    }
    if (m == 1) tok_ids_push(out, s->sym[0]);
    else if (m > 1) tok_bpe_merge(t, m, s, 1, out);
}

// Split's folding of the (part, is_match) sequence by behaviour, emitting each finished part to
// the next step. Only the last part can still grow, so it is held back until the next one.
typedef struct {
    TjCtx *c;
    int k, beh, prev_match, has_last;
    const unsigned char *a, *b;   // the held-back part
} TjFold;

static int fold_flush(TjFold *f) {
    if (!f->has_last || f->b == f->a) return 0;
    f->has_last = 0;
    return tj_piece(f->c, f->k + 1, f->a, (size_t)(f->b - f->a));
}

static int fold_add(TjFold *f, const unsigned char *a, const unsigned char *b, int is_match) {
    int extend = 0;
    switch (f->beh) {
    case BEH_REMOVED: if (is_match) return 0; break;
    case BEH_ISOLATED: break;
    case BEH_MERGED_PREV: extend = is_match && !f->prev_match && f->has_last; break;
    case BEH_MERGED_NEXT: extend = f->prev_match && f->has_last; break;
    default: extend = f->has_last && is_match == f->prev_match; break;   // Contiguous
    }
    f->prev_match = is_match;
    if (extend) { f->b = b; return 0; }
    int st = fold_flush(f);
    f->a = a; f->b = b; f->has_last = 1;
    return st;
}

// Matches of step k's pattern in p[0..n) (each valid UTF-8 run on its own; an invalid byte is a
// part of its own), folded by the step's behaviour.
static int tj_split(TjCtx *c, int k, const TjPre *st, const unsigned char *p, size_t n) {
    TjFold f = {c, k, st->behavior, 0, 0, NULL, NULL};
    size_t pos = 0;
    int rc = 0;
    while (pos < n && rc == 0) {
        size_t run = utf8_valid_len(p + pos, n - pos);
        const unsigned char *r = p + pos;
        size_t off = 0, gap = 0;   // gap: start of the text not matched yet
        while (off < run && rc == 0) {
            int m = -1;
            if (st->rx.jit) m = pcre2_jit_match(st->rx.re, r, run, off, 0, c->md[k], NULL);
            if (!st->rx.jit || m == PCRE2_ERROR_JIT_STACKLIMIT)
                m = pcre2_match(st->rx.re, r, run, off, PCRE2_NO_UTF_CHECK, c->md[k], NULL);
            if (m == PCRE2_ERROR_NOMATCH) break;
            if (m < 0) {
                PCRE2_UCHAR msg[160];
                pcre2_get_error_message(m, msg, sizeof(msg));
                return util_err(c->err, c->errlen, "pcre2: match failed at byte %zu: %s",
                                (size_t)(r - p) + off, (const char *)msg);
            }
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md[k]);
            size_t a = ov[0], b = ov[1];
            if (b <= a) {   // an empty match cuts nothing: look again one character on
                off = a + (size_t)utf8_decode(r + a, run - a, NULL);
                continue;
            }
            if (a > gap) rc = fold_add(&f, r + gap, r + a, st->invert);
            if (!rc) rc = fold_add(&f, r + a, r + b, !st->invert);
            gap = off = b;
        }
        if (!rc && gap < run) rc = fold_add(&f, r + gap, r + run, st->invert);
        pos += run;
        if (!rc && pos < n) { rc = fold_add(&f, p + pos, p + pos + 1, st->invert); pos++; }
    }
    if (!rc) rc = fold_flush(&f);
    return rc;
}

// Metaspace: spaces become the replacement, which is prepended as the scheme says; with split,
// the piece is cut before each replacement (MergedWithNext).
static int tj_metaspace(TjCtx *c, int k, const TjPre *st, const unsigned char *p, size_t n) {
    TokBytes *b = &c->buf[k];
    b->n = 0;
    int at_start = c->first && c->calls[k] == 1;
    int starts = n >= st->nrepl && memcmp(p, st->repl, st->nrepl) == 0;
    if (!starts && (st->prepend == PREPEND_ALWAYS || (st->prepend == PREPEND_FIRST && at_start)))
        tok_bytes_put(b, st->repl, st->nrepl);
    for (size_t i = 0; i < n; i++) {
        if (p[i] == ' ') tok_bytes_put(b, st->repl, st->nrepl);
        else tok_bytes_put(b, p + i, 1);
    }
    const unsigned char *q = (const unsigned char *)b->data;
    size_t m = b->n;
    if (!st->split) return tj_piece(c, k + 1, q, m);
    TjFold f = {c, k, BEH_MERGED_NEXT, 0, 0, NULL, NULL};
    size_t gap = 0;
    int rc = 0;
    for (size_t i = 0; i + st->nrepl <= m && rc == 0;) {
        if (memcmp(q + i, st->repl, st->nrepl) != 0) { i++; continue; }
        if (i > gap) rc = fold_add(&f, q + gap, q + i, 0);
        if (!rc) rc = fold_add(&f, q + i, q + i + st->nrepl, 1);
        i += st->nrepl;
        gap = i;
    }
    if (!rc && gap < m) rc = fold_add(&f, q + gap, q + m, 0);
    if (!rc) rc = fold_flush(&f);
    return rc;
}

// Step k of the pre-tokenizer on one piece; past the last step, the model.
static int tj_piece(TjCtx *c, int k, const unsigned char *p, size_t n) {
    const TokJson *j = c->t->js;
    if (n == 0) return 0;
    if (k == j->n_pre) { tokjson_model(c->t, p, n, c->s, c->out); return 0; }
    const TjPre *st = &j->pre[k];
    c->calls[k]++;
    if (st->kind == PRE_SPLIT) return tj_split(c, k, st, p, n);
    if (st->kind == PRE_METASPACE) return tj_metaspace(c, k, st, p, n);
    if (st->add_prefix_space && p[0] != ' ') {   // ByteLevel
        TokBytes *b = &c->buf[k];
        b->n = 0;
        tok_bytes_put(b, " ", 1);
        tok_bytes_put(b, p, n);
        p = (const unsigned char *)b->data;
        n = b->n;
    }
    if (st->use_regex) return tj_split(c, k, st, p, n);
    return tj_piece(c, k + 1, p, n);
}

// Unicode normalization (utf8proc) of each valid UTF-8 run that is not plain ASCII; invalid bytes
// are kept as they are.
static void tj_unicode_norm(int kind, const unsigned char *p, size_t n, TokBytes *out) {
    utf8proc_option_t opt = UTF8PROC_STABLE;
    if (kind == NORM_NFC) opt |= UTF8PROC_COMPOSE;
    else if (kind == NORM_NFD) opt |= UTF8PROC_DECOMPOSE;
    else if (kind == NORM_NFKC) opt |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
    else opt |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
    size_t pos = 0;
    while (pos < n) {
        size_t run = utf8_valid_len(p + pos, n - pos);
        size_t i = 0;
        while (i < run && p[pos + i] < 0x80) i++;
        utf8proc_uint8_t *dst = NULL;
        utf8proc_ssize_t got = -1;
        if (i < run) got = utf8proc_map(p + pos, (utf8proc_ssize_t)run, &dst, opt);
        if (got >= 0) tok_bytes_put(out, dst, (size_t)got);
        else tok_bytes_put(out, p + pos, run);
        free(dst);
        pos += run;
        if (pos < n) { tok_bytes_put(out, p + pos, 1); pos++; }
    }
}

// The normalizer steps on s[0..n); the result is in one of the two buffers (returned).
static TokBytes *tj_normalize(const TokJson *j, const unsigned char *s, size_t n,
                              TokBytes bufs[2]) {
    TokBytes *cur = NULL;
    for (int i = 0; i < j->n_norm; i++) {
        const TjNorm *nm = &j->norm[i];
        TokBytes *dst = cur == &bufs[0] ? &bufs[1] : &bufs[0];
        const unsigned char *p = cur ? (const unsigned char *)cur->data : s;
        size_t m = cur ? cur->n : n;
        dst->n = 0;
        if (nm->kind == NORM_PREPEND) {
            if (m) tok_bytes_put(dst, nm->a, nm->na);
            tok_bytes_put(dst, p, m);
        } else if (nm->kind == NORM_REPLACE) {
            size_t at = 0;
            const unsigned char *f;
            while (at < m && (f = memmem(p + at, m - at, nm->a, nm->na))) {
                tok_bytes_put(dst, p + at, (size_t)(f - p) - at);
                tok_bytes_put(dst, nm->b, nm->nb);
                at = (size_t)(f - p) + nm->na;
            }
            tok_bytes_put(dst, p + at, m - at);
        } else {
            tj_unicode_norm(nm->kind, p, m, dst);
        }
        cur = dst;
    }
    return cur;
}

// One stretch of text between added tokens: normalizer, pre-tokenizer, model.
static int tj_stretch(TjCtx *c, const unsigned char *s, size_t n, int first, TokBytes nb[2]) {
    if (n == 0) return 0;
    TokBytes *norm = tj_normalize(c->t->js, s, n, nb);
    if (norm) { s = (const unsigned char *)norm->data; n = norm->n; }
    c->first = first;
    memset(c->calls, 0, sizeof(c->calls));
    return tj_piece(c, 0, s, n);
}

static int tj_is_space(const unsigned char *p, size_t n, size_t *len) {
    uint32_t cp;
    int k = utf8_decode(p, n, &cp);
    if (!k) return 0;
    *len = (size_t)k;
    if (cp == ' ' || (cp >= 9 && cp <= 13) || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
        (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f ||
        cp == 0x205f || cp == 0x3000)
        return 1;
    return 0;
}

static int tj_word_char(const unsigned char *s, size_t len, size_t at, int before) {
    if (before) {
        if (at == 0) return 0;
        size_t i = at - 1;
        while (i > 0 && (s[i] & 0xc0) == 0x80 && at - i < 4) i--;
        uint32_t cp;
        if (!utf8_decode(s + i, at - i, &cp)) return 0;
        utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)cp);
        return cp == '_' || (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
               (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO);
    }
    uint32_t cp;
    if (at >= len || !utf8_decode(s + at, len - at, &cp)) return 0;
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)cp);
    return cp == '_' || (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
           (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO);
}

// The leftmost, then longest, added token in s[from..len) (special ones only when allowed);
// returns its index in j->added or -1. *at receives where it starts.
static int64_t tj_find_added(const Tokenizer *t, const unsigned char *s, size_t len, size_t from,
                             int allow_special, size_t *at) {
    const TokJson *j = t->js;
    for (size_t i = from; i < len; i++) {
        if (!j->starts[s[i]]) continue;
        for (int64_t k = j->added_at[s[i]]; k < j->added_at[s[i] + 1]; k++) {
            const TjAdded *a = &j->added[k];
            if (a->special && !allow_special) continue;
            size_t n = tok_len(t, a->id);
            if (n > len - i || memcmp(s + i, t->bytes + t->off[a->id], n) != 0) continue;
            if (a->single_word && (tj_word_char(s, len, i, 1) || tj_word_char(s, len, i + n, 0)))
                continue;
            *at = i;
            return k;
        }
    }
    return -1;
}

int tokjson_encode(const Tokenizer *t, const unsigned char *s, size_t len, unsigned flags,
                     TokIds *out, char *err, size_t errlen) {
    const TokJson *j = t->js;
    Scratch scratch = {0};
    TjCtx c = {.t = t, .s = &scratch, .out = out, .err = err, .errlen = errlen};
    for (int k = 0; k < j->n_pre; k++)
        if (j->pre[k].rx.re) {
            c.md[k] = pcre2_match_data_create_from_pattern(j->pre[k].rx.re, NULL);
            if (!c.md[k]) {
                fprintf(stderr, "%s:%d: out of memory\n", __FILE__, __LINE__);
                abort();
            }
        }
    TokBytes nb[2] = {{0}, {0}};
    if (flags & TOK_ADD_SPECIAL)
        for (int k = 0; k < j->n_prefix; k++) tok_ids_push(out, j->prefix[k]);
    size_t pos = 0;
    int st = 0;
    while (st == 0) {
        size_t at = len;
        int64_t k = tj_find_added(t, s, len, pos, (flags & TOK_ALLOW_SPECIAL) != 0, &at);
        size_t end = at, sl;
        if (k >= 0 && j->added[k].lstrip)   // the token takes the white space before it
            while (end > pos) {
                size_t b = end - 1;
                while (b > pos && (s[b] & 0xc0) == 0x80 && end - b < 4) b--;
                if (!tj_is_space(s + b, end - b, &sl) || b + sl != end) break;
                end = b;
            }
        st = tj_stretch(&c, s + pos, end - pos, pos == 0, nb);
        if (st || k < 0) break;
        tok_ids_push(out, j->added[k].id);
        pos = at + tok_len(t, j->added[k].id);
        if (j->added[k].rstrip)   // and the white space after it
            while (pos < len && tj_is_space(s + pos, len - pos, &sl)) pos += sl;
    }
    if (!st && (flags & TOK_ADD_SPECIAL))
        for (int k = 0; k < j->n_suffix; k++) tok_ids_push(out, j->suffix[k]);
    for (int k = 0; k < j->n_pre; k++) {
        pcre2_match_data_free(c.md[k]);
        tok_bytes_free(&c.buf[k]);
    }
    tok_bytes_free(&nb[0]);
    tok_bytes_free(&nb[1]);
    tok_scratch_free(&scratch);
    return st;
}

int tokjson_decode(const Tokenizer *t, const int32_t *ids, size_t n, TokBytes *out) {
    const TokJson *j = t->js;
    size_t total = 0, start = out->n;
    for (size_t i = 0; i < n; i++) total += (size_t)(j->doff[ids[i] + 1] - j->doff[ids[i]]);
    tok_bytes_reserve(out, total);
    for (size_t i = 0; i < n; i++) {
        size_t k = (size_t)(j->doff[ids[i] + 1] - j->doff[ids[i]]);
        memcpy(out->data + out->n, j->dbytes + j->doff[ids[i]], k);
        out->n += k;
    }
    if (j->nstrip) {
        size_t a = start;
        for (int k = 0; k < j->strip_start && out->n - a >= j->nstrip &&
                        memcmp(out->data + a, j->strip, j->nstrip) == 0; k++)
            a += j->nstrip;
        if (a > start) {
            memmove(out->data + start, out->data + a, out->n - a);
            out->n -= a - start;
        }
        for (int k = 0; k < j->strip_stop && out->n - start >= j->nstrip &&
                        memcmp(out->data + out->n - j->nstrip, j->strip, j->nstrip) == 0; k++)
            out->n -= j->nstrip;
    }
    if (out->data) out->data[out->n] = 0;
    return 0;
}

// --- Loading tokenizer.json

typedef struct {
    const char *path;
    char *err;
    size_t errlen;
} TjLoad;

static const cJSON *jget(const cJSON *o, const char *k) {
    return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}
static int jbool(const cJSON *o, const char *k, int def) {
    const cJSON *v = jget(o, k);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}
static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = jget(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}
// A special token named by tokenizer_config.json: a string or {"content": string}.
static const char *jtoken(const cJSON *o, const char *k) {
    const cJSON *v = jget(o, k);
    return cJSON_IsString(v) ? v->valuestring : jstr(v, "content");
}

static int tj_unsupported(const TjLoad *L, const char *key, const char *what) {
    char sb[200];
    return util_err(L->err, L->errlen, "%s: %s: \"%s\" is not supported", L->path, key,
                    tok_show(sb, what, strlen(what)));
}

static int tj_type(const TjLoad *L, const cJSON *node, const char *key, const char **type) {
    *type = jstr(node, "type");
    if (*type) return 0;
    return util_err(L->err, L->errlen, "%s: %s.type: missing (expected a string)", L->path, key);
}

// JavaScript / Rust regex syntax that PCRE2 spells differently: \uXXXX and \u{X...} become
// \x{...}. Everything else (\p{L}, (?i:...), lookahead, possessive forms) is the same.
static char *rx_translate(const char *p) {
    size_t n = strlen(p);
    char *o = MALLOC_CHECK(2 * n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\\' && i + 1 < n && p[i + 1] == 'u') {
            size_t h = i + 2, e;
            if (h < n && p[h] == '{') {
                for (e = h + 1; e < n && p[e] != '}'; e++) {}
                if (e < n) {
                    k += (size_t)sprintf(o + k, "\\x{%.*s}", (int)(e - h - 1), p + h + 1);
                    i = e;
                    continue;
                }
            } else if (h + 4 <= n) {
                k += (size_t)sprintf(o + k, "\\x{%.4s}", p + h);
                i = h + 3;
                continue;
            }
        }
        if (p[i] == '\\' && i + 1 < n) o[k++] = p[i++];
        o[k++] = p[i];
    }
    o[k] = 0;
    return o;
}

static int tj_regex(const TjLoad *L, TokRegex *rx, const char *pat, int literal, const char *key) {
    int code;
    PCRE2_SIZE off;
    char *p = literal ? STRDUP_CHECK(pat) : rx_translate(pat);
    uint32_t opt = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);   // LITERAL refuses UCP
    rx->jit = 0;
    rx->re = pcre2_compile((PCRE2_SPTR)p, PCRE2_ZERO_TERMINATED, opt, &code, &off, NULL);
    free(p);
    if (!rx->re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof(msg));
        return util_err(L->err, L->errlen, "%s: %s: the regex does not compile at offset %zu: %s",
                        L->path, key, (size_t)off, (const char *)msg);
    }
    rx->jit = pcre2_jit_compile(rx->re, PCRE2_JIT_COMPLETE) == 0;
    return 0;
}

// A {"String": s} or {"Regex": r} pattern: *s and *is_regex.
static int tj_pattern(const TjLoad *L, const cJSON *node, const char *key, const char **s,
                      int *is_regex) {
    const cJSON *pat = jget(node, "pattern");
    *s = jstr(pat, "String");
    *is_regex = 0;
    if (!*s && (*s = jstr(pat, "Regex"))) *is_regex = 1;
    if (*s) return 0;
    return util_err(L->err, L->errlen, "%s: %s.pattern: expected {\"String\": ...} or "
                    "{\"Regex\": ...}", L->path, key);
}

// A Sequence step: fn on each element of node's array `arr`, keyed KEY.arr[i].
typedef int (*TjStepFn)(const TjLoad *L, void *ctx, const cJSON *node, const char *key);
static int tj_each(const TjLoad *L, void *ctx, const cJSON *node, const char *arr, const char *key,
                   TjStepFn fn) {
    const cJSON *a = jget(node, arr);
    char sub[160];
    int i = 0;
    for (const cJSON *c = cJSON_IsArray(a) ? a->child : NULL; c; c = c->next, i++) {
        snprintf(sub, sizeof(sub), "%s.%s[%d]", key, arr, i);
        if (fn(L, ctx, c, sub)) return -1;
    }
    return 0;
}

static int tj_norm(const TjLoad *L, void *ctx, const cJSON *node, const char *key) {
    TokJson *j = ctx;
    if (!node || cJSON_IsNull(node)) return 0;
    const char *type;
    char sub[160];
    if (tj_type(L, node, key, &type)) return -1;
    if (strcmp(type, "Sequence") == 0) return tj_each(L, j, node, "normalizers", key, tj_norm);
    if (j->n_norm == TJ_MAX_STEPS)
        return util_err(L->err, L->errlen, "%s: %s: more than %d normalizer steps", L->path, key,
                        TJ_MAX_STEPS);
    TjNorm *nm = &j->norm[j->n_norm];
    const char *a = NULL, *b = NULL;
    if (strcmp(type, "NFC") == 0) nm->kind = NORM_NFC;
    else if (strcmp(type, "NFD") == 0) nm->kind = NORM_NFD;
    else if (strcmp(type, "NFKC") == 0) nm->kind = NORM_NFKC;
    else if (strcmp(type, "NFKD") == 0) nm->kind = NORM_NFKD;
    else if (strcmp(type, "Prepend") == 0) {
        nm->kind = NORM_PREPEND;
        if (!(a = jstr(node, "prepend")))
            return util_err(L->err, L->errlen, "%s: %s.prepend: missing", L->path, key);
    } else if (strcmp(type, "Replace") == 0) {
        int is_regex;
        nm->kind = NORM_REPLACE;
        snprintf(sub, sizeof(sub), "%s.pattern", key);
        if (tj_pattern(L, node, key, &a, &is_regex)) return -1;
        if (is_regex) return tj_unsupported(L, sub, "Regex");
        if (!a[0]) return util_err(L->err, L->errlen, "%s: %s: empty pattern", L->path, sub);
        if (!(b = jstr(node, "content")))
            return util_err(L->err, L->errlen, "%s: %s.content: missing", L->path, key);
    } else {
        snprintf(sub, sizeof(sub), "%s.type", key);
        return tj_unsupported(L, sub, type);
    }
    if (a) { nm->a = STRDUP_CHECK(a); nm->na = strlen(a); }
    if (b) { nm->b = STRDUP_CHECK(b); nm->nb = strlen(b); }
    j->n_norm++;
    return 0;
}

static int tj_behavior(const TjLoad *L, const char *s, const char *key, int *beh) {
    static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious",
                                        "MergedWithNext", "Contiguous"};
    for (int i = 0; i < 5; i++)
        if (s && strcmp(s, names[i]) == 0) { *beh = i; return 0; }
    return tj_unsupported(L, key, s ? s : "(missing)");
}

static int tj_pre(const TjLoad *L, void *ctx, const cJSON *node, const char *key) {
    TokJson *j = ctx;
    if (!node || cJSON_IsNull(node)) return 0;
    const char *type;
    char sub[160];
    if (tj_type(L, node, key, &type)) return -1;
    if (strcmp(type, "Sequence") == 0) return tj_each(L, j, node, "pretokenizers", key, tj_pre);
    if (j->n_pre == TJ_MAX_STEPS)
        return util_err(L->err, L->errlen, "%s: %s: more than %d pre-tokenizer steps", L->path,
                        key, TJ_MAX_STEPS);
    TjPre *st = &j->pre[j->n_pre];
    memset(st, 0, sizeof(*st));
    if (strcmp(type, "Split") == 0) {
        const char *pat;
        int is_regex;
        st->kind = PRE_SPLIT;
        if (tj_pattern(L, node, key, &pat, &is_regex)) return -1;
        snprintf(sub, sizeof(sub), "%s.behavior", key);
        if (tj_behavior(L, jstr(node, "behavior"), sub, &st->behavior)) return -1;
        st->invert = jbool(node, "invert", 0);
        snprintf(sub, sizeof(sub), "%s.pattern", key);
        if (tj_regex(L, &st->rx, pat, !is_regex, sub)) return -1;
    } else if (strcmp(type, "Digits") == 0) {   // ASCII digits apart (each, or each run)
        st->kind = PRE_SPLIT;
        st->behavior = jbool(node, "individual_digits", 0) ? BEH_ISOLATED : BEH_CONTIGUOUS;
        if (tj_regex(L, &st->rx, "[0-9]", 0, key)) return -1;
    } else if (strcmp(type, "ByteLevel") == 0) {
        st->kind = PRE_BYTELEVEL;
        st->add_prefix_space = jbool(node, "add_prefix_space", 1);
        st->use_regex = jbool(node, "use_regex", 1);
        st->behavior = BEH_ISOLATED;
        j->byte_level = 1;
        if (st->use_regex && tj_regex(L, &st->rx, TOK_GPT2_PATTERN, 0, key)) return -1;
    } else if (strcmp(type, "Metaspace") == 0) {
        const char *r = jstr(node, "replacement"), *scheme = jstr(node, "prepend_scheme");
        st->kind = PRE_METASPACE;
        if (!r) r = "\xe2\x96\x81";
        if (!r[0] || strlen(r) >= sizeof(st->repl))
            return util_err(L->err, L->errlen, "%s: %s.replacement: expected one character",
                            L->path, key);
        st->nrepl = strlen(r);
        memcpy(st->repl, r, st->nrepl);
        st->prepend = jbool(node, "add_prefix_space", 1) ? PREPEND_ALWAYS : PREPEND_NEVER;
        if (scheme && strcmp(scheme, "always") == 0) st->prepend = PREPEND_ALWAYS;
        else if (scheme && strcmp(scheme, "first") == 0) st->prepend = PREPEND_FIRST;
        else if (scheme && strcmp(scheme, "never") == 0) st->prepend = PREPEND_NEVER;
        else if (scheme) {
            snprintf(sub, sizeof(sub), "%s.prepend_scheme", key);
            return tj_unsupported(L, sub, scheme);
        }
        st->split = jbool(node, "split", 1);
    } else {
        snprintf(sub, sizeof(sub), "%s.type", key);
        return tj_unsupported(L, sub, type);
    }
    j->n_pre++;
    return 0;
}

// The model's settings that change encoding; anything else HF's BPE has is refused.
static int tj_model_opts(const TjLoad *L, TokJson *j, const cJSON *model) {
    const char *type = jstr(model, "type");
    if (type && strcmp(type, "BPE") != 0) return tj_unsupported(L, "model.type", type);
    const cJSON *d = jget(model, "dropout");
    if (d && !cJSON_IsNull(d)) return tj_unsupported(L, "model.dropout", "non-null dropout");
    const char *pre = jstr(model, "continuing_subword_prefix");
    if (pre && pre[0]) return tj_unsupported(L, "model.continuing_subword_prefix", pre);
    const char *suf = jstr(model, "end_of_word_suffix");
    if (suf && suf[0]) return tj_unsupported(L, "model.end_of_word_suffix", suf);
    j->byte_fallback = jbool(model, "byte_fallback", 0);
    j->fuse_unk = jbool(model, "fuse_unk", 0);
    j->ignore_merges = jbool(model, "ignore_merges", 0);
    if (!cJSON_IsObject(jget(model, "vocab")))
        return util_err(L->err, L->errlen, "%s: model.vocab: missing (expected an object)",
                        L->path);
    if (!cJSON_IsArray(jget(model, "merges")))
        return util_err(L->err, L->errlen, "%s: model.merges: missing (expected an array)",
                        L->path);
    return 0;
}

// A JSON number that is an integer id in 0..TOK_MAX_VOCAB-1, or -1.
static int64_t tj_id(const cJSON *v) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d < (double)TOK_MAX_VOCAB && d == (double)(int64_t)d)) return -1;
    return (int64_t)d;
}

// The token table: model.vocab (model space) and the added tokens outside it.
static int tj_tokens(const TjLoad *L, Tokenizer *t, const cJSON *vocab, const cJSON *added) {
    int64_t n = 0;
    char sb[200];
    for (const cJSON *c = vocab->child; c; c = c->next) {
        int64_t id = tj_id(c);
        if (id < 0)
            return util_err(L->err, L->errlen,
                            "%s: model.vocab: token \"%s\": id is not an integer in 0..%lld",
                            L->path, tok_show(sb, c->string, strlen(c->string)),
                            (long long)TOK_MAX_VOCAB - 1);
        if (id + 1 > n) n = id + 1;
    }
    int i = 0;
    for (const cJSON *c = added->child; c; c = c->next, i++) {
        int64_t id = tj_id(jget(c, "id"));
        const char *content = jstr(c, "content");
        if (id < 0 || !content || !content[0])
            return util_err(L->err, L->errlen, "%s: added_tokens[%d]: expected an integer id and "
                            "a non-empty content", L->path, i);
        if (id + 1 > n) n = id + 1;
    }
    if (n == 0) return util_err(L->err, L->errlen, "%s: model.vocab: empty", L->path);
    int64_t entries = cJSON_GetArraySize(vocab) + cJSON_GetArraySize(added);
    if (n > entries)   // before allocating n of anything: a hostile id must not cost memory
        return util_err(L->err, L->errlen, "%s: model.vocab: ids go up to %lld but there are only "
                        "%lld tokens (ids must be 0..V-1 without gaps)", L->path,
                        (long long)n - 1, (long long)entries);
    const char **key = CALLOC_CHECK((size_t)n, sizeof(char *));
    uint8_t *from_added = CALLOC_CHECK((size_t)n, 1);
    int st = 0;
    for (const cJSON *c = vocab->child; c && !st; c = c->next) {
        int64_t id = tj_id(c);
        if (key[id])
            st = util_err(L->err, L->errlen, "%s: model.vocab: id %lld is used twice (\"%s\")",
                          L->path, (long long)id, tok_show(sb, c->string, strlen(c->string)));
        else if (!c->string[0])
            st = util_err(L->err, L->errlen, "%s: model.vocab: id %lld is the empty string",
                          L->path, (long long)id);
        key[id] = c->string;
    }
    for (const cJSON *c = added->child; c && !st; c = c->next) {
        int64_t id = tj_id(jget(c, "id"));
        if (!key[id]) { key[id] = jstr(c, "content"); from_added[id] = 1; }
    }
    TokBytes all = {0};
    t->n_vocab = n;
    t->off = MALLOC_CHECK((size_t)(n + 1) * sizeof(int64_t));
    t->flags = CALLOC_CHECK((size_t)n, 1);
    for (int64_t id = 0; id < n && !st; id++) {
        t->off[id] = (int64_t)all.n;
        long bad;
        if (!key[id])
            st = util_err(L->err, L->errlen, "%s: model.vocab: no token has id %lld (ids must be "
                          "0..V-1 without gaps)", L->path, (long long)id);
        else if (from_added[id] || !t->js->byte_level) tok_bytes_puts(&all, key[id]);
        else if (tok_unbyte(t, (const unsigned char *)key[id], strlen(key[id]), &all, &bad))
            st = util_err(L->err, L->errlen, "%s: model.vocab: token \"%s\" (id %lld) is not in "
                          "the ByteLevel alphabet", L->path, tok_show(sb, key[id], strlen(key[id])),
                          (long long)id);
        if (from_added[id]) t->flags[id] |= FLAG_NOTMODEL;
    }
    if (!st) {
        t->off[n] = (int64_t)all.n;
        t->bytes = all.data ? all.data : CALLOC_CHECK(1, 1);
        all.data = NULL;
        int32_t first, dup = tok_vmap_build(t, &first);
        if (dup >= 0)
            st = util_err(L->err, L->errlen, "%s: duplicate token: ids %d and %d are both \"%s\"",
                          L->path, first, dup,
                          tok_show(sb, t->bytes + t->off[dup], tok_len(t, dup)));
    }
    tok_bytes_free(&all);
    free(key);
    free(from_added);
    return st;
}

// A merge's part in model space, as an id of model.vocab, or -1.
static int32_t tj_merge_part(Tokenizer *t, const char *s, size_t n, TokBytes *tmp) {
    tmp->n = 0;
    long bad;
    if (t->js->byte_level) {
        if (tok_unbyte(t, (const unsigned char *)s, n, tmp, &bad)) return -1;
    } else {
        tok_bytes_put(tmp, s, n);
    }
    int32_t id = tok_vmap_get(t, tmp->data ? tmp->data : "", tmp->n);
    return id >= 0 && !(t->flags[id] & FLAG_NOTMODEL) ? id : -1;
}

static int tj_merges(const TjLoad *L, Tokenizer *t, const cJSON *merges) {
    int64_t m = cJSON_GetArraySize(merges);
    t->m_a = MALLOC_CHECK((size_t)(m ? m : 1) * sizeof(int32_t));
    t->m_b = MALLOC_CHECK((size_t)(m ? m : 1) * sizeof(int32_t));
    t->m_res = MALLOC_CHECK((size_t)(m ? m : 1) * sizeof(int32_t));
    tok_pairs_alloc(t, m);
    TokBytes tmp = {0}, cat = {0};
    int64_t r = 0;
    int st = 0;
    char sb[200];
    for (const cJSON *c = merges->child; c && !st; c = c->next, r++) {
        const char *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        if (cJSON_IsString(c)) {   // "a b"
            const char *sp = strchr(c->valuestring, ' ');
            if (sp) { a = c->valuestring; na = (size_t)(sp - a); b = sp + 1; nb = strlen(b); }
        } else if (cJSON_IsArray(c) && cJSON_GetArraySize(c) == 2 &&
                   cJSON_IsString(c->child) && cJSON_IsString(c->child->next)) {   // ["a", "b"]
            a = c->child->valuestring; na = strlen(a);
            b = c->child->next->valuestring; nb = strlen(b);
        }
        if (!a || !na || !nb) {
            st = util_err(L->err, L->errlen, "%s: model.merges[%lld]: expected \"a b\" or "
                          "[\"a\", \"b\"]", L->path, (long long)r);
            break;
        }
        int32_t ia = tj_merge_part(t, a, na, &tmp), ib = tj_merge_part(t, b, nb, &tmp);
        int32_t res = -1;
        if (ia >= 0 && ib >= 0) {
            cat.n = 0;
            tok_bytes_put(&cat, t->bytes + t->off[ia], tok_len(t, ia));
            tok_bytes_put(&cat, t->bytes + t->off[ib], tok_len(t, ib));
            res = tok_vmap_get(t, cat.data, cat.n);
        }
        if (res < 0 || (t->flags[res] & FLAG_NOTMODEL)) {
            st = util_err(L->err, L->errlen, "%s: model.merges[%lld]: \"%s\" %s", L->path,
                          (long long)r, tok_show(sb, a, na + 1 + nb),
                          ia < 0 || ib < 0 ? "has a part that is not in model.vocab"
                                           : "makes a token that is not in model.vocab");
            break;
        }
        t->m_a[t->n_merges] = ia;
        t->m_b[t->n_merges] = ib;
        t->m_res[t->n_merges] = res;
        // a merge listed twice keeps its first rank
        if (tok_pairs_insert(t, (int32_t)t->n_merges) < 0) t->n_merges++;
    }
    tok_bytes_free(&tmp);
    tok_bytes_free(&cat);
    return st;
}

// Byte tokens (ByteLevel), <0xNN> tokens (byte_fallback), the unknown token.
static int tj_byte_tokens(const TjLoad *L, Tokenizer *t, const cJSON *model) {
    TokJson *j = t->js;
    for (int b = 0; b < 256; b++) {
        char name[8];
        unsigned char c = (unsigned char)b;
        snprintf(name, sizeof(name), "<0x%02X>", b);
        t->byte_tok[b] = j->byte_level ? tok_vmap_get(t, &c, 1) : -1;
        j->byte_fb[b] = j->byte_fallback ? tok_vmap_get(t, name, strlen(name)) : -1;
        if (j->byte_level && t->byte_tok[b] < 0)
            return util_err(L->err, L->errlen, "%s: model.vocab: byte 0x%02x has no token (a "
                            "ByteLevel vocabulary needs all 256)", L->path, b);
        if (j->byte_fallback && j->byte_fb[b] < 0)
            return util_err(L->err, L->errlen, "%s: model.byte_fallback: there is no token %s",
                            L->path, name);
    }
    const char *unk = jstr(model, "unk_token");
    j->unk = unk ? tok_vmap_get(t, unk, strlen(unk)) : -1;
    if (unk && j->unk < 0)
        return util_err(L->err, L->errlen, "%s: model.unk_token: \"%s\" is not a token", L->path,
                        unk);
    return 0;
}

typedef struct {
    TjAdded a;
    unsigned char first;
    size_t len;
} TjAddedSort;

static int tj_added_cmp(const void *x, const void *y) {
    const TjAddedSort *p = x, *q = y;
    if (p->first != q->first) return p->first < q->first ? -1 : 1;
    if (p->len != q->len) return p->len > q->len ? -1 : 1;   // longest first
    return p->a.id < q->a.id ? -1 : p->a.id > q->a.id;
}

static void tj_added(Tokenizer *t, const cJSON *added) {
    TokJson *j = t->js;
    int64_t n = cJSON_GetArraySize(added), k = 0;
    TjAddedSort *tmp = MALLOC_CHECK((size_t)(n ? n : 1) * sizeof(TjAddedSort));
    for (const cJSON *c = added->child; c; c = c->next, k++) {
        int32_t id = (int32_t)tj_id(jget(c, "id"));
        tmp[k].a = (TjAdded){id, (uint8_t)jbool(c, "special", 0), (uint8_t)jbool(c, "lstrip", 0),
                             (uint8_t)jbool(c, "rstrip", 0), (uint8_t)jbool(c, "single_word", 0)};
        tmp[k].first = (unsigned char)t->bytes[t->off[id]];
        tmp[k].len = tok_len(t, id);
        if (tmp[k].a.special) tok_special_add_id(t, id);
    }
    qsort(tmp, (size_t)n, sizeof(TjAddedSort), tj_added_cmp);
    j->added = MALLOC_CHECK((size_t)(n ? n : 1) * sizeof(TjAdded));
    j->n_added = n;
    int64_t at = 0;
    for (int b = 0; b <= 256; b++) {
        j->added_at[b] = at;
        while (b < 256 && at < n && tmp[at].first == b) { j->starts[b] = 1; at++; }
    }
    for (k = 0; k < n; k++) j->added[k] = tmp[k].a;
    free(tmp);
}

// The post-processor's template for one sequence: the ids before and after it.
static int tj_post(const TjLoad *L, void *ctx, const cJSON *node, const char *key) {
    Tokenizer *t = ctx;
    TokJson *j = t->js;
    if (!node || cJSON_IsNull(node)) return 0;
    const char *type;
    char sub[160];
    if (tj_type(L, node, key, &type)) return -1;
    if (strcmp(type, "Sequence") == 0) return tj_each(L, t, node, "processors", key, tj_post);
    if (strcmp(type, "ByteLevel") == 0) return 0;   // offsets only
    if (strcmp(type, "TemplateProcessing") != 0) {
        snprintf(sub, sizeof(sub), "%s.type", key);
        return tj_unsupported(L, sub, type);
    }
    const cJSON *single = jget(node, "single"), *specials = jget(node, "special_tokens");
    int seen_a = 0, i = 0;
    j->n_prefix = j->n_suffix = 0;
    for (const cJSON *c = cJSON_IsArray(single) ? single->child : NULL; c; c = c->next, i++) {
        snprintf(sub, sizeof(sub), "%s.single[%d]", key, i);
        const char *seq = jstr(jget(c, "Sequence"), "id"),
                   *sp = jstr(jget(c, "SpecialToken"), "id");
        if (seq) {
            if (strcmp(seq, "A") != 0 || seen_a) return tj_unsupported(L, sub, seq);
            seen_a = 1;
            continue;
        }
        const cJSON *ids = sp ? jget(jget(specials, sp), "ids") : NULL;
        if (!cJSON_IsArray(ids))
            return util_err(L->err, L->errlen, "%s: %s: expected a SpecialToken listed in "
                            "special_tokens with its ids, or Sequence A", L->path, sub);
        for (const cJSON *v = ids->child; v; v = v->next) {
            int64_t id = tj_id(v);
            int *cnt = seen_a ? &j->n_suffix : &j->n_prefix;
            if (id < 0 || id >= t->n_vocab || *cnt == TJ_MAX_TEMPLATE)
                return util_err(L->err, L->errlen, "%s: %s: bad id (or more than %d)", L->path,
                                sub, TJ_MAX_TEMPLATE);
            (seen_a ? j->suffix : j->prefix)[(*cnt)++] = (int32_t)id;
        }
    }
    if (!seen_a)
        return util_err(L->err, L->errlen, "%s: %s.single: no Sequence A", L->path, key);
    return 0;
}

// tokenizer_config.json: bos_token / eos_token, and add_bos_token / add_eos_token, which decide
// (as transformers' Llama tokenizers do) whether BOS / EOS are added whatever the template says.
static int tj_config(const TjLoad *L, Tokenizer *t, const cJSON *cfg) {
    TokJson *j = t->js;
    const char *bos = jtoken(cfg, "bos_token"), *eos = jtoken(cfg, "eos_token");
    j->bos = bos ? tok_vmap_get(t, bos, strlen(bos)) : (j->n_prefix ? j->prefix[0] : -1);
    j->eos =
        eos ? tok_vmap_get(t, eos, strlen(eos)) : (j->n_suffix ? j->suffix[j->n_suffix - 1] : -1);
    if (bos && j->bos < 0)
        return util_err(L->err, L->errlen, "%s: bos_token: \"%s\" is not a token", L->path, bos);
    if (eos && j->eos < 0)
        return util_err(L->err, L->errlen, "%s: eos_token: \"%s\" is not a token", L->path, eos);
    const cJSON *ab = jget(cfg, "add_bos_token"), *ae = jget(cfg, "add_eos_token");
    if (cJSON_IsBool(ab)) {
        j->n_prefix = 0;
        if (cJSON_IsTrue(ab)) {
            if (j->bos < 0)
                return util_err(L->err, L->errlen, "%s: add_bos_token: there is no bos_token",
                                L->path);
            j->prefix[j->n_prefix++] = j->bos;
        }
    }
    if (cJSON_IsBool(ae)) {
        j->n_suffix = 0;
        if (cJSON_IsTrue(ae)) {
            if (j->eos < 0)
                return util_err(L->err, L->errlen, "%s: add_eos_token: there is no eos_token",
                                L->path);
            j->suffix[j->n_suffix++] = j->eos;
        }
    }
    return 0;
}

enum { DEC_BYTELEVEL, DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP, DEC_METASPACE };

typedef struct {
    int kind;
    const char *a, *b;   // Replace: a -> b; Metaspace: a the replacement
} TjDec;

// Flattens the decoder into steps; Strip is kept as the decoder's whole-text strip (it must come
// after Fuse, where HF applies it to the joined text).
static int tj_decoder_steps(const TjLoad *L, TokJson *j, const cJSON *node, const char *key,
                            TjDec *d, int *n, int *fused) {
    const char *type;
    char sub[160];
    if (tj_type(L, node, key, &type)) return -1;
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *arr = jget(node, "decoders");
        int i = 0;
        for (const cJSON *c = cJSON_IsArray(arr) ? arr->child : NULL; c; c = c->next, i++) {
            snprintf(sub, sizeof(sub), "%s.decoders[%d]", key, i);
            if (tj_decoder_steps(L, j, c, sub, d, n, fused)) return -1;
        }
        return 0;
    }
    if (*n == TJ_MAX_STEPS)
        return util_err(L->err, L->errlen, "%s: %s: more than %d decoder steps", L->path, key,
                        TJ_MAX_STEPS);
    TjDec *s = &d[*n];
    memset(s, 0, sizeof(*s));
    if (strcmp(type, "Fuse") == 0) { *fused = 1; return 0; }
    if (strcmp(type, "Strip") == 0) {
        const char *content = jstr(node, "content");
        const cJSON *a = jget(node, "start"), *b = jget(node, "stop");
        if (!*fused) return tj_unsupported(L, key, "Strip before Fuse");
        if (!content || !content[0] || strlen(content) >= sizeof(j->strip) || !cJSON_IsNumber(a) ||
            !cJSON_IsNumber(b))
            return util_err(L->err, L->errlen, "%s: %s: expected content, start and stop",
                            L->path, key);
        j->nstrip = strlen(content);
        memcpy(j->strip, content, j->nstrip);
        j->strip_start = a->valueint;
        j->strip_stop = b->valueint;
        return 0;
    }
    if (*fused) return tj_unsupported(L, key, "a per-token step after Fuse");
    if (strcmp(type, "ByteLevel") == 0) {
        if (!j->byte_level)
            return tj_unsupported(L, key, "ByteLevel without a ByteLevel pre-tokenizer");
        s->kind = DEC_BYTELEVEL;
    } else if (strcmp(type, "ByteFallback") == 0) {
        s->kind = DEC_BYTEFALLBACK;
    } else if (strcmp(type, "Replace") == 0) {
        int is_regex;
        s->kind = DEC_REPLACE;
        if (tj_pattern(L, node, key, &s->a, &is_regex)) return -1;
        snprintf(sub, sizeof(sub), "%s.pattern", key);
        if (is_regex) return tj_unsupported(L, sub, "Regex");
        if (!s->a[0] || !(s->b = jstr(node, "content")))
            return util_err(L->err, L->errlen, "%s: %s: expected a pattern and a content", L->path,
                            key);
    } else if (strcmp(type, "Metaspace") == 0) {
        const char *scheme = jstr(node, "prepend_scheme");
        s->kind = DEC_METASPACE;
        s->a = jstr(node, "replacement");
        if (!s->a || !s->a[0]) s->a = "\xe2\x96\x81";
        int prepend = scheme ? strcmp(scheme, "never") != 0 : jbool(node, "add_prefix_space", 1);
        if (prepend) { j->strip[0] = ' '; j->nstrip = 1; j->strip_start = 1; }
    } else {
        snprintf(sub, sizeof(sub), "%s.type", key);
        return tj_unsupported(L, sub, type);
    }
    (*n)++;
    return 0;
}

static void tj_replace_all(TokBytes *dst, const char *p, size_t n, const char *a, const char *b) {
    size_t na = strlen(a), at = 0;
    const char *f;
    while (at < n && (f = memmem(p + at, n - at, a, na))) {
        tok_bytes_put(dst, p + at, (size_t)(f - p) - at);
        tok_bytes_puts(dst, b);
        at = (size_t)(f - p) + na;
    }
    tok_bytes_put(dst, p + at, n - at);
}

// Each token's decoded bytes: the decoder's per-token steps on its model-space bytes (added
// tokens outside model.vocab are their text).
static int tj_decoder(const TjLoad *L, Tokenizer *t, const cJSON *node) {
    TokJson *j = t->js;
    TjDec d[TJ_MAX_STEPS];
    int n = 0, fused = 0;
    if (!node || cJSON_IsNull(node)) return tj_unsupported(L, "decoder", "null");
    if (tj_decoder_steps(L, j, node, "decoder", d, &n, &fused)) return -1;
    TokBytes all = {0}, x = {0}, y = {0};
    j->doff = MALLOC_CHECK((size_t)(t->n_vocab + 1) * sizeof(int64_t));
    for (int64_t id = 0; id < t->n_vocab; id++) {
        j->doff[id] = (int64_t)all.n;
        x.n = 0;
        tok_bytes_put(&x, t->bytes + t->off[id], tok_len(t, id));
        for (int k = 0; k < n && !(t->flags[id] & FLAG_NOTMODEL); k++) {
            y.n = 0;
            if (d[k].kind == DEC_BYTELEVEL) continue;   // model space is already the bytes
            if (d[k].kind == DEC_REPLACE) tj_replace_all(&y, x.data, x.n, d[k].a, d[k].b);
            else if (d[k].kind == DEC_METASPACE) tj_replace_all(&y, x.data, x.n, d[k].a, " ");
            else {   // ByteFallback
                unsigned v;
                char tail;
                if (x.n == 6 && sscanf(x.data, "<0x%2X>%c", &v, &tail) == 1 && x.data[5] == '>') {
                    unsigned char c = (unsigned char)v;
                    tok_bytes_put(&y, &c, 1);
                } else {
                    tok_bytes_put(&y, x.data, x.n);
                }
            }
            TokBytes sw = x; x = y; y = sw;
        }
        tok_bytes_put(&all, x.data, x.n);
    }
    j->doff[t->n_vocab] = (int64_t)all.n;
    j->dbytes = all.data ? all.data : CALLOC_CHECK(1, 1);
    tok_bytes_free(&x);
    tok_bytes_free(&y);
    return 0;
}

static int tj_build(const TjLoad *L, const TjLoad *C, Tokenizer *t, const cJSON *root,
                    const cJSON *cfg) {
    TokJson *j = t->js;
    const cJSON *model = jget(root, "model"), *added = jget(root, "added_tokens");
    const cJSON *empty = cJSON_CreateArray();
    int st = 0;
    if (!cJSON_IsObject(root))
        st = util_err(L->err, L->errlen, "%s: expected a JSON object", L->path);
    if (!st && !cJSON_IsObject(model))
        st = util_err(L->err, L->errlen, "%s: model: missing (expected an object)", L->path);
    if (!st && added && !cJSON_IsNull(added) && !cJSON_IsArray(added))
        st = util_err(L->err, L->errlen, "%s: added_tokens: expected an array", L->path);
    if (!cJSON_IsArray(added)) added = empty;
    if (!st) st = tj_model_opts(L, j, model);
    if (!st) st = tj_pre(L, j, jget(root, "pre_tokenizer"), "pre_tokenizer");
    if (!st) st = tj_norm(L, j, jget(root, "normalizer"), "normalizer");
    if (!st) st = tj_tokens(L, t, jget(model, "vocab"), added);
    if (!st) st = tj_merges(L, t, jget(model, "merges"));
    if (!st) st = tj_byte_tokens(L, t, model);
    if (!st) tj_added(t, added);
    if (!st) st = tj_post(L, t, jget(root, "post_processor"), "post_processor");
    if (!st) st = tj_config(C, t, cfg);
    if (!st) st = tj_decoder(L, t, jget(root, "decoder"));
    cJSON_Delete((cJSON *)empty);
    if (st) return st;
    t->eot = j->eos;
    tok_mark_whole(t);
    return 0;
}

static int tj_read_json(const char *path, cJSON **root, char *err, size_t errlen) {
    char *text;
    size_t len;
    if (tok_read_file(path, TOK_MAX_JSON_FILE, &text, &len, err, errlen)) return -1;
    return tok_json_parse(path, text, len, root, err, errlen);
}

int tok_load_json(Tokenizer **out, const char *json_path, const char *config_path, char *err,
                  size_t errlen) {
    *out = NULL;
    cJSON *root = NULL, *cfg = NULL;
    if (tj_read_json(json_path, &root, err, errlen)) return -1;
    if (config_path && tj_read_json(config_path, &cfg, err, errlen)) {
        cJSON_Delete(root);
        return -1;
    }
    if (cfg && !cJSON_IsObject(cfg)) {
        cJSON_Delete(root);
        cJSON_Delete(cfg);
        return util_err(err, errlen, "%s: expected a JSON object", config_path);
    }
    Tokenizer *t = tok_new();
    t->js = CALLOC_CHECK(1, sizeof(TokJson));
    t->js->bos = t->js->eos = t->js->unk = -1;
    TjLoad L = {json_path, err, errlen}, C = {config_path ? config_path : json_path, err, errlen};
    int st = tj_build(&L, &C, t, root, cfg);
    cJSON_Delete(root);
    cJSON_Delete(cfg);
    if (st) { tok_free(t); return st; }
    *out = t;
    return 0;
}


const char *tokjson_token(const Tokenizer *t, int32_t id, size_t *len) {
    if (len) *len = (size_t)(t->js->doff[id + 1] - t->js->doff[id]);
    return t->js->dbytes + t->js->doff[id];
}
int32_t tokjson_bos(const Tokenizer *t) { return t->js->bos; }
int32_t tokjson_eos(const Tokenizer *t) { return t->js->eos; }
