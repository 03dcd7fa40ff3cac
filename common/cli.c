#include "cli.h"
#include "util.h"
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cli_is_help(const char *arg) { return !strcmp(arg, "--help") || !strcmp(arg, "-h"); }

static void cli_list_add(CliList *l, const char *item, int cap) {
    if (!l->items) l->items = CALLOC_CHECK((size_t)cap + 1, sizeof(char *));
    l->items[l->n++] = item;
}

void cli_list_free(CliList *l) {
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static const CliOption *cli_find_option(const CliCommand *cmd, const char *name) {
    for (const CliOption *o = cmd->opts; o && o->name; o++)
        if (!strcmp(o->name, name)) return o;
    return NULL;
}

static int cli_takes_value(const CliOption *o) {
    return o->kind != CLI_KIND_FLAG && o->kind != CLI_KIND_CONST;
}

// Stores one option's value (v NULL for flags). Returns a CliResult.
static CliResult cli_store(const CliOption *o, const char *v, int argc, char *err, size_t errlen) {
    switch (o->kind) {
    case CLI_KIND_STRING: *o->str = v; return CLI_PARSED;
    case CLI_KIND_INT:
        return cli_int(o->name, v, o->imin, o->imax, o->i64, err, errlen) ? CLI_VALUE_ERROR
                                                                          : CLI_PARSED;
    case CLI_KIND_DOUBLE:
        return cli_float(o->name, v, o->dmin, o->dmax, o->dbl, err, errlen) ? CLI_VALUE_ERROR
                                                                            : CLI_PARSED;
    case CLI_KIND_FLAG: *o->flag = 1; return CLI_PARSED;
    case CLI_KIND_CONST: *o->dbl = o->dmin; return CLI_PARSED;
    case CLI_KIND_LIST: cli_list_add(o->list, v, argc); return CLI_PARSED;
    case CLI_KIND_CUSTOM: return o->parse(v, o->ctx, err, errlen) ? CLI_VALUE_ERROR : CLI_PARSED;
    }
    DIE("cli: option %s has no kind", o->name);
}

static int cli_is_positional(const char *a) { return a[0] != '-' || !a[1]; }

CliResult cli_parse_args(const CliCommand *cmd, int argc, char **argv, char *err, size_t errlen) {
    size_t nopts = 0;
    while (cmd->opts && cmd->opts[nopts].name) nopts++;
    unsigned char *seen = CALLOC_CHECK(nopts + 1, 1);
    int args_max = cmd->args_max ? cmd->args_max : cmd->arg_list ? argc : cmd->arg ? 1 : 0;
    int nargs = 0;
    CliResult rc = CLI_PARSED;
    for (int i = 0; i < argc && rc == CLI_PARSED; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {   // an option's value "-h" is a value, not a request for help
            rc = CLI_HELP;
            break;
        }
        if (cli_is_positional(a)) {
            if (nargs >= args_max) {
                rc = CLI_USAGE_ERROR;
                util_err(err, errlen, "unexpected argument '%s'", a);
            } else if (cmd->arg_list) cli_list_add(cmd->arg_list, a, argc);
            else *cmd->arg = a;
            nargs++;
            continue;
        }
        const CliOption *o = cli_find_option(cmd, a);
        if (!o) {
            rc = CLI_USAGE_ERROR;
            util_err(err, errlen, "unknown option '%s'", a);
        } else if (cli_takes_value(o) && i + 1 >= argc) {
            rc = CLI_USAGE_ERROR;
            util_err(err, errlen, "%s needs a value", a);
        } else if (seen[o - cmd->opts] && o->kind != CLI_KIND_LIST) {
            rc = CLI_USAGE_ERROR;
            util_err(err, errlen, "%s is given twice", a);
        } else {
            seen[o - cmd->opts] = 1;
            rc = cli_store(o, cli_takes_value(o) ? argv[++i] : NULL, argc, err, errlen);
        }
    }
    for (size_t k = 0; k < nopts && rc == CLI_PARSED; k++)
        if (cmd->opts[k].required && !seen[k]) {
            rc = CLI_USAGE_ERROR;
            util_err(err, errlen, "%s is required", cmd->opts[k].name);
        }
    if (rc == CLI_PARSED && nargs < cmd->args_min) {
        rc = CLI_USAGE_ERROR;
        util_err(err, errlen, "%s is required", cmd->arg_name ? cmd->arg_name : "an argument");
    }
    free(seen);
    return rc;
}

int cli_usage_error(const CliCommand *cmd, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s\n%s", cmd->prog, msg, cmd->usage);
    return 2;
}

int cli_parse(const CliCommand *cmd, int argc, char **argv, int *status) {
    char err[1024];
    CliResult r = cli_parse_args(cmd, argc, argv, err, sizeof err);
    if (r == CLI_PARSED) return 0;
    if (cmd->arg_list) cli_list_free(cmd->arg_list);
    for (const CliOption *o = cmd->opts; o && o->name; o++)
        if (o->kind == CLI_KIND_LIST) cli_list_free(o->list);
    if (r == CLI_HELP) {
        fputs(cmd->usage, stdout);
        *status = 0;
    } else if (r == CLI_USAGE_ERROR) {
        *status = cli_usage_error(cmd, "%s", err);
    } else {
        fprintf(stderr, "%s: %s\n", cmd->prog, err);
        *status = cmd->value_status ? cmd->value_status : 2;
    }
    return 1;
}

void cli_program_usage(const CliProgram *p, FILE *out) {
    fputs(p->head, out);
    for (const CliSubcommand *c = p->cmds; c->name; c++)
        fprintf(out, "  %-*s %s\n", p->name_width, c->name, c->help);
}

int cli_program_run(const CliProgram *p, int argc, char **argv) {
    if (argc < 2) {
        cli_program_usage(p, stderr);
        return 2;
    }
    if (cli_is_help(argv[1]) || !strcmp(argv[1], "help")) {
        cli_program_usage(p, stdout);
        return 0;
    }
    for (const CliSubcommand *c = p->cmds; c->name; c++)
        if (!strcmp(c->name, argv[1])) return c->run(argc - 2, argv + 2);
    fprintf(stderr, "%s: unknown command '%s'\n", p->prog, argv[1]);
    cli_program_usage(p, stderr);
    return 2;
}

int cli_int(const char *opt, const char *s, int64_t min, int64_t max, int64_t *out, char *err,
            size_t errlen) {
    if (!s || !*s) return util_err(err, errlen, "%s needs an integer", opt);
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return util_err(err, errlen, "%s: '%s' is not an integer in %lld..%lld", opt, s,
                        (long long)min, (long long)max);
    *out = v;
    return 0;
}

int cli_float(const char *opt, const char *s, double min, double max, double *out, char *err,
              size_t errlen) {
    if (!s || !*s) return util_err(err, errlen, "%s needs a number", opt);
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v < min || v > max)
        return util_err(err, errlen, "%s: '%s' is not a number in %g..%g", opt, s, min, max);
    *out = v;
    return 0;
}

