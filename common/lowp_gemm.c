// The many-row products of reduced-precision weights: lowp_forward above lowp_rowdot_rows(m) rows
// (B = 64 decoding, a frozen model's full forward), see lowp.h.
// Also the transposed product, the input gradient through a frozen narrow matrix (LoRA on a
// bf16 base).
//
// Where the CPU has AVX512-BF16 (and the matrix's path is LOWP_PATH_AVX512) the bf16 weights are
// multiplied as they are stored, with vdpbf16ps (two bf16 products summed into an fp32 lane, at
// twice the rate of fp32 FMAs): the activations are rounded to bf16 and packed, per block of rows,
// pair-interleaved ([pair][64 rows] 32-bit words, so one load gives 16 rows' pairs); a
// micro-kernel keeps a 64-row x 6-channel tile of fp32 sums in 24 registers and, per pair of
// inputs, broadcasts each channel's weight pair (read straight from its [out, in] row: no packed
// copy of the weights) against the 4 registers of activation pairs. int8 weights are exact in
// bf16, so 6 channels at a time are widened to bf16 in a per-thread buffer and take the same
// kernel, the channel's scale applied to the sum. Threads share out the 6-channel groups; each sum
// runs over the inputs in one fixed order whatever the thread count, so results do not depend
// on it.
// Where the CPU also has AMX (Intel from Sapphire Rapids; lowp_gemm_tiles) the same packed
// activations go through AMX tiles instead, 32 channels at a time: vdpbf16ps runs at the rate of
// fp32 FMAs on those CPUs (one port), so it lost to OpenBLAS's fp32 sgemm there, while one tile
// product does 16 x 16 x 32 multiply-adds. Channels past the last whole 32 take the vdpbf16ps
// micro-kernel.
// Elsewhere (no AVX512-BF16, or RLHF_LOWP=portable / lowp_matrix_set_path to a narrower path) the
// weights are widened to fp32 in tiles of output channels and multiplied with sgemm.
#include "lowp.h"

#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "util.h"
#include <cblas.h>
#include <limits.h>
#ifdef __linux__
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#define LOWP_GEMM_X86 1
#include <immintrin.h>
#endif

#define AMX_CH 32   // output channels per tile micro-kernel: two weight tiles of 16 channels
#define AMX_K 32    // inputs per tile product: a tile row of 64 bytes of bf16

// ---- fallback: dequantised tiles and sgemm ----

// output channels per tile: about 2 MiB of fp32 scratch, at least 256 channels (3 MiB at C = 3072)
#define LOWP_TILE_BYTES (2 << 20)
#define LOWP_TILE_MIN 256

// rows o0 .. o0+n of W in fp32 into dst (n, C)
static void lowp_dequant_rows(float *dst, const LowpMatrix *m, int o0, int n) {
    #pragma omp parallel for schedule(static)
    for (int j = 0; j < n; j++) lowp_matrix_row(dst + (size_t)j * m->C, m, o0 + j);
}

// tile by tile of output channels, dequantised then sgemm
static void lowp_forward_sgemm(float *out, const float *inp, const LowpMatrix *m,
                               const float *bias, int64_t N, int beta_one) {
    int C = m->C, OC = m->OC;
    int tile_n = LOWP_TILE_BYTES / (4 * C) / 16 * 16;
    tile_n = tile_n < LOWP_TILE_MIN ? LOWP_TILE_MIN : tile_n;
    float *tile = MALLOC_CHECK((size_t)tile_n * C * sizeof(float));
    if (bias) {   // out = [out +] bias first, then sgemm adds (beta 1); without bias, beta says it
        #pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < N; i++)
            for (int o = 0; o < OC; o++)
                out[i * OC + o] = (beta_one ? out[i * OC + o] : 0.0f) + bias[o];
    }
    float beta = bias || beta_one ? 1.0f : 0.0f;
    for (int o0 = 0; o0 < OC; o0 += tile_n) {
        int n = OC - o0 < tile_n ? OC - o0 : tile_n;
        lowp_dequant_rows(tile, m, o0, n);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, n, C, 1.0f, inp, C, tile, C,
                    beta, out + o0, OC);
    }
    free(tile);
}

