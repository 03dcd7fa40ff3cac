// Small helpers shared by the command-line programs: strict number parsing (the whole string,
// in range, with a message naming the option), reading whole files, and a progress line that
// redraws itself on a terminal and prints plain lines otherwise.
#ifndef CLI_H
#define CLI_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

// true when the argument asks for help: --help or -h
int cli_is_help(const char *arg);

int cli_int(const char *opt, const char *s, int64_t min, int64_t max, int64_t *out, char *err, size_t errlen);
int cli_float(const char *opt, const char *s, double min, double max, double *out, char *err, size_t errlen);
// Input bounds: the most bytes read from one input file (RLHF_MAX_FILE_BYTES, default 4 GiB)
// and in one line of a line-oriented file (RLHF_MAX_LINE_BYTES, default 16 MiB). An endless
// input (/dev/zero, a FIFO) or one too large for memory ends in one clear message naming the
// file and the setting, exit 1, never an abort. Values: bytes, with an optional K, M or G suffix.
int64_t cli_max_file_bytes(void);
int64_t cli_max_line_bytes(void);
// Reads all of path ("-" = stdin) into a malloc'd buffer (NUL-terminated, *len bytes) or -1:
// at most cli_max_file_bytes(); with lines set, no line longer than cli_max_line_bytes().
int cli_read_file(const char *path, char **data, size_t *len, char *err, size_t errlen);
int cli_read_lines_file(const char *path, char **data, size_t *len, char *err, size_t errlen);
// getline with the bounds above: the length of the next line (with its '\n'; NUL bytes kept) in
// *buf, -1 at the end of the file, -2 with a message naming path and the line (too long, file too
// large, out of memory, read error). *total counts the bytes read so far (start it at 0).
typedef struct { char *buf; size_t cap; int64_t total, line; } CliLines;
int64_t cli_getline(CliLines *l, FILE *f, const char *path, char *err, size_t errlen);
void cli_lines_free(CliLines *l);
// Parses whitespace-separated integers in [0, max_id] into a malloc'd array; -1 with the
// offending token's line on error.
int cli_parse_ids(const char *name, const char *text, int64_t max_id, int32_t **ids, size_t *n,
                  char *err, size_t errlen);

// Progress of a long loop, printed the same way by every program: "WHAT k/N rate/s elapsed E
// eta R EXTRA". On a terminal one line redrawn in place (at most ~10 times a second), otherwise
// a plain line at most every 10 s and at the end. total <= 0: unknown (no percentage, no ETA).
typedef struct {
    FILE *out;
    int tty;            // redraw in place
    double start, last;
    int64_t total;
    int64_t first;      // done when the loop began (a resumed run): the rate counts from there
    const char *what;
} CliProgress;
void cli_progress_start(CliProgress *p, FILE *out, const char *what, int64_t total);
void cli_progress_resume(CliProgress *p, int64_t first);   // the loop starts at first of total
void cli_progress_update(CliProgress *p, int64_t done, const char *extra);  // at most ~10/s
// "k/N 1.23/s elapsed 1m02s eta 3m10s" for done, into buf: for programs that print their own
// log lines (every log.every steps) with the same figures.
void cli_progress_format(const CliProgress *p, int64_t done, char *buf, size_t n);
void cli_progress_end(CliProgress *p);

// Stop requests. SIGINT, SIGTERM and SIGHUP are handled the same way by every program:
// cli_stop_install(prog) routes them here. Until cli_stop_defer() a signal ends the process at
// once (nothing recorded yet that needs saving: loading data, a FIFO that never ends): one line
// "PROG: stopped by SIGTERM", exit 128 + the signal's number. After cli_stop_defer() the signal
// is only recorded: the program's loops poll cli_stop_signal() (between micro-batches, items,
// iterations), save what there is to save, mark the run interrupted and exit cli_stop_code().
// A second signal while a stop is pending ends the process at once (the last complete save
// stays). cli_stop_defer() also ignores SIGPIPE (a closed log pipe is a write error, not death).
// The signal number is the one piece of process state a handler can reach: it lives in cli.c,
// written by the handler, read here.
void cli_stop_install(const char *prog);
void cli_stop_defer(void);
int  cli_stop_signal(void);      // 0, or the number of the signal that asked to stop
int  cli_stop_code(void);        // 128 + that number (130 when none was seen)
// "PROG: interrupted by SIGTERM ..." context for the line a program prints when it stops.
const char *cli_stop_name(void); // "SIGTERM", "SIGINT", "SIGHUP" or "a signal"
#endif
