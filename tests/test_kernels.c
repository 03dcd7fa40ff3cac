// Finite-difference checks of every kernel pair in common/kernels.c: for a random projection
// r of the output, L = sum r*out; the backward's gradient of L must match central differences
// within the stated tolerance. GPT-2's kernels: differences of the float kernel, accumulated in
// double. The Llama-style kernels: differences of a reference forward written here in double.
#include "kernels.h"
#include "rng.h"
#include "testlib.h"
#include <complex.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef double (*LossFn)(void *ctx);

static float *randn(Rng *r, int64_t n, float std) {
    float *x = malloc((size_t)n * sizeof(float));
    rng_fill_normal(r, x, n, 0.0f, std);
    return x;
}
static float *zeros(int64_t n) { return calloc((size_t)n, sizeof(float)); }
static double dot(const float *a, const float *b, int64_t n) {
    double s = 0; for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i]; return s;
}

// Compares analytic gradient g of x against central differences of f, on all elements (or a
// spread of 200 when larger). |fd - g| <= atol + rtol*|fd|.
static void fd_check(const char *what, LossFn f, void *ctx, float *x, const float *g, int64_t n,
                     float h, double atol, double rtol) {
    int64_t step = n > 200 ? n / 200 : 1;
    int bad = 0;
    for (int64_t i = 0; i < n; i += step) {
        float keep = x[i];
        x[i] = keep + h; double lp = f(ctx);
        x[i] = keep - h; double lm = f(ctx);
        x[i] = keep;
        double fd = (lp - lm) / (2.0 * h);
        if (!(fabs(fd - g[i]) <= atol + rtol * fabs(fd))) {
            if (bad++ < 3)
                test_fail_at(__FILE__, __LINE__,
                             "%s[%lld]: analytic %.6g vs finite-difference %.6g", what,
                             (long long)i, g[i], fd);
        }
    }
}

// ---- layernorm
typedef struct { float *out, *mean, *rstd, *inp, *w, *b, *r; int N, C; } LnCtx;
static double ln_loss(void *p) {
    LnCtx *c = p;
    layernorm_forward(c->out, c->mean, c->rstd, c->inp, c->w, c->b, c->N, c->C, 1e-5f);
    return dot(c->out, c->r, (int64_t)c->N * c->C);
}
// N = 150: the row sums behind dweight and dbias take chunks of 64 rows (two full, one partial)
static void test_layernorm_n(int N) {
    Rng rng; rng_init(&rng, 1);
    int C = 37;  // odd width: no vector-width assumptions
    LnCtx c = {zeros(N * C), zeros(N), zeros(N), randn(&rng, N * C, 1.0f), randn(&rng, C, 1.0f),
               randn(&rng, C, 1.0f), randn(&rng, N * C, 1.0f), N, C};
    float *din = zeros(N * C), *dw = zeros(C), *db = zeros(C);
    ln_loss(&c);
    layernorm_backward(din, dw, db, c.r, c.inp, c.w, c.mean, c.rstd, N, C);
    // a hand-computed row: x = (1,2,3), w = 1, b = 0 -> mean 2, var 2/3
    float x3[3] = {1, 2, 3}, w3[3] = {1, 1, 1}, b3[3] = {0, 0, 0}, o3[3], m3, r3;
    layernorm_forward(o3, &m3, &r3, x3, w3, b3, 1, 3, 0.0f);
    float want[3] = {-1.2247449f, 0.0f, 1.2247449f};
    CHECK_CLOSE(o3, want, 3, 1e-5, 1e-5, "layernorm hand case");
    fd_check("layernorm dinp", ln_loss, &c, c.inp, din, N * C, 1e-2f, 2e-3, 1e-2);
    fd_check("layernorm dweight", ln_loss, &c, c.w, dw, C, 1e-2f, 2e-3, 1e-2);
    fd_check("layernorm dbias", ln_loss, &c, c.b, db, C, 1e-2f, 2e-3, 1e-2);
    // accumulation: a second backward doubles the gradients
    float *dw2 = malloc(C * sizeof(float)); memcpy(dw2, dw, C * sizeof(float));
    layernorm_backward(din, dw, db, c.r, c.inp, c.w, c.mean, c.rstd, N, C);
    for (int i = 0; i < C; i++) dw2[i] *= 2;
    CHECK_CLOSE(dw, dw2, C, 1e-5, 1e-5, "layernorm backward accumulates");
    free(c.out); free(c.mean); free(c.rstd); free(c.inp); free(c.w); free(c.b); free(c.r);
    free(din); free(dw); free(db); free(dw2);
}
static void test_layernorm(void) { test_layernorm_n(5); test_layernorm_n(150); }

// ---- matmul
typedef struct { float *out, *inp, *w, *b, *r; int N, C, OC; } MmCtx;
static double mm_loss(void *p) {
    MmCtx *c = p;
    matmul_forward(c->out, c->inp, c->w, c->b, c->N, c->C, c->OC, 0);
    return dot(c->out, c->r, (int64_t)c->N * c->OC);
}
// N = 1 takes the one-row kernel, 3 and 8 the register tile (decoding), 37 the sgemm path.
static void test_matmul_n(int N) {
    Rng rng; rng_init(&rng, 2);
    int C = 13, OC = 67;
    MmCtx c = {zeros(N * OC),
               randn(&rng, N * C, 1),
               randn(&rng, C * OC, 1),
               randn(&rng, OC, 1),
               randn(&rng, N * OC, 1),
               N,
               C,
               OC};
    float *din = zeros(N * C), *dw = zeros(C * OC), *db = zeros(OC);
    mm_loss(&c);
    // reference product in double
    int bad = 0;
    for (int i = 0; i < N; i++) for (int j = 0; j < OC; j++) {
        double s = c.b[j];
        for (int k = 0; k < C; k++) s += (double)c.inp[i * C + k] * c.w[k * OC + j];
        if (fabs(s - c.out[i * OC + j]) > 1e-4 * (1 + fabs(s))) bad++;
    }
    CHECK_MSG(bad == 0, "matmul_forward differs from the naive product in %d places", bad);
    matmul_backward(din, dw, db, c.r, c.inp, c.w, N, C, OC);
    fd_check("matmul dinp", mm_loss, &c, c.inp, din, N * C, 1e-2f, 1e-2, 1e-2);
    fd_check("matmul dweight", mm_loss, &c, c.w, dw, C * OC, 1e-2f, 1e-2, 1e-2);
    fd_check("matmul dbias", mm_loss, &c, c.b, db, OC, 1e-2f, 1e-2, 1e-2);
    // beta_one adds into out
    mm_loss(&c);   // the finite differences left out at a perturbed point
    float *o2 = malloc((size_t)N * OC * sizeof(float));
    for (int i = 0; i < N * OC; i++) o2[i] = 1.0f;
    matmul_forward(o2, c.inp, c.w, c.b, N, C, OC, 1);
    for (int i = 0; i < N * OC; i++) o2[i] -= 1.0f;
    CHECK_CLOSE(o2, c.out, N * OC, 1e-4, 1e-5, "matmul beta_one residual add");
    free(o2);
    free(c.out);
    free(c.inp);
    free(c.w);
    free(c.b);
    free(c.r);
    free(din);
    free(dw);
    free(db);
}
static void test_matmul(void) {
    test_matmul_n(1);
    test_matmul_n(3);
    test_matmul_n(8);
    test_matmul_n(37);
    test_matmul_n(150);
}

// The one-row (decoding) product walks the weight in chunks of 64 input rows and strips of 4096
// output columns: 150 inputs make two full chunks and a partial one, 4100 outputs a second strip
// of 4. The chunks are summed in order, so 1 and 2 threads give the same bits.
static void test_matmul_row_chunks(void) {
    Rng rng; rng_init(&rng, 21);
    int C = 150, OC = 4100;
    float *x = randn(&rng, C, 1), *w = randn(&rng, (int64_t)C * OC, 1), *b = randn(&rng, OC, 1);
    float *o1 = zeros(OC), *o2 = zeros(OC);
    int bad = 0, nt = omp_get_max_threads();
    omp_set_num_threads(1);
    matmul_forward(o1, x, w, b, 1, C, OC, 0);
    omp_set_num_threads(2);
    for (int j = 0; j < OC; j++) o2[j] = 0.5f;
    matmul_forward(o2, x, w, b, 1, C, OC, 1);
    for (int j = 0; j < OC; j++) {
        double s = b[j];
        for (int k = 0; k < C; k++) s += (double)x[k] * w[(int64_t)k * OC + j];
        if (fabs(s - o1[j]) > 1e-4 * (1 + fabs(s)) || fabs(s + 0.5 - o2[j]) > 1e-4 * (1 + fabs(s)))
            bad++;
    }
    CHECK_MSG(bad == 0, "one-row matmul differs from the naive product in %d places", bad);
    matmul_forward(o2, x, w, b, 1, C, OC, 0);
    omp_set_num_threads(nt);
    CHECK_MSG(memcmp(o1, o2, (size_t)OC * sizeof(float)) == 0,
              "one-row matmul: 1 and 2 threads differ");
    free(x); free(w); free(b); free(o1); free(o2);
}

