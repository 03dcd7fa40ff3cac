#include "cli.h"
#include "util.h"
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cli_int(const char *opt, const char *s, int64_t min, int64_t max, int64_t *out, char *err, size_t errlen) {
    if (!s || !*s) return util_err(err, errlen, "%s needs an integer", opt);
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return util_err(err, errlen, "%s: '%s' is not an integer in %lld..%lld", opt, s, (long long)min, (long long)max);
    *out = v;
    return 0;
}

int cli_float(const char *opt, const char *s, double min, double max, double *out, char *err, size_t errlen) {
    if (!s || !*s) return util_err(err, errlen, "%s needs a number", opt);
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v < min || v > max)
        return util_err(err, errlen, "%s: '%s' is not a number in %g..%g", opt, s, min, max);
    *out = v;
    return 0;
}

int cli_read_file(const char *path, char **data, size_t *len, char *err, size_t errlen) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) return util_err(err, errlen, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = MALLOC_CHECK(cap);
    for (;;) {
        if (n + 1 >= cap) { cap *= 2; char *nb = realloc(buf, cap); if (!nb) DIE("out of memory reading %s", path); buf = nb; }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    if (f != stdin) fclose(f);
    if (bad) { free(buf); return util_err(err, errlen, "%s: read error", path); }
    buf[n] = 0;
    *data = buf; *len = n;
    return 0;
}

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
            return util_err(err, errlen, "%s:%lld: '%.*s' is not a token id in 0..%lld", name, (long long)line, w, p, (long long)max_id);
        }
        if (k == cap) { cap *= 2; int32_t *no = realloc(out, cap * sizeof(int32_t)); if (!no) DIE("out of memory"); out = no; }
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
    char e[32], r[32];
    cli_duration(e, sizeof e, el);
    if (p->total > 0) {
        cli_duration(r, sizeof r, rate > 0 ? (double)(p->total - done) / rate : NAN);
        snprintf(buf, n, "%lld/%lld %.3g/s elapsed %s eta %s", (long long)done, (long long)p->total, rate, e, r);
    } else {
        snprintf(buf, n, "%lld %.3g/s elapsed %s", (long long)done, rate, e);
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
        fprintf(p->out, "\r%s [%.*s%*s] %s %s\033[K", p->what, fill, "==============================", w - fill, "", f, extra ? extra : "");
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
    return sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : sig == SIGHUP ? "SIGHUP" : "a signal";
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
