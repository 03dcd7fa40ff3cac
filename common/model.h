// The transformer: the blueprint (ModelConfig), the weights (one allocation carved into named tensors by a
// size table, with gradients and AdamW moments laid out the same way), and the wave of
// activations (allocated once at init for the largest batch, never inside a step).
//
// Batches are right-padded (B,T) arrays with a length per sequence; inside, the real tokens are
// packed into N = sum(lengths) rows, so padding costs nothing and cannot leak into results.
// Heads: the tied LM head (logits over the vocabulary, computed only for the rows that need them)
// and a scalar head `score.weight` (reward model: read at the last real token; value model: every
// token). Ownership: a Model owns all its buffers; model_free releases them.
//
// Two block kinds, chosen by ModelConfig.arch (the zero value is GPT-2, so a config that names no
// architecture is a GPT-2 one). The difference lives in model.c's table of block kinds (sizes,
// activation slots, layer forward/backward, tensor names) and generate.c's decoding step table,
// never in branches across the kernels:
//   GPT-2        pre-LN LayerNorm, learned positions (wpe), GELU(tanh), tied LM head,
//                weights in the HF Conv1D layout [in, out].
//   Llama-style  RMSNorm, rotary positions (rope_theta, optional Llama 3 scaling), SwiGLU MLP,
//                grouped-query attention (n_kv_head heads of K/V, 1 = multi-query), head_dim
//                from the config, optional q/k/v biases (Qwen2), per-head q/k RMSNorm (Qwen3),
//                tied or untied LM head; weights in the nn.Linear layout [out, in].
// Slots of ModelParams under Llama-style (QKV = (n_head + 2 n_kv_head) * hd, F = d_ff):
//   wte (V,C) embed_tokens; wpe, ln1b, ln2b, attprojb, fcb, fcprojb, lnfb: size 0
//   ln1w (L,C) input_layernorm; ln2w (L,C) post_attention_layernorm; lnfw (C) model.norm
//   qkvw (L,QKV,C): rows [q_proj | k_proj | v_proj], so each HF tensor is a contiguous slice
//   qkvb (L,QKV) with qkv_bias, else size 0
//   attprojw (L,C,NH*hd) o_proj
//   fcw (L,2F,C): rows [gate_proj | up_proj]; fcprojw (L,C,F) down_proj
//   qnormw, knormw (L,hd) with qk_norm, else size 0
//   lmheadw (V,C) lm_head when the embeddings are untied, else size 0 (GPT-2: always 0)
#ifndef MODEL_H
#define MODEL_H
#include "lowp.h"
#include <stddef.h>
#include <stdint.h>

enum { MODEL_ARCH_GPT2 = 0, MODEL_ARCH_LLAMA = 1 };
// Hugging Face model_type a checkpoint is written with (config.json keys and architectures).
// GPT2 implies MODEL_ARCH_GPT2; the others MODEL_ARCH_LLAMA.
enum { MODEL_FAMILY_GPT2 = 0, MODEL_FAMILY_LLAMA, MODEL_FAMILY_MISTRAL, MODEL_FAMILY_QWEN2,
       MODEL_FAMILY_QWEN3 };
enum { MODEL_ROPE_DEFAULT = 0, MODEL_ROPE_LLAMA3 = 1 };

typedef struct {
    int arch;          // MODEL_ARCH_*: the block kind
    int family;        // MODEL_FAMILY_*: naming in config.json (must agree with arch)
    int max_seq_len;   // n_positions / max_position_embeddings: longest sequence (GPT-2: wpe rows)
    int vocab_size;    // V
    int n_layer;       // L
    int n_head;        // NH
    int n_embd;        // C
    float ln_eps;      // layer_norm_epsilon (GPT-2: 1e-5) / rms_norm_eps (Llama-style)
    int lm_head;       // 1: LM head used (policy, SFT); 0: no unembedding (reward/value)
    int score_head;    // 1: scalar head score.weight (1,C) exists
    // Llama-style only; GPT-2 leaves them 0 (the model_*() accessors below give the values used)
    int n_kv_head;     // num_key_value_heads KVH, divides n_head; 0 = n_head
    int head_dim;      // hd; 0 = n_embd / n_head (GPT-2 requires that)
    int d_ff;          // intermediate_size F of the SwiGLU MLP (GPT-2: 4C, implied)
    float rope_theta;  // RoPE base (e.g. 10000, 1e6)
    int rope_scaling;  // MODEL_ROPE_*; LLAMA3 uses the four fields below
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max_pos;  // original_max_position_embeddings
    int qkv_bias;      // q/k/v projections have biases (Qwen2)
    int qk_norm;       // per-head RMSNorm of q and k before RoPE (Qwen3)
    int untied;        // lm_head.weight separate from embed_tokens (tie_word_embeddings false)
} ModelConfig;

