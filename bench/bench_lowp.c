// Decoding's weight products in fp32, bf16 and int8 (common/lowp.h), on the decoding matrices of
// GPT-2 124M and of SmolLM2-135M, at 1, 8 and 64 rows, beside the memory bandwidth measured here
// in the same process (a parallel read of the same number of weight bytes):
//   bench_lowp [--model gpt2|smollm2|both] [--rows 1,8,64] [--threads 2]
// Each figure is the best of several rounds taken in turns with the others and with a read of
// its bytes (see bench_rows). One "token pass" runs every layer's products and the LM head once
// at R rows (attention, norms and activations are left out: they read no weights). fp32 is the
// engine's own path (matmul_forward on GPT-2's [in, out] weights, linear_forward on Llama's
// [out, in], logits_forward for the head); bf16 and int8 run on the best path this CPU has and on the portable one.
// Prints a table, the ratios the targets are about, and RESULT lines for bench/run_bench.py.
#include "benchlib.h"
#include "blas.h"
#include "kernels.h"
#include "lowp.h"
#include "rng.h"
#include "util.h"
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    int layout_in_out;   // GPT-2's Conv1D weights [in, out]
    int L, C, V;
    int n;               // products per layer
    int in[4], out[4];   // their shapes
} Shape;

static const Shape shapes[] = {
    {"gpt2", 1, 12, 768, 50257, 4, {768, 768, 768, 3072}, {2304, 768, 3072, 768}},
    // q, k, v fused (9 + 3 + 3 heads of 64), o, gate|up fused, down
    {"smollm2", 0, 30, 576, 49152, 4, {576, 576, 576, 1536}, {960, 576, 3072, 576}},
};

typedef struct {
    const Shape *s;
    int nmat;            // L * n + 1 (the head last)
    float **w;           // fp32 weights, each in the model's layout (the head (V, C))
    LowpMatrix *mb, *mi; // bf16, int8 copies
    LowpArena ab, ai;    // their storage: one huge-page block per format, as a model's copies
    int64_t bytes32;
} Weights;

// one figure for bench/run_bench.py (its RESULT protocol; ref_name NULL: no reference)
static void result(const char *name, double value, const char *unit, const char *ref_name,
                   double ref) {
    if (!ref_name) {
        printf("RESULT {\"name\":\"%s\",\"value\":%.3f,\"unit\":\"%s\",\"ref_name\":null,"
               "\"ref_value\":null,\"ratio\":null}\n", name, value, unit);
        return;
    }
    printf("RESULT {\"name\":\"%s\",\"value\":%.3f,\"unit\":\"%s\",\"ref_name\":\"%s\","
           "\"ref_value\":%.3f,\"ratio\":%.3f}\n", name, value, unit, ref_name, ref, value / ref);
}

static int mat_in(const Shape *s, int k) { return k == s->L * s->n ? s->C : s->in[k % s->n]; }
static int mat_out(const Shape *s, int k) { return k == s->L * s->n ? s->V : s->out[k % s->n]; }

// XORs n bytes of x (whole 64-byte lines) in parallel: the read bandwidth the products are
// bound by, with no arithmetic latency in the way
static uint64_t read_bytes(const void *x, int64_t n) {
    const uint64_t *u = x;
    int64_t nl = n / 64;
    uint64_t acc = 0;
    #pragma omp parallel for reduction(^:acc) schedule(static)
    for (int64_t l = 0; l < nl; l++) {
        const uint64_t *p = u + 8 * l;
        acc ^= (p[0] ^ p[1] ^ p[2] ^ p[3]) ^ (p[4] ^ p[5] ^ p[6] ^ p[7]);
    }
    return acc;
}

static void weights_init(Weights *w, const Shape *s) {
    w->s = s;
    w->nmat = s->L * s->n + 1;
    w->w = calloc((size_t)w->nmat, sizeof *w->w);
    w->mb = calloc((size_t)w->nmat, sizeof *w->mb);
    w->mi = calloc((size_t)w->nmat, sizeof *w->mi);
    w->bytes32 = 0;
    Rng r;
    rng_init(&r, 42);
    for (int k = 0; k < w->nmat; k++) {
        int64_t n = (int64_t)mat_in(s, k) * mat_out(s, k);
        w->w[k] = ALIGNED_CHECK((size_t)n * sizeof(float));
        rng_fill_normal(&r, w->w[k], n, 0.0f, 0.02f);
        w->bytes32 += 4 * n;
    }
}

