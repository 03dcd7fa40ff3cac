// tokfile: binary token files for pretraining text (the sft program's plain-text mode and PPO-ptx's
// pretraining mix). Text is tokenized once into a file that is memory-mapped when read and served
// as windows of T+1 tokens: T inputs and their T next-token targets.
//
// File layout (little-endian; 64-byte header, then the tokens):
//   off  size
//     0     8  magic "RLHFTOK\0"
//     8     4  u32 version (1)
//    12     4  u32 token_bytes: 2 (uint16 ids) when vocab_size <= 65536, else 4 (uint32)
//    16     8  u64 vocab_size V (every id < V)
//    24     8  u64 n_tokens
//    32     8  u64 n_docs (documents, each followed by the end token when written from text)
//    40     8  u64 vocab_hash: tokfile_vocab_hash of the tokenizer (0: unknown)
//    48     8  u64 checksum of the token bytes (below)
//    56     8  u64 header checksum: data_hash_mix(FNV-1a of bytes 0..56)
//    64        n_tokens * token_bytes bytes of ids; the file ends there
// Token checksum: the token bytes are cut into chunks of TOKFILE_CHUNK_BYTES (the last may be
// shorter); each chunk's hash is a word hash of its 8-byte little-endian words (a short tail zero-
// padded), and the chunk hashes are folded in order. Chunks let the reader verify in parallel,
// with the same result for any thread count.
//
// Writing is atomic: tokens go to "<path>.tmp.<pid>", which is fsynced, then renamed over path
// and the directory fsynced; on any failure the temporary file is removed and an existing file at
// path is left as it was.
//
// Text -> tokens (tokfile_write_text): each input file is streamed in pieces of about chunk_bytes
// (never read whole). Documents are separated by the text "<|endoftext|>" inside a file and by
// the end of each file; every document is encoded and followed by the end token (by id); documents
// that are empty or only ASCII whitespace (up to 64 MiB of it) are skipped. A document is cut into
// pieces only where the cut cannot change GPT-2's pre-tokenization: at a ' ' or '\n' whose
// neighbours on both sides are printable ASCII (e.g. "word word" or "end.\nNext"), so the file
// holds exactly the ids that encoding each document whole would give. A document with no such cut
// point in 64 MiB is cut at a UTF-8 character boundary (the pieces there may differ from a
// whole-document encoding). Pieces are encoded in parallel (OpenMP) and written in order.
//
// Reading (tokfile_open) maps the file and validates everything before use: size >= header,
// magic, version, token_bytes vs V, header checksum, file size == 64 + n_tokens * token_bytes,
// the token checksum, every id < V, and optionally the vocabulary: V and vocab_hash equal to the
// tokenizer's, V no larger than the model's. Any failure is a one-line error naming the file.
// (A file truncated by another process *while* it is mapped can still raise SIGBUS: do not rewrite
// a file in place while a run reads it; the atomic writer never does.)
//
// Windows (TokfileIter): the file's windows are [s, s+T+1) for s = phase + k*T, k = 0..K-1,
// K = (n_tokens - 1 - phase) / T, so consecutive windows share one token and every token after
// the phase is a target exactly once per epoch. SEQUENTIAL: phase 0, windows in file order.
// SHUFFLED: per epoch e, an Rng seeded from (seed, e) draws the phase in [0, min(T, n_tokens - T))
// and the order of the K windows (a keyed Feistel permutation: no memory per window, O(1) to
// seek). Batches always have B rows, all of length T, every position with a target; an epoch's
// last windows and the next epoch's first may share a batch. Windows may span documents (the model
// attends across the end token, as in GPT-2's pretraining).
//
// Ownership: a TokFile owns its mapping (tokfile_close). A TokfileIter points at its TokFile
// (which must outlive it) and allocates nothing. Errors: 0, or -1 with a one-line message in err
// naming the file. Out-of-memory aborts with file:line. No global state.
#ifndef TOKFILE_H
#define TOKFILE_H
#include "data.h"
#include "tokenizer.h"
#include <stddef.h>
#include <stdint.h>

#define TOKFILE_MAGIC "RLHFTOK"       // 7 characters and a NUL: the first 8 bytes
#define TOKFILE_VERSION 1
#define TOKFILE_HEADER_BYTES 64
#define TOKFILE_CHUNK_BYTES (1 << 20)

// A hash of the vocabulary (every token's bytes, in id order), stored in token files so that a
// file is only read with the vocabulary it was written with.
uint64_t tokfile_vocab_hash(const Tokenizer *tok);

// ---------------------------------------------------------------------------------------------
// writing

typedef struct TokfileWriter TokfileWriter;

