// views_label: labeling progress (prompts queued, done, claimed, remaining; per labeler counts)
// and the agreement between labelers on the prompts several of them ranked (views_impl.h).
#include "reward.h"
#include "svg.h"
#include "util.h"
#include "views_impl.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int views_progress(View *v) {
    views_h2(v, "progress", "Labeling progress");
    if (views_progress_totals(v) || views_progress_labelers(v)) return -1;
    return views_agreement(v);
}
