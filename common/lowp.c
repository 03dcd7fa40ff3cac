// Reduced-precision weight copies and their products (see lowp.h). The vector kernels carry
// target attributes, so the file builds with any -march and each path runs only where the CPU
// has its instructions (checked at run time with __builtin_cpu_supports).
#include "lowp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "util.h"

#if defined(__x86_64__) || defined(__i386__)
#define LOWP_X86 1
#include <immintrin.h>
#endif

// rows taken against each weight row at once (the kernels keep one accumulator per row)
#define LOWP_RG 8
// activations rounded to bf16 live on the stack up to this many bytes, in a malloc'd buffer above
#define LOWP_STACK_BYTES 65536
// the loops over a kernel's rows, unrolled so that each row's accumulators stay in registers
#define LOWP_UNROLL _Pragma("GCC unroll 8")

// sum[r] = w . x[r] for r < R, w one weight row of C (bf16 bits, int8, or for the AVX512 bf16
// path with xb: bf16 activations), x fp32 rows
typedef void (*LowpRowDot)(float *sum, const void *w, const float *const *x,
                           const uint16_t *const *xb, int C, int R);

// fp32 weights read as their bits (may_alias: the vectoriser takes this, not memcpy)
typedef uint32_t __attribute__((may_alias)) LowpBits;

// fp32 bits -> bf16 bits, round to nearest even; NaN stays a (quiet) NaN
static inline uint16_t lowp_bf16_from_bits(uint32_t u) {
    uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u : rounded);
}

// one row x against 4 consecutive weight rows (ld elements apart): sum[k] = w_k . x. Decoding's
// one row: the rows taken in memory order (one stream), a call per 4 channels
typedef void (*LowpQuadDot)(float *sum, const void *w, size_t ld, const float *x,
                            const uint16_t *xb, int C);

uint16_t lowp_bf16_from_float(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return lowp_bf16_from_bits(u);
}

void lowp_bf16_round(uint16_t *restrict dst, const float *restrict src, size_t n) {
    const LowpBits *restrict u = (const LowpBits *)src;
    #pragma omp simd
    for (size_t i = 0; i < n; i++) dst[i] = lowp_bf16_from_bits(u[i]);
}

float lowp_bf16_to_float(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// ---- scalar path: plain C, the reference the others are checked against ----

static void rowdot_bf16_scalar(float *sum, const void *wv, const float *const *x,
                               const uint16_t *const *xb, int C, int R) {
    const uint16_t *w = wv;
    LOWP_UNROLL for (int r = 0; r < R; r++) {
        float s = 0.0f;
        for (int c = 0; c < C; c++) s += lowp_bf16_to_float(w[c]) * x[r][c];
        sum[r] = s;
    }
}

static void rowdot_int8_scalar(float *sum, const void *wv, const float *const *x,
                               const uint16_t *const *xb, int C, int R) {
    const int8_t *w = wv;
    LOWP_UNROLL for (int r = 0; r < R; r++) {
        float s = 0.0f;
        for (int c = 0; c < C; c++) s += (float)w[c] * x[r][c];
        sum[r] = s;
    }
}

#ifdef LOWP_X86
// ---- portable path: AVX2 + FMA ----
#define T_AVX2 __attribute__((target("avx2,fma")))
#define T_AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma")))

T_AVX2_INLINE float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// 8 weights widened to fp32: bf16 by a 16-bit shift, int8 by sign extension and conversion
T_AVX2_INLINE __m256 widen8_bf16(const uint16_t *w) {
    __m256i i = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)w));
    return _mm256_castsi256_ps(_mm256_slli_epi32(i, 16));
}
T_AVX2_INLINE __m256 widen8_int8(const int8_t *w) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)w)));
}

