// Small helpers shared by the command-line programs: strict number parsing (the whole string,
// in range, with a message naming the option), reading whole files, and a progress line that
// redraws itself on a terminal and prints plain lines otherwise.
#ifndef CLI_H
#define CLI_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

int cli_int(const char *opt, const char *s, int64_t min, int64_t max, int64_t *out, char *err, size_t errlen);
int cli_float(const char *opt, const char *s, double min, double max, double *out, char *err, size_t errlen);
// Reads all of path ("-" = stdin) into a malloc'd buffer (NUL-terminated, *len bytes) or -1.
int cli_read_file(const char *path, char **data, size_t *len, char *err, size_t errlen);
// Parses whitespace-separated integers in [0, max_id] into a malloc'd array; -1 with the
// offending token's line on error.
int cli_parse_ids(const char *name, const char *text, int64_t max_id, int32_t **ids, size_t *n,
                  char *err, size_t errlen);

typedef struct {
    FILE *out;
    int tty;            // redraw in place
    double start, last;
    int64_t total;
    const char *what;
} CliProgress;
void cli_progress_start(CliProgress *p, FILE *out, const char *what, int64_t total);
void cli_progress_update(CliProgress *p, int64_t done, const char *extra);  // at most ~10/s
void cli_progress_end(CliProgress *p);
#endif
