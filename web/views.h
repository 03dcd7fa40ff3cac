// views: the admin pages of `rlhf serve` and the sections of `rlhf report`, rendered from a
// workspace database into HTML fragments (inline SVG charts, no script). Every text read from the
// database is HTML-escaped. Interactivity (sorting, searching, paging, choosing runs) is carried
// by the query string, so links and forms work under a CSP of default-src 'self'.
#ifndef VIEWS_H
#define VIEWS_H
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

// Renders admin view NAME ("progress", "reward", "runs", "rollouts", "pipeline", or "" for the
// dashboard) for query string QUERY (may be NULL) into a malloc'd NUL-terminated HTML fragment
// *out (caller frees). Returns 0, or -1 with err set (unknown view: -2).
int views_render(sqlite3 *db, const char *name, const char *query, char **out, char *err,
                 size_t errlen);

// Every view, one after the other, as the sections of a self-contained report (no forms, no
// links between pages; the rollouts by highest score first), for `rlhf report`. RUNS: the runs
// to chart, as for views_runs_select (NULL: the newest runs with metrics). Same ownership and
// errors as views_render.
int views_report(sqlite3 *db, const char *runs, char **out, char *err, size_t errlen);

// The runs named by LIST, a comma-separated list of run ids, run names or stages (a name or a
// stage stands for every run that has it), in id order without repeats, into *ids (malloc'd,
// caller frees; *n of them). LIST NULL or "": the newest runs that logged metrics (up to 4),
// oldest first. An item no run matches: -1, err "unknown run 'X' ...".
int views_runs_select(sqlite3 *db, const char *list, int64_t **ids, int64_t *n, char *err,
                      size_t errlen);

// The style sheet the views' classes are drawn with (a constant string): a page serves it as a
// file (a CSP without 'unsafe-inline' blocks inline styles), the report inlines it.
const char *views_css(void);
#endif
