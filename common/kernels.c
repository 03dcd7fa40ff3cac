// Forward/backward kernels of GPT-2 and of the Llama-style block. See kernels.h for the legend
// and conventions.
#include "kernels.h"
#include <cblas.h>
#include "blas.h"
#include <math.h>
#include <omp.h>
#include <string.h>

// Splits C columns into chunks so reductions over rows parallelise without races.
#define COL_CHUNK 64
// Sums over rows (bias and layernorm gradients) take fixed chunks of ROW_CHUNK rows, each read as
// one contiguous block, and add the chunks' partial sums in chunk order: the result does not
// depend on the thread count. Columns go in strips whose partial sums fit in L1.
#define ROW_CHUNK 64
#define ROW_STRIP 4096
#define LN_STRIP 2048

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
// Elementwise and per-row kernels with fewer elements than this (a decoding step's few rows) run
// on the calling thread: waking the others for a parallel region costs more (tens of
// microseconds on a virtual machine whose idle CPUs halt) than the work, and a decoding step
// has several such kernels per layer. Each element is computed the same way either way.
#define SERIAL_MAX 16384
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
    #pragma omp parallel for schedule(static) if (N * C >= SERIAL_MAX)
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
    #pragma omp parallel for schedule(static) if (N * C >= SERIAL_MAX)
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

// The weight (and bias) gradients of a normalisation, sums over rows: dweight[c] += sum_i
// dout[i,c] * (inp[i,c] - mean[i]) * rstd[i], dbias[c] += sum_i dout[i,c]. mean NULL: 0
// (RMSNorm); dbias NULL: none. Fixed chunks of rows are added in chunk order (as colsum_add), so
// the result does not depend on the thread count. Inlined into each caller: layernorm's loop stays
// the one it had, and rmsnorm's drops the mean.
__attribute__((always_inline)) static inline void
norm_weight_grads(float *dweight, float *dbias, const float *dout, const float *inp,
                  const float *mean, const float *rstd, int64_t N, int C) {
    if (!dweight && !dbias) return;   // a frozen norm (its bias may train beside adapters)
    int64_t nch = (N + ROW_CHUNK - 1) / ROW_CHUNK;
    int nstrip = (C + LN_STRIP - 1) / LN_STRIP;
    #pragma omp parallel for ordered schedule(static, 1)
    for (int64_t it = 0; it < nstrip * nch; it++) {
        int64_t ch = it % nch, i0 = ch * ROW_CHUNK, i1 = i0 + ROW_CHUNK < N ? i0 + ROW_CHUNK : N;
        int c0 = (int)(it / nch) * LN_STRIP, w = C - c0 < LN_STRIP ? C - c0 : LN_STRIP;
        float dw[LN_STRIP], db[LN_STRIP];
        for (int c = 0; c < w; c++) { dw[c] = 0.0f; db[c] = 0.0f; }
        for (int64_t i = i0; i < i1; i++) {
            const float *d = dout + i * C + c0, *x = inp + i * C + c0;
            float m = mean ? mean[i] : 0.0f, r = rstd[i];
            #pragma omp simd
            for (int c = 0; c < w; c++) { dw[c] += d[c] * (x[c] - m) * r; db[c] += d[c]; }
        }
        #pragma omp ordered
        {
            if (dweight) for (int c = 0; c < w; c++) dweight[c0 + c] += dw[c];
            if (dbias) for (int c = 0; c < w; c++) dbias[c0 + c] += db[c];
        }
    }
}

// The second half of a one-pass row sum (layernorm_backward, rmsnorm_backward, colsum_add),
// inside their parallel region after the loop's barrier: nch chunks' partial sums, chunk ch's n
// columns at part + ch * stride, added to dst column by column in chunk order (the order the old
// `ordered` hand-overs added them in, so the result has the same bits and does not depend on the
// thread count). The buffer of a round of partials is PART_FLOATS floats (256 KiB) on the caller's
// stack.
#define PART_FLOATS 65536
static inline void part_add(float *dst, const float *part, int64_t nch, int64_t stride, int n) {
    #pragma omp for schedule(static)
    for (int c = 0; c < n; c++)
        for (int64_t ch = 0; ch < nch; ch++) dst[c] += part[ch * stride + c];
}

// One row's input gradient, added into di: LayerNorm's (mean m) and RMSNorm's.
static inline void ln_row_dinp(float *di, const float *d, const float *x, const float *weight,
                               float m, float r, int C) {
    // dnorm = dout*weight; dx = r * (dnorm - mean(dnorm) - xhat * mean(dnorm*xhat))
    float sum_dn = 0.0f, sum_dnx = 0.0f;
    #pragma omp simd reduction(+:sum_dn, sum_dnx)
    for (int c = 0; c < C; c++) {
        float dn = d[c] * weight[c];
        sum_dn += dn;
        sum_dnx += dn * (x[c] - m) * r;
    }
    sum_dn /= C; sum_dnx /= C;
    #pragma omp simd
    for (int c = 0; c < C; c++) {
        float xh = (x[c] - m) * r;
        di[c] += r * (d[c] * weight[c] - sum_dn - xh * sum_dnx);
    }
}

static inline void rms_row_dinp(float *di, const float *d, const float *x, const float *weight,
                                float r, int C) {
    // y = x r w with r = (mean(x^2) + eps)^-1/2: dx = r (dout w - x r^2 mean(dout w x))
    float sum_dwx = 0.0f;
    #pragma omp simd reduction(+:sum_dwx)
    for (int c = 0; c < C; c++) sum_dwx += d[c] * weight[c] * x[c];
    float k = r * r * sum_dwx / C;
    #pragma omp simd
    for (int c = 0; c < C; c++) di[c] += r * (d[c] * weight[c] - x[c] * k);
}

// The backward of LayerNorm (mean given) and of RMSNorm (mean NULL, no bias) in one pass over
// the rows, chunk by chunk, and no `ordered`: a chunk of ROW_CHUNK rows adds its rows' input
// gradients and writes its partial weight (and bias) gradients, the sums norm_weight_grads makes
// (RMSNorm's x - 0 is x exactly), into part; after the loop's barrier the partials are added
// column by column in chunk order (part_add), the order norm_weight_grads adds them in: the same
// bits. (With `ordered`, a thread waiting for its turn sleeps under OMP_WAIT_POLICY=passive, and
// a chunk of 64 rows takes microseconds: each of the ~16 hand-overs per call waited for a
// sleeping thread to wake.) More chunks than a round's buffer holds go in several rounds, each
// adding in the same order; rows wider than the buffer (no model has them) take the weight
// gradients the old way.
static void norm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                          const float *inp, const float *weight, const float *mean,
                          const float *rstd, int64_t N, int C) {
    // a chunk's partials: the weight's C sums (when it trains), then the bias's (when it trains)
    int64_t nch = (N + ROW_CHUNK - 1) / ROW_CHUNK;
    int64_t ow = dweight ? C : 0, nw = ow + (dbias ? C : 0);
    int sums = nw > 0 && nw <= PART_FLOATS;
    float part[PART_FLOATS];
    int64_t per = sums ? PART_FLOATS / nw : nch;   // chunks per round
    for (int64_t r0 = 0; r0 < nch; r0 += per) {
        int64_t r1 = r0 + per < nch ? r0 + per : nch;
        #pragma omp parallel
        {
            #pragma omp for schedule(static)
            for (int64_t ch = r0; ch < r1; ch++) {
                int64_t i0 = ch * ROW_CHUNK, i1 = i0 + ROW_CHUNK < N ? i0 + ROW_CHUNK : N;
                float *pc = sums ? part + (ch - r0) * nw : NULL;
                float *pw = pc && dweight ? pc : NULL, *pb = pc && dbias ? pc + ow : NULL;
                if (pc) for (int64_t c = 0; c < nw; c++) pc[c] = 0.0f;
                for (int64_t i = i0; i < i1; i++) {
                    const float *d = dout + i * C, *x = inp + i * C;
                    float m = mean ? mean[i] : 0.0f, r = rstd[i];
                    if (mean) ln_row_dinp(dinp + i * C, d, x, weight, m, r, C);
                    else rms_row_dinp(dinp + i * C, d, x, weight, r, C);
                    if (pw) {
                        #pragma omp simd
                        for (int c = 0; c < C; c++) pw[c] += d[c] * (x[c] - m) * r;
                    }
                    if (pb) {
                        #pragma omp simd
                        for (int c = 0; c < C; c++) pb[c] += d[c];
                    }
                }
            }
            if (sums && dweight) part_add(dweight, part, r1 - r0, nw, C);
            if (sums && dbias) part_add(dbias, part + ow, r1 - r0, nw, C);
        }
    }
    // rows too wide for the buffer (no model has them): the weight gradients the old way
    if (nw > 0 && !sums) norm_weight_grads(dweight, dbias, dout, inp, mean, rstd, N, C);
}