// R rows (a constant after inlining); up to 4 rows keep two accumulators each (16 weights a step)
// so one row is not held up by the FMA's latency
#define LOWP_AVX2_BODY(WIDEN, W, SCALAR_W)                                                         \
    do {                                                                                           \
        __m256 a0[LOWP_RG], a1[LOWP_RG];                                                           \
        LOWP_UNROLL for (int r = 0; r < R; r++) a0[r] = a1[r] = _mm256_setzero_ps();               \
        int c = 0;                                                                                 \
        if (R <= 4) {                                                                              \
            for (; c + 16 <= C; c += 16) {                                                         \
                __m256 w0 = WIDEN(W + c), w1 = WIDEN(W + c + 8);                                   \
                LOWP_UNROLL for (int r = 0; r < R; r++) {                                          \
                    a0[r] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[r] + c), a0[r]);                 \
                    a1[r] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x[r] + c + 8), a1[r]);             \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        for (; c + 8 <= C; c += 8) {                                                               \
            __m256 w0 = WIDEN(W + c);                                                              \
            LOWP_UNROLL for (int r = 0; r < R; r++)                                                \
                a0[r] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[r] + c), a0[r]);                     \
        }                                                                                          \
        LOWP_UNROLL for (int r = 0; r < R; r++) sum[r] = hsum256(_mm256_add_ps(a0[r], a1[r]));     \
        for (; c < C; c++) {                                                                       \
            float wf = SCALAR_W;                                                                   \
            LOWP_UNROLL for (int r = 0; r < R; r++) sum[r] += wf * x[r][c];                        \
        }                                                                                          \
    } while (0)

T_AVX2_INLINE void rowdot_bf16_avx2_r(float *sum, const uint16_t *w, const float *const *x, int C,
                                      int R) {
    LOWP_AVX2_BODY(widen8_bf16, w, lowp_bf16_to_float(w[c]));
}
T_AVX2_INLINE void rowdot_int8_avx2_r(float *sum, const int8_t *w, const float *const *x, int C,
                                      int R) {
    LOWP_AVX2_BODY(widen8_int8, w, (float)w[c]);
}

// one instance per row count, so each loop over r unrolls into registers
#define LOWP_BY_R(FN, ...)                                                                         \
    switch (R) {                                                                                   \
    case 1: FN(__VA_ARGS__, 1); break;                                                             \
    case 2: FN(__VA_ARGS__, 2); break;                                                             \
    case 3: FN(__VA_ARGS__, 3); break;                                                             \
    case 4: FN(__VA_ARGS__, 4); break;                                                             \
    case 5: FN(__VA_ARGS__, 5); break;                                                             \
    case 6: FN(__VA_ARGS__, 6); break;                                                             \
    case 7: FN(__VA_ARGS__, 7); break;                                                             \
    default: FN(__VA_ARGS__, 8); break;                                                            \
    }

T_AVX2 static void rowdot_bf16_avx2(float *sum, const void *w, const float *const *x,
                                    const uint16_t *const *xb, int C, int R) {
    LOWP_BY_R(rowdot_bf16_avx2_r, sum, (const uint16_t *)w, x, C);
}
T_AVX2 static void rowdot_int8_avx2(float *sum, const void *w, const float *const *x,
                                    const uint16_t *const *xb, int C, int R) {
    LOWP_BY_R(rowdot_int8_avx2_r, sum, (const int8_t *)w, x, C);
}

// The bf16 4-row kernels take the 4 rows one after another, so each thread reads its channels'
// bytes as one ascending stream, and prefetch LOWP_AHEAD bytes ahead of where they read: the
// hardware prefetchers alone follow a stream poorly here (4 interleaved rows of C = 576 from
// memory: bf16 at half fp32's GB/s). The stream is prefetched into L2, not L1 (_MM_HINT_T1): the
// kernel's loads then find the lines in L2 while L1's few miss buffers stay free for them:
// GPT-2 124M's 49 one-row products went from 0.79-0.87 to 0.82-0.93 of a plain read's speed on
// the AMD EPYC VM, higher in every run (1024 or 2048 bytes ahead alike there; the portable
// kernels at 2048 bytes fell to 0.5-0.7, at 1024 rose to 0.82-0.88 from 0.61-0.76). int8, which
// computes more per byte, keeps its L1 prefetches of the next 4 rows (into L2 it fell from 0.57
// to 0.41). Prefetches past the end of a matrix are harmless.
#define LOWP_PREFETCH(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)
#define LOWP_PREFETCH_L2(p) _mm_prefetch((const char *)(p), _MM_HINT_T1)
#define LOWP_AHEAD 1024

// one row w . x: 32 weights (a 64-byte line) a step in 4 accumulators
T_AVX2_INLINE float row_bf16_avx2(const uint16_t *w, const float *x, int C) {
    __m256 a[4];
    LOWP_UNROLL for (int j = 0; j < 4; j++) a[j] = _mm256_setzero_ps();
    int c = 0;
    for (; c + 32 <= C; c += 32) {
        LOWP_PREFETCH_L2((const char *)(w + c) + LOWP_AHEAD);
        LOWP_UNROLL for (int j = 0; j < 4; j++)
            a[j] = _mm256_fmadd_ps(widen8_bf16(w + c + 8 * j), _mm256_loadu_ps(x + c + 8 * j),
                                   a[j]);
    }
    for (; c + 8 <= C; c += 8)
        a[0] = _mm256_fmadd_ps(widen8_bf16(w + c), _mm256_loadu_ps(x + c), a[0]);
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3])));
    for (; c < C; c++) s += lowp_bf16_to_float(w[c]) * x[c];
    return s;
}