static int64_t cli_env_bytes(const char *name, int64_t def) {
    const char *v = getenv(name);
    if (!v || !*v) return def;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    double mul = *end == 'K' || *end == 'k'   ? 1024.0
                 : *end == 'M' || *end == 'm' ? 1048576.0
                 : *end == 'G' || *end == 'g' ? 1073741824.0
                                              : 1.0;
    if (mul > 1) end++;
    if (errno || *end || !(x >= 1) || x * mul > 9e18) return def;
    return (int64_t)(x * mul);
}

int64_t cli_max_file_bytes(void) { return cli_env_bytes("RLHF_MAX_FILE_BYTES", (int64_t)4 << 30); }
int64_t cli_max_line_bytes(void) { return cli_env_bytes("RLHF_MAX_LINE_BYTES", (int64_t)16 << 20); }

static int cli_too_large(const char *path, int64_t line, int is_line, char *err, size_t errlen) {
    char b[32];
    util_format_bytes(b, sizeof b, (double)(is_line ? cli_max_line_bytes() : cli_max_file_bytes()));
    if (is_line)
        return util_err(
            err, errlen,
            "%s:%lld: a line longer than %s (RLHF_MAX_LINE_BYTES): not a text file of lines, or an endless "
            "input",
            path, (long long)line, b);
    return util_err(err, errlen,
                    "%s: more than %s (RLHF_MAX_FILE_BYTES): too large, or an endless input", path,
                    b);
}

