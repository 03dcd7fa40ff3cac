// Incremental decoding with a KV cache: each sequence of a batch has its own cached length, so
// prompts of different lengths prefill in one packed pass and then decode one token per step.
// A KVCache owns its keys/values and the step activations (allocated once in kv_init, for
// max_B sequences of up to max_T positions, at most max_rows new tokens per call); kv_free
// releases them. The model is only read.
//
// Both block kinds of model.h decode here; what differs (embedding, one layer's step, the final
// norm, the sizes of the step activations) lives in generate.c's table of decoding steps, indexed
// by ModelConfig.arch. Keys and values are cached per KV head (KVH = model_kv_heads, hd =
// model_head_dim; GPT-2: KVH = NH, hd = C / NH), after RoPE for the Llama-style kind, so a
// grouped-query model caches NH / KVH times less than its query heads would need.
// A model with reduced-precision copies (model_lowp_attach) decodes with them: every layer's
// products and the LM head read bf16 or int8 weights and accumulate in fp32.
#ifndef GENERATE_H
#define GENERATE_H
#include "model.h"
#include "sampler.h"

typedef struct {
    int max_B, max_T, max_rows;
    int arch;              // MODEL_ARCH_* of the model the cache was made for
    int L, NH, KVH, hd, C, V;
    int qkv_w, fc_w, act_w;  // widths of a row's qkv, MLP input product and MLP activation
    LowpFormat cache_fmt;  // LOWP_FP32: k, v; LOWP_BF16: k16, v16 (the others NULL)
    int pos_stride;        // positions cached per sequence and head: max_T rounded up to 16
    // (L, max_B, KVH, pos_stride, hd); keys transposed in blocks of 16 positions ((hd, 16) each),
    // values one row of hd per position
    float *k, *v;
    uint16_t *k16, *v16;   // the same in bf16 bits, rounded to nearest even
    int32_t *len;          // (max_B) positions cached per sequence
    float *memory;
    int shared;            // kv_share_memory: the floats but inv_freq lie in another block
    // step activations, max_rows rows each (mean: LayerNorm only; hn_*: per-head q/k RMSNorm)
    float *x, *ln, *mean, *rstd, *qkv, *atty, *fch, *fchg;
    float *hn_in, *hn_out, *hn_rstd;  // (max_rows * NH * hd), ..., (max_rows * NH)
    float *inv_freq;       // (hd / 2) RoPE frequencies (Llama-style only)
    float *head_in;        // (max_B, C) final-norm rows of each sequence's newest token
    float *logits;         // (max_B, V) logits at each sequence's newest position
    float *head_logits;    // (max_B, V) scratch: packed rows of the last call
    int32_t *row_tok, *row_pos, *row_seq;  // (max_rows)
    int32_t *chunk_tok;    // (max_rows) prompt chunk being prefilled
    int32_t *last_row;     // (max_B) row of each sequence's newest token, -1 if none this call
} KVCache;

int kv_init(KVCache *kv, const Model *m, int max_B, int max_T, int max_rows, char *err,
            size_t errlen);
// As kv_init, with the keys and values cached in cache_fmt: LOWP_FP32 (kv_init's), or LOWP_BF16,
// half the memory: each cached value rounded to bf16 (relative error <= 2^-8), attention still
// computed in fp32. LOWP_INT8 is refused.
int kv_init_as(KVCache *kv, const Model *m, int max_B, int max_T, int max_rows,
               LowpFormat cache_fmt, char *err, size_t errlen);
void kv_free(KVCache *kv);
void kv_reset(KVCache *kv);   // forget every sequence
// Forgets every sequence and gives the keys' and values' memory back to the system until the next
// use (util_release_pages): for a cache idle between generations.
void kv_release(KVCache *kv);
// The bytes kv_release gives back: the most a generation makes resident in kv again (0 for a
// shared cache: the pages are the block's owner's).
size_t kv_cache_bytes(const KVCache *kv);
// Moves kv's floats (cache, step activations, logits; not the RoPE frequencies) into block
// (bytes long, 64-byte aligned), for a cache used only while the block's owner does not need it
// (PPO: the policy's activations, dead from its last update to its next scoring forward). Every
// sequence is forgotten; kv's own pages for them stay unused (not resident). 0, or -1 when block
// is smaller than kv_shared_bytes (kv then keeps its own). m: the model kv was made for.
int kv_share_memory(KVCache *kv, const Model *m, float *block, size_t bytes);
// the bytes kv_share_memory moves, for a cache kv_init_as would make with these sizes
size_t kv_shared_bytes(const ModelConfig *c, int max_B, int max_T, int max_rows,
                       LowpFormat cache_fmt);