#ifdef LOWP_GEMM_X86
// ---- AVX512-BF16: vdpbf16ps on bf16 weights as stored ----
#define T_GEMM "avx512f,avx512bw,avx512vl,avx512bf16"
#define T_GEMM_INLINE static inline __attribute__((always_inline, target(T_GEMM)))

#define GEMM_MR 4                  // registers of 16 rows in a tile
#define GEMM_ROWS (16 * GEMM_MR)   // rows in a tile of packed activations
#define GEMM_NR 6                  // output channels per micro-kernel (4 x 6 = 24 sums)
// activations packed per block of rows: up to this many bytes (L2-sized), at least one tile
#define GEMM_BLOCK_BYTES (512 << 10)

// a bf16 weight pair as one 32-bit word, at any 2-byte alignment
typedef uint32_t __attribute__((may_alias, aligned(2))) GemmPair;

// acc[i][j] += x[i] . (pair p of w_j) for one pair of inputs: the 32-bit word at w_j + 2p, or
// with odd set, w_j's last input alone (the word would reach into the next row, or past the end)
T_GEMM_INLINE void gemm_step(__m512 acc[GEMM_MR][GEMM_NR], const uint32_t *xp, const uint16_t *w,
                             size_t ldw, int p, int odd, int MR, int NR) {
    __m512bh x[GEMM_MR];
    _Pragma("GCC unroll 4") for (int i = 0; i < MR; i++)
        x[i] = (__m512bh)_mm512_load_si512(xp + (size_t)p * GEMM_ROWS + 16 * i);
    _Pragma("GCC unroll 6") for (int j = 0; j < NR; j++) {
        const uint16_t *wj = w + j * ldw + 2 * (size_t)p;
        uint32_t pair = odd ? wj[0] : *(const GemmPair *)wj;
        __m512bh b = (__m512bh)_mm512_set1_epi32((int)pair);
        _Pragma("GCC unroll 4") for (int i = 0; i < MR; i++)
            acc[i][j] = _mm512_dpbf16_ps(acc[i][j], x[i], b);
    }
}

// t[j * GEMM_ROWS + n] = sum over inputs of x[n] . w_j, pair by pair in order, for the MR * 16
// rows of one tile (xp: [pair][GEMM_ROWS] words of bf16 pairs, the last pair of an odd C padded
// with zero) and NR channels (w_j = w + j * ldw, C bf16 each)
T_GEMM_INLINE void gemm_micro(float *t, const uint32_t *xp, const uint16_t *w, size_t ldw, int C,
                              int MR, int NR) {
    __m512 acc[GEMM_MR][GEMM_NR];
    _Pragma("GCC unroll 4") for (int i = 0; i < MR; i++)
        _Pragma("GCC unroll 6") for (int j = 0; j < NR; j++) acc[i][j] = _mm512_setzero_ps();
    int P = C / 2;
    for (int p = 0; p < P; p++) gemm_step(acc, xp, w, ldw, p, 0, MR, NR);
    if (C & 1) gemm_step(acc, xp, w, ldw, P, 1, MR, NR);
    _Pragma("GCC unroll 4") for (int i = 0; i < MR; i++)
        _Pragma("GCC unroll 6") for (int j = 0; j < NR; j++)
            _mm512_store_ps(t + j * GEMM_ROWS + 16 * i, acc[i][j]);
}

typedef void (*GemmMicro)(float *t, const uint32_t *xp, const uint16_t *w, size_t ldw, int C);

// one instance per tile shape, so every loop above unrolls and the sums stay in registers
#define GEMM_FN(MR, NR)                                                                            \
    __attribute__((target(T_GEMM))) static void gemm_##MR##_##NR(                                  \
        float *t, const uint32_t *xp, const uint16_t *w, size_t ldw, int C) {                      \
        gemm_micro(t, xp, w, ldw, C, MR, NR);                                                      \
    }