static inline int model_kv_heads(const ModelConfig *c) {
    return c->n_kv_head ? c->n_kv_head : c->n_head;
}
static inline int model_head_dim(const ModelConfig *c) {
    return c->head_dim ? c->head_dim : c->n_embd / c->n_head;
}
static inline int model_ff(const ModelConfig *c) { return c->d_ff ? c->d_ff : 4 * c->n_embd; }

enum {
    P_WTE, P_WPE, P_LN1W, P_LN1B, P_QKVW, P_QKVB, P_ATTPROJW, P_ATTPROJB, P_LN2W, P_LN2B,
    P_FCW, P_FCB, P_FCPROJW, P_FCPROJB, P_LNFW, P_LNFB, P_SCOREW, P_QNORMW, P_KNORMW, P_LMHEADW,
    MODEL_NUM_PARAMS
};

typedef struct {
    float *wte;       // (V, C)
    float *wpe;       // (maxT, C)
    float *ln1w;      // (L, C)
    float *ln1b;      // (L, C)
    float *qkvw;      // (L, C, 3C)
    float *qkvb;      // (L, 3C)
    float *attprojw;  // (L, C, C)
    float *attprojb;  // (L, C)
    float *ln2w;      // (L, C)
    float *ln2b;      // (L, C)
    float *fcw;       // (L, C, 4C)
    float *fcb;       // (L, 4C)
    float *fcprojw;   // (L, 4C, C)
    float *fcprojb;   // (L, C)
    float *lnfw;      // (C)
    float *lnfb;      // (C)
    float *scorew;    // (C), or size 0 without a score head
    float *qnormw;    // (L, hd) Qwen3 q_norm, else size 0
    float *knormw;    // (L, hd) Qwen3 k_norm, else size 0
    float *lmheadw;   // (V, C) untied lm_head, else size 0
} ModelParams;

typedef struct {
    int B, T;                 // batch size and padded length
    const int32_t *tokens;    // (B,T)
    const int32_t *lengths;   // (B): real tokens of each row, 1..T
    const int32_t *targets;   // (B,T) next-token targets or NULL; -1 = no target here
    const float *weights;     // (B,T) loss weight per token or NULL (= 1 where targets >= 0).
                              // The loss is sum w * CE: the caller normalises (e.g. 1/#tokens).
} ModelBatch;

// forward flags
#define MODEL_LOGITS_ALL 1    // LM head on every real position (else only where a loss needs it)
#define MODEL_ENTROPY    2    // also per-token entropy of the LM head's distribution
#define MODEL_NO_LORA    4    // the attached adapters are off: exactly the base (lora.h)
#define MODEL_DROPOUT    8    // the adapters' lora_dropout applies (training forwards)
// Each row's numbers independent of the rows beside it (kernels.h: the `_fixed` forwards): what
// a forward whose numbers are stored and compared across batches asks (a model that does not
// train always has it). Costs time where the BLAS's sgemm is not row-invariant (blas.h).
#define MODEL_FIXED_ROWS 16

// model_init's `trainable`: 0 inference, 1 everything trains, MODEL_TRAIN_FROZEN the activations
// backward needs but no gradients and no moments for the base (adapters train: lora.h)
#define MODEL_TRAIN_FROZEN 2
struct Lora;
struct ModelLowp;

