// views: see views.h.
#include "views.h"
#include "util.h"
#include <stdio.h>
#include <string.h>

static const char *const views_names[] = {"", "progress", "reward", "runs", "rollouts", "pipeline"};

int views_render(sqlite3 *db, const char *name, const char *query, char **out, char *err,
                 size_t errlen) {
    *out = NULL;
    if (!name) name = "";
    size_t n = sizeof views_names / sizeof views_names[0];
    for (size_t i = 0; i < n; i++) {
        if (strcmp(name, views_names[i])) continue;
        char buf[256];
        snprintf(buf, sizeof buf, "<section class=\"view\" id=\"view-%s\"></section>\n",
                 name[0] ? name : "dashboard");
        *out = STRDUP_CHECK(buf);
        return 0;
    }
    util_err(err, errlen, "unknown view '%.64s'", name);
    return -2;
}
