// rlhf metrics export: the metrics table (what sft, reward, ppo and dpo log per step) in files
// other tools read: CSV, JSON lines, or TensorBoard event files (tfevents.h), one per run.
#include "cli.h"
#include "commands.h"
#include "fileio.h"
#include "html.h"
#include "store.h"
#include "tfevents.h"
#include "util.h"
#include "views.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *metrics_usage =
    "usage: rlhf metrics export WORKSPACE --format csv|jsonl|tensorboard [--run RUN]...\n"
    "                           [--out PATH]\n"
    "Exports the logged metrics (one row per run, metric and step). WORKSPACE is a workspace\n"
    "directory (holding workspace.db) or the database file.\n"
    "  --format F   csv: a header and one line per value (run_id,stage,run_name,name,step,value,\n"
    "               time; an empty value is a NaN); jsonl: one JSON object per value (value null\n"
    "               for a NaN); tensorboard: event files, one per run, in OUT/<id>-<stage>/\n"
    "  --run RUN    a run: its id, name or stage (repeatable; default: every run)\n"
    "  --out PATH   the file (csv, jsonl; default: standard output, replaced when it exists) or\n"
    "               the directory (tensorboard, required; made when absent)\n";

typedef enum { FMT_CSV, FMT_JSONL, FMT_TB } MetricsFormat;

typedef struct {
    sqlite3 *db;
    MetricsFormat fmt;
    const char *out;
    int64_t *ids, nids;      // the runs, or none for every run
    char *err;
    size_t errlen;
} Export;

static int export_db_err(Export *e) {
    return util_err(e->err, e->errlen, "workspace database: %s", sqlite3_errmsg(e->db));
}

// A CSV field, quoted (quotes doubled) when it holds a comma, a quote or a line break.
static void csv_field(HtmlBuf *b, const char *s) {
    if (!strpbrk(s, ",\"\r\n")) {
        html_put(b, s);
        return;
    }
    html_put(b, "\"");
    for (; *s; s++) html_put(b, *s == '"' ? "\"\"" : (char[2]){*s, 0});
    html_put(b, "\"");
}

// One metric row in CSV or JSON lines
static void export_row(Export *e, HtmlBuf *b, sqlite3_stmt *st) {
    const char *stage = (const char *)sqlite3_column_text(st, 1),
               *name = (const char *)sqlite3_column_text(st, 2),
               *metric = (const char *)sqlite3_column_text(st, 3);
    long long run = sqlite3_column_int64(st, 0), step = sqlite3_column_int64(st, 4);
    int null = sqlite3_column_type(st, 5) == SQLITE_NULL;
    double value = sqlite3_column_double(st, 5), time = sqlite3_column_double(st, 6);
    if (e->fmt == FMT_CSV) {
        html_printf(b, "%lld,", run);
        csv_field(b, stage);
        html_put(b, ",");
        csv_field(b, name);
        html_put(b, ",");
        csv_field(b, metric);
        html_printf(b, ",%lld,", step);
        if (!null) html_printf(b, "%.17g", value);
        html_printf(b, ",%.6f\n", time);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "run_id", (double)run);
    cJSON_AddStringToObject(o, "stage", stage);
    cJSON_AddStringToObject(o, "run_name", name);
    cJSON_AddStringToObject(o, "name", metric);
    cJSON_AddNumberToObject(o, "step", (double)step);
    if (null) cJSON_AddNullToObject(o, "value");
    else cJSON_AddNumberToObject(o, "value", value);
    cJSON_AddNumberToObject(o, "time", time);
    char *s = cJSON_PrintUnformatted(o);
    if (!s) DIE("out of memory");
    html_put(b, s);
    html_put(b, "\n");
    free(s);
    cJSON_Delete(o);
}

static int export_text(Export *e, sqlite3_stmt *st) {
    HtmlBuf b = {0};
    if (e->fmt == FMT_CSV) html_put(&b, "run_id,stage,run_name,name,step,value,time\n");
    int rc;
    for (int64_t r = 0; r < (e->nids ? e->nids : 1); r++) {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, e->nids ? e->ids[r] : 0);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) export_row(e, &b, st);
        if (rc != SQLITE_DONE) {
            html_free(&b);
            return export_db_err(e);
        }
    }
    if (e->out) rc = rlhf_write_replacing(e->out, b.s ? b.s : "", b.n, e->err, e->errlen);
    else if ((rc = fwrite(b.s ? b.s : "", 1, b.n, stdout) != b.n || fflush(stdout) ? -1 : 0))
        util_err(e->err, e->errlen, "standard output: %s", strerror(errno));
    html_free(&b);
    return rc;
}

static int export_mkdir(const char *dir, char *err, size_t errlen) {
    if (mkdir(dir, 0777) && errno != EEXIST)
        return util_err(err, errlen, "%s: cannot make the directory: %s", dir, strerror(errno));
    struct stat sb;
    if (stat(dir, &sb) || !S_ISDIR(sb.st_mode))
        return util_err(err, errlen, "%s: not a directory", dir);
    return 0;
}

