// Forward/backward kernels of GPT-2. See kernels.h for the legend and conventions.
#include "kernels.h"
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

// Splits C columns into chunks so reductions over rows parallelise without races.
#define COL_CHUNK 64

// expf without a library call, so that loops over it vectorise (glibc's vector expf is only
// declared under -ffast-math, which we do not use: it breaks NaN checks). Cody-Waite range
// reduction and Cephes' degree-5 polynomial: within 2 ulp of expf on [-87, 88]; NaN stays NaN.
// exp_fast(-inf) is a tiny positive number (~1e-38), not 0: fine for softmax sums.
static inline float exp_fast(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    // n = round(x / ln 2) by the 1.5 * 2^23 trick: no floorf call, so the loop vectorises
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    union { int32_t i; float f; } scale;
    scale.i = ((int32_t)n + 127) << 23;
    return y * scale.f;
}


#define VEC_CHUNK 16384
void vec_zero(float *x, int64_t n) {
    int64_t nchunk = (n + VEC_CHUNK - 1) / VEC_CHUNK;
    #pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < nchunk; c++) {
        int64_t i0 = c * VEC_CHUNK, len = n - i0 < VEC_CHUNK ? n - i0 : VEC_CHUNK;
        memset(x + i0, 0, (size_t)len * sizeof(float));
    }
}

void vec_copy(float *dst, const float *src, int64_t n) {
    int64_t nchunk = (n + VEC_CHUNK - 1) / VEC_CHUNK;
    #pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < nchunk; c++) {
        int64_t i0 = c * VEC_CHUNK, len = n - i0 < VEC_CHUNK ? n - i0 : VEC_CHUNK;
        memcpy(dst + i0, src + i0, (size_t)len * sizeof(float));
    }
}

void encoder_forward(float *out, const int32_t *tokens, const int32_t *pos, const float *wte,
                     const float *wpe, int64_t N, int C) {
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) {
        const float *te = wte + (int64_t)tokens[i] * C;
        const float *pe = wpe + (int64_t)pos[i] * C;
        float *o = out + i * C;
        for (int c = 0; c < C; c++) o[c] = te[c] + pe[c];
    }
}

void encoder_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens,
                      const int32_t *pos, int64_t N, int C, int V, int maxT) {
    (void)V; (void)maxT;
    // Several rows can share a token or a position: each thread owns a slice of channels.
    int nchunk = (C + COL_CHUNK - 1) / COL_CHUNK;
    #pragma omp parallel for schedule(static)
    for (int ch = 0; ch < nchunk; ch++) {
        int c0 = ch * COL_CHUNK, c1 = c0 + COL_CHUNK < C ? c0 + COL_CHUNK : C;
        for (int64_t i = 0; i < N; i++) {
            const float *d = dout + i * C;
            float *te = dwte + (int64_t)tokens[i] * C, *pe = dwpe + (int64_t)pos[i] * C;
            for (int c = c0; c < c1; c++) { te[c] += d[c]; pe[c] += d[c]; }
        }
    }
}

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                       const float *bias, int64_t N, int C, float eps) {
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) {
        const float *x = inp + i * C;
        float s = 0.0f;
        #pragma omp simd reduction(+:s)
        for (int c = 0; c < C; c++) s += x[c];
        float m = s / C;
        float v = 0.0f;
        #pragma omp simd reduction(+:v)
        for (int c = 0; c < C; c++) { float d = x[c] - m; v += d * d; }
        float r = 1.0f / sqrtf(v / C + eps);
        float *o = out + i * C;
        #pragma omp simd
        for (int c = 0; c < C; c++) o[c] = (x[c] - m) * r * weight[c] + bias[c];
        mean[i] = m;
        rstd[i] = r;
    }
}