typedef struct Model {
    ModelConfig config;
    int max_B, max_T;         // the largest batch chosen at init
    int trainable;            // per-layer activations exist; 1: also gradients and moments
    struct Lora *lora;        // attached adapters (borrowed, lora_attach), or NULL
    struct ModelLowp *lowp;   // reduced-precision copies (model_lowp_attach; owned), or NULL
    int lora_on;              // the last forward ran the adapters (backward follows it)
    int fixed_rows;           // the forward running takes the row-invariant products
    const struct Lora *lora_fwd;  // the adapters that forward ran (backward checks them)
    // whose trained biases the bias slots hold (lora_bias_install; a cell of its own, so that
    // decoding from a const Model can switch them); owned
    const struct Lora **bias_in;
    size_t param_sizes[MODEL_NUM_PARAMS];
    size_t num_params;
    float *params_memory;  ModelParams params;     // a mapping of params_bytes (util_pages_alloc)
    size_t params_bytes;
    float *grads_memory;   ModelParams grads;     // NULL unless trainable
    float *m_memory, *v_memory;                   // AdamW moments, NULL unless trainable
    // activations (packed rows; Nmax = max_B * max_T)
    float *acts_memory;
    size_t acts_floats;
    const struct Model *acts_host;   // model_share_activations: the activations lie in its block
    float *resid;      // (L+1, N, C) inputs of each layer and of ln_f (2 when not trainable)
    float *resmid;     // (L, N, C) residual after attention
    float *ln1, *ln1_mean, *ln1_rstd;   // (L,N,C), (L,N), (L,N)
    float *qkv;        // (L, N, 3C)
    float *att;        // (L, B*NH*T*T) softmax rows
    float *atty;       // (L, N, C)
    float *ln2, *ln2_mean, *ln2_rstd;   // (L,N,C), (L,N), (L,N)
    float *fch, *fch_gelu;              // (L, N, 4C) each
    float *lnf, *lnf_mean, *lnf_rstd;   // (N,C), (N), (N)
    float *head_in;    // (N, C) ln_f rows gathered for the LM head
    float *logits;     // (N, V) logits of the head rows (d-logits after backward)
    float *lse;        // (N) log-sum-exp per head row
    float *head_logp;  // (N) log-prob of the target per head row
    float *head_ent;   // (N) entropy per head row
    float *values;     // (N) scalar head per row
    // backward scratch, one layer's worth (reused down the stack)
    float *dresid, *dln, *datty, *dqkv, *dfch, *dfch_gelu, *dhead_in, *head_dlogp;
    float *datt;       // (B*NH*T*T) attention score gradients
    // Llama-style only (size 0, NULL under GPT-2); widths there: qkv (N,QKV), atty (N,NH*hd),
    // fch (N,2F) [gate | up], fch_gelu (N,F) the SwiGLU output; ln*_mean unused
    float *qk_in;      // (L, N*(NH+KVH), hd) Qwen3: q rows (N*NH) then k rows (N*KVH) before norm
    float *qk_rstd;    // (L, N*(NH+KVH)) Qwen3: their RMSNorm rstd
    float *qk_tmp, *dqk_tmp;  // (N*(NH+KVH), hd) Qwen3 scratch, one layer's worth
    float *inv_freq;   // (hd/2) RoPE inverse frequencies, computed once at init
    float *rope_cs;    // (max_T, hd) their cosines and sines by position (rope_table), at init
    // batch bookkeeping
    int32_t *row_tok, *row_pos, *row_tgt, *row_seq;   // (N) token, position, target, sequence
    int32_t *head_tgt;     // (N) target of each LM-head row
    int64_t *off;          // (B+1) first row of each sequence
    int64_t *att_off;      // (B) start of each sequence's attention block
    int32_t *head_rows;    // (N) packed row of each LM-head row
    int64_t N, M;          // packed rows and LM-head rows of the current batch
    int cur_B, cur_T;
    float loss;            // sum w * CE of the last forward (0 without targets)
    int has_lm_out;        // last forward computed the LM head (cleared once backward used it)
    int has_entropy;       // last forward computed entropies
} Model;

// Returns 0 or -1 with a message naming the problem.
int  model_config_validate(const ModelConfig *c, char *err, size_t errlen);
// Allocates weights (zeroed), and for trainable models gradients, moments and activations for
// batches up to max_B x max_T (MODEL_TRAIN_FROZEN: activations only). Prints the memory budget
// to stderr when verbose. Returns 0 or -1.
int  model_init(Model *m, const ModelConfig *c, int max_B, int max_T, int trainable, int verbose,
                char *err, size_t errlen);
void model_free(Model *m);
// GPT-2-style initialisation for both kinds: N(0, 0.02) matrices (GPT-2's wpe N(0, 0.01)),
// residual projections scaled by 1/sqrt(2L), norm weights 1, biases 0. One random stream per
// tensor slot (P_*), so a slot another kind lacks does not change the others' values.
void model_init_weights(Model *m, uint64_t seed);
size_t model_memory_bytes(const ModelConfig *c, int max_B, int max_T, int trainable);
// The block kind of c->arch as the memory plan prints it: "gpt2" or "llama-style".
const char *model_kind_name(const ModelConfig *c);