static int cli_read_bounded(const char *path, int lines, char **data, size_t *len, char *err,
                            size_t errlen) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) return util_err(err, errlen, "%s: %s", path, strerror(errno));
    int64_t maxf = cli_max_file_bytes(), maxl = cli_max_line_bytes(), line = 1, line_start = 0;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    int rc = 0;
    if (!buf) rc = util_err(err, errlen, "%s: out of memory", path);
    while (!rc) {
        if (n + 1 >= cap) {
            if ((int64_t)n >= maxf) { rc = cli_too_large(path, line, 0, err, errlen); break; }
            size_t nc = cap * 2;
            char *nb = realloc(buf, nc);
            if (!nb) {
                char b[32];
                util_format_bytes(b, sizeof b, (double)n);
                rc = util_err(
                    err, errlen,
                    "%s: out of memory after reading %s (lower RLHF_MAX_FILE_BYTES, or give more memory)",
                    path, b);
                break;
            }
            buf = nb; cap = nc;
        }
        size_t want = cap - n - 1;
        if ((int64_t)(n + want) > maxf + 1) want = (size_t)(maxf + 1 - (int64_t)n);
        size_t got = fread(buf + n, 1, want, f);
        if (lines) {
            for (size_t i = n; i < n + got; i++)
                if (buf[i] == '\n') { line++; line_start = (int64_t)i + 1; }
            if ((int64_t)(n + got) - line_start > maxl) {
                rc = cli_too_large(path, line, 1, err, errlen);
                break;
            }
        }
        n += got;
        if ((int64_t)n > maxf) { rc = cli_too_large(path, line, 0, err, errlen); break; }
        if (got == 0) break;
    }
    if (!rc && ferror(f)) rc = util_err(err, errlen, "%s: read error", path);
    if (f != stdin) fclose(f);
    if (rc) { free(buf); return -1; }
    buf[n] = 0;
    *data = buf; *len = n;
    return 0;
}

int cli_read_file(const char *path, char **data, size_t *len, char *err, size_t errlen) {
    return cli_read_bounded(path, 0, data, len, err, errlen);
}

int cli_read_lines_file(const char *path, char **data, size_t *len, char *err, size_t errlen) {
    return cli_read_bounded(path, 1, data, len, err, errlen);
}

int64_t cli_getline(CliLines *l, FILE *f, const char *path, char *err, size_t errlen) {
    int64_t maxf = cli_max_file_bytes(), maxl = cli_max_line_bytes();
    size_t n = 0;
    l->line++;
    for (;;) {
        int c = getc_unlocked(f);
        if (c == EOF) {
            if (ferror(f)) {
                util_err(err, errlen, "%s:%lld: read error: %s", path, (long long)l->line,
                         strerror(errno));
                return -2;
            }
            if (n == 0) return -1;
            break;
        }
        if (n + 2 > l->cap) {
            if ((int64_t)n >= maxl) return cli_too_large(path, l->line, 1, err, errlen) - 1;
            size_t nc = l->cap ? 2 * l->cap : 256;
            char *nb = realloc(l->buf, nc);
            if (!nb) {
                util_err(err, errlen, "%s:%lld: out of memory reading a line of %zu bytes", path,
                         (long long)l->line, n);
                return -2;
            }
            l->buf = nb; l->cap = nc;
        }
        l->buf[n++] = (char)c;
        if (++l->total > maxf) return cli_too_large(path, l->line, 0, err, errlen) - 1;
        if (c == '\n') break;
    }
    l->buf[n] = 0;
    return (int64_t)n;
}

void cli_lines_free(CliLines *l) { free(l->buf); memset(l, 0, sizeof *l); }

int cli_parse_ids(const char *name, const char *text, int64_t max_id, int32_t **ids, size_t *n,
                  char *err, size_t errlen) {
    size_t cap = 1024, k = 0;
    int32_t *out = MALLOC_CHECK(cap * sizeof(int32_t));
    const char *p = text;
    int64_t line = 1;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') { if (*p == '\n') line++; p++; }
        if (!*p) break;
        const char *q = p;
        int64_t v = 0;
        int digits = 0;
        while (*q >= '0' && *q <= '9') { if (v <= max_id) v = v * 10 + (*q - '0'); q++; digits++; }
        if (!digits || (*q && *q != ' ' && *q != '\t' && *q != '\n' && *q != '\r') || v > max_id) {
            int w = 0;
            while (p[w] && p[w] != ' ' && p[w] != '\n' && p[w] != '\t' && w < 20) w++;
            free(out);
            return util_err(err, errlen, "%s:%lld: '%.*s' is not a token id in 0..%lld", name,
                            (long long)line, w, p, (long long)max_id);
        }
        if (k == cap) {
            cap *= 2;
            out = REALLOC_ARRAY(out, cap, sizeof(int32_t));
        }
        out[k++] = (int32_t)v;
        p = q;
    }
    *ids = out; *n = k;
    return 0;
}

