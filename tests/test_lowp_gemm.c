// The many-row products of reduced-precision weights (common/lowp_gemm.c: lowp_forward above
// LOWP_SGEMM_ROWS rows) against references computed here in double, on odd shapes (C and OC not
// multiples of 16 or 32, N from 17 to 150), on the AMX tiles and the vdpbf16ps kernel where the
// CPU runs them and on the portable path (sgemm on widened weights) forced both ways.
//
// Bounds, per output element y = base + bias + sum_c w_c x_c, with w_c the weight the matrix
// stores (bf16, or q_c * scale for int8), b(x) the activation rounded to bf16 (relative error at
// most u = 2^-8), A = sum_c |w_c b(x_c)| and g = 2 C 2^-24 (fp32 sums of C terms in any order):
// - vdpbf16ps and the AMX tiles against the double sum of w_c b(x_c): g A + 2^-23 |y| (the
//   products of two bf16 values are exact in fp32, so only the sums and the final scale and adds
//   round);
// - against the fp32 weights and activations: that + u sum_c |w_c x_c| (the activations) + the
//   format's own error (bf16: u sum_c |w_c x_c|; int8: sum_c scale / 2 |x_c|);
// - the portable path (fp32 activations) against the double sum of w_c x_c: g A + 2^-23 |y|.
#include "lowp.h"
#include "rng.h"
#include "testlib.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int C, OC, N;
    float *w, *x, *bias, *base;   // w (OC, C) fp32, x (N, C), bias (OC), base (N, OC)
} Case;

static float *randn(Rng *r, int64_t n, float std) {
    float *x = malloc((size_t)n * sizeof(float));
    rng_fill_normal(r, x, n, 0.0f, std);
    return x;
}

// y (N, OC) = base + x @ m^T + bias through lowp_forward on nthreads threads
static float *product(const Case *k, const LowpMatrix *m, int nthreads) {
    size_t n = (size_t)k->N * k->OC;
    float *y = malloc(n * sizeof(float));
    memcpy(y, k->base, n * sizeof(float));
    int keep = omp_get_max_threads();
    omp_set_num_threads(nthreads);
    lowp_forward(y, k->x, m, k->bias, k->N, 1);
    omp_set_num_threads(keep);
    return y;
}

static void check_product(const Case *k, const LowpMatrix *m, const float *y, int rounded,
                          const char *what);

// y (N, OC) through lowp_forward at n rows, on two threads: the first n rows of the case
static float *product_rows(const Case *k, const LowpMatrix *m, int n) {
    Case head = *k;
    head.N = n;
    return product(&head, m, 2);
}

// the vdpbf16ps or tile kernel of m (lowp_gemm_rounds): the same bits on 1, 2 and 3 threads, each
// row the same bits at fewer rows (still past the row-dot kernels), within its bound
static void check_rounding_kernel(const Case *k, const LowpMatrix *m, const char *what) {
    float *y2 = product(k, m, 2), *y1 = product(k, m, 1), *y3 = product(k, m, 3);
    size_t bytes = (size_t)k->N * k->OC * sizeof(float);
    CHECK_MSG(memcmp(y1, y2, bytes) == 0 && memcmp(y1, y3, bytes) == 0,
              "%s C %d OC %d N %d: 1, 2 and 3 threads differ", what, k->C, k->OC, k->N);
    int fewer = lowp_rowdot_rows(m) + 1 + (k->N - lowp_rowdot_rows(m) - 1) / 3;
    if (fewer < k->N) {
        float *yf = product_rows(k, m, fewer);
        CHECK_MSG(memcmp(yf, y2, (size_t)fewer * k->OC * sizeof(float)) == 0,
                  "%s C %d OC %d: the first %d rows differ at %d and %d rows", what, k->C, k->OC,
                  fewer, fewer, k->N);
        free(yf);
    }
    check_product(k, m, y2, 1, what);
    free(y1);
    free(y2);
    free(y3);
}

// y against the references of the file's comment; rounded: the kernel rounds activations to bf16
static void check_product(const Case *k, const LowpMatrix *m, const float *y, int rounded,
                          const char *what) {
    int C = k->C, bad = 0;
    double g = 2.0 * C * 0x1p-24, u = 0x1p-8;
    float *ws = malloc((size_t)C * sizeof(float));   // the weights the matrix stores, in fp32
    for (int o = 0; o < k->OC; o++) {
        lowp_matrix_row(ws, m, o);
        for (int n = 0; n < k->N; n++) {
            const float *x = k->x + (size_t)n * C;
            double ys = 0, yw = 0, A = 0, Aw = 0, fmt = 0;
            for (int c = 0; c < C; c++) {
                double xr = rounded ? lowp_bf16_to_float(lowp_bf16_from_float(x[c])) : x[c];
                ys += ws[c] * xr;
                A += fabs(ws[c] * xr);
                yw += (double)k->w[(size_t)o * C + c] * x[c];
                Aw += fabs((double)k->w[(size_t)o * C + c] * x[c]);
                fmt += m->fmt == LOWP_INT8 ? 0.5 * m->scale[o] * fabs(x[c])
                                           : u * fabs((double)k->w[(size_t)o * C + c] * x[c]);
            }
            double add = (double)k->base[(size_t)n * k->OC + o] + k->bias[o];
            double got = y[(size_t)n * k->OC + o];
            double tol_s = g * A + 0x1p-23 * (fabs(ys + add) + fabs(add)) + 1e-30;
            double tol_w = tol_s + (rounded ? u * Aw * (1 + u) : 0.0) + fmt * (1 + 1e-6) + g * Aw;
            if ((fabs(got - add - ys) > tol_s || fabs(got - add - yw) > tol_w) && bad++ < 3)
                test_fail_at(__FILE__, __LINE__,
                             "%s C %d OC %d N %d [%d, %d]: %.9g vs stored %.9g (tol %.3g), "
                             "fp32 %.9g (tol %.3g)", what, C, k->OC, k->N, n, o, got - add, ys,
                             tol_s, yw, tol_w);
        }
    }
    free(ws);
}