T_AVX2 static void quad_bf16_avx2(float *sum, const void *w, size_t ld, const float *x,
                                  const uint16_t *xb, int C) {
    for (int k = 0; k < 4; k++) sum[k] = row_bf16_avx2((const uint16_t *)w + k * ld, x, C);
}

// int8 (half the bytes, more arithmetic per byte): the 4 rows side by side, each 8 activations
// loaded once for the 4, prefetching the next 4 rows at the pace these are read
#define LOWP_QUAD_AVX2(NAME, TYPE, WIDEN, SCALAR_W)                                                \
    T_AVX2 static void NAME(float *sum, const void *wv, size_t ld, const float *x,                 \
                            const uint16_t *xb, int C) {                                           \
        const TYPE *w = wv;                                                                        \
        __m256 a[4];                                                                               \
        LOWP_UNROLL for (int k = 0; k < 4; k++) a[k] = _mm256_setzero_ps();                        \
        int c = 0;                                                                                 \
        for (; c + 8 <= C; c += 8) {                                                               \
            LOWP_PREFETCH(w + 4 * ld + 4 * c);                                                     \
            __m256 xv = _mm256_loadu_ps(x + c);                                                    \
            LOWP_UNROLL for (int k = 0; k < 4; k++)                                                \
                a[k] = _mm256_fmadd_ps(WIDEN(w + k * ld + c), xv, a[k]);                           \
        }                                                                                          \
        LOWP_UNROLL for (int k = 0; k < 4; k++) sum[k] = hsum256(a[k]);                            \
        for (; c < C; c++)                                                                         \
            LOWP_UNROLL for (int k = 0; k < 4; k++) sum[k] += SCALAR_W(w[k * ld + c]) * x[c];      \
    }
LOWP_QUAD_AVX2(quad_int8_avx2, int8_t, widen8_int8, (float))

// ---- AVX512 path: vdpbf16ps for bf16, AVX512F dequantisation for int8 ----
#define T_512 "avx512f,avx512bw,avx512vl,avx512bf16,fma"
#define T_512_INLINE static inline __attribute__((always_inline, target(T_512)))

// bf16: w and the activations xb (bf16) in pairs, 32 weights per instruction; up to 2 rows keep
// two accumulators each. The tail (C % 32) multiplies bf16 weights by the fp32 activations.
T_512_INLINE void rowdot_bf16_512_r(float *sum, const uint16_t *w, const float *const *x,
                                    const uint16_t *const *xb, int C, int R) {
    __m512 a0[LOWP_RG], a1[LOWP_RG];
    LOWP_UNROLL for (int r = 0; r < R; r++) a0[r] = a1[r] = _mm512_setzero_ps();
    int c = 0;
    if (R <= 2) {
        for (; c + 64 <= C; c += 64) {
            __m512bh w0 = (__m512bh)_mm512_loadu_si512(w + c);
            __m512bh w1 = (__m512bh)_mm512_loadu_si512(w + c + 32);
            LOWP_UNROLL for (int r = 0; r < R; r++) {
                a0[r] = _mm512_dpbf16_ps(a0[r], w0, (__m512bh)_mm512_loadu_si512(xb[r] + c));
                a1[r] = _mm512_dpbf16_ps(a1[r], w1, (__m512bh)_mm512_loadu_si512(xb[r] + c + 32));
            }
        }
    }
    for (; c + 32 <= C; c += 32) {
        __m512bh w0 = (__m512bh)_mm512_loadu_si512(w + c);
        LOWP_UNROLL for (int r = 0; r < R; r++)
            a0[r] = _mm512_dpbf16_ps(a0[r], w0, (__m512bh)_mm512_loadu_si512(xb[r] + c));
    }
    LOWP_UNROLL for (int r = 0; r < R; r++)
        sum[r] = _mm512_reduce_add_ps(_mm512_add_ps(a0[r], a1[r]));
    for (; c < C; c++) {
        float wf = lowp_bf16_to_float(w[c]);
        LOWP_UNROLL for (int r = 0; r < R; r++) sum[r] += wf * x[r][c];
    }
}