// The few-rows (decoding) product: 150 inputs make 9 chunks of 16 and a partial one, 1100 outputs
// three super-blocks of 512 columns and a tail narrower than a tile. Against the product in
// double; each output is summed in one fixed order, so 1 and 2 threads give the same bits, and
// so do the first rows of a 3-row and an 8-row product.
static void test_matmul_few(void) {
    Rng rng; rng_init(&rng, 23);
    int C = 150, OC = 1100, nt = omp_get_max_threads();
    float *x = randn(&rng, 8 * C, 1), *w = randn(&rng, (int64_t)C * OC, 1), *b = randn(&rng, OC, 1);
    float *o8 = zeros(8 * OC), *o8b = zeros(8 * OC), *o3 = zeros(3 * OC), *o2 = zeros(2 * OC);
    omp_set_num_threads(2);
    matmul_forward(o8, x, w, b, 8, C, OC, 0);
    matmul_forward(o3, x, w, b, 3, C, OC, 0);
    for (int j = 0; j < 2 * OC; j++) o2[j] = 0.5f;
    matmul_forward(o2, x, w, NULL, 2, C, OC, 1);
    omp_set_num_threads(1);
    matmul_forward(o8b, x, w, b, 8, C, OC, 0);
    omp_set_num_threads(nt);
    int bad = 0;
    for (int i = 0; i < 8; i++) for (int j = 0; j < OC; j++) {
        double s = 0;
        for (int k = 0; k < C; k++) s += (double)x[i * C + k] * w[(int64_t)k * OC + j];
        double tol = 1e-4 * (1 + fabs(s));
        if (fabs(s + b[j] - o8[i * OC + j]) > tol) bad++;
        if (i < 2 && fabs(s + 0.5 - o2[i * OC + j]) > tol) bad++;
    }
    CHECK_MSG(bad == 0, "few-rows matmul differs from the naive product in %d places", bad);
    CHECK_MSG(memcmp(o8, o8b, (size_t)8 * OC * sizeof(float)) == 0,
              "few-rows matmul: 1 and 2 threads differ");
    CHECK_MSG(memcmp(o8, o3, (size_t)3 * OC * sizeof(float)) == 0,
              "few-rows matmul: 3 and 8 rows differ");
    free(x); free(w); free(b); free(o8); free(o8b); free(o3); free(o2);
}

// Decoding's products (matmul_forward_decode, linear_forward_decode, logits_forward_decode) at
// 9, 16, 17, 33 and 64 rows (those up to kernels.h's counts), on 1 and 2 threads: every row has the
// bits it has in a product of 2 rows (which are the full forward's, matmul_forward /
// linear_forward / logits_forward at 2 rows), with and without bias, overwriting and adding into
// out (beta_one). 157 inputs: chunks of 16 and a partial one, a tail past the last vector; 1101
// outputs of matmul: super-blocks of every width the number of groups of 8 rows gives, and a tail
// narrower than a tile; 203 rows of the [out, in] weight: tiles of four (AVX-512) and rows left
// over. Also against the product in double.
typedef void (*DecodeFn)(float *out, const float *inp, const float *w, const float *bias,
                         int64_t N, int C, int OC, int beta_one);
static void logits_decode_fn(float *out, const float *inp, const float *w, const float *bias,
                             int64_t N, int C, int OC, int beta_one) {
    logits_forward_decode(out, inp, w, N, OC, C);
}
static void logits_full_fn(float *out, const float *inp, const float *w, const float *bias,
                           int64_t N, int C, int OC, int beta_one) {
    logits_forward(out, inp, w, N, OC, C);
}
static void logits_fixed_fn(float *out, const float *inp, const float *w, const float *bias,
                            int64_t N, int C, int OC, int beta_one) {
    logits_forward_fixed(out, inp, w, N, OC, C);
}

static void decode_rows_case(const char *name, DecodeFn dec, DecodeFn full, int in_out, int OC,
                             int with_bias, int beta_one, int max_rows) {
    enum { MAXR = 64 };
    Rng rng; rng_init(&rng, 41);
    int C = 157, nt = omp_get_max_threads(), Ns[5] = {9, 16, 17, 33, 64};
    size_t RO = (size_t)MAXR * OC;
    float *x = randn(&rng, MAXR * C, 1), *w = randn(&rng, (int64_t)C * OC, 1);
    float *b = with_bias ? randn(&rng, OC, 1) : NULL, *o0 = randn(&rng, (int64_t)RO, 1);
    float *two = malloc(RO * sizeof(float)), *out = malloc(RO * sizeof(float));
    float *full2 = malloc((size_t)2 * OC * sizeof(float));
    omp_set_num_threads(1);
    memcpy(two, o0, RO * sizeof(float));
    for (int i = 0; i < MAXR; i += 2)   // every row's bits in a product of 2 rows
        dec(two + (size_t)i * OC, x + (size_t)i * C, w, b, 2, C, OC, beta_one);
    memcpy(full2, o0, (size_t)2 * OC * sizeof(float));
    full(full2, x, w, b, 2, C, OC, beta_one);
    CHECK_MSG(memcmp(full2, two, (size_t)2 * OC * sizeof(float)) == 0,
              "%s: 2 decoded rows differ from the full forward's 2 rows", name);
    int bad = 0;
    for (int i = 0; i < MAXR; i++) for (int j = 0; j < OC; j++) {
        double s = (beta_one ? o0[(size_t)i * OC + j] : 0.0) + (b ? b[j] : 0.0);
        for (int k = 0; k < C; k++)
            s += (double)x[i * C + k] * (in_out ? w[(int64_t)k * OC + j] : w[(int64_t)j * C + k]);
        if (fabs(s - two[(size_t)i * OC + j]) > 1e-4 * (1 + fabs(s))) bad++;
    }
    CHECK_MSG(bad == 0, "%s: differs from the product in double in %d places", name, bad);
    for (int th = 1; th <= 2; th++) {
        omp_set_num_threads(th);
        for (int ni = 0; ni < 5; ni++) {
            int N = Ns[ni];
            if (N > max_rows) continue;   // sgemm's
            memcpy(out, o0, RO * sizeof(float));
            dec(out, x, w, b, N, C, OC, beta_one);
            int first = -1, nbad = 0;
            for (int i = 0; i < N; i++)
                if (memcmp(out + (size_t)i * OC, two + (size_t)i * OC, (size_t)OC * sizeof(float)))
                    first = first < 0 ? i : first, nbad++;
            CHECK_MSG(nbad == 0,
                      "%s: %d of %d rows on %d threads (first %d) differ from their bits at 2 rows",
                      name, nbad, N, th, first);
        }
    }
    omp_set_num_threads(nt);
    free(x); free(w); free(b); free(o0); free(two); free(out); free(full2);
}

static void test_decode_rows(void) {
    for (int bias = 0; bias < 2; bias++)
        for (int beta = 0; beta < 2; beta++) {
            char what[80];
            snprintf(what, sizeof what, "matmul_forward_decode (bias %d, beta_one %d)", bias, beta);
            decode_rows_case(what, matmul_forward_decode, matmul_forward, 1, 1101, bias, beta,
                             KERNELS_DECODE_ROWS);
            snprintf(what, sizeof what, "linear_forward_decode (bias %d, beta_one %d)", bias, beta);
            decode_rows_case(what, linear_forward_decode, linear_forward, 0, 203, bias, beta,
                             KERNELS_DECODE_ROWDOT_ROWS);
        }
    decode_rows_case("logits_forward_decode", logits_decode_fn, logits_full_fn, 0, 203, 0, 0,
                     KERNELS_DECODE_ROWDOT_ROWS);
}

// The row-invariant full forwards (matmul_forward_fixed, linear_forward_fixed,
// logits_forward_fixed: frozen models') above the few-row limit: rows off.. of a product of M
// rows have the bits they have in a product of all 150 (a sequence's log-probabilities do not
// depend on the sequences packed with it in a micro-batch), whatever the OpenBLAS kernel (the AVX2 and generic ones are not row-invariant: tests/test_avx2.sh runs
// this under OPENBLAS_CORETYPE=Haswell), on 1 and 2 threads. 130 inputs, 203 outputs.
static void company_case(const char *name, DecodeFn full, int with_bias) {
    enum { R = 150, C = 130, OC = 203 };
    Rng rng; rng_init(&rng, 21);
    float *x = randn(&rng, (int64_t)R * C, 1), *w = randn(&rng, (int64_t)C * OC, 0.1f);
    float *b = with_bias ? randn(&rng, OC, 0.1f) : NULL;
    float *all = zeros((int64_t)R * OC), *part = zeros((int64_t)R * OC);
    int nt = omp_get_max_threads();
    full(all, x, w, b, R, C, OC, 0);
    static const int offs[3] = {0, 5, 77}, Ms[4] = {9, 13, 24, 61};
    for (int th = 1; th <= 2; th++) {
        omp_set_num_threads(th);
        for (int oi = 0; oi < 3; oi++)
            for (int mi = 0; mi < 4; mi++) {
                int off = offs[oi], M = Ms[mi], nbad = 0;
                full(part, x + (size_t)off * C, w, b, M, C, OC, 0);
                for (int i = 0; i < M; i++)
                    nbad += memcmp(part + (size_t)i * OC, all + (size_t)(off + i) * OC,
                                   (size_t)OC * sizeof(float)) != 0;
                CHECK_MSG(nbad == 0, "%s: %d of rows %d..%d differ from their bits among %d rows "
                          "(%d threads)", name, nbad, off, off + M - 1, (int)R, th);
            }
    }
    omp_set_num_threads(nt);
    free(x); free(w); free(b); free(all); free(part);
}