#define GEMM_FN_ROW(MR)                                                                            \
    GEMM_FN(MR, 1) GEMM_FN(MR, 2) GEMM_FN(MR, 3) GEMM_FN(MR, 4) GEMM_FN(MR, 5) GEMM_FN(MR, 6)
GEMM_FN_ROW(1)
GEMM_FN_ROW(2)
GEMM_FN_ROW(3)
GEMM_FN_ROW(4)
#define GEMM_ROW_PTRS(MR)                                                                          \
    { gemm_##MR##_1, gemm_##MR##_2, gemm_##MR##_3, gemm_##MR##_4, gemm_##MR##_5, gemm_##MR##_6 }
static const GemmMicro gemm_kernels[GEMM_MR][GEMM_NR] = {GEMM_ROW_PTRS(1), GEMM_ROW_PTRS(2),
                                                         GEMM_ROW_PTRS(3), GEMM_ROW_PTRS(4)};

// int8 rows (nr of C) widened to bf16 (exact: |q| <= 127 has 7 significant bits) into dst
__attribute__((target(T_GEMM))) static void gemm_widen_int8(uint16_t *dst, const int8_t *q, int C,
                                                           int nr) {
    for (int j = 0; j < nr; j++) {
        const int8_t *s = q + (size_t)j * C;
        uint16_t *d = dst + (size_t)j * C;
        int c = 0;
        for (; c + 16 <= C; c += 16) {
            __m128i q8 = _mm_loadu_si128((const void *)(s + c));
            __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q8));
            _mm256_storeu_si256((void *)(d + c), (__m256i)_mm512_cvtneps_pbh(f));
        }
        for (; c < C; c++) d[c] = lowp_bf16_from_float((float)s[c]);
    }
}

// 16 x 16 32-bit words transposed in registers: r[k] holds row k on entry, column k on return
T_GEMM_INLINE void gemm_transpose16(__m512i r[16]) {
    __m512i t[16], u[16];
    _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++) {   // pairs of rows interleaved
        t[2 * k] = _mm512_unpacklo_epi32(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_epi32(r[2 * k], r[2 * k + 1]);
    }
    _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {   // then 64-bit halves of 4 rows
        u[4 * k] = _mm512_unpacklo_epi64(t[4 * k], t[4 * k + 2]);
        u[4 * k + 1] = _mm512_unpackhi_epi64(t[4 * k], t[4 * k + 2]);
        u[4 * k + 2] = _mm512_unpacklo_epi64(t[4 * k + 1], t[4 * k + 3]);
        u[4 * k + 3] = _mm512_unpackhi_epi64(t[4 * k + 1], t[4 * k + 3]);
    }
    // u[4q + j], 128-bit block b: rows 4q .. 4q+3 of column 4b + j; blocks gathered in two steps
    _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
        __m512i v0 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x88);       // cols j, 8+j: rows 0-7
        __m512i v1 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xdd);       // cols 4+j, 12+j
        __m512i w0 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x88);  // the same, rows 8-15
        __m512i w1 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xdd);
        r[j] = _mm512_shuffle_i32x4(v0, w0, 0x88);
        r[8 + j] = _mm512_shuffle_i32x4(v0, w0, 0xdd);
        r[4 + j] = _mm512_shuffle_i32x4(v1, w1, 0x88);
        r[12 + j] = _mm512_shuffle_i32x4(v1, w1, 0xdd);
    }
}