// converts every matrix to fmt (refresh: again, into the buffers it has); returns the seconds
static double weights_convert(Weights *w, LowpFormat fmt, int refresh) {
    char err[256];
    LowpArena *a = fmt == LOWP_BF16 ? &w->ab : &w->ai;
    double t0 = util_time_s();
    if (!refresh) {
        size_t total = 0;
        for (int k = 0; k < w->nmat; k++)
            total += lowp_matrix_storage(fmt, mat_in(w->s, k), mat_out(w->s, k));
        lowp_arena_init(a, total);
    }
    for (int k = 0; k < w->nmat; k++) {
        int head = k == w->nmat - 1;
        LowpLayout lay = w->s->layout_in_out && !head ? LOWP_IN_OUT : LOWP_OUT_IN;
        LowpMatrix *m = fmt == LOWP_BF16 ? &w->mb[k] : &w->mi[k];
        int rc = refresh ? lowp_matrix_refresh(m, w->w[k], lay, err, sizeof err)
                         : lowp_matrix_init_in(m, a, fmt, w->w[k], lay, mat_in(w->s, k),
                                               mat_out(w->s, k), err, sizeof err);
        if (rc) {
            fprintf(stderr, "bench_lowp: %s\n", err);
            exit(1);
        }
    }
    return util_time_s() - t0;
}

// one token pass at R rows in fmt (fp32: the engine's kernels)
static void pass(const Weights *w, LowpFormat fmt, const float *x, float *y, int R) {
    const Shape *s = w->s;
    for (int k = 0; k < w->nmat; k++) {
        int C = mat_in(s, k), OC = mat_out(s, k), head = k == w->nmat - 1;
        if (fmt == LOWP_BF16) lowp_forward(y, x, &w->mb[k], NULL, R, 0);
        else if (fmt == LOWP_INT8) lowp_forward(y, x, &w->mi[k], NULL, R, 0);
        else if (head) logits_forward(y, x, w->w[k], R, OC, C);
        else if (s->layout_in_out) matmul_forward(y, x, w->w[k], NULL, R, C, OC, 0);
        else linear_forward(y, x, w->w[k], NULL, R, C, OC, 0);
    }
}

// seconds of one token pass / of one read of bytes
static double one_pass(const Weights *w, LowpFormat fmt, const float *x, float *y, int R) {
    double t0 = util_time_s();
    pass(w, fmt, x, y, R);
    return util_time_s() - t0;
}

static double one_read(const void *buf, int64_t bytes, volatile uint64_t *sink) {
    double t0 = util_time_s();
    *sink ^= read_bytes(buf, bytes);
    return util_time_s() - t0;
}

static void set_paths(Weights *w, LowpPath path) {
    char err[256];
    for (int k = 0; k < w->nmat; k++) {
        if (lowp_matrix_set_path(&w->mb[k], path, err, sizeof err) ||
            lowp_matrix_set_path(&w->mi[k], path, err, sizeof err)) {
            fprintf(stderr, "bench_lowp: %s\n", err);
            exit(1);
        }
    }
}

static int64_t weights_bytes(const Weights *w, LowpFormat fmt) {
    int64_t n = 0;
    for (int k = 0; k < w->nmat; k++)
        n += fmt == LOWP_BF16 ? lowp_matrix_bytes(&w->mb[k])
             : fmt == LOWP_INT8 ? lowp_matrix_bytes(&w->mi[k])
                                : 4 * (int64_t)mat_in(w->s, k) * mat_out(w->s, k);
    return n;
}