static void case_new(Case *k, Rng *rng, int C, int OC, int N) {
    *k = (Case){C, OC, N, randn(rng, (int64_t)C * OC, 0.05f), randn(rng, (int64_t)N * C, 1.0f),
                randn(rng, OC, 0.1f), randn(rng, (int64_t)N * OC, 1.0f)};
}

static void case_free(Case *k) {
    free(k->w);
    free(k->x);
    free(k->bias);
    free(k->base);
}

// bf16 and int8 at many rows on odd shapes: the vdpbf16ps kernel and the AMX tiles (where this
// CPU runs them) within their bound, bit for bit the same on 1, 2 and 3 threads and at fewer
// rows; the portable path forced within its own
static void test_many_rows(void) {
    // C: odd (the last input alone), below one pair of 16, around 32 and 64, and a C whose packed
    // activations take several row blocks at 150 rows (512 KiB / (4 x 1501) = 64 rows a block);
    // for the tiles (C a multiple of 32): one tile step, several, and several row blocks
    // (512 KiB / (4 x 1536) = 64 rows), OC below, at and past whole groups of 32 channels
    static const int shapes[][3] = {{7, 5, 17},    {33, 13, 31},   {96, 50, 64},
                                     {769, 19, 65},  {64, 6, 100},   {1, 7, 33},
                                     {770, 1, 48},   {3001, 23, 150}, {32, 33, 17},
                                     {768, 70, 47},  {3072, 37, 150}, {128, 32, 90}};
    Rng rng;
    rng_init(&rng, 21);
    char err[256], what[96];
    int ran_avx512 = 0, ran_tiles = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        Case k;
        case_new(&k, &rng, shapes[s][0], shapes[s][1], shapes[s][2]);
        for (int f = 0; f < 2; f++) {
            LowpMatrix m;
            CHECK(lowp_matrix_init(&m, f ? LOWP_INT8 : LOWP_BF16, k.w, LOWP_OUT_IN, k.C, k.OC, err,
                                   sizeof err) == 0);
            if (lowp_matrix_set_path(&m, LOWP_PATH_AVX512, err, sizeof err) == 0 &&
                lowp_gemm_rounds(&m)) {
                ran_avx512 = 1;
                if (lowp_gemm_tiles(&m)) {   // the tiles, then vdpbf16ps alone
                    ran_tiles = 1;
                    snprintf(what, sizeof what, "%s AMX tiles", lowp_format_name(m.fmt));
                    check_rounding_kernel(&k, &m, what);
                    CHECK(lowp_matrix_set_tiles(&m, 0, err, sizeof err) == 0);
                    CHECK(!lowp_gemm_tiles(&m));
                }
                CHECK(lowp_tiles_supported() || !lowp_gemm_tiles(&m));
                CHECK(k.C % 32 == 0 || !lowp_gemm_tiles(&m));
                snprintf(what, sizeof what, "%s vdpbf16ps", lowp_format_name(m.fmt));
                check_rounding_kernel(&k, &m, what);
            }
            CHECK(lowp_matrix_set_path(&m, LOWP_PATH_PORTABLE, err, sizeof err) == 0 ||
                  !lowp_path_supported(LOWP_PATH_PORTABLE, m.fmt));
            CHECK(!lowp_gemm_rounds(&m) && !lowp_gemm_tiles(&m));
            snprintf(what, sizeof what, "%s %s", lowp_format_name(m.fmt), lowp_path_name(m.path));
            float *y = product(&k, &m, 2);
            check_product(&k, &m, y, 0, what);
            free(y);
            lowp_matrix_free(&m);
        }
        case_free(&k);
    }
    printf("   (vdpbf16ps kernel %s; AMX tiles %s)\n",
           ran_avx512 ? "tested on this CPU" : "not run: no AVX512-BF16",
           ran_tiles ? "tested on this CPU" : "not run: no AMX-BF16 here (or the OS refused it)");
}

