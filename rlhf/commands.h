// Subcommands of the `rlhf` tool. Each takes the arguments after its name and returns the
// process exit status: 0 success, 1 bad input or failure (message on stderr), 2 usage error.
// The others: run in pipelines/pipeline.h, data and judge in data/demo/demo.h.
#ifndef COMMANDS_H
#define COMMANDS_H
#include "cli.h"
#include "model.h"
#include "store.h"
#include <stddef.h>
#include <stdint.h>

int cmd_init(int argc, char **argv);          // cmd_model.c: a random initialisation
int cmd_info(int argc, char **argv);          // what a checkpoint holds and needs
int cmd_eval(int argc, char **argv);          // loss and perplexity on a text
int cmd_generate(int argc, char **argv);      // sampled continuations
int cmd_chat(int argc, char **argv);          // cmd_chat.c: interactive chat
int cmd_tokenizer(int argc, char **argv);     // cmd_tokenizer.c: encode, decode, train
int cmd_eval_policy(int argc, char **argv);   // cmd_evalpolicy.c: compare two policies
int cmd_merge(int argc, char **argv);         // cmd_merge.c: fold a LoRA adapter in
int cmd_report(int argc, char **argv);        // cmd_report.c: the dashboards in one HTML file
int cmd_metrics(int argc, char **argv);       // cmd_metrics.c: export (csv, jsonl, tensorboard)

// cmd_report.c, shared by the commands that read a workspace:
// Opens WS, a workspace directory (its workspace.db) or a database file, which must exist (a
// missing one is an error, never created). *st as store_open.

int rlhf_workspace_open(const char *ws, Store **st, char *err, size_t errlen);
// Writes data[0..n) to a new file beside path, then renames it over path (an earlier file stays
// whole when anything fails).
int rlhf_write_replacing(const char *path, const void *data, size_t n, char *err, size_t errlen);
// The values of a list option joined with commas (malloc'd), NULL when there is none.
char *rlhf_join_list(const CliList *l);

// cmd_model.c: the next-token loss of ids[0..n) (n >= 2) under m (an LM head), in consecutive
// windows of W tokens (W <= the context chosen at init), B windows per forward pass (B <= the
// batch chosen at init): every token after the first is predicted once. Adds the summed loss to
// *total (the mean is *total / (n - 1)). progress (or NULL) is updated after each pass.
int rlhf_window_loss(Model *m, const int32_t *ids, size_t n, int64_t W, int64_t B,
                     CliProgress *progress, double *total, char *err, size_t errlen);
// The window of `rlhf eval` (and eval-policy's pretraining loss) for n tokens (n >= 2): the
// model's context, at most RLHF_EVAL_WINDOW_MAX (a 32k-token context would need gigabytes of
// attention rows for a loss that 1024-token windows measure as well), and at most n - 1.
#define RLHF_EVAL_WINDOW_MAX 1024
int64_t rlhf_eval_window(const ModelConfig *c, size_t n);
#endif
