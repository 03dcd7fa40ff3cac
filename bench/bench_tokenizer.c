// bench_tokenizer: tokenizer speed on one thread, in MB/s (10^6 bytes of input text per
// second), best of several runs; GPT-2's (data/gpt2) by default, or any tokenizer directory
// (a tokenizer.json one included, e.g. Llama 3's) with --vocab.
//
//   bench_tokenizer [--vocab DIR] [--label L] [--corpus FILE] [--write-corpus FILE] [--runs N]
//                   [--ref NAME=MBS]...
//
// --label L names the figures tokenizer_L_FIGURE instead of tokenizer_FIGURE.
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
#include "benchlib.h"
#include "blas.h"
#include "tokenizer.h"
#include "util.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CORPUS_BYTES ((size_t)4 << 20)

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
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
        char *f = (stat(path, &st) == 0 && S_ISREG(st.st_mode)) ? bench_read_file(path, &fl) : NULL;
        if (f) {
            one = realloc(one, one_len + fl);
            memcpy(one + one_len, f, fl);
            one_len += fl;
            free(f);
        }
        free(names[i]);
    }
    if (one_len == 0) {   // no license folder: deterministic sentences
        static const char *w[] = {"the",     "reward", "model",     "is",     "trained",
                                  "on",      "human",  "rankings",  "of",     "answers",
                                  "and",     "then",   "policy",    "learns", "with",
                                  "PPO",     "to",     "score",     "higher", "while",
                                  "staying", "close",  "reference", "1234",   "it's"};
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
    const char *vocab, *corpus_path, *write_path, *label;
    const char *refs[16];   // NAME[:FIGURE]=MBS
    int n_refs, runs;
} BenchTokOpts;

// the command line into *o; 2 (usage) when it does not parse
static int bench_tok_args(int argc, char **argv, BenchTokOpts *o) {
    *o = (BenchTokOpts){.vocab = "data/gpt2", .runs = 5};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--vocab") && i + 1 < argc) o->vocab = argv[++i];
        else if (!strcmp(argv[i], "--corpus") && i + 1 < argc) o->corpus_path = argv[++i];
        else if (!strcmp(argv[i], "--write-corpus") && i + 1 < argc) o->write_path = argv[++i];
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc) o->runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--label") && i + 1 < argc) o->label = argv[++i];
        else if (!strcmp(argv[i], "--ref") && i + 1 < argc && o->n_refs < 16)
            o->refs[o->n_refs++] = argv[++i];
        else {
            fprintf(
                stderr,
                "usage: %s [--vocab DIR] [--label L] [--corpus FILE] [--write-corpus FILE] [--runs N] "
                "[--ref NAME[:FIGURE]=MBS]...\n",
                argv[0]);
            return 2;
        }
    }
    if (o->runs < 1) o->runs = 1;
    return 0;
}

// --write-corpus: the corpus into path, for the other implementations to read
static int bench_tok_write_corpus(const char *path, const char *text, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(text, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "bench_tokenizer: cannot write %s\n", path);
        return 1;
    }
    printf("bench_tokenizer: wrote the %zu-byte corpus to %s\n", len, path);
    return 0;
}

// the offset of each line's start, then len (*n_lines + 1 entries); the caller frees it
static size_t *bench_tok_line_starts(const char *text, size_t len, size_t *n_lines) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++) n += text[i] == '\n';
    if (len && text[len - 1] != '\n') n++;
    size_t *start = malloc((n + 1) * sizeof(size_t)), k = 0;
    start[k++] = 0;
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\n' && i + 1 < len) start[k++] = i + 1;
    start[k] = len;
    *n_lines = k;
    return start;
}

typedef struct {
    double best_line, best_whole, best_dec;   // seconds, best of the runs
    size_t line_tokens, whole_tokens;
    uint32_t checksum;                         // FNV-1a over the per-line ids
} BenchTokTimes;

// encode_per_line and decode, best of runs; the round trip must give the corpus back
static int bench_tok_time_lines(Tokenizer *tok, const char *text, size_t len, const size_t *start,
                                size_t n_lines, int runs, BenchTokTimes *t) {
    char err[512];
    TokIds ids = {0};
    TokBytes back = {0};
    int rc = 0;
    t->best_line = t->best_dec = 1e30;
    for (int r = 0; r < runs && !rc; r++) {
        ids.n = 0;
        double t0 = util_time_s();
        for (size_t l = 0; l < n_lines && !rc; l++)
            if (tok_encode(tok, text + start[l], start[l + 1] - start[l], 0, &ids, err,
                           sizeof err)) {
                fprintf(stderr, "bench_tokenizer: %s\n", err);
                rc = 1;
            }
        if (rc) break;
        double dt = util_time_s() - t0;
        if (dt < t->best_line) t->best_line = dt;
        back.n = 0;
        t0 = util_time_s();
        tok_decode(tok, ids.ids, ids.n, &back, err, sizeof err);
        dt = util_time_s() - t0;
        if (dt < t->best_dec) t->best_dec = dt;
        if (back.n != len || memcmp(back.data, text, len)) {
            fprintf(stderr, "bench_tokenizer: decode(encode(corpus)) != corpus\n");
            rc = 1;
        }
    }
    t->line_tokens = ids.n;
    uint32_t h = 2166136261u;   // FNV-1a over the per-line ids, as bench/tokenizer_ref.js computes
    for (size_t i = 0; i < ids.n; i++) h = (h ^ (uint32_t)ids.ids[i]) * 16777619u;
    t->checksum = h;
    tok_ids_free(&ids);
    tok_bytes_free(&back);
    return rc;
}

