// views_runs: runs with their metric curves, the rollout browser (search, sort, pages) and the
// pipeline stages (views_impl.h).
#include "svg.h"
#include "util.h"
#include "views_impl.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// Runs and their metrics
// ---------------------------------------------------------------------------------------------

int views_runs_select(sqlite3 *db, const char *list, int64_t **ids, int64_t *n, char *err,
                      size_t errlen) {
    View v = {.db = db, .err = err, .errlen = errlen};
    *ids = NULL;
    *n = 0;
    const char *sql = "SELECT id FROM runs WHERE CAST(id AS TEXT) = ?1 OR name = ?1 OR stage = ?1"
                      " ORDER BY id";
    if (!list || !*list)
        sql = "SELECT id FROM runs r WHERE EXISTS (SELECT 1 FROM metrics m WHERE m.run_id = r.id)"
              " ORDER BY id DESC LIMIT " VIEWS_STR(VIEWS_DEFAULT_RUNS);
    sqlite3_stmt *st;
    if (views_prepare(&v, sql, &st)) return -1;
    const char *p = list ? list : "";
    do {
        size_t len = strcspn(p, ",");
        if (list && *list) {
            if (!len) { p += *p ? 1 : 0; continue; }
            sqlite3_reset(st);
            sqlite3_bind_text(st, 1, p, (int)len, SQLITE_TRANSIENT);
        }
        int rc, found = 0;
        while ((rc = views_step(&v, st)) == 1) {
            int64_t id = sqlite3_column_int64(st, 0), dup = 0;
            found = 1;
            for (int64_t i = 0; i < *n; i++) dup |= (*ids)[i] == id;
            if (dup) continue;
            *ids = REALLOC_ARRAY(*ids, (size_t)*n + 1, sizeof **ids);
            (*ids)[(*n)++] = id;
        }
        if (rc < 0 || (!found && list && *list)) {
            if (rc == 0)
                util_err(err, errlen, "unknown run '%.*s' (a run id, name or stage)",
                         (int)(len > 200 ? 200 : len), p);
            sqlite3_finalize(st);
            free(*ids);
            *ids = NULL;
            *n = 0;
            return -1;
        }
        p += len;
        if (*p) p++;
    } while (*p);
    sqlite3_finalize(st);
    if (!list || !*list)   // the newest runs were found newest first: show them oldest first
        for (int64_t i = 0; i < *n / 2; i++) {
            int64_t t = (*ids)[i];
            (*ids)[i] = (*ids)[*n - 1 - i], (*ids)[*n - 1 - i] = t;
        }
    return 0;
}

// The label of a run in legends: "run ID stage" (and its name when it has one).
static int views_run_label(View *v, int64_t id, char *buf, size_t n) {
    sqlite3_stmt *st;
    if (views_prepare(v, "SELECT stage, name FROM runs WHERE id = ?1", &st)) return -1;
    sqlite3_bind_int64(st, 1, id);
    int rc = views_step(v, st);
    if (rc == 1) {
        const char *name = views_text(st, 1), *slash = strrchr(name, '/');
        snprintf(buf, n, "run %lld %s%s%.60s", (long long)id, views_text(st, 0), *name ? " " : "",
                 slash ? slash + 1 : name);
    } else {
        snprintf(buf, n, "run %lld", (long long)id);
    }
    sqlite3_finalize(st);
    return rc < 0 ? -1 : 0;
}