T_512_INLINE __m512 widen16_int8(const int8_t *w) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)w)));
}

T_512_INLINE void rowdot_int8_512_r(float *sum, const int8_t *w, const float *const *x, int C,
                                    int R) {
    __m512 a0[LOWP_RG], a1[LOWP_RG];
    LOWP_UNROLL for (int r = 0; r < R; r++) a0[r] = a1[r] = _mm512_setzero_ps();
    int c = 0;
    if (R <= 4) {
        for (; c + 32 <= C; c += 32) {
            __m512 w0 = widen16_int8(w + c), w1 = widen16_int8(w + c + 16);
            LOWP_UNROLL for (int r = 0; r < R; r++) {
                a0[r] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x[r] + c), a0[r]);
                a1[r] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x[r] + c + 16), a1[r]);
            }
        }
    }
    for (; c + 16 <= C; c += 16) {
        __m512 w0 = widen16_int8(w + c);
        LOWP_UNROLL for (int r = 0; r < R; r++)
            a0[r] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x[r] + c), a0[r]);
    }
    LOWP_UNROLL for (int r = 0; r < R; r++)
        sum[r] = _mm512_reduce_add_ps(_mm512_add_ps(a0[r], a1[r]));
    for (; c < C; c++) {
        float wf = (float)w[c];
        LOWP_UNROLL for (int r = 0; r < R; r++) sum[r] += wf * x[r][c];
    }
}

__attribute__((target(T_512))) static void rowdot_bf16_512(float *sum, const void *w,
                                                           const float *const *x,
                                                           const uint16_t *const *xb, int C,
                                                           int R) {
    LOWP_BY_R(rowdot_bf16_512_r, sum, (const uint16_t *)w, x, xb, C);
}
__attribute__((target(T_512))) static void rowdot_int8_512(float *sum, const void *w,
                                                           const float *const *x,
                                                           const uint16_t *const *xb, int C,
                                                           int R) {
    LOWP_BY_R(rowdot_int8_512_r, sum, (const int8_t *)w, x, C);
}

// one row w . x, bf16 with the activations xb in bf16, 64 a step in two accumulators (the tail,
// C % 32, with the fp32 activations)
T_512_INLINE float row_bf16_512(const uint16_t *w, const float *x, const uint16_t *xb, int C) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int c = 0;
    for (; c + 64 <= C; c += 64) {
        LOWP_PREFETCH_L2((const char *)(w + c) + LOWP_AHEAD);
        LOWP_PREFETCH_L2((const char *)(w + c) + LOWP_AHEAD + 64);
        a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_loadu_si512(w + c),
                              (__m512bh)_mm512_loadu_si512(xb + c));
        a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_loadu_si512(w + c + 32),
                              (__m512bh)_mm512_loadu_si512(xb + c + 32));
    }
    if (c + 32 <= C) {
        LOWP_PREFETCH_L2((const char *)(w + c) + LOWP_AHEAD);
        a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_loadu_si512(w + c),
                              (__m512bh)_mm512_loadu_si512(xb + c));
        c += 32;
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    for (; c < C; c++) s += lowp_bf16_to_float(w[c]) * x[c];
    return s;
}

__attribute__((target(T_512))) static void quad_bf16_512(float *sum, const void *w, size_t ld,
                                                         const float *x, const uint16_t *xb,
                                                         int C) {
    for (int k = 0; k < 4; k++) sum[k] = row_bf16_512((const uint16_t *)w + k * ld, x, xb, C);
}
// int8 as on the portable path: 4 rows side by side, the next 4 prefetched
__attribute__((target(T_512))) static void quad_int8_512(float *sum, const void *wv, size_t ld,
                                                         const float *x, const uint16_t *xb,
                                                         int C) {
    const int8_t *w = wv;
    __m512 a[4];
    LOWP_UNROLL for (int k = 0; k < 4; k++) a[k] = _mm512_setzero_ps();
    int c = 0;
    for (; c + 16 <= C; c += 16) {
        LOWP_PREFETCH(w + 4 * ld + 4 * (size_t)c);
        __m512 xv = _mm512_loadu_ps(x + c);
        LOWP_UNROLL for (int k = 0; k < 4; k++)
            a[k] = _mm512_fmadd_ps(widen16_int8(w + k * ld + c), xv, a[k]);
    }
    LOWP_UNROLL for (int k = 0; k < 4; k++) sum[k] = _mm512_reduce_add_ps(a[k]);
    for (; c < C; c++)
        LOWP_UNROLL for (int k = 0; k < 4; k++) sum[k] += (float)w[k * ld + c] * x[c];
}
#endif