static void test_company(void) {
    company_case("matmul_forward_fixed", matmul_forward_fixed, 1);   // weight (C, OC)
    company_case("linear_forward_fixed", linear_forward_fixed, 1);   // weight (OC, C)
    company_case("logits_forward_fixed", logits_fixed_fn, 0);
}

// LM head product against a naive reference, for the one-row, few-rows and sgemm paths: 101
// vocabulary rows make three blocks of 32 and a partial one, 50 channels a tail narrower than a
// vector. The few-rows path gives the same bits for any row count and thread count.
static void test_logits(void) {
    Rng rng; rng_init(&rng, 9);
    int V = 101, C = 50, nt = omp_get_max_threads();
    float *wte = randn(&rng, V * C, 1), *x = randn(&rng, 40 * C, 1), *out8 = zeros(8 * V);
    int Ms[5] = {8, 1, 2, 5, 40};
    for (int mi = 0; mi < 5; mi++) {
        int M = Ms[mi];   // the first M rows of x
        float *out = zeros(M * V), *want = zeros(M * V);
        for (int m = 0; m < M; m++) for (int v = 0; v < V; v++) {
            double sum = 0;
            for (int k = 0; k < C; k++) sum += (double)x[m * C + k] * wte[v * C + k];
            want[m * V + v] = (float)sum;
        }
        omp_set_num_threads(mi % 2 ? 1 : 2);
        logits_forward(out, x, wte, M, V, C);
        omp_set_num_threads(nt);
        char what[64];
        snprintf(what, sizeof what, "logits, %d rows", M);
        CHECK_CLOSE(out, want, (size_t)M * V, 1e-4, 1e-4, what);
        if (M == 8) memcpy(out8, out, (size_t)8 * V * sizeof(float));
        else if (M >= 2 && M < 8)
            CHECK_MSG(memcmp(out, out8, (size_t)M * V * sizeof(float)) == 0,
                      "logits: %d rows on 1 thread differ from the first rows of 8 on 2", M);
        free(out); free(want);
    }
    free(wte); free(x); free(out8);
}

typedef struct { float *out, *att, *qkv, *r; int64_t *off, *att_off; int B, C, NH, N; } AttCtx;
static double att_loss(void *p) {
    AttCtx *c = p;
    attention_forward(c->out, c->att, c->qkv, c->off, c->att_off, c->B, c->C, c->NH);
    return dot(c->out, c->r, (int64_t)c->N * c->C);
}
// Short sequences take the hand loop; one of >= 64 tokens takes the sgemm path, in blocks of 64
// query rows (130: two full blocks and a partial one; 64: exactly one).
static void test_attention_lens(const int *lens) {
    Rng rng; rng_init(&rng, 3);
    int B = 3, C = 15, NH = 3;   // odd head count, head size 5
    int64_t off[4] = {0}, att_off[3];
    int64_t A = 0;
    for (int b = 0; b < B; b++) {
        off[b + 1] = off[b] + lens[b];
        att_off[b] = A;
        A += (int64_t)NH * lens[b] * lens[b];
    }
    int N = (int)off[B];
    AttCtx c = {zeros(N * C),
                zeros(A),
                randn(&rng, N * 3 * C, 1),
                randn(&rng, N * C, 1),
                off,
                att_off,
                B,
                C,
                NH,
                N};
    float *dqkv = zeros(N * 3 * C);
    att_loss(&c);
    // reference: naive causal attention in double
    int hd = C / NH, bad = 0;
    for (int b = 0; b < B; b++) for (int h = 0; h < NH; h++) for (int t = 0; t < lens[b]; t++) {
        double sc[256], mx = -1e30, sum = 0;
        for (int s = 0; s <= t; s++) {
            double d = 0;
            for (int i = 0; i < hd; i++)
                d += (double)c.qkv[(off[b] + t) * 3 * C + h * hd + i] *
                     c.qkv[(off[b] + s) * 3 * C + C + h * hd + i];
            sc[s] = d / sqrt(hd); if (sc[s] > mx) mx = sc[s];
        }
        for (int s = 0; s <= t; s++) { sc[s] = exp(sc[s] - mx); sum += sc[s]; }
        for (int i = 0; i < hd; i++) {
            double y = 0;
            for (int s = 0; s <= t; s++)
                y += sc[s] / sum * c.qkv[(off[b] + s) * 3 * C + 2 * C + h * hd + i];
            if (fabs(y - c.out[(off[b] + t) * C + h * hd + i]) > 1e-5 * (1 + fabs(y))) bad++;
        }
    }
    CHECK_MSG(bad == 0, "attention_forward differs from the naive reference in %d places", bad);
    float *scratch = zeros(A);
    attention_backward(dqkv, scratch, c.r, c.qkv, c.att, off, att_off, B, C, NH);
    free(scratch);
    fd_check("attention dqkv", att_loss, &c, c.qkv, dqkv, N * 3 * C, 1e-2f, 2e-3, 1e-2);
    free(c.out); free(c.att); free(c.qkv); free(c.r); free(dqkv);
}
static void test_attention(void) {
    int short_lens[3] = {5, 1, 3}, mixed[3] = {70, 1, 66}, blocks[3] = {130, 64, 2};
    test_attention_lens(short_lens);
    test_attention_lens(mixed);
    test_attention_lens(blocks);
}

// ---- gelu
typedef struct { float *out, *inp, *r; int n; } GeluCtx;
static double gelu_loss(void *p) {
    GeluCtx *c = p;
    gelu_forward(c->out, c->inp, c->n);
    return dot(c->out, c->r, c->n);
}
static void test_gelu(void) {
    Rng rng; rng_init(&rng, 4);
    int n = 301;
    GeluCtx c = {zeros(n), randn(&rng, n, 2.0f), randn(&rng, n, 1), n};
    float *din = zeros(n);
    gelu_loss(&c);
    float x[7] = {0.0f, 1.0f, -2.0f, 0.001f, 10.0f, -10.0f, -3.0f}, y[7];
    gelu_forward(y, x, 7);
    // 0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3))), computed in double
    float want[7];
    for (int i = 0; i < 7; i++)
        want[i] = (float)(0.5 * x[i] *
                          (1.0 + tanh(0.7978845608028654 *
                                      (x[i] + 0.044715 * (double)x[i] * x[i] * x[i]))));
    CHECK_CLOSE(y, want, 7, 1e-7, 2e-6, "gelu vs double reference, including saturation");
    gelu_backward(din, c.inp, c.r, n);
    fd_check("gelu dinp", gelu_loss, &c, c.inp, din, n, 1e-3f, 1e-3, 1e-2);
    free(c.out); free(c.inp); free(c.r); free(din);
}

// ---- encoder
typedef struct { float *out, *wte, *wpe, *r; int32_t *tok, *pos; int N, C; } EncCtx;
static double enc_loss(void *p) {
    EncCtx *c = p;
    encoder_forward(c->out, c->tok, c->pos, c->wte, c->wpe, c->N, c->C);
    return dot(c->out, c->r, (int64_t)c->N * c->C);
}
static void test_encoder(void) {
    Rng rng; rng_init(&rng, 5);
    int V = 11, maxT = 6, N = 9, C = 7;
    int32_t tok[9] = {3, 3, 10, 0, 5, 3, 7, 7, 1}, pos[9] = {0, 1, 2, 0, 1, 0, 1, 2, 3};  // repeats
    EncCtx c = {zeros(N * C),
                randn(&rng, V * C, 1),
                randn(&rng, maxT * C, 1),
                randn(&rng, N * C, 1),
                tok,
                pos,
                N,
                C};
    float *dwte = zeros(V * C), *dwpe = zeros(maxT * C);
    enc_loss(&c);
    encoder_backward(dwte, dwpe, c.r, tok, pos, N, C, V, maxT);
    fd_check("encoder dwte", enc_loss, &c, c.wte, dwte, V * C, 1e-2f, 1e-3, 1e-2);
    fd_check("encoder dwpe", enc_loss, &c, c.wpe, dwpe, maxT * C, 1e-2f, 1e-3, 1e-2);
    free(c.out); free(c.wte); free(c.wpe); free(c.r); free(dwte); free(dwpe);
}