// The 5 configurations at R rows, and the read of each one's bytes, taken in turns (rounds), so
// that a change in the machine's load touches them alike; the best of each, at least 5 rounds and
// 2 s. Prints them, their RESULT lines and the target ratios.
static void bench_rows(Weights *w, int R, const float *x, float *y, const void *rd) {
    const Shape *s = w->s;
    LowpPath best = lowp_default_path(LOWP_BF16);
    struct { const char *name; LowpFormat f; LowpPath p; } cfg[] = {
        {"fp32 engine", LOWP_FP32, best},
        {best == LOWP_PATH_AVX512 ? "bf16 avx512" : "bf16", LOWP_BF16, best},
        {best == LOWP_PATH_AVX512 ? "int8 avx512" : "int8", LOWP_INT8, best},
        {"bf16 portable", LOWP_BF16, LOWP_PATH_PORTABLE},
        {"int8 portable", LOWP_INT8, LOWP_PATH_PORTABLE},
    };
    enum { NC = 5 };
    double t[NC], lim[NC];
    int64_t bytes[NC];
    int run[NC];
    volatile uint64_t sink = 0;
    for (int c = 0; c < NC; c++) {
        t[c] = lim[c] = 1e30;
        bytes[c] = weights_bytes(w, cfg[c].f);
        run[c] = c == 0 || lowp_path_supported(cfg[c].p, cfg[c].f);
    }
    double start = util_time_s();
    for (int round = 0; round < 6 || (round < 40 && util_time_s() - start < 2.0); round++) {
        for (int c = 0; c < NC; c++) {
            if (!run[c]) continue;
            if (c > 0) set_paths(w, cfg[c].p);
            double tp = one_pass(w, cfg[c].f, x, y, R), tr = one_read(rd, bytes[c], &sink);
            if (round == 0) continue;   // warm-up
            t[c] = tp < t[c] ? tp : t[c];
            lim[c] = tr < lim[c] ? tr : lim[c];
        }
    }
    set_paths(w, best);
    char name[96];
    for (int c = 0; c < NC; c++) {
        if (!run[c]) continue;
        printf("%-6d %-17s %10.2f %12.3f %8.1f %9.2f\n", R, cfg[c].name, t[c] * 1e3,
               t[c] * 1e3 / R, bytes[c] / t[c] / 1e9, lim[c] / t[c]);
        snprintf(name, sizeof name, "lowp %s B=%d %s", s->name, R, cfg[c].name);
        result(name, bytes[c] / t[c] / 1e9, "GB/s", "read limit, same bytes",
               bytes[c] / lim[c] / 1e9);
        if (c > 0) {
            snprintf(name, sizeof name, "lowp %s B=%d %s speed", s->name, R, cfg[c].name);
            result(name, R / t[c], "tok/s", "fp32 engine", R / t[0]);
        }
    }
    printf("   %d rows: bf16 %.2f of its bandwidth limit (target >= 0.8), bf16 %.2fx fp32 "
           "(target >= 1.8), int8 %.2fx fp32 (target >= 3)\n",
           R, lim[1] / t[1], t[0] / t[1], t[0] / t[2]);
}

