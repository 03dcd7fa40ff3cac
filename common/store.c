// store: the workspace database (SQLite). See store.h for the schema, the concurrency rules and
// who owns what. Layout of this file: content hashes, the schema and its migrations,
// open/close/transactions, then one section per group of tables. The Store and the helpers every
// query goes through (errors, binding, stepping) are in store_impl.h; the logins, sessions and
// labeling calls of `rlhf serve` in store_users.c; the SQL text (reused statements, migrations)
// in store_sql.c; SHA-256 in sha256.c.
#define _GNU_SOURCE   // gethostname
#include "store.h"
#include "sha256.h"
#include "store_impl.h"
#include "store_sql.h"
#include "util.h"
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int check_split(Store *s, const char *split, char *err, size_t errlen) {
    if (split && !store_split_valid(split))
        return util_err(err, errlen, "%s: unknown split '%.40s' (expected train, valid or test)",
                        s->path, split);
    return 0;
}

void store_hash_bytes(const void *data, size_t n, char hex[STORE_HASH_HEX]) {
    uint8_t d[32];
    sha256(data, n, d);
    sha256_hex(d, hex);
}

int store_hash_file(const char *path, char hex[STORE_HASH_HEX], char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) return util_err(err, errlen, "%s: %s", path, strerror(errno));
    Sha256 c;
    uint8_t buf[1 << 16], d[32];
    sha256_init(&c);
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) sha256_update(&c, buf, got);
    int bad = ferror(f);
    fclose(f);
    if (bad) return util_err(err, errlen, "%s: read error", path);
    sha256_final(&c, d);
    sha256_hex(d, hex);
    return 0;
}

int store_split_valid(const char *split) {
    return split && (!strcmp(split, "train") || !strcmp(split, "valid") || !strcmp(split, "test"));
}

const char *store_split_for_text(const char *text, double valid_frac, double test_frac) {
    uint8_t d[32];
    sha256(text, strlen(text), d);
    uint64_t x = 0;
    for (int i = 0; i < 8; i++) x = x << 8 | d[i];
    double u = (double)(x >> 11) * 0x1p-53;   // uniform in [0, 1)
    if (u < valid_frac) return "valid";
    if (u < valid_frac + test_frac) return "test";
    return "train";
}

// ---------------------------------------------------------------------------------------------
// Schema and migrations (the SQL is in store_sql.c)
// ---------------------------------------------------------------------------------------------

// Reads the schema version: 0 for an empty database; -1 with a message when the file is not a
// SQLite database or not one of ours.
static int read_version(Store *s, int64_t *version, char *err, size_t errlen) {
    sqlite3_stmt *st = NULL;
    int64_t n_tables = 0, has_meta = 0;
    int rc =
        sqlite3_prepare_v2(s->db,
                           "SELECT count(*), coalesce(sum(name = 'meta'), 0) FROM sqlite_master "
                           "WHERE type = 'table'",
                           -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        n_tables = sqlite3_column_int64(st, 0);
        has_meta = sqlite3_column_int64(st, 1);
    } else if ((sqlite3_errcode(s->db) & 0xFF) == SQLITE_NOTADB)
        util_err(err, errlen, "%s: not a SQLite database (%s)", s->path, sqlite3_errmsg(s->db));
    else
        util_err(err, errlen,
                 "%s: cannot read the database: %s (are the file and its directory writable?)",
                 s->path, sqlite3_errmsg(s->db));
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW) return -1;
    if (!has_meta) {
        if (n_tables > 0)
            return util_err(err, errlen, "%s: not an rlhf.c workspace database (it has tables but "
                            "no meta table)", s->path);
        *version = 0;
        return 0;
    }
    char app[64] = "";
    *version = -1;
    if (sqlite3_prepare_v2(
            s->db, "SELECT key, value FROM meta WHERE key IN ('application', 'schema_version')", -1,
            &st, NULL) != SQLITE_OK)
        return fail(s, err, errlen, "reading the meta table");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *key = col_text(st, 0);
        if (!strcmp(key, "application")) snprintf(app, sizeof app, "%s", col_text(st, 1));
        else if (sqlite3_column_type(st, 1) == SQLITE_INTEGER)
            *version = sqlite3_column_int64(st, 1);
        else if (sqlite3_column_type(st, 1) == SQLITE_TEXT) {
            char *end;
            long long v = strtoll(col_text(st, 1), &end, 10);
            if (*end == 0 && end != col_text(st, 1)) *version = v;
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return fail(s, err, errlen, "reading the meta table");
    if (strcmp(app, STORE_APPLICATION))
        return util_err(err, errlen,
                        "%s: not an rlhf.c workspace database (meta application is '%s')", s->path,
                        app);
    if (*version < 1)
        return util_err(err, errlen, "%s: the meta table has no valid schema_version", s->path);
    return 0;
}

// Brings the schema to STORE_SCHEMA_VERSION: all steps in one BEGIN IMMEDIATE transaction, the
// version re-read under the write lock (another process may have migrated meanwhile).
static int migrate(Store *s, char *err, size_t errlen) {
    int64_t v;
    if (read_version(s, &v, err, errlen)) return -1;
    if (v > STORE_SCHEMA_VERSION)
        return util_err(err, errlen,
                        "%s: workspace schema version %lld is newer than this program's (%d); "
                        "use a newer rlhf.c",
                        s->path, (long long)v, STORE_SCHEMA_VERSION);
    if (v == STORE_SCHEMA_VERSION) return 0;
    if (exec(s, "BEGIN IMMEDIATE", "locking the database to migrate it", err, errlen)) return -1;
    int64_t from = 0;
    if (read_version(s, &from, err, errlen)) goto bad;
    if (from > STORE_SCHEMA_VERSION) {
        util_err(err, errlen,
                 "%s: workspace schema version %lld is newer than this program's (%d); "
                 "use a newer rlhf.c",
                 s->path, (long long)from, STORE_SCHEMA_VERSION);
        goto bad;
    }
    for (int64_t step = from; step < STORE_SCHEMA_VERSION; step++) {
        char what[96];
        snprintf(what, sizeof what, "migrating the schema from version %lld to %lld",
                 (long long)step, (long long)step + 1);
        if (exec(s, STORE_MIGRATIONS[step], what, err, errlen)) goto bad;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO meta(key, value) VALUES ('schema_version', ?1) "
                           "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                           -1, &st, NULL) != SQLITE_OK) {
        fail(s, err, errlen, "writing the schema version");
        goto bad;
    }
    sqlite3_bind_int64(st, 1, STORE_SCHEMA_VERSION);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) { fail(s, err, errlen, "writing the schema version"); goto bad; }
    if (exec(s, "COMMIT", "committing the migration", err, errlen)) goto bad;
    return 0;
bad:
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

// ---------------------------------------------------------------------------------------------
// Open, close, transactions
// ---------------------------------------------------------------------------------------------

