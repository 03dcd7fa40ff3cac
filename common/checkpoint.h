// Checkpoints: directories a Hugging Face user recognises, written atomically, read defensively.
//
// Layout of a checkpoint directory DIR:
//   config.json                 the config of the model's family (ModelConfig.family), keys as
//                               transformers writes them (below)
//   model.safetensors           the weights, F32 (or BF16 with save_dtype), HF names as
//                               save_pretrained writes them (below)
//   model-0000i-of-0000n.safetensors + model.safetensors.index.json
//                               instead of model.safetensors when max_shard_bytes splits it:
//                               {"metadata": {"total_size": bytes}, "weight_map": {name: file}}
//   tokenizer.json, tokenizer_config.json, special_tokens_map.json, generation_config.json,
//   vocab.json, merges.txt      copied verbatim from a tokenizer directory, when one is given:
//                               those it has (it must have tokenizer.json, or vocab.json +
//                               merges.txt)
//   trainer_state.safetensors   AdamW moments "m.<name>" / "v.<name>" (model_tensor names), F32
//   trainer_state.json          {"format": "rlhf.c trainer state", "version": 1, "step": S,
//                                "rng": ["u64", "u64", "u64", "u64"],      (decimal strings)
//                                "ints": {"name": "int64", ...},           (decimal strings)
//                                "floats": {"name": number, ...}}          (17 significant digits)
//
// GPT-2 (model_type "gpt2"): GPT2Config keys: architectures, n_layer, n_head, n_embd,
// n_positions, n_ctx, vocab_size, layer_norm_epsilon, activation_function "gelu_new",
// num_labels 1 with a score head, bos/eos_token_id when known. Tensors: "transformer.<name>" for
// the transformer ("transformer.h.3.attn.c_attn.weight", Conv1D layout [in, out], exactly the
// shapes model_tensor() reports) and bare "score.weight" (1,C). The tied lm_head.weight is not
// stored (as in HF). architectures: ["GPT2LMHeadModel"] for an LM,
// ["GPT2ForSequenceClassification"] for a reward or value model, both (in that order) for a model
// with both heads ("GPT2Model" also counts as an LM: its head is the tied wte).
//
// The Llama family (model_type "llama", "mistral", "qwen2", "qwen3"; MODEL_ARCH_LLAMA):
//   config.json  the keys of LlamaConfig / MistralConfig / Qwen2Config / Qwen3Config:
//     hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads (absent: the
//     heads), head_dim (absent or null: hidden_size / heads), intermediate_size, vocab_size,
//     max_position_embeddings (absent: the class's default), rms_norm_eps (absent: 1e-6),
//     rope_theta (absent: 10000), rope_scaling (null, or rope_type / type "llama3" with factor,
//     low_freq_factor, high_freq_factor, original_max_position_embeddings; transformers 5's
//     rope_parameters is read the same way), tie_word_embeddings (absent: false, the classes'
//     default), hidden_act "silu", bos_token_id, eos_token_id (a list: its first id).
//     qwen2 implies q/k/v biases, qwen3 per-head q/k RMSNorm. Refused, naming the key:
//     sliding-window attention in use (mistral sliding_window below max_position_embeddings;
//     qwen use_sliding_window true with such a window; layer_types with "sliding_attention"), MoE
//     keys (num_experts, num_local_experts, ...), other rope scalings (linear, dynamic, yarn,
//     ...), attention_bias / mlp_bias true (llama; attention_bias on qwen3), another hidden_act.
//     Written with sorted keys (as transformers' to_json_string) and torch_dtype.
//   architectures  ["<P>ForCausalLM"] and / or ["<P>ForSequenceClassification"] (num_labels 1,
//     written as id2label / label2id), P = Llama, Mistral, Qwen2, Qwen3 as the model_type says.
//   tensors  the names model_tensor() gives ("model.embed_tokens.weight",
//     "model.layers.3.self_attn.q_proj.weight" [out, in], "model.norm.weight", "lm_head.weight"
//     when untied, bare "score.weight" (1,C)); q/k/v and gate/up are slices of the fused
//     tensors. Loading: a tied model's lm_head.weight may be absent or equal to
//     embed_tokens; an untied one's is required (unless the model has no LM head: a reward model
//     from an LM); rotary_emb.inv_freq buffers of old exports are ignored.
//
// Loading accepts what Hugging Face writes: for GPT-2 "transformer."-prefixed or bare names (the
// public gpt2 files use bare ones; one file may not hold both spellings of a tensor); F32, F16
// and BF16 data (converted to float32); model.safetensors or, when it is absent, the shards that
// model.safetensors.index.json lists (every shard validated as below; a tensor the index lists
// must be in its shard, a tensor in a shard must be listed there, no tensor in two shards, no
// shard name with a '/'). A GPT-2 lm_head.weight must equal wte.weight (an untied head is an
// error) and the h.N.attn.bias / h.N.attn.masked_bias buffers of old exports are ignored. Any
// other tensor is an error, as is any tensor of the model that the files lack (named). The whole
// safetensors header is validated before a byte of data is used: header length vs file size,
// JSON syntax, every dtype, every shape, data_offsets inside the data area, sizes equal to
// numel * dtype size, no two tensors overlapping, no name twice. Files are memory-mapped
// read-only; nothing is allocated from a size a file claims (safetensors.h has the file rules).
//
// Atomic save (DIR is the checkpoint path, P its parent directory; one writer per DIR at a time):
//   1. ckpt_recover(DIR) (below); DIR, if it exists, must be a directory holding config.json
//      (or empty): anything else is refused rather than replaced
//   2. write every file into a fresh sibling DIR.tmp.<pid>.<n>; fsync each file and the directory
//   3. if DIR exists: rename(DIR, DIR.old); fsync(P)
//   4. rename(DIR.tmp.<pid>.<n>, DIR); fsync(P)
//   5. remove DIR.old (its config.json last, then the directory); fsync(P)
// A crash leaves one of these states:
//   before 3      DIR is the old checkpoint (or absent before the first save); DIR.tmp.* garbage
//   between 3, 4  DIR is absent and DIR.old is the complete old checkpoint
//   after 4       DIR is the complete new checkpoint; DIR.old (maybe half removed) is garbage
// Reader rule, implemented by every ckpt_load_* function: if DIR exists, read DIR; otherwise, if
// DIR.old exists, read DIR.old (the complete previous checkpoint; CkptInfo.from_old says so).
// DIR.tmp.* is never read. Loaders do not modify the file system; ckpt_recover (which ckpt_save
// runs first) repairs it: renames DIR.old back to DIR when DIR is absent, else removes DIR.old,
// and removes DIR.tmp.* leftovers. When saving fails (disk full, unwritable parent, ...), the
// temporary directory is removed, the old checkpoint is left as it was and -1 is returned.
//
// Errors: every function that reads files or user input returns 0, or -1 with a one-line message
// naming the file and the problem in err (err may be NULL). Nothing here exits on bad input or
// keeps global state. Out-of-memory aborts with file:line (util.h).
// Ownership: the caller owns every struct passed in; nothing returned needs freeing. Loaders
// write only into the buffers of the Model / structs they are given.
#ifndef CHECKPOINT_H
#define CHECKPOINT_H
#include "model.h"
#include "rng.h"
#include <stddef.h>
#include <stdint.h>

