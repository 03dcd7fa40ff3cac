// Checkpoint loading: config.json and the weights from the input (split at "\n----\n"). The
// weights part is model.safetensors, or, when it starts with '{', model.safetensors.index.json
// and (after another "\n----\n") the one shard model-00001-of-00001.safetensors it may name.
// Any input must give either a loaded model or a one-line error, never a crash or a huge
// allocation.
#include "checkpoint.h"
#include "fuzz_common.h"
#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char p1[512], p2[512], p3[512], err[512];
    const uint8_t *cfg, *w, *idx, *shard;
    size_t ncfg, nw, nidx, nshard;
    fuzz_split(data, size, &cfg, &ncfg, &w, &nw);
    fuzz_write("config.json", cfg, ncfg, p1, sizeof p1);
    snprintf(p2, sizeof p2, "%s/model.safetensors", fuzz_tmpdir());
    snprintf(p3, sizeof p3, "%s/model.safetensors.index.json", fuzz_tmpdir());
    unlink(p2);
    unlink(p3);
    if (nw && w[0] == '{') {
        fuzz_split(w, nw, &idx, &nidx, &shard, &nshard);
        fuzz_write("model.safetensors.index.json", idx, nidx, p3, sizeof p3);
        fuzz_write("model-00001-of-00001.safetensors", shard, nshard, p2, sizeof p2);
    } else {
        fuzz_write("model.safetensors", w, nw, p2, sizeof p2);
    }
    ModelConfig c;
    CkptInfo info;
    if (ckpt_load_config(fuzz_tmpdir(), &c, &info, err, sizeof err)) return 0;
    // keep the model small enough for a fuzzer: the header is validated against it anyway
    if (model_memory_bytes(&c, 1, 1, 0) > ((size_t)64 << 20)) return 0;
    Model m;
    if (model_init(&m, &c, 1, 1, 0, 0, err, sizeof err)) return 0;
    ckpt_load_weights(fuzz_tmpdir(), &m, CKPT_ALLOW_MISSING_SCORE, err, sizeof err);
    model_free(&m);
    return 0;
}
