// tokenizer: GPT-2 byte-level BPE (encode, decode, load, save), Hugging Face tokenizer.json, and
// a small BPE trainer.
//
// tokenizer.json (common/tokjson.c; the README's "Tokenizers" section lists what is supported):
// byte-level BPE (Llama 3, Qwen2, GPT-2's own file) and SentencePiece-style BPE (Llama 2,
// Mistral) run as Hugging Face's tokenizers runs them, byte for byte: added tokens first (special
// ones only with TOK_ALLOW_SPECIAL, the others always), then normalizers, pre-tokenizers, BPE;
// TOK_ADD_SPECIAL adds the post-processor's BOS/EOS. tok_token and tok_decode give decoded bytes
// (U+2581 as a space, <0xNN> as its byte); tok_find looks up the model's spelling. Anything the
// loader does not support is an error naming the JSON key. tok_save and tok_add_special refuse
// such a tokenizer.
//
// The tokenizer is byte-exact with GPT-2 on GPT-2's own vocab.json + merges.txt (shipped in
// data/gpt2/): text is split by GPT-2's pre-tokenizer pattern
//     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// (PCRE2, UTF + UCP, JIT when available), each piece's UTF-8 bytes are BPE-merged by rank exactly
// as GPT-2's encoder.py does (lowest-ranked adjacent pair first, all its occurrences left to
// right), and every token is the byte string it stands for. Any vocabulary in the same format
// works, whatever its size (e.g. one made by tok_train).
//
// Files: vocab.json and merges.txt of at most 64 MiB each (GPT-2's are 1 MB and 0.5 MB).
// Vocabulary rules checked at load time: token ids are 0..V-1 without gaps or duplicates, every
// token string is in GPT-2's byte-to-unicode alphabet, each of the 256 single bytes has a token
// (so any byte string can be encoded), every merge's two parts and its result are tokens, and no
// merge appears twice. Tokens written "<|name|>" (name of [A-Za-z0-9_]) are special tokens
// (GPT-2 has one: <|endoftext|>, id 50256); tok_add_special registers more.
//
// Bytes that are not valid UTF-8 (PCRE2 needs valid UTF-8): the text is cut at each invalid byte;
// the valid runs are pre-tokenized as usual and each invalid byte is a piece of its own, i.e. its
// single-byte token (each valid run is matched as if it were the whole text, so the pattern's
// lookahead ends at the cut). So decode(encode(x)) == x for every byte string x, and valid UTF-8
// text is encoded exactly as GPT-2 does. (A byte is invalid when it does not start, or is not
// part of, a well-formed UTF-8 sequence: overlong forms, surrogates and code points above
// U+10FFFF included.)
//
// Special tokens inside text are ordinary text unless TOK_ALLOW_SPECIAL is passed: then each
// occurrence of a special token's text becomes its id, and the text between is encoded as usual.
// Without the flag "<|endoftext|>" encodes as GPT-2 (and the npm gpt-3-encoder) do:
// "<|", "endoftext", "|>" -> 27 91 437 1659 5239 91 29.
//
// Whitespace (\s) is PCRE2 10.42's UCP \s: Unicode White_Space (U+0085 included, U+FEFF not),
// as in GPT-2's Python `regex` and OpenAI's tiktoken, plus U+180E. JavaScript's \s (so the npm
// gpt-3-encoder) lacks U+0085 and has U+FEFF; these rare characters next to a space are the only
// known differences (tests/test_tokenizer.c, test_whitespace_choice).
//
// Ownership: a Tokenizer is made by tok_load / tok_train and freed by tok_free. tok_encode and
// tok_decode append to caller-owned growable buffers (TokIds, TokBytes), which the caller frees
// with tok_ids_free / tok_bytes_free (zero-initialise them before first use). Strings returned by
// tok_token belong to the Tokenizer. A loaded Tokenizer is read-only in tok_encode/tok_decode, so
// one Tokenizer may be used by many threads at once; tok_add_special modifies it.
//
// Errors: functions that can fail on input return 0, or -1 with a one-line message naming the file
// (and line) and the problem in err[errlen] (util_err; err may be NULL). Out of memory ends the
// process with file:line (util's checked allocators). Nothing here uses global state.
#ifndef TOKENIZER_H
#define TOKENIZER_H
#include <stddef.h>
#include <stdint.h>

// Flags for tok_encode.
#define TOK_ALLOW_SPECIAL 1u   // recognise special tokens' text (e.g. "<|endoftext|>") in the input
#define TOK_ADD_SPECIAL 2u     // tokenizer.json: add what the post-processor adds (BOS, EOS);
                               // GPT-2's two files have no post-processor: nothing is added

typedef struct Tokenizer Tokenizer;

// Growable buffers the caller owns. Zero-initialise ({0}); encode/decode append; free with
// tok_ids_free / tok_bytes_free (which leave them empty and reusable). Set n = 0 to reuse.
typedef struct {
    int32_t *ids;   // [n] token ids
    size_t n, cap;
} TokIds;
typedef struct {
    char *data;     // [n] bytes, followed by a NUL that is not counted in n
    size_t n, cap;
} TokBytes;
void tok_ids_free(TokIds *v);
void tok_bytes_free(TokBytes *b);