int store_open(Store **out, const char *path, char *err, size_t errlen) {
    *out = NULL;
    if (!path || !*path) return util_err(err, errlen, "store: empty database path");
    Store *s = CALLOC_CHECK(1, sizeof(Store));
    s->path = STRDUP_CHECK(path);
    s->busy_ms = STORE_BUSY_TIMEOUT_MS;
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        util_err(err, errlen, "%s: is a directory, not a database file", path);
        goto bad;
    }
    if (stat(path, &sb) != 0) {   // to be created: its directory must exist
        char dir[4096];
        const char *slash = strrchr(path, '/');
        size_t n = slash ? (size_t)(slash - path) : 0;
        if (slash && n > 0 && n < sizeof dir) {
            memcpy(dir, path, n);
            dir[n] = 0;
            if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
                util_err(err, errlen, "%s: cannot create the database: directory %s does not exist",
                         path, dir);
                goto bad;
            }
        }
    }
    int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        if (rc == SQLITE_NOMEM) DIE("out of memory opening %s", path);
        util_err(err, errlen, "%s: cannot open the database: %s (is the directory writable?)", path,
                 s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        goto bad;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, s->busy_ms);
    if (sqlite3_db_readonly(s->db, "main") == 1) {
        util_err(err, errlen,
                 "%s: the workspace database is read-only (check the file's permissions)", path);
        goto bad;
    }
    int64_t v;
    if (read_version(s, &v, err, errlen))
        goto bad; // not a database / not ours: said before changing anything
    if (v > STORE_SCHEMA_VERSION) {
        util_err(err, errlen,
                 "%s: workspace schema version %lld is newer than this program's (%d); "
                 "use a newer rlhf.c",
                 path, (long long)v, STORE_SCHEMA_VERSION);
        goto bad;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        util_err(err, errlen, "%s: cannot switch to the WAL journal: %s (are the file and its "
                 "directory writable?)", path, sqlite3_errmsg(s->db));
        sqlite3_finalize(st);
        goto bad;
    }
    int wal = !sqlite3_stricmp(col_text(st, 0), "wal");
    sqlite3_finalize(st);
    if (!wal) {
        util_err(err, errlen,
                 "%s: cannot switch to the WAL journal (is it on a network file system?)", path);
        goto bad;
    }
    if (exec(s, "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL", "setting options", err,
             errlen))
        goto bad;
    if (migrate(s, err, errlen)) goto bad;
    *out = s;
    return 0;
bad:
    store_close(s);
    return -1;
}

void store_close(Store *s) {
    if (!s) return;
    for (int i = 0; i < Q_COUNT; i++) sqlite3_finalize(s->q[i]);
    if (s->db && !sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close_v2(s->db);
    free(s->path);
    free(s);
}

const char *store_path(const Store *s) { return s->path; }
sqlite3 *store_sqlite(Store *s) { return s->db; }

void store_set_busy_timeout(Store *s, int ms) {
    s->busy_ms = ms < 0 ? 0 : ms;
    sqlite3_busy_timeout(s->db, s->busy_ms);
}

int store_schema_version(Store *s, int64_t *version, char *err, size_t errlen) {
    return read_version(s, version, err, errlen);
}

int store_begin(Store *s, char *err, size_t errlen) {
    if (!sqlite3_get_autocommit(s->db))
        return util_err(err, errlen, "%s: begin: a transaction is already open", s->path);
    if (exec(s, "BEGIN IMMEDIATE", "begin", err, errlen)) return -1;
    s->user_tx = 1;
    return 0;
}

int store_commit(Store *s, char *err, size_t errlen) {
    if (sqlite3_get_autocommit(s->db)) {
        s->user_tx = 0;
        return util_err(err, errlen, "%s: commit: no transaction is open", s->path);
    }
    if (exec(s, "COMMIT", "commit", err, errlen)) {
        // A failed COMMIT (e.g. SQLITE_BUSY) leaves the transaction open: undo it so that the
        // caller's "nothing half-stored" holds and the connection is usable again.
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        s->user_tx = 0;
        return -1;
    }
    s->user_tx = 0;
    return 0;
}

int store_rollback(Store *s, char *err, size_t errlen) {
    s->user_tx = 0;
    if (sqlite3_get_autocommit(s->db)) return 0;
    return exec(s, "ROLLBACK", "rollback", err, errlen);
}

int store_in_transaction(Store *s) { return !sqlite3_get_autocommit(s->db); }

int store_check(Store *s, char *err, size_t errlen) {
    sqlite3_stmt *st = prepare(s, "PRAGMA integrity_check", err, errlen);
    if (!st) return -1;
    int rc = sqlite3_step(st);
    int ok = rc == SQLITE_ROW && !strcmp(col_text(st, 0), "ok");
    if (!ok) {
        if (rc == SQLITE_ROW)
            util_err(err, errlen, "%s: integrity check: %.200s", s->path, col_text(st, 0));
        else fail(s, err, errlen, "integrity check");
    }
    sqlite3_finalize(st);
    if (!ok) return -1;
    if (!(st = prepare(s, "PRAGMA foreign_key_check", err, errlen))) return -1;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        util_err(err, errlen, "%s: foreign key check: table %s row %lld refers to a missing %s row",
                 s->path, col_text(st, 0), (long long)sqlite3_column_int64(st, 1), col_text(st, 2));
    else if (rc != SQLITE_DONE) fail(s, err, errlen, "foreign key check");
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

// ---------------------------------------------------------------------------------------------
// Prompts, demonstrations, completions, labelers
// ---------------------------------------------------------------------------------------------

// The insert-or-find pattern: INSERT ... ON CONFLICT DO NOTHING; when nothing was inserted the row
// exists, and `find` (bound by the caller the same way) gives its id.
static int add_or_find(Store *s, sqlite3_stmt *add, sqlite3_stmt *find, int64_t *id,
                       const char *what, char *err, size_t errlen) {
    int rc = sqlite3_step(add);
    if (rc != SQLITE_DONE) { fail(s, err, errlen, what); done(add); done(find); return -1; }
    done(add);
    if (sqlite3_changes(s->db) > 0) {
        *id = sqlite3_last_insert_rowid(s->db);
        done(find);
        return 0;
    }
    if (step_id(s, find, id, what, err, errlen)) return -1;
    if (*id == 0)
        return util_err(err, errlen, "%s: %s: the row was neither inserted nor found", s->path,
                        what);
    return 0;
}

int store_add_prompt(Store *s, const char *text, const char *split, const char *source,
                     int64_t *id, char *err, size_t errlen) {
    return store_add_prompt_from(s, text, split, source, 1, id, err, errlen);
}

int store_add_prompt_from(Store *s, const char *text, const char *split, const char *source,
                          int to_label, int64_t *id, char *err, size_t errlen) {
    *id = 0;
    if (need_text(s, text, "add prompt", err, errlen)) return -1;
    if (!split) split = "train";
    if (check_split(s, split, err, errlen)) return -1;
    sqlite3_stmt *add = q(s, Q_PROMPT_ADD, err, errlen), *find = q(s, Q_PROMPT_FIND, err, errlen),
                 *from = q(s, Q_PROMPT_SOURCE_ADD, err, errlen);
    if (!add || !find || !from) return -1;
    int began_tx = sqlite3_get_autocommit(s->db);
    if (op_begin(s, err, errlen)) return -1;
    bind_text(add, 1, text); bind_text(add, 2, split); bind_text(add, 3, source);
    sqlite3_bind_double(add, 4, now_s());
    bind_text(find, 1, text);
    int ok = add_or_find(s, add, find, id, "add prompt", err, errlen) == 0;
    if (ok) {
        sqlite3_bind_int64(from, 1, *id);
        bind_text(from, 2, source);
        sqlite3_bind_int(from, 3, !!to_label);
        ok = step_write(s, from, "add prompt: recording its source", err, errlen) == 0;
    }
    if (op_end(s, began_tx, ok, err, errlen)) { *id = 0; return -1; }
    return 0;
}

int store_count_source(Store *s, const char *source, int64_t *n, char *err, size_t errlen) {
    *n = 0;
    sqlite3_stmt *st = q(s, Q_SOURCE_COUNT, err, errlen);
    if (!st) return -1;
    bind_text(st, 1, source);
    return step_id(s, st, n, "count a source's prompts", err, errlen);
}

int store_find_prompt(Store *s, const char *text, int64_t *id, char *err, size_t errlen) {
    return find_id_by_text(s, Q_PROMPT_FIND, text, id, "find prompt", err, errlen);
}

int store_set_prompt_rendered(Store *s, int64_t id, char *err, size_t errlen) {
    sqlite3_stmt *st = prepare(s, "UPDATE prompts SET rendered = 1 WHERE id = ?1", err, errlen);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st), changed = sqlite3_changes(s->db);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return fail(s, err, errlen, "mark a prompt rendered");
    if (changed == 0)
        return util_err(err, errlen, "%s: prompt %lld does not exist", s->path, (long long)id);
    return 0;
}

void store_prompt_free(StorePrompt *p) {
    free(p->text); free(p->split); free(p->source);
    memset(p, 0, sizeof(*p));
}

int store_get_prompt(Store *s, int64_t id, StorePrompt *p, char *err, size_t errlen) {
    memset(p, 0, sizeof(*p));
    sqlite3_stmt *st = q(s, Q_PROMPT_GET, err, errlen);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st), ret = 0;
    if (rc == SQLITE_ROW) {
        p->id = sqlite3_column_int64(st, 0);
        p->text = col_dup(st, 1); p->split = col_dup(st, 2); p->source = col_dup(st, 3);
        p->created = sqlite3_column_double(st, 4);
        p->rendered = sqlite3_column_int(st, 5);
    } else if (rc == SQLITE_DONE)
        ret = util_err(err, errlen, "%s: prompt %lld does not exist", s->path, (long long)id);
    else ret = fail(s, err, errlen, "get prompt");
    done(st);
    return ret;
}