// Forward pass; returns 0 or -1 (bad batch: sizes, lengths, token ids) with a message.
int  model_forward(Model *m, const ModelBatch *b, int flags, char *err, size_t errlen);
// Backward of  sum_{targets} dlogp*logp  +  sum dvalues*values  after model_forward on the
// same batch. dlogp (B,T) or NULL (NULL means the LM loss: dlogp = -w); dvalues (B,T) or NULL.
// Gradients accumulate into m->grads (call model_zero_grad between optimizer steps).
void model_backward(Model *m, const ModelBatch *b, const float *dlogp, const float *dvalues);
void model_zero_grad(Model *m);
// Gives the activations' memory back to the system until the next forward (util_release_pages):
// for a model idle while others work. No backward may follow until the next forward.
void model_release_activations(Model *m);
// The bytes model_release_activations gives back (all the activations but the RoPE tables; 0
// for a model whose activations lie in another's block).
size_t model_activation_bytes(const Model *m);
// The bytes of those activations a model of these sizes has (model_memory_bytes's share).
size_t model_activation_bytes_for(const ModelConfig *c, int max_B, int max_T, int trainable);
// Carves m's activations (but the RoPE tables, which stay in m's own block) out of host's block,
// from its start: for a model whose forwards never overlap the time host's activations are live
// (PPO: the frozen reference and reward models score before the policy's scoring forward, which
// rewrites all it reads). m's own pages for them stay unused (not resident), and releasing m's
// activations gives nothing back (they are host's). Neither model may be freed before the other
// is done with them. 0, or -1 when m is host, host's block is smaller or either already shares
// (m then keeps its own).
int model_share_activations(Model *m, const Model *host);
// The same for the last `bytes` of those (the backward's buffers first, then the forward's from
// the head back): the rest stays resident for the next forward. Returns the bytes released (at
// most model_activation_bytes; whole pages inside them go back).
size_t model_release_activations_tail(Model *m, size_t bytes);

// Results of the last forward, in the caller's (B,T) layout (0 at padding / where not computed).
void model_get_logp(const Model *m, float *out);       // log p(target) per position
void model_get_entropy(const Model *m, float *out);    // needs MODEL_ENTROPY
void model_get_values(const Model *m, float *out);     // scalar head per position
// Logits row of (b, t) after a forward that computed it, else NULL.
const float *model_logits_at(const Model *m, int b, int t);

// Per-tensor view with Hugging Face names, index 0 .. count-1. GPT-2: bare GPT2Model names
// ("h.3.attn.c_attn.weight", shapes [in, out]) and "score.weight". Llama-style: the names
// save_pretrained writes ("model.embed_tokens.weight", "model.layers.3.self_attn.q_proj.weight"
// [out, in], "model.norm.weight", "lm_head.weight" when untied, "score.weight"); q/k/v and
// gate/up are slices of the fused qkvw / fcw rows.
typedef struct {
    char name[64];
    int ndim;
    int64_t shape[2];
    float *data;       // into params
    float *grad;       // into grads or NULL
    int decay;         // AdamW weight decay applies (matrices)
} ModelTensor;
int  model_tensor_count(const Model *m);
// Parameter slot `slot` (P_*) of m's weights and its size in floats.
float *model_slot(const Model *m, int slot, size_t *n);
void model_tensor(const Model *m, int i, ModelTensor *t);

// ---- reduced precision (lowp.h) ----
// A model may hold bf16 or int8 copies of its matrices (every layer's four products and the LM
// head: the tied embeddings or lm_head; never the norms, biases, positions or the score head).
// The fp32 weights stay (they are the master copy: the embedding lookup reads them, training
// updates them). Who reads the copies:
// - KV-cache decoding (generate.h) whenever they exist: a policy samples from its narrow copy.
// - model_forward only when attached with MODEL_LOWP_FULL: a frozen model (reference, reward)
//   is then its narrow weights in every forward. Without it (the trained policy) model_forward
//   stays fp32, so log-probabilities for training are unchanged by the sampling copy.
// After the fp32 weights change (an optimizer step, a loaded checkpoint) the copies are stale
// until model_lowp_refresh. A frozen base under adapters (MODEL_TRAIN_FROZEN, lora.h) may be
// read in full from its copies too: its backward then takes the input gradients through the same
// narrow weights (dX = dY W, lowp_backward_input), and it has no weight gradients; its products
// keep their activations in fp32 (never the kernels that round them to bf16). (A model whose
// weights train, trainable 1, read in full from copies keeps its fp32 backward.)
#define MODEL_LOWP_FULL 1
// With MODEL_LOWP_FULL, on a frozen model (inference or MODEL_TRAIN_FROZEN): free the fp32
// matrices the copies stand for (the layers' four products; an untied lm_head), so that the model
// takes the copies' memory instead of fp32's. Such a model can no longer refresh, be viewed by tensor
// (model_tensor: saving, loading) or take new copies.
#define MODEL_LOWP_DROP_FP32 2
// The four products of a layer, in order; model_product's w.
enum { MODEL_W_QKV, MODEL_W_ATTPROJ, MODEL_W_FC, MODEL_W_FCPROJ, MODEL_NUM_W };