void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, const float *mean, const float *rstd,
                        int64_t N, int C) {
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) {
        const float *d = dout + i * C, *x = inp + i * C;
        float m = mean[i], r = rstd[i];
        // dnorm = dout*weight; dx = r * (dnorm - mean(dnorm) - xhat * mean(dnorm*xhat))
        float sum_dn = 0.0f, sum_dnx = 0.0f;
        #pragma omp simd reduction(+:sum_dn, sum_dnx)
        for (int c = 0; c < C; c++) {
            float dn = d[c] * weight[c];
            sum_dn += dn;
            sum_dnx += dn * (x[c] - m) * r;
        }
        sum_dn /= C; sum_dnx /= C;
        float *di = dinp + i * C;
        #pragma omp simd
        for (int c = 0; c < C; c++) {
            float xh = (x[c] - m) * r;
            di[c] += r * (d[c] * weight[c] - sum_dn - xh * sum_dnx);
        }
    }
    int nchunk = (C + COL_CHUNK - 1) / COL_CHUNK;
    #pragma omp parallel for schedule(static)
    for (int ch = 0; ch < nchunk; ch++) {
        int c0 = ch * COL_CHUNK, c1 = c0 + COL_CHUNK < C ? c0 + COL_CHUNK : C;
        float dw[COL_CHUNK] = {0}, db[COL_CHUNK] = {0};
        for (int64_t i = 0; i < N; i++) {
            const float *d = dout + i * C, *x = inp + i * C;
            float m = mean[i], r = rstd[i];
            for (int c = c0; c < c1; c++) {
                dw[c - c0] += d[c] * (x[c] - m) * r;
                db[c - c0] += d[c];
            }
        }
        for (int c = c0; c < c1; c++) { dweight[c] += dw[c - c0]; dbias[c] += db[c - c0]; }
    }
}

// Few rows (decoding): sgemm would pack the whole weight for a handful of rows, tripling the
// memory traffic of a product that is bound by streaming the weight. These kernels stream it
// once. One row: each thread owns a block of output columns, accumulators in L1. Two to eight
// rows: a register tile of 8 rows x 16 columns (GCC vector extension: one zmm, or two ymm, per
// row) walks down the weight, so each weight element is loaded once for all rows.
#define SMALL_ROWS 8
#define SMALL_MAX_C 4096   // widest input the tile kernel transposes on the stack (128 KiB)
typedef float v16f __attribute__((vector_size(64)));
// an unaligned load, as a macro: returning a vector by value trips -Wpsabi on non-AVX-512 builds
#define V16_LOAD(dst, p) memcpy(&(dst), (p), sizeof(v16f))

static void matmul_forward_row(float *out, const float *inp, const float *weight, const float *bias,
                               int C, int OC, int beta_one) {
    int nt = omp_get_max_threads();
    int per = (OC + nt - 1) / nt, split = 1;
    while ((per + split - 1) / split > 2048) split++;
    int blk = (((per + split - 1) / split) + 15) & ~15;
    int nblk = (OC + blk - 1) / blk;
    #pragma omp parallel for schedule(static)
    for (int cb = 0; cb < nblk; cb++) {
        int c0 = cb * blk, w = OC - c0 < blk ? OC - c0 : blk;
        float acc[2048];
        for (int j = 0; j < w; j++) acc[j] = (beta_one ? out[c0 + j] : 0.0f) + (bias ? bias[c0 + j] : 0.0f);
        for (int k = 0; k < C; k++) {
            const float *wr = weight + (size_t)k * OC + c0;
            float a = inp[k];
            #pragma omp simd
            for (int j = 0; j < w; j++) acc[j] += a * wr[j];
        }
        memcpy(out + c0, acc, (size_t)w * sizeof(float));
    }
}

static void matmul_forward_tile8(float *out, const float *inp, const float *weight, const float *bias,
                                 int64_t N, int C, int OC, int beta_one) {
    int ntile = (OC + 15) / 16;
    #pragma omp parallel
    {
        float xt[8 * SMALL_MAX_C];   // the inputs transposed to (C, 8), unused rows zero
        for (int k = 0; k < C; k++)
            for (int m = 0; m < 8; m++) xt[k * 8 + m] = m < N ? inp[(int64_t)m * C + k] : 0.0f;
        #pragma omp for schedule(static)
        for (int tile = 0; tile < ntile; tile++) {
            int j0 = tile * 16, w = OC - j0 < 16 ? OC - j0 : 16;
            v16f acc[8] = {{0}};
            if (w == 16) {
                v16f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0}, a5 = {0}, a6 = {0}, a7 = {0};
                for (int k = 0; k < C; k++) {
                    v16f wv;
                    V16_LOAD(wv, weight + (size_t)k * OC + j0);
                    const float *a = xt + k * 8;
                    a0 += a[0] * wv; a1 += a[1] * wv; a2 += a[2] * wv; a3 += a[3] * wv;
                    a4 += a[4] * wv; a5 += a[5] * wv; a6 += a[6] * wv; a7 += a[7] * wv;
                }
                acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3; acc[4] = a4; acc[5] = a5; acc[6] = a6; acc[7] = a7;
            } else {   // the last, narrower column strip
                for (int k = 0; k < C; k++)
                    for (int m = 0; m < N; m++)
                        for (int jj = 0; jj < w; jj++) acc[m][jj] += xt[k * 8 + m] * weight[(size_t)k * OC + j0 + jj];
            }
            for (int64_t m = 0; m < N; m++) {
                float *o = out + m * OC + j0;
                for (int jj = 0; jj < w; jj++)
                    o[jj] = (beta_one ? o[jj] : 0.0f) + (bias ? bias[j0 + jj] : 0.0f) + acc[m][jj];
            }
        }
    }
}