// Ends a walk: finalizes st; rc is the last sqlite3_step result or the callback's stop value.

int store_each_prompt(Store *s, const char *split, StorePromptFn fn, void *ctx, char *err,
                      size_t errlen) {
    if (check_split(s, split, err, errlen)) return -1;
    sqlite3_stmt *st = prepare(s, "SELECT id, text, split, source, created, rendered FROM prompts "
                                  "WHERE (?1 IS NULL OR split = ?1) ORDER BY id", err, errlen);
    if (!st) return -1;
    bind_text_or_null(st, 1, split);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        StorePrompt p = {.id = sqlite3_column_int64(st, 0), .text = (char *)col_text(st, 1),
                         .split = (char *)col_text(st, 2), .source = (char *)col_text(st, 3),
                         .created = sqlite3_column_double(st, 4),
                         .rendered = sqlite3_column_int(st, 5)};
        int stop = fn(&p, ctx);
        if (stop) return walk_end(s, st, stop, 1, "", err, errlen);
    }
    return walk_end(s, st, rc, 0, "list prompts", err, errlen);
}

static int prompt_exists(Store *s, int64_t prompt_id, const char *what, char *err, size_t errlen) {
    sqlite3_stmt *st = q(s, Q_PROMPT_GET, err, errlen);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, prompt_id);
    int rc = sqlite3_step(st);
    int ret = rc == SQLITE_ROW    ? 0
              : rc == SQLITE_DONE ? util_err(err, errlen, "%s: %s: prompt %lld does not exist",
                                             s->path, what, (long long)prompt_id)
                                  : fail(s, err, errlen, what);
    done(st);
    return ret;
}

int store_add_demonstration(Store *s, int64_t prompt_id, const char *response, const char *source,
                            int64_t *id, char *err, size_t errlen) {
    *id = 0;
    if (need_text(s, response, "add demonstration", err, errlen)) return -1;
    if (prompt_exists(s, prompt_id, "add demonstration", err, errlen)) return -1;
    sqlite3_stmt *add = q(s, Q_DEMO_ADD, err, errlen), *find = q(s, Q_DEMO_FIND, err, errlen);
    if (!add || !find) return -1;
    sqlite3_bind_int64(add, 1, prompt_id); bind_text(add, 2, response); bind_text(add, 3, source);
    sqlite3_bind_double(add, 4, now_s());
    sqlite3_bind_int64(find, 1, prompt_id); bind_text(find, 2, response);
    return add_or_find(s, add, find, id, "add demonstration", err, errlen);
}

int store_each_demonstration(Store *s, const char *split, StoreDemonstrationFn fn, void *ctx,
                             char *err, size_t errlen) {
    if (check_split(s, split, err, errlen)) return -1;
    sqlite3_stmt *st = prepare(s, "SELECT d.id, d.prompt_id, p.text, d.response, p.split, "
                                  "d.source, p.rendered "
                                  "FROM demonstrations d JOIN prompts p ON p.id = d.prompt_id "
                                  "WHERE (?1 IS NULL OR p.split = ?1) ORDER BY d.id", err, errlen);
    if (!st) return -1;
    bind_text_or_null(st, 1, split);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        StoreDemonstration d = {.id = sqlite3_column_int64(st, 0),
                                .prompt_id = sqlite3_column_int64(st, 1),
                                .prompt = col_text(st, 2),
                                .response = col_text(st, 3),
                                .split = col_text(st, 4),
                                .source = col_text(st, 5),
                                .prompt_rendered = sqlite3_column_int(st, 6)};
        int stop = fn(&d, ctx);
        if (stop) return walk_end(s, st, stop, 1, "", err, errlen);
    }
    return walk_end(s, st, rc, 0, "list demonstrations", err, errlen);
}

int store_add_completion(Store *s, int64_t prompt_id, const char *text, const char *model,
                         int64_t *id, char *err, size_t errlen) {
    *id = 0;
    if (need_text(s, text, "add completion", err, errlen)) return -1;
    if (prompt_exists(s, prompt_id, "add completion", err, errlen)) return -1;
    sqlite3_stmt *add = q(s, Q_COMPLETION_ADD, err, errlen),
                 *find = q(s, Q_COMPLETION_FIND, err, errlen);
    if (!add || !find) return -1;
    sqlite3_bind_int64(add, 1, prompt_id); bind_text(add, 2, text); bind_text(add, 3, model);
    sqlite3_bind_double(add, 4, now_s());
    sqlite3_bind_int64(find, 1, prompt_id); bind_text(find, 2, text); bind_text(find, 3, model);
    return add_or_find(s, add, find, id, "add completion", err, errlen);
}

int store_add_completion_policy(Store *s, int64_t completion_id, const char *policy_hash,
                                char *err, size_t errlen) {
    if (!policy_hash || !*policy_hash)
        return util_err(err, errlen, "%s: add completion policy: empty policy hash", s->path);
    sqlite3_stmt *ex = q(s, Q_COMPLETION_EXISTS, err, errlen),
                 *st = q(s, Q_COMPLETION_POLICY_ADD, err, errlen);
    if (!ex || !st) return -1;
    int64_t found;
    sqlite3_bind_int64(ex, 1, completion_id);
    if (step_id(s, ex, &found, "add completion policy", err, errlen)) return -1;
    if (!found)
        return util_err(err, errlen, "%s: add completion policy: completion %lld does not exist",
                        s->path, (long long)completion_id);
    bind_text(st, 1, policy_hash); sqlite3_bind_int64(st, 2, completion_id);
    return step_write(s, st, "add completion policy", err, errlen);
}

