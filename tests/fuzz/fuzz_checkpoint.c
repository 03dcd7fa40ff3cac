// Checkpoint loading: config.json and model.safetensors from the input (split at "\n----\n").
// Any input must give either a loaded model or a one-line error, never a crash or a huge
// allocation.
#include "checkpoint.h"
#include "fuzz_common.h"
#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char p1[512], p2[512], err[512];
    fuzz_write_split(data, size, "config.json", p1, "model.safetensors", p2, sizeof p1);
    ModelConfig c;
    CkptInfo info;
    if (ckpt_load_config(fuzz_tmpdir(), &c, &info, err, sizeof err)) return 0;
    // keep the model small enough for a fuzzer: the header is validated against it anyway
    if ((int64_t)c.vocab_size * c.n_embd > (1 << 22) || (int64_t)c.n_layer * c.n_embd * c.n_embd > (1 << 22) ||
        (int64_t)c.max_seq_len * c.n_embd > (1 << 22)) return 0;
    Model m;
    if (model_init(&m, &c, 1, 1, 0, 0, err, sizeof err)) return 0;
    ckpt_load_weights(fuzz_tmpdir(), &m, CKPT_ALLOW_MISSING_SCORE, err, sizeof err);
    model_free(&m);
    return 0;
}
