// dpo pairs: the preference data of the `dpo` program, read from the workspace's rankings, and
// the reference log-probabilities stored beside the run.
//
// A DpoSet holds sequences (one per completion of a ranking: the prompt rendered as SFT renders
// it, then encode(response_prefix + completion), then <|endoftext|>; longer than the context: the
// last tokens are kept), and groups of items over them. Pairwise (the default), a ranking of K
// completions gives its C(K,2) ordered pairs, ties skipped, in the order (i, j), i < j, of its
// completions best first: each pair is a group of two items (chosen rank 1, rejected rank 2), so
// the pairs of one 4-wise ranking are exactly the pairs of 6 imported pairwise lines written in
// that order. Listwise, a ranking is one group of its K items with their ranks. The set's
// fingerprint covers every group's items: ranks, tokens and where the response starts, so two
// sets that train alike have equal fingerprints whatever the rankings they came from.
//
// Reference log-probabilities (one double per sequence: a completion shared by several pairs is
// run once) are stored in OUT.DIR/reference_logps.bin:
//     "RLHFDPO1", uint64 train fingerprint, uint64 valid fingerprint, int64 train sequences,
//     int64 valid sequences, then the train sequences' doubles and the valid ones' (little-endian);
// written atomically (a temporary file, fsync, rename). dpo_ref_fingerprint hashes its numbers so
// that a resumed run checks it reads what it trained with.
//
// Errors: 0, or -1 with a one-line message naming the database or file. Ownership: a DpoSet owns
// its arrays (dpo_set_free). No global state.
#ifndef DPO_PAIRS_H
#define DPO_PAIRS_H
#include "dataset.h"
#include "loss.h"
#include "store.h"
#include "tokenizer.h"
#include <stdint.h>

typedef struct { int64_t off; int32_t len, start; } DpoSeq;   // tokens [off, off+len); response
                                                               // tokens from index start (>= 1)
typedef struct { int64_t seq; int rank; } DpoItem;             // rank 1 best, equal = tie
typedef struct { int64_t first; int k; } DpoGroup;             // items [first, first + k)

typedef struct {
    DpoSeq *seq;   int64_t nseq, capseq;
    DpoItem *it;   int64_t ni, capi;
    DpoGroup *g;   int64_t ng, capg;
    TokIds toks;
    double *ref;             // (nseq) reference log-probabilities, NULL until computed or read
    int64_t rankings;        // rankings read (with at least one untied pair)
    int64_t n_tied;          // rankings that are all ties (skipped)
    int64_t truncated;       // sequences longer than the context (their end kept)
    int64_t pairs;           // untied pairs in all
    int max_k, max_len;      // largest group, longest sequence
    int max_ranking_k;       // most completions in a ranking read
    uint64_t hash;           // fingerprint of the groups
} DpoSet;

typedef struct {
    Store *db;
    const char *db_path;     // for messages
    const Dataset *ds;       // prompt rendering
    const Tokenizer *tok;
    const char *response_prefix;
    int max_len;             // the model's context
    int listwise;            // one group per ranking (else its pairs)
    int64_t max_ranking_id;  // rankings with larger ids are left out (added after the run began)
} DpoLoadOptions;

// Reads the rankings of one split ("train", "valid") into *s (zeroed first).
int dpo_set_load(DpoSet *s, const DpoLoadOptions *o, const char *split, char *err,
                 size_t errlen);
void dpo_set_free(DpoSet *s);
// Untied pairs of a group (k = 2 pairs: 1).
int64_t dpo_group_pairs(const DpoSet *s, const DpoGroup *g);

// Writes train's and valid's ref arrays to path atomically.
int dpo_ref_write(const char *path, const DpoSet *train, const DpoSet *valid, char *err,
                  size_t errlen);
// Reads them back into freshly allocated ref arrays. 1 when path is absent, -1 when it does not
// match the sets (other fingerprints or counts) or cannot be read, 0 when read.
int dpo_ref_read(const char *path, DpoSet *train, DpoSet *valid, char *err, size_t errlen);
// FNV-1a over the bytes of both sets' ref arrays.
uint64_t dpo_ref_fingerprint(const DpoSet *train, const DpoSet *valid);
#endif
