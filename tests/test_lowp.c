// Reduced-precision weights (common/lowp.c): conversions, and the bf16 / int8 products against
// references computed here in double, on odd shapes, for every kernel path this CPU runs.
//
// Tolerances, per output element y = sum_c w_c x_c + bias, from the formats' rounding, with
// A = sum_c |w_c x_c| and the fp32 accumulation's bound g = 2 C 2^-24 A (C terms, any order):
// - the kernel against the exact product of the weights it stores (bf16 widened, or q * scale):
//   g (plus 2^-8 A on the AVX512 bf16 path, which rounds each activation to bf16 as well);
// - bf16 against the fp32 weights: + 2^-8 A (each weight off by at most 2^-8 of itself);
// - int8 against the fp32 weights: + sum_c (scale / 2) |x_c| (each weight off by at most scale/2).
#include "kernels.h"
#include "lowp.h"
#include "rng.h"
#include "testlib.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float *randn(Rng *r, int64_t n, float std) {
    float *x = malloc((size_t)n * sizeof(float));
    rng_fill_normal(r, x, n, 0.0f, std);
    return x;
}

// the weight the matrix stores, element [o, c], in fp32
static float stored(const LowpMatrix *m, int o, int c) {
    size_t i = (size_t)o * m->C + c;
    return m->fmt == LOWP_BF16 ? lowp_bf16_to_float(m->bf16[i]) : (float)m->q[i] * m->scale[o];
}

static void test_bf16_rounding(void) {
    // every finite bf16 value converts to itself
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = lowp_bf16_to_float((uint16_t)h);
        if (isfinite(f) && lowp_bf16_from_float(f) != h && bad++ < 3)
            test_fail_at(__FILE__, __LINE__, "bf16 0x%04x does not convert to itself", h);
    }
    // ties go to even; just above a tie goes up; NaN stays NaN
    CHECK(lowp_bf16_from_float(1.0f + 0x1p-8f) == lowp_bf16_from_float(1.0f));
    CHECK(lowp_bf16_to_float(lowp_bf16_from_float(1.0f + 3 * 0x1p-8f)) == 1.0f + 0x1p-6f);
    CHECK(lowp_bf16_to_float(lowp_bf16_from_float(1.0f + 0x1p-8f + 0x1p-20f)) == 1.0f + 0x1p-7f);
    CHECK(lowp_bf16_to_float(lowp_bf16_from_float(-1.0f - 3 * 0x1p-8f)) == -1.0f - 0x1p-6f);
    CHECK(isnan(lowp_bf16_to_float(lowp_bf16_from_float(NAN))));
    // relative error at most 2^-8 on random values
    Rng rng;
    rng_init(&rng, 3);
    float *x = randn(&rng, 10000, 3.0f);
    for (int i = 0; i < 10000; i++) {
        float y = lowp_bf16_to_float(lowp_bf16_from_float(x[i]));
        CHECK_MSG(fabsf(y - x[i]) <= 0x1p-8f * fabsf(x[i]), "%g -> %g", x[i], y);
    }
    free(x);
    // the array form (a decoding step's activations and keys) gives the same bits as one at a
    // time, on every high half with low halves at and around the tie, NaNs and Infs included,
    // at an odd length and offset (the vector loop's head and tail)
    size_t n = (size_t)65536 * 5;
    float *src = malloc((n + 1) * sizeof(float));
    uint16_t *dst = malloc((n + 1) * sizeof(uint16_t));
    static const uint32_t lows[5] = {0x0000, 0x7fff, 0x8000, 0x8001, 0xffff};
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)(i / 5) << 16 | lows[i % 5];
        memcpy(&src[i + 1], &u, 4);
    }
    lowp_bf16_round(dst + 1, src + 1, n);
    int differ = 0;
    for (size_t i = 1; i <= n; i++) differ += dst[i] != lowp_bf16_from_float(src[i]);
    CHECK_MSG(differ == 0, "lowp_bf16_round differs from lowp_bf16_from_float on %d of %zu",
              differ, n);
    free(src);
    free(dst);
}