void matmul_forward(float *out, const float *inp, const float *weight, const float *bias,
                    int64_t N, int C, int OC, int beta_one) {
    if (N == 1) { matmul_forward_row(out, inp, weight, bias, C, OC, beta_one); return; }
    if (N <= SMALL_ROWS && C <= SMALL_MAX_C) { matmul_forward_tile8(out, inp, weight, bias, N, C, OC, beta_one); return; }
    if (bias) {
        #pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < N; i++) {
            float *o = out + i * OC;
            if (beta_one) { for (int j = 0; j < OC; j++) o[j] += bias[j]; }
            else          { memcpy(o, bias, (size_t)OC * sizeof(float)); }
        }
    }
    float beta = (bias || beta_one) ? 1.0f : 0.0f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)N, OC, C, 1.0f, inp, C,
                weight, OC, beta, out, OC);
}

void logits_forward(float *out, const float *inp, const float *wte, int64_t M, int V, int C) {
    if (M > SMALL_ROWS) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)M, V, C, 1.0f, inp, C, wte, C,
                    0.0f, out, V);
        return;
    }
    // few rows: stream the embedding once; 16-wide partial sums per (vocabulary row, input row),
    // two vocabulary rows at a time so each input chunk loaded from L1 feeds two products
    int C16 = C & ~15;
    int npair = (V + 1) / 2;
    #pragma omp parallel for schedule(static)
    for (int pr = 0; pr < npair; pr++) {
        int v0 = 2 * pr, nv = v0 + 1 < V ? 2 : 1;
        for (int vi = 0; vi < nv; vi++) {
            const float *w = wte + (size_t)(v0 + vi) * C;
            for (int64_t m = 0; m < M; m++) {
                const float *x = inp + m * C;
                v16f acc = {0};
                for (int c = 0; c < C16; c += 16) {
                    v16f xv, wv;
                    V16_LOAD(xv, x + c);
                    V16_LOAD(wv, w + c);
                    acc += xv * wv;
                }
                float sum = 0.0f;
                for (int i = 0; i < 16; i++) sum += acc[i];
                for (int c = C16; c < C; c++) sum += x[c] * w[c];
                out[m * V + v0 + vi] = sum;
            }
        }
    }
}

void matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, int64_t N, int C, int OC) {
    if (dinp)   // dinp (N,C) += dout (N,OC) @ weight^T (OC,C)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)N, C, OC, 1.0f, dout, OC,
                    weight, OC, 1.0f, dinp, C);
    // dweight (C,OC) += inp^T (C,N) @ dout (N,OC)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, OC, (blasint)N, 1.0f, inp, C, dout, OC,
                1.0f, dweight, OC);
    if (dbias) {
        int nchunk = (OC + COL_CHUNK - 1) / COL_CHUNK;
        #pragma omp parallel for schedule(static)
        for (int ch = 0; ch < nchunk; ch++) {
            int c0 = ch * COL_CHUNK, c1 = c0 + COL_CHUNK < OC ? c0 + COL_CHUNK : OC;
            float acc[COL_CHUNK] = {0};
            for (int64_t i = 0; i < N; i++) {
                const float *d = dout + i * OC;
                for (int c = c0; c < c1; c++) acc[c - c0] += d[c];
            }
            for (int c = c0; c < c1; c++) dbias[c] += acc[c - c0];
        }
    }
}