void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, const float *mean, const float *rstd,
                        int64_t N, int C) {
    norm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
}

// Few rows (decoding): sgemm would pack the whole weight for a handful of rows, tripling the
// memory traffic of a product that is bound by streaming the weight. These kernels stream it
// once. One row: the weight is cut into chunks of ROW_CHUNK consecutive input rows, each one
// contiguous block of memory (one stream for the prefetcher; column blocks gave C short runs and
// ~1.4x less bandwidth); the chunks run in parallel and their partial sums are added in chunk
// order, so the result does not depend on the thread count. Two to eight rows (two to
// DEC_MAX_ROWS when decoding): see matmul_forward_few below.
#define SMALL_ROWS 8
// widest input a full forward's 2-8 rows take through the few-rows kernel; wider ones keep sgemm
// (the kernel once held its inputs transposed on the stack; the limit stays so that full forwards
// keep their bits, decoding has none)
#define SMALL_MAX_C 4096
// Decoding's rows (the KV-cache step: one row per sequence of the batch) up to this many (64 with
// AVX-512, 16 without: kernels.h) stream the weight once, each output summed in one fixed order.
// Full forwards (scoring, training, a reference model's log-probs) keep sgemm above SMALL_ROWS: a
// sequence scored with others in a micro-batch must get the bits it gets with any other company,
// and sgemm's rounding is not the few-rows kernel's, so the two may not mix at 9 rows and more
// within one kind of call. (That holds for sgemm itself only where blas_rows_fixed says so;
// elsewhere the `_fixed` forwards take the few-rows kernels for every row count: kernels.h.)
#define DEC_MAX_ROWS KERNELS_DECODE_ROWS
// the most rows one call of the few-rows kernel takes (acc holds 64 x 512 partial sums)
#define FEW_MAX_ROWS 64
typedef float v16f __attribute__((vector_size(64)));
// an unaligned load, as a macro: returning a vector by value trips -Wpsabi on non-AVX-512 builds
#define V16_LOAD(dst, p) memcpy(&(dst), (p), sizeof(v16f))
// The machine's own vector (16 floats with AVX-512, 8 otherwise): register tiles are sized in
// these, so that an AVX2 build does not spill a tile meant for 32 registers into 16.
#ifdef __AVX512F__
#define VW 16
#else
#define VW 8
#endif
typedef float vnat __attribute__((vector_size(VW * sizeof(float))));
#define VN_LOAD(dst, p) memcpy(&(dst), (p), sizeof(vnat))
#define VN_STORE(p, src) memcpy((p), &(src), sizeof(vnat))
// Holds a loaded vector in a register: otherwise GCC may fold its load into every FMA that uses
// it, and a tile meant to load each vector once loads it once per FMA.
#if defined(__x86_64__) && defined(__AVX__)
#define VN_KEEP(v) __asm__("" : "+v"(v))
#else
#define VN_KEEP(v) ((void)0)
#endif

static void matmul_forward_row(float *out, const float *inp, const float *weight, const float *bias,
                               int C, int OC, int beta_one) {
    int nch = (C + ROW_CHUNK - 1) / ROW_CHUNK, nstrip = (OC + ROW_STRIP - 1) / ROW_STRIP;
    // schedule(static, 1): the threads take alternate chunks, so each waits at `ordered` for at
    // most the chunk before its own
    #pragma omp parallel for ordered schedule(static, 1)
    for (int it = 0; it < nstrip * nch; it++) {
        int st = it / nch, ch = it % nch;
        int j0 = st * ROW_STRIP, w = OC - j0 < ROW_STRIP ? OC - j0 : ROW_STRIP;
        int k0 = ch * ROW_CHUNK, k1 = k0 + ROW_CHUNK < C ? k0 + ROW_CHUNK : C;
        float acc[ROW_STRIP];
        for (int j = 0; j < w; j++) acc[j] = 0.0f;
        for (int k = k0; k < k1; k++) {
            const float *wr = weight + (size_t)k * OC + j0;
            float a = inp[k];
            #pragma omp simd
            for (int j = 0; j < w; j++) acc[j] += a * wr[j];
        }
        #pragma omp ordered
        {
            float *o = out + j0;
            if (ch == 0) {
                for (int j = 0; j < w; j++)
                    o[j] = (beta_one ? o[j] : 0.0f) + (bias ? bias[j0 + j] : 0.0f) + acc[j];
            } else {
                for (int j = 0; j < w; j++) o[j] += acc[j];
            }
        }
    }
}

// Two to DEC_MAX_ROWS rows: a register tile of 8 rows x FEW_TW columns (16 accumulators with
// AVX-512, 8 rows x 2 vectors; 8 with AVX2's 16 registers) per group of 8 rows, so each weight
// element is loaded once for a group's rows. Each thread owns a contiguous range of column tiles.
// The weight is read in chunks of FEW_KC input rows: within a chunk the tiles of a super-block of
// columns follow one another, so every weight row of the chunk is read as one contiguous run per
// super-block and FEW_KC runs advance side by side, which the hardware prefetchers follow.
// (Walking one 64-byte tile down all C rows read one line per row, a page or more apart: no
// prefetcher or TLB follows that, and the product ran well below the memory bandwidth.) The
// groups of 8 rows after the first run over the chunk while it is still in cache, so the weight is
// streamed from memory once for all rows (sgemm packs it first: at 16 rows that tripled the
// traffic of a decoding step). The partial sums of a super-block (up to FEW_SUPER columns) wait
// in acc between chunks: L1 for one group, L2 for 64 rows. A chunk's inputs are transposed on
// the way (xc, 16 x 8 per group: nothing allocated, any C fits), which costs 1/32 of the FMAs of a
// super-block 512 wide. (Super-blocks narrowed to keep acc at 16 KiB for 64 rows made that a
// quarter; reading the inputs in place from their 8 rows took 10% more CPU at 8 rows on AVX2.)
// Every output is the sum over k in increasing order started from 0, then out + bias + sum,
// whichever group, super-block, chunk or thread computes it: a row's result depends neither on
// the thread count nor on N (rows past N in the last group are zero and are not stored).
#define FEW_NV (VW == 16 ? 2 : 1)   // vectors per tile row: 16 accumulators of 32, or 8 of 16
#define FEW_TW (FEW_NV * VW)
#define FEW_KC 16
#define FEW_SUPER 512
// acc's floats: 64 rows x 512 columns, 128 KiB (half as wide took 8% more CPU at 64 rows)
#define FEW_ACC 32768

// acc (8, lda) columns j..j+FEW_TW-1 += xc (the chunk's inputs, 8 per input row k - k0) times the
// weight's rows k0..k1-1 at column j. pf: the tile's first row in the next chunk (NULL in the last
// chunk), fetched ahead
static inline void few_tile(float *acc, int lda, const float *xc, const float *weight, int64_t OC,
                            int k0, int k1, int j, const float *pf) {
    vnat a[8][FEW_NV];
    #pragma GCC unroll 8
    for (int m = 0; m < 8; m++)
        #pragma GCC unroll 2
        for (int v = 0; v < FEW_NV; v++) VN_LOAD(a[m][v], acc + m * lda + v * VW);
    for (int k = k0; k < k1; k++) {
        const float *wr = weight + (size_t)k * OC + j, *x = xc + (k - k0) * 8;
        if (pf) {   // the same columns of the next chunk's rows, into L2
            __builtin_prefetch(pf + (size_t)(k - k0) * OC, 0, 2);
            if (FEW_TW > 16) __builtin_prefetch(pf + (size_t)(k - k0) * OC + 16, 0, 2);
        }
        vnat w[FEW_NV];
        #pragma GCC unroll 2
        for (int v = 0; v < FEW_NV; v++) VN_LOAD(w[v], wr + v * VW);
        #pragma GCC unroll 8
        for (int m = 0; m < 8; m++)
            #pragma GCC unroll 2
            for (int v = 0; v < FEW_NV; v++) a[m][v] += x[m] * w[v];
    }
    #pragma GCC unroll 8
    for (int m = 0; m < 8; m++)
        #pragma GCC unroll 2
        for (int v = 0; v < FEW_NV; v++) VN_STORE(acc + m * lda + v * VW, a[m][v]);
}