int store_completion_has_policy(Store *s, int64_t completion_id, const char *policy_hash,
                                int *found, char *err, size_t errlen) {
    *found = 0;
    sqlite3_stmt *st = q(s, Q_COMPLETION_POLICY_HAS, err, errlen);
    if (!st) return -1;
    int64_t one;
    bind_text(st, 1, policy_hash); sqlite3_bind_int64(st, 2, completion_id);
    if (step_id(s, st, &one, "find completion policy", err, errlen)) return -1;
    *found = one == 1;
    return 0;
}

int store_each_completion(Store *s, int64_t prompt_id, const char *unscored_by,
                          StoreCompletionFn fn, void *ctx, char *err, size_t errlen) {
    // Two statements so that one prompt's completions come from the (prompt_id, ...) index.
    static const char *const sql[2] = {
        "SELECT c.id, c.prompt_id, p.text, c.text, c.model, p.split, c.created, p.rendered "
        "FROM completions c JOIN prompts p ON p.id = c.prompt_id "
        "WHERE (?2 IS NULL OR NOT EXISTS (SELECT 1 FROM reward_scores r WHERE r.model = ?2 AND r.completion_id = c.id)) "
        "ORDER BY c.id",
        "SELECT c.id, c.prompt_id, p.text, c.text, c.model, p.split, c.created, p.rendered "
        "FROM completions c JOIN prompts p ON p.id = c.prompt_id "
        "WHERE c.prompt_id = ?1 "
        "AND (?2 IS NULL OR NOT EXISTS (SELECT 1 FROM reward_scores r WHERE r.model = ?2 AND r.completion_id = c.id)) "
        "ORDER BY c.id",
    };
    sqlite3_stmt *st = prepare(s, sql[prompt_id > 0], err, errlen);
    if (!st) return -1;
    if (prompt_id > 0) sqlite3_bind_int64(st, 1, prompt_id);
    bind_text_or_null(st, 2, unscored_by);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        StoreCompletion c = {.id = sqlite3_column_int64(st, 0),
                             .prompt_id = sqlite3_column_int64(st, 1),
                             .prompt = col_text(st, 2),
                             .text = col_text(st, 3),
                             .model = col_text(st, 4),
                             .split = col_text(st, 5),
                             .created = sqlite3_column_double(st, 6),
                             .prompt_rendered = sqlite3_column_int(st, 7)};
        int stop = fn(&c, ctx);
        if (stop) return walk_end(s, st, stop, 1, "", err, errlen);
    }
    return walk_end(s, st, rc, 0, "list completions", err, errlen);
}

int store_add_labeler(Store *s, const char *name, int64_t *id, char *err, size_t errlen) {
    *id = 0;
    if (!name || !*name)
        return util_err(err, errlen, "%s: add labeler: the name is empty", s->path);
    sqlite3_stmt *add = q(s, Q_LABELER_ADD, err, errlen), *find = q(s, Q_LABELER_FIND, err, errlen);
    if (!add || !find) return -1;
    bind_text(add, 1, name); sqlite3_bind_double(add, 2, now_s());
    bind_text(find, 1, name);
    return add_or_find(s, add, find, id, "add labeler", err, errlen);
}

int store_find_labeler(Store *s, const char *name, int64_t *id, char *err, size_t errlen) {
    return find_id_by_text(s, Q_LABELER_FIND, name, id, "find labeler", err, errlen);
}

static int labeler_exists(Store *s, int64_t labeler_id, const char *what, char *err,
                          size_t errlen) {
    sqlite3_stmt *st = q(s, Q_LABELER_EXISTS, err, errlen);
    int64_t found;
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, labeler_id);
    if (step_id(s, st, &found, what, err, errlen)) return -1;
    if (!found)
        return util_err(err, errlen, "%s: %s: labeler %lld does not exist", s->path, what,
                        (long long)labeler_id);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Rankings
// ---------------------------------------------------------------------------------------------

// The checks of store_add_ranking that need no database.
static int ranking_items_valid(Store *s, const StoreRankItem *items, int k, char *err,
                               size_t errlen) {
    if (k < 2 || !items)
        return util_err(err, errlen,
                        "%s: add ranking: a ranking needs at least 2 completions, got %d", s->path,
                        k);
    for (int i = 0; i < k; i++) {
        if (items[i].rank < 1 || items[i].rank > k)
            return util_err(err, errlen,
                            "%s: add ranking: rank %d of completion %lld is outside 1..%d", s->path,
                            items[i].rank, (long long)items[i].completion_id, k);
        for (int j = 0; j < i; j++)
            if (items[j].completion_id == items[i].completion_id)
                return util_err(err, errlen, "%s: add ranking: completion %lld appears twice",
                                s->path, (long long)items[i].completion_id);
    }
    return 0;
}

int store_add_ranking(Store *s, int64_t prompt_id, int64_t labeler_id, const StoreRankItem *items,
                      int k, const char *comment, int64_t *id, char *err, size_t errlen) {
    return store_add_policy_ranking(s, prompt_id, labeler_id, items, k, comment, NULL, id, err,
                                    errlen);
}

int store_add_policy_ranking(Store *s, int64_t prompt_id, int64_t labeler_id,
                             const StoreRankItem *items, int k, const char *comment,
                             const char *policy_hash, int64_t *id, char *err, size_t errlen) {
    if (id) *id = 0;
    if (ranking_items_valid(s, items, k, err, errlen)) return -1;
    int began_tx = sqlite3_get_autocommit(s->db);
    if (op_begin(s, err, errlen)) return -1;
    int ok = 0;
    int64_t rid = 0;
    if (prompt_exists(s, prompt_id, "add ranking", err, errlen)) goto end;
    if (labeler_exists(s, labeler_id, "add ranking", err, errlen)) goto end;
    sqlite3_stmt *owner = q(s, Q_COMPLETION_PROMPT, err, errlen);
    if (!owner) goto end;
    for (int i = 0; i < k; i++) {
        int64_t of;
        sqlite3_bind_int64(owner, 1, items[i].completion_id);
        if (step_id(s, owner, &of, "add ranking", err, errlen)) goto end;
        if (of == 0) {
            util_err(err, errlen, "%s: add ranking: completion %lld does not exist", s->path,
                     (long long)items[i].completion_id);
            goto end;
        }
        if (of != prompt_id) {
            util_err(err, errlen,
                     "%s: add ranking: completion %lld belongs to prompt %lld, not prompt %lld",
                     s->path, (long long)items[i].completion_id, (long long)of,
                     (long long)prompt_id);
            goto end;
        }
    }
    sqlite3_stmt *add = q(s, Q_RANKING_ADD, err, errlen),
                 *item = q(s, Q_RANKING_ITEM_ADD, err, errlen),
                 *drop = q(s, Q_CLAIM_DROP_MINE, err, errlen);
    if (!add || !item || !drop) goto end;
    sqlite3_bind_int64(add, 1, prompt_id); sqlite3_bind_int64(add, 2, labeler_id);
    sqlite3_bind_double(add, 3, now_s()); bind_text(add, 4, comment);
    bind_text(add, 5, policy_hash);
    if (step_write(s, add, "add ranking", err, errlen)) goto end;
    rid = sqlite3_last_insert_rowid(s->db);
    for (int i = 0; i < k; i++) {
        sqlite3_bind_int64(item, 1, rid); sqlite3_bind_int64(item, 2, items[i].completion_id);
        sqlite3_bind_int(item, 3, items[i].rank);
        if (step_write(s, item, "add ranking item", err, errlen)) goto end;
    }
    sqlite3_bind_int64(drop, 1, prompt_id); sqlite3_bind_int64(drop, 2, labeler_id);
    if (step_write(s, drop, "add ranking: ending the claim", err, errlen)) goto end;
    ok = 1;
end:
    if (op_end(s, began_tx, ok, err, errlen)) return -1;
    if (id) *id = rid;
    return 0;
}