#define CKPT_NAME_MAX    64    // longest trainer-state entry name, terminator included
#define CKPT_MAX_ENTRIES 64    // ints and floats each

// What config.json and the directory say besides the ModelConfig.
typedef struct {
    int bos_token_id, eos_token_id;  // -1 when config.json has none (a list: its first id)
    int has_tokenizer;               // tokenizer.json, or vocab.json + merges.txt, is present
    int has_trainer_state;           // trainer_state.json and trainer_state.safetensors present
    int from_old;                    // DIR was absent: read DIR.old (see the reader rule)
} CkptInfo;

// Exact-resume state besides the weights and moments: the optimizer step, the RNG, and named
// caller values (data cursors as int64, controller state such as the KL beta as double).
typedef struct {
    int64_t step;                    // optimizer steps taken, 0 .. 2^53
    Rng rng;
    int n_ints;
    struct { char name[CKPT_NAME_MAX]; int64_t value; } ints[CKPT_MAX_ENTRIES];
    int n_floats;
    struct { char name[CKPT_NAME_MAX]; double value; } floats[CKPT_MAX_ENTRIES];  // finite
} CkptTrainerState;

// Storage type of the saved weights (config.json's torch_dtype).
enum { CKPT_DTYPE_FLOAT32 = 0, CKPT_DTYPE_BFLOAT16 = 1 };