// ---- fused log-prob / cross-entropy
typedef struct { float *logits, *logp, *lse, *ent, *dlogp; int32_t *tgt; int M, V; } LpCtx;
static double lp_loss(void *p) {
    LpCtx *c = p;
    logprob_forward(c->logp, c->ent, c->lse, c->logits, c->tgt, c->M, c->V);
    return dot(c->logp, c->dlogp, c->M);
}
static void test_logprob(void) {
    Rng rng; rng_init(&rng, 6);
    int M = 4, V = 97;
    int32_t tgt[4] = {5, -1, 96, 0};
    LpCtx c = {randn(&rng, M * V, 3.0f), zeros(M), zeros(M), zeros(M),
               randn(&rng, M, 1),        tgt,      M,        V};
    c.dlogp[1] = 0.7f;   // no target there: must contribute nothing
    lp_loss(&c);
    // reference in double: log softmax and entropy
    for (int r = 0; r < M; r++) {
        double mx = -1e30, s = 0, ent = 0;
        for (int i = 0; i < V; i++) if (c.logits[r * V + i] > mx) mx = c.logits[r * V + i];
        for (int i = 0; i < V; i++) s += exp(c.logits[r * V + i] - mx);
        double lse = mx + log(s);
        for (int i = 0; i < V; i++) { double lp = c.logits[r * V + i] - lse; ent -= exp(lp) * lp; }
        float want_lp = tgt[r] >= 0 ? (float)(c.logits[r * V + tgt[r]] - lse) : 0.0f,
              want_ent = (float)ent;
        CHECK_CLOSE(&c.logp[r], &want_lp, 1, 1e-5, 1e-5, "log-prob vs double reference");
        CHECK_CLOSE(&c.ent[r], &want_ent, 1, 1e-5, 1e-4, "entropy vs double reference");
    }
    float *g = malloc((size_t)M * V * sizeof(float));
    memcpy(g, c.logits, (size_t)M * V * sizeof(float));
    logprob_backward(g, c.lse, tgt, c.dlogp, M, V);
    fd_check("logprob dlogits", lp_loss, &c, c.logits, g, M * V, 1e-2f, 1e-3, 1e-2);
    for (int i = 0; i < V; i++) CHECK(g[V + i] == 0.0f);   // target -1 row is all zero
    free(c.logits); free(c.logp); free(c.lse); free(c.ent); free(c.dlogp); free(g);
}

// ---- scalar head
typedef struct { float *out, *inp, *w, *r; int N, C; } ScCtx;
static double sc_loss(void *p) {
    ScCtx *c = p;
    score_forward(c->out, c->inp, c->w, c->N, c->C);
    return dot(c->out, c->r, c->N);
}
static void test_score(void) {
    Rng rng; rng_init(&rng, 7);
    int N = 6, C = 19;
    ScCtx c = {zeros(N), randn(&rng, N * C, 1), randn(&rng, C, 1), randn(&rng, N, 1), N, C};
    float *din = zeros(N * C), *dw = zeros(C);
    sc_loss(&c);
    score_backward(din, dw, c.r, c.inp, c.w, N, C);
    fd_check("score dinp", sc_loss, &c, c.inp, din, N * C, 1e-2f, 1e-3, 1e-2);
    fd_check("score dw", sc_loss, &c, c.w, dw, C, 1e-2f, 1e-3, 1e-2);
    free(c.out); free(c.inp); free(c.w); free(c.r); free(din); free(dw);
}

// ==== Llama-style kernels. Each gradient is checked against central differences of a reference
// forward written here in double from the definition (L = sum r * out, r random), so the
// differences are exact to ~1e-9 and the tolerance measures the float kernel alone. Gradient
// buffers start at ACC0, not 0: every _backward must add into them.
#define ACC0 0.25f
typedef double (*RefLossFn)(void *ctx);
// One forward and backward of a kernel, its outputs and gradients copied into res.
typedef void (*PassFn)(void *ctx, float *res);

static double *to_double(const float *x, int64_t n) {
    double *d = malloc((size_t)n * sizeof(double));
    for (int64_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}
static float *filled(int64_t n, float v) {
    float *x = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) x[i] = v;
    return x;
}
static double dot_fd(const float *a, const double *b, int64_t n) {
    double s = 0; for (int64_t i = 0; i < n; i++) s += a[i] * b[i]; return s;
}

// g (the analytic gradient of x, ACC0 included) against central differences of the double loss f
// on nsample elements spread over x: |fd - (g - ACC0)| <= tol * (1 + |fd|).
static void fd_check_ref(const char *what, RefLossFn f, void *ctx, double *x, const float *g,
                         int64_t n, int64_t nsample, double tol) {
    int64_t step = n > nsample ? n / nsample : 1;
    int bad = 0;
    double h = 1e-5;
    for (int64_t i = 0; i < n; i += step) {
        double keep = x[i];
        x[i] = keep + h; double lp = f(ctx);
        x[i] = keep - h; double lm = f(ctx);
        x[i] = keep;
        double fd = (lp - lm) / (2.0 * h), an = (double)g[i] - ACC0;
        if (!(fabs(fd - an) <= tol * (1.0 + fabs(fd))) && bad++ < 3)
            test_fail_at(__FILE__, __LINE__, "%s[%lld]: analytic %.8g vs finite-difference %.8g",
                         what, (long long)i, an, fd);
    }
}

// a (float kernel) against want (double reference): |a - want| <= tol * (1 + |want|)
static void check_ref(const char *what, const float *a, const double *want, int64_t n, double tol) {
    int64_t bad = 0, worst = 0;
    double worst_e = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs(a[i] - want[i]) / (1.0 + fabs(want[i]));
        if (!(e <= tol)) {
            if (bad++ == 0 || e > worst_e) { worst = i; worst_e = e; }
        }
    }
    CHECK_MSG(bad == 0,
              "%s: %lld of %lld differ from the double reference, e.g. [%lld] %.8g vs %.8g",
              what, (long long)bad, (long long)n, (long long)worst, a[worst], want[worst]);
}

// The pass on 1 thread and on 2 gives the same bits.
static void check_threads(const char *what, PassFn pass, void *ctx, int64_t nres) {
    float *r1 = zeros(nres), *r2 = zeros(nres);
    int nt = omp_get_max_threads();
    omp_set_num_threads(1);
    pass(ctx, r1);
    omp_set_num_threads(2);
    pass(ctx, r2);
    omp_set_num_threads(nt);
    CHECK_MSG(memcmp(r1, r2, (size_t)nres * sizeof(float)) == 0, "%s: 1 and 2 threads differ",
              what);
    free(r1); free(r2);
}
#define APPEND(res, k, src, n) (memcpy((res) + (k), (src), (size_t)(n) * sizeof(float)), (k) += (n))

