// tokenizer_impl.h: the parts of the tokenizer module that its two files share, private to them:
// common/tokenizer.c (the Tokenizer, GPT-2's two files, BPE, the trainer) and common/tokjson.c
// (Hugging Face tokenizer.json). Nothing else includes it; the module's API is tokenizer.h.
// Ownership and errors as in tokenizer.h.
#ifndef TOKENIZER_IMPL_H
#define TOKENIZER_IMPL_H
#include "tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <cjson/cJSON.h>
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#define TOK_MAX_VOCAB ((int64_t)1 << 30)  // ids are int32_t; this leaves room for hash tables
#define N_CP 324                          // byte-level alphabet is U+0021 .. U+0143
#define FLAG_SPECIAL 1u
#define FLAG_WHOLE 2u      // BPE(token's bytes) == [token]: a piece equal to it needs no merging
#define FLAG_NOTMODEL 4u   // tokenizer.json: an added token outside model.vocab (BPE never gives)
#define TOK_GPT2_PATTERN \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

typedef struct {
    pcre2_code *re;
    int jit;   // 1 when JIT compilation succeeded
} TokRegex;

typedef struct {
    uint64_t key;   // a << 32 | b, UINT64_MAX when the slot is empty
    int64_t rank;   // key and rank side by side: one cache line per probe
} PairSlot;

struct Tokenizer {
    int64_t n_vocab;          // V
    char *bytes;              // every token's bytes back to back
    int64_t *off;             // [V+1] token i is bytes[off[i] .. off[i+1])
    uint8_t *flags;           // [V] FLAG_SPECIAL | FLAG_WHOLE
    int32_t *vmap;            // [vmask+1] open addressing: token bytes -> id, -1 empty
    uint64_t vmask;
    int64_t n_merges;         // M
    int32_t *m_a, *m_b, *m_res;   // [M] merge r joins m_a[r], m_b[r] into m_res[r]
    PairSlot *pairs;          // [pmask+1] open addressing: pair -> rank
    uint64_t pmask;
    int32_t byte_tok[256];    // the token of each single byte
    int32_t *special;         // [n_special] ids of special tokens
    int64_t n_special;
    int32_t eot;              // <|endoftext|> or -1
    uint16_t byte_cp[256];    // byte-level alphabet
    int16_t cp_byte[N_CP];
    uint8_t base_order[256];
    TokRegex rx;
    struct TokJson *js;       // tokenizer.json's pipeline; NULL for GPT-2's two-file format
};

typedef struct {
    int32_t rank;
    int64_t pos;   // index of the pair's left symbol in the piece
} HeapEnt;

typedef struct {   // scratch space of one encode call, grown as needed
    int32_t *sym;          // [n] symbol ids, -1 once merged into its left neighbour
    int64_t *next, *prev;  // [n] linked list over live symbols, -1 at the ends
    HeapEnt *heap;         // [3n] candidate pairs
    int64_t *defer;        // [2n] left positions of pairs created in the current round
    size_t cap;
} Scratch;

static inline size_t tok_len(const Tokenizer *t, int32_t id) {
    return (size_t)(t->off[id + 1] - t->off[id]);
}

// tokenizer.c's helpers that tokjson.c uses
const char *tok_show(char buf[200], const void *p, size_t n);   // printable form for messages
int tok_read_file(const char *path, int64_t max, char **data, size_t *len, char *err,
                  size_t errlen);
int tok_json_parse(const char *path, char *text, size_t len, cJSON **root, char *err,
                   size_t errlen);   // frees text
void tok_bytes_reserve(TokBytes *b, size_t extra);
void tok_bytes_put(TokBytes *b, const void *p, size_t n);
void tok_bytes_puts(TokBytes *b, const char *s);
void tok_ids_push(TokIds *v, int32_t id);
void tok_regex_free(TokRegex *rx);
Tokenizer *tok_new(void);
int32_t tok_vmap_get(const Tokenizer *t, const void *p, size_t n);
int32_t tok_vmap_build(Tokenizer *t, int32_t *first);
void tok_pairs_alloc(Tokenizer *t, int64_t n_merges);
int32_t tok_pairs_insert(Tokenizer *t, int32_t rank);
void tok_scratch_reserve(Scratch *s, size_t n);
void tok_scratch_free(Scratch *s);
void tok_bpe_merge(const Tokenizer *t, size_t n, Scratch *s, int immediate, TokIds *out);
void tok_special_add_id(Tokenizer *t, int32_t id);
void tok_mark_whole(Tokenizer *t);
int tok_unbyte(const Tokenizer *t, const unsigned char *s, size_t n, TokBytes *b, long *bad_cp);

// tokjson.c's side (t->js set)
void tokjson_free(struct TokJson *j);
void tokjson_model(const Tokenizer *t, const unsigned char *p, size_t n, Scratch *s, TokIds *out);
int tokjson_encode(const Tokenizer *t, const unsigned char *s, size_t len, unsigned flags,
                   TokIds *out, char *err, size_t errlen);
int tokjson_decode(const Tokenizer *t, const int32_t *ids, size_t n, TokBytes *out);
const char *tokjson_token(const Tokenizer *t, int32_t id, size_t *len);   // decoded bytes
int32_t tokjson_bos(const Tokenizer *t);
int32_t tokjson_eos(const Tokenizer *t);
#endif
