// views: see views.h; the helpers the views share (views_impl.h), the dashboard and the entry
// points. Each view reads the workspace with its own prepared statements (SQL from constant
// strings, values bound) and writes HTML with html.h and charts with svg.h.
#include "views_impl.h"
#include "util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int views_db_err(View *v) {
    return util_err(v->err, v->errlen, "workspace database: %s", sqlite3_errmsg(v->db));
}

int views_prepare(View *v, const char *sql, sqlite3_stmt **st) {
    if (sqlite3_prepare_v2(v->db, sql, -1, st, NULL) != SQLITE_OK) {
        *st = NULL;
        return views_db_err(v);
    }
    return 0;
}

// Steps st: 1 a row, 0 done, -1 an error (message set).
int views_step(View *v, sqlite3_stmt *st) {
    int rc = sqlite3_step(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : views_db_err(v);
}

// The one integer a query returns (0 when no row), into *n.
int views_count(View *v, const char *sql, int64_t *n) {
    sqlite3_stmt *st;
    if (views_prepare(v, sql, &st)) return -1;
    int rc = views_step(v, st);
    *n = rc == 1 ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    return rc < 0 ? -1 : 0;
}

const char *views_text(sqlite3_stmt *st, int col) {
    const char *s = (const char *)sqlite3_column_text(st, col);
    return s ? s : "";
}
double views_real(sqlite3_stmt *st, int col) {
    return sqlite3_column_type(st, col) == SQLITE_NULL ? NAN : sqlite3_column_double(st, col);
}

// A number in a table cell with dec decimals (and its sign when sign): "–" for NaN.
void views_num(HtmlBuf *b, double x, int dec, int sign) {
    if (isfinite(x)) html_printf(b, sign ? "%+.*f" : "%.*f", dec, x);
    else html_put(b, "\xE2\x80\x93");
}

void views_h2(View *v, const char *id, const char *title) {
    html_printf(v->b, "<h2 id=\"%s\">", id);
    html_esc(v->b, title);
    html_put(v->b, "</h2>\n");
}

// An integer query parameter, clamped to [lo, hi]; dflt when absent or not a number.
int64_t views_param_int(const View *v, const char *key, int64_t dflt, int64_t lo,
                               int64_t hi) {
    char *s = html_query_get(v->query, key), *end;
    int64_t x = dflt;
    if (s && *s) {
        long long y = strtoll(s, &end, 10);
        if (!*end) x = y;
    }
    free(s);
    return x < lo ? lo : x > hi ? hi : x;
}

// ---------------------------------------------------------------------------------------------
// Dashboard
// ---------------------------------------------------------------------------------------------

static const struct { const char *name, *title; } views_pages[] = {
    {"progress", "Labeling progress and agreement"},
    {"reward", "Reward model"},
    {"runs", "Runs and metrics"},
    {"rollouts", "Rollouts"},
    {"pipeline", "Pipeline stages"},
};
#define VIEWS_NPAGES (sizeof views_pages / sizeof views_pages[0])

static int views_dashboard(View *v) {
    static const struct { const char *label, *sql; } counts[] = {
        {"prompts", "SELECT count(*) FROM prompts"},
        {"completions", "SELECT count(*) FROM completions"},
        {"labelers", "SELECT count(*) FROM labelers"},
        {"rankings", "SELECT count(*) FROM rankings"},
        {"reward models scored", "SELECT count(DISTINCT model) FROM reward_scores"},
        {"runs", "SELECT count(*) FROM runs"},
        {"metric values", "SELECT count(*) FROM metrics"},
        {"rollouts", "SELECT count(*) FROM rollouts"},
    };
    views_h2(v, "dashboard", "Workspace");
    html_put(v->b, "<table class=\"counts\"><tbody>\n");
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        int64_t n;
        if (views_count(v, counts[i].sql, &n)) return -1;
        html_printf(v->b, "<tr><th>%s</th><td class=\"num\">%lld</td></tr>\n", counts[i].label,
                    (long long)n);
    }
    html_put(v->b, "</tbody></table>\n");
    // the pages of `rlhf serve` (relative links), or the sections of the report
    html_put(v->b, "<ul class=\"views\">\n");
    for (size_t i = 0; i < VIEWS_NPAGES; i++)
        html_printf(v->b, "<li><a href=\"%s%s\">%s</a></li>\n", v->report ? "#" : "",
                    views_pages[i].name, views_pages[i].title);
    html_put(v->b, "</ul>\n");
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

static const struct { const char *name; int (*fn)(View *); } views_table[] = {
    {"", views_dashboard},         {"progress", views_progress}, {"reward", views_reward},
    {"runs", views_runs},          {"rollouts", views_rollouts}, {"pipeline", views_pipeline},
};

static int views_render_mode(sqlite3 *db, const char *name, const char *query, int report,
                             HtmlBuf *b, char *err, size_t errlen) {
    if (!name) name = "";
    for (size_t i = 0; i < sizeof views_table / sizeof views_table[0]; i++) {
        if (strcmp(name, views_table[i].name)) continue;
        View v = {db, b, query, report, err, errlen};
        html_printf(b, "<section class=\"view\" id=\"view-%s\">\n", *name ? name : "dashboard");
        if (views_table[i].fn(&v)) return -1;
        html_put(b, "</section>\n");
        return 0;
    }
    util_err(err, errlen, "unknown view '%.64s'", name);
    return -2;
}

int views_render(sqlite3 *db, const char *name, const char *query, char **out, char *err,
                 size_t errlen) {
    HtmlBuf b = {0};
    int rc = views_render_mode(db, name, query, 0, &b, err, errlen);
    if (rc) {
        html_free(&b);
        *out = NULL;
        return rc;
    }
    *out = html_take(&b);
    return 0;
}

int views_report(sqlite3 *db, const char *runs, char **out, char *err, size_t errlen) {
    HtmlBuf b = {0}, q = {0};
    if (runs) {
        html_put(&q, "run=");
        html_url_esc(&q, runs);
    }
    int rc = 0;
    for (size_t i = 0; i < sizeof views_table / sizeof views_table[0] && !rc; i++)
        rc = views_render_mode(db, views_table[i].name, q.s, 1, &b, err, errlen);
    html_free(&q);
    if (rc) {
        html_free(&b);
        *out = NULL;
        return -1;
    }
    *out = html_take(&b);
    return 0;
}

const char *views_css(void) {
    return "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:72em;color:#222;"
           "padding:0 1em}"
           "h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}"
           "table{border-collapse:collapse;margin:.8em 0;font-size:.9em}"
           "th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}"
           "thead th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:"
           "tabular-nums}"
           "svg.chart{display:inline-block;margin:.4em .8em .4em 0;border:1px solid #eee;"
           "background:#fff}"
           ".small-multiples svg.chart{width:400px;height:192px}"
           "figure.metric{display:inline-block;margin:0}"
           "pre.text{white-space:pre-wrap;max-width:40em;margin:.3em 0}"
           "details summary{cursor:pointer}.note,.empty{color:#555}"
           ".status-done{color:#1a7f37}.status-failed{color:#c62828}"
           ".status-running{color:#1f6feb}.status-interrupted{color:#b26a00}"
           "tr.selected{background:#f5f9ff}form{margin:.6em 0}";
}
