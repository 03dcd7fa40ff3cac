// Tokenizer: loading vocab.json + merges.txt (the input, split at "\n----\n"), and encoding /
// decoding arbitrary bytes with whatever loaded; decode(encode(x)) must give x back.
#include "fuzz_common.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char vp[512], mp[512], err[256];
    fuzz_write_split(data, size, "vocab.json", vp, "merges.txt", mp, sizeof vp);
    Tokenizer *t = NULL;
    if (tok_load_files(&t, vp, mp, err, sizeof err) != 0) return 0;
    TokIds ids = {0};
    TokBytes out = {0};
    for (unsigned flags = 0; flags < 2; flags++) {
        ids.n = 0; out.n = 0;
        if (tok_encode(t, data, size, flags, &ids, err, sizeof err) == 0 && tok_decode(t, ids.ids, ids.n, &out, err, sizeof err) == 0) {
            if (out.n != size || (size && memcmp(out.data, data, size))) {
                if (flags == 0) abort();   // the round trip must be exact without special tokens
            }
        }
    }
    tok_ids_free(&ids);
    tok_bytes_free(&out);
    tok_free(t);
    return 0;
}
