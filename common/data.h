// data: what every data loader shares. The batch it fills (DataBatch: a ModelBatch with its own
// buffers), the normaliser that makes the loss of an optimizer step a mean over the target tokens
// of all its micro-batches, the cursor that lets training resume on exactly the same batches, and
// the hash the loaders use for splits, fingerprints and vocabularies.
//
// The loaders: dataset.h (prompt/response and chat examples for SFT: JSONL or in memory, masks,
// truncation, splits, length-bucketed batches) and tokfile.h (binary token files of pretraining
// text: memory-mapped windows of T+1 tokens).
//
// Next-token layout, the same for both loaders: a sequence of n tokens x[0..n) becomes one row of
// n-1 positions, tokens x[0..n-1) with targets x[1..n) (the last token is only a target, never an
// input, so a model with T positions trains on sequences of up to T+1 tokens). A position whose
// target carries no loss has target -1 and weight 0; padding has token 0, target -1, weight 0.
//
// Loss weights: the model's loss is sum(w * CE). For the loss of an optimizer step of A
// micro-batches to be the mean over its target tokens, every weight is 1/N with N the number of
// target tokens in all A micro-batches together (not per micro-batch: that would weigh a token of
// a short micro-batch more). The loaders can count N before serving the batches (peek), or the
// caller normalises filled batches with data_batch_normalise.
//
// Ownership: the caller owns DataBatch buffers (data_batch_init / data_batch_free). Nothing here
// keeps global state. Out-of-memory aborts with file:line (util.h).
#ifndef DATA_H
#define DATA_H
#include "checkpoint.h"
#include "hash.h"
#include "model.h"
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int max_B, max_T;      // capacity, fixed by data_batch_init
    int B, T;              // rows of the current batch and its padded length (its longest row)
    int32_t *tokens;       // (B,T) row-major with row stride T (the current T), right-padded
    int32_t *lengths;      // (B) real positions of each row, 1..T
    int32_t *targets;      // (B,T) next token, or -1 (no loss here, or padding)
    float *weights; // (B,T) loss weight: the weight given to *_next where targets >= 0, else 0
    int64_t *source;       // (B) where each row came from: example index (dataset), first token
                           //     of the window (tokfile)
    int64_t n_targets;     // positions with targets >= 0 in this batch
} DataBatch;

// Allocates room for batches of up to max_B rows of max_T positions (aborts when out of memory).
void data_batch_init(DataBatch *b, int max_B, int max_T);
void data_batch_free(DataBatch *b);   // leaves *b zeroed; a zeroed DataBatch may be freed
// The ModelBatch view of b (pointers into b: valid until b is refilled or freed).
ModelBatch data_batch_model(const DataBatch *b);
// Sets every weight where targets >= 0 to w.
void data_batch_set_weight(DataBatch *b, float w);
// Gradient accumulation: counts the target tokens N of batches[0..n) and sets every weight to 1/N,
// so that summing the micro-batches' losses gives the mean over the whole step. Returns N (when
// N is 0 the weights are left 0).
int64_t data_batch_normalise(DataBatch *batches, int n);

// Where a loader stands, enough to continue with the same batches in the same order: the order of
// an epoch is a pure function of (seed, epoch) and the data, so no generator state is needed.
typedef struct {
    int64_t epoch;          // full passes already made
    int64_t index;          // batches (dataset) or windows (tokfile) already served in this epoch
    uint64_t seed;          // the shuffle seed the loader was created with
    uint64_t fingerprint;   // hash of the data and of every setting the order depends on; a
                            // loader refuses a cursor whose fingerprint differs from its own
} DataCursor;

// Stores the cursor as trainer-state ints "<prefix>.epoch", ".index", ".seed", ".fingerprint"
// (the last two as the int64 with the same bits), for ckpt_save; and reads it back. prefix: at most
// 40 characters. 0, or -1 with a message (a missing entry is named).
int data_cursor_save(const DataCursor *c, CkptTrainerState *st, const char *prefix,
                     char *err, size_t errlen);
int data_cursor_load(DataCursor *c, const CkptTrainerState *st, const char *prefix,
                     char *err, size_t errlen);

#endif