// rows [r0, r0 + R) of inp rounded to bf16 (round to nearest even, as lowp_bf16_from_float; a
// denormal becomes zero, as vdpbf16ps reads one anyway) and packed into tiles of GEMM_ROWS rows:
// xp[tile][pair][row], rows past R and the odd C's missing half zero. 16 rows by 16 pairs at a
// time, shared out among the threads of the enclosing parallel region (each block of 16 x 16
// words fills 16 whole cache lines of its own).
__attribute__((target(T_GEMM))) static void gemm_pack(uint32_t *xp, const float *inp, int64_t r0,
                                                     int64_t R, int C) {
    int P = (C + 1) / 2, nchunk = (P + 15) / 16;
    int64_t ngroup = (R + 15) / 16;
    #pragma omp for schedule(static)
    for (int64_t u = 0; u < ngroup * nchunk; u++) {
        int64_t grp = u / nchunk;
        int c = 32 * (int)(u % nchunk), left = C - c < 32 ? C - c : 32;
        __mmask16 lo = (__mmask16)(left >= 16 ? 0xffff : (1u << left) - 1);
        __mmask16 hi = (__mmask16)(left >= 32 ? 0xffff : left <= 16 ? 0 : (1u << (left - 16)) - 1);
        __m512i r[16];
        _Pragma("GCC unroll 16") for (int k = 0; k < 16; k++) {
            int64_t row = 16 * grp + k;
            r[k] = _mm512_setzero_si512();
            if (row >= R) continue;
            const float *x = inp + (r0 + row) * C + c;
            __m512 a = _mm512_maskz_loadu_ps(lo, x), b = _mm512_maskz_loadu_ps(hi, x + 16);
            r[k] = (__m512i)_mm512_cvtne2ps_pbh(b, a);   // a's 16 bf16 low, then b's
        }
        gemm_transpose16(r);
        int64_t tile = 16 * grp / GEMM_ROWS, n0 = 16 * grp % GEMM_ROWS;
        uint32_t *d = xp + ((size_t)tile * P + (size_t)(c / 2)) * GEMM_ROWS + n0;
        int np = P - c / 2 < 16 ? P - c / 2 : 16;
        for (int k = 0; k < np; k++) _mm512_store_si512(d + (size_t)k * GEMM_ROWS, r[k]);
    }
}

// out rows [r0, r0 + R) at channels o .. o + nr from a tile's sums t ([channel][GEMM_ROWS]), as
// lowp_forward's kernels: out = [out +] bias + sum * post, bp[j] = bias (or 0), pp[j] = post (the
// int8 scale, 1 for bf16). 16 rows at a time: their sums transposed in registers into one vector
// per row, written with a masked store of nr lanes.
__attribute__((target(T_GEMM))) static void gemm_store(float *out, const float *t, const float *bp,
                                                      const float *pp, int64_t r0, int64_t R,
                                                      int OC, int o, int nr, int beta_one) {
    __mmask16 mask = (__mmask16)((1u << nr) - 1);
    __m512 bv = _mm512_maskz_loadu_ps(mask, bp), pv = _mm512_maskz_loadu_ps(mask, pp);
    for (int64_t n0 = 0; n0 < R; n0 += 16) {
        __m512i r[16];
        _Pragma("GCC unroll 16") for (int j = 0; j < 16; j++)
            r[j] = j < nr ? _mm512_load_si512((const void *)(t + j * GEMM_ROWS + n0))
                          : _mm512_setzero_si512();
        gemm_transpose16(r);
        int64_t nn = R - n0 < 16 ? R - n0 : 16;
        for (int64_t n = 0; n < nn; n++) {
            float *dst = out + (r0 + n0 + n) * OC + o;
            __m512 add = beta_one ? _mm512_add_ps(_mm512_maskz_loadu_ps(mask, dst), bv) : bv;
            _mm512_mask_storeu_ps(dst, mask, _mm512_fmadd_ps((__m512)r[n], pv, add));
        }
    }
}

// ---- AMX: tile products on the same packed activations ----
#define T_AMX T_GEMM ",amx-tile,amx-bf16"

// the 64-byte tile configuration (palette 1)
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} AmxConfig;

