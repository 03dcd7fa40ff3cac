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

// Subcommand options, declared as a table (like config.h's ConfigEntry) and parsed by one
// function. Every option takes the form `--name VALUE` (the next argument, whatever it looks
// like) or is a bare flag; an argument that does not start with '-' (or is "-", stdin) is a
// positional one. Example:
//
//     const char *out = NULL;
//     int64_t seed = 1234;
//     int json = 0;
//     const char *ckpt = NULL;
//     CliOption opts[] = {
//         CLI_STRING("--out", &out, .required = 1),
//         CLI_INT("--seed", &seed, 0, INT64_MAX),
//         CLI_FLAG("--json", &json),
//         {0}};
//     CliCommand cmd = {.prog = "rlhf x", .usage = usage, .opts = opts, .arg_name = "CKPT",
//                       .arg = &ckpt, .args_min = 1};
//     int status;
//     if (cli_parse(&cmd, argc, argv, &status)) return status;
//
// The hand-written usage text stays the command's help (printed for --help and after usage
// errors); the table says how each option is read. Errors, one line each "PROG: ...":
//   usage errors (exit 2, the usage text follows): an unknown option, an option without its
//   value, an option given twice (a list option may repeat), a missing required option or
//   positional argument, one positional argument too many;
//   bad values (exit cmd.value_status, 2 when 0; no usage): "--seed: 'x' is not an integer in
//   0..9223372036854775807", "--top-p: '2' is not a number in 0..1", a CLI_CUSTOM parser's message.
// Values are borrowed from argv (no copies); a list (positional arguments when arg_list is set,
// or a CLI_LIST option) is an array the caller frees with cli_list_free.
typedef enum {
    CLI_KIND_STRING = 1,   // const char *: the value
    CLI_KIND_INT,          // int64_t in [imin, imax]
    CLI_KIND_DOUBLE,       // double in [dmin, dmax], finite
    CLI_KIND_FLAG,         // int: set to 1, no value
    CLI_KIND_CONST,        // double: set to dmin, no value (--greedy: temperature 0)
    CLI_KIND_LIST,         // CliList: every value of a repeatable option, in order
    CLI_KIND_CUSTOM,       // parse(value, ctx, err, errlen) reads the value (0 or -1 + message)
} CliKind;

typedef struct {
    const char **items;    // n values, borrowed from argv; the array is malloc'd
    int n;
} CliList;

typedef struct {
    const char *name;      // "--seed"; NULL ends a table
    CliKind kind;
    const char **str;      // CLI_KIND_STRING
    int64_t *i64;          // CLI_KIND_INT
    double *dbl;           // CLI_KIND_DOUBLE, CLI_KIND_CONST
    int *flag;             // CLI_KIND_FLAG
    CliList *list;         // CLI_KIND_LIST
    int (*parse)(const char *value, void *ctx, char *err, size_t errlen);   // CLI_KIND_CUSTOM
    void *ctx;             // CLI_KIND_CUSTOM
    int64_t imin, imax;
    double dmin, dmax;
    int required;          // missing: "--name is required"
} CliOption;

#define CLI_STRING(n, p, ...) {.name = (n), .kind = CLI_KIND_STRING, .str = (p), __VA_ARGS__}
#define CLI_INT(n, p, lo, hi, ...) \
    {.name = (n), .kind = CLI_KIND_INT, .i64 = (p), .imin = (lo), .imax = (hi), __VA_ARGS__}
#define CLI_DOUBLE(n, p, lo, hi, ...) \
    {.name = (n), .kind = CLI_KIND_DOUBLE, .dbl = (p), .dmin = (lo), .dmax = (hi), __VA_ARGS__}
#define CLI_FLAG(n, p) {.name = (n), .kind = CLI_KIND_FLAG, .flag = (p)}
#define CLI_CONST(n, p, v) {.name = (n), .kind = CLI_KIND_CONST, .dbl = (p), .dmin = (v)}
#define CLI_LIST(n, p) {.name = (n), .kind = CLI_KIND_LIST, .list = (p)}
#define CLI_CUSTOM(n, fn, c, ...) \
    {.name = (n), .kind = CLI_KIND_CUSTOM, .parse = (fn), .ctx = (c), __VA_ARGS__}

typedef struct {
    const char *prog;      // message prefix: "rlhf init"
    const char *usage;     // printed for --help (stdout) and after usage errors (stderr)
    const CliOption *opts; // ends with {0}; NULL: no options
    const char *arg_name;  // positional arguments ("CKPT", "FILE"); NULL: none accepted
    const char **arg;      // the one positional argument (args_max 1)...
    CliList *arg_list;     // ...or all of them (then no upper bound unless args_max)
    int args_min;          // fewer: "ARG_NAME is required"
    int args_max; // more: "unexpected argument 'x'" (0: 1 with arg, no bound with arg_list)
    int value_status;      // exit status for a bad value (0: 2)
} CliCommand;

typedef enum { CLI_PARSED = 0, CLI_HELP, CLI_USAGE_ERROR, CLI_VALUE_ERROR } CliResult;
// Parses argv[0..argc) into the table's destinations. Message (without the "PROG: " prefix)
// in err for the errors; lists allocated even on error (free them with cli_list_free).
CliResult cli_parse_args(const CliCommand *cmd, int argc, char **argv, char *err, size_t errlen);
// cli_parse_args, then what a command does with the result: --help prints the usage on stdout
// (*status 0); an error prints "PROG: message" on stderr, the usage after usage errors, and sets
// *status (2, or value_status). Returns 1 when the command should return *status, 0 to go on.
// On a return of 1 the lists are already freed.
int cli_parse(const CliCommand *cmd, int argc, char **argv, int *status);
// A usage error found after parsing (options that exclude each other): "PROG: message" and the
// usage on stderr; returns 2.
int cli_usage_error(const CliCommand *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void cli_list_free(CliList *l);

// A program of subcommands: a table of {name, function, one-line help} serves both the dispatch
// and the program's usage text ("  NAME  HELP", the names padded to name_width).
typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);   // the arguments after the name; returns the exit status
    const char *help;
} CliSubcommand;
typedef struct {
    const char *prog;               // "rlhf"
    const char *head;               // the usage text's first lines
    const CliSubcommand *cmds;      // ends with {0}
    int name_width;
} CliProgram;
void cli_program_usage(const CliProgram *p, FILE *out);
// No command: the usage on stderr, 2; help, --help, -h: on stdout, 0; an unknown command: one
// line and the usage on stderr, 2; else the command's status.
int cli_program_run(const CliProgram *p, int argc, char **argv);

int cli_int(const char *opt, const char *s, int64_t min, int64_t max, int64_t *out, char *err,
            size_t errlen);
int cli_float(const char *opt, const char *s, double min, double max, double *out, char *err,
              size_t errlen);
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