// One chunk (input rows k0..k1-1) of columns j0..j1-1 for the 8 rows of one group (inputs xc,
// partial sums acc with row stride lda, column j0 at acc[0]); pf: prefetch the next chunk.
static void few_chunk(float *acc, int lda, const float *xc, const float *weight, int OC, int C,
                      int k0, int k1, int j0, int j1, int pf) {
    for (int j = j0; j < j1; j += FEW_TW) {
        if (j + FEW_TW <= OC) {
            const float *next = pf && k1 + FEW_KC <= C ? weight + (size_t)k1 * OC + j : NULL;
            few_tile(acc + (j - j0), lda, xc, weight, OC, k0, k1, j, next);
            continue;
        }
        for (int k = k0; k < k1; k++)   // the last, narrower tile
            for (int m = 0; m < 8; m++)
                for (int jj = j; jj < OC; jj++)
                    acc[m * lda + jj - j0] += xc[(k - k0) * 8 + m] * weight[(size_t)k * OC + jj];
    }
}

// xc: inputs k0..k1-1 of the N rows, transposed to (k, 8) per group of 8 rows (group g's block of
// FEW_KC x 8 at xc + g FEW_KC 8); rows past N in the last group zero
static void few_transpose(float *xc, const float *inp, int64_t N, int C, int k0, int k1) {
    int ng = (int)((N + 7) / 8);
    for (int g = 0; g < ng; g++)
        for (int k = k0; k < k1; k++)
            for (int m = 0; m < 8; m++) {
                int64_t r = (int64_t)g * 8 + m;
                xc[(g * FEW_KC + k - k0) * 8 + m] = r < N ? inp[r * C + k] : 0.0f;
            }
}

static void matmul_forward_few(float *out, const float *inp, const float *weight, const float *bias,
                               int64_t N, int C, int OC, int beta_one) {
    int ntile = (OC + FEW_TW - 1) / FEW_TW, ng = (int)((N + 7) / 8);
    int sup_tiles = FEW_ACC / (ng * 8) / FEW_TW;
    if (sup_tiles > FEW_SUPER / FEW_TW) sup_tiles = FEW_SUPER / FEW_TW;
    int lda = sup_tiles * FEW_TW;
    #pragma omp parallel
    {
        float xc[FEW_MAX_ROWS * FEW_KC];                   // the chunk's inputs, by group
        float acc[FEW_ACC] __attribute__((aligned(64)));   // ng x (8, lda)
        int nt = omp_get_num_threads(), th = omp_get_thread_num();
        int t0 = (int)((int64_t)ntile * th / nt), t1 = (int)((int64_t)ntile * (th + 1) / nt);
        for (int s0 = t0; s0 < t1; s0 += sup_tiles) {
            int s1 = s0 + sup_tiles < t1 ? s0 + sup_tiles : t1;
            int j0 = s0 * FEW_TW, j1 = s1 * FEW_TW < OC ? s1 * FEW_TW : OC;
            memset(acc, 0, (size_t)ng * 8 * lda * sizeof(float));
            for (int k0 = 0; k0 < C; k0 += FEW_KC) {
                int k1 = k0 + FEW_KC < C ? k0 + FEW_KC : C;
                few_transpose(xc, inp, N, C, k0, k1);
                for (int g = 0; g < ng; g++)   // the first group reads the chunk from memory
                    few_chunk(acc + (size_t)g * 8 * lda, lda, xc + g * FEW_KC * 8, weight, OC, C,
                              k0, k1, j0, j1, g == 0);
            }
            for (int64_t m = 0; m < N; m++) {
                float *o = out + m * OC;
                const float *a = acc + m * lda;
                for (int j = j0; j < j1; j++)
                    o[j] = (beta_one ? o[j] : 0.0f) + (bias ? bias[j] : 0.0f) + a[j - j0];
            }
        }
    }
}

// Before an sgemm of out (N,OC) that adds the product with the returned beta: out = [out +] bias
// (rows filled in parallel), beta 1; no bias: beta 1 when beta_one, else 0 (out is overwritten).
static float bias_init(float *out, const float *bias, int64_t N, int OC, int beta_one) {
    if (bias) {
        #pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < N; i++) {
            float *o = out + i * OC;
            if (beta_one) { for (int j = 0; j < OC; j++) o[j] += bias[j]; }
            else          { memcpy(o, bias, (size_t)OC * sizeof(float)); }
        }
    }
    return (bias || beta_one) ? 1.0f : 0.0f;
}

// Any number of rows by the few-rows kernel, FEW_MAX_ROWS at a time: each row's bits depend on
// nothing but its own inputs (the sgemm of the AVX2 and generic OpenBLAS kernels does not give
// that: blas_rows_fixed)
static void matmul_forward_blocks(float *out, const float *inp, const float *weight,
                                  const float *bias, int64_t N, int C, int OC, int beta_one) {
    for (int64_t r0 = 0; r0 < N; r0 += FEW_MAX_ROWS) {
        int64_t n = N - r0 < FEW_MAX_ROWS ? N - r0 : FEW_MAX_ROWS;
        matmul_forward_few(out + r0 * OC, inp + r0 * C, weight, bias, n, C, OC, beta_one);
    }
}

void matmul_forward(float *out, const float *inp, const float *weight, const float *bias,
                    int64_t N, int C, int OC, int beta_one) {
    if (N == 1) { matmul_forward_row(out, inp, weight, bias, C, OC, beta_one); return; }
    if (N <= SMALL_ROWS && C <= SMALL_MAX_C) {
        matmul_forward_few(out, inp, weight, bias, N, C, OC, beta_one);
        return;
    }
    float beta = bias_init(out, bias, N, OC, beta_one);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)N, OC, C, 1.0f, inp, C,
                weight, OC, beta, out, OC);
}

void matmul_forward_fixed(float *out, const float *inp, const float *weight, const float *bias,
                          int64_t N, int C, int OC, int beta_one) {
    if (N > 1 && !blas_rows_fixed()) {
        matmul_forward_blocks(out, inp, weight, bias, N, C, OC, beta_one);
        return;
    }
    matmul_forward(out, inp, weight, bias, N, C, OC, beta_one);
}

void matmul_forward_decode(float *out, const float *inp, const float *weight, const float *bias,
                           int64_t N, int C, int OC, int beta_one) {
    if (N >= 2 && N <= DEC_MAX_ROWS) {
        matmul_forward_few(out, inp, weight, bias, N, C, OC, beta_one);
        return;
    }
    matmul_forward_fixed(out, inp, weight, bias, N, C, OC, beta_one);
}

// Few rows (decoding): the embedding is streamed once, in order, each vocabulary row read from
// memory once and reused from L1 for every input row. M = 1 (B = 1 decoding): 16-wide partial
// sums per vocabulary row, two rows at a time. 2 <= M <= 8 (to 16 when decoding: kernels.h):
// blocks of LG_VB vocabulary rows, each read from memory by the first pass over LG_M input rows
// and from L2 by the next; a pass keeps one vector of partial sums per input row (5 registers
// with the loaded ones, AVX2 holds them), so each step loads one embedding vector for LG_M
// independent FMAs; with AVX-512, four vocabulary rows at a time (rowdot_tile: 16 sums, 8 loads
// per 16 FMAs). (One accumulator per
// (row, input) made every FMA wait for the one before: bound by its latency, and at B = 8 the LM
// head took a third of a decoding step. All 8 input rows in one pass, 24 KiB at C = 768, left
// too little of L1 for the streamed rows: 2x slower.) Every output (v, m) is summed the same way
// wherever it sits: lane-wise over C in order, the lanes by a fixed tree, then the tail; rows of
// a pass beyond M repeat the last one and are not stored. So for M >= 2 the result depends
// neither on M nor on the thread count.
#define LG_M 4
#define LG_VB 32
// The lanes of a vector summed. With 16 lanes (AVX-512): one after the other from lane 0, the
// order the one-row kernel and the earlier few-rows kernel used, so decoding at 2-8 rows gives
// the same bits as before (sampled text and every figure computed from it stay as they were).
// With 8 lanes (AVX2) the partial sums differ from those anyway: a fixed tree, lane i + lane
// i+4, then (0 + 2) + (1 + 3). A macro: a function would take the vector by address (keeping the
// accumulator in memory through the loop) or by value (-Wpsabi without AVX-512).
#if VW == 16
#define VN_SUM(v) ({ vnat t_ = (v); float s_ = 0.0f;                                 \
                     for (int i_ = 0; i_ < 16; i_++) s_ += t_[i_];                     \
                     s_; })