// ---- linear: nn.Linear layout, weight (OC, C)
typedef struct {
    float *out, *inp, *w, *b, *r, *din, *dw, *db;
    double *inp_d, *w_d, *b_d, *y;
    int64_t N; int C, OC;
} LinCtx;
static double lin_ref_loss(void *p) {
    LinCtx *c = p;
    for (int64_t n = 0; n < c->N; n++) for (int j = 0; j < c->OC; j++) {
        double s = c->b ? c->b_d[j] : 0.0;
        for (int k = 0; k < c->C; k++) s += c->inp_d[n * c->C + k] * c->w_d[(int64_t)j * c->C + k];
        c->y[n * c->OC + j] = s;
    }
    return dot_fd(c->r, c->y, c->N * c->OC);
}
static void lin_pass(void *p, float *res) {
    LinCtx *c = p;
    int64_t k = 0, nd = c->N * c->C, nw = (int64_t)c->OC * c->C;
    linear_forward(c->out, c->inp, c->w, c->b, c->N, c->C, c->OC, 0);
    for (int64_t i = 0; i < nd; i++) c->din[i] = ACC0;
    for (int64_t i = 0; i < nw; i++) c->dw[i] = ACC0;
    for (int j = 0; j < c->OC; j++) c->db[j] = ACC0;
    linear_backward(c->din, c->dw, c->b ? c->db : NULL, c->r, c->inp, c->w, c->N, c->C, c->OC);
    APPEND(res, k, c->out, c->N * c->OC); APPEND(res, k, c->din, nd); APPEND(res, k, c->dw, nw);
    APPEND(res, k, c->db, c->OC);
}
static void test_linear_n(int64_t N, int C, int OC, int with_bias) {
    Rng rng; rng_init(&rng, 31);
    LinCtx c = {zeros(N * OC), randn(&rng, N * C, 1), randn(&rng, OC * C, 1),
                with_bias ? randn(&rng, OC, 1) : NULL, randn(&rng, N * OC, 1), zeros(N * C),
                zeros(OC * C), zeros(OC), NULL, NULL, NULL, malloc((size_t)N * OC * sizeof(double)),
                N, C, OC};
    c.inp_d = to_double(c.inp, N * C); c.w_d = to_double(c.w, OC * C);
    c.b_d = with_bias ? to_double(c.b, OC) : NULL;
    check_threads("linear", lin_pass, &c, N * OC + N * C + OC * C + OC);
    lin_ref_loss(&c);
    check_ref("linear_forward", c.out, c.y, N * OC, 1e-5);
    fd_check_ref("linear dinp", lin_ref_loss, &c, c.inp_d, c.din, N * C, 200, 1e-5);
    fd_check_ref("linear dweight", lin_ref_loss, &c, c.w_d, c.dw, OC * C, 200, 1e-5);
    if (with_bias) fd_check_ref("linear dbias", lin_ref_loss, &c, c.b_d, c.db, OC, 200, 1e-5);
    // beta_one adds into out; dinp NULL leaves the weight gradient as it was
    float *o2 = filled(N * OC, 1.0f), *dw2 = filled(OC * C, ACC0);
    linear_forward(o2, c.inp, c.w, c.b, N, C, OC, 1);
    for (int64_t i = 0; i < N * OC; i++) o2[i] -= 1.0f;
    CHECK_CLOSE(o2, c.out, (size_t)(N * OC), 1e-5, 1e-5, "linear beta_one residual add");
    linear_backward(NULL, dw2, NULL, c.r, c.inp, c.w, N, C, OC);
    CHECK_CLOSE(dw2, c.dw, (size_t)(OC * C), 1e-6, 1e-6, "linear backward without dinp");
    free(o2); free(dw2);
    free(c.out); free(c.inp); free(c.w); free(c.b); free(c.r); free(c.din); free(c.dw);
    free(c.db); free(c.inp_d); free(c.w_d); free(c.b_d); free(c.y);
}
static void test_linear(void) {
    test_linear_n(5, 7, 11, 1);
    test_linear_n(37, 7, 11, 0);
    test_linear_n(150, 7, 11, 1);   // the bias gradient's row sum: two full chunks of 64, a partial
    test_linear_n(1, 37, 11, 1);    // one row (decoding): two vectors of 16 and a tail
    test_linear_n(1, 7, 12, 0);
    test_linear_n(3, 37, 11, 1);    // few rows (decoding): one pass of 4 rows, a tail of channels
    test_linear_n(8, 37, 40, 1);    // two passes of 4 rows, a second block of 32 outputs
}

// ---- RMSNorm
typedef struct {
    float *out, *rstd, *inp, *w, *r, *din, *dw;
    double *inp_d, *w_d, *y;
    int64_t N; int C;
} RmsCtx;
#define RMS_EPS 1e-6f
static double rms_ref_loss(void *p) {
    RmsCtx *c = p;
    for (int64_t n = 0; n < c->N; n++) {
        const double *x = c->inp_d + n * c->C;
        double ss = 0;
        for (int i = 0; i < c->C; i++) ss += x[i] * x[i];
        double r = 1.0 / sqrt(ss / c->C + (double)RMS_EPS);
        for (int i = 0; i < c->C; i++) c->y[n * c->C + i] = x[i] * r * c->w_d[i];
    }
    return dot_fd(c->r, c->y, c->N * c->C);
}
static void rms_pass(void *p, float *res) {
    RmsCtx *c = p;
    int64_t k = 0, nd = c->N * c->C;
    rmsnorm_forward(c->out, c->rstd, c->inp, c->w, c->N, c->C, RMS_EPS);
    for (int64_t i = 0; i < nd; i++) c->din[i] = ACC0;
    for (int i = 0; i < c->C; i++) c->dw[i] = ACC0;
    rmsnorm_backward(c->din, c->dw, c->r, c->inp, c->w, c->rstd, c->N, c->C);
    APPEND(res, k, c->out, nd); APPEND(res, k, c->rstd, c->N); APPEND(res, k, c->din, nd);
    APPEND(res, k, c->dw, c->C);
}
static void test_rmsnorm_n(int64_t N, int C) {
    Rng rng; rng_init(&rng, 32);
    RmsCtx c = {zeros(N * C), zeros(N), randn(&rng, N * C, 2), randn(&rng, C, 1),
                randn(&rng, N * C, 1), zeros(N * C), zeros(C), NULL, NULL,
                malloc((size_t)(N * C) * sizeof(double)), N, C};
    c.inp_d = to_double(c.inp, N * C); c.w_d = to_double(c.w, C);
    check_threads("rmsnorm", rms_pass, &c, 2 * N * C + N + C);
    rms_ref_loss(&c);
    check_ref("rmsnorm_forward", c.out, c.y, N * C, 2e-6);
    // the copying variant: the same output bits, and the input copied
    float *out2 = filled(N * C, NAN), *r2 = filled(N, NAN), *copy = filled(N * C, NAN);
    rmsnorm_forward_copy(out2, r2, c.inp, c.w, copy, N, C, RMS_EPS);
    CHECK_MSG(!memcmp(out2, c.out, (size_t)(N * C) * sizeof(float)) &&
                  !memcmp(r2, c.rstd, (size_t)N * sizeof(float)) &&
                  !memcmp(copy, c.inp, (size_t)(N * C) * sizeof(float)),
              "rmsnorm_forward_copy: the output of rmsnorm_forward and a copy of the input");
    free(out2); free(r2); free(copy);
    fd_check_ref("rmsnorm dinp", rms_ref_loss, &c, c.inp_d, c.din, N * C, 200, 2e-5);
    fd_check_ref("rmsnorm dweight", rms_ref_loss, &c, c.w_d, c.dw, C, 200, 2e-5);
    free(c.out); free(c.rstd); free(c.inp); free(c.w); free(c.r); free(c.din); free(c.dw);
    free(c.inp_d); free(c.w_d); free(c.y);
}
// The weight gradient's sum over rows when a round of chunks cannot hold them all (3000 wide:
// 21 chunks of 64 rows a round, 1500 rows: 2 rounds, the last partial) and when a row is wider
// than a round holds (70000: the ordered sum): against a double sum with the kernel's own rstd,
// and the same bits with 1 and 2 threads.
static void test_rmsnorm_rounds_n(int64_t N, int C) {
    Rng rng; rng_init(&rng, 33);
    RmsCtx c = {zeros(N * C), zeros(N), randn(&rng, N * C, 2), randn(&rng, C, 1),
                randn(&rng, N * C, 1), zeros(N * C), zeros(C), NULL, NULL, NULL, N, C};
    check_threads("rmsnorm rounds", rms_pass, &c, 2 * N * C + N + C);
    double *want = malloc((size_t)C * sizeof(double));
    for (int i = 0; i < C; i++) want[i] = ACC0;
    for (int64_t n = 0; n < N; n++)
        for (int i = 0; i < C; i++)
            want[i] += (double)c.r[n * C + i] * c.inp[n * C + i] * c.rstd[n];
    check_ref("rmsnorm dweight over rounds", c.dw, want, C, 2e-5);
    free(want);
    free(c.out); free(c.rstd); free(c.inp); free(c.w); free(c.r); free(c.din); free(c.dw);
}
static void test_rmsnorm(void) {
    test_rmsnorm_n(150, 7);   // the weight gradient's row sum: two full chunks of 64, a partial
    test_rmsnorm_n(3, 2100);  // two column strips of 2048
    test_rmsnorm_rounds_n(1500, 3000);
    test_rmsnorm_rounds_n(3, 70000);
}

