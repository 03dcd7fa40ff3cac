// Reduced-precision weight copies for the models that never train (sampling copies, frozen
// reference and reward models) and the kernels that multiply by them, reading the narrow weights
// and accumulating in fp32.
//
// A LowpMatrix holds one weight matrix in bf16 or int8, ALWAYS stored in the nn.Linear layout
// [out, in] (OC rows of C): each output channel is one contiguous row, so the products stream
// every weight byte once. A GPT-2 Conv1D weight ([in, out]) is transposed on conversion.
// - bf16: each weight rounded to nearest, ties to even, from fp32 (relative error <= 2^-8).
// - int8: symmetric, one fp32 scale per output channel (a row of [out, in], a column of GPT-2's
//   [in, out]): scale = max|w| / 127, q = round(w / scale) in [-127, 127]; the channel's largest
//   weight maps to +-127 and every weight is off by at most scale / 2. A channel of zeros has
//   scale 0.
// Non-finite weights (NaN, +-Inf), and finite ones that bf16 would round to infinity, are refused
// with an error naming the element: a frozen model with them is broken, not slow.
//
// Kernels, chosen at run time per matrix (lowp_matrix_init picks the best path this CPU runs;
// RLHF_LOWP=portable in the environment, or lowp_matrix_set_path, forces the portable one;
// RLHF_LOWP=noamx keeps the AVX512 path off AMX tiles):
// - LOWP_PATH_AVX512: bf16 through AVX512-BF16's vdpbf16ps (the activations are rounded to bf16
//   as well, relative 2^-8 each, as bf16 matmuls do), int8 dequantised on the fly with AVX512F.
//   Needs avx512f, avx512bw, avx512vl and, for bf16, avx512_bf16.
// - LOWP_PATH_PORTABLE: AVX2 + FMA, every x86-64 since 2013: bf16 widened to fp32 by a 16-bit
//   shift, int8 widened and converted, both multiplied with fp32 activations (no rounding of them).
// - LOWP_PATH_SCALAR: plain C, where neither exists (and on other architectures).
// Up to LOWP_SGEMM_ROWS rows int8 is dequantised on the fly (fp32 activations, the scale applied
// once per channel), which keeps int8's only error the weight's rounding; more rows on the AVX512
// path round the activations to bf16 as well (see lowp_forward_many).
// Each output element is computed by one thread in a fixed order, so results do not depend on the
// number of threads. Kernels parallelise over output channels with OpenMP and must not be called
// from inside another parallel region.
#ifndef LOWP_H
#define LOWP_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { LOWP_FP32 = 0, LOWP_BF16 = 1, LOWP_INT8 = 2 } LowpFormat;
// the layout of the fp32 weight given to lowp_matrix_init
typedef enum { LOWP_OUT_IN = 0, LOWP_IN_OUT = 1 } LowpLayout;
typedef enum { LOWP_PATH_SCALAR = 0, LOWP_PATH_PORTABLE = 1, LOWP_PATH_AVX512 = 2 } LowpPath;

typedef struct {
    LowpFormat fmt;      // LOWP_BF16 or LOWP_INT8
    LowpPath path;       // the kernels this matrix's products use
    int C, OC;           // in, out: stored as OC rows of C
    uint16_t *bf16;      // (OC, C) bf16 bits, when fmt is LOWP_BF16; owned
    int8_t *q;           // (OC, C), when fmt is LOWP_INT8; owned
    float *scale;        // (OC), when fmt is LOWP_INT8; owned
    int in_arena;        // bf16 / q / scale lie in a LowpArena, which owns them
    int no_tiles;        // 1: lowp_forward_many does not take AMX tiles (lowp_matrix_set_tiles)
} LowpMatrix;

// One block for the copies of several matrices (a model's): mapped 2 MiB-aligned and advised for
// transparent huge pages where the kernel has them (Linux, THP "madvise" or "always"), so a
// product's stream crosses few TLB entries (each miss a two-level walk in a virtual machine) and
// the hardware prefetchers are not stopped at every 4 KiB page boundary. Only what is written is
// resident: a partial last 2 MiB stays in small pages.
typedef struct {
    char *base;          // owned; NULL when empty
    size_t bytes, used;  // reserved (a mapping of util_pages_alloc), handed out
} LowpArena;

