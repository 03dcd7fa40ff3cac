// Subcommands of the `rlhf` tool. Each takes the arguments after its name and returns the
// process exit status: 0 success, 1 bad input or failure (message on stderr), 2 usage error.
#ifndef COMMANDS_H
#define COMMANDS_H
int cmd_init(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);
int cmd_eval_policy(int argc, char **argv);   // cmd_evalpolicy.c: compare two policies
// The others: run in pipelines/pipeline.h, data and judge in data/demo/demo.h.
#endif
