// store_sql: the SQL text of the workspace database, private to store.c: the statements store.c
// prepares once and reuses (STORE_QUERY_SQL[Q_*]) and the schema's migrations
// (STORE_MIGRATIONS[v - 1] takes a database from version v - 1 to v). Never edit a migration once
// released: add a new one and raise STORE_SCHEMA_VERSION (store.h). Read-only tables, no state.
#ifndef STORE_SQL_H
#define STORE_SQL_H
#include "store.h"

// Statements reused across calls (prepared once, on first use). Walks (store_each_*) prepare
// their own statement per call instead, so that a callback may start another walk.
enum {
    Q_PROMPT_ADD, Q_PROMPT_FIND, Q_PROMPT_GET,
    Q_DEMO_ADD, Q_DEMO_FIND,
    Q_COMPLETION_ADD, Q_COMPLETION_FIND, Q_COMPLETION_PROMPT,
    Q_LABELER_ADD, Q_LABELER_FIND, Q_LABELER_EXISTS,
    Q_RANKING_ADD, Q_RANKING_ITEM_ADD, Q_RANKING_DELETE, Q_CLAIM_DROP_MINE,
    Q_CLAIM_EXPIRE, Q_CLAIM_OWN, Q_CLAIM_NEXT, Q_CLAIM_PUT, Q_CLAIM_RELEASE, Q_CLAIM_SKIP,
    Q_SCORE_SET, Q_SCORE_GET, Q_COMPLETION_EXISTS,
    Q_RUN_ADD, Q_RUN_RESUME, Q_RUN_FINISH, Q_RUN_CHECKPOINT, Q_RUN_GET, Q_RUN_LAST, Q_RUN_EXISTS,
    Q_METRIC_ADD, Q_ROLLOUT_ADD,
    Q_IMPORT_FIND, Q_IMPORT_ADD,
    Q_PROMPT_SOURCE_ADD, Q_COMPLETION_POLICY_ADD, Q_COMPLETION_POLICY_HAS,
    Q_SOURCE_COUNT,
    Q_USER_ADD, Q_USER_FIND, Q_USER_DELETE,
    Q_SESSION_ADD, Q_SESSION_EXPIRE, Q_SESSION_GET, Q_SESSION_DELETE,
    Q_CLAIM_ACTIVE, Q_RANKING_FLAG_ADD, Q_RANKING_LAST, Q_RANKING_OWNER, Q_LABEL_PROGRESS,
    Q_LABELER_RANKINGS,
    Q_COUNT
};

#define RUN_COLUMNS "id, stage, name, program, config, config_hash, status, checkpoint, started, " \
                    "finished, exit_code, pid, host, parent_id"

#define USER_COLUMNS "u.id, u.labeler_id, l.name, u.role, u.salt, u.hash, u.iterations, " \
                     "u.created, (SELECT count(*) FROM rankings r WHERE r.labeler_id = l.id)"

extern const char *const STORE_QUERY_SQL[Q_COUNT];
extern const char *const STORE_MIGRATIONS[STORE_SCHEMA_VERSION];
#endif
