// Finite-difference checks of every kernel pair in common/kernels.c: for a random projection
// r of the output, L = sum r*out; the backward's gradient of L must match central differences
// (computed in float, accumulated in double) within the stated tolerance.
#include "kernels.h"
#include "rng.h"
#include "testlib.h"
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
    test_case("kernels: causal attention over packed lengths vs naive and finite differences",
              test_attention);
    test_case("kernels: gelu forward/backward", test_gelu);
    test_case("kernels: encoder forward/backward with repeated tokens", test_encoder);
    test_case("kernels: fused log-prob/cross-entropy and entropy", test_logprob);
    test_case("kernels: scalar head forward/backward", test_score);
    return test_summary();
}