// int8: each channel's largest |w| maps to +-127, every weight within scale/2, zero channel ok
static void test_int8_quantisation(void) {
    Rng rng;
    rng_init(&rng, 4);
    int C = 37, OC = 5;
    float *w = randn(&rng, (int64_t)C * OC, 0.5f);
    for (int c = 0; c < C; c++) w[3 * C + c] = 0.0f;   // channel 3 all zeros
    w[1 * C + 7] = -9.0f;                              // channel 1's largest is negative
    LowpMatrix m;
    char err[256];
    CHECK(lowp_matrix_init(&m, LOWP_INT8, w, LOWP_OUT_IN, C, OC, err, sizeof err) == 0);
    for (int o = 0; o < OC; o++) {
        float mx = 0.0f;
        int at = 0;
        for (int c = 0; c < C; c++)
            if (fabsf(w[o * C + c]) > mx) mx = fabsf(w[o * C + c]), at = c;
        CHECK(m.scale[o] == mx / 127.0f);
        if (mx > 0) CHECK(m.q[(size_t)o * C + at] == (w[o * C + at] > 0 ? 127 : -127));
        for (int c = 0; c < C; c++) {
            CHECK(m.q[(size_t)o * C + c] >= -127);
            CHECK_MSG(fabsf(stored(&m, o, c) - w[o * C + c]) <= m.scale[o] * 0.5f * (1 + 1e-6f),
                      "[%d, %d]: %g stored as %g", o, c, w[o * C + c], stored(&m, o, c));
        }
    }
    CHECK(m.q[(size_t)1 * C + 7] == -127);
    CHECK(m.scale[3] == 0.0f);
    // one row back in fp32, as an embedding lookup would read it
    float row[37];
    lowp_matrix_row(row, &m, 1);
    for (int c = 0; c < C; c++) CHECK(row[c] == stored(&m, 1, c));
    CHECK(lowp_matrix_bytes(&m) == (int64_t)C * OC + 4 * OC);
    lowp_matrix_free(&m);
    free(w);
}

// GPT-2's Conv1D layout [in, out] stores the same bytes as its transpose in [out, in]
static void test_layouts(void) {
    Rng rng;
    rng_init(&rng, 5);
    int C = 19, OC = 11;
    float *w = randn(&rng, (int64_t)C * OC, 1.0f), *wt = malloc(sizeof(float) * C * OC);
    for (int c = 0; c < C; c++)
        for (int o = 0; o < OC; o++) wt[o * C + c] = w[c * OC + o];
    char err[256];
    for (int f = 0; f < 2; f++) {
        LowpFormat fmt = f ? LOWP_INT8 : LOWP_BF16;
        LowpMatrix a, b;
        CHECK(lowp_matrix_init(&a, fmt, w, LOWP_IN_OUT, C, OC, err, sizeof err) == 0);
        CHECK(lowp_matrix_init(&b, fmt, wt, LOWP_OUT_IN, C, OC, err, sizeof err) == 0);
        if (fmt == LOWP_BF16) CHECK(memcmp(a.bf16, b.bf16, 2 * (size_t)C * OC) == 0);
        else CHECK(memcmp(a.q, b.q, (size_t)C * OC) == 0 && memcmp(a.scale, b.scale, 4 * OC) == 0);
        // refresh after an "update" equals a fresh conversion
        for (int i = 0; i < C * OC; i++) w[i] *= 1.5f;
        CHECK(lowp_matrix_refresh(&a, w, LOWP_IN_OUT, err, sizeof err) == 0);
        for (int c = 0; c < C; c++)
            for (int o = 0; o < OC; o++) wt[o * C + c] = w[c * OC + o];
        lowp_matrix_free(&b);
        CHECK(lowp_matrix_init(&b, fmt, wt, LOWP_OUT_IN, C, OC, err, sizeof err) == 0);
        if (fmt == LOWP_BF16) CHECK(memcmp(a.bf16, b.bf16, 2 * (size_t)C * OC) == 0);
        else CHECK(memcmp(a.q, b.q, (size_t)C * OC) == 0);
        lowp_matrix_free(&a);
        lowp_matrix_free(&b);
    }
    free(w);
    free(wt);
}