// "fp32" | "bf16" | "int8" -> *fmt; -1 with an error naming s otherwise.
int lowp_parse_format(const char *s, LowpFormat *fmt, char *err, size_t errlen);
const char *lowp_format_name(LowpFormat fmt);
// The programs' --precision option (a cli.h CLI_CUSTOM parser): ctx a LowpFormat *; the error
// names the option.
int lowp_cli_precision(const char *value, void *ctx, char *err, size_t errlen);
const char *lowp_path_name(LowpPath path);
// The fastest path this CPU runs for fmt, or LOWP_PATH_PORTABLE (SCALAR without AVX2) when the
// environment has RLHF_LOWP=portable. RLHF_LOWP=scalar forces plain C. Any other value of
// RLHF_LOWP is ignored here: programs call lowp_check_env first.
LowpPath lowp_default_path(LowpFormat fmt);
// 0 when RLHF_LOWP is unset, empty, "portable", "scalar" or "noamx"; -1 with an error naming it
// otherwise
int lowp_check_env(char *err, size_t errlen);
// whether this CPU runs path for fmt
int lowp_path_supported(LowpPath path, LowpFormat fmt);

// m from the fp32 weight w: (OC, C) when layout is LOWP_OUT_IN, (C, OC) when LOWP_IN_OUT.
// fmt bf16 or int8; the path is lowp_default_path(fmt). 0, or -1 with an error (m is then empty
// and lowp_matrix_free on it is harmless).
int lowp_matrix_init(LowpMatrix *m, LowpFormat fmt, const float *w, LowpLayout layout, int C,
                     int OC, char *err, size_t errlen);
// bytes a matrix of this format and shape takes in a LowpArena (64-byte aligned pieces)
size_t lowp_matrix_storage(LowpFormat fmt, int C, int OC);
// reserves bytes (the sum of lowp_matrix_storage over the matrices it will hold); the process
// ends, as with MALLOC_CHECK, when memory cannot be had
void lowp_arena_init(LowpArena *a, size_t bytes);
// releases the block: free the matrices made in it first (or after: they do not touch it)
void lowp_arena_free(LowpArena *a);
// lowp_matrix_init with the storage taken from a (the next lowp_matrix_storage bytes); -1 with an
// error when a has not that much left
int lowp_matrix_init_in(LowpMatrix *m, LowpArena *a, LowpFormat fmt, const float *w,
                        LowpLayout layout, int C, int OC, char *err, size_t errlen);
// Converts w again into m's own buffers (same format, shape and layout as at init): the sampling
// copy's refresh after an update. 0, or -1 with an error (m's contents are then unspecified
// and must be refreshed again before use).
int lowp_matrix_refresh(LowpMatrix *m, const float *w, LowpLayout layout, char *err,
                        size_t errlen);
// forces m's kernels; -1 with an error when this CPU does not run path for m's format
int lowp_matrix_set_path(LowpMatrix *m, LowpPath path, char *err, size_t errlen);
void lowp_matrix_free(LowpMatrix *m);
// bytes of weights (and scales) the matrix holds: what one product streams
int64_t lowp_matrix_bytes(const LowpMatrix *m);

// More rows than lowp_rowdot_rows(m) take the many-row product (lowp_forward_many,
// common/lowp_gemm.c): LOWP_SGEMM_ROWS where it is sgemm on widened tiles (none, INT_MAX, where
// the library's sgemm is not row-invariant: blas_rows_fixed, common/blas.h); where it runs on
// vdpbf16ps (lowp_gemm_rounds) it streams the weight once too and took less CPU than the row-dot
// kernels from 10 rows in bf16 and from 8 in int8 (GPT-2's layers, one thread: bf16 at 16 rows
// 31 against 41 ms, int8 26 against 65), so there LOWP_BF16_ROWDOT_ROWS and LOWP_INT8_ROWDOT_ROWS.
// With AMX tiles (lowp_gemm_tiles) bf16 takes them from 3 rows: a GPT-2 token pass took as long
// as one row-dot pass at 2 rows (10.2 against 9.9 ms, 2 threads) and less from 4 (10.3 against
// 14.9, at 8 rows 10.3 against 21.8); int8, which widens its weights for the tiles, gained
// nothing below 8 rows (at 2 rows 11.9 against 8.9 ms), so it keeps LOWP_INT8_ROWDOT_ROWS.
#define LOWP_SGEMM_ROWS 16
#define LOWP_BF16_ROWDOT_ROWS 9
#define LOWP_INT8_ROWDOT_ROWS 7
#define LOWP_BF16_TILE_ROWS 2
int lowp_rowdot_rows(const LowpMatrix *m);

