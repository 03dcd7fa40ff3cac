// Shared by the fuzz targets: the input is written to files in a private temporary directory,
// because the loaders under test read files (as they do in the programs). Each target defines
// LLVMFuzzerTestOneInput; built with libFuzzer by `make fuzz`, and with fuzz_driver.c (which
// runs every file of the target's corpus once) as regression tests by `make test`.
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tokenizer.h"

static char fuzz_dir[256];   // the one temporary directory of this fuzzing process

static inline const char *fuzz_tmpdir(void) {
    if (!fuzz_dir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(fuzz_dir, sizeof fuzz_dir, "%s/rlhf-fuzz-XXXXXX", base ? base : "/tmp");
        if (!mkdtemp(fuzz_dir)) { perror("mkdtemp"); exit(1); }
    }
    return fuzz_dir;
}

// Writes data to DIR/name and returns the path (static storage per call site).
static inline void fuzz_write(const char *name, const uint8_t *data, size_t n, char *path, size_t pathlen) {
    snprintf(path, pathlen, "%s/%s", fuzz_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(1); }
    if (n && fwrite(data, 1, n, f) != n) { perror(path); exit(1); }
    fclose(f);
}

// Splits the input at the first occurrence of a separator line "\n----\n" into two parts.
static inline void fuzz_split(const uint8_t *data, size_t n, const uint8_t **a, size_t *na, const uint8_t **b, size_t *nb) {
    static const char sep[] = "\n----\n";
    for (size_t i = 0; i + 6 <= n; i++)
        if (!memcmp(data + i, sep, 6)) { *a = data; *na = i; *b = data + i + 6; *nb = n - i - 6; return; }
    *a = data; *na = n; *b = data + n; *nb = 0;
}

// Splits the input as fuzz_split does and writes the two parts to DIR/name_a and DIR/name_b;
// path_a and path_b (pathlen bytes each) receive their paths.
static inline void fuzz_write_split(const uint8_t *data, size_t n, const char *name_a, char *path_a,
                                    const char *name_b, char *path_b, size_t pathlen) {
    const uint8_t *a, *b;
    size_t na, nb;
    fuzz_split(data, n, &a, &na, &b, &nb);
    fuzz_write(name_a, a, na, path_a, pathlen);
    fuzz_write(name_b, b, nb, path_b, pathlen);
}

// GPT-2's tokenizer, loaded once from data/gpt2 (RLHF_GPT2_DIR overrides); exits when it cannot.
static inline Tokenizer *fuzz_gpt2_tokenizer(void) {
    static Tokenizer *t;
    if (!t) {
        char err[512];
        const char *dir = getenv("RLHF_GPT2_DIR");
        if (tok_load(&t, dir ? dir : "data/gpt2", err, sizeof err) != 0) {
            fprintf(stderr, "%s\n", err);
            exit(1);
        }
    }
    return t;
}
#endif