int store_delete_ranking(Store *s, int64_t ranking_id, char *err, size_t errlen) {
    sqlite3_stmt *st = q(s, Q_RANKING_DELETE, err, errlen);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, ranking_id);
    if (step_write(s, st, "delete ranking", err, errlen)) return -1;
    if (sqlite3_changes(s->db) == 0)
        return util_err(err, errlen, "%s: delete ranking: ranking %lld does not exist", s->path,
                        (long long)ranking_id);
    return 0;
}

int store_each_ranking(Store *s, const char *split, StoreRankingFn fn, void *ctx, char *err,
                       size_t errlen) {
    if (check_split(s, split, err, errlen)) return -1;
    sqlite3_stmt *st =
        prepare(s,
                "SELECT r.id, r.prompt_id, r.labeler_id, p.text, p.split, p.source, l.name, "
                "r.comment, r.created, p.rendered FROM rankings r "
                "JOIN prompts p ON p.id = r.prompt_id "
                "JOIN labelers l ON l.id = r.labeler_id "
                "WHERE (?1 IS NULL OR p.split = ?1) ORDER BY r.id",
                err, errlen);
    if (!st) return -1;
    sqlite3_stmt *its =
        prepare(s,
                "SELECT i.completion_id, i.rank, c.text, c.model FROM ranking_items i "
                "JOIN completions c ON c.id = i.completion_id WHERE i.ranking_id = ?1 "
                "ORDER BY i.rank, i.completion_id",
                err, errlen);
    if (!its) { sqlite3_finalize(st); return -1; }
    bind_text_or_null(st, 1, split);
    int cap = 0, rc, stop = 0;
    StoreRankedCompletion *items = NULL;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        StoreRanking r = {.id = sqlite3_column_int64(st, 0),
                          .prompt_id = sqlite3_column_int64(st, 1),
                          .labeler_id = sqlite3_column_int64(st, 2),
                          .prompt = col_text(st, 3),
                          .split = col_text(st, 4),
                          .source = col_text(st, 5),
                          .labeler = col_text(st, 6),
                          .comment = col_text(st, 7),
                          .created = sqlite3_column_double(st, 8),
                          .prompt_rendered = sqlite3_column_int(st, 9)};
        // The items' texts are copied: all k are needed at once, and a column's text lives only
        // until the next step of its statement.
        int k = 0, irc;
        sqlite3_bind_int64(its, 1, r.id);
        while ((irc = sqlite3_step(its)) == SQLITE_ROW) {
            if (k == cap) {
                cap = cap ? 2 * cap : 16;
                items = REALLOC_ARRAY(items, (size_t)cap, sizeof(*items));
            }
            items[k].completion_id = sqlite3_column_int64(its, 0);
            items[k].rank = sqlite3_column_int(its, 1);
            items[k].text = col_dup(its, 2);
            items[k].model = col_dup(its, 3);
            k++;
        }
        if (irc != SQLITE_DONE) fail(s, err, errlen, "list ranking items");
        sqlite3_reset(its);
        r.k = k;
        r.items = items;
        if (irc == SQLITE_DONE) stop = fn(&r, ctx);
        for (int i = 0; i < k; i++) { free((char *)items[i].text); free((char *)items[i].model); }
        if (irc != SQLITE_DONE) { stop = -1; break; }
        if (stop) break;
    }
    free(items);
    sqlite3_finalize(its);
    if (stop) { sqlite3_finalize(st); return stop; }
    return walk_end(s, st, rc, 0, "list rankings", err, errlen);
}

// ---------------------------------------------------------------------------------------------
// Labeling assignments
// ---------------------------------------------------------------------------------------------

int store_claim_prompt(Store *s, int64_t labeler_id, const StoreClaimOptions *opt,
                       int64_t *prompt_id, char *err, size_t errlen) {
    StoreClaimOptions o = opt ? *opt : (StoreClaimOptions){0};
    *prompt_id = 0;
    if (o.overlap < 1) o.overlap = 1;
    if (!(o.lease_s > 0)) o.lease_s = 3600;
    if (o.min_completions < 0) o.min_completions = 0;
    if (check_split(s, o.split, err, errlen)) return -1;
    int began_tx = sqlite3_get_autocommit(s->db);
    if (op_begin(s, err, errlen)) return -1;
    int ok = 0;
    double now = now_s();
    int64_t pid = 0;
    if (labeler_exists(s, labeler_id, "claim prompt", err, errlen)) goto end;
    sqlite3_stmt *expire = q(s, Q_CLAIM_EXPIRE, err, errlen), *own = q(s, Q_CLAIM_OWN, err, errlen),
                 *next = q(s, Q_CLAIM_NEXT, err, errlen), *put = q(s, Q_CLAIM_PUT, err, errlen);
    if (!expire || !own || !next || !put) goto end;
    sqlite3_bind_double(expire, 1, now);
    if (step_write(s, expire, "claim prompt: dropping expired claims", err, errlen)) goto end;
    // Own claim first; then the next free prompt after the one claimed last on this connection,
    // and only when there is none, from the start (so a labeling session scans each prompt about
    // once instead of from the start at every claim, and nothing is ever missed).
    sqlite3_stmt *pick[3] = {own, next, next};
    int64_t after[3] = {0, s->claim_hint, 0};
    for (int i = 0; i < 3 && pid == 0; i++) {
        if (i == 2 && s->claim_hint == 0) break;
        sqlite3_bind_int64(pick[i], 1, labeler_id);
        sqlite3_bind_double(pick[i], 2, now);
        bind_text_or_null(pick[i], 3, o.split);
        sqlite3_bind_int(pick[i], 4, o.min_completions);
        if (i > 0) {
            sqlite3_bind_int(pick[i], 5, o.overlap);
            sqlite3_bind_int64(pick[i], 6, after[i]);
        }
        bind_text_or_null(pick[i], 7, o.policy_hash);
        bind_text_or_null(pick[i], 8, o.source);
        bind_text_or_null(pick[i], 9, o.only_ids);
        sqlite3_bind_int(pick[i], 10, o.unqueued || o.source || o.only_ids);
        if (step_id(s, pick[i], &pid, "claim prompt", err, errlen)) goto end;
    }
    if (pid) {
        sqlite3_bind_int64(put, 1, pid); sqlite3_bind_int64(put, 2, labeler_id);
        sqlite3_bind_double(put, 3, now); sqlite3_bind_double(put, 4, now + o.lease_s);
        if (step_write(s, put, "claim prompt", err, errlen)) goto end;
    }
    ok = 1;
end:
    if (op_end(s, began_tx, ok, err, errlen)) return -1;
    *prompt_id = pid;
    if (pid) s->claim_hint = pid;
    return 0;
}