typedef struct {
    const char *tokenizer_dir;       // copy its tokenizer files (above); NULL: none
    int has_token_ids;               // write bos_token_id / eos_token_id into config.json
    int bos_token_id, eos_token_id;
    const CkptTrainerState *state;   // also write the trainer state (needs a trainable Model,
                                     // whose m_memory / v_memory are saved); NULL: weights only
    int save_dtype;                  // CKPT_DTYPE_*: FLOAT32 (the zero value) or BFLOAT16
                                     // (round to nearest even; not with a trainer state, whose
                                     // resume needs the float32 weights)
    int64_t max_shard_bytes;         // > 0: weights over this size go into shards of at most this
                                     // many bytes (a larger tensor gets one of its own) and
                                     // model.safetensors.index.json; 0: one model.safetensors
} CkptSaveOptions;

// ckpt_load_weights flags
#define CKPT_ALLOW_MISSING_SCORE 1   // model has a score head, file may lack score.weight: then
                                     // the caller initialises it (reward model from an SFT model)
#define CKPT_IGNORE_SCORE        2   // file has score.weight, model has no score head: skip it

// Writes DIR atomically (see above). opt may be NULL (weights and config only). Returns 0 / -1.
int ckpt_save(const char *dir, const Model *m, const CkptSaveOptions *opt, char *err,
              size_t errlen);

// Reads config.json into *c (lm_head / score_head from architectures) and, when info is not
// NULL, *info. The caller may change lm_head / score_head before model_init.
int ckpt_load_config(const char *dir, ModelConfig *c, CkptInfo *info, char *err, size_t errlen);
// 1 when dir has a tokenizer: tokenizer.json, or vocab.json + merges.txt (CkptInfo.has_tokenizer).
int ckpt_dir_has_tokenizer(const char *dir);
// Reads model.safetensors (or its shards) into m->params. m's config must match config.json
// (family, layers, heads, width, vocabulary, positions, epsilon, and for the Llama family KV
// heads, head_dim, intermediate_size, RoPE, tying); flags as above. Other buffers of m are
// untouched (and so are its params when a file is bad; a NaN or Inf is found while reading).
int ckpt_load_weights(const char *dir, Model *m, int flags, char *err, size_t errlen);
// ckpt_load_weights calling fn(m, l, w, ctx, err, errlen) as soon as layer l's matrix w
// (model.h's MODEL_W_*; MODEL_NUM_W with l 0: an untied lm_head) is read whole, before any later
// tensor is read: a caller converting the weights as they arrive (model_lowp_stream_matrix)
// holds one fp32 matrix at a time. fn's -1 (its message in err) stops the loading. Every
// tensor's mapped pages are given back once it is read (st_release), whichever function loads.
typedef int (*CkptMatrixFn)(Model *m, int l, int w, void *ctx, char *err, size_t errlen);
int ckpt_load_weights_each(const char *dir, Model *m, int flags, CkptMatrixFn fn, void *ctx,
                           char *err, size_t errlen);
// Convenience: ckpt_load_config + model_init(max_B, max_T, trainable) + ckpt_load_weights.
// On error m is left freed (nothing to release).
int ckpt_load_model(const char *dir, Model *m, int max_B, int max_T, int trainable, int flags,
                    char *err, size_t errlen);
