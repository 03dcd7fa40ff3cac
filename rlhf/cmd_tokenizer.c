// rlhf tokenizer encode|decode|train
#include "cli.h"
#include "commands.h"
#include "tokenizer.h"
#include "util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usage =
    "usage: rlhf tokenizer encode DIR [--text FILE] [--special] [--add-special]   text (stdin by default) -> ids\n"
    "       rlhf tokenizer decode DIR [--ids FILE]                ids (stdin by default) -> exact bytes\n"
    "       rlhf tokenizer train --vocab-size N --out DIR [--min-frequency N] [--max-bytes N] FILE...\n"
    "DIR holds a Hugging Face tokenizer.json (+ tokenizer_config.json), used when present, or\n"
    "vocab.json + merges.txt (or encoder.json + vocab.bpe), e.g. a checkpoint.\n"
    "--special: recognise special tokens such as <|endoftext|> in the text.\n"
    "--add-special: add what the tokenizer.json's post-processor adds (BOS, EOS).\n";

static int encode_decode(int decode, int argc, char **argv) {
    const char *dir = NULL, *in = "-";
    unsigned flags = 0;
    int special = 0, add = 0, status;
    CliOption encode_opts[] = {CLI_STRING("--text", &in), CLI_FLAG("--special", &special),
                               CLI_FLAG("--add-special", &add), {0}};
    CliOption decode_opts[] = {CLI_STRING("--ids", &in), {0}};
    CliCommand cmd = {.prog = "rlhf tokenizer", .usage = usage,
                      .opts = decode ? decode_opts : encode_opts, .arg_name = "DIR", .arg = &dir};
    if (cli_parse(&cmd, argc, argv, &status)) return status;
    if (!dir) return cli_usage_error(&cmd, "missing tokenizer DIR");
    if (special) flags |= TOK_ALLOW_SPECIAL;
    if (add) flags |= TOK_ADD_SPECIAL;
    char err[512];
    Tokenizer *t;
    if (tok_load(&t, dir, err, sizeof err)) {
        fprintf(stderr, "rlhf tokenizer: %s\n", err);
        return 1;
    }
    char *data; size_t len;
    if (cli_read_file(in, &data, &len, err, sizeof err)) {
        fprintf(stderr, "rlhf tokenizer: %s\n", err);
        tok_free(t);
        return 1;
    }
    int rc = 0;
    if (!decode) {
        TokIds ids = {0};
        if (tok_encode(t, data, len, flags, &ids, err, sizeof err)) {
            fprintf(stderr, "rlhf tokenizer: %s\n", err);
            rc = 1;
        }
        for (size_t i = 0; i < ids.n && !rc; i++) printf(i + 1 < ids.n ? "%d " : "%d", ids.ids[i]);
        if (!rc) printf("\n");
        tok_ids_free(&ids);
    } else {
        int32_t *ids; size_t n;
        TokBytes out = {0};
        if (cli_parse_ids(in, data, tok_vocab_size(t) - 1, &ids, &n, err, sizeof err)) {
            fprintf(stderr, "rlhf tokenizer: %s\n", err);
            rc = 1;
        } else {
            if (tok_decode(t, ids, n, &out, err, sizeof err)) {
                fprintf(stderr, "rlhf tokenizer: %s\n", err);
                rc = 1;
            } else
                fwrite(out.data, 1, out.n, stdout);
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
        cli_progress_start(&tp->p, stderr,
                           strcmp(phase, "files") ? "rlhf tokenizer train: tokens"
                                                  : "rlhf tokenizer train: files read",
                           total);
        if (strcmp(phase, "files"))
            cli_progress_resume(&tp->p, done); // tokens: from the 256 bytes on
    }
    cli_progress_update(&tp->p, done, NULL);
}

static int train(int argc, char **argv) {
    TokTrainOptions o = {0};
    const char *out = NULL;
    CliList files = {0};
    char err[512];
    int64_t vocab = 0, min_freq = 0, max_bytes = 0;
    int status;
    CliOption opts[] = {
        CLI_INT("--vocab-size", &vocab, 257, 1 << 24),
        CLI_INT("--min-frequency", &min_freq, 1, INT64_MAX),
        CLI_INT("--max-bytes", &max_bytes, 1, INT64_MAX),
        CLI_STRING("--out", &out),
        {0}};
    CliCommand cmd = {.prog = "rlhf tokenizer train", .usage = usage, .opts = opts,
                      .arg_name = "FILE", .arg_list = &files};
    if (cli_parse(&cmd, argc, argv, &status)) return status;
    if (!vocab || !out || !files.n) {
        cli_list_free(&files);
        return cli_usage_error(&cmd, "needs --vocab-size, --out and at least one FILE");
    }
    o.vocab_size = vocab;
    o.min_frequency = min_freq;
    o.max_bytes = max_bytes;
    if (util_mkdir_p(out, err, sizeof err)) {
        fprintf(stderr, "rlhf tokenizer train: %s\n", err);
        cli_list_free(&files);
        return 1;
    }
    TrainProgress tp = {0};
    o.progress = train_progress;
    o.progress_ctx = &tp;
    Tokenizer *t = NULL;
    int trc = tok_train(files.items, (size_t)files.n, &o, out, &t, err, sizeof err);
    if (tp.phase) cli_progress_end(&tp.p);
    if (trc) {
        fprintf(stderr, "rlhf tokenizer train: %s\n", err);
        cli_list_free(&files);
        return 1;
    }
    fprintf(stderr, "rlhf tokenizer train: vocabulary of %lld tokens (%lld merges) written to %s\n",
            (long long)tok_vocab_size(t), (long long)tok_n_merges(t), out);
    tok_free(t);
    cli_list_free(&files);
    return 0;
}

int cmd_tokenizer(int argc, char **argv) {
    if (argc < 1 || cli_is_help(argv[0])) {
        fputs(usage, argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    if (!strcmp(argv[0], "encode")) return encode_decode(0, argc - 1, argv + 1);
    if (!strcmp(argv[0], "decode")) return encode_decode(1, argc - 1, argv + 1);
    if (!strcmp(argv[0], "train")) return train(argc - 1, argv + 1);
    fprintf(stderr, "rlhf tokenizer: unknown subcommand '%s'\n%s", argv[0], usage);
    return 2;
}