int store_release_prompt(Store *s, int64_t labeler_id, int64_t prompt_id, int skip, char *err,
                         size_t errlen) {
    if (labeler_exists(s, labeler_id, "release prompt", err, errlen)) return -1;
    if (prompt_exists(s, prompt_id, "release prompt", err, errlen)) return -1;
    sqlite3_stmt *st = q(s, skip ? Q_CLAIM_SKIP : Q_CLAIM_RELEASE, err, errlen);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, prompt_id); sqlite3_bind_int64(st, 2, labeler_id);
    if (skip) sqlite3_bind_double(st, 3, now_s());
    return step_write(s, st, "release prompt", err, errlen);
}

// ---------------------------------------------------------------------------------------------
// Reward scores
// ---------------------------------------------------------------------------------------------

int store_set_reward_score(Store *s, const char *model, int64_t completion_id, double score,
                           char *err, size_t errlen) {
    if (!model || !*model)
        return util_err(err, errlen, "%s: set reward score: empty reward model name", s->path);
    if (!isfinite(score))
        return util_err(err, errlen, "%s: set reward score: score of completion %lld is not finite",
                        s->path, (long long)completion_id);
    sqlite3_stmt *ex = q(s, Q_COMPLETION_EXISTS, err, errlen), *st = q(s, Q_SCORE_SET, err, errlen);
    int64_t found;
    if (!ex || !st) return -1;
    sqlite3_bind_int64(ex, 1, completion_id);
    if (step_id(s, ex, &found, "set reward score", err, errlen)) return -1;
    if (!found)
        return util_err(err, errlen, "%s: set reward score: completion %lld does not exist",
                        s->path, (long long)completion_id);
    bind_text(st, 1, model); sqlite3_bind_int64(st, 2, completion_id);
    sqlite3_bind_double(st, 3, score); sqlite3_bind_double(st, 4, now_s());
    return step_write(s, st, "set reward score", err, errlen);
}

int store_get_reward_score(Store *s, const char *model, int64_t completion_id, double *score,
                           int *found, char *err, size_t errlen) {
    *found = 0;
    sqlite3_stmt *st = q(s, Q_SCORE_GET, err, errlen);
    if (!st) return -1;
    bind_text(st, 1, model); sqlite3_bind_int64(st, 2, completion_id);
    int rc = sqlite3_step(st), ret = 0;
    if (rc == SQLITE_ROW) { *found = 1; *score = sqlite3_column_double(st, 0); }
    else if (rc != SQLITE_DONE) ret = fail(s, err, errlen, "get reward score");
    done(st);
    return ret;
}

int store_each_reward_score(Store *s, const char *model, StoreRewardScoreFn fn, void *ctx,
                            char *err, size_t errlen) {
    sqlite3_stmt *st =
        prepare(s,
                "SELECT r.completion_id, c.prompt_id, r.score, p.text, c.text, c.model, p.split, "
                "p.source FROM reward_scores r JOIN completions c ON c.id = r.completion_id "
                "JOIN prompts p ON p.id = c.prompt_id WHERE r.model = ?1 ORDER BY r.completion_id",
                err, errlen);
    if (!st) return -1;
    bind_text(st, 1, model);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        StoreRewardScore r = {.completion_id = sqlite3_column_int64(st, 0),
                              .prompt_id = sqlite3_column_int64(st, 1),
                              .score = sqlite3_column_double(st, 2),
                              .prompt = col_text(st, 3),
                              .text = col_text(st, 4),
                              .completion_model = col_text(st, 5),
                              .split = col_text(st, 6),
                              .source = col_text(st, 7)};
        int stop = fn(&r, ctx);
        if (stop) return walk_end(s, st, stop, 1, "", err, errlen);
    }
    return walk_end(s, st, rc, 0, "list reward scores", err, errlen);
}

// ---------------------------------------------------------------------------------------------
// Runs, metrics, rollouts
// ---------------------------------------------------------------------------------------------

static const char *const RUN_STATUS[4] = {"running", "done", "failed", "interrupted"};

const char *store_run_status_name(StoreRunStatus st) {
    return (unsigned)st < 4 ? RUN_STATUS[st] : "unknown";
}

int store_run_status_parse(const char *name, StoreRunStatus *st) {
    for (int i = 0; i < 4; i++)
        if (name && !strcmp(name, RUN_STATUS[i])) { *st = (StoreRunStatus)i; return 0; }
    return -1;
}

static void host_name(char *buf, size_t n) {
    if (gethostname(buf, n - 1)) buf[0] = 0;
    buf[n - 1] = 0;
}

static int run_exists(Store *s, int64_t run_id, const char *what, char *err, size_t errlen) {
    sqlite3_stmt *st = q(s, Q_RUN_EXISTS, err, errlen);
    int64_t found;
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, run_id);
    if (step_id(s, st, &found, what, err, errlen)) return -1;
    if (!found)
        return util_err(err, errlen, "%s: %s: run %lld does not exist", s->path, what,
                        (long long)run_id);
    return 0;
}

int store_add_run(Store *s, const StoreRunInfo *info, int64_t *id, char *err, size_t errlen) {
    *id = 0;
    if (!info || !info->stage || !*info->stage)
        return util_err(err, errlen, "%s: add run: the stage is empty", s->path);
    if (info->parent_id > 0 && run_exists(s, info->parent_id, "add run: parent", err, errlen))
        return -1;
    sqlite3_stmt *st = q(s, Q_RUN_ADD, err, errlen);
    if (!st) return -1;
    char host[256];
    host_name(host, sizeof host);
    bind_text(st, 1, info->stage); bind_text(st, 2, info->name); bind_text(st, 3, info->program);
    bind_text(st, 4, info->config);
    bind_text(st, 5, info->config_hash);
    bind_text(st, 6, info->checkpoint);
    sqlite3_bind_double(st, 7, now_s()); sqlite3_bind_int64(st, 8, (int64_t)getpid());
    bind_text(st, 9, host); bind_id_or_null(st, 10, info->parent_id);
    if (step_write(s, st, "add run", err, errlen)) return -1;
    *id = sqlite3_last_insert_rowid(s->db);
    return 0;
}

int store_finish_run(Store *s, int64_t run_id, int rc, const char *prog) {
    int code = rc == 0 ? 0 : rc > 0 ? 128 + rc : 1;
    if (s && run_id) {
        StoreRunStatus st = rc == 0  ? STORE_RUN_DONE
                            : rc > 0 ? STORE_RUN_INTERRUPTED
                                     : STORE_RUN_FAILED;
        char err[512];
        if (store_set_run_status(s, run_id, st, code, err, sizeof err) && rc >= 0)
            fprintf(stderr, "%s: %s\n", prog, err);
    }
    return code;
}

