// tokfile: binary token files (format, writer, text tokenizer, validating reader, windows); the
// rules are in tokfile.h.
#define _GNU_SOURCE   // memmem
#include "tokfile.h"
#include "rng.h"
#include "util.h"
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tokfile.c assumes a little-endian host (the file format is little-endian)"
#endif

#define SEP "<|endoftext|>"
#define SEP_LEN 13
#define MAX_PIECE_BUF (64 << 20)   // longest document stretch without a safe cut point

static uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// Hash of one chunk of token bytes: 8-byte little-endian words, a short tail zero-padded.
static uint64_t chunk_hash(const unsigned char *p, size_t n) {
    const uint64_t P1 = 0x9E3779B185EBCA87ULL, P2 = 0xC2B2AE3D27D4EB4FULL;
    uint64_t h = 0x27D4EB2F165667C5ULL ^ (uint64_t)n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = rotl64(h ^ (w * P2), 31) * P1;
    }
    if (i < n) {
        uint64_t w = 0;
        for (size_t j = 0; i + j < n; j++) w |= (uint64_t)p[i + j] << (8 * j);
        h = rotl64(h ^ (w * P2), 31) * P1;
    }
    return data_hash_mix(h);
}

static uint64_t fold_chunk(uint64_t acc, uint64_t chunk) { return data_hash_u64(acc, chunk); }
static uint64_t fold_end(uint64_t acc, uint64_t n_bytes) {
    return data_hash_mix(data_hash_u64(acc, n_bytes));
}

uint64_t tokfile_vocab_hash(const Tokenizer *tok) {
    uint64_t h = DATA_HASH_INIT;
    int64_t V = tok_vocab_size(tok);
    h = data_hash_u64(h, (uint64_t)V);
    for (int64_t i = 0; i < V; i++) {
        size_t len;
        const char *s = tok_token(tok, (int32_t)i, &len);
        h = data_hash_u64(h, (uint64_t)len);
        h = data_hash_bytes(h, s, len);
    }
    h = data_hash_mix(h);
    return h ? h : 1;   // 0 means "unknown"
}

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static uint64_t get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

// ---------------------------------------------------------------------------------------------
// writer

struct TokfileWriter {
    char *path, *tmp;
    FILE *f;
    int64_t vocab_size;
    uint64_t vocab_hash;
    int token_bytes;
    int64_t n_tokens, n_docs;
    unsigned char *chunk;     // [TOKFILE_CHUNK_BYTES] token bytes not yet written
    size_t chunk_n;
    uint64_t acc;             // folded chunk hashes
    int failed;               // a write failed: only abort/commit (which fails) remain
};