// Attention is the only layer that mixes information across time. For each query row t of
// sequence b and head h: p = softmax(q_t . k_s / sqrt(hd), s <= t); y_t = sum_s p_s v_s.
// Sequences of at least ATT_GEMM_MIN tokens go through sgemm per (sequence, head): it computes
// the masked upper triangle too, but at several times the speed of the hand loop, which short
// sequences (PPO responses, tests) keep because sgemm's per-call cost would dominate there.
#define ATT_GEMM_MIN 64

static int att_uses_gemm(const int64_t *off, int b) { return off[b + 1] - off[b] >= ATT_GEMM_MIN; }

// In place: causal softmax of the scaled scores of every row of the (b,h) blocks taking the
// sgemm path (the hand path normalises its own rows).
static void att_softmax_rows(float *att, const int64_t *off, const int64_t *att_off, int B, int NH) {
    #pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            if (!att_uses_gemm(off, b)) continue;
            int64_t len = off[b + 1] - off[b];
            for (int64_t t = 0; t < len; t++) {
                float *p = att + att_off[b] + ((int64_t)h * len + t) * len;
                float mx = -INFINITY, sum = 0.0f;
                for (int64_t s = 0; s <= t; s++) mx = p[s] > mx ? p[s] : mx;
                #pragma omp simd reduction(+:sum)
                for (int64_t s = 0; s <= t; s++) { p[s] = exp_fast(p[s] - mx); sum += p[s]; }
                float inv = 1.0f / sum;
                #pragma omp simd
                for (int64_t s = 0; s <= t; s++) p[s] *= inv;
                for (int64_t s = t + 1; s < len; s++) p[s] = 0.0f;
            }
        }
    }
}

void attention_forward(float *out, float *att, const float *qkv, const int64_t *off,
                       const int64_t *att_off, int B, int C, int NH) {
    int hd = C / NH;
    float scale = 1.0f / sqrtf((float)hd);
    int64_t C3 = 3 * (int64_t)C;
    int any_gemm = 0;
    for (int b = 0; b < B; b++) {
        if (!att_uses_gemm(off, b)) continue;
        any_gemm = 1;
        int64_t r0 = off[b], len = off[b + 1] - off[b];
        for (int h = 0; h < NH; h++)   // S (len,len) = scale * Q K^T
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)len, (blasint)len, hd, scale,
                        qkv + r0 * C3 + h * hd, (blasint)C3, qkv + r0 * C3 + C + h * hd, (blasint)C3, 0.0f,
                        att + att_off[b] + (int64_t)h * len * len, (blasint)len);
    }
    if (any_gemm) {
        att_softmax_rows(att, off, att_off, B, NH);
        for (int b = 0; b < B; b++) {
            if (!att_uses_gemm(off, b)) continue;
            int64_t r0 = off[b], len = off[b + 1] - off[b];
            for (int h = 0; h < NH; h++)   // Y (len,hd) = P V
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)len, hd, (blasint)len, 1.0f,
                            att + att_off[b] + (int64_t)h * len * len, (blasint)len,
                            qkv + r0 * C3 + 2 * C + h * hd, (blasint)C3, 0.0f, out + r0 * C + h * hd, C);
        }
    }
    #pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            if (att_uses_gemm(off, b)) continue;
            int64_t r0 = off[b], len = off[b + 1] - off[b];
            for (int64_t t = 0; t < len; t++) {
                const float *q = qkv + (r0 + t) * C3 + h * hd;
                float *p = att + att_off[b] + ((int64_t)h * len + t) * len;
                float mx = -INFINITY;
                for (int64_t s = 0; s <= t; s++) {
                    const float *k = qkv + (r0 + s) * C3 + C + h * hd;
                    float dot = 0.0f;
                    #pragma omp simd reduction(+:dot)
                    for (int i = 0; i < hd; i++) dot += q[i] * k[i];
                    dot *= scale;
                    p[s] = dot;
                    if (dot > mx) mx = dot;
                }
                float sum = 0.0f;
                for (int64_t s = 0; s <= t; s++) { p[s] = exp_fast(p[s] - mx); sum += p[s]; }
                float inv = 1.0f / sum;
                for (int64_t s = 0; s <= t; s++) p[s] *= inv;
                for (int64_t s = t + 1; s < len; s++) p[s] = 0.0f;
                float *y = out + (r0 + t) * C + h * hd;
                for (int i = 0; i < hd; i++) y[i] = 0.0f;
                for (int64_t s = 0; s <= t; s++) {
                    const float *v = qkv + (r0 + s) * C3 + 2 * C + h * hd;
                    float ps = p[s];
                    #pragma omp simd
                    for (int i = 0; i < hd; i++) y[i] += ps * v[i];
                }
            }
        }
    }
}

void attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv, const float *att,
                        const int64_t *off, const int64_t *att_off, int B, int C, int NH) {
    int hd = C / NH;
    float scale = 1.0f / sqrtf((float)hd);
    int64_t C3 = 3 * (int64_t)C;
    // sgemm path: dP = dY V^T, dV += P^T dY, dS = P (dP - rowsum(P dP)) * scale, dQ += dS K,
    // dK += dS^T Q. dP and dS live in scratch, laid out like att.
    int any_gemm = 0;
    for (int b = 0; b < B; b++) {
        if (!att_uses_gemm(off, b)) continue;
        any_gemm = 1;
        int64_t r0 = off[b], len = off[b + 1] - off[b];
        for (int h = 0; h < NH; h++) {
            const float *P = att + att_off[b] + (int64_t)h * len * len;
            float *dP = scratch + att_off[b] + (int64_t)h * len * len;
            const float *dy = dout + r0 * C + h * hd, *v = qkv + r0 * C3 + 2 * C + h * hd;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)len, (blasint)len, hd, 1.0f,
                        dy, C, v, (blasint)C3, 0.0f, dP, (blasint)len);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)len, hd, (blasint)len, 1.0f,
                        P, (blasint)len, dy, C, 1.0f, dqkv + r0 * C3 + 2 * C + h * hd, (blasint)C3);
        }
    }
    if (any_gemm) {
        #pragma omp parallel for collapse(2) schedule(dynamic, 1)
        for (int b = 0; b < B; b++) {
            for (int h = 0; h < NH; h++) {
                if (!att_uses_gemm(off, b)) continue;
                int64_t len = off[b + 1] - off[b];
                for (int64_t t = 0; t < len; t++) {
                    const float *p = att + att_off[b] + ((int64_t)h * len + t) * len;
                    float *d = scratch + att_off[b] + ((int64_t)h * len + t) * len;
                    float dot = 0.0f;
                    #pragma omp simd reduction(+:dot)
                    for (int64_t s = 0; s <= t; s++) dot += p[s] * d[s];
                    #pragma omp simd
                    for (int64_t s = 0; s <= t; s++) d[s] = p[s] * (d[s] - dot) * scale;
                    for (int64_t s = t + 1; s < len; s++) d[s] = 0.0f;
                }
            }
        }
        for (int b = 0; b < B; b++) {
            if (!att_uses_gemm(off, b)) continue;
            int64_t r0 = off[b], len = off[b + 1] - off[b];
            for (int h = 0; h < NH; h++) {
                const float *dS = scratch + att_off[b] + (int64_t)h * len * len;
                const float *q = qkv + r0 * C3 + h * hd, *k = qkv + r0 * C3 + C + h * hd;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)len, hd, (blasint)len, 1.0f,
                            dS, (blasint)len, k, (blasint)C3, 1.0f, dqkv + r0 * C3 + h * hd, (blasint)C3);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)len, hd, (blasint)len, 1.0f,
                            dS, (blasint)len, q, (blasint)C3, 1.0f, dqkv + r0 * C3 + C + h * hd, (blasint)C3);
            }
        }
    }
    // Hand path: each (b,h) touches only its own slices of dqkv, so they run in parallel.
    #pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            if (att_uses_gemm(off, b)) continue;
            int64_t r0 = off[b], len = off[b + 1] - off[b];
            for (int64_t t = 0; t < len; t++) {
                const float *p = att + att_off[b] + ((int64_t)h * len + t) * len;
                const float *dy = dout + (r0 + t) * C + h * hd;
                const float *q = qkv + (r0 + t) * C3 + h * hd;
                float *dq = dqkv + (r0 + t) * C3 + h * hd;
                // dp_s = dy . v_s and dv_s += p_s dy; then the softmax backward
                // ds_s = p_s (dp_s - sum_s' p_s' dp_s'), into dq_t and dk_s.
                float *dp = scratch + att_off[b] + ((int64_t)h * len + t) * len;
                float dpsum = 0.0f;
                for (int64_t s = 0; s <= t; s++) {
                    const float *v = qkv + (r0 + s) * C3 + 2 * C + h * hd;
                    float *dv = dqkv + (r0 + s) * C3 + 2 * C + h * hd;
                    float dot = 0.0f, ps = p[s];
                    #pragma omp simd reduction(+:dot)
                    for (int i = 0; i < hd; i++) { dot += dy[i] * v[i]; dv[i] += ps * dy[i]; }
                    dp[s] = dot;
                    dpsum += ps * dot;
                }
                for (int64_t s = 0; s <= t; s++) {
                    const float *k = qkv + (r0 + s) * C3 + C + h * hd;
                    float *dk = dqkv + (r0 + s) * C3 + C + h * hd;
                    float ds = p[s] * (dp[s] - dpsum) * scale;
                    #pragma omp simd
                    for (int i = 0; i < hd; i++) { dq[i] += ds * k[i]; dk[i] += ds * q[i]; }
                }
            }
        }
    }
}