int store_set_run_status(Store *s, int64_t run_id, StoreRunStatus status, int exit_code, char *err,
                         size_t errlen) {
    if ((unsigned)status >= 4)
        return util_err(err, errlen, "%s: set run status: unknown status %d", s->path, (int)status);
    sqlite3_stmt *st = q(s, status == STORE_RUN_RUNNING ? Q_RUN_RESUME : Q_RUN_FINISH, err, errlen);
    if (!st) return -1;
    char host[256];
    sqlite3_bind_int64(st, 1, run_id);
    if (status == STORE_RUN_RUNNING) {
        host_name(host, sizeof host);
        sqlite3_bind_int64(st, 2, (int64_t)getpid());
        bind_text(st, 3, host);
    } else {
        bind_text(st, 2, RUN_STATUS[status]);
        sqlite3_bind_double(st, 3, now_s());
        sqlite3_bind_int(st, 4, exit_code);
    }
    if (step_write(s, st, "set run status", err, errlen)) return -1;
    if (sqlite3_changes(s->db) == 0)
        return util_err(err, errlen, "%s: set run status: run %lld does not exist", s->path,
                        (long long)run_id);
    return 0;
}

int store_set_run_checkpoint(Store *s, int64_t run_id, const char *checkpoint, char *err,
                             size_t errlen) {
    sqlite3_stmt *st = q(s, Q_RUN_CHECKPOINT, err, errlen);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, run_id);
    bind_text(st, 2, checkpoint);
    if (step_write(s, st, "set run checkpoint", err, errlen)) return -1;
    if (sqlite3_changes(s->db) == 0)
        return util_err(err, errlen, "%s: set run checkpoint: run %lld does not exist", s->path,
                        (long long)run_id);
    return 0;
}

void store_run_free(StoreRun *r) {
    free(r->stage); free(r->name); free(r->program); free(r->config); free(r->config_hash);
    free(r->checkpoint); free(r->host);
    memset(r, 0, sizeof(*r));
}

// Reads a row of RUN_COLUMNS. copy: malloc'd strings (store_run_free), else pointers into st.
static void read_run(sqlite3_stmt *st, StoreRun *r, int copy) {
    memset(r, 0, sizeof(*r));
    r->id = sqlite3_column_int64(st, 0);
    char **field[7] = {&r->stage,       &r->name, &r->program,   &r->config,
                       &r->config_hash, NULL,     &r->checkpoint};
    for (int i = 0; i < 7; i++)
        if (field[i]) *field[i] = copy ? col_dup(st, 1 + i) : (char *)col_text(st, 1 + i);
    StoreRunStatus status = STORE_RUN_RUNNING;
    store_run_status_parse(col_text(st, 6), &status);   // the CHECK constraint keeps it valid
    r->status = status;
    r->started = sqlite3_column_double(st, 8);
    r->finished = sqlite3_column_type(st, 9) == SQLITE_NULL ? 0 : sqlite3_column_double(st, 9);
    r->has_exit_code = sqlite3_column_type(st, 10) != SQLITE_NULL;
    r->exit_code = sqlite3_column_int(st, 10);
    r->pid = sqlite3_column_int64(st, 11);
    r->host = copy ? col_dup(st, 12) : (char *)col_text(st, 12);
    r->parent_id = sqlite3_column_int64(st, 13);
}

int store_get_run(Store *s, int64_t run_id, StoreRun *r, char *err, size_t errlen) {
    memset(r, 0, sizeof(*r));
    sqlite3_stmt *st = q(s, Q_RUN_GET, err, errlen);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, run_id);
    int rc = sqlite3_step(st), ret = 0;
    if (rc == SQLITE_ROW) read_run(st, r, 1);
    else if (rc == SQLITE_DONE)
        ret = util_err(err, errlen, "%s: run %lld does not exist", s->path, (long long)run_id);
    else ret = fail(s, err, errlen, "get run");
    done(st);
    return ret;
}

int store_find_last_run(Store *s, const char *stage, const char *config_hash, int status,
                        StoreRun *r, char *err, size_t errlen) {
    memset(r, 0, sizeof(*r));
    if (status >= 4)
        return util_err(err, errlen, "%s: find run: unknown status %d", s->path, status);
    sqlite3_stmt *st = q(s, Q_RUN_LAST, err, errlen);
    if (!st) return -1;
    bind_text(st, 1, stage);
    bind_text_or_null(st, 2, config_hash);
    bind_text_or_null(st, 3, status >= 0 ? RUN_STATUS[status] : NULL);
    int rc = sqlite3_step(st), ret = 0;
    if (rc == SQLITE_ROW) read_run(st, r, 1);
    else if (rc != SQLITE_DONE) ret = fail(s, err, errlen, "find run");
    done(st);
    return ret;
}

int store_each_run(Store *s, const char *stage, StoreRunFn fn, void *ctx, char *err,
                   size_t errlen) {
    sqlite3_stmt *st =
        prepare(s, "SELECT " RUN_COLUMNS " FROM runs WHERE (?1 IS NULL OR stage = ?1) ORDER BY id",
                err, errlen);
    if (!st) return -1;
    bind_text_or_null(st, 1, stage);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        StoreRun r;
        read_run(st, &r, 0);
        int stop = fn(&r, ctx);
        if (stop) return walk_end(s, st, stop, 1, "", err, errlen);
    }
    return walk_end(s, st, rc, 0, "list runs", err, errlen);
}

int store_reap_runs(Store *s, int64_t *n, char *err, size_t errlen) {
    if (n) *n = 0;
    char host[256];
    host_name(host, sizeof host);
    // Collect first, then update: no write while the read statement is open.
    sqlite3_stmt *st =
        prepare(s, "SELECT id, pid FROM runs WHERE status = 'running' AND host = ?1 ORDER BY id",
                err, errlen);
    if (!st) return -1;
    bind_text(st, 1, host);
    int64_t *gone = NULL, n_gone = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t pid = sqlite3_column_int64(st, 1);
        int alive = pid > 0 && pid <= INT32_MAX && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
        if (alive) continue;
        if (n_gone == cap) {
            cap = cap ? 2 * cap : 16;
            gone = REALLOC_ARRAY(gone, (size_t)cap, sizeof(int64_t));
        }
        gone[n_gone++] = sqlite3_column_int64(st, 0);
    }
    if (walk_end(s, st, rc, 0, "reap runs", err, errlen)) { free(gone); return -1; }
    int ret = 0;
    if (n_gone) {
        int began_tx = sqlite3_get_autocommit(s->db);
        if (op_begin(s, err, errlen)) { free(gone); return -1; }
        sqlite3_stmt *up = prepare(s, "UPDATE runs SET status = 'interrupted', finished = ?2 "
                                      "WHERE id = ?1 AND status = 'running'", err, errlen);
        int ok = up != NULL;
        for (int64_t i = 0; ok && i < n_gone; i++) {
            sqlite3_bind_int64(up, 1, gone[i]); sqlite3_bind_double(up, 2, now_s());
            ok = sqlite3_step(up) == SQLITE_DONE;
            if (!ok) fail(s, err, errlen, "reap runs");
            else if (n) *n += sqlite3_changes(s->db);
            sqlite3_reset(up);
        }
        sqlite3_finalize(up);
        ret = op_end(s, began_tx, ok, err, errlen);
        if (ret && n) *n = 0;
    }
    free(gone);
    return ret;
}