// ---- dispatch ----

int lowp_path_supported(LowpPath path, LowpFormat fmt) {
    if (path == LOWP_PATH_SCALAR) return 1;
#ifdef LOWP_X86
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (path == LOWP_PATH_PORTABLE) return avx2;
    if (path == LOWP_PATH_AVX512)
        return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") &&
               (fmt != LOWP_BF16 || __builtin_cpu_supports("avx512bf16"));
#endif
    return 0;
}

LowpPath lowp_default_path(LowpFormat fmt) {
    const char *env = getenv("RLHF_LOWP");
    if (env && strcmp(env, "scalar") == 0) return LOWP_PATH_SCALAR;
    int portable = env && strcmp(env, "portable") == 0;
    if (!portable && lowp_path_supported(LOWP_PATH_AVX512, fmt)) return LOWP_PATH_AVX512;
    if (lowp_path_supported(LOWP_PATH_PORTABLE, fmt)) return LOWP_PATH_PORTABLE;
    return LOWP_PATH_SCALAR;
}

int lowp_check_env(char *err, size_t errlen) {
    const char *env = getenv("RLHF_LOWP");
    if (!env || !*env || strcmp(env, "portable") == 0 || strcmp(env, "scalar") == 0 ||
        strcmp(env, "noamx") == 0)
        return 0;
    return util_err(err, errlen,
                    "RLHF_LOWP='%s' is not a kernel choice (portable, scalar or noamx)", env);
}

static LowpRowDot lowp_rowdot(const LowpMatrix *m) {
    int b = m->fmt == LOWP_BF16;
#ifdef LOWP_X86
    if (m->path == LOWP_PATH_AVX512) return b ? rowdot_bf16_512 : rowdot_int8_512;
    if (m->path == LOWP_PATH_PORTABLE) return b ? rowdot_bf16_avx2 : rowdot_int8_avx2;
#endif
    return b ? rowdot_bf16_scalar : rowdot_int8_scalar;
}

// the 4-channel kernel for one row; NULL on the scalar path (it takes channels one at a time)
static LowpQuadDot lowp_quaddot(const LowpMatrix *m) {
#ifdef LOWP_X86
    int b = m->fmt == LOWP_BF16;
    if (m->path == LOWP_PATH_AVX512) return b ? quad_bf16_512 : quad_int8_512;
    if (m->path == LOWP_PATH_PORTABLE) return b ? quad_bf16_avx2 : quad_int8_avx2;
#endif
    return NULL;
}

const char *lowp_format_name(LowpFormat fmt) {
    return fmt == LOWP_BF16 ? "bf16" : fmt == LOWP_INT8 ? "int8" : "fp32";
}

const char *lowp_path_name(LowpPath path) {
    return path == LOWP_PATH_AVX512 ? "avx512" : path == LOWP_PATH_PORTABLE ? "portable (avx2)"
                                                                            : "scalar";
}

int lowp_parse_format(const char *s, LowpFormat *fmt, char *err, size_t errlen) {
    static const LowpFormat all[] = {LOWP_FP32, LOWP_BF16, LOWP_INT8};
    for (int i = 0; i < 3; i++)
        if (strcmp(s, lowp_format_name(all[i])) == 0) {
            *fmt = all[i];
            return 0;
        }
    return util_err(err, errlen, "unknown precision '%s' (expected fp32, bf16 or int8)", s);
}

int lowp_cli_precision(const char *value, void *ctx, char *err, size_t errlen) {
    char e[256];
    if (lowp_parse_format(value, ctx, e, sizeof e))
        return util_err(err, errlen, "--precision: %s", e);
    return 0;
}

// ---- conversion ----

// the first non-finite weight, as an error naming it; 0 when all are finite. With bf16, a finite
// weight that rounds to infinity counts too: |w| >= 0x7f7f8000 as bits (round to nearest even).
static int lowp_check_finite(const float *w, LowpLayout layout, LowpFormat fmt, int C, int OC,
                             char *err, size_t errlen) {
    size_t n = (size_t)C * OC;
    uint32_t limit = fmt == LOWP_BF16 ? 0x7f7f8000u : 0x7f800000u;
    const LowpBits *u = (const LowpBits *)w;
    int64_t nbad = 0;
    #pragma omp parallel for simd reduction(+:nbad) schedule(static)
    for (size_t i = 0; i < n; i++) nbad += (u[i] & 0x7fffffffu) >= limit;
    if (nbad == 0) return 0;
    size_t bad = 0;
    while ((u[bad] & 0x7fffffffu) < limit) bad++;
    size_t r = bad / (layout == LOWP_OUT_IN ? C : OC), c = bad % (layout == LOWP_OUT_IN ? C : OC);
    float v = w[bad];
    return util_err(err, errlen, "weight [%zu, %zu] is %s: cannot convert to %s", r, c,
                    isnan(v) ? "NaN" : isinf(v) ? (v > 0 ? "+Inf" : "-Inf")
                                                : "too large (rounds to infinity)",
                    lowp_format_name(fmt));
}