// Starts a file of ids < vocab_size (vocab_hash: tokfile_vocab_hash, or 0 when unknown).
int tokfile_writer_open(TokfileWriter **out, const char *path, int64_t vocab_size,
                        uint64_t vocab_hash, char *err, size_t errlen);
// Appends ids[0..n); -1 (nothing appended) when an id is outside 0..V-1.
int tokfile_writer_add(TokfileWriter *w, const int32_t *ids, size_t n, char *err, size_t errlen);
// Counts a document that ends here, after appending end_token when it is >= 0.
int tokfile_writer_end_doc(TokfileWriter *w, int32_t end_token, char *err, size_t errlen);
int64_t tokfile_writer_tokens(const TokfileWriter *w);
// Writes the header, fsyncs and renames into place; frees w in all cases. 0 or -1 (then nothing
// at path changed).
int tokfile_writer_commit(TokfileWriter *w, char *err, size_t errlen);
// Removes the temporary file and frees w (NULL is fine).
void tokfile_writer_abort(TokfileWriter *w);

typedef struct {
    int64_t chunk_bytes;   // text per piece (0: 1 MiB; at least 64); tests use small values
} TokfileTextOptions;

typedef struct {
    int64_t n_files, n_docs, n_tokens, n_bytes;   // n_bytes: text read
} TokfileStats;

// Tokenizes the text files paths[0..n) into out_path (see above); opt and stats may be NULL.
int tokfile_write_text(const char *out_path, const Tokenizer *tok, const char *const *paths,
                       size_t n_paths, const TokfileTextOptions *opt, TokfileStats *stats,
                       char *err, size_t errlen);

// ---------------------------------------------------------------------------------------------
// reading

typedef struct {
    char *path;                // owned copy
    const unsigned char *map;  // the whole file, read-only
    size_t map_bytes;
    int token_bytes;           // 2 or 4
    int64_t n_tokens, n_docs, vocab_size;
    uint64_t vocab_hash, checksum;
} TokFile;

// Maps and validates path. tok (may be NULL): V and the vocabulary hash must be the tokenizer's
// (a file whose vocab_hash is 0 is checked by V only); model_vocab (0: unchecked): V <= it.
int  tokfile_open(TokFile *f, const char *path, const Tokenizer *tok, int64_t model_vocab,
                  char *err, size_t errlen);
void tokfile_close(TokFile *f);   // leaves *f zeroed; a zeroed TokFile may be closed
static inline int32_t tokfile_get(const TokFile *f, int64_t i) {   // 0 <= i < n_tokens
    const unsigned char *p = f->map + TOKFILE_HEADER_BYTES + (size_t)i * (size_t)f->token_bytes;
    return f->token_bytes == 2 ? (int32_t)(p[0] | p[1] << 8)
                               : (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 |
                                           (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
}
// Copies ids [start, start + n) into out; the range must lie inside the file.
void tokfile_read(const TokFile *f, int64_t start, int64_t n, int32_t *out);

// ---------------------------------------------------------------------------------------------
// windows

typedef enum { TOKFILE_SEQUENTIAL = 0, TOKFILE_SHUFFLED } TokfileOrder;

typedef struct {
    int batch_size;       // B >= 1
    int seq_len;          // T >= 1: positions per row (windows of T+1 tokens)
    TokfileOrder order;
    uint64_t seed;        // SHUFFLED only
} TokfileIterOptions;

typedef struct {
    const TokFile *f;
    TokfileIterOptions opt;
    uint64_t fingerprint;
    int64_t epoch, index;        // index: windows already served in this epoch
    // the current epoch's layout (a function of seed and epoch)
    int64_t phase, n_windows;
    int half_bits;               // Feistel: the permutation acts on 2*half_bits bits
    uint64_t keys[4];
} TokfileIter;

// -1 when the file has fewer than T+1 tokens or the options are bad.
int tokfile_iter_init(TokfileIter *it, const TokFile *f, const TokfileIterOptions *opt,
                      char *err, size_t errlen);
int64_t tokfile_iter_windows(const TokfileIter *it);   // windows in the current epoch
// Fills b (max_B >= B, max_T >= T) with the next B windows, weight w on every position, and moves
// on (into the next epoch when this one ends). A step of A micro-batches has A*B*T targets.
void tokfile_iter_next(TokfileIter *it, DataBatch *b, float w);
void tokfile_iter_cursor(const TokfileIter *it, DataCursor *c);
// Continues from c (same file and B, T, order): -1 when the fingerprint differs or c is out of
// range.
int  tokfile_iter_seek(TokfileIter *it, const DataCursor *c, char *err, size_t errlen);
#endif
