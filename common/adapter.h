// adapter: LoRA in the training programs (sft, reward train, ppo, dpo). The lora.* config keys,
// declared once here, read into a LoraConfig; model directories that are adapters; adapter
// checkpoints.
//
// Keys (ADAPTER_ENTRIES, placed by a program in its schema): lora.r (0: off, the whole model
// trains), lora.alpha, lora.dropout, lora.target_modules (PEFT names; empty: every linear layer
// of the architecture), lora.modules_to_save ("score": the scalar head trains, reward and value
// models; norms: GPT-2 ln_1, ln_2, ln_f, Llama input_layernorm, post_attention_layernorm, norm,
// and Qwen3's per-head q_norm, k_norm),
// lora.bias (PEFT's none | all | lora_only: biases trained beside the adapters),
// lora.base_dtype (float32; bfloat16 or int8: the frozen base's matrices stored and multiplied in
// that format, adapter_narrow_base; int8 per output channel as lowp.h quantises).
//
// A model directory is a plain checkpoint (config.json, model.safetensors) or an adapter
// directory (adapter_config.json + adapter_model.safetensors, as PEFT saves them) whose
// base_model_name_or_path is a model directory (itself possibly an adapter: the chain is
// followed, at most ADAPTER_MAX_DEPTH deep). Loading an adapter directory merges: the model is
// the base with the adapter folded into its weights (W += alpha / r * B A), so a later stage
// starts from what the earlier one trained (ppo's policy and reference from sft's adapter are
// the merged SFT model; new adapters train on top of it).
//
// An adapter checkpoint (OUT.DIR/last and the result of a run with lora.r > 0) is an adapter
// directory plus adapter_optimizer.safetensors (the AdamW moments), trainer_state.json (with
// lora.seed and lora.dropout_call) and the tokenizer files, written with checkpoint.h's atomic
// save (ckpt_save_files); the frozen base is never rewritten.
//
// Errors: -1 with a one-line message in err. Ownership: nothing kept; Loras and Models are the
// caller's. Not thread-safe; no global state.
#ifndef ADAPTER_H
#define ADAPTER_H
#include "checkpoint.h"
#include "config.h"
#include "lora.h"
#include "model.h"

#define ADAPTER_MAX_DEPTH 8

// Hashed only when set (CONFIG_HASH_IF_SET): a run without adapters keeps the config hash it had
// before these keys existed, so that it still resumes.
#define ADAPTER_ENTRIES                                                                         \
    CONFIG_ENTRY("lora.r", CONFIG_INT, "0",                                                     \
                 "LoRA rank: adapters train beside a frozen base (0: off, all weights train)", \
                 .min = "0", .max = "65536", .flags = CONFIG_HASH_IF_SET),                      \
    CONFIG_ENTRY("lora.alpha", CONFIG_DOUBLE, "16",                                             \
                 "lora_alpha: the adapters' update is scaled by alpha / r", .min = "0",         \
                 .flags = CONFIG_HASH_IF_SET),                                                  \
    CONFIG_ENTRY("lora.dropout", CONFIG_DOUBLE, "0",                                            \
                 "lora_dropout on the adapters' inputs in training forwards, in [0, 1)",        \
                 .min = "0", .max = "1", .flags = CONFIG_HASH_IF_SET),                          \
    CONFIG_ENTRY("lora.target_modules", CONFIG_STRING, "",                                      \
                 "adapted layers, PEFT names (GPT-2 c_attn,c_proj,c_fc; Llama q_proj,k_proj,"  \
                 "v_proj,o_proj,gate_proj,up_proj,down_proj); empty: all of them",              \
                 .flags = CONFIG_HASH_IF_SET),                                                  \
    CONFIG_ENTRY("lora.modules_to_save", CONFIG_STRING, "",                                     \
                 "modules that train as copies, comma-separated: 'score' (the scalar head of "  \
                 "reward and value models), norms (GPT-2 ln_1,ln_2,ln_f; Llama "                \
                 "input_layernorm,post_attention_layernorm,norm; Qwen3 also q_norm,k_norm)",    \
                 .flags = CONFIG_HASH_IF_SET),                                                  \
    CONFIG_ENTRY("lora.bias", CONFIG_ENUM, "none",                                              \
                 "PEFT's bias: none, all (every bias of the model trains beside the adapters) " \
                 "or lora_only (those of the adapted layers)",                                  \
                 .choices = "none|all|lora_only", .flags = CONFIG_HASH_IF_SET),                  \
    CONFIG_ENTRY("lora.base_dtype", CONFIG_ENUM, "float32",                                     \
                 "the frozen base's matrices: float32, bfloat16 (half their memory) or int8 "   \
                 "(a quarter, one scale per output channel); forward and backward read them",   \
                 .choices = "float32|bfloat16|int8", .flags = CONFIG_HASH_IF_SET)