// w * inv rounded to nearest (ties to even) and kept in [-127, 127]
static inline int8_t lowp_quant(float w, float inv) {
    float q = rintf(w * inv);
    return (int8_t)(q > 127.0f ? 127.0f : q < -127.0f ? -127.0f : q);
}

// channels converted together: GPT-2's [in, out] weights are then read 256 bytes at a time, and
// the matrix's rows written as 64 sequential streams
#define LOWP_CONV_BLOCK 64

// GPT-2's [in, out] weights, channels o0 .. o0+nb: tiles of LOWP_CONV_BLOCK inputs by nb channels
// copied in reading order into an L1 buffer, then converted and written out transposed, each
// channel's row a contiguous run (inv: int8's 1/scale per channel; NULL for bf16)
static void lowp_convert_tiles(LowpMatrix *m, const float *w, int o0, int nb, const float *inv) {
    int C = m->C, OC = m->OC;
    float tmp[LOWP_CONV_BLOCK][LOWP_CONV_BLOCK];   // [input][channel], 16 KiB
    for (int c0 = 0; c0 < C; c0 += LOWP_CONV_BLOCK) {
        int nc = C - c0 < LOWP_CONV_BLOCK ? C - c0 : LOWP_CONV_BLOCK;
        for (int cc = 0; cc < nc; cc++)
            memcpy(tmp[cc], w + (size_t)(c0 + cc) * OC + o0, (size_t)nb * sizeof(float));
        for (int j = 0; j < nb; j++) {
            if (!inv) {
                uint16_t *d = m->bf16 + (size_t)(o0 + j) * C + c0;
                for (int cc = 0; cc < nc; cc++) d[cc] = lowp_bf16_from_float(tmp[cc][j]);
            } else {
                int8_t *d = m->q + (size_t)(o0 + j) * C + c0;
                for (int cc = 0; cc < nc; cc++) d[cc] = lowp_quant(tmp[cc][j], inv[j]);
            }
        }
    }
}

static void lowp_convert(LowpMatrix *m, const float *w, LowpLayout layout) {
    int C = m->C, OC = m->OC, nblk = (OC + LOWP_CONV_BLOCK - 1) / LOWP_CONV_BLOCK;
    #pragma omp parallel for schedule(static)
    for (int blk = 0; blk < nblk; blk++) {
        int o0 = blk * LOWP_CONV_BLOCK, nb = OC - o0 < LOWP_CONV_BLOCK ? OC - o0 : LOWP_CONV_BLOCK;
        const LowpBits *restrict u = (const LowpBits *)w;
        if (m->fmt == LOWP_BF16 && layout == LOWP_OUT_IN) {
            uint16_t *restrict d = m->bf16;
            size_t i1 = (size_t)(o0 + nb) * C;
            #pragma omp simd
            for (size_t i = (size_t)o0 * C; i < i1; i++) d[i] = lowp_bf16_from_bits(u[i]);
            continue;
        }
        if (m->fmt == LOWP_BF16) {
            lowp_convert_tiles(m, w, o0, nb, NULL);
            continue;
        }
        float mx[LOWP_CONV_BLOCK] = {0}, inv[LOWP_CONV_BLOCK];
        if (layout == LOWP_OUT_IN) {
            for (int j = 0; j < nb; j++) {
                const float *row = w + (size_t)(o0 + j) * C;
                float v = 0.0f;
                #pragma omp simd reduction(max:v)
                for (int c = 0; c < C; c++) v = fabsf(row[c]) > v ? fabsf(row[c]) : v;
                mx[j] = v;
            }
        } else {
            for (int c = 0; c < C; c++)
                for (int j = 0; j < nb; j++) {
                    float a = fabsf(w[(size_t)c * OC + o0 + j]);
                    mx[j] = a > mx[j] ? a : mx[j];
                }
        }
        for (int j = 0; j < nb; j++) {
            m->scale[o0 + j] = mx[j] / 127.0f;
            inv[j] = mx[j] > 0.0f ? 127.0f / mx[j] : 0.0f;
        }
        if (layout == LOWP_OUT_IN) {
            for (int j = 0; j < nb; j++) {
                const float *row = w + (size_t)(o0 + j) * C;
                int8_t *d = m->q + (size_t)(o0 + j) * C;
                float s = inv[j];
                #pragma omp simd
                for (int c = 0; c < C; c++) d[c] = lowp_quant(row[c], s);
            }
        } else {
            lowp_convert_tiles(m, w, o0, nb, inv);
        }
    }
}