// Builds the copies from m's current weights (fmt LOWP_FP32: none, nothing to do). flags 0 or
// MODEL_LOWP_FULL. 0, or -1 with an error naming the tensor (m then has no copies).
int model_lowp_attach(Model *m, LowpFormat fmt, int flags, char *err, size_t errlen);
// Loading a frozen model straight into its copies, so that no whole fp32 model is ever held
// (lora.base_dtype): stream_begin on a frozen model (inference or MODEL_TRAIN_FROZEN) with no
// copies and no weights read yet reserves them (fmt bf16 or int8); the loader reads the fp32
// weights as usual and calls stream_matrix as soon as layer l's matrix w (w MODEL_NUM_W: an
// untied lm_head) holds its final values, which converts it and gives its fp32 pages back to the
// system; stream_end converts whatever is left (the tied head from the embeddings), then leaves
// m exactly as model_lowp_attach(fmt, MODEL_LOWP_FULL | MODEL_LOWP_DROP_FP32) after loading
// would: the same copies, bit for bit. 0, or -1 with an error naming the tensor (model_free
// then releases everything).
int model_lowp_stream_begin(Model *m, LowpFormat fmt, char *err, size_t errlen);
int model_lowp_stream_matrix(Model *m, int l, int w, char *err, size_t errlen);
int model_lowp_stream_end(Model *m, char *err, size_t errlen);
// Which matrix the fp32 weight p (a model_tensor's data) lies in: 1 with layer *l and *w
// (MODEL_W_*, or MODEL_NUM_W for an untied lm_head, *l 0), 0 for any other tensor (the tied
// embeddings included). model_matrix_floats: the floats of one layer's matrix w (or the head).
int model_matrix_of(const Model *m, const float *p, int *l, int *w);
int64_t model_matrix_floats(const Model *m, int w);
// The copy of layer l's matrix w (MODEL_NUM_W: the LM head's; its OC is 0 when the model has no
// LM head), or NULL without copies.
const LowpMatrix *model_lowp_matrix(const Model *m, int l, int w);
// Converts the fp32 weights into the copies again (no allocation); nothing without copies.
int model_lowp_refresh(Model *m, char *err, size_t errlen);
void model_lowp_detach(Model *m);   // model_free calls it
// The copies' format: LOWP_FP32 when there are none.
LowpFormat model_lowp_format(const Model *m);
// Bytes the copies of a model of config c take in fmt (0 for LOWP_FP32): for memory plans.
int64_t model_lowp_bytes(const ModelConfig *c, LowpFormat fmt);
// Bytes of the fp32 matrices those copies stand for (what one decoding step reads in fp32), and
// of those MODEL_LOWP_DROP_FP32 frees (all but tied embeddings).
int64_t model_lowp_fp32_bytes(const ModelConfig *c);
int64_t model_lowp_dropped_bytes(const ModelConfig *c);

// out (N, OC) = [out +] inp (N, IC) @ W + bias for matrix w (MODEL_W_*) of layer l: from the
// narrow copy when narrow and the model has copies, else the fp32 weights in the block kind's
// layout (bit for bit the product model_forward has always used). beta_one as matmul_forward.
void model_product(const Model *m, int l, int w, int narrow, float *out, const float *inp,
                   int64_t N, int beta_one);
// LM-head logits out (M, V) = inp (M, C) @ W^T, W the tied embeddings or lm_head; the narrow
// copy when narrow and the model has copies.
void model_head_product(const Model *m, int narrow, float *out, const float *inp, int64_t M);
// The KV-cache decoding step's products (generate.c, nothing else): the narrow copy when the
// model has one, else the fp32 weights through the decoding kernels (kernels.h:
// matmul_forward_decode), whose 2-64 rows give each row the same bits whatever the number of
// rows; a full forward's products (sgemm above 8 rows) are not bit-compatible with them.
void model_decode_product(const Model *m, int l, int w, float *out, const float *inp, int64_t N,
                          int beta_one);
void model_decode_head(const Model *m, float *out, const float *inp, int64_t M);
#endif
