// extprog: an external program as a line filter, for `rlhf eval-policy --judge CMD` and
// `--score CMD`. The program runs through /bin/sh -c CMD with its standard error inherited; the
// caller's input (one request per line) is written to its standard input while its standard
// output is read, each answer line as it comes, so a program that answers line by line (reward
// label's judge protocol) and one that reads its input to the end first both work. Its input is
// closed once everything is written; the run ends when its output ends and it has exited.
//
// Errors: system failures (pipe, fork) and answers that are not text lines (a NUL byte, longer
// than EXTPROG_MAX_LINE) return -1 with a message; everything else is reported in ExtResult for
// the caller to name the request it concerns: how many lines came back, the exit status, and
// whether the program stopped making progress (neither read input nor wrote output for the
// timeout: it is then terminated, with whatever it started: it runs in a process group of its
// own).
//
// Ownership: ExtResult's lines are malloc'd; extprog_result_free releases them.
#ifndef EXTPROG_H
#define EXTPROG_H
#include <stddef.h>
#include <stdint.h>

#define EXTPROG_MAX_LINE ((size_t)1 << 20)   // longest answer line accepted (bytes)

typedef struct {
    char **lines;     // (n) the answer lines, without their line ends ('\r' removed too)
    int64_t n;        // how many lines came back (at most `want`; more are counted in extra)
    int64_t extra;    // lines beyond `want`
    int status;       // exit status: 0..255, or -1 when a signal ended it
    int timed_out;    // no progress for `timeout` seconds: terminated (status then -1)
} ExtResult;

// Runs cmd on input[0..len) (lines ending in '\n'), keeping up to want answer lines.
// 0 with *r filled, or -1 with a message in err (*r then empty).
int extprog_run(const char *cmd, const char *input, size_t len, int64_t want, double timeout,
                ExtResult *r, char *err, size_t errlen);
void extprog_result_free(ExtResult *r);
#endif
