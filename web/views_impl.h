// views_impl: what the files of the views module share (views.c: the helpers, the dashboard and
// the entry points; views_label.c: labeling progress and agreement; views_reward.c: the reward
// model; views_runs.c: runs and metrics, rollouts, pipeline stages). Private to web/views*.c.
#ifndef VIEWS_IMPL_H
#define VIEWS_IMPL_H
#include "html.h"
#include "views.h"
#include <stdint.h>

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
#define VIEWS_STR_(x) #x
#define VIEWS_STR(x) VIEWS_STR_(x)   // a number macro as a string literal (in SQL text)

// Database errors: "workspace database: MESSAGE" in v->err, -1.
int views_db_err(View *v);
int views_prepare(View *v, const char *sql, sqlite3_stmt **st);   // 0, or -1 with the message
int views_step(View *v, sqlite3_stmt *st);   // 1 a row, 0 done, -1 an error (message set)
int views_count(View *v, const char *sql, int64_t *n);   // the one integer a query returns
const char *views_text(sqlite3_stmt *st, int col);      // a text column ("" for NULL)
double views_real(sqlite3_stmt *st, int col);           // a number column (NaN for NULL)
// A number in a table cell with dec decimals (and its sign when sign): "–" for NaN.
void views_num(HtmlBuf *b, double x, int dec, int sign);
void views_h2(View *v, const char *id, const char *title);   // a section's heading
// An integer query parameter, clamped to [lo, hi]; dflt when absent or not a number.
int64_t views_param_int(const View *v, const char *key, int64_t dflt, int64_t lo, int64_t hi);

// The views (each writes its section's content, after its heading; 0 or -1 with v->err set)
int views_progress(View *v);   // views_label.c
int views_reward(View *v);     // views_reward.c
int views_runs(View *v);       // views_runs.c
int views_rollouts(View *v);
int views_pipeline(View *v);
#endif