#else
#define VN_SUM(v) ({ vnat t_ = (v); float s_[4];                                     \
                     for (int i_ = 0; i_ < 4; i_++) s_[i_] = t_[i_] + t_[i_ + 4];       \
                     (s_[0] + s_[2]) + (s_[1] + s_[3]); })
#endif

// One row against a weight in the [out, in] layout (V rows of C): out[v] = [out[v] +] [bias[v] +]
// x . wte[v], each weight row streamed once. The LM head at B = 1, and linear_forward's one row.
static void rowdot_one_row(float *out, const float *x, const float *wte, const float *bias,
                           int beta_one, int V, int C) {
    int C16 = C & ~15;
    int npair = (V + 1) / 2;
    #pragma omp parallel for schedule(static)
    for (int pr = 0; pr < npair; pr++) {
        int v0 = 2 * pr, nv = v0 + 1 < V ? 2 : 1;
        for (int vi = 0; vi < nv; vi++) {
            const float *w = wte + (size_t)(v0 + vi) * C;
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
            if (bias || beta_one)
                sum += (beta_one ? out[v0 + vi] : 0.0f) + (bias ? bias[v0 + vi] : 0.0f);
            out[v0 + vi] = sum;
        }
    }
}

#if VW == 16
typedef int32_t vidx __attribute__((vector_size(64)));
// Transposes 16 vectors of 16 lanes in place (t[i][j] <-> t[j][i]) in four rounds of block swaps:
// in round b (8, 4, 2, 1) rows i and i + b exchange their off-diagonal b x b blocks. A macro, as
// VN_SUM (no vector passed by value); the masks index the concatenation of the two sources.
#define TILE_TRANSPOSE16(t) do {                                                           \
    static const vidx lo_[4] = {                                                           \
        {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23},                          \
        {0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27},                        \
        {0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29},                        \
        {0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30}};                      \
    static const vidx hi_[4] = {                                                           \
        {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31},                    \
        {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31},                      \
        {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31},                      \
        {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31}};                      \
    for (int r_ = 0, b_ = 8; r_ < 4; r_++, b_ /= 2)                                        \
        for (int i_ = 0; i_ < 16; i_++) {                                                  \
            if (i_ & b_) continue;                                                         \
            vnat u_ = (t)[i_], w_ = (t)[i_ + b_];                                          \
            (t)[i_] = __builtin_shuffle(u_, w_, lo_[r_]);                                  \
            (t)[i_ + b_] = __builtin_shuffle(u_, w_, hi_[r_]);                             \
        }                                                                                  \
} while (0)

// LG_TV vocabulary rows v.. for the pass of LG_M input rows x (rows m0..): a tile of LG_TV x 4
// vectors of partial sums (16 of AVX-512's 32 registers), so each step loads LG_TV + 4 vectors
// for 4 LG_TV FMAs instead of 5 for 4. Every output is summed exactly as rowdot_few_rows' one-row
// loop sums it (lane-wise over C in order from 0, VN_SUM, the tail, then out and bias): the same
// bits. (AVX2's 16 registers: a tile of 2 x 4 took 1.5x the one-row loop's CPU at 8 rows.)
#define LG_TV 4
static void rowdot_tile(float *out, const float *const *x, const float *wte, const float *bias,
                        int beta_one, int64_t M, int64_t m0, int v, int V, int C) {
    int CV = C - C % VW;
    const float *w[LG_TV];
    for (int i = 0; i < LG_TV; i++) w[i] = wte + (size_t)(v + i) * C;
    vnat a[LG_TV][LG_M];
    #pragma GCC unroll 4
    for (int i = 0; i < LG_TV; i++)
        #pragma GCC unroll 4
        for (int k = 0; k < LG_M; k++) a[i][k] = (vnat){0};
    for (int c = 0; c < CV; c += VW) {
        vnat wv[LG_TV], xv[LG_M];
        #pragma GCC unroll 4
        for (int i = 0; i < LG_TV; i++) { VN_LOAD(wv[i], w[i] + c); VN_KEEP(wv[i]); }
        #pragma GCC unroll 4
        for (int k = 0; k < LG_M; k++) { VN_LOAD(xv[k], x[k] + c); VN_KEEP(xv[k]); }
        #pragma GCC unroll 4
        for (int i = 0; i < LG_TV; i++)
            #pragma GCC unroll 4
            for (int k = 0; k < LG_M; k++) a[i][k] += wv[i] * xv[k];
    }
    float sums[LG_TV * LG_M];
    // the 16 sums' lanes at once: transposed (lane l of every sum in t[l]), then added lane by
    // lane from 0, as VN_SUM adds each: the same bits for a sixth of the instructions
    vnat *t = &a[0][0];
    TILE_TRANSPOSE16(t);
    vnat s16 = {0};
    #pragma GCC unroll 16
    for (int l = 0; l < 16; l++) s16 += t[l];
    memcpy(sums, &s16, sizeof sums);
    for (int i = 0; i < LG_TV; i++) {
        float *sum = sums + i * LG_M;
        for (int k = 0; k < LG_M && m0 + k < M; k++) {
            for (int c = CV; c < C; c++) sum[k] += x[k][c] * w[i][c];
            float *o = out + (m0 + k) * V + v + i;
            if (bias || beta_one) sum[k] += (beta_one ? *o : 0.0f) + (bias ? bias[v + i] : 0.0f);
            *o = sum[k];
        }
    }
}
#endif

// 2 <= M <= KERNELS_DECODE_ROWDOT_ROWS rows against a weight in the [out, in] layout (V rows of
// C), as rowdot_one_row: out[m,v] = [out[m,v] +] [bias[v] +] x_m . wte[v]. The LM head's few rows,
// and linear_forward's.
static void rowdot_few_rows(float *out, const float *inp, const float *wte, const float *bias,
                            int beta_one, int64_t M, int V, int C) {
    int CV = C - C % VW;
    int nblk = (V + LG_VB - 1) / LG_VB;
    #pragma omp parallel for schedule(static)
    for (int blk = 0; blk < nblk; blk++) {
        int v0 = blk * LG_VB, v1 = v0 + LG_VB < V ? v0 + LG_VB : V;
        for (int64_t m0 = 0; m0 < M; m0 += LG_M) {
            const float *x[LG_M];
            for (int i = 0; i < LG_M; i++) x[i] = inp + (m0 + i < M ? m0 + i : M - 1) * C;
            int v = v0;
#if VW == 16
            for (; v + LG_TV <= v1; v += LG_TV)
                rowdot_tile(out, x, wte, bias, beta_one, M, m0, v, V, C);
#endif
            for (; v < v1; v++) {
                const float *w = wte + (size_t)v * C;
                vnat a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
                for (int c = 0; c < CV; c += VW) {
                    vnat wv, x0, x1, x2, x3;
                    VN_LOAD(wv, w + c);
                    VN_KEEP(wv);
                    VN_LOAD(x0, x[0] + c); VN_LOAD(x1, x[1] + c);
                    VN_LOAD(x2, x[2] + c); VN_LOAD(x3, x[3] + c);
                    a0 += wv * x0; a1 += wv * x1; a2 += wv * x2; a3 += wv * x3;
                }
                float sum[LG_M] = {VN_SUM(a0), VN_SUM(a1), VN_SUM(a2), VN_SUM(a3)};
                for (int k = 0; k < LG_M && m0 + k < M; k++) {
                    for (int c = CV; c < C; c++) sum[k] += x[k][c] * w[c];
                    float *o = out + (m0 + k) * V + v;
                    if (bias || beta_one)
                        sum[k] += (beta_one ? *o : 0.0f) + (bias ? bias[v] : 0.0f);
                    *o = sum[k];
                }
            }
        }
    }
}