// matrices made in one LowpArena: the same bytes and products as lowp_matrix_init's, each piece on
// a 64-byte line, refresh in place, a block too small refused, a mapped block 2 MiB-aligned
static void test_arena(void) {
    Rng rng;
    rng_init(&rng, 11);
    int C = 629, OC = 1001;   // odd: every piece's end falls inside a line
    float *w = randn(&rng, (int64_t)C * OC, 0.05f), *x = randn(&rng, 3 * (int64_t)C, 1.0f);
    float *ya = malloc(3 * sizeof(float) * OC), *yb = malloc(3 * sizeof(float) * OC);
    char err[256];
    LowpArena a;
    size_t sb = lowp_matrix_storage(LOWP_BF16, C, OC), si = lowp_matrix_storage(LOWP_INT8, C, OC);
    CHECK(sb == (2 * (size_t)C * OC + 63) / 64 * 64);
    CHECK(si == ((size_t)C * OC + 63) / 64 * 64 + (4 * (size_t)OC + 63) / 64 * 64);
    lowp_arena_init(&a, sb + si);
    CHECK(a.base && a.bytes == sb + si && a.used == 0);
    CHECK((uintptr_t)a.base % 4096 == 0);   // under 2 MiB: page-aligned
    LowpMatrix in[2], own[2];
    for (int f = 0; f < 2; f++) {
        LowpFormat fmt = f ? LOWP_INT8 : LOWP_BF16;
        CHECK(lowp_matrix_init_in(&in[f], &a, fmt, w, LOWP_OUT_IN, C, OC, err, sizeof err) == 0);
        CHECK(lowp_matrix_init(&own[f], fmt, w, LOWP_OUT_IN, C, OC, err, sizeof err) == 0);
        CHECK(in[f].in_arena && !own[f].in_arena);
        const void *p = fmt == LOWP_BF16 ? (const void *)in[f].bf16 : (const void *)in[f].q;
        CHECK((uintptr_t)p % 64 == 0 && (fmt == LOWP_BF16 || (uintptr_t)in[f].scale % 64 == 0));
        if (fmt == LOWP_BF16) CHECK(memcmp(in[f].bf16, own[f].bf16, 2 * (size_t)C * OC) == 0);
        else CHECK(memcmp(in[f].q, own[f].q, (size_t)C * OC) == 0 &&
                   memcmp(in[f].scale, own[f].scale, 4 * (size_t)OC) == 0);
        for (int n = 1; n <= 3; n += 2) {
            lowp_forward(ya, x, &in[f], NULL, n, 0);
            lowp_forward(yb, x, &own[f], NULL, n, 0);
            CHECK_MSG(memcmp(ya, yb, (size_t)n * OC * sizeof(float)) == 0, "%s %d rows",
                      lowp_format_name(fmt), n);
        }
    }
    CHECK(a.used == sb + si && (char *)in[1].q == a.base + sb);
    // the block is full: a third matrix is refused, and left empty
    LowpMatrix more;
    CHECK(lowp_matrix_init_in(&more, &a, LOWP_INT8, w, LOWP_OUT_IN, 1, 1, err, sizeof err) == -1);
    CHECK(strstr(err, "0 bytes left") != NULL && more.q == NULL && more.OC == 0);
    lowp_matrix_free(&more);
    // refresh rewrites the arena's copy in place, equal to a fresh copy of the new weights
    for (int i = 0; i < C * OC; i++) w[i] *= -0.5f;
    CHECK(lowp_matrix_refresh(&in[0], w, LOWP_OUT_IN, err, sizeof err) == 0);
    CHECK(lowp_matrix_refresh(&own[0], w, LOWP_OUT_IN, err, sizeof err) == 0);
    CHECK(memcmp(in[0].bf16, own[0].bf16, 2 * (size_t)C * OC) == 0 &&
          (char *)in[0].bf16 == a.base);
    for (int f = 0; f < 2; f++) {
        lowp_matrix_free(&in[f]);   // the storage stays the arena's
        lowp_matrix_free(&own[f]);
    }
    lowp_arena_free(&a);
    CHECK(a.base == NULL && a.bytes == 0);
    // a block of 3 MiB and one of nothing
    lowp_arena_init(&a, (size_t)3 << 20);
    memset(a.base, 7, (size_t)3 << 20);
    CHECK((uintptr_t)a.base % (2u << 20) == 0);   // from 2 MiB on: aligned for huge pages
    lowp_arena_free(&a);
    lowp_arena_init(&a, 0);
    CHECK(a.base != NULL && a.bytes == 0);
    lowp_arena_free(&a);
    free(w);
    free(x);
    free(ya);
    free(yb);
}