// encode_whole: the corpus in one call, best of runs
static void bench_tok_time_whole(Tokenizer *tok, const char *text, size_t len, int runs,
                                 BenchTokTimes *t) {
    char err[512];
    TokIds ids = {0};
    t->best_whole = 1e30;
    for (int r = 0; r < runs; r++) {
        ids.n = 0;
        double t0 = util_time_s();
        tok_encode(tok, text, len, 0, &ids, err, sizeof err);
        double dt = util_time_s() - t0;
        if (dt < t->best_whole) t->best_whole = dt;
    }
    t->whole_tokens = ids.n;
    tok_ids_free(&ids);
}

typedef struct {
    const char *name;
    double mbs;
} Figure;

// one RESULT line per --ref given for this figure (or one without a reference)
static void bench_tok_result(const Figure *fig, const BenchTokOpts *o) {
    int printed = 0;
    for (int i = 0; i < o->n_refs; i++) {
        const char *ref = o->refs[i], *eq = strchr(ref, '=');
        if (!eq) continue;
        const char *colon = memchr(ref, ':', (size_t)(eq - ref));
        size_t name_len = (size_t)((colon ? colon : eq) - ref);
        const char *figure = colon ? colon + 1 : "encode_per_line";
        size_t fig_len = colon ? (size_t)(eq - colon - 1) : strlen(figure);
        if (fig_len != strlen(fig->name) || strncmp(figure, fig->name, fig_len)) continue;
        double rv = atof(eq + 1);
        printf(
            "RESULT {\"name\":\"tokenizer_%s%s%s\",\"value\":%.3f,\"unit\":\"MB/s\",\"ref_name\":"
            "\"%.*s\",\"ref_value\":%.3f,\"ratio\":%.3f}\n",
            o->label ? o->label : "", o->label ? "_" : "", fig->name, fig->mbs, (int)name_len, ref,
            rv, rv > 0 ? fig->mbs / rv : 0.0);
        printed = 1;
    }
    if (!printed)
        printf(
            "RESULT {\"name\":\"tokenizer_%s%s%s\",\"value\":%.3f,\"unit\":\"MB/s\",\"ref_name\":null,"
            "\"ref_value\":null,\"ratio\":null}\n",
            o->label ? o->label : "", o->label ? "_" : "", fig->name, fig->mbs);
}

// the human lines, the CHECK line and the RESULT lines
static void bench_tok_report(const BenchTokTimes *t, size_t len, size_t n_lines,
                             const BenchTokOpts *o) {
    double mb = (double)len / 1e6;
    Figure fig[3] = {{"encode_per_line", mb / t->best_line}, {"encode_whole", mb / t->best_whole},
                     {"decode", mb / t->best_dec}};
    printf("encode, per line (%zu calls): %.3f s = %.2f MB/s, %zu tokens (%.2f bytes/token)\n",
           n_lines, t->best_line, fig[0].mbs, t->line_tokens, (double)len / (double)t->line_tokens);
    printf("encode, whole text (1 call):  %.3f s = %.2f MB/s, %zu tokens\n", t->best_whole,
           fig[1].mbs, t->whole_tokens);
    printf("decode:                       %.3f s = %.2f MB/s\n", t->best_dec, fig[2].mbs);
    printf("CHECK tokens=%zu checksum=%u\n", t->line_tokens, t->checksum);
    for (int f = 0; f < 3; f++) bench_tok_result(&fig[f], o);
}

int main(int argc, char **argv) {
    blas_startup("bench_tokenizer",
                 argv); // the best OpenBLAS kernel for this CPU, as the programs run
    BenchTokOpts o;
    if (bench_tok_args(argc, argv, &o)) return 2;
    size_t len;
    char *text = o.corpus_path ? bench_read_file(o.corpus_path, &len) : build_corpus(&len);
    if (!text) { fprintf(stderr, "bench_tokenizer: cannot read %s\n", o.corpus_path); return 1; }
    if (o.write_path) {
        int rc = bench_tok_write_corpus(o.write_path, text, len);
        free(text);
        return rc;
    }
    char err[512];
    Tokenizer *tok;
    double t0 = util_time_s();
    if (tok_load(&tok, o.vocab, err, sizeof err)) {
        fprintf(stderr, "bench_tokenizer: %s\n", err);
        return 1;
    }
    double t_load = util_time_s() - t0;
    printf(
        "bench_tokenizer: corpus %zu bytes (%s), vocabulary %s (%lld tokens, loaded in %.3f s)\n",
        len, o.corpus_path ? o.corpus_path : "/usr/share/common-licenses x N", o.vocab,
        (long long)tok_vocab_size(tok), t_load);
    size_t n_lines;
    size_t *start = bench_tok_line_starts(text, len, &n_lines);
    BenchTokTimes t;
    int rc = bench_tok_time_lines(tok, text, len, start, n_lines, o.runs, &t);
    if (!rc) {
        bench_tok_time_whole(tok, text, len, o.runs, &t);
        bench_tok_report(&t, len, n_lines, &o);
    }
    tok_free(tok);
    free(start);
    free(text);
    return rc;
}