// RLHF_LOWP=noamx: no tiles for any matrix (set_tiles refuses them), the vdpbf16ps product's bits
// exactly; the setting is a valid kernel choice, other values are refused
static void test_noamx(void) {
    Rng rng;
    rng_init(&rng, 23);
    Case k;
    case_new(&k, &rng, 64, 40, 37);
    char err[256];
    const char *env = getenv("RLHF_LOWP");
    char *keep = env ? strdup(env) : NULL;
    unsetenv("RLHF_LOWP");
    int tiles = lowp_tiles_supported();
    LowpMatrix m;
    CHECK(lowp_matrix_init(&m, LOWP_BF16, k.w, LOWP_OUT_IN, k.C, k.OC, err, sizeof err) == 0);
    CHECK(lowp_gemm_tiles(&m) == (tiles && lowp_gemm_rounds(&m)));
    CHECK(lowp_matrix_set_tiles(&m, 0, err, sizeof err) == 0);
    float *y_dp = product(&k, &m, 2);
    CHECK((lowp_matrix_set_tiles(&m, 1, err, sizeof err) == 0) == tiles);
    setenv("RLHF_LOWP", "noamx", 1);
    CHECK(lowp_check_env(err, sizeof err) == 0);
    CHECK(!lowp_tiles_supported() && !lowp_gemm_tiles(&m));
    CHECK(lowp_matrix_set_tiles(&m, 1, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "AMX") != NULL, "%s", err);
    float *y = product(&k, &m, 2);
    CHECK_MSG(memcmp(y, y_dp, (size_t)k.N * k.OC * sizeof(float)) == 0,
              "RLHF_LOWP=noamx and set_tiles(0) differ");
    setenv("RLHF_LOWP", "amx", 1);
    CHECK(lowp_check_env(err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "'amx'") != NULL && strstr(err, "noamx") != NULL, "%s", err);
    free(y);
    free(y_dp);
    lowp_matrix_free(&m);
    if (keep) setenv("RLHF_LOWP", keep, 1);
    else unsetenv("RLHF_LOWP");
    free(keep);
    case_free(&k);
}

// without bias or beta_one the product overwrites what out held (NaN too); RLHF_LOWP=portable
// gives new matrices the sgemm product, the same bits as lowp_matrix_set_path's
static void test_overwrite_and_env(void) {
    Rng rng;
    rng_init(&rng, 22);
    Case k;
    case_new(&k, &rng, 45, 11, 40);
    for (int i = 0; i < k.OC; i++) k.bias[i] = 0.0f;
    char err[256];
    const char *env = getenv("RLHF_LOWP");
    char *keep = env ? strdup(env) : NULL;
    for (int f = 0; f < 2; f++) {
        LowpFormat fmt = f ? LOWP_INT8 : LOWP_BF16;
        LowpMatrix m, mp;
        unsetenv("RLHF_LOWP");
        CHECK(lowp_matrix_init(&m, fmt, k.w, LOWP_OUT_IN, k.C, k.OC, err, sizeof err) == 0);
        size_t n = (size_t)k.N * k.OC;
        float *y = malloc(n * sizeof(float)), *yp = malloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++) y[i] = NAN;
        lowp_forward(y, k.x, &m, NULL, k.N, 0);
        for (size_t i = 0; i < n; i++) k.base[i] = 0.0f;
        check_product(&k, &m, y, lowp_gemm_rounds(&m), lowp_format_name(fmt));
        setenv("RLHF_LOWP", "portable", 1);
        CHECK(lowp_matrix_init(&mp, fmt, k.w, LOWP_OUT_IN, k.C, k.OC, err, sizeof err) == 0);
        CHECK(!lowp_gemm_rounds(&mp));
        if (lowp_path_supported(LOWP_PATH_PORTABLE, fmt)) CHECK(mp.path == LOWP_PATH_PORTABLE);
        lowp_forward(y, k.x, &mp, NULL, k.N, 0);
        CHECK(lowp_matrix_set_path(&m, mp.path, err, sizeof err) == 0);
        lowp_forward(yp, k.x, &m, NULL, k.N, 0);
        CHECK_MSG(memcmp(y, yp, n * sizeof(float)) == 0, "%s: RLHF_LOWP=portable and set_path "
                  "differ", lowp_format_name(fmt));
        free(y);
        free(yp);
        lowp_matrix_free(&m);
        lowp_matrix_free(&mp);
    }
    if (keep) setenv("RLHF_LOWP", keep, 1);
    else unsetenv("RLHF_LOWP");
    free(keep);
    case_free(&k);
}

int main(void) {
    test_case("lowp gemm: bf16 and int8 at 17-150 rows on odd shapes, AMX tiles, vdpbf16ps and "
              "portable, within bounds, same bits on 1-3 threads and at fewer rows",
              test_many_rows);
    test_case("lowp gemm: overwrites out without beta; RLHF_LOWP=portable takes sgemm",
              test_overwrite_and_env);
    test_case("lowp gemm: RLHF_LOWP=noamx keeps every matrix off the AMX tiles (the vdpbf16ps "
              "bits), set_tiles refuses them then", test_noamx);
    return test_summary();
}
