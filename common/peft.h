// Adapters as PEFT's save_pretrained writes them, and PEFT's files read back:
//   DIR/adapter_config.json          {"peft_type": "LORA", "r", "lora_alpha", "lora_dropout",
//                                     "target_modules": [...], "base_model_name_or_path", "bias":
//                                     "none", "task_type": "CAUSAL_LM" | "SEQ_CLS",
//                                     "fan_in_fan_out" (true for GPT-2's Conv1D layers),
//                                     "modules_to_save": ["score"] or null, ...}
//   DIR/adapter_model.safetensors    base_model.model.<module>.lora_A.weight [r, in] and
//                                     .lora_B.weight [out, r]; <module> is transformer.h.L.attn.
//                                     c_attn (GPT-2) or model.layers.L.self_attn.q_proj (Llama);
//                                     with modules_to_save, base_model.model.score.weight [1, C]
// Reading checks every field this engine relies on (peft_type LORA, bias none, no DoRA/rsLoRA,
// fan_in_fan_out as the architecture needs) and every tensor: each expected one present with its
// shape, none left over. Errors: -1 with a one-line message naming the file and the field or
// tensor. Ownership: nothing is kept; peft_load initialises a Lora the caller frees.
#ifndef PEFT_H
#define PEFT_H
#include "checkpoint.h"
#include "lora.h"

#define PEFT_CONFIG "adapter_config.json"
#define PEFT_WEIGHTS "adapter_model.safetensors"
#define PEFT_MOMENTS "adapter_optimizer.safetensors"

// Writes lo into directory dir (made when absent; the two files must not exist yet).
// base_name: base_model_name_or_path; seq_cls: task_type SEQ_CLS (a reward/value model).
int peft_save(const Lora *lo, const char *dir, const char *base_name, int seq_cls, char *err,
              size_t errlen);
// Reads dir's adapter for a base of config base into lo (lora_init with max_N, trainable).
int peft_load(Lora *lo, const char *dir, const ModelConfig *base, int64_t max_N, int trainable,
              char *err, size_t errlen);
// Only the config (what peft_load checks), for callers that size things first.
int peft_read_config(LoraConfig *cfg, const char *dir, const ModelConfig *base, char *err,
                     size_t errlen);

// Exact resume: the AdamW moments as DIR/adapter_optimizer.safetensors ("m.<PEFT name>",
// "v.<PEFT name>", F32), and the dropout stream (lora.seed, lora.dropout_call) as ints of the
// caller's trainer state (checkpoint.h). With the adapter files, the trainer state's step and the
// data cursors, a resumed run is bit-identical to one that never stopped.
int peft_save_moments(const Lora *lo, const char *dir, char *err, size_t errlen);
int peft_load_moments(Lora *lo, const char *dir, char *err, size_t errlen);
int peft_state_put(const Lora *lo, CkptTrainerState *st, char *err, size_t errlen);
int peft_state_get(Lora *lo, const CkptTrainerState *st, char *err, size_t errlen);
#endif
