// bench_tokenizer: GPT-2 tokenizer speed on one thread, in MB/s (10^6 bytes of input text per
// second), best of several runs.
//
//   bench_tokenizer [--vocab DIR] [--corpus FILE] [--write-corpus FILE] [--runs N]
//                   [--ref NAME=MBS]...
//
// The corpus is ~4 MiB of English: the license texts of /usr/share/common-licenses (sorted,
// concatenated, repeated, cut at a line end), or FILE. Figures:
//   encode_per_line  every line (with its '\n') encoded by its own tok_encode call
//   encode_whole     the whole corpus in one call
//   decode           the per-line ids back to bytes
// It prints a human line per figure, a CHECK line (token count and an FNV-1a checksum of the
// per-line ids, to compare with other implementations on the same corpus), and a line
// RESULT {"name":..,"value":..,"unit":"MB/s","ref_name":..,"ref_value":..,"ratio":..} per figure
// and per --ref given (NAME=MBS is the reference's figure for encode_per_line, or
// NAME:FIGURE=MBS for another figure; ratio = ours / ref). bench/tokenizer.sh runs the JS
// tokenizers and passes their figures in. Never fails on time.
#include "blas.h"
#include "tokenizer.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define CORPUS_BYTES ((size_t)4 << 20)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0) { fclose(f); return NULL; }
    char *buf = malloc((size_t)n + 1);
    if (!buf) { fclose(f); return NULL; }
    *len = fread(buf, 1, (size_t)n, f);
    buf[*len] = 0;
    fclose(f);
    return buf;
}

// The license texts, sorted by name, repeated up to CORPUS_BYTES and cut after a '\n'.
// Falls back to generated sentences when the folder is missing.
static char *build_corpus(size_t *len) {
    const char *dir = "/usr/share/common-licenses";
    char *names[256];
    int n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) && n < 256)
        if (e->d_name[0] != '.') names[n++] = strdup(e->d_name);
    if (d) closedir(d);
    qsort(names, (size_t)n, sizeof(char *), cmp_str);
    char *one = NULL;
    size_t one_len = 0;
    for (int i = 0; i < n; i++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        struct stat st;
        size_t fl;
        char *f = (stat(path, &st) == 0 && S_ISREG(st.st_mode)) ? read_file(path, &fl) : NULL;
        if (f) {
            one = realloc(one, one_len + fl);
            memcpy(one + one_len, f, fl);
            one_len += fl;
            free(f);
        }
        free(names[i]);
    }
    if (one_len == 0) {   // no license folder: deterministic sentences
        static const char *w[] = {"the", "reward", "model", "is", "trained", "on", "human", "rankings", "of",
                                  "answers", "and", "then", "policy", "learns", "with", "PPO", "to", "score",
                                  "higher", "while", "staying", "close", "reference", "1234", "it's"};
        uint64_t s = 88172645463325252ull;
        one = malloc(1 << 20);
        while (one_len + 32 < (1 << 20)) {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            const char *x = w[s % 25];
            memcpy(one + one_len, x, strlen(x));
            one_len += strlen(x);
            one[one_len++] = (s >> 8) % 12 == 0 ? '\n' : (s >> 8) % 12 == 1 ? ',' : ' ';
        }
    }
    char *out = malloc(CORPUS_BYTES + one_len + 1);
    size_t k = 0;
    while (k < CORPUS_BYTES) {
        memcpy(out + k, one, one_len);
        k += one_len;
    }
    free(one);
    k = CORPUS_BYTES;
    while (k > 0 && out[k - 1] != '\n') k--;
    out[k] = 0;
    *len = k;
    return out;
}

typedef struct {
    const char *name;
    double mbs;
} Figure;