// the bytes a piece of storage takes: whole 64-byte lines, so each piece starts on one
static size_t lowp_lines(size_t bytes) { return (bytes + 63) & ~(size_t)63; }

size_t lowp_matrix_storage(LowpFormat fmt, int C, int OC) {
    size_t n = (size_t)C * (size_t)OC;
    return fmt == LOWP_BF16 ? lowp_lines(2 * n) : lowp_lines(n) + lowp_lines(4 * (size_t)OC);
}

void lowp_arena_init(LowpArena *a, size_t bytes) {
    memset(a, 0, sizeof *a);
    a->bytes = bytes;
    a->base = PAGES_CHECK(bytes);   // 2 MiB-aligned and advised for huge pages from 2 MiB on
}

void lowp_arena_free(LowpArena *a) {
    util_pages_free(a->base, a->bytes);
    memset(a, 0, sizeof *a);
}

// checks and fills in everything but the storage; 0 or -1 with an error
static int lowp_matrix_begin(LowpMatrix *m, LowpFormat fmt, const float *w, LowpLayout layout,
                             int C, int OC, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    if (fmt != LOWP_BF16 && fmt != LOWP_INT8)
        return util_err(err, errlen, "a reduced-precision matrix is bf16 or int8, not %s",
                        lowp_format_name(fmt));
    if (C < 1 || OC < 1)
        return util_err(err, errlen, "bad matrix shape: %d inputs, %d outputs", C, OC);
    if (lowp_check_finite(w, layout, fmt, C, OC, err, errlen)) return -1;
    m->fmt = fmt;
    m->C = C;
    m->OC = OC;
    m->path = lowp_default_path(fmt);
    return 0;
}

int lowp_matrix_init(LowpMatrix *m, LowpFormat fmt, const float *w, LowpLayout layout, int C,
                     int OC, char *err, size_t errlen) {
    if (lowp_matrix_begin(m, fmt, w, layout, C, OC, err, errlen)) return -1;
    if (fmt == LOWP_BF16) {
        m->bf16 = MALLOC_CHECK((size_t)C * OC * sizeof *m->bf16);
    } else {
        m->q = MALLOC_CHECK((size_t)C * OC);
        m->scale = MALLOC_CHECK((size_t)OC * sizeof *m->scale);
    }
    lowp_convert(m, w, layout);
    return 0;
}

int lowp_matrix_init_in(LowpMatrix *m, LowpArena *a, LowpFormat fmt, const float *w,
                        LowpLayout layout, int C, int OC, char *err, size_t errlen) {
    if (lowp_matrix_begin(m, fmt, w, layout, C, OC, err, errlen)) return -1;
    size_t need = lowp_matrix_storage(fmt, C, OC);
    if (need > a->bytes - a->used) {
        memset(m, 0, sizeof *m);
        return util_err(err, errlen, "the copies' block has %zu bytes left, the matrix needs %zu",
                        a->bytes - a->used, need);
    }
    char *p = a->base + a->used;
    a->used += need;
    m->in_arena = 1;
    if (fmt == LOWP_BF16) {
        m->bf16 = (uint16_t *)p;
    } else {
        m->q = (int8_t *)p;
        m->scale = (float *)(p + lowp_lines((size_t)C * OC));
    }
    lowp_convert(m, w, layout);
    return 0;
}

int lowp_matrix_refresh(LowpMatrix *m, const float *w, LowpLayout layout, char *err,
                        size_t errlen) {
    if (lowp_check_finite(w, layout, m->fmt, m->C, m->OC, err, errlen)) return -1;
    lowp_convert(m, w, layout);
    return 0;
}