// tiles 0-3: sums (channels 0-15, 16-31) x (rows 0-15, 16-31); 4-5: weights; 6-7: activations;
// each 16 rows of 64 bytes. A thread's tile state: set before its first product, released after.
// ldtilecfg by hand: GCC 12's _tile_loadconfig names only the first 8 bytes of the configuration
// as read, so the compiler dropped the stores of the rows and widths (a fault where it did).
__attribute__((target(T_AMX))) static void amx_begin(void) {
    AmxConfig c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int i = 0; i < 8; i++) {
        c.colsb[i] = 64;
        c.rows[i] = 16;
    }
    __asm__ volatile("ldtilecfg %0" : : "m"(c));
}

__attribute__((target(T_AMX))) static void amx_end(void) { _tile_release(); }

// t[j * GEMM_ROWS + h + n] = sum over inputs of x[h + n] . w_j for the 32 channels
// w_j = w + j * ldw and the rows h .. h+31 of a 64-row tile of packed activations xp
// ([pair][GEMM_ROWS] words; C a multiple of 32). A weight tile's row is a channel's 32 inputs as
// stored; an activation tile's row is one pair of inputs of 16 rows, the pair-interleaved layout
// the tile product reads. two: rows h+16 .. h+31 are packed (else only h .. h+15 are read and
// written).
__attribute__((target(T_AMX))) static void amx_half(float *t, const uint32_t *xp,
                                                   const uint16_t *w, size_t ldw, int C, int h,
                                                   int two) {
    size_t wstride = 2 * ldw, xstride = 4 * GEMM_ROWS, tstride = 4 * GEMM_ROWS;
    const uint16_t *w16 = w + 16 * ldw;
    // GCC 12's tile loads and stores name no memory: the barriers keep the packing's stores
    // before them and the caller's reads of t after
    __asm__ volatile("" : : : "memory");
    _tile_zero(0);
    _tile_zero(2);
    if (two) {
        _tile_zero(1);
        _tile_zero(3);
    }
    for (int k = 0; k < C; k += AMX_K) {
        const uint32_t *x = xp + (size_t)(k / 2) * GEMM_ROWS + h;
        _tile_loadd(4, w + k, wstride);
        _tile_loadd(5, w16 + k, wstride);
        _tile_loadd(6, x, xstride);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(2, 5, 6);
        if (two) {
            _tile_loadd(7, x + 16, xstride);
            _tile_dpbf16ps(1, 4, 7);
            _tile_dpbf16ps(3, 5, 7);
        }
    }
    _tile_stored(0, t + h, tstride);
    _tile_stored(2, t + 16 * GEMM_ROWS + h, tstride);
    if (two) {
        _tile_stored(1, t + h + 16, tstride);
        _tile_stored(3, t + 16 * GEMM_ROWS + h + 16, tstride);
    }
    __asm__ volatile("" : : : "memory");
}

// whether the CPU has AMX-BF16 and Linux grants this process the tile state, asked once (the
// answer is the process's: two threads racing at the first call both get it)
#ifdef __linux__
#define AMX_ARCH_REQ_XCOMP_PERM 0x1023
#define AMX_XFEATURE_XTILEDATA 18
#endif
static int amx_usable(void) {
    static int state;   // 0 not asked yet, 1 usable, -1 not
    int s = __atomic_load_n(&state, __ATOMIC_ACQUIRE);
    if (s == 0) {
        s = -1;
#ifdef __linux__
        if ((blas_cpu_flags() & BLAS_AMX_BF16) &&
            lowp_path_supported(LOWP_PATH_AVX512, LOWP_BF16) &&
            syscall(SYS_arch_prctl, AMX_ARCH_REQ_XCOMP_PERM, AMX_XFEATURE_XTILEDATA) == 0)
            s = 1;
#endif
        __atomic_store_n(&state, s, __ATOMIC_RELEASE);
    }
    return s == 1;
}
#endif

int lowp_tiles_supported(void) {
#ifdef LOWP_GEMM_X86
    const char *env = getenv("RLHF_LOWP");
    return !(env && strcmp(env, "noamx") == 0) && amx_usable();
#else
    return 0;
#endif
}