static void test_bad_weights(void) {
    float w[12] = {0};
    char err[256];
    LowpMatrix m;
    w[7] = NAN;   // [in, out] = (3, 4): element [1, 3]
    CHECK_ERR(lowp_matrix_init(&m, LOWP_BF16, w, LOWP_IN_OUT, 3, 4, err, sizeof err), err,
              "weight [1, 3] is NaN", "bf16");
    lowp_matrix_free(&m);   // harmless on a failed init
    w[7] = -INFINITY;
    CHECK_ERR(lowp_matrix_init(&m, LOWP_INT8, w, LOWP_OUT_IN, 4, 3, err, sizeof err), err,
              "weight [1, 3] is -Inf", "int8");
    w[7] = 3.4e38f;   // finite, but bf16 rounds it up to infinity
    CHECK_ERR(lowp_matrix_init(&m, LOWP_BF16, w, LOWP_OUT_IN, 4, 3, err, sizeof err), err,
              "weight [1, 3] is too large", "bf16");
    CHECK(lowp_matrix_init(&m, LOWP_INT8, w, LOWP_OUT_IN, 4, 3, err, sizeof err) == 0);
    CHECK(m.q[7] == 127 && m.q[0] == 0);
    w[0] = INFINITY;
    CHECK_ERR(lowp_matrix_refresh(&m, w, LOWP_OUT_IN, err, sizeof err), err,
              "weight [0, 0] is +Inf", NULL);
    lowp_matrix_free(&m);
    CHECK_ERR(lowp_matrix_init(&m, LOWP_INT8, w, LOWP_OUT_IN, 0, 3, err, sizeof err), err,
              "bad matrix shape", NULL);
    CHECK_ERR(lowp_matrix_init(&m, LOWP_FP32, w, LOWP_OUT_IN, 4, 3, err, sizeof err), err,
              "bf16 or int8", NULL);
    LowpFormat f;
    CHECK(lowp_parse_format("int8", &f, err, sizeof err) == 0 && f == LOWP_INT8);
    CHECK(lowp_parse_format("bf16", &f, err, sizeof err) == 0 && f == LOWP_BF16);
    CHECK(lowp_parse_format("fp32", &f, err, sizeof err) == 0 && f == LOWP_FP32);
    CHECK_ERR(lowp_parse_format("fp16", &f, err, sizeof err), err, "'fp16'", "bf16");
}