// fsync of the directory holding path, so a rename is durable.
static int fsync_parent(const char *path) {
    char *copy = STRDUP_CHECK(path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    free(copy);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int tokfile_writer_open(TokfileWriter **out, const char *path, int64_t vocab_size,
                        uint64_t vocab_hash, char *err, size_t errlen) {
    *out = NULL;
    if (vocab_size < 1 || vocab_size > ((int64_t)1 << 31))
        return util_err(err, errlen, "%s: bad vocabulary size %lld", path, (long long)vocab_size);
    TokfileWriter *w = CALLOC_CHECK(1, sizeof *w);
    w->path = STRDUP_CHECK(path);
    size_t n = strlen(path) + 32;
    w->tmp = MALLOC_CHECK(n);
    snprintf(w->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    w->f = fopen(w->tmp, "wb");
    if (!w->f) {
        util_err(err, errlen, "cannot create %s: %s", w->tmp, strerror(errno));
        free(w->path); free(w->tmp); free(w);
        return -1;
    }
    w->vocab_size = vocab_size;
    w->vocab_hash = vocab_hash;
    w->token_bytes = vocab_size <= 65536 ? 2 : 4;
    w->chunk = MALLOC_CHECK(TOKFILE_CHUNK_BYTES);
    w->acc = DATA_HASH_INIT;
    unsigned char zero[TOKFILE_HEADER_BYTES] = {0};
    if (fwrite(zero, 1, sizeof zero, w->f) != sizeof zero) {
        util_err(err, errlen, "cannot write %s: %s", w->tmp, strerror(errno));
        tokfile_writer_abort(w);
        return -1;
    }
    *out = w;
    return 0;
}

static int flush_chunk(TokfileWriter *w, char *err, size_t errlen) {
    if (!w->chunk_n) return 0;
    w->acc = fold_chunk(w->acc, chunk_hash(w->chunk, w->chunk_n));
    if (fwrite(w->chunk, 1, w->chunk_n, w->f) != w->chunk_n) {
        w->failed = 1;
        return util_err(err, errlen, "cannot write %s: %s", w->tmp, strerror(errno));
    }
    w->chunk_n = 0;
    return 0;
}

int tokfile_writer_add(TokfileWriter *w, const int32_t *ids, size_t n, char *err, size_t errlen) {
    if (w->failed) return util_err(err, errlen, "%s: an earlier write failed", w->tmp);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= w->vocab_size)
            return util_err(err, errlen, "%s: id %d is outside the vocabulary (V = %lld)", w->path,
                            ids[i], (long long)w->vocab_size);
    for (size_t i = 0; i < n; i++) {
        if (w->chunk_n == TOKFILE_CHUNK_BYTES && flush_chunk(w, err, errlen)) return -1;
        uint32_t v = (uint32_t)ids[i];
        unsigned char *p = w->chunk + w->chunk_n;
        p[0] = (unsigned char)v;
        p[1] = (unsigned char)(v >> 8);
        if (w->token_bytes == 4) {
            p[2] = (unsigned char)(v >> 16);
            p[3] = (unsigned char)(v >> 24);
        }
        w->chunk_n += (size_t)w->token_bytes;
    }
    w->n_tokens += (int64_t)n;
    return 0;
}

int tokfile_writer_end_doc(TokfileWriter *w, int32_t end_token, char *err, size_t errlen) {
    if (end_token >= 0 && tokfile_writer_add(w, &end_token, 1, err, errlen)) return -1;
    w->n_docs++;
    return 0;
}

int64_t tokfile_writer_tokens(const TokfileWriter *w) { return w->n_tokens; }

void tokfile_writer_abort(TokfileWriter *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    unlink(w->tmp);
    free(w->chunk);
    free(w->path);
    free(w->tmp);
    free(w);
}

int tokfile_writer_commit(TokfileWriter *w, char *err, size_t errlen) {
    if (w->failed) {
        util_err(err, errlen, "%s: an earlier write failed", w->tmp);
        tokfile_writer_abort(w);
        return -1;
    }
    if (flush_chunk(w, err, errlen)) { tokfile_writer_abort(w); return -1; }
    unsigned char h[TOKFILE_HEADER_BYTES] = {0};
    memcpy(h, TOKFILE_MAGIC, 8);
    put_u32(h + 8, TOKFILE_VERSION);
    put_u32(h + 12, (uint32_t)w->token_bytes);
    put_u64(h + 16, (uint64_t)w->vocab_size);
    put_u64(h + 24, (uint64_t)w->n_tokens);
    put_u64(h + 32, (uint64_t)w->n_docs);
    put_u64(h + 40, w->vocab_hash);
    put_u64(h + 48, fold_end(w->acc, (uint64_t)w->n_tokens * (uint64_t)w->token_bytes));
    put_u64(h + 56, data_hash_mix(data_hash_bytes(DATA_HASH_INIT, h, 56)));
    int ok = fseek(w->f, 0, SEEK_SET) == 0 && fwrite(h, 1, sizeof h, w->f) == sizeof h &&
             fflush(w->f) == 0 && fsync(fileno(w->f)) == 0;
    int e = errno;
    int closed = fclose(w->f) == 0;
    w->f = NULL;
    if (!ok || !closed) {
        util_err(err, errlen, "cannot write %s: %s", w->tmp, strerror(ok ? errno : e));
        tokfile_writer_abort(w);
        return -1;
    }
    if (rename(w->tmp, w->path)) {
        util_err(err, errlen, "cannot rename %s to %s: %s", w->tmp, w->path, strerror(errno));
        tokfile_writer_abort(w);
        return -1;
    }
    fsync_parent(w->path);   // best effort: the data itself is already durable
    free(w->chunk);
    free(w->path);
    free(w->tmp);
    free(w);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// text -> tokens

typedef struct {
    FILE *f;
    const char *path;
    char *buf;
    size_t start, n, cap;   // pending bytes are buf[start..n)
    int eof;
    int64_t n_read;
} TextReader;

static int is_graphic(unsigned char c) { return c >= 0x21 && c <= 0x7E; }

// The last safe cut c in [lo, hi] (see tokfile.h), or 0.
static size_t last_safe_cut(const unsigned char *s, size_t lo, size_t hi, size_t n) {
    for (size_t c = hi; c >= lo && c > 0; c--)
        if (c + 1 < n && (s[c] == ' ' || s[c] == '\n') && is_graphic(s[c - 1]) &&
            is_graphic(s[c + 1]))
            return c;
    return 0;
}

// The next piece of text: *out/*len point into the reader's buffer (valid until the next call),
// *end_doc says whether a document ends after it. 1: a piece; 0: the file is done; -1: error.
static int next_piece(TextReader *r, const char **out, size_t *len, int *end_doc, char *err,
                      size_t errlen) {
    for (;;) {
        if (!r->eof && (r->start > 0 || r->n < r->cap)) {
            if (r->start > 0) {   // compact, then fill
                memmove(r->buf, r->buf + r->start, r->n - r->start);
                r->n -= r->start;
                r->start = 0;
            }
            while (!r->eof && r->n < r->cap) {
                size_t got = fread(r->buf + r->n, 1, r->cap - r->n, r->f);
                const char *nul = got ? memchr(r->buf + r->n, 0, got) : NULL;
                if (nul)   // never in text; /dev/zero or a binary file given by mistake
                    return util_err(err, errlen, "%s: a NUL byte at offset %lld: not a text file",
                                    r->path, (long long)(r->n_read + (nul - (r->buf + r->n))));
                r->n += got;
                r->n_read += (int64_t)got;
                if (got == 0) {
                    if (ferror(r->f))
                        return util_err(err, errlen, "cannot read %s: %s", r->path,
                                        strerror(errno));
                    r->eof = 1;
                }
            }
        }
        char *s = r->buf + r->start;
        size_t n = r->n - r->start;
        if (n == 0 && r->eof) return 0;
        const char *sep = memmem(s, n, SEP, SEP_LEN);
        if (sep) {
            *out = s;
            *len = (size_t)(sep - s);
            *end_doc = 1;
            r->start += *len + SEP_LEN;
            return 1;
        }
        if (r->eof) {
            *out = s;
            *len = n;
            *end_doc = 1;
            r->start += n;
            return 1;
        }
        if (r->start > 0) continue;   // room to read more before cutting
        // buffer full, no separator: cut where pre-tokenization cannot change (SEP may start
        // after hi, never before it)
        size_t hi = n - (SEP_LEN - 1) - 1;
        size_t c = last_safe_cut((const unsigned char *)s, 1, hi, n);
        if (!c && r->cap < MAX_PIECE_BUF) {
            r->cap *= 2;
            r->buf = REALLOC_CHECK(r->buf, r->cap);
            continue;
        }
        if (!c) {   // no safe cut in 64 MiB: cut at a UTF-8 character boundary
            c = hi;
            while (c > 1 && ((unsigned char)s[c] & 0xC0) == 0x80) c--;
        }
        *out = s;
        *len = c;
        *end_doc = 0;
        r->start += c;
        return 1;
    }
}

typedef struct {
    size_t off, len;     // bytes in the batch arena
    int end_doc, blank;
    TokIds ids;
    int rc;
    char err[256];   // the message when rc != 0 (pieces are encoded in parallel)
} Piece;

typedef struct {
    char *arena;
    size_t arena_n, arena_cap;
    Piece *p;
    size_t n, cap;
} PieceBatch;

static void batch_push(PieceBatch *b, const char *s, size_t len, int end_doc) {
    if (b->arena_n + len > b->arena_cap) {
        size_t cap = b->arena_cap ? b->arena_cap : (1 << 20);
        while (cap < b->arena_n + len) cap *= 2;
        b->arena = REALLOC_CHECK(b->arena, cap);
        b->arena_cap = cap;
    }
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 256;
        b->p = REALLOC_ARRAY(b->p, b->cap, sizeof(Piece));
    }
    Piece *p = &b->p[b->n++];
    memset(p, 0, sizeof *p);
    memcpy(b->arena + b->arena_n, s, len);
    p->off = b->arena_n;
    p->len = len;
    p->end_doc = end_doc;
    p->blank = 1;
    for (size_t i = 0; i < len && p->blank; i++) {
        unsigned char c = (unsigned char)s[i];
        p->blank = c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
    }
    b->arena_n += len;
}

// Encodes the batch's pieces in parallel and writes them in order. *doc_open: tokens of the
// current document were written (so its end token is due).
static int batch_flush(PieceBatch *b, const Tokenizer *tok, TokfileWriter *w, int *doc_open,
                       TokfileStats *st, char *err, size_t errlen) {
    int64_t n = (int64_t)b->n;
    #pragma omp parallel for schedule(dynamic, 1)
    for (int64_t i = 0; i < n; i++) {
        Piece *p = &b->p[i];
        if (p->blank && p->end_doc) continue;   // may be skipped below; encoded there if not
        p->rc = tok_encode(tok, b->arena + p->off, p->len, 0, &p->ids, p->err, sizeof p->err);
    }
    int rc = 0;
    for (int64_t i = 0; i < n && !rc; i++) {
        Piece *p = &b->p[i];
        if (p->blank && p->end_doc) {
            if (!*doc_open) continue;   // an empty or whitespace-only document: skipped
            p->rc = tok_encode(tok, b->arena + p->off, p->len, 0, &p->ids, p->err, sizeof p->err);
        }
        if (p->rc) { rc = util_err(err, errlen, "tokenizer: %s", p->err); break; }
        if (p->ids.n) {
            if (tokfile_writer_add(w, p->ids.ids, p->ids.n, err, errlen)) { rc = -1; break; }
            *doc_open = 1;
        }
        if (p->end_doc && *doc_open) {
            if (tokfile_writer_end_doc(w, tok_eot(tok), err, errlen)) { rc = -1; break; }
            st->n_docs++;
            *doc_open = 0;
        }
    }
    for (size_t i = 0; i < b->n; i++) tok_ids_free(&b->p[i].ids);
    b->n = 0;
    b->arena_n = 0;
    return rc;
}

int tokfile_write_text(const char *out_path, const Tokenizer *tok, const char *const *paths,
                       size_t n_paths, const TokfileTextOptions *opt, TokfileStats *stats,
                       char *err, size_t errlen) {
    TokfileStats st = {0};
    if (stats) *stats = st;
    if (tok_eot(tok) < 0)
        return util_err(err, errlen,
                        "%s: the tokenizer has no <|endoftext|> token to end documents with",
                        out_path);
    size_t chunk = opt && opt->chunk_bytes > 0 ? (size_t)opt->chunk_bytes : (1 << 20);
    if (chunk < 64) chunk = 64;
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    size_t batch_bytes = (size_t)(threads < 1 ? 1 : threads) * 2 * chunk;
    TokfileWriter *w;
    if (tokfile_writer_open(&w, out_path, tok_vocab_size(tok), tokfile_vocab_hash(tok), err,
                            errlen))
        return -1;
    PieceBatch b = {0};
    TextReader r = {0};
    r.cap = chunk;
    r.buf = MALLOC_CHECK(r.cap);
    int rc = 0, doc_open = 0;
    for (size_t k = 0; k < n_paths && !rc; k++) {
        r.f = fopen(paths[k], "rb");
        r.path = paths[k];
        r.start = r.n = 0;
        r.eof = 0;
        r.n_read = 0;
        if (!r.f) {
            rc = util_err(err, errlen, "cannot open %s: %s", paths[k], strerror(errno));
            break;
        }
        const char *s = NULL;
        size_t len = 0;
        int end_doc = 0, got;
        while ((got = next_piece(&r, &s, &len, &end_doc, err, errlen)) == 1) {
            batch_push(&b, s, len, end_doc);
            if (b.arena_n >= batch_bytes || b.n >= 65536) {
                if (batch_flush(&b, tok, w, &doc_open, &st, err, errlen)) { rc = -1; break; }
            }
        }
        if (got < 0) rc = -1;
        // a file ends its last document (a piece with end_doc always came last, unless the file
        // ended right after a separator or was empty)
        fclose(r.f);
        st.n_files++;
        st.n_bytes += r.n_read;
    }
    if (!rc) rc = batch_flush(&b, tok, w, &doc_open, &st, err, errlen);
    free(b.arena);
    free(b.p);
    free(r.buf);
    if (rc) { tokfile_writer_abort(w); return -1; }
    st.n_tokens = tokfile_writer_tokens(w);
    if (tokfile_writer_commit(w, err, errlen)) return -1;
    if (stats) *stats = st;
    return 0;
}

// ---------------------------------------------------------------------------------------------
// reader

int tokfile_open(TokFile *f, const char *path, const Tokenizer *tok, int64_t model_vocab,
                 char *err, size_t errlen) {
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return util_err(err, errlen, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb)) {
        int e = errno;
        close(fd);
        return util_err(err, errlen, "cannot stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return util_err(err, errlen, "%s is not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    if (size < TOKFILE_HEADER_BYTES) {
        close(fd);
        return util_err(err, errlen, "%s: %zu bytes, too short for a token file (header: %d bytes)",
                        path, size, TOKFILE_HEADER_BYTES);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) return util_err(err, errlen, "cannot map %s: %s", path, strerror(e));
    const unsigned char *h = map;
    f->map = map;
    f->map_bytes = size;
    f->path = STRDUP_CHECK(path);
    uint32_t version = get_u32(h + 8), tb = get_u32(h + 12);
    uint64_t V = get_u64(h + 16), nt = get_u64(h + 24), nd = get_u64(h + 32);
    int rc = 0;
    if (memcmp(h, TOKFILE_MAGIC, 8))
        rc = util_err(err, errlen, "%s: not a token file (bad magic)", path);
    else if (version != TOKFILE_VERSION)
        rc = util_err(err, errlen, "%s: token file version %u, this build reads version %d", path,
                      version, TOKFILE_VERSION);
    else if (get_u64(h + 56) != data_hash_mix(data_hash_bytes(DATA_HASH_INIT, h, 56)))
        rc = util_err(err, errlen, "%s: header checksum mismatch (corrupt header)", path);
    else if (tb != 2 && tb != 4)
        rc = util_err(err, errlen, "%s: bad token size %u (2 or 4)", path, tb);
    else if (V < 1 || V > ((uint64_t)1 << 31))
        rc = util_err(err, errlen, "%s: bad vocabulary size %llu", path, (unsigned long long)V);
    else if ((tb == 2) != (V <= 65536))
        rc = util_err(err, errlen, "%s: %u-byte ids do not match the vocabulary size %llu (2 bytes "
                      "when V <= 65536, else 4)", path, tb, (unsigned long long)V);
    else if (nt != (size - TOKFILE_HEADER_BYTES) / tb || (size - TOKFILE_HEADER_BYTES) % tb)
        rc = util_err(err, errlen, "%s: %s: the header says %llu tokens (%llu bytes) but the file "
                      "holds %zu bytes of tokens", path,
                      nt > (size - TOKFILE_HEADER_BYTES) / tb ? "truncated" : "wrong size",
                      (unsigned long long)nt, (unsigned long long)nt * tb,
                      size - TOKFILE_HEADER_BYTES);
    else if (nd > nt)
        rc = util_err(err, errlen, "%s: bad header: %llu documents in %llu tokens", path,
                      (unsigned long long)nd, (unsigned long long)nt);
    if (rc) { tokfile_close(f); return -1; }
    f->token_bytes = (int)tb;
    f->n_tokens = (int64_t)nt;
    f->n_docs = (int64_t)nd;
    f->vocab_size = (int64_t)V;
    f->vocab_hash = get_u64(h + 40);
    f->checksum = get_u64(h + 48);
    // one pass over the tokens: chunk hashes and the first id >= V, in parallel
    const unsigned char *data = h + TOKFILE_HEADER_BYTES;
    size_t bytes = (size_t)nt * tb,
           n_chunks = (bytes + TOKFILE_CHUNK_BYTES - 1) / TOKFILE_CHUNK_BYTES;
    uint64_t *hashes = MALLOC_CHECK((n_chunks ? n_chunks : 1) * sizeof(uint64_t));
    int64_t *bad = MALLOC_CHECK((n_chunks ? n_chunks : 1) * sizeof(int64_t));
    #pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < (int64_t)n_chunks; c++) {
        size_t off = (size_t)c * TOKFILE_CHUNK_BYTES,
               len = bytes - off < TOKFILE_CHUNK_BYTES ? bytes - off : TOKFILE_CHUNK_BYTES;
        hashes[c] = chunk_hash(data + off, len);
        bad[c] = -1;
        int64_t first = (int64_t)(off / tb), cnt = (int64_t)(len / tb);
        for (int64_t i = 0; i < cnt; i++) {
            uint32_t id = tb == 2 ? (uint32_t)(data[off + 2 * i] | data[off + 2 * i + 1] << 8)
                                  : get_u32(data + off + 4 * i);
            if (id >= V) { bad[c] = first + i; break; }
        }
    }
    uint64_t acc = DATA_HASH_INIT;
    int64_t first_bad = -1;
    for (size_t c = 0; c < n_chunks; c++) {
        acc = fold_chunk(acc, hashes[c]);
        if (first_bad < 0 && bad[c] >= 0) first_bad = bad[c];
    }
    free(hashes);
    free(bad);
    if (fold_end(acc, bytes) != f->checksum)
        rc = util_err(err, errlen, "%s: token checksum mismatch (the file is corrupt)", path);
    else if (first_bad >= 0)
        rc = util_err(err, errlen, "%s: token %lld is id %d, outside the vocabulary (V = %llu)",
                      path, (long long)first_bad, tokfile_get(f, first_bad), (unsigned long long)V);
    else if (tok && tok_vocab_size(tok) != f->vocab_size)
        rc = util_err(err, errlen,
                      "%s: written with a vocabulary of %lld tokens, the tokenizer has %lld", path,
                      (long long)f->vocab_size, (long long)tok_vocab_size(tok));
    else if (tok && f->vocab_hash && f->vocab_hash != tokfile_vocab_hash(tok))
        rc = util_err(err, errlen, "%s: written with a different vocabulary than the tokenizer's "
                      "(same size %lld, other tokens)", path, (long long)f->vocab_size);
    else if (model_vocab > 0 && f->vocab_size > model_vocab)
        rc = util_err(err, errlen, "%s: vocabulary of %lld tokens does not fit the model's %lld",
                      path, (long long)f->vocab_size, (long long)model_vocab);
    if (rc) { tokfile_close(f); return -1; }
    return 0;
}

void tokfile_close(TokFile *f) {
    if (f->map) munmap((void *)f->map, f->map_bytes);
    free(f->path);
    memset(f, 0, sizeof *f);
}

void tokfile_read(const TokFile *f, int64_t start, int64_t n, int32_t *out) {
    if (start < 0 || n < 0 || start + n > f->n_tokens)
        DIE("tokfile_read: [%lld, %lld) outside %s (%lld tokens)", (long long)start,
            (long long)(start + n), f->path, (long long)f->n_tokens);
    const unsigned char *p = f->map + TOKFILE_HEADER_BYTES + (size_t)start * (size_t)f->token_bytes;
    if (f->token_bytes == 2)
        for (int64_t i = 0; i < n; i++) out[i] = (int32_t)(p[2 * i] | p[2 * i + 1] << 8);
    else for (int64_t i = 0; i < n; i++) out[i] = (int32_t)get_u32(p + 4 * i);
}

// ---------------------------------------------------------------------------------------------
// windows

// A keyed permutation of [0, 2^(2h)) (4-round Feistel network).
static uint64_t feistel(const TokfileIter *it, uint64_t x) {
    int h = it->half_bits;
    uint64_t mask = ((uint64_t)1 << h) - 1, L = x >> h, R = x & mask;
    for (int i = 0; i < 4; i++) {
        uint64_t t = R;
        R = L ^ (data_hash_mix(R ^ it->keys[i]) & mask);
        L = t;
    }
    return L << h | R;
}

// The k-th window of the epoch (0 <= k < n_windows): its first token.
static int64_t window_start(const TokfileIter *it, int64_t k) {
    uint64_t x = (uint64_t)k;
    if (it->opt.order == TOKFILE_SHUFFLED) {   // cycle-walk into [0, n_windows)
        do x = feistel(it, x); while (x >= (uint64_t)it->n_windows);
    }
    return it->phase + (int64_t)x * it->opt.seq_len;
}

static void setup_epoch(TokfileIter *it) {
    int64_t n = it->f->n_tokens, T = it->opt.seq_len;
    it->phase = 0;
    if (it->opt.order == TOKFILE_SHUFFLED) {
        Rng r;
        rng_init(&r, data_hash_mix(data_hash_u64(data_hash_u64(DATA_HASH_INIT, it->opt.seed),
                                                 (uint64_t)it->epoch)));
        int64_t span = n - T < T ? n - T : T;   // >= 1 since n >= T+1
        it->phase = (int64_t)rng_below(&r, (uint64_t)span);
        for (int i = 0; i < 4; i++) it->keys[i] = rng_u64(&r);
    }
    it->n_windows = (n - 1 - it->phase) / T;
    int h = 1;
    while (h < 32 && ((uint64_t)1 << (2 * h)) < (uint64_t)it->n_windows) h++;
    it->half_bits = h;
}

int tokfile_iter_init(TokfileIter *it, const TokFile *f, const TokfileIterOptions *opt,
                      char *err, size_t errlen) {
    memset(it, 0, sizeof *it);
    if (opt->batch_size < 1 || opt->seq_len < 1)
        return util_err(err, errlen, "%s: bad batch %d x %d", f->path, opt->batch_size,
                        opt->seq_len);
    if (opt->order != TOKFILE_SEQUENTIAL && opt->order != TOKFILE_SHUFFLED)
        return util_err(err, errlen, "%s: unknown window order %d", f->path, (int)opt->order);
    if (f->n_tokens < (int64_t)opt->seq_len + 1)
        return util_err(err, errlen,
                        "%s: %lld tokens, fewer than one window of %d (seq_len %d + 1)", f->path,
                        (long long)f->n_tokens, opt->seq_len + 1, opt->seq_len);
    it->f = f;
    it->opt = *opt;
    uint64_t h = data_hash_u64(DATA_HASH_INIT, f->checksum);
    h = data_hash_u64(h, (uint64_t)f->n_tokens);
    h = data_hash_u64(h, (uint64_t)f->vocab_size);
    h = data_hash_u64(h, (uint64_t)opt->batch_size);
    h = data_hash_u64(h, (uint64_t)opt->seq_len);
    h = data_hash_u64(h, (uint64_t)opt->order);
    it->fingerprint = data_hash_mix(h);
    setup_epoch(it);
    return 0;
}

int64_t tokfile_iter_windows(const TokfileIter *it) { return it->n_windows; }

void tokfile_iter_next(TokfileIter *it, DataBatch *b, float w) {
    int B = it->opt.batch_size, T = it->opt.seq_len;
    if (B > b->max_B || T > b->max_T)
        DIE("tokfile_iter_next: batch of %d x %d does not fit the DataBatch (%d x %d)", B, T,
            b->max_B, b->max_T);
    b->B = B;
    b->T = T;
    b->n_targets = (int64_t)B * T;
    for (int r = 0; r < B; r++) {
        int64_t s = window_start(it, it->index);
        int32_t *tok = b->tokens + (size_t)r * T, *tgt = b->targets + (size_t)r * T;
        float *wt = b->weights + (size_t)r * T;
        tokfile_read(it->f, s, T, tok);
        memcpy(tgt, tok + 1, (size_t)(T - 1) * sizeof(int32_t));
        tgt[T - 1] = tokfile_get(it->f, s + T);
        for (int t = 0; t < T; t++) wt[t] = w;
        b->lengths[r] = T;
        b->source[r] = s;
        if (++it->index == it->n_windows) {
            it->epoch++;
            it->index = 0;
            setup_epoch(it);
        }
    }
}

void tokfile_iter_cursor(const TokfileIter *it, DataCursor *c) {
    *c = (DataCursor){.epoch = it->epoch, .index = it->index, .seed = it->opt.seed,
                      .fingerprint = it->fingerprint};
}

int tokfile_iter_seek(TokfileIter *it, const DataCursor *c, char *err, size_t errlen) {
    if (c->fingerprint != it->fingerprint)
        return util_err(err, errlen, "%s: the data cursor does not match this token file and "
                        "window settings (fingerprint %016llx, expected %016llx)", it->f->path,
                        (unsigned long long)c->fingerprint, (unsigned long long)it->fingerprint);
    if (c->epoch < 0 || c->index < 0)
        return util_err(err, errlen, "%s: data cursor out of range (epoch %lld, window %lld)",
                        it->f->path, (long long)c->epoch, (long long)c->index);
    TokfileIter t = *it;
    t.opt.seed = c->seed;
    t.epoch = c->epoch;
    setup_epoch(&t);
    if (c->index >= t.n_windows)
        return util_err(
            err, errlen, "%s: data cursor out of range (window %lld of %lld in epoch %lld)",
            it->f->path, (long long)c->index, (long long)t.n_windows, (long long)c->epoch);
    t.index = c->index;
    *it = t;
    return 0;
}