#ifdef LOWP_GEMM_X86
// the channels of group g: whole 32-channel groups on tiles first, then groups of up to 6 on the
// vdpbf16ps micro-kernel; *o the first channel, returns how many
static int bf16dp_group(int g, int ntile, int OC, int *o) {
    if (g < ntile) {
        *o = g * AMX_CH;
        return AMX_CH;
    }
    *o = ntile * AMX_CH + (g - ntile) * GEMM_NR;
    return OC - *o < GEMM_NR ? OC - *o : GEMM_NR;
}

// the many-rows product on vdpbf16ps (or AMX tiles): row blocks of packed activations, each
// multiplied by every group of channels (the groups shared out among threads), tile by tile of
// 64 rows
static void lowp_forward_bf16dp(float *out, const float *inp, const LowpMatrix *m,
                                const float *bias, int64_t N, int beta_one) {
    int C = m->C, OC = m->OC, P = (C + 1) / 2;
    int ntile = lowp_gemm_tiles(m) ? OC / AMX_CH : 0, maxw = ntile ? AMX_CH : GEMM_NR;
    int ngroups = ntile + (OC - ntile * AMX_CH + GEMM_NR - 1) / GEMM_NR;
    int64_t block = (int64_t)GEMM_BLOCK_BYTES / (4 * (int64_t)P) / GEMM_ROWS * GEMM_ROWS;
    int64_t nround = (N + GEMM_ROWS - 1) / GEMM_ROWS * GEMM_ROWS;
    block = block < GEMM_ROWS ? GEMM_ROWS : block > nround ? nround : block;
    uint32_t *xp = ALIGNED_CHECK((size_t)block * P * sizeof(uint32_t));
    #pragma omp parallel
    {
        uint16_t *wide = m->fmt == LOWP_INT8 ? MALLOC_CHECK((size_t)maxw * C * 2) : NULL;
        float t[AMX_CH * GEMM_ROWS] __attribute__((aligned(64)));
        if (ntile) amx_begin();
        for (int64_t r0 = 0; r0 < N; r0 += block) {
            int64_t R = N - r0 < block ? N - r0 : block;
            gemm_pack(xp, inp, r0, R, C);   // ends with the loop's barrier
            #pragma omp for schedule(static)
            for (int g = 0; g < ngroups; g++) {
                int o, nr = bf16dp_group(g, ntile, OC, &o);
                const uint16_t *w = m->bf16 ? m->bf16 + (size_t)o * C : wide;
                float bp[AMX_CH], pp[AMX_CH];
                for (int j = 0; j < nr; j++) {
                    bp[j] = bias ? bias[o + j] : 0.0f;
                    pp[j] = m->fmt == LOWP_INT8 ? m->scale[o + j] : 1.0f;
                }
                if (!m->bf16) gemm_widen_int8(wide, m->q + (size_t)o * C, C, nr);
                for (int64_t t0 = 0; t0 < R; t0 += GEMM_ROWS) {
                    int64_t rows = R - t0 < GEMM_ROWS ? R - t0 : GEMM_ROWS;
                    const uint32_t *xt = xp + (size_t)(t0 / GEMM_ROWS) * P * GEMM_ROWS;
                    if (g < ntile) {
                        for (int h = 0; h < rows; h += 32) amx_half(t, xt, w, (size_t)C, C, h,
                                                                    rows > h + 16);
                        gemm_store(out, t, bp, pp, r0 + t0, rows, OC, o, 16, beta_one);
                        gemm_store(out, t + 16 * GEMM_ROWS, bp + 16, pp + 16, r0 + t0, rows, OC,
                                   o + 16, 16, beta_one);
                        continue;
                    }
                    int mr = (int)((rows + 15) / 16);
                    gemm_kernels[mr - 1][nr - 1](t, xt, w, (size_t)C, C);
                    gemm_store(out, t, bp, pp, r0 + t0, rows, OC, o, nr, beta_one);
                }
            }   // the loop's barrier: every group done before the next block is packed
        }
        if (ntile) amx_end();
        free(wide);
    }
    free(xp);
}
#endif

