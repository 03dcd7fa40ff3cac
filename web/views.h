// views: the admin pages of `rlhf serve` and the sections of `rlhf report`, rendered from a
// workspace database into HTML fragments (inline SVG charts, no script). Every text read from the
// database is HTML-escaped. Interactivity (sorting, searching, paging, choosing runs) is carried
// by the query string, so links and forms work under a CSP of default-src 'self'.
#ifndef VIEWS_H
#define VIEWS_H
#include <sqlite3.h>
#include <stddef.h>

// Renders admin view NAME ("progress", "reward", "runs", "rollouts", "pipeline", or "" for the
// dashboard) for query string QUERY (may be NULL) into a malloc'd NUL-terminated HTML fragment
// *out (caller frees). Returns 0, or -1 with err set (unknown view: -2).
int views_render(sqlite3 *db, const char *name, const char *query, char **out, char *err,
                 size_t errlen);
#endif