int lowp_matrix_set_path(LowpMatrix *m, LowpPath path, char *err, size_t errlen) {
    if (!lowp_path_supported(path, m->fmt))
        return util_err(err, errlen, "this CPU cannot run the %s kernels for %s",
                        lowp_path_name(path), lowp_format_name(m->fmt));
    m->path = path;
    return 0;
}

void lowp_matrix_free(LowpMatrix *m) {
    if (!m->in_arena) {
        free(m->bf16);
        free(m->q);
        free(m->scale);
    }
    memset(m, 0, sizeof *m);
}

int64_t lowp_matrix_bytes(const LowpMatrix *m) {
    int64_t n = (int64_t)m->C * m->OC;
    return m->fmt == LOWP_BF16 ? 2 * n : n + 4 * (int64_t)m->OC;
}

void lowp_matrix_row(float *dst, const LowpMatrix *m, int r) {
    size_t base = (size_t)r * m->C;
    if (m->fmt == LOWP_BF16) {
        LowpBits *restrict d = (LowpBits *)dst;   // the bits shifted into place: vectorises
        const uint16_t *restrict h = m->bf16 + base;
        for (int c = 0; c < m->C; c++) d[c] = (uint32_t)h[c] << 16;
    } else {
        for (int c = 0; c < m->C; c++) dst[c] = (float)m->q[base + c] * m->scale[r];
    }
}

// ---- products ----

void lowp_forward(float *out, const float *inp, const LowpMatrix *m, const float *bias, int64_t N,
                  int beta_one) {
    if (N > lowp_rowdot_rows(m)) {
        lowp_forward_many(out, inp, m, bias, N, beta_one);
        return;
    }
    int C = m->C, OC = m->OC;
    LowpRowDot dot = lowp_rowdot(m);
    const void *wbase = m->fmt == LOWP_BF16 ? (const void *)m->bf16 : (const void *)m->q;
    size_t wrow = m->fmt == LOWP_BF16 ? 2 * (size_t)C : (size_t)C;
    // the AVX512 bf16 kernel multiplies bf16 pairs: the activations rounded once here
    uint16_t stack_xb[LOWP_STACK_BYTES / 2], *xb = NULL, *heap_xb = NULL;
    if (m->fmt == LOWP_BF16 && m->path == LOWP_PATH_AVX512) {
        size_t n = (size_t)N * C;
        xb = n <= LOWP_STACK_BYTES / 2 ? stack_xb : (heap_xb = MALLOC_CHECK(n * sizeof *xb));
        lowp_bf16_round(xb, inp, n);
    }
    LowpQuadDot quad = N == 1 ? lowp_quaddot(m) : NULL;
    int nquad = quad ? OC / 4 : 0;
    if (quad) {
        #pragma omp parallel for schedule(static)
        for (int qd = 0; qd < nquad; qd++) {
            float sum[4];
            quad(sum, (const char *)wbase + 4 * (size_t)qd * wrow, (size_t)C, inp, xb, C);
            for (int k = 0; k < 4; k++) {
                int o = 4 * qd + k;
                float post = m->fmt == LOWP_INT8 ? m->scale[o] : 1.0f;
                out[o] = (beta_one ? out[o] : 0.0f) + (bias ? bias[o] : 0.0f) + sum[k] * post;
            }
        }
    }
    // every channel (more rows, or the scalar path), or the up to 3 channels after the last 4
    // on the calling thread (a parallel section costs a wake-up of the threads: GPT-2's LM head
    // of 50,257 channels leaves one)
    #pragma omp parallel for schedule(static) if (!quad)
    for (int o = 4 * nquad; o < OC; o++) {
        const void *w = (const char *)wbase + o * wrow;
        float post = m->fmt == LOWP_INT8 ? m->scale[o] : 1.0f, b = bias ? bias[o] : 0.0f;
        for (int64_t r0 = 0; r0 < N; r0 += LOWP_RG) {
            int R = N - r0 < LOWP_RG ? (int)(N - r0) : LOWP_RG;
            const float *x[LOWP_RG];
            const uint16_t *xr[LOWP_RG] = {0};
            LOWP_UNROLL for (int r = 0; r < R; r++) {
                x[r] = inp + (r0 + r) * C;
                if (xb) xr[r] = xb + (r0 + r) * C;
            }
            float sum[LOWP_RG];
            dot(sum, w, x, xr, C, R);
            LOWP_UNROLL for (int r = 0; r < R; r++) {
                float *dst = out + (r0 + r) * OC + o;
                *dst = (beta_one ? *dst : 0.0f) + b + sum[r] * post;
            }
        }
    }
    free(heap_xb);
}