// Loads dir/tokenizer.json (with dir/tokenizer_config.json when present) when there is one, else
// dir/vocab.json + dir/merges.txt, or else the older names dir/encoder.json + dir/vocab.bpe.
// On success *out owns a new Tokenizer (free with tok_free); on error *out is NULL.
int tok_load(Tokenizer **out, const char *dir, char *err, size_t errlen);
// Loads a Hugging Face tokenizer.json; config_path (tokenizer_config.json) may be NULL.
int tok_load_json(Tokenizer **out, const char *json_path, const char *config_path, char *err,
                  size_t errlen);
// Same with explicit paths.
int tok_load_files(Tokenizer **out, const char *vocab_path, const char *merges_path, char *err,
                   size_t errlen);
void tok_free(Tokenizer *t);   // NULL is fine

// Writes dir/vocab.json (ids in order, non-ASCII as \uXXXX like GPT-2's encoder.json) and
// dir/merges.txt ("#version: 0.2" then "a b" per merge in rank order). Each file is written to a
// temporary name, fsynced and renamed, so a failure leaves any previous file intact.
int tok_save(const Tokenizer *t, const char *dir, char *err, size_t errlen);

int64_t tok_vocab_size(const Tokenizer *t);   // V: ids are 0..V-1
int64_t tok_n_merges(const Tokenizer *t);
int32_t tok_eot(const Tokenizer *t);          // <|endoftext|> (tokenizer.json: the EOS) or -1
int32_t tok_bos(const Tokenizer *t);          // tokenizer.json's BOS id, or -1 (GPT-2: none)
int32_t tok_eos(const Tokenizer *t);          // tokenizer.json's EOS, GPT-2's <|endoftext|>, -1
int     tok_is_json(const Tokenizer *t);      // loaded from a tokenizer.json
int     tok_is_special(const Tokenizer *t, int32_t id);
// The bytes of token `id` (not NUL-terminated; *len set), or NULL when id is out of range.
const char *tok_token(const Tokenizer *t, int32_t id, size_t *len);
// The id whose bytes are exactly text[0..len), or -1.
int32_t tok_find(const Tokenizer *t, const void *text, size_t len);

// Registers text[0..len) as a special token. If it is already a token that id is reused,
// otherwise it gets the next id (the vocabulary grows by one). *id (may be NULL) receives it.
int tok_add_special(Tokenizer *t, const void *text, size_t len, int32_t *id, char *err,
                    size_t errlen);

// Appends the ids of text[0..len) (any bytes) to *out. flags: 0 or TOK_ALLOW_SPECIAL. Fails
// only when PCRE2 does (nothing appended).
int tok_encode(const Tokenizer *t, const void *text, size_t len, unsigned flags, TokIds *out,
               char *err, size_t errlen);
// Appends the bytes of ids[0..n) to *out; -1 (nothing appended) on an id outside 0..V-1.
int tok_decode(const Tokenizer *t, const int32_t *ids, size_t n, TokBytes *out, char *err,
               size_t errlen);

// BPE training. Text files are read as bytes, cut at "<|endoftext|>" (a document separator, never
// learned) and pre-tokenized exactly as tok_encode does; merges are then learned greedily: at each
// step the adjacent pair with the highest count over all pieces (every adjacent occurrence,
// overlapping ones too, times the piece's frequency) is merged, all its occurrences left to right.
// Ties are broken by the smaller first id, then the smaller second id (ids: bytes 0..255 in
// GPT-2's order, merges in the order learned), so training is deterministic. The vocabulary is
// the 256 byte tokens (GPT-2's ids), then one token per merge, then <|endoftext|> as the last id;
// a merge whose bytes are already a token reuses that id (so merges may outnumber V - 257).
// Text files: at most 4 GiB each, read whole.
typedef struct {
    int64_t vocab_size;     // wanted V >= 257: 256 bytes + (V - 257) merges + <|endoftext|>
    int64_t min_frequency;  // stop when the best pair is seen fewer times than this (0: 2)
    int64_t max_bytes;      // read at most this many bytes of text over all files (0: no limit)
    // called (when set) after each file read ("files", k, n_files) and each merge learned
    // ("tokens", vocabulary so far, vocab_size): for a progress line
    void (*progress)(void *ctx, const char *phase, int64_t done, int64_t total);
    void *progress_ctx;
} TokTrainOptions;
// Trains on the files paths[0..n_paths). When the text has too few distinct pairs the vocabulary
// is smaller than asked (tok_vocab_size tells). Writes out_dir/vocab.json + merges.txt when
// out_dir is not NULL (the directory must exist); returns the Tokenizer in *out when out is not
// NULL (free with tok_free).
int tok_train(const char *const *paths, size_t n_paths, const TokTrainOptions *opt,
              const char *out_dir, Tokenizer **out, char *err, size_t errlen);
#endif