// out (M, V) = [out +] [bias +] inp (M, C) @ w^T, w (V, C): up to max_rows rows streamed by the
// row-dot kernels, more by sgemm; fixed: every row count by the row-dot kernels where sgemm is not
// row-invariant (blas_rows_fixed)
static void rowdot_product(float *out, const float *inp, const float *w, const float *bias,
                           int beta_one, int64_t M, int V, int C, int64_t max_rows, int fixed) {
    if (M == 1) { rowdot_one_row(out, inp, w, bias, beta_one, V, C); return; }
    if (M <= max_rows || (fixed && !blas_rows_fixed())) {
        rowdot_few_rows(out, inp, w, bias, beta_one, M, V, C);
        return;
    }
    float beta = bias_init(out, bias, M, V, beta_one);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)M, V, C, 1.0f, inp, C, w, C,
                beta, out, V);
}

void logits_forward(float *out, const float *inp, const float *wte, int64_t M, int V, int C) {
    rowdot_product(out, inp, wte, NULL, 0, M, V, C, SMALL_ROWS, 0);
}

void logits_forward_fixed(float *out, const float *inp, const float *wte, int64_t M, int V,
                          int C) {
    rowdot_product(out, inp, wte, NULL, 0, M, V, C, SMALL_ROWS, 1);
}

void logits_forward_decode(float *out, const float *inp, const float *wte, int64_t M, int V,
                           int C) {
    rowdot_product(out, inp, wte, NULL, 0, M, V, C, KERNELS_DECODE_ROWDOT_ROWS, 1);
}

// dst (OC) += sum over the N rows of src (N, OC): chunks of ROW_CHUNK rows write their partial
// sums (in column blocks of at most PART_FLOATS), added in chunk order after the loop's barrier
// (part_add), one parallel region per round of chunks; the same bits as the strips' partials
// added under `ordered` used to give, without a sleeping thread at each hand-over.
static void colsum_add(float *dst, const float *src, int64_t N, int OC) {
    int64_t nch = (N + ROW_CHUNK - 1) / ROW_CHUNK;
    float part[PART_FLOATS];
    for (int j0 = 0; j0 < OC; j0 += PART_FLOATS) {
        int w = OC - j0 < PART_FLOATS ? OC - j0 : PART_FLOATS;
        int64_t per = PART_FLOATS / w;   // chunks per round
        for (int64_t r0 = 0; r0 < nch; r0 += per) {
            int64_t r1 = r0 + per < nch ? r0 + per : nch;
            #pragma omp parallel
            {
                #pragma omp for schedule(static)
                for (int64_t ch = r0; ch < r1; ch++) {
                    int64_t i0 = ch * ROW_CHUNK, i1 = i0 + ROW_CHUNK < N ? i0 + ROW_CHUNK : N;
                    float *acc = part + (ch - r0) * w;
                    for (int j = 0; j < w; j++) acc[j] = 0.0f;
                    for (int64_t i = i0; i < i1; i++) {
                        const float *r = src + i * OC + j0;
                        #pragma omp simd
                        for (int j = 0; j < w; j++) acc[j] += r[j];
                    }
                }
                part_add(dst + j0, part, r1 - r0, w, w);
            }
        }
    }
}

// A backward's two products, dinp and dweight, are independent and have the same FLOPs. On two
// threads they run side by side, one thread each, in one parallel region: one hand-over between
// the threads instead of the two each sgemm call makes, and no synchronisation inside OpenBLAS
// (which runs a call on the calling thread inside a parallel region). A call on one thread may
// round differently from the same call on two (OpenBLAS picks its kernels and blocking by the
// threads it has: the demo's SFT step on C = 128 gave other bits), so results at 2 threads differ
// in the last bits from those before this pairing; they still do not depend on anything but the
// thread count. Other thread counts run one call after the other, each on every thread.
typedef struct {
    CBLAS_TRANSPOSE ta, tb;
    blasint m, n, k, lda, ldb, ldc;
    const float *a, *b;
    float beta, *c;
} SgemmJob;

static void sgemm_job(const SgemmJob *j) {
    cblas_sgemm(CblasRowMajor, j->ta, j->tb, j->m, j->n, j->k, 1.0f, j->a, j->lda, j->b, j->ldb,
                j->beta, j->c, j->ldc);
}

static void sgemm_pair(const SgemmJob *x, const SgemmJob *y) {
    if (omp_get_max_threads() != 2 || omp_in_parallel()) {
        sgemm_job(x);
        sgemm_job(y);
        return;
    }
    #pragma omp parallel sections num_threads(2)
    {
        #pragma omp section
        sgemm_job(x);
        #pragma omp section
        sgemm_job(y);
    }
}

void matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, int64_t N, int C, int OC) {
    // dinp (N,C) += dout (N,OC) @ weight^T (OC,C)
    SgemmJob di = {CblasNoTrans, CblasTrans, (blasint)N, C, OC, OC, OC, C, dout, weight, 1.0f,
                   dinp};
    // dweight (C,OC) += inp^T (C,N) @ dout (N,OC); NULL: a frozen weight
    SgemmJob dw = {CblasTrans, CblasNoTrans, C, OC, (blasint)N, C, OC, OC, inp, dout, 1.0f,
                   dweight};
    if (dinp && dweight) sgemm_pair(&di, &dw);
    else if (dinp) sgemm_job(&di);
    else if (dweight) sgemm_job(&dw);
    if (dbias) colsum_add(dbias, dout, N, OC);
}

// Attention is the only layer that mixes information across time. For each query row t of
// sequence b and head h: p = softmax(q_t . k_s / sqrt(hd), s <= t); y_t = sum_s p_s v_s, with k
// and v from kv head h / (NH / KVH) (grouped-query attention; GPT-2 is KVH = NH). Work is split
// by (sequence, head) pairs, one thread each.
// Sequences of at least ATT_GEMM_MIN tokens go through single-threaded sgemm (OpenBLAS runs on
// the calling thread inside a parallel region) on blocks of ATT_BLOCK query rows, each against
// only the keys up to its last row: the masked triangle is skipped except within the diagonal
// block (5/8 of the full square at T=256 instead of all of it), and a (sequence, head) pair's
// scores stay in cache between the two products. Short sequences (PPO responses, tests) keep the
// hand loop, where sgemm's per-call cost would dominate.
#define ATT_GEMM_MIN 64
#define ATT_BLOCK 64

// Causal softmax of rows r0 .. r0+nr-1 of one (sequence, head) score matrix p (len, len):
// row t is normalised over s <= t and zeroed from t+1 to the block's last key kn-1, the columns
// the products read (nothing reads p beyond them).
static void att_softmax_block(float *p, int64_t r0, int64_t nr, int64_t len) {
    int64_t kn = r0 + nr;
    for (int64_t t = r0; t < r0 + nr; t++) {
        float *row = p + t * len;
        float mx = -INFINITY, sum = 0.0f;
        for (int64_t s = 0; s <= t; s++) mx = row[s] > mx ? row[s] : mx;
        #pragma omp simd reduction(+:sum)
        for (int64_t s = 0; s <= t; s++) { row[s] = exp_fast(row[s] - mx); sum += row[s]; }
        float inv = 1.0f / sum;
        #pragma omp simd
        for (int64_t s = 0; s <= t; s++) row[s] *= inv;
        for (int64_t s = t + 1; s < kn; s++) row[s] = 0.0f;
    }
}

// One (sequence, head) through sgemm. q, k, v (len, hd) with row stride C3; y (len, hd) with row
// stride C; p (len, len).
static void att_forward_gemm(float *y, float *p, const float *q, const float *k, const float *v,
                             int64_t len, int hd, int64_t C3, int64_t C, float scale) {
    for (int64_t r0 = 0; r0 < len; r0 += ATT_BLOCK) {
        int64_t nr = len - r0 < ATT_BLOCK ? len - r0 : ATT_BLOCK, kn = r0 + nr;
        // S (nr, kn) = scale * Q[r0:] K[:kn]^T
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)nr, (blasint)kn, hd, scale,
                    q + r0 * C3, (blasint)C3, k, (blasint)C3, 0.0f, p + r0 * len, (blasint)len);
        att_softmax_block(p, r0, nr, len);
        // Y[r0:] (nr, hd) = P (nr, kn) V[:kn]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)nr, hd, (blasint)kn, 1.0f,
                    p + r0 * len, (blasint)len, v, (blasint)C3, 0.0f, y + r0 * C, (blasint)C);
    }
}