static int views_runs_table(View *v, const int64_t *ids, int64_t nids) {
    sqlite3_stmt *st;
    if (views_prepare(v, "SELECT r.id, r.stage, r.name, r.status, datetime(r.started, 'unixepoch'),"
                         " r.finished - r.started,"
                         " (SELECT count(*) FROM metrics m WHERE m.run_id = r.id)"
                         " FROM runs r ORDER BY r.id DESC LIMIT 200", &st))
        return -1;
    if (!v->report) html_put(v->b, "<form method=\"get\" class=\"runs\">\n");
    html_put(v->b, "<table class=\"runs\"><thead><tr><th></th><th>run</th><th>stage</th>"
                   "<th>name</th><th>status</th><th>started (UTC)</th><th>seconds</th>"
                   "<th>metric values</th></tr></thead><tbody>\n");
    int rc;
    while ((rc = views_step(v, st)) == 1) {
        int64_t id = sqlite3_column_int64(st, 0), on = 0;
        for (int64_t i = 0; i < nids; i++) on |= ids[i] == id;
        html_printf(v->b, "<tr class=\"run%s\"><td>", on ? " selected" : "");
        if (!v->report)
            html_printf(v->b, "<input type=\"checkbox\" name=\"run\" value=\"%lld\"%s>",
                        (long long)id, on ? " checked" : "");
        else if (on)
            html_put(v->b, "&#10003;");
        html_printf(v->b, "</td><td class=\"num\">%lld</td><td>", (long long)id);
        html_esc(v->b, views_text(st, 1));
        html_put(v->b, "</td><td>");
        html_esc(v->b, views_text(st, 2));
        html_put(v->b, "</td><td class=\"status status-");
        html_esc(v->b, views_text(st, 3));
        html_put(v->b, "\">");
        html_esc(v->b, views_text(st, 3));
        html_put(v->b, "</td><td>");
        html_esc(v->b, views_text(st, 4));
        html_put(v->b, "</td><td class=\"num\">");
        views_num(v->b, views_real(st, 5), 1, 0);
        html_printf(v->b, "</td><td class=\"num\">%lld</td></tr>\n",
                    (long long)sqlite3_column_int64(st, 6));
    }
    sqlite3_finalize(st);
    html_put(v->b, "</tbody></table>\n");
    if (!v->report) html_put(v->b, "<button type=\"submit\">Chart these runs</button></form>\n");
    return rc < 0 ? -1 : 0;
}

// One chart per metric name logged by any of the runs, one series per run that logged it.
static int views_metric_charts(View *v, const int64_t *ids, int64_t nids) {
    sqlite3_stmt *names, *pts;
    if (views_prepare(v, "SELECT DISTINCT name FROM metrics WHERE run_id IN"
                         " (SELECT value FROM json_each(?1)) ORDER BY name", &names))
        return -1;
    if (views_prepare(v, "SELECT step, value FROM metrics WHERE run_id = ?1 AND name = ?2"
                         " ORDER BY step", &pts)) {
        sqlite3_finalize(names);
        return -1;
    }
    HtmlBuf json = {0};
    html_put(&json, "[");
    for (int64_t i = 0; i < nids; i++)
        html_printf(&json, "%s%lld", i ? "," : "", (long long)ids[i]);
    html_put(&json, "]");
    sqlite3_bind_text(names, 1, json.s, -1, SQLITE_TRANSIENT);
    html_free(&json);
    char (*labels)[128] = MALLOC_CHECK((size_t)(nids ? nids : 1) * sizeof *labels);
    SvgSeries *series = CALLOC_CHECK((size_t)(nids ? nids : 1), sizeof *series);
    double **xs = CALLOC_CHECK((size_t)(nids ? nids : 1), sizeof *xs),
           **ys = CALLOC_CHECK((size_t)(nids ? nids : 1), sizeof *ys);
    int rc = 0;
    for (int64_t i = 0; i < nids && !rc; i++) rc = views_run_label(v, ids[i], labels[i], 128);
    html_put(v->b, "<div class=\"metric-charts\">\n");
    while (!rc && (rc = views_step(v, names)) == 1) {
        const char *name = views_text(names, 0);
        int64_t ns = 0;
        for (int64_t r = 0; r < nids && rc >= 0; r++) {
            sqlite3_reset(pts);
            sqlite3_bind_int64(pts, 1, ids[r]);
            sqlite3_bind_text(pts, 2, name, -1, SQLITE_TRANSIENT);
            int64_t n = 0;
            while ((rc = views_step(v, pts)) == 1) {
                xs[ns] = REALLOC_ARRAY(xs[ns], (size_t)n + 1, sizeof(double));
                ys[ns] = REALLOC_ARRAY(ys[ns], (size_t)n + 1, sizeof(double));
                xs[ns][n] = (double)sqlite3_column_int64(pts, 0);
                ys[ns][n++] = views_real(pts, 1);
            }
            if (n) series[ns] = (SvgSeries){labels[r], xs[ns], ys[ns], n}, ns++;
        }
        if (rc < 0) break;
        html_put(v->b, "<figure class=\"metric\" data-metric=\"");
        html_esc(v->b, name);
        html_put(v->b, "\">");
        svg_lines(v->b, name, "step", series, ns);
        html_put(v->b, "</figure>\n");
        rc = 0;
    }
    html_put(v->b, "</div>\n");
    for (int64_t i = 0; i < nids; i++) free(xs[i]), free(ys[i]);
    free(xs);
    free(ys);
    free(series);
    free(labels);
    sqlite3_finalize(names);
    sqlite3_finalize(pts);
    return rc < 0 ? -1 : 0;
}

