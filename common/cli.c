#include "cli.h"
#include "util.h"
#include <errno.h>
#include <math.h>
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
    p->start = util_time_s(); p->last = 0;
}

void cli_progress_update(CliProgress *p, int64_t done, const char *extra) {
    double now = util_time_s();
    int final = done >= p->total;
    if (!final && now - p->last < (p->tty ? 0.1 : 10.0)) return;
    p->last = now;
    double el = now - p->start, frac = p->total > 0 ? (double)done / p->total : 1.0;
    double eta = frac > 0 ? el * (1 - frac) / frac : 0;
    if (p->tty) {
        int w = 30, fill = (int)(frac * w);
        fprintf(p->out, "\r%s [%.*s%*s] %lld/%lld %s eta %.0fs ", p->what, fill, "==============================",
                w - fill, "", (long long)done, (long long)p->total, extra ? extra : "", eta);
    } else {
        fprintf(p->out, "%s %lld/%lld %s elapsed %.0fs eta %.0fs\n", p->what, (long long)done, (long long)p->total,
                extra ? extra : "", el, eta);
    }
    fflush(p->out);
}

void cli_progress_end(CliProgress *p) { if (p->tty) fprintf(p->out, "\n"); }