// One (sequence, head) by hand: scores, softmax and the weighted sum of values, row by row.
static void att_forward_loop(float *y, float *p, const float *q, const float *k, const float *v,
                             int64_t len, int hd, int64_t C3, int64_t C, float scale) {
    for (int64_t t = 0; t < len; t++) {
        const float *qt = q + t * C3;
        float *pt = p + t * len, *yt = y + t * C;
        float mx = -INFINITY;
        for (int64_t s = 0; s <= t; s++) {
            const float *ks = k + s * C3;
            float dot = 0.0f;
            #pragma omp simd reduction(+:dot)
            for (int i = 0; i < hd; i++) dot += qt[i] * ks[i];
            dot *= scale;
            pt[s] = dot;
            if (dot > mx) mx = dot;
        }
        float sum = 0.0f;
        for (int64_t s = 0; s <= t; s++) { pt[s] = exp_fast(pt[s] - mx); sum += pt[s]; }
        float inv = 1.0f / sum;
        for (int64_t s = 0; s <= t; s++) pt[s] *= inv;
        for (int64_t s = t + 1; s < len; s++) pt[s] = 0.0f;
        for (int i = 0; i < hd; i++) yt[i] = 0.0f;
        for (int64_t s = 0; s <= t; s++) {
            const float *vs = v + s * C3;
            float ps = pt[s];
            #pragma omp simd
            for (int i = 0; i < hd; i++) yt[i] += ps * vs[i];
        }
    }
}

static void rope_rows_table(float *x, int64_t stride, int64_t r0, int64_t len, int h0, int nh,
                            int hd, const int32_t *pos, const float *rope_cs, float sign);

// Forward: a (sequence, kv head) task runs its group's q heads one after the other (each head's
// computation independent of the others', reading only the shared K and V); tasks run in
// parallel, one thread each. With rope_cs, the task first rotates the k head and the q heads it
// reads, in place: no other task touches them. (KVH = NH: GPT-2's (sequence, head) tasks.)
static void att_gqa_forward(float *out, float *att, float *qkv, const int64_t *off,
                            const int64_t *att_off, int B, int NH, int KVH, int hd,
                            const int32_t *pos, const float *rope_cs) {
    float scale = 1.0f / sqrtf((float)hd);
    int64_t QKV = (int64_t)(NH + 2 * KVH) * hd, C = (int64_t)NH * hd;
    int group = NH / KVH;
    #pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++) {
        for (int kh = 0; kh < KVH; kh++) {
            int64_t r0 = off[b], len = off[b + 1] - off[b];
            if (rope_cs) {
                rope_rows_table(qkv, QKV, r0, len, NH + kh, 1, hd, pos, rope_cs, 1.0f);
                rope_rows_table(qkv, QKV, r0, len, kh * group, group, hd, pos, rope_cs, 1.0f);
            }
            const float *k = qkv + r0 * QKV + C + (int64_t)kh * hd;
            const float *v = k + (int64_t)KVH * hd;
            for (int h = kh * group; h < (kh + 1) * group; h++) {
                const float *q = qkv + r0 * QKV + (int64_t)h * hd;
                float *p = att + att_off[b] + (int64_t)h * len * len, *y = out + r0 * C + h * hd;
                if (len >= ATT_GEMM_MIN) att_forward_gemm(y, p, q, k, v, len, hd, QKV, C, scale);
                else att_forward_loop(y, p, q, k, v, len, hd, QKV, C, scale);
            }
        }
    }
}

void attention_gqa_forward(float *out, float *att, const float *qkv, const int64_t *off,
                           const int64_t *att_off, int B, int NH, int KVH, int hd) {
    // without rope_cs nothing writes qkv
    att_gqa_forward(out, att, (float *)qkv, off, att_off, B, NH, KVH, hd, NULL, NULL);
}

// GPT-2's attention is the case KVH = NH: the same calls in the same order, the same bits.
void attention_forward(float *out, float *att, const float *qkv, const int64_t *off,
                       const int64_t *att_off, int B, int C, int NH) {
    attention_gqa_forward(out, att, qkv, off, att_off, B, NH, NH, C / NH);
}

// Backward of one (sequence, head) through sgemm, block by block of query rows:
// dP = dY V^T, dV += P^T dY, dS = P (dP - rowsum(P dP)) * scale, dQ += dS K, dK += dS^T Q.
// d (len, len) holds dP then dS of the block. q, k, v, dq, dk, dv have row stride C3; dy has C.
static void att_backward_gemm(float *dq, float *dk, float *dv, float *d, const float *dy,
                              const float *q, const float *k, const float *v, const float *p,
                              int64_t len, int hd, int64_t C3, int64_t C, float scale) {
    for (int64_t r0 = 0; r0 < len; r0 += ATT_BLOCK) {
        int64_t nr = len - r0 < ATT_BLOCK ? len - r0 : ATT_BLOCK, kn = r0 + nr;
        const float *pb = p + r0 * len, *dyb = dy + r0 * C;
        float *db = d + r0 * len;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)nr, (blasint)kn, hd, 1.0f,
                    dyb, (blasint)C, v, (blasint)C3, 0.0f, db, (blasint)len);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)kn, hd, (blasint)nr, 1.0f,
                    pb, (blasint)len, dyb, (blasint)C, 1.0f, dv, (blasint)C3);
        for (int64_t i = 0; i < nr; i++) {
            int64_t t = r0 + i;
            const float *pr = pb + i * len;
            float *dr = db + i * len, dot = 0.0f;
            #pragma omp simd reduction(+:dot)
            for (int64_t s = 0; s <= t; s++) dot += pr[s] * dr[s];
            #pragma omp simd
            for (int64_t s = 0; s <= t; s++) dr[s] = pr[s] * (dr[s] - dot) * scale;
            for (int64_t s = t + 1; s < kn; s++) dr[s] = 0.0f;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)nr, hd, (blasint)kn, 1.0f,
                    db, (blasint)len, k, (blasint)C3, 1.0f, dq + r0 * C3, (blasint)C3);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)kn, hd, (blasint)nr, 1.0f,
                    db, (blasint)len, q + r0 * C3, (blasint)C3, 1.0f, dk, (blasint)C3);
    }
}

// Backward of one (sequence, head) by hand, row by row: dp_s = dy . v_s and dv_s += p_s dy;
// then the softmax backward ds_s = p_s (dp_s - sum_s' p_s' dp_s'), into dq_t and dk_s.
static void att_backward_loop(float *dq, float *dk, float *dv, float *d, const float *dy,
                              const float *q, const float *k, const float *v, const float *p,
                              int64_t len, int hd, int64_t C3, int64_t C, float scale) {
    for (int64_t t = 0; t < len; t++) {
        const float *pt = p + t * len, *dyt = dy + t * C, *qt = q + t * C3;
        float *dqt = dq + t * C3, *dp = d + t * len;
        float dpsum = 0.0f;
        for (int64_t s = 0; s <= t; s++) {
            const float *vs = v + s * C3;
            float *dvs = dv + s * C3;
            float dot = 0.0f, ps = pt[s];
            #pragma omp simd reduction(+:dot)
            for (int i = 0; i < hd; i++) { dot += dyt[i] * vs[i]; dvs[i] += ps * dyt[i]; }
            dp[s] = dot;
            dpsum += ps * dot;
        }
        for (int64_t s = 0; s <= t; s++) {
            const float *ks = k + s * C3;
            float *dks = dk + s * C3;
            float ds = pt[s] * (dp[s] - dpsum) * scale;
            #pragma omp simd
            for (int i = 0; i < hd; i++) { dqt[i] += ds * ks[i]; dks[i] += ds * qt[i]; }
        }
    }
}