int lowp_gemm_rounds(const LowpMatrix *m) {
    return m->path == LOWP_PATH_AVX512 && lowp_path_supported(LOWP_PATH_AVX512, LOWP_BF16);
}

int lowp_gemm_tiles(const LowpMatrix *m) {
    return lowp_gemm_rounds(m) && !m->no_tiles && m->C % AMX_K == 0 && lowp_tiles_supported();
}

int lowp_matrix_set_tiles(LowpMatrix *m, int on, char *err, size_t errlen) {
    if (on && !lowp_tiles_supported())
        return util_err(err, errlen, "this process cannot run AMX tiles (no AMX-BF16, the OS "
                        "refused its state, or RLHF_LOWP=noamx)");
    m->no_tiles = !on;
    return 0;
}

int lowp_rowdot_rows(const LowpMatrix *m) {
    // where sgemm gives a row other bits in other company (blas.h), the row-dot kernels take
    // every row count: a sequence's numbers must not depend on the rows beside it
    if (!lowp_gemm_rounds(m)) return blas_rows_fixed() ? LOWP_SGEMM_ROWS : INT_MAX;
    if (m->fmt == LOWP_BF16 && lowp_gemm_tiles(m)) return LOWP_BF16_TILE_ROWS;
    return m->fmt == LOWP_BF16 ? LOWP_BF16_ROWDOT_ROWS : LOWP_INT8_ROWDOT_ROWS;
}

void lowp_forward_many(float *out, const float *inp, const LowpMatrix *m, const float *bias,
                       int64_t N, int beta_one) {
#ifdef LOWP_GEMM_X86
    if (lowp_gemm_rounds(m)) {
        lowp_forward_bf16dp(out, inp, m, bias, N, beta_one);
        return;
    }
#endif
    lowp_forward_sgemm(out, inp, m, bias, N, beta_one);
}

// ---- the transposed product (backward through a frozen narrow matrix) ----

void lowp_backward_input(float *dinp, const float *dout, const LowpMatrix *m, int64_t N,
                         int beta_one) {
    int C = m->C, OC = m->OC;
    int tile_n = LOWP_TILE_BYTES / (4 * C) / 16 * 16;
    tile_n = tile_n < LOWP_TILE_MIN ? LOWP_TILE_MIN : tile_n;
    tile_n = tile_n > OC ? OC : tile_n;
    float *tile = MALLOC_CHECK((size_t)tile_n * C * sizeof(float));
    // dinp (N, C) [+]= dout (N, OC) @ W (OC, C): tile by tile of W's rows, in a fixed order
    for (int o0 = 0; o0 < OC; o0 += tile_n) {
        int n = OC - o0 < tile_n ? OC - o0 : tile_n;
        lowp_dequant_rows(tile, m, o0, n);
        float beta = o0 > 0 || beta_one ? 1.0f : 0.0f;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, C, n, 1.0f, dout + o0, OC,
                    tile, C, beta, dinp, C);
    }
    free(tile);
}

void lowp_print_system(FILE *out) {
    LowpMatrix b = {.fmt = LOWP_BF16, .path = lowp_default_path(LOWP_BF16), .C = AMX_K};
    LowpMatrix q = {.fmt = LOWP_INT8, .path = lowp_default_path(LOWP_INT8), .C = AMX_K};
    const char *env = getenv("RLHF_LOWP");
    char set[96] = "";
    if (env && *env) snprintf(set, sizeof set, " (RLHF_LOWP=%.60s)", env);
    fprintf(out, "lowp kernels         bf16 %s, int8 %s; above %d / %d rows: %s%s\n",
            lowp_path_name(b.path), lowp_path_name(q.path), lowp_rowdot_rows(&b),
            lowp_rowdot_rows(&q),
            lowp_gemm_tiles(&b) ? "AMX tiles" : lowp_gemm_rounds(&b) ? "vdpbf16ps" : "sgemm",
            set);
}
