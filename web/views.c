// views: see views.h. Each view reads the workspace with its own prepared statements (SQL from
// constant strings, values bound) and writes HTML with html.h and charts with svg.h.
#include "views.h"
#include "html.h"
#include "reward.h"
#include "svg.h"
#include "util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// What a view writes into and reads from.
typedef struct {
    sqlite3 *db;
    HtmlBuf *b;
    const char *query;   // the query string (NULL: none)
    int report;          // 1: a section of `rlhf report` (no forms, no links between pages)
    char *err;
    size_t errlen;
} View;

// "now" in Unix seconds, as the store writes times
#define VIEWS_NOW "((julianday('now') - 2440587.5) * 86400.0)"
#define VIEWS_PAGE_ROWS 25     // rollouts per page
#define VIEWS_MAX_GROUPS 8     // histograms per source or rank shown
#define VIEWS_DEFAULT_RUNS 4   // runs charted when none is asked for

static int views_db_err(View *v) {
    return util_err(v->err, v->errlen, "workspace database: %s", sqlite3_errmsg(v->db));
}

static int views_prepare(View *v, const char *sql, sqlite3_stmt **st) {
    if (sqlite3_prepare_v2(v->db, sql, -1, st, NULL) != SQLITE_OK) {
        *st = NULL;
        return views_db_err(v);
    }
    return 0;
}

