// Subcommands of the `rlhf` tool. Each takes the arguments after its name and returns the
// process exit status: 0 success, 1 bad input or failure (message on stderr), 2 usage error.
#ifndef COMMANDS_H
#define COMMANDS_H
int cmd_init(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_data(int argc, char **argv);          // cmd_data.c: rlhf data demo
int cmd_judge(int argc, char **argv);         // cmd_judge.c: the demo's labeler
int cmd_eval_policy(int argc, char **argv);   // cmd_evalpolicy.c: compare two policies
// true when argv[i] asks for help
int cmd_is_help(const char *a);
#endif
