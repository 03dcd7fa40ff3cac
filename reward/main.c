// reward: step 2 of InstructGPT. People (or a judge program) rank K completions of a prompt;
// the rankings live in the workspace database; a reward model (the SFT model with its
// unembedding replaced by a scalar head) learns to predict them; then it scores completions and
// can be inspected. One subcommand per job: import, label, train, score, inspect.
#include "blas.h"
#include "cli.h"
#include "cmd.h"
#include <signal.h>
#include <stdio.h>
#include <string.h>

static const char *usage =
    "usage: reward COMMAND [ARGS]   (reward COMMAND --help for each)\n"
    "\n"
    "  import   --workspace DB FILE.jsonl...        add rankings from files (pairwise, Anthropic-HH\n"
    "                                               transcripts, K-wise); a file imported twice adds nothing\n"
    "  label    --workspace DB --labeler NAME       rank completions in the terminal, or with --judge CMD\n"
    "  train    -c CONFIG.yaml [--set KEY=VALUE]    train a reward model on the workspace's rankings\n"
    "  score    CKPT (--workspace DB | --input FILE) score completions (stored, or printed as JSONL)\n"
    "  inspect  CKPT --workspace DB [--json]        scores, accuracy against the rankings, agreement,\n"
    "                                               calibration, the most confident mistakes\n";

int main(int argc, char **argv) {
    blas_startup("reward", argv);   // the best OpenBLAS kernel for this CPU (may re-execute)
    signal(SIGXFSZ, SIG_IGN);   // past a file-size limit a write fails (EFBIG: a message, the old files kept) instead of killing us
    if (argc < 2) { fputs(usage, stderr); return 2; }
    const char *c = argv[1];
    cli_stop_install("reward");
    if (cli_is_help(c) || !strcmp(c, "help")) { fputs(usage, stdout); return 0; }
    if (!strcmp(c, "import")) return cmd_import(argc - 2, argv + 2);
    if (!strcmp(c, "label")) return cmd_label(argc - 2, argv + 2);
    if (!strcmp(c, "train")) return cmd_train(argc - 2, argv + 2);
    if (!strcmp(c, "score")) return cmd_score(argc - 2, argv + 2);
    if (!strcmp(c, "inspect")) return cmd_inspect(argc - 2, argv + 2);
    fprintf(stderr, "reward: unknown command '%s'\n%s", c, usage);
    return 2;
}