// ---- layernorm's weight and bias gradients and matmul's bias gradient (colsum_add) as row sums
// in rounds: chunks' partial sums added in chunk order after a barrier. 3000 wide with the bias:
// 10 chunks of 64 rows a round, 1500 rows = 24 chunks: 3 rounds, the last partial; 70000 wide:
// wider than a round (layernorm's ordered sum, colsum's column blocks). The same bits with 1 and
// 2 threads; the weight and bias gradients against double sums; the bias gradient of matmul
// bit for bit against the chunk-ordered float sum it has always been.
typedef struct {
    float *inp, *mean, *rstd, *w, *r, *din, *dw, *db, *dcol;
    int64_t N; int C;
} SumCtx;
static void sum_pass(void *p, float *res) {
    SumCtx *c = p;
    int64_t k = 0, nd = c->N * c->C;
    for (int64_t i = 0; i < nd; i++) c->din[i] = ACC0;
    for (int i = 0; i < c->C; i++) { c->dw[i] = ACC0; c->db[i] = ACC0; c->dcol[i] = ACC0; }
    layernorm_backward(c->din, c->dw, c->db, c->r, c->inp, c->w, c->mean, c->rstd, c->N, c->C);
    matmul_backward(NULL, NULL, c->dcol, c->r, NULL, NULL, c->N, 1, c->C);
    APPEND(res, k, c->din, nd); APPEND(res, k, c->dw, c->C); APPEND(res, k, c->db, c->C);
    APPEND(res, k, c->dcol, c->C);
}
static void test_row_sums_n(int64_t N, int C) {
    Rng rng; rng_init(&rng, 34);
    SumCtx c = {randn(&rng, N * C, 2), zeros(N), zeros(N), randn(&rng, C, 1), randn(&rng, N * C, 1),
                zeros(N * C), zeros(C), zeros(C), zeros(C), N, C};
    float *out = zeros(N * C), *b = randn(&rng, C, 1);
    layernorm_forward(out, c.mean, c.rstd, c.inp, c.w, b, N, C, 1e-5f);
    check_threads("layernorm and bias row sums", sum_pass, &c, N * C + 3 * (int64_t)C);
    double *ww = malloc((size_t)C * sizeof(double)), *wb = malloc((size_t)C * sizeof(double));
    float *col = malloc((size_t)C * sizeof(float));
    for (int i = 0; i < C; i++) { ww[i] = ACC0; wb[i] = ACC0; col[i] = ACC0; }
    for (int64_t n = 0; n < N; n++)
        for (int i = 0; i < C; i++) {
            ww[i] += (double)c.r[n * C + i] * (c.inp[n * C + i] - c.mean[n]) * c.rstd[n];
            wb[i] += c.r[n * C + i];
        }
    for (int64_t i0 = 0; i0 < N; i0 += 64)
        for (int i = 0; i < C; i++) {
            float acc = 0.0f;
            for (int64_t n = i0; n < N && n < i0 + 64; n++) acc += c.r[n * C + i];
            col[i] += acc;
        }
    check_ref("layernorm dweight over rounds", c.dw, ww, C, 2e-5);
    check_ref("layernorm dbias over rounds", c.db, wb, C, 2e-5);
    CHECK_MSG(!memcmp(col, c.dcol, (size_t)C * sizeof(float)),
              "matmul_backward's bias gradient: the chunk-ordered sum, bit for bit (%d wide)", C);
    free(ww); free(wb); free(col); free(out); free(b);
    free(c.inp); free(c.mean); free(c.rstd); free(c.w); free(c.r); free(c.din); free(c.dw);
    free(c.db); free(c.dcol);
}
static void test_row_sums(void) {
    test_row_sums_n(150, 37);
    test_row_sums_n(1500, 3000);
    test_row_sums_n(3, 70000);
}

// ---- RoPE frequencies
static void test_rope_inv_freq(void) {
    // default: theta^(-2i/hd), theta 1e6 (Qwen2), hd 64
    float f[64];
    double want[64];
    rope_inv_freq(f, 64, 1e6, 0, 0, 0, 0, 0);
    for (int i = 0; i < 32; i++) want[i] = pow(1e6, -2.0 * i / 64);
    check_ref("default inv_freq", f, want, 32, 1.5e-7);
    // Llama 3.1: theta 500000, hd 128, factor 8, low_freq_factor 1, high_freq_factor 4,
    // original context 8192. Written as transformers writes it: wavelength 2 pi / f; beyond
    // 8192 / 1 slowed by 8; below 8192 / 4 kept; between, smooth = (8192 / wavelen - 1) / (4 - 1)
    // mixes f / 8 and f.
    int bands[3] = {0, 0, 0};
    for (int i = 0; i < 64; i++) {
        double inv = pow(500000.0, -2.0 * i / 128), wavelen = 2 * M_PI / inv;
        double slow = wavelen > 8192.0 ? inv / 8 : inv;
        double smooth = (8192.0 / wavelen - 1.0) / (4.0 - 1.0);
        double mixed = (1 - smooth) * slow / 8 + smooth * slow;
        int medium = !(wavelen < 8192.0 / 4) && !(wavelen > 8192.0 / 1);
        want[i] = medium ? mixed : slow;
        bands[wavelen < 2048.0 ? 0 : medium ? 1 : 2]++;
    }
    CHECK_MSG(bands[0] == 29 && bands[1] == 6 && bands[2] == 29,
              "llama3 bands: %d kept, %d smoothed, %d slowed", bands[0], bands[1], bands[2]);
    float g[64];
    rope_inv_freq(g, 128, 500000.0, 1, 8.0, 1.0, 4.0, 8192);
    check_ref("llama3 inv_freq", g, want, 64, 1.5e-7);
    // the bands by hand: pair 0 is kept (1), pair 63 slowed by 8, pair 32 smoothed
    CHECK(g[0] == 1.0f);
    CHECK(fabs(g[63] - pow(500000.0, -126.0 / 128) / 8) <= 1e-7 * g[63]);
    double f32 = pow(500000.0, -0.5), s32 = (8192.0 * f32 / (2 * M_PI) - 1) / 3;
    CHECK(fabs(g[32] - ((1 - s32) * f32 / 8 + s32 * f32)) <= 1e-7 * g[32]);
    CHECK(s32 > 0.05 && s32 < 0.95);
}

// ---- RoPE: rows of nheads heads with stride > nheads * hd (the gap must stay untouched)
typedef struct {
    float *x, *xr, *r, *dx, *inv;
    double *x_d, *y;
    int32_t *pos;
    int64_t N, stride; int nheads, hd;
} RopeCtx;
// the definition: pair (x_i, x_{i+hd/2}) as the complex number x_i + i x_{i+hd/2}, times
// e^{i pos inv_freq_i}
static double rope_ref_loss(void *p) {
    RopeCtx *c = p;
    int half = c->hd / 2;
    for (int64_t i = 0; i < c->N * c->stride; i++) c->y[i] = c->x_d[i];
    for (int64_t n = 0; n < c->N; n++) for (int h = 0; h < c->nheads; h++)
        for (int i = 0; i < half; i++) {
            int64_t a = n * c->stride + (int64_t)h * c->hd + i;
            double complex z = (c->x_d[a] + I * c->x_d[a + half]) *
                               cexp(I * ((double)c->pos[n] * (double)c->inv[i]));
            c->y[a] = creal(z);
            c->y[a + half] = cimag(z);
        }
    return dot_fd(c->r, c->y, c->N * c->stride);
}
static void rope_pass(void *p, float *res) {
    RopeCtx *c = p;
    int64_t k = 0, n = c->N * c->stride;
    memcpy(c->xr, c->x, (size_t)n * sizeof(float));
    rope_forward(c->xr, c->pos, c->inv, c->N, c->nheads, c->hd, c->stride);
    // rope_backward is in place: dx starts as dout
    memcpy(c->dx, c->r, (size_t)n * sizeof(float));
    rope_backward(c->dx, c->pos, c->inv, c->N, c->nheads, c->hd, c->stride);
    for (int64_t i = 0; i < n; i++) c->dx[i] += ACC0;   // (fd_check_ref subtracts ACC0)
    APPEND(res, k, c->xr, n); APPEND(res, k, c->dx, n);
}
static void test_rope_case(const int32_t *pos, int N, int nheads, int hd, int pad, double theta) {
    Rng rng; rng_init(&rng, 33);
    int64_t stride = (int64_t)nheads * hd + pad, n = N * stride;
    RopeCtx c = {randn(&rng, n, 1), zeros(n), randn(&rng, n, 1), zeros(n), zeros(hd / 2),
                 NULL, malloc((size_t)n * sizeof(double)), (int32_t *)pos, N, stride, nheads, hd};
    c.x_d = to_double(c.x, n);
    rope_inv_freq(c.inv, hd, theta, 0, 0, 0, 0, 0);
    check_threads("rope", rope_pass, &c, 2 * n);
    rope_ref_loss(&c);
    check_ref("rope_forward vs complex rotation", c.xr, c.y, n, 1e-6);
    fd_check_ref("rope dx", rope_ref_loss, &c, c.x_d, c.dx, n, 300, 1e-6);
    free(c.x); free(c.xr); free(c.r); free(c.dx); free(c.inv); free(c.x_d); free(c.y);
}
static void test_rope(void) {
    int32_t pos[6] = {0, 1, 5, 2, 17, 3};
    test_rope_case(pos, 6, 3, 6, 4, 10000.0);
    // past 1,000 with theta 1e6: angles of up to 1.3e5 radians, where a float angle is off by
    // ~1e-2
    int32_t far[5] = {1001, 4097, 32767, 131071, 1000};
    test_rope_case(far, 5, 2, 64, 0, 1e6);
    test_rope_case(far, 5, 1, 48, 5, 1e6);
    test_rope_case(far, 5, 2, 160, 3, 1e6);   // 80 pairs: a block of 64 cosines and a partial one
}

