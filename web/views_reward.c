// views_reward: a reward model's stored scores against the workspace (views_impl.h): score
// histograms overall, by prompt source and by rank, pairwise accuracy by K and by labeler,
// calibration, and the most confident mistakes with their texts.
#include "reward.h"
#include "svg.h"
#include "util.h"
#include "views_impl.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
// one over all scores (when with_all), then one per group (the first VIEWS_MAX_GROUPS in the
// query's order), all on the same bins.
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

int views_reward(View *v) {
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