// Steps st: 1 a row, 0 done, -1 an error (message set).
static int views_step(View *v, sqlite3_stmt *st) {
    int rc = sqlite3_step(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : views_db_err(v);
}

// The one integer a query returns (0 when no row), into *n.
static int views_count(View *v, const char *sql, int64_t *n) {
    sqlite3_stmt *st;
    if (views_prepare(v, sql, &st)) return -1;
    int rc = views_step(v, st);
    *n = rc == 1 ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    return rc < 0 ? -1 : 0;
}

static const char *views_text(sqlite3_stmt *st, int col) {
    const char *s = (const char *)sqlite3_column_text(st, col);
    return s ? s : "";
}
static double views_real(sqlite3_stmt *st, int col) {
    return sqlite3_column_type(st, col) == SQLITE_NULL ? NAN : sqlite3_column_double(st, col);
}

// A number in a table cell with dec decimals (and its sign when sign): "–" for NaN.
static void views_num(HtmlBuf *b, double x, int dec, int sign) {
    if (isfinite(x)) html_printf(b, sign ? "%+.*f" : "%.*f", dec, x);
    else html_put(b, "\xE2\x80\x93");
}

static void views_h2(View *v, const char *id, const char *title) {
    html_printf(v->b, "<h2 id=\"%s\">", id);
    html_esc(v->b, title);
    html_put(v->b, "</h2>\n");
}

// An integer query parameter, clamped to [lo, hi]; dflt when absent or not a number.
static int64_t views_param_int(const View *v, const char *key, int64_t dflt, int64_t lo,
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
    if (!v->report) {
        html_put(v->b, "<ul class=\"views\">\n");
        for (size_t i = 0; i < VIEWS_NPAGES; i++)
            html_printf(v->b, "<li><a href=\"%s\">%s</a></li>\n", views_pages[i].name,
                        views_pages[i].title);
        html_put(v->b, "</ul>\n");
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Labeling progress and inter-labeler agreement
// ---------------------------------------------------------------------------------------------

// Prompts queued for labeling: by one of their sources, or with no source recorded
#define VIEWS_QUEUED \
    "coalesce((SELECT max(ps.to_label) FROM prompt_sources ps WHERE ps.prompt_id = p.id), 1)"

static int views_progress_totals(View *v) {
    static const char *sql =
        "SELECT count(*),"
        " sum(EXISTS (SELECT 1 FROM rankings r WHERE r.prompt_id = p.id)),"
        " sum(NOT EXISTS (SELECT 1 FROM rankings r WHERE r.prompt_id = p.id) AND EXISTS"
        "     (SELECT 1 FROM claims c WHERE c.prompt_id = p.id AND c.skipped = 0"
        "      AND c.expires > " VIEWS_NOW "))"
        " FROM prompts p WHERE " VIEWS_QUEUED;
    sqlite3_stmt *st;
    if (views_prepare(v, sql, &st)) return -1;
    int rc = views_step(v, st);
    if (rc == 1) {
        int64_t queued = sqlite3_column_int64(st, 0), done = sqlite3_column_int64(st, 1),
                claimed = sqlite3_column_int64(st, 2);
        html_printf(v->b,
                    "<table class=\"counts progress-totals\"><tbody>"
                    "<tr><th>prompts queued for labeling</th><td class=\"num\">%lld</td></tr>"
                    "<tr><th>done (ranked at least once)</th><td class=\"num\" "
                    "id=\"prompts-done\">%lld</td></tr>"
                    "<tr><th>claimed now</th><td class=\"num\" id=\"prompts-claimed\">%lld</td>"
                    "</tr><tr><th>remaining</th><td class=\"num\" id=\"prompts-remaining\">"
                    "%lld</td></tr></tbody></table>\n",
                    (long long)queued, (long long)done, (long long)claimed,
                    (long long)(queued - done - claimed));
    }
    sqlite3_finalize(st);
    return rc < 0 ? -1 : 0;
}

static int views_progress_labelers(View *v) {
    static const char *sql =
        "SELECT l.name, (SELECT count(*) FROM rankings r WHERE r.labeler_id = l.id),"
        " (SELECT count(*) FROM claims c WHERE c.labeler_id = l.id AND c.skipped = 0"
        "  AND c.expires > " VIEWS_NOW "),"
        " (SELECT count(*) FROM claims c WHERE c.labeler_id = l.id AND c.skipped = 1)"
        " FROM labelers l ORDER BY l.name";
    sqlite3_stmt *st;
    if (views_prepare(v, sql, &st)) return -1;
    char **names = NULL;
    double *counts = NULL;
    int64_t n = 0;
    HtmlBuf rows = {0};
    int rc;
    while ((rc = views_step(v, st)) == 1) {
        names = REALLOC_ARRAY(names, (size_t)n + 1, sizeof *names);
        counts = REALLOC_ARRAY(counts, (size_t)n + 1, sizeof *counts);
        names[n] = STRDUP_CHECK(views_text(st, 0));
        counts[n] = (double)sqlite3_column_int64(st, 1);
        html_put(&rows, "<tr class=\"labeler\"><td>");
        html_esc(&rows, names[n]);
        html_printf(&rows, "</td><td class=\"num\">%lld</td><td class=\"num\">%lld</td>"
                           "<td class=\"num\">%lld</td></tr>\n",
                    (long long)sqlite3_column_int64(st, 1), (long long)sqlite3_column_int64(st, 2),
                    (long long)sqlite3_column_int64(st, 3));
        n++;
    }
    sqlite3_finalize(st);
    if (rc == 0 && n) {
        svg_bars(v->b, "Rankings per labeler", (const char *const *)names, counts, n, 0);
        html_put(v->b, "<table class=\"labelers\"><thead><tr><th>labeler</th><th>rankings</th>"
                       "<th>claimed now</th><th>skipped</th></tr></thead><tbody>\n");
        html_put(v->b, rows.s);
        html_put(v->b, "</tbody></table>\n");
    } else if (rc == 0) {
        html_put(v->b, "<p class=\"empty\">No labelers yet.</p>\n");
    }
    for (int64_t i = 0; i < n; i++) free(names[i]);
    free(names);
    free(counts);
    html_free(&rows);
    return rc < 0 ? -1 : 0;
}

// One ranking, for the agreement between labelers.
typedef struct {
    int64_t id, prompt_id;
    char *labeler;
    int k;
    int64_t cid[REWARD_MAX_K];
    int rank[REWARD_MAX_K];
} ViewsRanking;

// Agreement of one pair of labelers over the prompts both ranked.
typedef struct {
    char name[160];
    int64_t compared;         // pairs of rankings (same prompt)
    RewardConcordance c;      // summed over them
    double tau_sum;           // Kendall's tau-b summed over the comparisons where it is defined
    int64_t tau_n;
} ViewsAgreement;

// The rankings of every prompt ranked by two labelers or more, by prompt.
static int views_load_overlap(View *v, ViewsRanking **out, int64_t *nout) {
    static const char *sql =
        "SELECT r.id, r.prompt_id, l.name, i.completion_id, i.rank FROM rankings r"
        " JOIN labelers l ON l.id = r.labeler_id JOIN ranking_items i ON i.ranking_id = r.id"
        " WHERE r.prompt_id IN (SELECT prompt_id FROM rankings GROUP BY prompt_id"
        "                       HAVING count(DISTINCT labeler_id) >= 2)"
        " ORDER BY r.prompt_id, r.id, i.completion_id";
    sqlite3_stmt *st;
    if (views_prepare(v, sql, &st)) return -1;
    ViewsRanking *r = NULL;
    int64_t n = 0;
    int rc;
    while ((rc = views_step(v, st)) == 1) {
        int64_t id = sqlite3_column_int64(st, 0);
        if (!n || r[n - 1].id != id) {
            r = REALLOC_ARRAY(r, (size_t)n + 1, sizeof *r);
            r[n] = (ViewsRanking){.id = id, .prompt_id = sqlite3_column_int64(st, 1),
                                  .labeler = STRDUP_CHECK(views_text(st, 2))};
            n++;
        }
        ViewsRanking *x = &r[n - 1];
        if (x->k < REWARD_MAX_K) {
            x->cid[x->k] = sqlite3_column_int64(st, 3);
            x->rank[x->k++] = sqlite3_column_int(st, 4);
        }
    }
    sqlite3_finalize(st);
    *out = r;
    *nout = n;
    return rc < 0 ? -1 : 0;
}

static ViewsAgreement *views_agreement_of(ViewsAgreement **g, int64_t *n, const char *name) {
    for (int64_t i = 0; i < *n; i++) if (!strcmp((*g)[i].name, name)) return &(*g)[i];
    *g = REALLOC_ARRAY(*g, (size_t)*n + 1, sizeof **g);
    ViewsAgreement *a = &(*g)[(*n)++];
    memset(a, 0, sizeof *a);
    snprintf(a->name, sizeof a->name, "%s", name);
    return a;
}

static void views_agreement_add(ViewsAgreement *a, const RewardConcordance *c) {
    a->compared++;
    a->c.pairs += c->pairs;
    a->c.concordant += c->concordant;
    a->c.discordant += c->discordant;
    a->c.tied_a += c->tied_a;
    a->c.tied_b += c->tied_b;
    double tau = reward_kendall_tau_b(c);
    if (isfinite(tau)) a->tau_sum += tau, a->tau_n++;
}

static void views_agreement_row(HtmlBuf *b, const ViewsAgreement *a, const char *cls) {
    int64_t untied = a->c.concordant + a->c.discordant;
    html_printf(b, "<tr class=\"%s\"><td>", cls);
    html_esc(b, a->name);
    html_printf(b, "</td><td class=\"num\">%lld</td><td class=\"num\">%lld</td><td class=\"num\">",
                (long long)a->compared, (long long)untied);
    views_num(b, untied ? (double)a->c.concordant / (double)untied : NAN, 3, 0);
    html_put(b, "</td><td class=\"num\">");
    views_num(b, a->tau_n ? a->tau_sum / (double)a->tau_n : NAN, 3, 1);
    html_put(b, "</td></tr>\n");
}

static int views_agreement(View *v) {
    ViewsRanking *r = NULL;
    int64_t n = 0, ng = 0;
    ViewsAgreement *g = NULL, all = {.name = "all pairs of labelers"};
    if (views_load_overlap(v, &r, &n)) goto fail;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n && r[j].prompt_id == r[i].prompt_id; j++) {
            int order = strcmp(r[i].labeler, r[j].labeler);
            if (!order) continue;   // the same labeler twice
            const ViewsRanking *a = order < 0 ? &r[i] : &r[j], *b = order < 0 ? &r[j] : &r[i];
            char name[160];
            snprintf(name, sizeof name, "%.70s / %.70s", a->labeler, b->labeler);
            RewardConcordance c = {0};
            reward_concordance(a->cid, a->rank, a->k, b->cid, b->rank, b->k, &c);
            views_agreement_add(views_agreement_of(&g, &ng, name), &c);
            views_agreement_add(&all, &c);
        }
    html_put(v->b, "<h3>Agreement between labelers</h3>\n"
                   "<p class=\"note\">On prompts ranked by two labelers or more: for each two "
                   "rankings of a prompt by different labelers, the pairs of completions both "
                   "ranked. <em>Agreement</em> is the share of the pairs neither tied that both "
                   "ordered the same way; <em>Kendall's &tau;<sub>b</sub></em> (ties counted, "
                   "from &minus;1 to 1) is averaged over the pairs of rankings.</p>\n");
    if (!ng) {
        html_put(v->b, "<p class=\"empty\">No prompt has been ranked by two labelers.</p>\n");
    } else {
        char **names = MALLOC_CHECK((size_t)ng * sizeof *names);
        double *agree = MALLOC_CHECK((size_t)ng * sizeof *agree);
        for (int64_t i = 0; i < ng; i++) {
            int64_t untied = g[i].c.concordant + g[i].c.discordant;
            names[i] = g[i].name;
            agree[i] = untied ? (double)g[i].c.concordant / (double)untied : NAN;
        }
        svg_bars(v->b, "Pairwise agreement per pair of labelers", (const char *const *)names,
                 agree, ng, 1.0);
        free(names);
        free(agree);
        html_put(v->b, "<table class=\"agreement\"><thead><tr><th>labelers</th>"
                       "<th>rankings compared</th><th>pairs untied by both</th>"
                       "<th>agreement</th><th>Kendall's &tau;<sub>b</sub></th></tr></thead>"
                       "<tbody>\n");
        for (int64_t i = 0; i < ng; i++) views_agreement_row(v->b, &g[i], "agreement-pair");
        views_agreement_row(v->b, &all, "agreement-all");
        html_put(v->b, "</tbody></table>\n");
    }
    for (int64_t i = 0; i < n; i++) free(r[i].labeler);
    free(r);
    free(g);
    return 0;
fail:
    for (int64_t i = 0; i < n; i++) free(r[i].labeler);
    free(r);
    return -1;
}

static int views_progress(View *v) {
    views_h2(v, "progress", "Labeling progress");
    if (views_progress_totals(v) || views_progress_labelers(v)) return -1;
    return views_agreement(v);
}

// ---------------------------------------------------------------------------------------------
// Reward model
// ---------------------------------------------------------------------------------------------

// The reward model to show: ?model=NAME, else the one with the most stored scores (the newest
// among equals). *model is malloc'd, NULL when the workspace has no scores.
static int views_reward_model(View *v, char **model) {
    *model = html_query_get(v->query, "model");
    sqlite3_stmt *st;
    if (views_prepare(v, "SELECT model, count(*) FROM reward_scores GROUP BY model"
                         " ORDER BY count(*) DESC, max(created) DESC", &st))
        return -1;
    int rc, any = 0;
    HtmlBuf list = {0};
    while ((rc = views_step(v, st)) == 1) {
        const char *m = views_text(st, 0);
        if (!*model) *model = STRDUP_CHECK(m);
        int cur = !strcmp(m, *model);
        any |= cur;
        html_put(&list, "<li>");
        if (!v->report && !cur) {
            html_put(&list, "<a href=\"?model=");
            html_url_esc(&list, m);
            html_put(&list, "\">");
        }
        html_esc(&list, m);
        if (!v->report && !cur) html_put(&list, "</a>");
        html_printf(&list, " (%lld scores)%s</li>\n", (long long)sqlite3_column_int64(st, 1),
                    cur ? " &larr; shown" : "");
    }
    sqlite3_finalize(st);
    if (rc == 0 && *model && !any) {
        html_free(&list);
        util_err(v->err, v->errlen, "no reward scores for model '%.200s'", *model);
        free(*model);
        *model = NULL;
        return -1;
    }
    if (list.n) {
        html_put(v->b, "<p>Reward models with stored scores:</p><ul class=\"models\">\n");
        html_put(v->b, list.s);
        html_put(v->b, "</ul>\n");
    }
    html_free(&list);
    return rc < 0 ? -1 : 0;
}

// Histograms of the model's scores grouped by a text column (the prompt's source, the rank):
// one over all scores, then one per group (the VIEWS_MAX_GROUPS largest), on the same bins.
typedef struct { char *name; int64_t *counts, total; } ViewsHist;

static int views_score_hists(View *v, const char *model, const char *sql, const char *what,
                             int with_all, int64_t bins) {
    sqlite3_stmt *st;
    if (views_prepare(v, sql, &st)) return -1;
    sqlite3_bind_text(st, 1, model, -1, SQLITE_TRANSIENT);
    double lo = INFINITY, hi = -INFINITY;
    int rc;
    while ((rc = views_step(v, st)) == 1) {   // the range first
        double x = views_real(st, 1);
        if (isfinite(x)) lo = fmin(lo, x), hi = fmax(hi, x);
    }
    if (rc < 0 || !isfinite(lo)) {
        sqlite3_finalize(st);
        return rc < 0 ? -1 : 0;
    }
    if (hi <= lo) hi = lo + 1;
    double w = (hi - lo) / (double)bins;
    ViewsHist all = {.counts = CALLOC_CHECK((size_t)bins, sizeof(int64_t))}, *g = NULL;
    int64_t ng = 0;
    sqlite3_reset(st);
    while ((rc = views_step(v, st)) == 1) {
        double x = views_real(st, 1);
        if (!isfinite(x)) continue;
        int64_t bin = (int64_t)((x - lo) / w);
        if (bin >= bins) bin = bins - 1;
        if (bin < 0) bin = 0;
        const char *name = views_text(st, 0);
        int64_t i = 0;
        while (i < ng && strcmp(g[i].name, name)) i++;
        if (i == ng) {
            g = REALLOC_ARRAY(g, (size_t)ng + 1, sizeof *g);
            g[ng++] = (ViewsHist){STRDUP_CHECK(name), CALLOC_CHECK((size_t)bins, sizeof(int64_t)),
                                  0};
        }
        g[i].counts[bin]++, g[i].total++;
        all.counts[bin]++, all.total++;
    }
    sqlite3_finalize(st);
    if (rc == 0) {
        char title[256];
        if (with_all) {
            snprintf(title, sizeof title, "Scores of %lld completions", (long long)all.total);
            svg_histogram(v->b, title, "score", all.counts, bins, lo, hi);
        }
        html_printf(v->b, "<div class=\"small-multiples\" data-by=\"%s\">\n", what);
        for (int64_t i = 0; i < ng && i < VIEWS_MAX_GROUPS; i++) {
            snprintf(title, sizeof title, "%s %.120s (%lld)", what, g[i].name,
                     (long long)g[i].total);
            svg_histogram(v->b, title, "score", g[i].counts, bins, lo, hi);
        }
        html_put(v->b, "</div>\n");
        if (ng > VIEWS_MAX_GROUPS)
            html_printf(v->b, "<p class=\"note\">%lld more groups not drawn.</p>\n",
                        (long long)(ng - VIEWS_MAX_GROUPS));
    }
    for (int64_t i = 0; i < ng; i++) free(g[i].name), free(g[i].counts);
    free(g);
    free(all.counts);
    return rc < 0 ? -1 : 0;
}

// Accuracy of the model on the pairs of a group of rankings
typedef struct { char name[128]; int64_t pairs; double correct; } ViewsAcc;

static void views_acc_add(ViewsAcc **g, int64_t *n, const char *name, double c) {
    int64_t i = 0;
    while (i < *n && strcmp((*g)[i].name, name)) i++;
    if (i == *n) {
        *g = REALLOC_ARRAY(*g, (size_t)*n + 1, sizeof **g);
        (*g)[i] = (ViewsAcc){.pairs = 0};
        snprintf((*g)[i].name, sizeof (*g)[i].name, "%s", name);
        (*n)++;
    }
    (*g)[i].pairs++;
    (*g)[i].correct += c;
}

static void views_acc_chart(View *v, const char *title, const char *what, const ViewsAcc *g,
                            int64_t n) {
    if (!n) return;
    const char **names = MALLOC_CHECK((size_t)n * sizeof *names);
    double *acc = MALLOC_CHECK((size_t)n * sizeof *acc);
    for (int64_t i = 0; i < n; i++)
        names[i] = g[i].name, acc[i] = g[i].correct / (double)g[i].pairs;
    svg_bars(v->b, title, names, acc, n, 1.0);
    html_printf(v->b, "<table class=\"accuracy\"><thead><tr><th>%s</th><th>pairs</th>"
                      "<th>accuracy</th></tr></thead><tbody>\n", what);
    for (int64_t i = 0; i < n; i++) {
        html_put(v->b, "<tr><td>");
        html_esc(v->b, g[i].name);
        html_printf(v->b, "</td><td class=\"num\">%lld</td><td class=\"num\">%.3f</td></tr>\n",
                    (long long)g[i].pairs, acc[i]);
    }
    html_put(v->b, "</tbody></table>\n");
    free(names);
    free(acc);
}

typedef struct { int64_t ranking, win, lose; double rw, rl; char *labeler; } ViewsMistake;

static int views_by_margin(const void *a, const void *b) {   // most negative r_w - r_l first
    const ViewsMistake *x = a, *y = b;
    double dx = x->rw - x->rl, dy = y->rw - y->rl;
    return dx < dy ? -1 : dx > dy ? 1 : (x->ranking > y->ranking) - (x->ranking < y->ranking);
}

// One text of a completion and its prompt, escaped, in a <details> showing its start.
static int views_completion_text(View *v, int64_t cid, int with_prompt) {
    sqlite3_stmt *st;
    if (views_prepare(v, "SELECT p.text, c.text FROM completions c"
                         " JOIN prompts p ON p.id = c.prompt_id WHERE c.id = ?1", &st))
        return -1;
    sqlite3_bind_int64(st, 1, cid);
    int rc = views_step(v, st);
    if (rc == 1) {
        const char *text = views_text(st, with_prompt ? 0 : 1);
        html_put(v->b, "<details><summary>");
        html_esc_short(v->b, text, 80);
        html_put(v->b, "</summary><pre class=\"text\">");
        html_esc(v->b, text);
        html_put(v->b, "</pre></details>");
    }
    sqlite3_finalize(st);
    return rc < 0 ? -1 : 0;
}

static int views_mistakes(View *v, ViewsMistake *m, int64_t nm, int64_t top) {
    if (nm) qsort(m, (size_t)nm, sizeof *m, views_by_margin);
    html_printf(v->b, "<h3>Most confident mistakes</h3>\n<p class=\"note\">%lld of the ranked "
                      "pairs are ordered the other way by the model; the %lld it is surest of:"
                      "</p>\n", (long long)nm, (long long)(nm < top ? nm : top));
    if (!nm) return 0;
    html_put(v->b, "<table class=\"mistakes\"><thead><tr><th>P(chosen)</th><th>labeler</th>"
                   "<th>prompt</th><th>chosen (score)</th><th>rejected (score)</th></tr></thead>"
                   "<tbody>\n");
    for (int64_t i = 0; i < nm && i < top; i++) {
        html_printf(v->b, "<tr class=\"mistake\"><td class=\"num\">%.3f</td><td>",
                    1.0 / (1.0 + exp(-(m[i].rw - m[i].rl))));
        html_esc(v->b, m[i].labeler);
        html_put(v->b, "</td><td>");
        if (views_completion_text(v, m[i].win, 1)) return -1;
        html_printf(v->b, "</td><td>%+.4f ", m[i].rw);
        if (views_completion_text(v, m[i].win, 0)) return -1;
        html_printf(v->b, "</td><td>%+.4f ", m[i].rl);
        if (views_completion_text(v, m[i].lose, 0)) return -1;
        html_put(v->b, "</td></tr>\n");
    }
    html_put(v->b, "</tbody></table>\n");
    return 0;
}

// Accuracy by K and by labeler, calibration and mistakes over every ranked pair (w ranked above
// l) of the rankings whose completions all have a score from the model, as `reward inspect`
// counts them.
static int views_reward_pairs(View *v, const char *model, int64_t top) {
    static const char *sql =
        "SELECT r.id, l.name, (SELECT count(*) FROM ranking_items k WHERE k.ranking_id = r.id),"
        " w.completion_id, sw.score, x.completion_id, sx.score"
        " FROM rankings r JOIN labelers l ON l.id = r.labeler_id"
        " JOIN ranking_items w ON w.ranking_id = r.id"
        " JOIN ranking_items x ON x.ranking_id = r.id AND w.rank < x.rank"
        " JOIN reward_scores sw ON sw.model = ?1 AND sw.completion_id = w.completion_id"
        " JOIN reward_scores sx ON sx.model = ?1 AND sx.completion_id = x.completion_id"
        " WHERE NOT EXISTS (SELECT 1 FROM ranking_items i WHERE i.ranking_id = r.id AND NOT"
        "   EXISTS (SELECT 1 FROM reward_scores s WHERE s.model = ?1"
        "           AND s.completion_id = i.completion_id))"
        " ORDER BY r.id, w.completion_id, x.completion_id";
    sqlite3_stmt *st;
    if (views_prepare(v, sql, &st)) return -1;
    sqlite3_bind_text(st, 1, model, -1, SQLITE_TRANSIENT);
    ViewsAcc *by_k = NULL, *by_labeler = NULL;
    int64_t nk = 0, nl = 0, nm = 0, cal_n[REWARD_CAL_BUCKETS] = {0};
    double cal_p[REWARD_CAL_BUCKETS] = {0}, cal_obs[REWARD_CAL_BUCKETS] = {0};
    ViewsMistake *m = NULL;
    int rc;
    while ((rc = views_step(v, st)) == 1) {
        double rw = sqlite3_column_double(st, 4), rl = sqlite3_column_double(st, 6),
               d = rw - rl, c = d > 0 ? 1.0 : d == 0 ? 0.5 : 0.0, p;
        char k[32];
        snprintf(k, sizeof k, "K=%lld", (long long)sqlite3_column_int64(st, 2));
        views_acc_add(&by_k, &nk, k, c);
        views_acc_add(&by_labeler, &nl, views_text(st, 1), c);
        int b = reward_calibration_bucket(d, &p);
        cal_n[b]++, cal_p[b] += p, cal_obs[b] += c;
        if (d < 0) {
            m = REALLOC_ARRAY(m, (size_t)nm + 1, sizeof *m);
            m[nm++] = (ViewsMistake){sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 3),
                                     sqlite3_column_int64(st, 5), rw, rl,
                                     STRDUP_CHECK(views_text(st, 1))};
        }
    }
    sqlite3_finalize(st);
    if (rc == 0 && !nk) {
        html_put(v->b, "<p class=\"empty\">No ranking has all its completions scored by this "
                       "model.</p>\n");
    } else if (rc == 0) {
        html_put(v->b, "<h3>Accuracy against the rankings</h3>\n");
        views_acc_chart(v, "Pairwise accuracy by K", "K", by_k, nk);
        views_acc_chart(v, "Pairwise accuracy by labeler", "labeler", by_labeler, nl);
        double pred[REWARD_CAL_BUCKETS], obs[REWARD_CAL_BUCKETS];
        for (int b = 0; b < REWARD_CAL_BUCKETS; b++) {
            pred[b] = cal_n[b] ? cal_p[b] / (double)cal_n[b] : NAN;
            obs[b] = cal_n[b] ? cal_obs[b] / (double)cal_n[b] : NAN;
        }
        html_put(v->b, "<h3>Calibration</h3>\n<p class=\"note\">The model's confidence in its "
                       "order of a pair, sigmoid(|r<sub>a</sub> &minus; r<sub>b</sub>|), in "
                       "buckets, against how often the labelers ordered the pair the same way."
                       "</p>\n");
        svg_calibration(v->b, "Calibration", pred, obs, cal_n, REWARD_CAL_BUCKETS);
        rc = views_mistakes(v, m, nm, top);
    }
    for (int64_t i = 0; i < nm; i++) free(m[i].labeler);
    free(m);
    free(by_k);
    free(by_labeler);
    return rc < 0 ? -1 : 0;
}

static int views_reward(View *v) {
    views_h2(v, "reward", "Reward model");
    char *model = NULL;
    if (views_reward_model(v, &model)) return -1;
    if (!model) {
        html_put(v->b, "<p class=\"empty\">No reward scores are stored yet: <code>reward "
                       "score</code> or <code>reward inspect</code> stores them.</p>\n");
        return 0;
    }
    int64_t bins = views_param_int(v, "bins", 20, 1, 200),
            top = views_param_int(v, "top", 5, 0, 1000);
    html_put(v->b, "<h3>Scores</h3>\n");
    int rc = views_score_hists(v, model,
                               "SELECT p.source, s.score FROM reward_scores s"
                               " JOIN completions c ON c.id = s.completion_id"
                               " JOIN prompts p ON p.id = c.prompt_id WHERE s.model = ?1"
                               " ORDER BY p.source, s.completion_id",
                               "source", 1, bins) ||
             views_score_hists(v, model,
                               "SELECT i.rank, s.score FROM ranking_items i"
                               " JOIN reward_scores s ON s.model = ?1"
                               " AND s.completion_id = i.completion_id"
                               " ORDER BY i.rank, i.ranking_id",
                               "rank", 0, bins) ||
             views_reward_pairs(v, model, top);
    free(model);
    return rc ? -1 : 0;
}

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
              " ORDER BY id DESC LIMIT 4";
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
    for (int64_t i = 0; i < nids; i++) html_printf(&json, "%s%lld", i ? "," : "", (long long)ids[i]);
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

static int views_runs(View *v) {
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

static int views_rollouts(View *v) {
    views_h2(v, "rollouts", "Rollouts");
    char *q = html_query_get(v->query, "q"), *sortp = html_query_get(v->query, "sort"),
         *orderp = html_query_get(v->query, "order");
    size_t sort = v->report ? 1 : 0;   // the report: highest scores first (reward hacking)
    for (size_t i = 0; sortp && i < VIEWS_NSORTS; i++)
        if (!strcmp(sortp, views_sorts[i].key)) sort = i;
    int desc = !orderp || strcmp(orderp, "asc");
    int64_t run = views_param_int(v, "run", 0, 0, INT64_MAX),
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
                      "%lld, by %s (%s first).</p>\n",
                (long long)total, (long long)total, *query ? " match" : "", (long long)page,
                (long long)pages, views_sorts[sort].label, desc ? "highest" : "lowest");
    html_put(v->b, "<table class=\"rollouts\"><thead><tr>");
    static const char *heads[] = {"id", "run", "iteration", "score", "reward", "KL", "tokens",
                                  "prompt", "response"};
    for (size_t h = 0; h < sizeof heads / sizeof heads[0]; h++) {
        size_t s = VIEWS_NSORTS;
        for (size_t i = 0; i < VIEWS_NSORTS; i++) if (!strcmp(heads[h], views_sorts[i].label)) s = i;
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

static int views_pipeline(View *v) {
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
