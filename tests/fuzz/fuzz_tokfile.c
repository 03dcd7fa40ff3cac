// Binary token files: any bytes given as a token file must open cleanly or give an error; when
// one opens, every window read stays inside it.
#include "fuzz_common.h"
#include "tokfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char p[512], err[512];
    fuzz_write("train.tok", data, size, p, sizeof p);
    TokFile f;
    memset(&f, 0, sizeof f);
    if (tokfile_open(&f, p, NULL, 0, err, sizeof err)) return 0;
    TokfileIterOptions o = {.batch_size = 2, .seq_len = 3, .order = TOKFILE_SHUFFLED, .seed = 1};
    TokfileIter it;
    if (tokfile_iter_init(&it, &f, &o, err, sizeof err) == 0) {
        DataBatch b;
        data_batch_init(&b, 2, 3);
        for (int i = 0; i < 4; i++) tokfile_iter_next(&it, &b, 1.0f);
        data_batch_free(&b);
    }
    tokfile_close(&f);
    return 0;
}