// Appends n_new[b] tokens (tokens (B, Tc) row-major, the first n_new[b] of row b) to sequence b
// of the cache and runs them through the model. Afterwards kv->logits (B, V) holds, for each b
// with n_new[b] > 0, the logits at its newest position; if all_logits is not NULL it also
// receives every new row's logits in packed order ((sum n_new), V). Returns 0 or -1.
int kv_forward(const Model *m, KVCache *kv, const int32_t *tokens, const int32_t *n_new, int B,
               int Tc, float *all_logits, char *err, size_t errlen);
// kv_forward's attention of layer l alone (for benchmarks): the R rows described by kv->row_seq
// and kv->row_pos, their queries in kv->qkv (row width qkv_w, query heads first), against the
// cache of their sequences' positions 0..row_pos (already filled); out (R, NH * hd).
void kv_attention(float *out, const KVCache *kv, int64_t R, int l);

#define GEN_MAX_STOP 8   // stop tokens besides eot_id

typedef struct {
    int max_new_tokens;     // stop after this many new tokens
    int eot_id;             // stop a sequence at this token (kept in the output); -1: none
    int n_stop;             // and at any of stop_ids[0..n_stop) (end-of-turn tokens: <|im_end|>,
    int32_t stop_ids[GEN_MAX_STOP];   // <|eot_id|>, ...; chat_stop_ids finds them), kept too
    SamplerConfig sampler;
    int (*cancel)(void *); // NULL, or cancel(cancel_user) asked before every decoding step:
    void *cancel_user;      // nonzero ends the call (it returns 1)
    // gen_generate_queue only: 1: a sequence that enters a slot while another slot is still
    // prefilling the same prompt (the same tokens) waits, then takes a copy of that slot's cached
    // prompt and its logits instead of running the prompt again (GRPO's and RLOO's groups: one
    // prefill per group, the rows per call it needs divided by the group's size)
    int share_prompts;
} GenConfig;

// 1 when token ends a sequence under g (eot_id or one of stop_ids).
int gen_is_stop(const GenConfig *g, int32_t token);

// Called for every new token as soon as it is chosen (streaming); may be NULL.
typedef void (*GenCallback)(void *user, int b, int32_t token);

// Generates continuations for B prompts (prompts (B, Tp) right-padded, prompt_lens (B)).
// out (B, max_new_tokens) receives the new tokens, out_lens (B) their count (the end token
// included when it was produced). Returns 0, -1 with a message (prompt too long, ...), or 1 when
// g->cancel asked to stop (out and out_lens then hold the steps done so far).
int gen_generate(const Model *m, KVCache *kv, Sampler *s, const GenConfig *g, Rng *rng,
                 const int32_t *prompts, const int32_t *prompt_lens, int B, int Tp, int32_t *out,
                 int32_t *out_lens, GenCallback cb, void *user, char *err, size_t errlen);

// As gen_generate, but sequence b samples from its own generator rngs[b] (B of them), so that
// its tokens do not depend on the other sequences of the batch: a batch cut into pieces (smaller
// generation batches, or shares on several processes) samples the same text, up to the float
// rounding of the logits, which differs with the batch's shape.
int gen_generate_each(const Model *m, KVCache *kv, Sampler *s, const GenConfig *g, Rng *rngs,
                      const int32_t *prompts, const int32_t *prompt_lens, int B, int Tp,
                      int32_t *out, int32_t *out_lens, GenCallback cb, void *user, char *err,
                      size_t errlen);

// Continuous batching: n sequences (prompts (n, Tp) right-padded, prompt_lens (n)) through B
// slots of the cache (B <= kv->max_B and <= kv->max_rows). A sequence that ends (a stop token or
// max_new_tokens) frees its slot, and the next waiting sequence, in order, takes it in the same
// decoding step (its prompt prefilled beside the other slots' new tokens, in chunks when the
// rows per call run short), so B stays full until the queue is empty, instead of a batch waiting
// for its longest sequence. Sequence q samples from rngs[q] (n of them) and has its slot's cache
// to itself, so its tokens are those it gets alone (gen_generate_each with B = 1 and rngs[q]), up
// to the float rounding of the logits, which differs with the number of rows in a call. With
// g->share_prompts, a copied prompt's keys, values and logits are bit for bit those its source
// computed, and the copy samples its first token in the same step the source does. out
// (n, max_new_tokens), out_lens (n), cb's b (the sequence), return values: as gen_generate.
int gen_generate_queue(const Model *m, KVCache *kv, Sampler *s, const GenConfig *g, Rng *rngs,
                       const int32_t *prompts, const int32_t *prompt_lens, int n, int Tp, int B,
                       int32_t *out, int32_t *out_lens, GenCallback cb, void *user, char *err,
                       size_t errlen);

// Bytes kv_init allocates for these sizes (for memory plans printed before allocating).
size_t kv_memory_bytes(const ModelConfig *c, int max_B, int max_T, int max_rows);
size_t kv_memory_bytes_as(const ModelConfig *c, int max_B, int max_T, int max_rows,
                          LowpFormat cache_fmt);
#endif
