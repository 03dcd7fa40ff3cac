// The demo's task family as commands of the `rlhf` tool: the data set generator and the judge.
// Both read the task table in tasks.h. Each takes the arguments after its command name and
// returns the exit status: 0 success, 1 bad input or failure (one line on stderr), 2 usage.
#ifndef DEMO_H
#define DEMO_H
int demo_data_cmd(int argc, char **argv);    // generate.c: rlhf data demo --out DIR ...
int demo_judge_cmd(int argc, char **argv);   // judge.c: rlhf judge, the demo's labeler
#endif
