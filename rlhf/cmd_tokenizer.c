// rlhf tokenizer encode|decode|train
#include "cli.h"
#include "commands.h"
#include "tokenizer.h"
#include "util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usage =
    "usage: rlhf tokenizer encode DIR [--text FILE] [--special]   text (stdin by default) -> ids\n"
    "       rlhf tokenizer decode DIR [--ids FILE]                ids (stdin by default) -> exact bytes\n"
    "       rlhf tokenizer train --vocab-size N --out DIR [--min-frequency N] [--max-bytes N] FILE...\n"
    "DIR holds vocab.json + merges.txt (or encoder.json + vocab.bpe), e.g. a checkpoint.\n"
    "--special: recognise special tokens such as <|endoftext|> in the text.\n";

static int encode_decode(int decode, int argc, char **argv) {
    const char *dir = NULL, *in = "-";
    unsigned flags = 0;
    for (int i = 0; i < argc; i++) {
        if (cli_is_help(argv[i])) { fputs(usage, stdout); return 0; }
        if (!decode && !strcmp(argv[i], "--text") && i + 1 < argc) in = argv[++i];
        else if (decode && !strcmp(argv[i], "--ids") && i + 1 < argc) in = argv[++i];
        else if (!decode && !strcmp(argv[i], "--special")) flags |= TOK_ALLOW_SPECIAL;
        else if (argv[i][0] != '-' && !dir) dir = argv[i];
        else { fprintf(stderr, "rlhf tokenizer: unexpected argument '%s'\n%s", argv[i], usage); return 2; }
    }
    if (!dir) { fprintf(stderr, "rlhf tokenizer: missing tokenizer DIR\n%s", usage); return 2; }
    char err[512];
    Tokenizer *t;
    if (tok_load(&t, dir, err, sizeof err)) { fprintf(stderr, "rlhf tokenizer: %s\n", err); return 1; }
    char *data; size_t len;
    if (cli_read_file(in, &data, &len, err, sizeof err)) { fprintf(stderr, "rlhf tokenizer: %s\n", err); tok_free(t); return 1; }
    int rc = 0;
    if (!decode) {
        TokIds ids = {0};
        if (tok_encode(t, data, len, flags, &ids, err, sizeof err)) { fprintf(stderr, "rlhf tokenizer: %s\n", err); rc = 1; }
        for (size_t i = 0; i < ids.n && !rc; i++) printf(i + 1 < ids.n ? "%d " : "%d", ids.ids[i]);
        if (!rc) printf("\n");
        tok_ids_free(&ids);
    } else {
        int32_t *ids; size_t n;
        TokBytes out = {0};
        if (cli_parse_ids(in, data, tok_vocab_size(t) - 1, &ids, &n, err, sizeof err)) { fprintf(stderr, "rlhf tokenizer: %s\n", err); rc = 1; }
        else {
            if (tok_decode(t, ids, n, &out, err, sizeof err)) { fprintf(stderr, "rlhf tokenizer: %s\n", err); rc = 1; }
            else fwrite(out.data, 1, out.n, stdout);
            free(ids);
        }
        tok_bytes_free(&out);
    }
    free(data);
    tok_free(t);
    if (fflush(stdout)) { fprintf(stderr, "rlhf tokenizer: write error\n"); rc = 1; }
    return rc;
}

// tok_train's progress: "reading text k/N files", then "learning merges k/N tokens".
typedef struct { CliProgress p; const char *phase; } TrainProgress;
static void train_progress(void *ctx, const char *phase, int64_t done, int64_t total) {
    TrainProgress *tp = ctx;
    if (tp->phase != phase) {
        if (tp->phase) cli_progress_end(&tp->p);
        tp->phase = phase;
        cli_progress_start(&tp->p, stderr, strcmp(phase, "files") ? "rlhf tokenizer train: tokens" : "rlhf tokenizer train: files read",
                           total);
        if (strcmp(phase, "files")) cli_progress_resume(&tp->p, done);   // tokens: from the 256 bytes on
    }
    cli_progress_update(&tp->p, done, NULL);
}

static int train(int argc, char **argv) {
    TokTrainOptions o = {0};
    const char *out = NULL;
    const char **files = calloc((size_t)argc + 1, sizeof(char *));
    size_t nf = 0;
    char err[512];
    int64_t v;
    for (int i = 0; i < argc; i++) {
        if (cli_is_help(argv[i])) { fputs(usage, stdout); free(files); return 0; }
        if (!strcmp(argv[i], "--vocab-size") && i + 1 < argc) {
            if (cli_int("--vocab-size", argv[++i], 257, 1 << 24, &v, err, sizeof err)) goto bad;
            o.vocab_size = v;
        } else if (!strcmp(argv[i], "--min-frequency") && i + 1 < argc) {
            if (cli_int("--min-frequency", argv[++i], 1, INT64_MAX, &v, err, sizeof err)) goto bad;
            o.min_frequency = v;
        } else if (!strcmp(argv[i], "--max-bytes") && i + 1 < argc) {
            if (cli_int("--max-bytes", argv[++i], 1, INT64_MAX, &v, err, sizeof err)) goto bad;
            o.max_bytes = v;
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (argv[i][0] != '-') files[nf++] = argv[i];
        else { fprintf(stderr, "rlhf tokenizer train: unexpected argument '%s'\n%s", argv[i], usage); free(files); return 2; }
    }
    if (!o.vocab_size || !out || !nf) { fprintf(stderr, "rlhf tokenizer train: needs --vocab-size, --out and at least one FILE\n%s", usage); free(files); return 2; }
    if (util_mkdir_p(out, err, sizeof err)) { fprintf(stderr, "rlhf tokenizer train: %s\n", err); free(files); return 1; }
    TrainProgress tp = {0};
    o.progress = train_progress;
    o.progress_ctx = &tp;
    Tokenizer *t = NULL;
    int trc = tok_train(files, nf, &o, out, &t, err, sizeof err);
    if (tp.phase) cli_progress_end(&tp.p);
    if (trc) { fprintf(stderr, "rlhf tokenizer train: %s\n", err); free(files); return 1; }
    fprintf(stderr, "rlhf tokenizer train: vocabulary of %lld tokens (%lld merges) written to %s\n",
            (long long)tok_vocab_size(t), (long long)tok_n_merges(t), out);
    tok_free(t);
    free(files);
    return 0;
bad:
    fprintf(stderr, "rlhf tokenizer train: %s\n", err);
    free(files);
    return 2;
}

int cmd_tokenizer(int argc, char **argv) {
    if (argc < 1 || cli_is_help(argv[0])) { fputs(usage, argc < 1 ? stderr : stdout); return argc < 1 ? 2 : 0; }
    if (!strcmp(argv[0], "encode")) return encode_decode(0, argc - 1, argv + 1);
    if (!strcmp(argv[0], "decode")) return encode_decode(1, argc - 1, argv + 1);
    if (!strcmp(argv[0], "train")) return train(argc - 1, argv + 1);
    fprintf(stderr, "rlhf tokenizer: unknown subcommand '%s'\n%s", argv[0], usage);
    return 2;
}