// RLHF_LOWP=portable / scalar forces the path new matrices take
static void test_dispatch_env(void) {
    LowpPath best = lowp_path_supported(LOWP_PATH_AVX512, LOWP_BF16) ? LOWP_PATH_AVX512
                    : lowp_path_supported(LOWP_PATH_PORTABLE, LOWP_BF16) ? LOWP_PATH_PORTABLE
                                                                          : LOWP_PATH_SCALAR;
    const char *keep = getenv("RLHF_LOWP");
    unsetenv("RLHF_LOWP");
    CHECK(lowp_default_path(LOWP_BF16) == best);
    setenv("RLHF_LOWP", "portable", 1);
    CHECK(lowp_default_path(LOWP_BF16) ==
          (lowp_path_supported(LOWP_PATH_PORTABLE, LOWP_BF16) ? LOWP_PATH_PORTABLE
                                                              : LOWP_PATH_SCALAR));
    float w[6] = {1, 2, 3, 4, 5, 6};
    LowpMatrix m;
    char err[256];
    CHECK(lowp_matrix_init(&m, LOWP_INT8, w, LOWP_OUT_IN, 3, 2, err, sizeof err) == 0);
    CHECK(m.path != LOWP_PATH_AVX512);
    lowp_matrix_free(&m);
    setenv("RLHF_LOWP", "scalar", 1);
    CHECK(lowp_default_path(LOWP_INT8) == LOWP_PATH_SCALAR);
    CHECK(lowp_check_env(err, sizeof err) == 0);
    setenv("RLHF_LOWP", "avx2", 1);
    CHECK_ERR(lowp_check_env(err, sizeof err), err, "RLHF_LOWP='avx2'",
              "portable, scalar or noamx");
    CHECK(lowp_default_path(LOWP_BF16) == best);   // ignored by the kernels themselves
    if (keep) setenv("RLHF_LOWP", keep, 1);
    else unsetenv("RLHF_LOWP");
    CHECK(keep || lowp_check_env(err, sizeof err) == 0);
    printf("   (this CPU's best path: %s)\n", lowp_path_name(best));
}

typedef struct {
    int C, OC, N;
    float *w, *x, *bias, *base;   // w (OC, C) fp32
} Case;

// checks y = base + x @ m^T + bias against double references: the stored weights (kernel error
// only) and the fp32 weights (kernel + format error), per element as in the file's comment
static void check_product(const Case *k, const LowpMatrix *m, const float *y, const char *what) {
    int C = k->C, bad = 0;
    int kern = k->N <= lowp_rowdot_rows(m);   // the path's kernels, not the many-row product
    // activations rounded to bf16: the AVX512 bf16 kernels, and vdpbf16ps at many rows
    int rounds = kern ? m->fmt == LOWP_BF16 && m->path == LOWP_PATH_AVX512 : lowp_gemm_rounds(m);
    double g = 2.0 * C * 0x1p-24, act = rounds ? 0x1p-8 + 0x1p-16 : 0.0;
    double *ws = malloc((size_t)C * sizeof(double));
    for (int o = 0; o < k->OC; o++) {
        for (int c = 0; c < C; c++) ws[c] = stored(m, o, c);
        for (int n = 0; n < k->N; n++) {
            double ys = 0, yw = 0, A = 0, q = 0;
            for (int c = 0; c < C; c++) {
                double xv = k->x[(size_t)n * C + c], wv = k->w[(size_t)o * C + c];
                ys += ws[c] * xv;
                yw += wv * xv;
                A += fabs(ws[c] * xv);
                q += fabs(xv) * (m->fmt == LOWP_INT8 ? 0.5 * m->scale[o] : 0x1p-8 * fabs(wv));
            }
            double add = (double)k->base[(size_t)n * k->OC + o] + k->bias[o];
            double got = y[(size_t)n * k->OC + o] - add;
            double tol_s = (g + act) * A + 1e-6 * fabs(add) + 1e-30;
            double tol_w = tol_s + q * (1 + 1e-6) + g * A;
            if ((fabs(got - ys) > tol_s || fabs(got - yw) > tol_w) && bad++ < 3)
                test_fail_at(__FILE__, __LINE__,
                             "%s C %d OC %d N %d [%d, %d]: %.9g vs stored %.9g (tol %.3g), "
                             "fp32 %.9g (tol %.3g)", what, C, k->OC, k->N, n, o, got, ys, tol_s,
                             yw, tol_w);
        }
    }
    free(ws);
}

