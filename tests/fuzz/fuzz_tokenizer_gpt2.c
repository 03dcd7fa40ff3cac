// GPT-2's own vocabulary on arbitrary bytes (invalid UTF-8 included): encode, decode, and the
// exact round trip. The vocabulary is loaded once from data/gpt2 (RLHF_GPT2_DIR overrides).
#include "fuzz_common.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Tokenizer *t = fuzz_gpt2_tokenizer();
    char err[256];
    TokIds ids = {0};
    TokBytes out = {0};
    if (tok_encode(t, data, size, 0, &ids, err, sizeof err) != 0) abort();
    if (tok_decode(t, ids.ids, ids.n, &out, err, sizeof err) != 0) abort();
    if (out.n != size || (size && memcmp(out.data, data, size))) abort();
    ids.n = 0;
    tok_encode(t, data, size, TOK_ALLOW_SPECIAL, &ids, err, sizeof err);
    // decoding arbitrary ids: in range works, out of range is refused
    if (size >= 4) {
        int32_t id;
        memcpy(&id, data, 4);
        out.n = 0;
        int rc = tok_decode(t, &id, 1, &out, err, sizeof err);
        if ((id >= 0 && id < tok_vocab_size(t)) != (rc == 0)) abort();
    }
    tok_ids_free(&ids);
    tok_bytes_free(&out);
    return 0;
}