int store_add_metric(Store *s, int64_t run_id, int64_t step, const char *name, double value,
                     char *err, size_t errlen) {
    if (!name || !*name) return util_err(err, errlen, "%s: add metric: empty metric name", s->path);
    sqlite3_stmt *st = q(s, Q_METRIC_ADD, err, errlen);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, run_id); bind_text(st, 2, name); sqlite3_bind_int64(st, 3, step);
    bind_real_or_null(st, 4, value); sqlite3_bind_double(st, 5, now_s());
    int rc = sqlite3_step(st), ret = 0;
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
        ret = util_err(err, errlen, "%s: add metric '%.60s': run %lld does not exist", s->path,
                       name, (long long)run_id);
    else if (rc != SQLITE_DONE) ret = fail(s, err, errlen, "add metric");
    done(st);
    return ret;
}

int store_each_metric(Store *s, int64_t run_id, const char *name, StoreMetricFn fn, void *ctx,
                      char *err, size_t errlen) {
    sqlite3_stmt *st =
        prepare(s,
                "SELECT run_id, step, name, value, time FROM metrics WHERE run_id = ?1 "
                "AND (?2 IS NULL OR name = ?2) ORDER BY name, step",
                err, errlen);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, run_id);
    bind_text_or_null(st, 2, name);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        StoreMetric m = {.run_id = sqlite3_column_int64(st, 0), .step = sqlite3_column_int64(st, 1),
                         .name = col_text(st, 2), .value = col_real_or_nan(st, 3),
                         .time = sqlite3_column_double(st, 4)};
        int stop = fn(&m, ctx);
        if (stop) return walk_end(s, st, stop, 1, "", err, errlen);
    }
    return walk_end(s, st, rc, 0, "list metrics", err, errlen);
}

int store_add_rollout(Store *s, const StoreRollout *r, int64_t *id, char *err, size_t errlen) {
    if (id) *id = 0;
    if (need_text(s, r->prompt, "add rollout", err, errlen) ||
        need_text(s, r->response, "add rollout", err, errlen))
        return -1;
    sqlite3_stmt *st = q(s, Q_ROLLOUT_ADD, err, errlen);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, r->run_id); sqlite3_bind_int64(st, 2, r->iteration);
    bind_id_or_null(st, 3, r->prompt_id);
    bind_text(st, 4, r->prompt);
    bind_text(st, 5, r->response);
    bind_real_or_null(st, 6, r->score);
    bind_real_or_null(st, 7, r->reward);
    bind_real_or_null(st, 8, r->kl);
    sqlite3_bind_int64(st, 9, r->response_tokens); sqlite3_bind_int(st, 10, r->ended ? 1 : 0);
    sqlite3_bind_double(st, 11, now_s());
    bind_text(st, 12, r->components ? r->components : "");
    int rc = sqlite3_step(st), ret = 0;
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
        ret = util_err(err, errlen, "%s: add rollout: run %lld or prompt %lld does not exist",
                       s->path, (long long)r->run_id, (long long)r->prompt_id);
    else if (rc != SQLITE_DONE) ret = fail(s, err, errlen, "add rollout");
    done(st);
    if (ret == 0 && id) *id = sqlite3_last_insert_rowid(s->db);
    return ret;
}

int store_each_rollout(Store *s, int64_t run_id, int64_t iteration, StoreRolloutFn fn, void *ctx,
                       char *err, size_t errlen) {
    sqlite3_stmt *st =
        prepare(s,
                "SELECT id, run_id, iteration, prompt_id, prompt, response, score, reward, kl, "
                "response_tokens, ended FROM rollouts WHERE run_id = ?1 "
                "AND (?2 < 0 OR iteration = ?2) ORDER BY id",
                err, errlen);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_int64(st, 2, iteration);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        StoreRollout r = {.id = sqlite3_column_int64(st, 0),
                          .run_id = sqlite3_column_int64(st, 1),
                          .iteration = sqlite3_column_int64(st, 2),
                          .prompt_id = sqlite3_column_int64(st, 3),
                          .prompt = col_text(st, 4),
                          .response = col_text(st, 5),
                          .score = col_real_or_nan(st, 6),
                          .reward = col_real_or_nan(st, 7),
                          .kl = col_real_or_nan(st, 8),
                          .response_tokens = sqlite3_column_int64(st, 9),
                          .ended = sqlite3_column_int(st, 10)};
        int stop = fn(&r, ctx);
        if (stop) return walk_end(s, st, stop, 1, "", err, errlen);
    }
    return walk_end(s, st, rc, 0, "list rollouts", err, errlen);
}

// ---------------------------------------------------------------------------------------------
// Imports
// ---------------------------------------------------------------------------------------------

int store_find_import(Store *s, const char *hash, int64_t *id, char *err, size_t errlen) {
    return find_id_by_text(s, Q_IMPORT_FIND, hash, id, "find import", err, errlen);
}

int store_add_import(Store *s, const char *path, const char *hash, const char *kind, int64_t rows,
                     int64_t *id, char *err, size_t errlen) {
    if (id) *id = 0;
    if (!hash || !*hash)
        return util_err(err, errlen, "%s: add import: empty content hash", s->path);
    sqlite3_stmt *find = q(s, Q_IMPORT_FIND, err, errlen), *add = q(s, Q_IMPORT_ADD, err, errlen);
    if (!find || !add) return -1;
    bind_text(find, 1, hash);
    int rc = sqlite3_step(find);
    if (rc == SQLITE_ROW) {
        util_err(err, errlen, "%s: add import: %.200s has the same contents as %.200s, imported "
                 "before (import %lld)", s->path, path ? path : "", col_text(find, 1),
                 (long long)sqlite3_column_int64(find, 0));
        done(find);
        return -1;
    }
    if (rc != SQLITE_DONE) { fail(s, err, errlen, "add import"); done(find); return -1; }
    done(find);
    bind_text(add, 1, path); bind_text(add, 2, hash); bind_text(add, 3, kind);
    sqlite3_bind_int64(add, 4, rows); sqlite3_bind_double(add, 5, now_s());
    if (step_write(s, add, "add import", err, errlen)) return -1;
    if (id) *id = sqlite3_last_insert_rowid(s->db);
    return 0;
}

int store_delete_rollouts(Store *s, int64_t run_id, int64_t after_iteration, int64_t *n, char *err,
                          size_t errlen) {
    if (n) *n = 0;
    sqlite3_stmt *st =
        prepare(s, "DELETE FROM rollouts WHERE run_id = ?1 AND iteration > ?2", err, errlen);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_int64(st, 2, after_iteration);
    int rc = sqlite3_step(st);
    int ret = rc == SQLITE_DONE ? 0 : fail(s, err, errlen, "delete rollouts");
    if (ret == 0 && n) *n = sqlite3_changes64(s->db);
    sqlite3_finalize(st);
    return ret;
}

int store_claim_prompt_id(Store *s, int64_t labeler_id, int64_t prompt_id, double lease_s,
                          char *err, size_t errlen) {
    if (labeler_exists(s, labeler_id, "claim prompt", err, errlen)) return -1;
    if (prompt_exists(s, prompt_id, "claim prompt", err, errlen)) return -1;
    sqlite3_stmt *put = q(s, Q_CLAIM_PUT, err, errlen);
    if (!put) return -1;
    double now = now_s();
    sqlite3_bind_int64(put, 1, prompt_id); sqlite3_bind_int64(put, 2, labeler_id);
    sqlite3_bind_double(put, 3, now);
    sqlite3_bind_double(put, 4, now + (lease_s > 0 ? lease_s : 3600));
    return step_write(s, put, "claim prompt", err, errlen);
}