// lora.* for a base of config base: 0 with cfg->r == 0 when lora.r is 0 (off), else the checked
// settings. score_ok: the program's model has a score head that may train (modules_to_save).
int adapter_settings(const Config *c, const ModelConfig *base, int score_ok, LoraConfig *cfg,
                     char *err, size_t errlen);
// lora.r > 0 (the other keys unchecked).
int adapter_on(const Config *c);
// lora.base_dtype: LOWP_FP32 (float32), LOWP_BF16 (bfloat16) or LOWP_INT8 (int8); and the
// key's spelling of a format.
LowpFormat adapter_base_dtype(const Config *c);
const char *adapter_dtype_name(LowpFormat fmt);
// Stores the frozen base m (MODEL_TRAIN_FROZEN, its weights loaded, adapters merged in) in fmt:
// its layers' matrices and LM head become bf16 / int8 copies that every forward and backward
// reads (int8's backward through the dequantised weights, lowp_backward_input),
// and their fp32 weights are freed (model.h's MODEL_LOWP_FULL | MODEL_LOWP_DROP_FP32; the tied
// embeddings stay fp32 for the lookup). Nothing for LOWP_FP32. 0, or -1 naming the tensor.
int adapter_narrow_base(Model *m, LowpFormat fmt, char *err, size_t errlen);
// adapter_load_weights into the frozen base m (model_init'ed, nothing read yet) stored in fmt:
// for LOWP_BF16 / LOWP_INT8 each matrix is converted as soon as it is read (and merged with the chain's
// adapters), its fp32 pages given back, so that the process never holds the fp32 model; m ends
// as adapter_narrow_base after adapter_load_weights leaves it, bit for bit. LOWP_FP32: exactly
// adapter_load_weights. 0, or -1 naming the file or tensor (model_free m then).
int adapter_load_base(const char *dir, Model *m, int flags, LowpFormat fmt, char *err,
                      size_t errlen);
// Bytes of a frozen base of config c for batches of B x T with its matrices in fmt (the memory
// plan: model_memory_bytes(MODEL_TRAIN_FROZEN) with fp32 matrices replaced by fmt's).
size_t adapter_base_bytes(const ModelConfig *c, int B, int T, LowpFormat fmt);

// 1 when dir (under the reader rule) is an adapter directory (adapter_config.json).
int adapter_is_dir(const char *dir);
// The config of dir's model (the base's for an adapter directory), as ckpt_load_config.
int adapter_load_config(const char *dir, ModelConfig *c, CkptInfo *info, char *err,
                        size_t errlen);
// dir's weights into m (ckpt_load_weights's flags), adapters merged in (above).
int adapter_load_weights(const char *dir, Model *m, int flags, char *err, size_t errlen);

// Saves lo as the adapter checkpoint dir (atomic): base_name its base_model_name_or_path;
// seq_cls a reward or value adapter; tokenizer_dir copied when not NULL; st (NULL: a result,
// no moments) with lora.seed / lora.dropout_call added.
int adapter_save(const char *dir, const Lora *lo, const char *base_name, int seq_cls,
                 const char *tokenizer_dir, const CkptTrainerState *st, char *err,
                 size_t errlen);
// Resuming: lo (lora_init'ed for base with max_N rows, trainable) gets dir's adapter, moments
// and dropout stream; *st the trainer state. The adapter's config must equal lo's.
int adapter_resume(const char *dir, Lora *lo, CkptTrainerState *st, char *err, size_t errlen);
// What the adapter directory dir holds (rlhf info): its settings in *cfg (checked against base,
// the config adapter_load_config gives; a score head the adapter trains is added to *base when
// the base lacks one, as a reward or value adapter on a language model has it) and its
// base_model_name_or_path in base_name. 0, or -1 naming the problem.
int adapter_describe(const char *dir, ModelConfig *base, LoraConfig *cfg, char *base_name,
                     size_t n, char *err, size_t errlen);
// The absolute path of dir when it exists (base_model_name_or_path), else dir as given.
void adapter_base_name(const char *dir, char *out, size_t n);
#endif