// One run's event file: OUT/<id>-<stage>/events.out.tfevents.<started>.rlhf, written beside and
// renamed into place. A stage's characters other than letters, digits, '-', '_', '.' become '_'.
static int export_tb_run(Export *e, sqlite3_stmt *st, int64_t id, const char *stage,
                         double started) {
    char dir[FIO_PATH_CAP], path[FIO_PATH_CAP], sub[160];
    int n = snprintf(sub, sizeof sub, "%lld-%.100s", (long long)id, stage);
    for (int i = 0; i < n && i < (int)sizeof sub - 1; i++)
        if (!strchr("-_.", sub[i]) && !((sub[i] | 32) >= 'a' && (sub[i] | 32) <= 'z') &&
            !(sub[i] >= '0' && sub[i] <= '9'))
            sub[i] = '_';
    if (fio_path_join(dir, e->out, sub, e->err, e->errlen) || export_mkdir(dir, e->err, e->errlen))
        return -1;
    char file[96];
    snprintf(file, sizeof file, "events.out.tfevents.%lld.rlhf", (long long)started);
    if (fio_path_join(path, dir, file, e->err, e->errlen)) return -1;
    char *data = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&data, &len);
    if (!f) DIE("out of memory");
    int rc = tfevents_write_version(f, started), src = SQLITE_DONE;
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, id);
    while (!rc && (src = sqlite3_step(st)) == SQLITE_ROW) {
        double v = sqlite3_column_type(st, 5) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 5);
        rc = tfevents_write_scalar(f, sqlite3_column_double(st, 6), sqlite3_column_int64(st, 4),
                                   (const char *)sqlite3_column_text(st, 3), (float)v);
    }
    if (fclose(f) || rc) DIE("out of memory");   // a memory stream fails only so
    rc = src != SQLITE_DONE ? export_db_err(e)
                            : rlhf_write_replacing(path, data, len, e->err, e->errlen);
    free(data);
    return rc;
}

static int export_tb(Export *e, sqlite3_stmt *st) {
    if (export_mkdir(e->out, e->err, e->errlen)) return -1;
    sqlite3_stmt *runs;
    if (sqlite3_prepare_v2(e->db, "SELECT id, stage, started FROM runs r WHERE (?1 = 0 OR id = ?1)"
                                  " AND EXISTS (SELECT 1 FROM metrics m WHERE m.run_id = r.id)"
                                  " ORDER BY id", -1, &runs, NULL) != SQLITE_OK)
        return export_db_err(e);
    int rc = 0, src = SQLITE_DONE;
    for (int64_t r = 0; r < (e->nids ? e->nids : 1) && !rc; r++) {
        sqlite3_reset(runs);
        sqlite3_bind_int64(runs, 1, e->nids ? e->ids[r] : 0);
        while (!rc && (src = sqlite3_step(runs)) == SQLITE_ROW)
            rc = export_tb_run(e, st, sqlite3_column_int64(runs, 0),
                               (const char *)sqlite3_column_text(runs, 1),
                               sqlite3_column_double(runs, 2));
        if (!rc && src != SQLITE_DONE) rc = export_db_err(e);
    }
    sqlite3_finalize(runs);
    return rc;
}

static int export_run(const char *ws, Export *e, const CliList *runs) {
    Store *store = NULL;
    char *list = rlhf_join_list(runs);
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (rlhf_workspace_open(ws, &store, e->err, e->errlen)) goto done;
    e->db = store_sqlite(store);
    if (list && views_runs_select(e->db, list, &e->ids, &e->nids, e->err, e->errlen)) goto done;
    if (sqlite3_prepare_v2(e->db, "SELECT m.run_id, r.stage, r.name, m.name, m.step, m.value,"
                                  " m.time FROM metrics m JOIN runs r ON r.id = m.run_id"
                                  " WHERE ?1 = 0 OR m.run_id = ?1 ORDER BY m.run_id, m.name,"
                                  " m.step", -1, &st, NULL) != SQLITE_OK) {
        export_db_err(e);
        goto done;
    }
    rc = e->fmt == FMT_TB ? export_tb(e, st) : export_text(e, st);
done:
    sqlite3_finalize(st);
    free(e->ids);
    free(list);
    store_close(store);
    return rc;
}

static int metrics_export(int argc, char **argv) {
    const char *ws = NULL, *format = NULL, *out = NULL;
    CliList runs = {0};
    CliOption opts[] = {CLI_STRING("--format", &format, .required = 1),
                        CLI_STRING("--out", &out), CLI_LIST("--run", &runs), {0}};
    CliCommand cmd = {.prog = "rlhf metrics export", .usage = metrics_usage, .opts = opts,
                      .arg_name = "WORKSPACE", .arg = &ws, .args_min = 1, .value_status = 1};
    int status;
    if (cli_parse(&cmd, argc, argv, &status)) return status;
    char err[1024];
    Export e = {.out = out, .err = err, .errlen = sizeof err};
    if (!strcmp(format, "csv")) e.fmt = FMT_CSV;
    else if (!strcmp(format, "jsonl")) e.fmt = FMT_JSONL;
    else if (!strcmp(format, "tensorboard")) e.fmt = FMT_TB;
    else {
        fprintf(stderr, "rlhf metrics export: --format '%s': expected csv, jsonl or tensorboard\n",
                format);
        cli_list_free(&runs);
        return 1;
    }
    if (e.fmt == FMT_TB && !out) {
        fprintf(stderr, "rlhf metrics export: --format tensorboard needs --out DIR\n");
        cli_list_free(&runs);
        return 1;
    }
    int rc = export_run(ws, &e, &runs);
    cli_list_free(&runs);
    if (rc) {
        fprintf(stderr, "rlhf metrics export: %s\n", err);
        return 1;
    }
    return 0;
}

int cmd_metrics(int argc, char **argv) {
    if (argc < 1 || cli_is_help(argv[0])) {
        fputs(metrics_usage, argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    if (!strcmp(argv[0], "export")) return metrics_export(argc - 1, argv + 1);
    fprintf(stderr, "rlhf metrics: unknown subcommand '%s'\n%s", argv[0], metrics_usage);
    return 2;
}