// ---- SwiGLU
typedef struct {
    float *out, *gu, *r, *dgu;
    double *gu_d, *y;
    int64_t N; int F;
} SwCtx;
static double sw_ref_loss(void *p) {
    SwCtx *c = p;
    for (int64_t n = 0; n < c->N; n++) for (int j = 0; j < c->F; j++) {
        double g = c->gu_d[n * 2 * c->F + j], u = c->gu_d[n * 2 * c->F + c->F + j];
        c->y[n * c->F + j] = g / (1.0 + exp(-g)) * u;
    }
    return dot_fd(c->r, c->y, c->N * c->F);
}
static void sw_pass(void *p, float *res) {
    SwCtx *c = p;
    int64_t k = 0;
    swiglu_forward(c->out, c->gu, c->N, c->F);
    for (int64_t i = 0; i < 2 * c->N * c->F; i++) c->dgu[i] = ACC0;
    swiglu_backward(c->dgu, c->r, c->gu, c->N, c->F);
    APPEND(res, k, c->out, c->N * c->F); APPEND(res, k, c->dgu, 2 * c->N * c->F);
}
static void test_swiglu_n(int64_t N, int F) {
    Rng rng; rng_init(&rng, 34);
    SwCtx c = {zeros(N * F), randn(&rng, 2 * N * F, 3), randn(&rng, N * F, 1), zeros(2 * N * F),
               NULL, malloc((size_t)(N * F) * sizeof(double)), N, F};
    float big[6] = {30.0f, -30.0f, 100.0f, -100.0f, 0.0f, -1e-3f};   // saturation both ways
    for (int i = 0; i < 6 && i < F; i++) c.gu[i] = big[i];
    c.gu_d = to_double(c.gu, 2 * N * F);
    check_threads("swiglu", sw_pass, &c, 3 * N * F);
    sw_ref_loss(&c);
    check_ref("swiglu_forward", c.out, c.y, N * F, 1e-6);
    fd_check_ref("swiglu dgate/dup", sw_ref_loss, &c, c.gu_d, c.dgu, 2 * N * F, 300, 1e-5);
    free(c.out); free(c.gu); free(c.r); free(c.dgu); free(c.gu_d); free(c.y);
}
static void test_swiglu(void) {
    test_swiglu_n(3, 11);
    test_swiglu_n(2, 1100);   // two column blocks of 1024 per row
}

// ---- grouped-query attention
typedef struct {
    float *out, *att, *qkv, *r, *dqkv, *scratch;
    double *qkv_d, *y;
    int64_t *off, *att_off;
    int B, NH, KVH, hd;
    int64_t N, A;
} GqaCtx;
// the definition, in double: q head h attends with kv head h / (NH / KVH)
static double gqa_ref_loss(void *p) {
    GqaCtx *c = p;
    int hd = c->hd, group = c->NH / c->KVH;
    int64_t QKV = (int64_t)(c->NH + 2 * c->KVH) * hd, C = (int64_t)c->NH * hd;
    double sc[256];
    for (int b = 0; b < c->B; b++) for (int h = 0; h < c->NH; h++)
        for (int64_t t = c->off[b]; t < c->off[b + 1]; t++) {
            const double *q = c->qkv_d + t * QKV + (int64_t)h * hd;
            double mx = -1e300, sum = 0;
            for (int64_t s = c->off[b]; s <= t; s++) {
                const double *k = c->qkv_d + s * QKV + C + (int64_t)(h / group) * hd;
                double d = 0;
                for (int i = 0; i < hd; i++) d += q[i] * k[i];
                sc[s - c->off[b]] = d / sqrt((double)hd);
                if (sc[s - c->off[b]] > mx) mx = sc[s - c->off[b]];
            }
            for (int64_t s = 0; s <= t - c->off[b]; s++) { sc[s] = exp(sc[s] - mx); sum += sc[s]; }
            for (int i = 0; i < hd; i++) {
                double y = 0;
                for (int64_t s = c->off[b]; s <= t; s++)
                    y += sc[s - c->off[b]] / sum *
                         c->qkv_d[s * QKV + C + (int64_t)(c->KVH + h / group) * hd + i];
                c->y[t * C + (int64_t)h * hd + i] = y;
            }
        }
    return dot_fd(c->r, c->y, c->N * C);
}
static void gqa_pass(void *p, float *res) {
    GqaCtx *c = p;
    int64_t k = 0, nq = c->N * (c->NH + 2 * c->KVH) * c->hd, ny = c->N * c->NH * c->hd;
    attention_gqa_forward(c->out, c->att, c->qkv, c->off, c->att_off, c->B, c->NH, c->KVH, c->hd);
    for (int64_t i = 0; i < nq; i++) c->dqkv[i] = ACC0;
    attention_gqa_backward(c->dqkv, c->scratch, c->r, c->qkv, c->att, c->off, c->att_off, c->B,
                           c->NH, c->KVH, c->hd);
    APPEND(res, k, c->out, ny); APPEND(res, k, c->att, c->A); APPEND(res, k, c->dqkv, nq);
}
// lens (B) packed; short ones take the hand loop, >= 64 tokens the sgemm blocks of 64 rows
static void gqa_setup(GqaCtx *c, Rng *rng, const int *lens, int B, int NH, int KVH, int hd) {
    c->B = B; c->NH = NH; c->KVH = KVH; c->hd = hd;
    c->off = calloc((size_t)B + 1, sizeof(int64_t));
    c->att_off = calloc((size_t)B, sizeof(int64_t));
    c->A = 0;
    for (int b = 0; b < B; b++) {
        c->off[b + 1] = c->off[b] + lens[b];
        c->att_off[b] = c->A;
        c->A += (int64_t)NH * lens[b] * lens[b];
    }
    c->N = c->off[B];
    int64_t nq = c->N * (NH + 2 * KVH) * hd, ny = c->N * NH * hd;
    c->qkv = randn(rng, nq, 1); c->r = randn(rng, ny, 1);
    c->out = zeros(ny); c->att = zeros(c->A); c->scratch = zeros(c->A); c->dqkv = zeros(nq);
    c->qkv_d = to_double(c->qkv, nq);
    c->y = malloc((size_t)ny * sizeof(double));
}
static void gqa_free(GqaCtx *c) {
    free(c->out); free(c->att); free(c->qkv); free(c->r); free(c->dqkv); free(c->scratch);
    free(c->qkv_d); free(c->y); free(c->off); free(c->att_off);
}
static void test_gqa_case(const int *lens, int B, int NH, int KVH, int hd, int64_t nsample) {
    Rng rng; rng_init(&rng, 35);
    GqaCtx c;
    gqa_setup(&c, &rng, lens, B, NH, KVH, hd);
    int64_t nq = c.N * (NH + 2 * KVH) * hd, ny = c.N * NH * hd;
    check_threads("attention_gqa", gqa_pass, &c, ny + c.A + nq);
    gqa_ref_loss(&c);
    char what[96];
    snprintf(what, sizeof what, "attention_gqa_forward NH=%d KVH=%d hd=%d", NH, KVH, hd);
    check_ref(what, c.out, c.y, ny, 2e-6);
    snprintf(what, sizeof what, "attention_gqa dqkv NH=%d KVH=%d hd=%d", NH, KVH, hd);
    fd_check_ref(what, gqa_ref_loss, &c, c.qkv_d, c.dqkv, nq, nsample, 2e-5);
    gqa_free(&c);
}
static void test_attention_gqa(void) {
    int short_lens[3] = {5, 1, 8}, mqa_lens[2] = {7, 3}, long_lens[3] = {70, 2, 65};
    test_gqa_case(short_lens, 3, 9, 3, 6, 400);     // 9 heads in 3 groups of 3
    test_gqa_case(mqa_lens, 2, 4, 1, 64, 400);      // multi-query: 4 heads share one
    test_gqa_case(long_lens, 3, 9, 3, 48, 120);     // the sgemm path, a partial block
}

// With KVH = NH, GQA attention is GPT-2's: the same bits forward and backward.
static void test_attention_gqa_is_gpt2(void) {
    int lens[3] = {70, 1, 66};
    Rng rng; rng_init(&rng, 36);
    GqaCtx c;
    gqa_setup(&c, &rng, lens, 3, 3, 3, 5);
    int64_t nq = c.N * 9 * 5, ny = c.N * 15;
    float *res = zeros(ny + c.A + nq), *out = zeros(ny), *att = zeros(c.A);
    float *dqkv = filled(nq, ACC0);
    gqa_pass(&c, res);
    attention_forward(out, att, c.qkv, c.off, c.att_off, 3, 15, 3);
    attention_backward(dqkv, c.scratch, c.r, c.qkv, att, c.off, c.att_off, 3, 15, 3);
    CHECK_MSG(memcmp(res, out, (size_t)ny * sizeof(float)) == 0, "GQA vs GPT-2 attention: out");
    CHECK_MSG(memcmp(res + ny, att, (size_t)c.A * sizeof(float)) == 0,
              "GQA vs GPT-2 attention: att");
    CHECK_MSG(memcmp(res + ny + c.A, dqkv, (size_t)nq * sizeof(float)) == 0,
              "GQA vs GPT-2 attention: dqkv");
    free(res); free(out); free(att); free(dqkv);
    gqa_free(&c);
}

