// Tests for web/ (html, svg, views) and the CRC-32C of TensorBoard files (common/hash.c):
// CRC-32C against the published check values (RFC 3720 B.4 and the "123456789" check), the
// escaping of every HTML metacharacter, bad UTF-8 and control bytes, query strings, the SVG
// element counts, and the rollout browser's search, sort and paging on a scratch workspace.
#include "hash.h"
#include "html.h"
#include "reward.h"
#include "store.h"
#include "svg.h"
#include "testlib.h"
#include "views.h"
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_crc32c(void) {
    CHECK(hash_crc32c(0, "123456789", 9) == 0xE3069283u);
    CHECK(hash_crc32c(0, "", 0) == 0);
    unsigned char buf[32];
    memset(buf, 0, sizeof buf);
    CHECK(hash_crc32c(0, buf, 32) == 0x8A9136AAu);            // RFC 3720 B.4: 32 zeros
    memset(buf, 0xFF, sizeof buf);
    CHECK(hash_crc32c(0, buf, 32) == 0x62A8AB43u);            // 32 bytes of 0xFF
    for (int i = 0; i < 32; i++) buf[i] = (unsigned char)i;
    CHECK(hash_crc32c(0, buf, 32) == 0x46DD794Eu);            // 0, 1, ..., 31
    // continuing over two pieces gives the CRC of the whole
    CHECK(hash_crc32c(hash_crc32c(0, "1234", 4), "56789", 5) == 0xE3069283u);
    // TFRecord's mask: rotate right by 15, add 0xA282EAD8
    CHECK(hash_crc32c_mask(0) == 0xA282EAD8u);
    CHECK(hash_crc32c_mask(0xE3069283u) == (((0xE3069283u >> 15) | (0xE3069283u << 17)) +
                                            0xA282EAD8u));
}

// Two labelers on one prompt, worked by hand. a: 8 > 7 = no (ranks 1, 2, 2); b: no > 7 > 8
// (ranks 3, 2, 1 for the same ids, in another order). Pairs: (8, 7) and (8, no) discordant,
// (7, no) tied by a: C = 0, D = 2, P = 3, Ta = 1, Tb = 0, tau-b = -2 / sqrt(2 * 3).
static void test_agreement(void) {
    int64_t ida[3] = {10, 11, 12}, idb[4] = {12, 11, 10, 99};
    int ra[3] = {1, 2, 2}, rb[4] = {1, 2, 3, 1};
    RewardConcordance c = {0};
    reward_concordance(ida, ra, 3, idb, rb, 4, &c);
    CHECK(c.pairs == 3 && c.concordant == 0 && c.discordant == 2 && c.tied_a == 1 &&
          c.tied_b == 0);
    CHECK(fabs(reward_kendall_tau_b(&c) + 2 / sqrt(6.0)) < 1e-12);
    RewardConcordance same = {0};   // a ranking against itself: tau-b 1 even with a tie
    reward_concordance(ida, ra, 3, ida, ra, 3, &same);
    CHECK(same.concordant == 2 && same.discordant == 0 && reward_kendall_tau_b(&same) == 1.0);
    RewardConcordance ties = {0};   // every pair tied by one side: undefined
    int all[3] = {1, 1, 1};
    reward_concordance(ida, all, 3, ida, ra, 3, &ties);
    CHECK(isnan(reward_kendall_tau_b(&ties)));
    double p;   // calibration buckets: 0.5-0.6, ..., 0.9-1.0 of sigmoid(|margin|)
    CHECK(reward_calibration_bucket(0, &p) == 0 && p == 0.5);
    CHECK(reward_calibration_bucket(-0.5, &p) == 1 && fabs(p - 1 / (1 + exp(-0.5))) < 1e-15);
    CHECK(reward_calibration_bucket(50, &p) == REWARD_CAL_BUCKETS - 1);
}

static void test_escape(void) {
    HtmlBuf b = {0};
    html_esc(&b, "<a href=\"x\">Tom & 'Jerry'</a>");
    CHECK(!strcmp(b.s, "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"));
    html_free(&b);
    html_escn(&b, "a\0b\x01\tc\n\xC3\xA9\xFF\xE2\x82", 12);   // NUL, control, é, bad bytes
    CHECK(!strcmp(b.s, "a\xEF\xBF\xBD" "b\xEF\xBF\xBD\tc\n\xC3\xA9\xEF\xBF\xBD\xEF\xBF\xBD"
                       "\xEF\xBF\xBD"));
    html_free(&b);
    html_esc_short(&b, "\xC3\xA9t\xC3\xA9 <long>", 4);
    CHECK(!strcmp(b.s, "\xC3\xA9t\xC3\xA9 \xE2\x80\xA6"));
    char *s = html_take(&b);
    CHECK(b.s == NULL && b.n == 0);
    free(s);
    html_url_esc(&b, "a b&c=d/é");
    CHECK(!strcmp(b.s, "a%20b%26c%3Dd%2F%C3%A9"));
    html_free(&b);
    s = html_take(&b);
    CHECK(!strcmp(s, ""));
    free(s);
}

