// The BLAS kernel decision (common/blas.h) as a table: CPU features x the kernel OpenBLAS chose
// -> the kernel to select, or none. The re-execution itself is tested by test_blas.sh.
#include "blas.h"
#include "testlib.h"
#include <stdio.h>
#include <string.h>

#define AVX512 "sse3 avx avx2 fma avx512f avx512bw avx512vl avx512dq avx512cd"

static void test_decision_table(void) {
    static const struct { const char *cpu, *chosen, *want; } rows[] = {
        // an AVX-512 CPU the library does not know: every narrower kernel is replaced
        {AVX512, "Prescott", "SkylakeX"},
        {AVX512, "prescott", "SkylakeX"},                 // OpenBLAS's names, any case
        {AVX512, "Nehalem", "SkylakeX"},
        {AVX512, "Core2", "SkylakeX"},
        {AVX512, "Sandybridge", "SkylakeX"},
        {AVX512, "Haswell", "SkylakeX"},
        {AVX512, "Zen", "SkylakeX"},
        {AVX512 " avx512_bf16", "Prescott", "Cooperlake"},  // with BF16: the library's newest
        {AVX512 " avx512_bf16 avx512_vnni", "Haswell", "Cooperlake"},
        // the widest kernel already: nothing to do (SkylakeX and Cooperlake run the same sgemm)
        {AVX512, "SkylakeX", NULL},
        {AVX512 " avx512_bf16", "SkylakeX", NULL},
        {AVX512 " avx512_bf16", "Cooperlake", NULL},
        {AVX512, "SapphireRapids", NULL},
        // AVX2 + FMA
        {"sse3 avx avx2 fma", "Prescott", "Haswell"},
        {"sse3 avx avx2 fma", "Sandybridge", "Haswell"},
        {"sse3 avx avx2 fma", "Haswell", NULL},
        {"sse3 avx avx2 fma", "Zen", NULL},
        {"sse3 avx avx2", "Prescott", "Sandybridge"},     // AVX2 without FMA: the AVX kernel
        // AVX only, SSE only, nothing known
        {"sse3 avx", "Nehalem", "Sandybridge"},
        {"sse3 avx", "Sandybridge", NULL},
        {"sse3", "Prescott", NULL},
        {"", "Prescott", NULL},
        // AVX-512 incomplete (F alone, as some emulators report): AVX2's kernel at most
        {"sse3 avx avx2 fma avx512f", "Prescott", "Haswell"},
        {"sse3 avx avx2 fma avx512f", "Haswell", NULL},
        // a kernel this table does not rank (another architecture, a newer library): left alone
        {AVX512, "NeoverseN1", NULL},
        {AVX512, "", NULL},
        {AVX512, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const char *got = blas_best_core(blas_parse_flags(rows[i].cpu), rows[i].chosen);
        int same = (!got && !rows[i].want) || (got && rows[i].want && !strcmp(got, rows[i].want));
        CHECK_MSG(same, "row %zu: cpu '%s', chosen %s: got %s, want %s", i, rows[i].cpu,
                  rows[i].chosen ? rows[i].chosen : "NULL", got ? got : "none",
                  rows[i].want ? rows[i].want : "none");
    }
}

static void test_flag_names(void) {
    unsigned f = blas_parse_flags("avx2,fma  avx512_bf16 nonsense AVX");
    CHECK(f == (BLAS_AVX2 | BLAS_FMA | BLAS_AVX512_BF16 | BLAS_AVX));
    char buf[256];
    blas_flag_names(f, buf, sizeof buf);
    CHECK_MSG(!strcmp(buf, "avx avx2 fma avx512_bf16"), "names: '%s'", buf);
    CHECK(blas_parse_flags(buf) == f);
    blas_flag_names(f, buf, 8);                      // too small: whole names only, terminated
    CHECK_MSG(!strcmp(buf, "avx"), "truncated: '%s'", buf);
    CHECK(blas_parse_flags(NULL) == 0 && blas_parse_flags("") == 0);
}

// This CPU: the features the OS enables are coherent (AVX-512 implies AVX2 implies AVX), and the
// library's own choice on it is never replaced by something narrower.
static void test_this_cpu(void) {
    unsigned f = blas_cpu_flags();
    if (f & BLAS_AVX512F) CHECK(f & BLAS_AVX2);
    if (f & BLAS_AVX2) CHECK(f & BLAS_AVX);
    const char *best = blas_best_core(f, blas_core_name());
    char names[256];
    blas_flag_names(f, names, sizeof names);
    printf("     this CPU: %s; OpenBLAS runs %s; decision: %s\n", names, blas_core_name(),
           best ? best : "keep it");
}

int main(void) {
    test_case("the kernel decision: CPU features x chosen kernel, 27 rows", test_decision_table);
    test_case("feature names parse and print back", test_flag_names);
    test_case("this CPU's features are coherent", test_this_cpu);
    return test_summary();
}