void cli_progress_start(CliProgress *p, FILE *out, const char *what, int64_t total) {
    p->out = out; p->tty = isatty(fileno(out)); p->what = what; p->total = total;
    p->start = util_time_s(); p->last = 0; p->first = 0;
}

void cli_progress_resume(CliProgress *p, int64_t first) { p->first = first; }

static void cli_duration(char *buf, size_t n, double s) {
    if (!isfinite(s) || s < 0) snprintf(buf, n, "?");
    else if (s < 60) snprintf(buf, n, "%.0fs", s);
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
}

void cli_progress_format(const CliProgress *p, int64_t done, char *buf, size_t n) {
    double el = util_time_s() - p->start;
    int64_t did = done - p->first;
    double rate = el > 0 && did > 0 ? (double)did / el : 0.0;
    char e[32], r[32], rs[32];
    cli_duration(e, sizeof e, el);
    snprintf(rs, sizeof rs, rate < 100 ? "%.2f" : "%.0f", rate);
    if (p->total > 0) {
        cli_duration(r, sizeof r, rate > 0 ? (double)(p->total - done) / rate : NAN);
        snprintf(buf, n, "%lld/%lld %s/s elapsed %s eta %s", (long long)done, (long long)p->total,
                 rs, e, r);
    } else {
        snprintf(buf, n, "%lld %s/s elapsed %s", (long long)done, rs, e);
    }
}

void cli_progress_update(CliProgress *p, int64_t done, const char *extra) {
    double now = util_time_s();
    int final = p->total > 0 && done >= p->total;
    if (!final && now - p->last < (p->tty ? 0.1 : 10.0)) return;
    p->last = now;
    char f[160];
    cli_progress_format(p, done, f, sizeof f);
    if (p->tty) {
        double frac = p->total > 0 ? (double)done / p->total : 0.0;
        int w = 30, fill = (int)(frac * w);
        if (fill > w) fill = w;
        fprintf(p->out, "\r%s [%.*s%*s] %s %s\033[K", p->what, fill,
                "==============================", w - fill, "", f, extra ? extra : "");
    } else {
        fprintf(p->out, "%s: %s%s%s\n", p->what, f, extra ? " " : "", extra ? extra : "");
    }
    fflush(p->out);
}

void cli_progress_end(CliProgress *p) { if (p->tty) fprintf(p->out, "\n"); }

static volatile sig_atomic_t cli_stop_sig;       // the signal asking to stop (0: none)
static volatile sig_atomic_t cli_stop_deferred;  // 1: record it; 0: end at once
static const char *cli_stop_prog = "rlhf";

static const char *cli_signal_name(int sig) {
    return sig == SIGTERM  ? "SIGTERM"
           : sig == SIGINT ? "SIGINT"
           : sig == SIGHUP ? "SIGHUP"
                           : "a signal";
}

static void cli_stop_write(const char *s) {
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(2, s, n);
        if (w <= 0) return;
        s += w; n -= (size_t)w;
    }
}

// Async-signal-safe: write(2), _exit(2) and sig_atomic_t stores only.
static void cli_stop_handler(int sig) {
    if (!cli_stop_deferred || cli_stop_sig) {
        cli_stop_write("\n");
        cli_stop_write(cli_stop_prog);
        cli_stop_write(cli_stop_sig ? ": stopped at once by a second signal (" : ": stopped by ");
        cli_stop_write(cli_signal_name(sig));
        cli_stop_write(cli_stop_sig ? "; the last complete save stays)\n" : "\n");
        _exit(128 + sig);
    }
    cli_stop_sig = sig;
    cli_stop_write("\n");
    cli_stop_write(cli_stop_prog);
    cli_stop_write(": ");
    cli_stop_write(cli_signal_name(sig));
    cli_stop_write(": stopping after the current step (a second signal stops at once)\n");
}

void cli_stop_install(const char *prog) {
    cli_stop_prog = prog;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = cli_stop_handler;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaddset(&sa.sa_mask, SIGHUP);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

void cli_stop_defer(void) {
    // a program with something to save must not die writing to a log pipe that a Ctrl-C closed
    signal(SIGPIPE, SIG_IGN);
    cli_stop_deferred = 1;
}
int cli_stop_signal(void) { return cli_stop_sig; }
int cli_stop_code(void) { return 128 + (cli_stop_sig ? cli_stop_sig : SIGINT); }
const char *cli_stop_name(void) { return cli_signal_name(cli_stop_sig); }