static void test_query(void) {
    char *v = html_query_get("?q=a+b%3Cc&run=1&run=2&x", "q");
    CHECK(v && !strcmp(v, "a b<c"));
    free(v);
    v = html_query_get("q=1&run=1&run=2&x", "run");
    CHECK(v && !strcmp(v, "1,2"));
    free(v);
    v = html_query_get("q=1&x", "x");
    CHECK(v && !strcmp(v, ""));
    free(v);
    CHECK(html_query_get("q=1", "run") == NULL);
    CHECK(html_query_get(NULL, "q") == NULL);
    v = html_query_get("q=%zz%4", "q");   // bad escapes are kept as they are
    CHECK(v && !strcmp(v, "%zz%4"));
    free(v);
}

static int count(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

static void test_svg(void) {
    HtmlBuf b = {0};
    int64_t counts[6] = {3, 0, 1, 0, 0, 7};
    svg_histogram(&b, "scores <of> \"x\"", "score", counts, 6, -1, 2);
    CHECK(count(b.s, "class=\"bar\"") == 3);                 // bins holding data only
    CHECK(strstr(b.s, "<title>scores &lt;of&gt; &quot;x&quot;</title>") != NULL);
    CHECK(!strstr(b.s, "<of>"));
    CHECK(count(b.s, "<svg") == 1 && count(b.s, "</svg>") == 1);
    html_free(&b);
    double x[3] = {1, 2, 3}, y1[3] = {1, NAN, 3}, y2[3] = {NAN, NAN, NAN};
    SvgSeries s[3] = {{"a&b", x, y1, 3}, {"nothing", x, y2, 3}, {"<c>", x, y1, 1}};
    svg_lines(&b, "loss", "step", s, 3);
    CHECK(count(b.s, "class=\"series\"") == 2);              // the all-NaN series draws nothing
    CHECK(count(b.s, "class=\"legend-item\"") == 3);
    CHECK(strstr(b.s, "a&amp;b") && strstr(b.s, "&lt;c&gt;") && !strstr(b.s, "<c>"));
    CHECK(count(b.s, "class=\"tick") >= 4);
    html_free(&b);
    double pred[3] = {0.55, 0.7, 0.9}, obs[3] = {0.6, 0.5, 1.0};
    int64_t n[3] = {4, 0, 2};
    svg_calibration(&b, "cal", pred, obs, n, 3);
    CHECK(count(b.s, "class=\"point\"") == 2 && count(b.s, "class=\"diagonal\"") == 1);
    html_free(&b);
    // 100,000 points: at most 4 per pixel column are drawn, and a one-step spike is one of them
    int64_t np = 100000;
    double *lx = malloc((size_t)np * sizeof *lx), *ly = malloc((size_t)np * sizeof *ly);
    for (int64_t i = 0; i < np; i++) lx[i] = (double)i, ly[i] = i == 54321 ? 10.0 : 1.0 / (1 + i);
    SvgSeries longer = {"long", lx, ly, np};
    svg_lines(&b, "long", "step", &longer, 1);
    const char *pts = strstr(b.s, "class=\"series\"");
    pts = pts ? strstr(pts, "points=\"") : NULL;
    int npts = 0;
    for (const char *p = pts; p && *p && *p != '>'; p++) npts += *p == ',';
    CHECK(npts > 400 && npts <= 4 * (SVG_WIDTH + 1));
    CHECK(pts && strstr(pts, ",28.00 ") && strstr(pts, ",28.00 ") < strstr(pts, "</polyline>"));
    free(lx);
    free(ly);
    html_free(&b);
    double big[2] = {-1.7e308, 1.7e308}, bx[2] = {0, 1e-300};   // no NaN coordinates, ever
    SvgSeries extreme = {"extreme", bx, big, 2};
    svg_lines(&b, "extreme", "step", &extreme, 1);
    CHECK(!strstr(b.s, "nan") && !strstr(b.s, "inf") && count(b.s, "class=\"series\"") == 1);
    html_free(&b);
    const char *labels[3] = {"x", "<y>", "z"};
    double vals[3] = {0.5, NAN, -0.25};
    svg_bars(&b, "bars", labels, vals, 3, 1);
    CHECK(count(b.s, "class=\"bar\"") == 2 && strstr(b.s, "&lt;y&gt;"));
    html_free(&b);
}

// A scratch workspace with 40 rollouts: every 5th says "HACK", score i mod 7, kl i / 10.
static Store *rollout_workspace(const char *dir) {
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/ws.db", dir);
    Store *st = NULL;
    if (store_open(&st, path, err, sizeof err)) {
        test_fail_at(__FILE__, __LINE__, "%s", err);
        return NULL;
    }
    const char *sql =
        "INSERT INTO runs(id, stage, status, started) VALUES (1, 'ppo', 'done', 1);"
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 40)"
        " INSERT INTO rollouts(run_id, iteration, prompt, response, score, kl, response_tokens,"
        " created) SELECT 1, 0, 'p<' || i, CASE WHEN i % 5 = 0 THEN 'HACK ' ELSE 'ok ' END || i,"
        " i % 7, i / 10.0, 41 - i, 1 FROM s;";
    CHECK(sqlite3_exec(store_sqlite(st), sql, NULL, NULL, NULL) == SQLITE_OK);
    return st;
}

