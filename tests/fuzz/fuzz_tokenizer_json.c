// Tokenizer: loading a Hugging Face tokenizer.json (the input before "\n----\n") and encoding /
// decoding the rest with whatever loaded, with and without special tokens and BOS/EOS. Encoding
// never fails and every id it gives decodes.
#include "fuzz_common.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *a, *b;
    size_t na, nb;
    char jp[512], err[256];
    fuzz_split(data, size, &a, &na, &b, &nb);
    fuzz_write("tokenizer.json", a, na, jp, sizeof jp);
    Tokenizer *t = NULL;
    if (tok_load_json(&t, jp, NULL, err, sizeof err) != 0) return 0;
    TokIds ids = {0};
    TokBytes out = {0};
    for (unsigned flags = 0; flags < 4; flags++) {
        ids.n = 0; out.n = 0;
        if (tok_encode(t, b, nb, flags, &ids, err, sizeof err) != 0) abort();
        if (tok_decode(t, ids.ids, ids.n, &out, err, sizeof err) != 0) abort();
    }
    tok_ids_free(&ids);
    tok_bytes_free(&out);
    tok_free(t);
    return 0;
}