// out (N, OC) = [out +] inp (N, C) @ W^T + bias, W the matrix (OC, C) in fp32 terms, bias (OC) or
// NULL, beta_one as linear_forward (a residual add fused into the product).
// Up to lowp_rowdot_rows(m) rows (decoding): the path's kernels, one row against 4 weight rows at a
// time, more rows in groups of up to 8 against each weight row while it is in cache, so every
// weight byte is read from memory once; the result does not depend on the number of threads. The
// AVX512 bf16 kernels round the N * C activations to bf16 into a buffer (on the stack up to
// 64 KiB, malloc'd above).
// More rows (B = 64 decoding, scoring): lowp_forward_many.
void lowp_forward(float *out, const float *inp, const LowpMatrix *m, const float *bias, int64_t N,
                  int beta_one);
// lowp_forward's product at any number of rows, the one it uses above lowp_rowdot_rows, where
// arithmetic, not reading weights, bounds it. When lowp_gemm_rounds(m): vdpbf16ps on the weights
// as stored (int8 widened to bf16 6 channels at a time, exactly, the scale applied to the sum),
// with the activations rounded to bf16 (relative 2^-8 each, as the one-row AVX512 bf16 kernel
// does; for int8 this is the only place they are rounded), fp32 sums in a fixed order, so the
// result does not depend on the number of threads; scratch: up to 512 KiB of packed activations,
// and for int8 6 x C bf16 per thread. Otherwise (the portable and scalar paths, or no AVX512-BF16)
// tiles of at least 256 output channels are dequantised to fp32 (a malloc'd scratch of about
// 2 MiB, 256 x C floats where that is more) and multiplied by sgemm, whose rounding, as
// linear_forward's, may change with the thread count.
void lowp_forward_many(float *out, const float *inp, const LowpMatrix *m, const float *bias,
                       int64_t N, int beta_one);
// whether lowp_forward_many runs m's products on vdpbf16ps (m's path is LOWP_PATH_AVX512 and the
// CPU has AVX512-BF16, for int8 matrices too)
int lowp_gemm_rounds(const LowpMatrix *m);
// whether this process runs AMX tiles: the CPU has AMX-BF16 (and AVX512-BF16), Linux granted the
// process the tile state (asked at the first call), and RLHF_LOWP is not "noamx"
int lowp_tiles_supported(void);
// whether lowp_forward_many runs m's products on AMX tiles: lowp_gemm_rounds(m), tiles supported,
// C a multiple of 32 and not turned off for m. The tiles multiply the same bf16 activations and
// weights as vdpbf16ps, 32 channels at a time (the channels past the last whole 32 on vdpbf16ps),
// in the hardware's order of the sums: other roundings than vdpbf16ps's, the same bound
// (tests/test_lowp_gemm.c), and a row's result still depends on nothing but its row.
int lowp_gemm_tiles(const LowpMatrix *m);
// on 0: m's many-row products stop taking tiles; on 1 they take them again (-1 with an error when
// this process cannot run them)
int lowp_matrix_set_tiles(LowpMatrix *m, int on, char *err, size_t errlen);
// dinp (N, C) = [dinp +] dout (N, OC) @ W, W the matrix (OC, C) in fp32 terms: the input
// gradient of lowp_forward's product through a frozen matrix (no weight gradient). Tiles of at
// least 256 rows of W are widened to fp32 (the scratch lowp_forward's many-row path uses) and
// multiplied by sgemm, one tile after the other: the result is sgemm's product with the widened
// weights, whatever the number of rows or the kernel path.
void lowp_backward_input(float *dinp, const float *dout, const LowpMatrix *m, int64_t N,
                         int beta_one);
// row r of W in fp32 (C floats): an embedding lookup from a tied bf16 / int8 token table
void lowp_matrix_row(float *dst, const LowpMatrix *m, int r);

// One line of `rlhf info --system`: the kernels new bf16 and int8 matrices take here (the path,
// and whether their many-row products run on AMX tiles), as RLHF_LOWP leaves them.
void lowp_print_system(FILE *out);

// fp32 -> bf16 bits, round to nearest even (NaN stays NaN), and back (exact)
uint16_t lowp_bf16_from_float(float f);
// dst[i] = lowp_bf16_from_float(src[i]) for i < n, vectorised (a decoding step rounds each
// product's activations and each new key and value this way)
void lowp_bf16_round(uint16_t *dst, const float *src, size_t n);
float lowp_bf16_to_float(uint16_t h);
#endif