#define GELU_SCALE 0.7978845608028654f  // sqrt(2/pi)

void gelu_forward(float *out, const float *inp, int64_t n) {
    #pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float x = inp[i];
        // 0.5x(1 + tanh u) = x * sigmoid(2u): no cancellation for negative x
        out[i] = x / (1.0f + exp_fast(-2.0f * GELU_SCALE * (x + 0.044715f * x * x * x)));
    }
}

void gelu_backward(float *dinp, const float *inp, const float *dout, int64_t n) {
    #pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float x = inp[i];
        float u = GELU_SCALE * (x + 0.044715f * x * x * x);
        // with s = sigmoid(2u): 0.5(1 + tanh u) = s and 1 - tanh^2 u = 4 s (1 - s)
        float sg = 1.0f / (1.0f + exp_fast(-2.0f * u));
        float g = sg + 2.0f * x * sg * (1.0f - sg) * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
        dinp[i] += g * dout[i];
    }
}

void logprob_forward(float *logp, float *entropy, float *lse, const float *logits,
                     const int32_t *target, int64_t M, int V) {
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < M; r++) {
        const float *x = logits + r * V;
        float mx = -INFINITY;
        #pragma omp simd reduction(max:mx)
        for (int i = 0; i < V; i++) mx = x[i] > mx ? x[i] : mx;
        float sum = 0.0f;
        #pragma omp simd reduction(+:sum)
        for (int i = 0; i < V; i++) sum += exp_fast(x[i] - mx);
        float l = mx + logf(sum);
        lse[r] = l;
        logp[r] = target[r] >= 0 ? x[target[r]] - l : 0.0f;
        if (entropy) {  // H = lse - sum p x
            float px = 0.0f;
            #pragma omp simd reduction(+:px)
            for (int i = 0; i < V; i++) px += exp_fast(x[i] - l) * x[i];
            entropy[r] = l - px;
        }
    }
}

void logprob_backward(float *logits, const float *lse, const int32_t *target, const float *dlogp,
                      int64_t M, int V) {
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < M; r++) {
        float *x = logits + r * V;
        float g = dlogp[r];
        if (target[r] < 0 || g == 0.0f) { memset(x, 0, (size_t)V * sizeof(float)); continue; }
        float l = lse[r];
        // d logp / d x_i = [i == target] - softmax_i
        #pragma omp simd
        for (int i = 0; i < V; i++) x[i] = -g * exp_fast(x[i] - l);
        x[target[r]] += g;
    }
}

void score_forward(float *out, const float *inp, const float *w, int64_t N, int C) {
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) {
        const float *x = inp + i * C;
        float s = 0.0f;
        #pragma omp simd reduction(+:s)
        for (int c = 0; c < C; c++) s += x[c] * w[c];
        out[i] = s;
    }
}

void score_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                    int64_t N, int C) {
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) {
        float g = dout[i];
        float *d = dinp + i * C;
        for (int c = 0; c < C; c++) d[c] += g * w[c];
    }
    int nchunk = (C + COL_CHUNK - 1) / COL_CHUNK;
    #pragma omp parallel for schedule(static)
    for (int ch = 0; ch < nchunk; ch++) {
        int c0 = ch * COL_CHUNK, c1 = c0 + COL_CHUNK < C ? c0 + COL_CHUNK : C;
        for (int64_t i = 0; i < N; i++) {
            float g = dout[i];
            const float *x = inp + i * C;
            for (int c = c0; c < c1; c++) dw[c] += g * x[c];
        }
    }
}