// ---- RoPE fused into the attention's tasks: the same bits as rope_forward then the attention,
// and the attention's backward then rope_backward (outputs NaN-filled first), at positions past
// 1000 with rope_theta 1e6 and Llama 3 scaling; 9 / 3 heads of 48 (a long sequence through the
// sgemm blocks beside short ones) and multi-query heads of 64; 1 and 2 threads.
static void rope_fused_case(const int *lens, int B, int NH, int KVH, int hd) {
    Rng rng; rng_init(&rng, 37);
    GqaCtx c;
    gqa_setup(&c, &rng, lens, B, NH, KVH, hd);
    int64_t QKV = (int64_t)(NH + 2 * KVH) * hd, nq = c.N * QKV, ny = c.N * NH * hd;
    int npos = 1100;
    float *inv = zeros(hd / 2), *cs = filled((int64_t)npos * hd, NAN);
    rope_inv_freq(inv, hd, 1e6, 1, 8.0, 1.0, 4.0, 8192);
    rope_table(cs, inv, npos, hd);
    int32_t *pos = malloc((size_t)c.N * sizeof(int32_t));
    for (int b = 0; b < B; b++)
        for (int64_t n = c.off[b]; n < c.off[b + 1]; n++) pos[n] = (int32_t)(1000 + n - c.off[b]);
    for (int nt = 1; nt <= 2; nt++) {
        int keep = omp_get_max_threads();
        omp_set_num_threads(nt);
        float *q1 = malloc((size_t)nq * sizeof(float)), *q2 = malloc((size_t)nq * sizeof(float));
        memcpy(q1, c.qkv, (size_t)nq * sizeof(float));
        memcpy(q2, c.qkv, (size_t)nq * sizeof(float));
        float *o1 = filled(ny, NAN), *o2 = filled(ny, NAN), *a1 = filled(c.A, NAN);
        float *a2 = filled(c.A, NAN), *d1 = filled(nq, NAN), *d2 = filled(nq, NAN);
        rope_forward(q1, pos, inv, c.N, NH + KVH, hd, QKV);
        attention_gqa_forward(o1, a1, q1, c.off, c.att_off, B, NH, KVH, hd);
        attention_gqa_rope_forward(o2, a2, q2, c.off, c.att_off, B, NH, KVH, hd, pos, cs);
        attention_gqa_backward_set(d1, c.scratch, c.r, q1, a1, c.off, c.att_off, B, NH, KVH, hd);
        rope_backward(d1, pos, inv, c.N, NH + KVH, hd, QKV);
        attention_gqa_rope_backward_set(d2, c.scratch, c.r, q2, a2, c.off, c.att_off, B, NH, KVH,
                                        hd, pos, cs);
        omp_set_num_threads(keep);
        CHECK_MSG(!memcmp(q1, q2, (size_t)nq * sizeof(float)) &&
                      !memcmp(o1, o2, (size_t)ny * sizeof(float)) &&
                      !memcmp(a1, a2, (size_t)c.A * sizeof(float)),
                  "fused RoPE + attention forward (NH=%d KVH=%d hd=%d, %d threads): rotated qkv, "
                  "out and att differ from rope_forward + attention_gqa_forward", NH, KVH, hd, nt);
        CHECK_MSG(!memcmp(d1, d2, (size_t)nq * sizeof(float)),
                  "fused attention + RoPE backward (NH=%d KVH=%d hd=%d, %d threads): dqkv differs "
                  "from attention_gqa_backward_set + rope_backward", NH, KVH, hd, nt);
        free(q1); free(q2); free(o1); free(o2); free(a1); free(a2); free(d1); free(d2);
    }
    free(inv); free(cs); free(pos);
    gqa_free(&c);
}
static void test_attention_rope_fused(void) {
    int long_lens[3] = {70, 2, 65}, mqa_lens[2] = {7, 3};
    rope_fused_case(long_lens, 3, 9, 3, 48);
    rope_fused_case(mqa_lens, 2, 4, 1, 64);
}

// ---- the _set kernels: the same bits as adding into zeros, whatever the buffer held before
static void check_same_bits(const char *what, const float *a, const float *b, int64_t n) {
    if (memcmp(a, b, (size_t)n * sizeof(float)))
        test_fail_at(__FILE__, __LINE__, "%s: _set differs from adding into zeros", what);
}
static void test_set_kernels(void) {
    Rng rng; rng_init(&rng, 36);
    int64_t N = 70; int C = 13, OC = 29, F = 1100;
    float *inp = randn(&rng, N * C, 1), *w = randn(&rng, (int64_t)OC * C, 1);
    float *dout = randn(&rng, N * OC, 1), *want = zeros(N * C), *got = filled(N * C, NAN);
    float *dw1 = zeros((int64_t)OC * C), *dw2 = zeros((int64_t)OC * C);
    linear_backward(want, dw1, NULL, dout, inp, w, N, C, OC);
    linear_backward_set(got, dw2, NULL, dout, inp, w, N, C, OC);
    check_same_bits("linear dinp", got, want, N * C);
    check_same_bits("linear dweight", dw2, dw1, (int64_t)OC * C);
    float *gu = randn(&rng, 2 * N * F, 2), *dsw = randn(&rng, N * F, 1);
    float *swant = zeros(2 * N * F), *sgot = filled(2 * N * F, NAN);
    swiglu_backward(swant, dsw, gu, N, F);
    swiglu_backward_set(sgot, dsw, gu, N, F);
    check_same_bits("swiglu dgu", sgot, swant, 2 * N * F);
    // attention: a long sequence (sgemm blocks) beside short ones (the hand loop), 9 / 3 heads
    int lens[3] = {70, 2, 9};
    GqaCtx c;
    gqa_setup(&c, &rng, lens, 3, 9, 3, 8);
    int64_t nq = c.N * (9 + 2 * 3) * 8;
    float *agot = filled(nq, NAN);
    attention_gqa_forward(c.out, c.att, c.qkv, c.off, c.att_off, c.B, c.NH, c.KVH, c.hd);
    attention_gqa_backward(c.dqkv, c.scratch, c.r, c.qkv, c.att, c.off, c.att_off, c.B, c.NH,
                           c.KVH, c.hd);
    attention_gqa_backward_set(agot, c.scratch, c.r, c.qkv, c.att, c.off, c.att_off, c.B, c.NH,
                               c.KVH, c.hd);
    check_same_bits("attention dqkv", agot, c.dqkv, nq);
    gqa_free(&c);
    free(inp); free(w); free(dout); free(want); free(got); free(dw1); free(dw2);
    free(gu); free(dsw); free(swant); free(sgot); free(agot);
}

int main(void) {
    test_case("kernels: layernorm forward/backward vs finite differences", test_layernorm);
    test_case("kernels: matmul forward/backward vs naive product and finite differences",
              test_matmul);
    test_case("kernels: one-row matmul over several chunks and strips, independent of threads",
              test_matmul_row_chunks);
    test_case(
        "kernels: few-rows matmul over chunks, super-blocks and a tail, independent of threads and rows",
        test_matmul_few);
    test_case("kernels: LM-head logits for one, few and many rows", test_logits);
    test_case("kernels: full forwards give a row the same bits in any company, any BLAS kernel",
              test_company);
    test_case("kernels: decoding's 9-64 rows have each row's bits at 2 rows, on 1 and 2 threads",
              test_decode_rows);
    test_case("kernels: causal attention over packed lengths vs naive and finite differences",
              test_attention);
    test_case("kernels: gelu forward/backward", test_gelu);
    test_case("kernels: encoder forward/backward with repeated tokens", test_encoder);
    test_case("kernels: fused log-prob/cross-entropy and entropy", test_logprob);
    test_case("kernels: scalar head forward/backward", test_score);
    test_case("kernels: linear (nn.Linear layout) vs double reference and finite differences",
              test_linear);
    test_case("kernels: rmsnorm vs double reference and finite differences", test_rmsnorm);
    test_case("kernels: layernorm and bias gradients as row sums in rounds", test_row_sums);
    test_case("kernels: RoPE fused into attention equals rope + attention, bit for bit",
              test_attention_rope_fused);
    test_case("kernels: rope_inv_freq, default and Llama 3 scaling's three bands",
              test_rope_inv_freq);
    test_case("kernels: rope vs complex rotation, positions past 1000 with theta 1e6", test_rope);
    test_case("kernels: swiglu vs double reference and finite differences", test_swiglu);
    test_case("kernels: grouped-query attention (9/3 heads, multi-query) vs double reference",
              test_attention_gqa);
    test_case("kernels: the _set backward kernels equal adding into zeros, bit for bit",
              test_set_kernels);
    test_case("kernels: grouped-query attention with KVH = NH is GPT-2's, bit for bit",
              test_attention_gqa_is_gpt2);
    return test_summary();
}