static void bench_model(const Shape *s, const int *rows, int nrows) {
    Weights w;
    weights_init(&w, s);
    double tb = weights_convert(&w, LOWP_BF16, 0), ti = weights_convert(&w, LOWP_INT8, 0);
    double rfb = weights_convert(&w, LOWP_BF16, 1), rfi = weights_convert(&w, LOWP_INT8, 1);
    int64_t bb = weights_bytes(&w, LOWP_BF16), bi = weights_bytes(&w, LOWP_INT8);
    int maxC = 4 * s->C, maxOC = s->V;
    int maxR = 1;
    for (int i = 0; i < nrows; i++) maxR = rows[i] > maxR ? rows[i] : maxR;
    float *x = ALIGNED_CHECK((size_t)maxR * maxC * sizeof(float));
    float *y = ALIGNED_CHECK((size_t)maxR * maxOC * sizeof(float));
    for (int64_t i = 0; i < (int64_t)maxR * maxC; i++) x[i] = 0.01f * (float)(i % 97) - 0.4f;
    // the bandwidth limit: the same number of bytes read from a buffer as large as the fp32
    // weights, in huge pages as the copies are (4 KiB pages read slower on a virtual machine)
    LowpArena rda;
    lowp_arena_init(&rda, (size_t)w.bytes32);
    char *rd = rda.base;
    memset(rd, 1, (size_t)w.bytes32);
    volatile uint64_t sink = 0;
    double r32 = 1e30;
    for (int i = 0; i < 5; i++) {
        double t = one_read(rd, w.bytes32, &sink);
        r32 = t < r32 ? t : r32;
    }
    printf("\n%s: %d matrices, fp32 %.0f MB, bf16 %.0f MB, int8 %.0f MB; conversion from fp32: "
           "bf16 %.0f ms, int8 %.0f ms (refresh into them: %.0f, %.0f ms); read limit %.1f GB/s "
           "(%d threads)\n",
           s->name, w.nmat, w.bytes32 / 1e6, bb / 1e6, bi / 1e6, tb * 1e3, ti * 1e3, rfb * 1e3,
           rfi * 1e3, w.bytes32 / r32 / 1e9, omp_get_max_threads());
    printf("%-6s %-17s %10s %12s %8s %10s\n", "rows", "format/path", "ms/pass", "ms/token", "GB/s",
           "of limit");
    char name[96];
    snprintf(name, sizeof name, "lowp %s read limit (%d threads)", s->name, omp_get_max_threads());
    result(name, w.bytes32 / r32 / 1e9, "GB/s", NULL, 0);
    snprintf(name, sizeof name, "lowp %s bf16 refresh of all weights", s->name);
    result(name, rfb * 1e3, "ms", NULL, 0);
    snprintf(name, sizeof name, "lowp %s int8 refresh of all weights", s->name);
    result(name, rfi * 1e3, "ms", NULL, 0);
    for (int i = 0; i < nrows; i++) bench_rows(&w, rows[i], x, y, rd);
    lowp_arena_free(&rda);
    for (int k = 0; k < w.nmat; k++) {
        free(w.w[k]);
        lowp_matrix_free(&w.mb[k]);
        lowp_matrix_free(&w.mi[k]);
    }
    lowp_arena_free(&w.ab);
    lowp_arena_free(&w.ai);
    free(w.w);
    free(w.mb);
    free(w.mi);
    free(x);
    free(y);
}

static int parse_rows(const char *s, int *rows, int max) {
    int n = 0;
    while (*s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 4096) return -1;
        rows[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

int main(int argc, char **argv) {
    blas_startup("bench_lowp", argv);
    char err[256];
    if (lowp_check_env(err, sizeof err)) {
        fprintf(stderr, "bench_lowp: %s\n", err);
        return 1;
    }
    const char *model = "both";
    int rows[16] = {1, 8, 64}, nrows = 3, threads = 2;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--model") == 0) model = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--rows") == 0) {
            nrows = parse_rows(argv[++i], rows, 16);
            if (nrows < 1) {
                fprintf(stderr, "bench_lowp: bad --rows '%s' (e.g. 1,8,64)\n", argv[i]);
                return 1;
            }
        } else if (i + 1 < argc && strcmp(argv[i], "--threads") == 0) {
            threads = atoi(argv[++i]);
            if (threads < 1) {
                fprintf(stderr, "bench_lowp: bad --threads '%s'\n", argv[i]);
                return 1;
            }
        } else {
            fprintf(stderr, "usage: bench_lowp [--model gpt2|smollm2|both] [--rows 1,8,64] "
                            "[--threads N]\n");
            return 1;
        }
    }
    omp_set_num_threads(threads);
    int found = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        if (strcmp(model, "both") && strcmp(model, shapes[i].name)) continue;
        found = 1;
        bench_model(&shapes[i], rows, nrows);
    }
    if (!found) {
        fprintf(stderr, "bench_lowp: unknown --model '%s' (gpt2, smollm2 or both)\n", model);
        return 1;
    }
    printf("(best path on this CPU: %s; peak memory %.0f MiB)\n",
           lowp_path_name(lowp_default_path(LOWP_BF16)), bench_peak_rss_mb());
    return 0;
}