// Backward: the q heads of a group all add into their shared kv head's dK and dV, so one thread
// takes a (sequence, kv head) pair and runs its group's q heads one after the other; pairs touch
// disjoint slices of dqkv and scratch and run in parallel. (With KVH = NH this is GPT-2's
// (sequence, head) parallelism.) set: each pair first zeroes the slices of dqkv it owns (its
// rows, its q heads, its k and v head), which together are all of dqkv.
static void att_gqa_backward(float *dqkv, float *scratch, const float *dout, const float *qkv,
                             const float *att, const int64_t *off, const int64_t *att_off, int B,
                             int NH, int KVH, int hd, int set, const int32_t *pos,
                             const float *rope_cs) {
    float scale = 1.0f / sqrtf((float)hd);
    int64_t QKV = (int64_t)(NH + 2 * KVH) * hd, C = (int64_t)NH * hd;
    int group = NH / KVH;
    #pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++) {
        for (int kh = 0; kh < KVH; kh++) {
            int64_t r0 = off[b], len = off[b + 1] - off[b];
            const float *k = qkv + r0 * QKV + C + (int64_t)kh * hd, *v = k + (int64_t)KVH * hd;
            float *dk = dqkv + r0 * QKV + C + (int64_t)kh * hd, *dv = dk + (int64_t)KVH * hd;
            if (set) {
                for (int64_t t = 0; t < len; t++) {
                    float *row = dqkv + (r0 + t) * QKV;
                    memset(row + (int64_t)kh * group * hd, 0, (size_t)group * hd * sizeof(float));
                    memset(dk + t * QKV, 0, (size_t)hd * sizeof(float));
                    memset(dv + t * QKV, 0, (size_t)hd * sizeof(float));
                }
            }
            for (int h = kh * group; h < (kh + 1) * group; h++) {
                int64_t a = att_off[b] + (int64_t)h * len * len;
                const float *q = qkv + r0 * QKV + (int64_t)h * hd, *dy = dout + r0 * C + h * hd;
                float *dq = dqkv + r0 * QKV + (int64_t)h * hd;
                if (len >= ATT_GEMM_MIN)
                    att_backward_gemm(dq, dk, dv, scratch + a, dy, q, k, v, att + a, len, hd, QKV,
                                      C, scale);
                else
                    att_backward_loop(dq, dk, dv, scratch + a, dy, q, k, v, att + a, len, hd, QKV,
                                      C, scale);
            }
            if (rope_cs) {   // the task's dq heads and dk head are complete: rotate them back
                rope_rows_table(dqkv, QKV, r0, len, kh * group, group, hd, pos, rope_cs, -1.0f);
                rope_rows_table(dqkv, QKV, r0, len, NH + kh, 1, hd, pos, rope_cs, -1.0f);
            }
        }
    }
}

void attention_gqa_backward(float *dqkv, float *scratch, const float *dout, const float *qkv,
                            const float *att, const int64_t *off, const int64_t *att_off, int B,
                            int NH, int KVH, int hd) {
    att_gqa_backward(dqkv, scratch, dout, qkv, att, off, att_off, B, NH, KVH, hd, 0, NULL, NULL);
}

void attention_gqa_backward_set(float *dqkv, float *scratch, const float *dout, const float *qkv,
                                const float *att, const int64_t *off, const int64_t *att_off,
                                int B, int NH, int KVH, int hd) {
    att_gqa_backward(dqkv, scratch, dout, qkv, att, off, att_off, B, NH, KVH, hd, 1, NULL, NULL);
}

void attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv,
                        const float *att, const int64_t *off, const int64_t *att_off, int B, int C,
                        int NH) {
    attention_gqa_backward(dqkv, scratch, dout, qkv, att, off, att_off, B, NH, NH, C / NH);
}

#define GELU_SCALE 0.7978845608028654f  // sqrt(2/pi)

// GELU (tanh form) of n elements on the calling thread
static void gelu_span(float *restrict out, const float *restrict inp, int64_t n) {
    #pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        float x = inp[i];
        // 0.5x(1 + tanh u) = x * sigmoid(2u): no cancellation for negative x
        out[i] = x / (1.0f + exp_fast(-2.0f * GELU_SCALE * (x + 0.044715f * x * x * x)));
    }
}

// In chunks of VEC_CHUNK, each a plain vectorised loop: a `parallel for simd` that its `if` keeps
// on one thread ran 7.5x slower than the loop alone (12.5 us for GPT-2's 3,072 decoding
// activations, against 1.7 us; 0.15 ms of a 124M decoding step).
void gelu_forward(float *out, const float *inp, int64_t n) {
    int64_t nchunk = (n + VEC_CHUNK - 1) / VEC_CHUNK;
    #pragma omp parallel for schedule(static) if (n >= SERIAL_MAX)
    for (int64_t c = 0; c < nchunk; c++) {
        int64_t i0 = c * VEC_CHUNK, len = n - i0 < VEC_CHUNK ? n - i0 : VEC_CHUNK;
        gelu_span(out + i0, inp + i0, len);
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
    if (!dw) return;   // a frozen head
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

// ---- Llama-style kernels

void linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                    int64_t N, int C, int OC, int beta_one) {
    // Few rows (decoding): sgemm would pack the whole weight for them; the LM head's kernels stream
    // it once (C 576, OC 3072 from memory, 1 thread: one row 0.40 ms instead of 1.2, four 0.67
    // instead of 1.0, eight the same)
    rowdot_product(out, inp, weight, bias, beta_one, N, OC, C, SMALL_ROWS, 0);
}

void linear_forward_fixed(float *out, const float *inp, const float *weight, const float *bias,
                          int64_t N, int C, int OC, int beta_one) {
    rowdot_product(out, inp, weight, bias, beta_one, N, OC, C, SMALL_ROWS, 1);
}

void linear_forward_decode(float *out, const float *inp, const float *weight, const float *bias,
                           int64_t N, int C, int OC, int beta_one) {
    rowdot_product(out, inp, weight, bias, beta_one, N, OC, C, KERNELS_DECODE_ROWDOT_ROWS, 1);
}

// dinp_beta 1: dinp += ..., 0: dinp = ... (sgemm overwrites it; its old contents are ignored)
static void linear_backward_beta(float *dinp, float *dweight, float *dbias, const float *dout,
                                 const float *inp, const float *weight, int64_t N, int C, int OC,
                                 float dinp_beta) {
    // dinp (N,C) [+]= dout (N,OC) @ weight (OC,C)
    SgemmJob di = {CblasNoTrans, CblasNoTrans, (blasint)N, C, OC, OC, C, C, dout, weight,
                   dinp_beta, dinp};
    // dweight (OC,C) += dout^T (OC,N) @ inp (N,C); NULL: a frozen weight
    SgemmJob dw = {CblasTrans, CblasNoTrans, OC, C, (blasint)N, OC, C, C, dout, inp, 1.0f,
                   dweight};
    if (dinp && dweight) sgemm_pair(&di, &dw);
    else if (dinp) sgemm_job(&di);
    else if (dweight) sgemm_job(&dw);
    if (dbias) colsum_add(dbias, dout, N, OC);
}

void linear_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, int64_t N, int C, int OC) {
    linear_backward_beta(dinp, dweight, dbias, dout, inp, weight, N, C, OC, 1.0f);
}

void linear_backward_set(float *dinp, float *dweight, float *dbias, const float *dout,
                         const float *inp, const float *weight, int64_t N, int C, int OC) {
    linear_backward_beta(dinp, dweight, dbias, dout, inp, weight, N, C, OC, 0.0f);
}

// copy (N,C) or NULL: also receives inp, read once for both
static void rmsnorm_forward_to(float *out, float *rstd, const float *inp, const float *weight,
                               float *copy, int64_t N, int C, float eps) {
    #pragma omp parallel for schedule(static) if (N * C >= SERIAL_MAX)
    for (int64_t i = 0; i < N; i++) {
        const float *x = inp + i * C;
        float ss = 0.0f;
        #pragma omp simd reduction(+:ss)
        for (int c = 0; c < C; c++) ss += x[c] * x[c];
        float r = 1.0f / sqrtf(ss / C + eps);
        float *o = out + i * C;
        #pragma omp simd
        for (int c = 0; c < C; c++) o[c] = x[c] * r * weight[c];
        rstd[i] = r;
        if (copy) memcpy(copy + i * C, x, (size_t)C * sizeof(float));
    }
}

void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int64_t N,
                     int C, float eps) {
    rmsnorm_forward_to(out, rstd, inp, weight, NULL, N, C, eps);
}

void rmsnorm_forward_copy(float *out, float *rstd, const float *inp, const float *weight,
                          float *copy, int64_t N, int C, float eps) {
    rmsnorm_forward_to(out, rstd, inp, weight, copy, N, C, eps);
}

void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                      const float *weight, const float *rstd, int64_t N, int C) {
    norm_backward(dinp, dweight, NULL, dout, inp, weight, NULL, rstd, N, C);
}