int views_runs(View *v) {
    views_h2(v, "runs", "Runs and metrics");
    char *list = html_query_get(v->query, "run");
    int64_t *ids = NULL, n = 0;
    int rc = views_runs_select(v->db, list, &ids, &n, v->err, v->errlen);
    free(list);
    if (rc) return -1;
    rc = views_runs_table(v, ids, n);
    if (!rc && !n)
        html_put(v->b, "<p class=\"empty\">No run has logged metrics yet.</p>\n");
    else if (!rc)
        rc = views_metric_charts(v, ids, n);
    free(ids);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Rollouts
// ---------------------------------------------------------------------------------------------

static const struct { const char *key, *label, *col; } views_sorts[] = {
    {"id", "id", "r.id"},
    {"score", "score", "r.score"},
    {"reward", "reward", "r.reward"},
    {"kl", "KL", "r.kl"},
    {"length", "tokens", "r.response_tokens"},
};
#define VIEWS_NSORTS (sizeof views_sorts / sizeof views_sorts[0])

#define VIEWS_ROLLOUT_WHERE \
    " WHERE (?1 = 0 OR r.run_id = ?1) AND (?2 = '' OR instr(lower(r.prompt), lower(?2)) > 0" \
    " OR instr(lower(r.response), lower(?2)) > 0)"

// A link to the rollout browser with this search, run, sort, order and page.
static void views_rollout_link(HtmlBuf *b, const char *q, int64_t run, const char *sort,
                               int desc, int64_t page) {
    html_put(b, "?q=");
    html_url_esc(b, q);
    if (run) html_printf(b, "&amp;run=%lld", (long long)run);
    html_printf(b, "&amp;sort=%s&amp;order=%s&amp;page=%lld", sort, desc ? "desc" : "asc",
                (long long)page);
}

static void views_rollout_row(View *v, sqlite3_stmt *st) {
    html_printf(v->b, "<tr class=\"rollout\"><td class=\"num\">%lld</td><td class=\"num\">%lld"
                      "</td><td class=\"num\">%lld</td>",
                (long long)sqlite3_column_int64(st, 0), (long long)sqlite3_column_int64(st, 1),
                (long long)sqlite3_column_int64(st, 2));
    for (int c = 3; c <= 5; c++) {
        html_put(v->b, "<td class=\"num\">");
        views_num(v->b, views_real(st, c), 4, 1);
        html_put(v->b, "</td>");
    }
    html_printf(v->b, "<td class=\"num\">%lld%s</td>", (long long)sqlite3_column_int64(st, 6),
                sqlite3_column_int(st, 7) ? "" : "+");
    for (int c = 8; c <= 9; c++) {
        html_put(v->b, "<td><details><summary>");
        html_esc_short(v->b, views_text(st, c), 60);
        html_put(v->b, "</summary><pre class=\"text\">");
        html_esc(v->b, views_text(st, c));
        html_put(v->b, "</pre></details></td>");
    }
    html_put(v->b, "</tr>\n");
}

static void views_rollout_form(View *v, const char *q, int64_t run, size_t sort, int desc) {
    html_put(v->b, "<form method=\"get\" class=\"search\"><label>search <input type=\"search\" "
                   "name=\"q\" value=\"");
    html_esc(v->b, q);
    html_put(v->b, "\"></label> <label>sort <select name=\"sort\">");
    for (size_t i = 0; i < VIEWS_NSORTS; i++)
        html_printf(v->b, "<option value=\"%s\"%s>%s</option>", views_sorts[i].key,
                    i == sort ? " selected" : "", views_sorts[i].label);
    html_printf(v->b, "</select></label> <select name=\"order\"><option value=\"desc\"%s>"
                      "highest first</option><option value=\"asc\"%s>lowest first</option>"
                      "</select>", desc ? " selected" : "", desc ? "" : " selected");
    if (run) html_printf(v->b, "<input type=\"hidden\" name=\"run\" value=\"%lld\">",
                         (long long)run);
    html_put(v->b, " <button type=\"submit\">Show</button></form>\n");
}

int views_rollouts(View *v) {
    views_h2(v, "rollouts", "Rollouts");
    char *q = html_query_get(v->query, "q"), *sortp = html_query_get(v->query, "sort"),
         *orderp = html_query_get(v->query, "order");
    size_t sort = v->report ? 1 : 0;   // the report: highest scores first (reward hacking)
    for (size_t i = 0; sortp && i < VIEWS_NSORTS; i++)
        if (!strcmp(sortp, views_sorts[i].key)) sort = i;
    int desc = !orderp || strcmp(orderp, "asc");
    // the report's run parameter names the runs to chart: its rollouts are every run's
    int64_t run = v->report ? 0 : views_param_int(v, "run", 0, 0, INT64_MAX),
            page = views_param_int(v, "page", 1, 1, INT64_MAX / VIEWS_PAGE_ROWS);
    const char *query = q ? q : "";
    free(sortp);
    free(orderp);
    char sql[1024];
    snprintf(sql, sizeof sql,
             "SELECT r.id, r.run_id, r.iteration, r.score, r.reward, r.kl, r.response_tokens,"
             " r.ended, r.prompt, r.response FROM rollouts r" VIEWS_ROLLOUT_WHERE
             " ORDER BY %s IS NULL, %s %s, r.id LIMIT ?3 OFFSET ?4",
             views_sorts[sort].col, views_sorts[sort].col, desc ? "DESC" : "ASC");
    sqlite3_stmt *cnt = NULL, *st = NULL;
    int rc = -1;
    if (views_prepare(v, "SELECT count(*) FROM rollouts r" VIEWS_ROLLOUT_WHERE, &cnt) ||
        views_prepare(v, sql, &st))
        goto out;
    sqlite3_bind_int64(cnt, 1, run);
    sqlite3_bind_text(cnt, 2, query, -1, SQLITE_TRANSIENT);
    if ((rc = views_step(v, cnt)) < 0) goto out;
    int64_t total = sqlite3_column_int64(cnt, 0),
            pages = total ? (total + VIEWS_PAGE_ROWS - 1) / VIEWS_PAGE_ROWS : 1;
    if (page > pages) page = pages;
    if (!v->report) views_rollout_form(v, query, run, sort, desc);
    html_printf(v->b, "<p class=\"matches\" data-total=\"%lld\">%lld rollouts%s, page %lld of "
                      "%lld, by %s (%s first); tokens N+: the response was cut at the length "
                      "limit.</p>\n",
                (long long)total, (long long)total, *query ? " match" : "", (long long)page,
                (long long)pages, views_sorts[sort].label, desc ? "highest" : "lowest");
    html_put(v->b, "<table class=\"rollouts\"><thead><tr>");
    static const char *heads[] = {"id", "run", "iteration", "score", "reward", "KL", "tokens",
                                  "prompt", "response"};
    for (size_t h = 0; h < sizeof heads / sizeof heads[0]; h++) {
        size_t s = VIEWS_NSORTS;
        for (size_t i = 0; i < VIEWS_NSORTS; i++)
            if (!strcmp(heads[h], views_sorts[i].label)) s = i;
        html_put(v->b, "<th>");
        if (s < VIEWS_NSORTS && !v->report) {   // a header sorts by its column (again: flips)
            html_put(v->b, "<a href=\"");
            views_rollout_link(v->b, query, run, views_sorts[s].key, s == sort ? !desc : 1, 1);
            html_printf(v->b, "\">%s</a>", heads[h]);
        } else {
            html_put(v->b, heads[h]);
        }
        html_put(v->b, "</th>");
    }
    html_put(v->b, "</tr></thead><tbody>\n");
    sqlite3_bind_int64(st, 1, run);
    sqlite3_bind_text(st, 2, query, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, VIEWS_PAGE_ROWS);
    sqlite3_bind_int64(st, 4, (page - 1) * VIEWS_PAGE_ROWS);
    while ((rc = views_step(v, st)) == 1) views_rollout_row(v, st);
    html_put(v->b, "</tbody></table>\n");
    if (rc == 0 && !v->report && pages > 1) {
        html_put(v->b, "<nav class=\"pages\">");
        if (page > 1) {
            html_put(v->b, "<a rel=\"prev\" href=\"");
            views_rollout_link(v->b, query, run, views_sorts[sort].key, desc, page - 1);
            html_put(v->b, "\">previous</a> ");
        }
        if (page < pages) {
            html_put(v->b, "<a rel=\"next\" href=\"");
            views_rollout_link(v->b, query, run, views_sorts[sort].key, desc, page + 1);
            html_put(v->b, "\">next</a>");
        }
        html_put(v->b, "</nav>\n");
    }
out:
    sqlite3_finalize(cnt);
    sqlite3_finalize(st);
    free(q);
    return rc < 0 ? -1 : 0;
}

// ---------------------------------------------------------------------------------------------
// Pipeline stages
// ---------------------------------------------------------------------------------------------

static void views_run_cells(View *v, sqlite3_stmt *st, int first) {
    // columns from first: stage or name, status, started, seconds, exit code
    html_put(v->b, "<td>");
    html_esc(v->b, views_text(st, first));
    html_put(v->b, "</td><td class=\"status status-");
    html_esc(v->b, views_text(st, first + 1));
    html_put(v->b, "\">");
    html_esc(v->b, views_text(st, first + 1));
    html_put(v->b, "</td><td>");
    html_esc(v->b, views_text(st, first + 2));
    html_put(v->b, "</td><td class=\"num\">");
    views_num(v->b, views_real(st, first + 3), 1, 0);
    html_put(v->b, "</td><td class=\"num\">");
    if (sqlite3_column_type(st, first + 4) != SQLITE_NULL)
        html_printf(v->b, "%d", sqlite3_column_int(st, first + 4));
    html_put(v->b, "</td>");
}

int views_pipeline(View *v) {
    views_h2(v, "pipeline", "Pipeline stages");
    html_put(v->b, "<p class=\"note\">Each <code>rlhf run</code> of a pipeline file, newest first, "
                   "with the stages it ran (a stage skipped because nothing changed has no row in "
                   "that run).</p>\n");
    sqlite3_stmt *pipes, *stages;
    if (views_prepare(v, "SELECT id, name, status, datetime(started, 'unixepoch'),"
                         " finished - started, exit_code FROM runs WHERE stage = 'pipeline'"
                         " ORDER BY id DESC LIMIT 20", &pipes))
        return -1;
    if (views_prepare(v, "SELECT id, stage, status, datetime(started, 'unixepoch'),"
                         " finished - started, exit_code, checkpoint FROM runs"
                         " WHERE parent_id = ?1 ORDER BY id", &stages)) {
        sqlite3_finalize(pipes);
        return -1;
    }
    int rc, any = 0;
    while ((rc = views_step(v, pipes)) == 1) {
        any = 1;
        html_printf(v->b, "<table class=\"pipeline\"><caption>run %lld: ",
                    (long long)sqlite3_column_int64(pipes, 0));
        html_esc(v->b, views_text(pipes, 1));
        html_put(v->b, "</caption><thead><tr><th>run</th><th>stage</th><th>status</th>"
                       "<th>started (UTC)</th><th>seconds</th><th>exit</th><th>output</th></tr>"
                       "</thead><tbody>\n<tr class=\"pipeline-run\"><td></td>");
        views_run_cells(v, pipes, 1);
        html_put(v->b, "<td></td></tr>\n");
        sqlite3_reset(stages);
        sqlite3_bind_int64(stages, 1, sqlite3_column_int64(pipes, 0));
        while ((rc = views_step(v, stages)) == 1) {
            html_printf(v->b, "<tr class=\"stage\"><td class=\"num\">%lld</td>",
                        (long long)sqlite3_column_int64(stages, 0));
            views_run_cells(v, stages, 1);
            html_put(v->b, "<td>");
            html_esc(v->b, views_text(stages, 6));
            html_put(v->b, "</td></tr>\n");
        }
        html_put(v->b, "</tbody></table>\n");
        if (rc < 0) break;
    }
    if (rc == 0 && !any)
        html_put(v->b, "<p class=\"empty\">No pipeline has run in this workspace.</p>\n");
    sqlite3_finalize(pipes);
    sqlite3_finalize(stages);
    return rc < 0 ? -1 : 0;
}
