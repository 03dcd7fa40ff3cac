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

#define CONT "\n                                               "   // a help line's continuation
static const CliSubcommand commands[] = {
    {"import", cmd_import,
     "--workspace DB FILE.jsonl...        add rankings from files (pairwise, Anthropic-HH" CONT
     "transcripts, K-wise); a file imported twice adds nothing"},
    {"label", cmd_label,
     "--workspace DB --labeler NAME       rank completions in the terminal, or with --judge CMD"},
    {"train", cmd_train,
     "-c CONFIG.yaml [--set KEY=VALUE]    train a reward model on the workspace's rankings"},
    {"score", cmd_score,
     "CKPT (--workspace DB | --input FILE) score completions (stored, or printed as JSONL)"},
    {"inspect", cmd_inspect,
     "CKPT --workspace DB [--json]        scores, accuracy against the rankings, agreement," CONT
     "calibration, the most confident mistakes"},
    {0}};

int main(int argc, char **argv) {
    blas_startup("reward", argv);   // the best OpenBLAS kernel for this CPU (may re-execute)
    // past a file-size limit a write fails (EFBIG: a message, the old files kept) instead of
    // killing us
    signal(SIGXFSZ, SIG_IGN);
    if (argc >= 2) cli_stop_install("reward");
    static const char head[] =
        "usage: reward COMMAND [ARGS]   (reward COMMAND --help for each)\n\n";
    CliProgram prog = {.prog = "reward", .head = head, .cmds = commands, .name_width = 8};
    return cli_program_run(&prog, argc, argv);
}
