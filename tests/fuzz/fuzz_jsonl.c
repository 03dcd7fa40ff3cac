// SFT JSONL import (prompt/response and chat lines) with GPT-2's tokenizer: any file loads or
// gives a file:line error, and a failed load adds nothing.
#include "dataset.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Tokenizer *t = fuzz_gpt2_tokenizer();
    char err[512];
    char p[512];
    fuzz_write("data.jsonl", data, size, p, sizeof p);
    DatasetOptions o = {.max_tokens = 64, .truncation = DATASET_TRUNCATE_PROMPT_LEFT, .valid_percent = 10};
    Dataset *ds;
    if (dataset_create(&ds, t, &o, err, sizeof err)) abort();
    int rc = dataset_load_jsonl(ds, p, DATASET_SPLIT_AUTO, err, sizeof err);
    DatasetStats st;
    dataset_stats(ds, &st);
    if (rc != 0 && st.n_examples != 0) abort();   // all or nothing
    dataset_free(ds);
    return 0;
}
