// `reward import` of one JSONL file into a workspace database (a temporary file, kept open across
// inputs, so later inputs meet the rows of earlier ones): the file is stored whole or not at all.
// A failed import changes no row and gives one line naming the file; a successful one adds the
// rankings it reports and one import row; a file imported before adds nothing.
#include "cmd.h"
#include "fuzz_common.h"
#include <sqlite3.h>

static const char *const TABLES[] = {"prompts", "demonstrations", "completions", "labelers", "rankings",
                                     "ranking_items", "imports"};
enum { NT = sizeof TABLES / sizeof TABLES[0] };

static void counts(Store *s, int64_t *n) {
    for (int i = 0; i < NT; i++) {
        char q[64];
        snprintf(q, sizeof q, "SELECT count(*) FROM %s", TABLES[i]);
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(store_sqlite(s), q, -1, &st, NULL) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW) abort();
        n[i] = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static Store *s;
    char err[1024] = "", p[512];
    if (!s) {
        snprintf(p, sizeof p, "%s/workspace.db", fuzz_tmpdir());
        if (store_open(&s, p, err, sizeof err)) { fprintf(stderr, "%s\n", err); exit(1); }
    }
    fuzz_write("rankings.jsonl", data, size, p, sizeof p);
    int64_t before[NT], after[NT];
    counts(s, before);
    ImportOptions o = {.valid_frac = 0.05, .test_frac = 0.05};
    ImportResult r;
    int rc = rm_import_file(s, p, &o, &r, err, sizeof err);
    counts(s, after);
    if (rc) {
        if (!err[0] || strchr(err, '\n') || strchr(err, '\r') || !strstr(err, "rankings.jsonl")) abort();
        if (memcmp(before, after, sizeof before)) abort();   // nothing of a bad file is stored
    } else if (r.already) {
        if (memcmp(before, after, sizeof before)) abort();
    } else {
        if (after[4] - before[4] != r.rankings || after[6] - before[6] != 1) abort();
        if (r.rankings + r.prompts + r.demonstrations + r.skipped > r.lines) abort();
    }
    return 0;
}
