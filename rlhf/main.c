// rlhf: the tool around the engine. Subcommands bring a model in (init), look at it (info), use
// it (generate, eval), handle tokenizers, run pipelines (run, in pipelines/), make the demo's
// data and judge its completions (data, judge, in data/demo/) and compare policies (eval-policy).
#include "blas.h"
#include "cli.h"
#include "commands.h"
#include "demo.h"
#include "pipeline.h"
#include "auth.h"
#include "server.h"
#include <signal.h>
#include <stdio.h>
#include <string.h>

static const CliSubcommand commands[] = {
    {"run", pipeline_cmd_run,
     "PIPELINE.yaml [--from S] [--only S] [--dry-run] [--force]   run a pipeline"},
    {"init", cmd_init,
     "--preset NAME --out DIR      random initialisation (GPT-2 or Llama-family shapes)"},
    {"info", cmd_info,
     "CKPT                         config, parameters, memory to train and sample"},
    {"generate", cmd_generate,
     "CKPT --prompt TEXT|--prompts FILE   sample continuations (streamed)"},
    {"chat", cmd_chat, "CKPT [--system TEXT] ...       chat in the terminal with the chat template"},
    {"eval", cmd_eval, "CKPT --text FILE|--ids FILE  mean next-token loss and perplexity"},
    {"tokenizer", cmd_tokenizer, "encode|decode|train ...      GPT-2 byte-level BPE tools"},
    {"data", demo_data_cmd,
     "demo --out DIR               generate the demo data set (offline, deterministic)"},
    {"judge", demo_judge_cmd,
     "[--noise P] [--seed S]       rank completions read from stdin (reward label --judge)"},
    {"merge", cmd_merge,
     "BASE ADAPTER --out DIR       fold a LoRA (PEFT) adapter into the weights"},
    {"serve", server_cmd_serve,
     "WORKSPACE [--listen 127.0.0.1:8080]   labeling and dashboards in a browser"},
    {"users", auth_cmd_users,
     "add|list|remove WORKSPACE ...   the logins of rlhf serve (labeler, admin)"},
    {"eval-policy", cmd_eval_policy,
     "--a CKPT --b CKPT --prompts FILE   win rate, reward, KL, accuracy, alignment tax"},
    {"report", cmd_report,
     "WORKSPACE --out FILE.html   the dashboards in one self-contained HTML file"},
    {"metrics", cmd_metrics,
     "export WORKSPACE --format F  metrics as csv, jsonl or TensorBoard event files"},
    {0}};

int main(int argc, char **argv) {
    blas_startup("rlhf", argv);   // the best OpenBLAS kernel for this CPU (may re-execute)
    // past a file-size limit a write fails (EFBIG: a message, the old files kept) instead of
    // killing us
    signal(SIGXFSZ, SIG_IGN);
    // the runner handles its own signals (its stages')
    if (argc >= 2 && strcmp(argv[1], "run")) cli_stop_install("rlhf");
    static const char head[] =
        "usage: rlhf COMMAND [ARGS]   (rlhf COMMAND --help for each)\n\n";
    CliProgram prog = {.prog = "rlhf", .head = head, .cmds = commands, .name_width = 10};
    return cli_program_run(&prog, argc, argv);
}