// Whether html has an event-handler attribute (" onclick=", " onload=", ...)
static int has_handler(const char *html) {
    for (const char *p = strstr(html, " on"); p; p = strstr(p + 1, " on")) {
        const char *q = p + 3;
        while (*q >= 'a' && *q <= 'z') q++;
        if (q > p + 3 && *q == '=') return 1;
    }
    return 0;
}

// The id in the first rollout row of html
static long first_id(const char *html) {
    const char *p = strstr(html, "<tr class=\"rollout\"><td class=\"num\">");
    return p ? strtol(p + strlen("<tr class=\"rollout\"><td class=\"num\">"), NULL, 10) : -1;
}

static void test_rollouts(void) {
    char dir[256], err[256];
    if (test_scratch_dir(dir, sizeof dir, "test_web")) return;
    Store *st = rollout_workspace(dir);
    if (!st) return;
    sqlite3 *db = store_sqlite(st);
    char *out = NULL;
    CHECK(views_render(db, "rollouts", "q=hack&sort=kl&order=asc", &out, err, sizeof err) == 0);
    CHECK(out && count(out, "<tr class=\"rollout\">") == 8 && first_id(out) == 5);
    CHECK(out && strstr(out, "data-total=\"8\"") && strstr(out, "p&lt;5"));
    free(out);
    CHECK(views_render(db, "rollouts", "sort=length", &out, err, sizeof err) == 0);
    CHECK(out && count(out, "<tr class=\"rollout\">") == 25 && first_id(out) == 1);
    CHECK(out && strstr(out, "rel=\"next\"") && !strstr(out, "rel=\"prev\""));
    free(out);
    CHECK(views_render(db, "rollouts", "sort=length&page=2", &out, err, sizeof err) == 0);
    CHECK(out && count(out, "<tr class=\"rollout\">") == 15 && first_id(out) == 26);
    CHECK(out && strstr(out, "rel=\"prev\"") && !strstr(out, "rel=\"next\""));
    free(out);
    CHECK(views_render(db, "rollouts", "sort=score&page=99", &out, err, sizeof err) == 0);
    CHECK(out && strstr(out, "page 2 of 2"));   // past the end: the last page
    free(out);
    CHECK(views_render(db, "nope", NULL, &out, err, sizeof err) == -2 && out == NULL);
    CHECK(strstr(err, "unknown view 'nope'") != NULL);
    int64_t *ids, n;
    CHECK_ERR(views_runs_select(db, "1,zzz", &ids, &n, err, sizeof err), err, "unknown run 'zzz'",
              NULL);
    CHECK(views_runs_select(db, "ppo,1", &ids, &n, err, sizeof err) == 0 && n == 1 && ids[0] == 1);
    free(ids);
    CHECK(views_render(db, "", NULL, &out, err, sizeof err) == 0 && strstr(out, "view-dashboard"));
    free(out);
    // every view on a workspace without labels or scores, with odd parameters: their empty
    // states, no error
    static const char *names[] = {"progress", "reward", "runs", "rollouts", "pipeline"};
    for (int i = 0; i < 5; i++) {
        out = NULL;
        int rc = views_render(db, names[i], "page=-5&bins=0&top=-1&sort=%3Cx%3E&order=up&q=%00",
                              &out, err, sizeof err);
        CHECK_MSG(rc == 0 && out && strstr(out, "</section>"), "view %s: %s", names[i], err);
        // under a CSP of default-src 'self': no script, no inline style, no event handler
        CHECK_MSG(out && !strstr(out, "<script") && !strstr(out, "style=") &&
                      !strstr(out, "<style") && !has_handler(out),
                  "view %s has something a CSP blocks", names[i]);
        free(out);
    }
    CHECK(views_render(db, "progress", NULL, &out, err, sizeof err) == 0 &&
          strstr(out, "No prompt has been ranked by two labelers"));
    free(out);
    CHECK(views_render(db, "reward", NULL, &out, err, sizeof err) == 0 &&
          strstr(out, "No reward scores are stored yet"));
    free(out);
    out = (char *)"untouched";
    CHECK_ERR(views_render(db, "reward", "model=%3Cm%3E", &out, err, sizeof err), err,
              "no reward scores for model '<m>'", NULL);
    CHECK(out == NULL);
    CHECK_ERR(views_render(db, "runs", "run=1,abc", &out, err, sizeof err), err,
              "unknown run 'abc'", NULL);
    store_close(st);
    test_rm_rf(dir);
}

int main(void) {
    test_case("crc32c", test_crc32c);
    test_case("agreement", test_agreement);
    test_case("escape", test_escape);
    test_case("query", test_query);
    test_case("svg", test_svg);
    test_case("rollouts", test_rollouts);
    return test_summary();
}