static float *product(const Case *k, const LowpMatrix *m) {
    size_t n = (size_t)k->N * k->OC;
    float *y = malloc(n * sizeof(float));
    memcpy(y, k->base, n * sizeof(float));
    lowp_forward(y, k->x, m, k->bias, k->N, 1);
    return y;
}

// every path this CPU runs, on odd shapes and row counts (1 row, a few, a group of 8 and one more,
// 64 through the many-row product, which tests/test_lowp_gemm.c checks closely), each against
// the references, each path against the scalar one, and 1 thread against 2
static void test_products(void) {
    // C: the tail alone; whole 64-wide steps; every step width the kernels have and a tail
    // (629 = 9 x 64 + 32 + 21 = 19 x 32 + 2 x 8 + 5 = 9 x 64 + 3 x 16 + 5); 768 + 1
    static const int Cs[] = {7, 576, 629, 769}, OCs[] = {1, 13, 1536}, Ns[] = {1, 3, 8, 9, 64};
    static const LowpPath paths[] = {LOWP_PATH_SCALAR, LOWP_PATH_PORTABLE, LOWP_PATH_AVX512};
    Rng rng;
    rng_init(&rng, 7);
    char err[256], what[96];
    for (int ci = 0; ci < 4; ci++)
        for (int oi = 0; oi < 3; oi++)
            for (int ni = 0; ni < 5; ni++) {
                Case k = {Cs[ci], OCs[oi], Ns[ni], NULL, NULL, NULL, NULL};
                // the large shape only at 1, 9 and 64 rows (the rest adds time, not coverage)
                if (k.C * k.OC > 100000 && (k.N == 3 || k.N == 8)) continue;
                k.w = randn(&rng, (int64_t)k.C * k.OC, 0.05f);
                k.x = randn(&rng, (int64_t)k.N * k.C, 1.0f);
                k.bias = randn(&rng, k.OC, 0.1f);
                k.base = randn(&rng, (int64_t)k.N * k.OC, 1.0f);
                for (int f = 0; f < 2; f++) {
                    LowpMatrix m;
                    CHECK(lowp_matrix_init(&m, f ? LOWP_INT8 : LOWP_BF16, k.w, LOWP_OUT_IN, k.C,
                                           k.OC, err, sizeof err) == 0);
                    float *ref = NULL;
                    for (int p = 0; p < 3; p++) {
                        if (lowp_matrix_set_path(&m, paths[p], err, sizeof err)) continue;
                        snprintf(what, sizeof what, "%s %s", lowp_format_name(m.fmt),
                                 lowp_path_name(paths[p]));
                        int keep = omp_get_max_threads();
                        omp_set_num_threads(2);
                        float *y = product(&k, &m);
                        omp_set_num_threads(1);
                        float *y1 = product(&k, &m);
                        omp_set_num_threads(keep);
                        size_t n = (size_t)k.N * k.OC;
                        // the kernels: bit for bit; sgemm's partition may round differently
                        if (k.N <= lowp_rowdot_rows(&m) || lowp_gemm_rounds(&m))
                            CHECK_MSG(memcmp(y, y1, n * sizeof(float)) == 0,
                                      "%s: 1 and 2 threads differ", what);
                        check_product(&k, &m, y, what);
                        if (k.N > lowp_rowdot_rows(&m)) check_product(&k, &m, y1, what);
                        // the paths against each other: summation order, and on AVX512 bf16 the
                        // activations' rounding (2^-8 relative each); checked per element above,
                        // here loosely in aggregate
                        if (!ref) ref = y;
                        else {
                            double d = 0, s = 0;
                            for (size_t i = 0; i < n; i++) {
                                d += fabs((double)y[i] - ref[i]);
                                s += fabs((double)ref[i]);
                            }
                            CHECK_MSG(d <= 0x1p-7 * s, "%s vs scalar: mean |diff| %.3g of %.3g",
                                      what, d / n, s / n);
                            free(y);
                        }
                        free(y1);
                    }
                    free(ref);
                    lowp_matrix_free(&m);
                }
                free(k.w);
                free(k.x);
                free(k.bias);
                free(k.base);
            }
}