// Reads trainer_state.json into *st and, when m is not NULL, the moments into m->m_memory and
// m->v_memory (m must be trainable and have the checkpoint's tensors). Returns -1 when the
// checkpoint has no trainer state.
int ckpt_load_trainer_state(const char *dir, Model *m, CkptTrainerState *st, char *err,
                            size_t errlen);

// The files a checkpoint's model comes from, in a fixed order: config.json, then
// model.safetensors, or model.safetensors.index.json followed by its shards in name order (in
// DIR.old under the reader rule). fn(path, name, ctx) is called for each (name: the file's name
// inside the directory); the files are not validated beyond the index's weight_map. For hashing
// a model's identity. Returns 0, fn's first non-zero return, or -1 with a message (no such
// checkpoint, a bad index).
typedef int (*CkptFileFn)(const char *path, const char *name, void *ctx);
int ckpt_model_files(const char *dir, CkptFileFn fn, void *ctx, char *err, size_t errlen);

// The atomic save of ckpt_save for a directory whose files another module writes: write(tmp, ctx)
// fills the fresh temporary directory tmp (flat: plain files only), which then replaces DIR as
// above. DIR, if it exists, must hold config.json or adapter_config.json (its marker file,
// removed last), or be empty. peft.h's adapter checkpoints are saved this way.
typedef int (*CkptWriteFn)(const char *tmp, void *ctx, char *err, size_t errlen);
int ckpt_save_files(const char *dir, CkptWriteFn write, void *ctx, char *err, size_t errlen);
// dir/trainer_state.json from st (for ckpt_save_files writers); ckpt_load_trainer_state with a
// NULL model reads it back.
int ckpt_write_trainer_state(const char *dir, const CkptTrainerState *st, char *err,
                             size_t errlen);
// Copies the tokenizer files that src has into dst; src must hold a tokenizer.
int ckpt_copy_tokenizer(const char *src, const char *dst, char *err, size_t errlen);
// The directory the reader rule reads for DIR (DIR, or DIR.old; *from_old says which) into out.
int ckpt_resolve(const char *dir, char *out, size_t outlen, int *from_old, char *err,
                 size_t errlen);

// Repairs DIR after an interrupted save (see the reader rule). 0 also when nothing was to do.
int ckpt_recover(const char *dir, char *err, size_t errlen);

// Trainer-state entries. set: adds or replaces (-1 when the name is empty, too long or the table
// is full, or the float is not finite). get: -1 with a message naming the entry when absent.
void ckpt_state_init(CkptTrainerState *st);   // zeroes everything
int ckpt_state_set_int(CkptTrainerState *st, const char *name, int64_t value, char *err,
                       size_t errlen);
int ckpt_state_set_float(CkptTrainerState *st, const char *name, double value, char *err,
                         size_t errlen);
int ckpt_state_get_int(const CkptTrainerState *st, const char *name, int64_t *value, char *err,
                       size_t errlen);
int ckpt_state_get_float(const CkptTrainerState *st, const char *name, double *value, char *err,
                         size_t errlen);

// IEEE half and bfloat16 to float32 (exact; NaN stays NaN, subnormals included).
float ckpt_f16_to_f32(uint16_t h);
float ckpt_bf16_to_f32(uint16_t b);
// float32 to bfloat16, rounding to nearest even (as torch's .to(torch.bfloat16)); values past the
// largest bfloat16 become infinities, a NaN stays a (quiet) NaN.
uint16_t ckpt_f32_to_bf16(float x);
// "float32" / "bfloat16" (a save_dtype setting) to CKPT_DTYPE_*: 0, or -1 naming the value.
int ckpt_parse_dtype(const char *s, int *dtype, char *err, size_t errlen);
// A tokenizer belongs to a model when its ids fit the model's vocabulary: -1 with a message
// naming both (the tokenizer directory tokdir and the checkpoint ckpt) when it has more tokens
// than vocab_size. Every program that pairs a tokenizer with a model checks this way.
int ckpt_check_tokenizer(const char *ckpt, int64_t vocab_size, const char *tokdir,
                         int64_t tok_vocab, char *err, size_t errlen);
#endif
