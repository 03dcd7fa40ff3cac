// rlhf: the tool around the engine. Subcommands bring a model in (init, a checkpoint), look at
// it (info), use it (generate, eval) and handle tokenizers; `rlhf run` will run pipelines.
#include "blas.h"
#include "cli.h"
#include "commands.h"
#include "demo.h"
#include "pipeline.h"
#include <signal.h>
#include <stdio.h>
#include <string.h>

static const char *usage =
    "usage: rlhf COMMAND [ARGS]   (rlhf COMMAND --help for each)\n"
    "\n"
    "  run        PIPELINE.yaml [--from S] [--only S] [--dry-run] [--force]   run a pipeline\n"
    "  init       --preset tiny|small|gpt2|gpt2-medium --out DIR   random initialisation\n"
    "  info       CKPT                         config, parameters, memory to train and sample\n"
    "  generate   CKPT --prompt TEXT|--prompts FILE   sample continuations (streamed)\n"
    "  eval       CKPT --text FILE|--ids FILE  mean next-token loss and perplexity\n"
    "  tokenizer  encode|decode|train ...      GPT-2 byte-level BPE tools\n"
    "  data       demo --out DIR               generate the demo data set (offline, deterministic)\n"
    "  judge      [--noise P] [--seed S]       rank completions read from stdin (reward label --judge)\n"
    "  eval-policy --a CKPT --b CKPT --prompts FILE   win rate, reward, KL, accuracy, alignment tax\n";

int main(int argc, char **argv) {
    blas_startup("rlhf", argv);   // the best OpenBLAS kernel for this CPU (may re-execute)
    signal(SIGXFSZ, SIG_IGN);   // past a file-size limit a write fails (EFBIG: a message, the old files kept) instead of killing us
    if (argc < 2 || cli_is_help(argv[1]) || !strcmp(argv[1], "help")) { fputs(usage, argc < 2 ? stderr : stdout); return argc < 2 ? 2 : 0; }
    const char *c = argv[1];
    if (strcmp(c, "run")) cli_stop_install("rlhf");   // the runner handles its own signals (its stages')
    if (!strcmp(c, "init")) return cmd_init(argc - 2, argv + 2);
    if (!strcmp(c, "info")) return cmd_info(argc - 2, argv + 2);
    if (!strcmp(c, "eval")) return cmd_eval(argc - 2, argv + 2);
    if (!strcmp(c, "generate")) return cmd_generate(argc - 2, argv + 2);
    if (!strcmp(c, "tokenizer")) return cmd_tokenizer(argc - 2, argv + 2);
    if (!strcmp(c, "run")) return pipeline_cmd_run(argc - 2, argv + 2);
    if (!strcmp(c, "data")) return demo_data_cmd(argc - 2, argv + 2);
    if (!strcmp(c, "judge")) return demo_judge_cmd(argc - 2, argv + 2);
    if (!strcmp(c, "eval-policy")) return cmd_eval_policy(argc - 2, argv + 2);
    fprintf(stderr, "rlhf: unknown command '%s'\n%s", c, usage);
    return 2;
}
