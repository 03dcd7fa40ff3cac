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
// true when argv[i] asks for help
int cmd_is_help(const char *a);
#endif