int main(int argc, char **argv) {
    blas_startup("bench_tokenizer", argv);   // the best OpenBLAS kernel for this CPU, as the programs run
    const char *vocab = "data/gpt2", *corpus_path = NULL, *write_path = NULL;
    const char *refs[16];
    int n_refs = 0, runs = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--vocab") && i + 1 < argc) vocab = argv[++i];
        else if (!strcmp(argv[i], "--corpus") && i + 1 < argc) corpus_path = argv[++i];
        else if (!strcmp(argv[i], "--write-corpus") && i + 1 < argc) write_path = argv[++i];
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ref") && i + 1 < argc && n_refs < 16) refs[n_refs++] = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--vocab DIR] [--corpus FILE] [--write-corpus FILE] [--runs N] "
                    "[--ref NAME[:FIGURE]=MBS]...\n", argv[0]);
            return 2;
        }
    }
    if (runs < 1) runs = 1;
    size_t len;
    char *text = corpus_path ? read_file(corpus_path, &len) : build_corpus(&len);
    if (!text) { fprintf(stderr, "bench_tokenizer: cannot read %s\n", corpus_path); return 1; }
    if (write_path) {
        FILE *f = fopen(write_path, "wb");
        if (!f || fwrite(text, 1, len, f) != len || fclose(f) != 0) {
            fprintf(stderr, "bench_tokenizer: cannot write %s\n", write_path);
            return 1;
        }
        printf("bench_tokenizer: wrote the %zu-byte corpus to %s\n", len, write_path);
        free(text);
        return 0;
    }
    char err[512];
    Tokenizer *tok;
    double t0 = now_s();
    if (tok_load(&tok, vocab, err, sizeof err)) { fprintf(stderr, "bench_tokenizer: %s\n", err); return 1; }
    double t_load = now_s() - t0;
    printf("bench_tokenizer: corpus %zu bytes (%s), vocabulary %s (%lld tokens, loaded in %.3f s)\n", len,
           corpus_path ? corpus_path : "/usr/share/common-licenses x N", vocab,
           (long long)tok_vocab_size(tok), t_load);

    // line starts
    size_t n_lines = 0;
    for (size_t i = 0; i < len; i++) n_lines += text[i] == '\n';
    if (len && text[len - 1] != '\n') n_lines++;
    size_t *start = malloc((n_lines + 1) * sizeof(size_t)), k = 0;
    start[k++] = 0;
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\n' && i + 1 < len) start[k++] = i + 1;
    start[k] = len;
    n_lines = k;

    TokIds ids = {0};
    TokBytes back = {0};
    double best_line = 1e30, best_whole = 1e30, best_dec = 1e30;
    size_t whole_tokens = 0;
    for (int r = 0; r < runs; r++) {
        ids.n = 0;
        t0 = now_s();
        for (size_t l = 0; l < n_lines; l++)
            if (tok_encode(tok, text + start[l], start[l + 1] - start[l], 0, &ids, err, sizeof err)) {
                fprintf(stderr, "bench_tokenizer: %s\n", err);
                return 1;
            }
        double dt = now_s() - t0;
        if (dt < best_line) best_line = dt;
        back.n = 0;
        t0 = now_s();
        tok_decode(tok, ids.ids, ids.n, &back, err, sizeof err);
        dt = now_s() - t0;
        if (dt < best_dec) best_dec = dt;
        if (back.n != len || memcmp(back.data, text, len)) {
            fprintf(stderr, "bench_tokenizer: decode(encode(corpus)) != corpus\n");
            return 1;
        }
    }
    size_t line_tokens = ids.n;
    uint32_t h = 2166136261u;   // FNV-1a over the per-line ids, as bench/tokenizer_ref.js computes
    for (size_t i = 0; i < ids.n; i++) h = (h ^ (uint32_t)ids.ids[i]) * 16777619u;
    for (int r = 0; r < runs; r++) {
        ids.n = 0;
        t0 = now_s();
        tok_encode(tok, text, len, 0, &ids, err, sizeof err);
        double dt = now_s() - t0;
        if (dt < best_whole) best_whole = dt;
    }
    whole_tokens = ids.n;

    double mb = (double)len / 1e6;
    Figure fig[3] = {{"encode_per_line", mb / best_line}, {"encode_whole", mb / best_whole},
                     {"decode", mb / best_dec}};
    printf("encode, per line (%zu calls): %.3f s = %.2f MB/s, %zu tokens (%.2f bytes/token)\n", n_lines,
           best_line, fig[0].mbs, line_tokens, (double)len / (double)line_tokens);
    printf("encode, whole text (1 call):  %.3f s = %.2f MB/s, %zu tokens\n", best_whole, fig[1].mbs,
           whole_tokens);
    printf("decode:                       %.3f s = %.2f MB/s\n", best_dec, fig[2].mbs);
    printf("CHECK tokens=%zu checksum=%u\n", line_tokens, h);
    for (int f = 0; f < 3; f++) {
        int printed = 0;
        for (int i = 0; i < n_refs; i++) {
            const char *eq = strchr(refs[i], '=');
            if (!eq) continue;
            const char *colon = memchr(refs[i], ':', (size_t)(eq - refs[i]));
            size_t name_len = (size_t)((colon ? colon : eq) - refs[i]);
            const char *figure = colon ? colon + 1 : "encode_per_line";
            size_t fig_len = colon ? (size_t)(eq - colon - 1) : strlen(figure);
            if (fig_len != strlen(fig[f].name) || strncmp(figure, fig[f].name, fig_len)) continue;
            double rv = atof(eq + 1);
            printf("RESULT {\"name\":\"tokenizer_%s\",\"value\":%.3f,\"unit\":\"MB/s\",\"ref_name\":\"%.*s\","
                   "\"ref_value\":%.3f,\"ratio\":%.3f}\n", fig[f].name, fig[f].mbs, (int)name_len, refs[i], rv,
                   rv > 0 ? fig[f].mbs / rv : 0.0);
            printed = 1;
        }
        if (!printed)
            printf("RESULT {\"name\":\"tokenizer_%s\",\"value\":%.3f,\"unit\":\"MB/s\",\"ref_name\":null,"
                   "\"ref_value\":null,\"ratio\":null}\n", fig[f].name, fig[f].mbs);
    }
    tok_ids_free(&ids);
    tok_bytes_free(&back);
    tok_free(tok);
    free(start);
    free(text);
    return 0;
}
