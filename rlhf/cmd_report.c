// rlhf report: the workspace's charts and tables in one self-contained HTML file (inline SVG and
// CSS, no script, nothing fetched), the same views `rlhf serve` shows (web/views.h). The file is
// written beside --out and renamed over it, so a failure leaves an earlier report whole.
#include "cli.h"
#include "commands.h"
#include "fileio.h"
#include "html.h"
#include "pipeline.h"
#include "store.h"
#include "util.h"
#include "views.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int rlhf_workspace_open(const char *ws, Store **st, char *err, size_t errlen) {
    *st = NULL;
    struct stat sb;
    if (stat(ws, &sb))
        return util_err(err, errlen, "workspace %s: %s", ws, strerror(errno));
    char path[FIO_PATH_CAP];
    if (S_ISDIR(sb.st_mode)) {
        if (fio_path_join(path, ws, PIPELINE_DB, err, errlen)) return -1;
        if (stat(path, &sb))
            return util_err(err, errlen, "workspace %s: no %s in it", ws, PIPELINE_DB);
    } else {
        snprintf(path, sizeof path, "%s", ws);
    }
    return store_open(st, path, err, errlen);
}

int rlhf_write_replacing(const char *path, const void *data, size_t n, char *err,
                         size_t errlen) {
    char tmp[FIO_PATH_CAP];
    if (snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return util_err(err, errlen, "%s: path too long", path);
    unlink(tmp);
    if (fio_write_file(tmp, data, n, err, errlen)) return -1;
    if (rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        return util_err(err, errlen, "%s: cannot write: %s", path, strerror(e));
    }
    return 0;
}

// The comma-separated list of the --run values (NULL when none), malloc'd.
char *rlhf_join_list(const CliList *l) {
    if (!l->n) return NULL;
    HtmlBuf b = {0};
    for (int i = 0; i < l->n; i++) {
        if (i) html_put(&b, ",");
        html_put(&b, l->items[i]);
    }
    return html_take(&b);
}

static const char *report_usage =
    "usage: rlhf report WORKSPACE --out FILE.html [--run RUN]...\n"
    "Writes the workspace's dashboards into one self-contained HTML file (inline SVG charts and\n"
    "CSS, no script, nothing fetched): labeling progress and agreement between labelers, the\n"
    "reward model's scores, accuracy and calibration, the runs' metric curves, the rollouts with\n"
    "the highest scores and the pipeline stages. WORKSPACE is a workspace directory (holding\n"
    "workspace.db) or the database file.\n"
    "  --out FILE     the report (replaced when it exists)\n"
    "  --run RUN      a run to chart: its id, name or stage (repeatable; default: the newest\n"
    "                 runs that logged metrics)\n";

static int report_run(const char *ws, const char *out, const CliList *runs, char *err,
                      size_t errlen) {
    Store *st = NULL;
    char *body = NULL, *list = rlhf_join_list(runs);
    HtmlBuf doc = {0};
    int rc = -1;
    if (rlhf_workspace_open(ws, &st, err, errlen) ||
        views_report(store_sqlite(st), list, &body, err, errlen))
        goto done;
    char when[64];
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    html_put(&doc, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                   "<title>rlhf.c report: ");
    html_esc(&doc, ws);
    html_printf(&doc, "</title><style>%s</style></head><body>\n<h1>rlhf.c report</h1>\n"
                      "<p class=\"note\">Workspace <code>", views_css());
    html_esc(&doc, ws);
    html_printf(&doc, "</code>, written %s.</p>\n", when);
    html_put(&doc, body);
    html_put(&doc, "</body></html>\n");
    rc = rlhf_write_replacing(out, doc.s, doc.n, err, errlen);
done:
    html_free(&doc);
    free(body);
    free(list);
    store_close(st);
    return rc;
}

int cmd_report(int argc, char **argv) {
    const char *ws = NULL, *out = NULL;
    CliList runs = {0};
    CliOption opts[] = {CLI_STRING("--out", &out, .required = 1), CLI_LIST("--run", &runs), {0}};
    CliCommand cmd = {.prog = "rlhf report", .usage = report_usage, .opts = opts,
                      .arg_name = "WORKSPACE", .arg = &ws, .args_min = 1, .value_status = 1};
    int status;
    if (cli_parse(&cmd, argc, argv, &status)) return status;
    char err[1024];
    int rc = report_run(ws, out, &runs, err, sizeof err);
    cli_list_free(&runs);
    if (rc) {
        fprintf(stderr, "rlhf report: %s\n", err);
        return 1;
    }
    return 0;
}