void rope_inv_freq(float *inv_freq, int hd, double theta, int scaling, double factor,
                   double low_freq_factor, double high_freq_factor, int original_max_pos) {
    // Llama 3 (transformers' _compute_llama3_parameters): wavelengths longer than the original
    // context / low_freq_factor are slowed by factor, shorter than original / high_freq_factor
    // kept, and the band between interpolated by where original / wavelength falls in it
    double low_wavelen = original_max_pos / low_freq_factor;
    double high_wavelen = original_max_pos / high_freq_factor;
    for (int i = 0; i < hd / 2; i++) {
        double f = 1.0 / pow(theta, (2.0 * i) / hd);
        if (scaling == 1) {
            double wavelen = 2.0 * M_PI / f;
            if (wavelen > low_wavelen) {
                f = f / factor;
            } else if (!(wavelen < high_wavelen)) {
                double smooth = (original_max_pos / wavelen - low_freq_factor) /
                                (high_freq_factor - low_freq_factor);
                f = (1.0 - smooth) * f / factor + smooth * f;
            }
        }
        inv_freq[i] = (float)f;
    }
}

// Rotates each head's pairs (x[i], x[i + hd/2]) by angle pos * inv_freq[i] times sign. The angle
// and its cosine and sine are computed in double (in float, pos * inv_freq loses a part in 1e7
// of an angle of thousands of radians: 1e-3 at position 10^4), once per row and pair block,
// shared by all heads of the row; the rotation itself is one vectorised pass over the row.
#define ROPE_BLOCK 64
// The rotation of w pairs (x1[i], x2[i]) by the angles whose cosines and (signed) sines are cs, sn.
static inline void rope_span(float *x1, float *x2, const float *cs, const float *sn, int w) {
    #pragma omp simd
    for (int i = 0; i < w; i++) {
        float a = x1[i], b = x2[i];
        x1[i] = a * cs[i] - b * sn[i];
        x2[i] = b * cs[i] + a * sn[i];
    }
}

static void rope_rotate(float *x, const int32_t *pos, const float *inv_freq, int64_t N,
                        int nheads, int hd, int64_t stride, float sign) {
    int half = hd / 2;
    #pragma omp parallel for schedule(static) if (N * nheads * hd >= SERIAL_MAX)
    for (int64_t n = 0; n < N; n++) {
        float cs[ROPE_BLOCK], sn[ROPE_BLOCK];
        for (int i0 = 0; i0 < half; i0 += ROPE_BLOCK) {
            int w = half - i0 < ROPE_BLOCK ? half - i0 : ROPE_BLOCK;
            for (int i = 0; i < w; i++) {
                double a = (double)pos[n] * (double)inv_freq[i0 + i];
                cs[i] = (float)cos(a);
                sn[i] = sign * (float)sin(a);
            }
            for (int h = 0; h < nheads; h++) {
                float *x1 = x + n * stride + (int64_t)h * hd + i0;
                rope_span(x1, x1 + half, cs, sn, w);
            }
        }
    }
}

void rope_forward(float *x, const int32_t *pos, const float *inv_freq, int64_t N, int nheads,
                  int hd, int64_t stride) {
    rope_rotate(x, pos, inv_freq, N, nheads, hd, stride, 1.0f);
}

void rope_backward(float *dx, const int32_t *pos, const float *inv_freq, int64_t N, int nheads,
                   int hd, int64_t stride) {
    rope_rotate(dx, pos, inv_freq, N, nheads, hd, stride, -1.0f);
}

void rope_table(float *cs, const float *inv_freq, int npos, int hd) {
    int half = hd / 2;
    #pragma omp parallel for schedule(static)
    for (int p = 0; p < npos; p++)
        for (int i = 0; i < half; i++) {
            double a = (double)p * (double)inv_freq[i];
            cs[(int64_t)p * hd + i] = (float)cos(a);
            cs[(int64_t)p * hd + half + i] = (float)sin(a);
        }
}

// Rotates heads h0 .. h0+nh-1 of rows r0 .. r0+len-1 of x (row stride `stride`) by the table rows
// at pos (sign -1: the inverse rotation, for gradients), ROPE_BLOCK pairs at a time as
// rope_rotate: the same products, the same bits.
static void rope_rows_table(float *x, int64_t stride, int64_t r0, int64_t len, int h0, int nh,
                            int hd, const int32_t *pos, const float *rope_cs, float sign) {
    int half = hd / 2;
    for (int64_t n = r0; n < r0 + len; n++) {
        const float *cs = rope_cs + (int64_t)pos[n] * hd, *sn = cs + half;
        for (int i0 = 0; i0 < half; i0 += ROPE_BLOCK) {
            int w = half - i0 < ROPE_BLOCK ? half - i0 : ROPE_BLOCK;
            float s[ROPE_BLOCK];
            for (int i = 0; i < w; i++) s[i] = sign * sn[i0 + i];
            for (int h = h0; h < h0 + nh; h++) {
                float *x1 = x + n * stride + (int64_t)h * hd + i0;
                rope_span(x1, x1 + half, cs + i0, s, w);
            }
        }
    }
}

void attention_gqa_rope_forward(float *out, float *att, float *qkv, const int64_t *off,
                                const int64_t *att_off, int B, int NH, int KVH, int hd,
                                const int32_t *pos, const float *rope_cs) {
    att_gqa_forward(out, att, qkv, off, att_off, B, NH, KVH, hd, pos, rope_cs);
}

void attention_gqa_rope_backward_set(float *dqkv, float *scratch, const float *dout,
                                     const float *qkv, const float *att, const int64_t *off,
                                     const int64_t *att_off, int B, int NH, int KVH, int hd,
                                     const int32_t *pos, const float *rope_cs) {
    att_gqa_backward(dqkv, scratch, dout, qkv, att, off, att_off, B, NH, KVH, hd, 1, pos,
                     rope_cs);
}

// SwiGLU works on blocks of SWIGLU_BLOCK columns of a row, so that one row (decoding) still
// spreads over the threads; each block is one vectorised pass.
#define SWIGLU_BLOCK 1024
void swiglu_forward(float *out, const float *gu, int64_t N, int F) {
    int nblk = (F + SWIGLU_BLOCK - 1) / SWIGLU_BLOCK;
    #pragma omp parallel for collapse(2) schedule(static) if (N * F >= SERIAL_MAX)
    for (int64_t n = 0; n < N; n++) {
        for (int blk = 0; blk < nblk; blk++) {
            int j0 = blk * SWIGLU_BLOCK, w = F - j0 < SWIGLU_BLOCK ? F - j0 : SWIGLU_BLOCK;
            const float *g = gu + n * 2 * F + j0, *u = g + F;
            float *o = out + n * F + j0;
            #pragma omp simd
            for (int j = 0; j < w; j++) o[j] = g[j] / (1.0f + exp_fast(-g[j])) * u[j];
        }
    }
}

// add 1: dgu += ..., 0: dgu = ... (as the _set kernels)
static void swiglu_backward_to(float *dgu, const float *dout, const float *gu, int64_t N, int F,
                               int add) {
    int nblk = (F + SWIGLU_BLOCK - 1) / SWIGLU_BLOCK;
    #pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        for (int blk = 0; blk < nblk; blk++) {
            int j0 = blk * SWIGLU_BLOCK, w = F - j0 < SWIGLU_BLOCK ? F - j0 : SWIGLU_BLOCK;
            const float *g = gu + n * 2 * F + j0, *u = g + F, *d = dout + n * F + j0;
            float *dg = dgu + n * 2 * F + j0, *du = dg + F;
            #pragma omp simd
            for (int j = 0; j < w; j++) {
                // silu(g) = g s with s = sigmoid(g); silu'(g) = s (1 + g (1 - s))
                float s = 1.0f / (1.0f + exp_fast(-g[j]));
                float gg = d[j] * u[j] * s * (1.0f + g[j] * (1.0f - s)), gu_ = d[j] * g[j] * s;
                dg[j] = add ? dg[j] + gg : gg;
                du[j] = add ? du[j] + gu_ : gu_;
            }
        }
    }
}

void swiglu_backward(float *dgu, const float *dout, const float *gu, int64_t N, int F) {
    swiglu_backward_to(dgu, dout, gu, N, F, 1);
}

void swiglu_backward_set(float *dgu, const float *dout, const float *gu, int64_t N, int F) {
    swiglu_backward_to(dgu, dout, gu, N, F, 0);
}