// the portable and scalar kernels read the same fp32 activations and weights: they agree to
// summation order only, 1e-5 relative on a 1536 x 769 matrix
static void test_paths_agree(void) {
    if (!lowp_path_supported(LOWP_PATH_PORTABLE, LOWP_INT8)) return;
    Rng rng;
    rng_init(&rng, 9);
    int C = 769, OC = 1536, N = 5;
    float *w = randn(&rng, (int64_t)C * OC, 0.05f), *x = randn(&rng, (int64_t)N * C, 1.0f);
    float *a = calloc((size_t)N * OC, 4), *b = calloc((size_t)N * OC, 4);
    char err[256];
    for (int f = 0; f < 2; f++) {
        LowpMatrix m;
        CHECK(lowp_matrix_init(&m, f ? LOWP_INT8 : LOWP_BF16, w, LOWP_OUT_IN, C, OC, err,
                               sizeof err) == 0);
        CHECK(lowp_matrix_set_path(&m, LOWP_PATH_PORTABLE, err, sizeof err) == 0);
        lowp_forward(a, x, &m, NULL, N, 0);
        CHECK(lowp_matrix_set_path(&m, LOWP_PATH_SCALAR, err, sizeof err) == 0);
        lowp_forward(b, x, &m, NULL, N, 0);
        CHECK_CLOSE(a, b, (size_t)N * OC, 1e-5, 1e-5, lowp_format_name(m.fmt));
        // the sgemm path (more rows) without bias or beta_one overwrites what out held, NaN too
        float *x20 = malloc((size_t)20 * C * sizeof(float)), *y20 = malloc((size_t)20 * OC * 4);
        for (int i = 0; i < 20; i++) memcpy(x20 + (size_t)i * C, x + (size_t)(i % N) * C, 4 * C);
        for (int i = 0; i < 20 * OC; i++) y20[i] = NAN;
        lowp_forward(y20, x20, &m, NULL, 20, 0);
        for (int i = 0; i < 20; i++)
            CHECK_CLOSE(y20 + (size_t)i * OC, b + (size_t)(i % N) * OC, OC, 1e-5, 1e-5, "20 rows");
        free(x20);
        free(y20);
        lowp_matrix_free(&m);
    }
    free(w);
    free(x);
    free(a);
    free(b);
}

int main(void) {
    test_case("lowp: bf16 rounds to nearest even, exact on bf16 values, one or an array",
              test_bf16_rounding);
    test_case("lowp: int8 per-channel scales, largest weight to +-127, error <= scale/2",
              test_int8_quantisation);
    test_case("lowp: GPT-2's [in, out] layout stored transposed; refresh equals a new copy",
              test_layouts);
    test_case("lowp: copies in one block (arena) equal their own; a full block refused",
              test_arena);
    test_case("lowp: NaN, Inf and bf16 overflow refused naming the weight; bad format names",
              test_bad_weights);
    test_case("lowp: RLHF_LOWP forces the portable and scalar paths", test_dispatch_env);
    test_case("lowp: bf16 and int8 products on odd shapes, every path, within the format's bound",
              test_products);
    test_case("lowp: portable and scalar kernels agree to summation order", test_paths_agree);
    return test_summary();
}
