// store_sql: see store_sql.h.
#include "store_sql.h"

// Which prompts a claim may give: from source ?8 (any of the prompt's sources), among the ids of
// the JSON array ?9, and queued for labeling unless ?10 (chosen by name): by one of its sources,
// or it has none recorded (a row written without the store).
#define PROMPT_FROM_SOURCE(src) \
    "(p.source = " src " OR EXISTS (SELECT 1 FROM prompt_sources ps WHERE ps.prompt_id = p.id " \
    "AND ps.source = " src "))"
#define CLAIM_CHOSEN \
    "  AND (?8 IS NULL OR " PROMPT_FROM_SOURCE("?8") ") " \
    "  AND (?9 IS NULL OR p.id IN (SELECT value FROM json_each(?9))) " \
    "  AND (?10 OR coalesce((SELECT max(ps.to_label) FROM prompt_sources ps " \
    "                       WHERE ps.prompt_id = p.id), 1)) "

const char *const STORE_QUERY_SQL[Q_COUNT] = {
    [Q_PROMPT_ADD] = "INSERT INTO prompts(text, split, source, created) VALUES (?1, ?2, ?3, ?4) "
                     "ON CONFLICT(text) DO NOTHING",
    [Q_PROMPT_FIND] = "SELECT id FROM prompts WHERE text = ?1",
    [Q_PROMPT_GET] = "SELECT id, text, split, source, created, rendered FROM prompts WHERE id = ?1",
    [Q_DEMO_ADD] =
        "INSERT INTO demonstrations(prompt_id, response, source, created) VALUES (?1, ?2, ?3, ?4) "
        "ON CONFLICT(prompt_id, response) DO NOTHING",
    [Q_DEMO_FIND] = "SELECT id FROM demonstrations WHERE prompt_id = ?1 AND response = ?2",
    [Q_COMPLETION_ADD] =
        "INSERT INTO completions(prompt_id, text, model, created) VALUES (?1, ?2, ?3, ?4) "
        "ON CONFLICT(prompt_id, text, model) DO NOTHING",
    [Q_COMPLETION_FIND] =
        "SELECT id FROM completions WHERE prompt_id = ?1 AND text = ?2 AND model = ?3",
    [Q_COMPLETION_PROMPT] = "SELECT prompt_id FROM completions WHERE id = ?1",
    [Q_LABELER_ADD] =
        "INSERT INTO labelers(name, created) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
    [Q_LABELER_FIND] = "SELECT id FROM labelers WHERE name = ?1",
    [Q_LABELER_EXISTS] = "SELECT 1 FROM labelers WHERE id = ?1",
    [Q_RANKING_ADD] = "INSERT INTO rankings(prompt_id, labeler_id, created, comment, policy_hash) "
                      "VALUES (?1, ?2, ?3, ?4, ?5)",
    [Q_RANKING_ITEM_ADD] =
        "INSERT INTO ranking_items(ranking_id, completion_id, rank) VALUES (?1, ?2, ?3)",
    [Q_RANKING_DELETE] = "DELETE FROM rankings WHERE id = ?1",
    [Q_CLAIM_DROP_MINE] = "DELETE FROM claims WHERE prompt_id = ?1 AND labeler_id = ?2",
    [Q_CLAIM_EXPIRE] = "DELETE FROM claims WHERE skipped = 0 AND expires <= ?1",
    // ?1 labeler, ?2 now, ?3 split or NULL, ?4 min completions, ?5 overlap, ?6 after this id,
    // ?7 policy hash or NULL, ?8..?10 CLAIM_CHOSEN
    [Q_CLAIM_OWN] =
        "SELECT c.prompt_id FROM claims c JOIN prompts p ON p.id = c.prompt_id "
        "WHERE c.labeler_id = ?1 AND c.skipped = 0 AND c.expires > ?2 "
        "  AND (?3 IS NULL OR p.split = ?3) "
        "  AND (SELECT count(*) FROM completions x WHERE x.prompt_id = p.id) >= ?4 "
        "  AND NOT EXISTS (SELECT 1 FROM rankings r WHERE r.prompt_id = p.id AND r.labeler_id = ?1 "
        "                  AND (?7 IS NULL OR r.policy_hash = ?7)) "
        CLAIM_CHOSEN
        "ORDER BY c.prompt_id LIMIT 1",
    [Q_CLAIM_NEXT] =
        "SELECT p.id FROM prompts p "
        "WHERE (?3 IS NULL OR p.split = ?3) "
        "  AND NOT EXISTS (SELECT 1 FROM claims c WHERE c.prompt_id = p.id AND c.labeler_id = ?1 "
        "                  AND (c.skipped = 1 OR c.expires > ?2)) "
        "  AND NOT EXISTS (SELECT 1 FROM rankings r WHERE r.prompt_id = p.id AND r.labeler_id = ?1 "
        "                  AND (?7 IS NULL OR r.policy_hash = ?7)) "
        "  AND (SELECT count(DISTINCT r.labeler_id) FROM rankings r WHERE r.prompt_id = p.id "
        "       AND (?7 IS NULL OR r.policy_hash = ?7)) "
        "    + (SELECT count(*) FROM claims c WHERE c.prompt_id = p.id AND c.labeler_id <> ?1 "
        "       AND c.skipped = 0 AND c.expires > ?2) < ?5 "
        "  AND (SELECT count(*) FROM completions x WHERE x.prompt_id = p.id) >= ?4 "
        "  AND p.id > ?6 "
        CLAIM_CHOSEN
        "ORDER BY p.id LIMIT 1",
    [Q_CLAIM_PUT] =
        "INSERT INTO claims(prompt_id, labeler_id, claimed, expires, skipped) VALUES (?1, ?2, ?3, ?4, 0) "
        "ON CONFLICT(prompt_id, labeler_id) DO UPDATE SET claimed = excluded.claimed, "
        "expires = excluded.expires, skipped = 0",
    [Q_CLAIM_RELEASE] =
        "DELETE FROM claims WHERE prompt_id = ?1 AND labeler_id = ?2 AND skipped = 0",
    [Q_CLAIM_SKIP] =
        "INSERT INTO claims(prompt_id, labeler_id, claimed, expires, skipped) VALUES (?1, ?2, ?3, ?3, 1) "
        "ON CONFLICT(prompt_id, labeler_id) DO UPDATE SET skipped = 1",
    [Q_SCORE_SET] =
        "INSERT INTO reward_scores(model, completion_id, score, created) VALUES (?1, ?2, ?3, ?4) "
        "ON CONFLICT(model, completion_id) DO UPDATE SET score = excluded.score, created = excluded.created",
    [Q_SCORE_GET] = "SELECT score FROM reward_scores WHERE model = ?1 AND completion_id = ?2",
    [Q_COMPLETION_EXISTS] = "SELECT 1 FROM completions WHERE id = ?1",
    [Q_RUN_ADD] =
        "INSERT INTO runs(stage, name, program, config, config_hash, status, checkpoint, started, pid, "
        "host, parent_id) VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6, ?7, ?8, ?9, ?10)",
    [Q_RUN_RESUME] =
        "UPDATE runs SET status = 'running', pid = ?2, host = ?3, finished = NULL, exit_code = NULL "
        "WHERE id = ?1",
    [Q_RUN_FINISH] = "UPDATE runs SET status = ?2, finished = ?3, exit_code = ?4 WHERE id = ?1",
    [Q_RUN_CHECKPOINT] = "UPDATE runs SET checkpoint = ?2 WHERE id = ?1",
    [Q_RUN_GET] = "SELECT " RUN_COLUMNS " FROM runs WHERE id = ?1",
    [Q_RUN_LAST] =
        "SELECT " RUN_COLUMNS " FROM runs WHERE stage = ?1 AND (?2 IS NULL OR config_hash = ?2) "
        "AND (?3 IS NULL OR status = ?3) ORDER BY id DESC LIMIT 1",
    [Q_RUN_EXISTS] = "SELECT 1 FROM runs WHERE id = ?1",
    [Q_METRIC_ADD] =
        "INSERT INTO metrics(run_id, name, step, value, time) VALUES (?1, ?2, ?3, ?4, ?5) "
        "ON CONFLICT(run_id, name, step) DO UPDATE SET value = excluded.value, time = excluded.time",
    [Q_ROLLOUT_ADD] =
        "INSERT INTO rollouts(run_id, iteration, prompt_id, prompt, response, score, reward, kl, "
        "response_tokens, ended, created, components) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    [Q_IMPORT_FIND] = "SELECT id, path FROM imports WHERE hash = ?1",
    [Q_IMPORT_ADD] =
        "INSERT INTO imports(path, hash, kind, rows, created) VALUES (?1, ?2, ?3, ?4, ?5)",
    [Q_PROMPT_SOURCE_ADD] =
        "INSERT INTO prompt_sources(prompt_id, source, to_label) VALUES (?1, ?2, ?3) "
        "ON CONFLICT(prompt_id, source) DO UPDATE SET to_label = max(to_label, excluded.to_label)",
    [Q_COMPLETION_POLICY_ADD] =
        "INSERT INTO completion_policies(policy_hash, completion_id) VALUES (?1, ?2) "
        "ON CONFLICT DO NOTHING",
    [Q_COMPLETION_POLICY_HAS] =
        "SELECT 1 FROM completion_policies WHERE policy_hash = ?1 AND completion_id = ?2",
    [Q_SOURCE_COUNT] = "SELECT count(*) FROM prompts p WHERE " PROMPT_FROM_SOURCE("?1"),
    [Q_USER_ADD] = "INSERT INTO users(labeler_id, role, salt, hash, iterations, created) "
                   "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [Q_USER_FIND] = "SELECT " USER_COLUMNS " FROM users u JOIN labelers l ON l.id = u.labeler_id "
                    "WHERE l.name = ?1",
    [Q_USER_DELETE] = "DELETE FROM users WHERE labeler_id = (SELECT id FROM labelers "
                      "WHERE name = ?1)",
    [Q_SESSION_ADD] = "INSERT INTO sessions(id, user_id, csrf, created, expires) "
                      "VALUES (?1, ?2, ?3, ?4, ?5)",
    [Q_SESSION_EXPIRE] = "DELETE FROM sessions WHERE expires <= ?1",
    [Q_SESSION_GET] =
        "SELECT s.user_id, u.labeler_id, l.name, u.role, s.csrf, s.expires, s.created "
        "FROM sessions s "
        "JOIN users u ON u.id = s.user_id JOIN labelers l ON l.id = u.labeler_id "
        "WHERE s.id = ?1 AND s.expires > ?2",
    [Q_SESSION_DELETE] = "DELETE FROM sessions WHERE id = ?1",
    [Q_CLAIM_ACTIVE] = "SELECT 1 FROM claims WHERE prompt_id = ?1 AND labeler_id = ?2 "
                       "AND skipped = 0 AND expires > ?3",
    [Q_RANKING_FLAG_ADD] =
        "INSERT INTO ranking_flags(ranking_id, completion_id, flag) VALUES (?1, ?2, ?3)",
    [Q_RANKING_LAST] = "SELECT id FROM rankings WHERE labeler_id = ?1 AND created >= ?2 "
                       "ORDER BY id DESC LIMIT 1",
    [Q_RANKING_OWNER] = "SELECT labeler_id, prompt_id FROM rankings WHERE id = ?1",
    [Q_LABELER_RANKINGS] = "SELECT count(*) FROM rankings WHERE labeler_id = ?1",
    // ?1 labeler, ?2 overlap: the labeler's rankings, prompts ranked by at least ?2 labelers,
    // prompts queued for labeling
    [Q_LABEL_PROGRESS] =
        "SELECT (SELECT count(*) FROM rankings WHERE labeler_id = ?1), "
        "(SELECT count(*) FROM (SELECT prompt_id FROM rankings GROUP BY prompt_id "
        "                       HAVING count(DISTINCT labeler_id) >= ?2)), "
        "(SELECT count(*) FROM prompts p WHERE coalesce((SELECT max(ps.to_label) "
        "  FROM prompt_sources ps WHERE ps.prompt_id = p.id), 1))",
};

const char *const STORE_MIGRATIONS[STORE_SCHEMA_VERSION] = {
    // 0 -> 1: labeling data, runs, metrics, imports
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value ANY) STRICT;"
    "CREATE TABLE prompts ("
    "  id INTEGER PRIMARY KEY,"
    "  text TEXT NOT NULL UNIQUE,"
    "  split TEXT NOT NULL CHECK (split IN ('train', 'valid', 'test')),"
    "  source TEXT NOT NULL DEFAULT '',"
    "  created REAL NOT NULL) STRICT;"
    "CREATE INDEX prompts_split ON prompts(split, id);"
    "CREATE TABLE demonstrations ("
    "  id INTEGER PRIMARY KEY,"
    "  prompt_id INTEGER NOT NULL REFERENCES prompts(id),"
    "  response TEXT NOT NULL,"
    "  source TEXT NOT NULL DEFAULT '',"
    "  created REAL NOT NULL,"
    "  UNIQUE (prompt_id, response)) STRICT;"
    "CREATE TABLE completions ("
    "  id INTEGER PRIMARY KEY,"
    "  prompt_id INTEGER NOT NULL REFERENCES prompts(id),"
    "  text TEXT NOT NULL,"
    "  model TEXT NOT NULL DEFAULT '',"
    "  created REAL NOT NULL,"
    "  UNIQUE (prompt_id, text, model)) STRICT;"
    "CREATE TABLE labelers ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE CHECK (length(CAST(name AS BLOB)) > 0),"
    "  created REAL NOT NULL) STRICT;"
    "CREATE TABLE rankings ("
    "  id INTEGER PRIMARY KEY,"
    "  prompt_id INTEGER NOT NULL REFERENCES prompts(id),"
    "  labeler_id INTEGER NOT NULL REFERENCES labelers(id),"
    "  created REAL NOT NULL,"
    "  comment TEXT NOT NULL DEFAULT '') STRICT;"
    "CREATE INDEX rankings_prompt ON rankings(prompt_id, labeler_id);"
    "CREATE INDEX rankings_labeler ON rankings(labeler_id);"
    "CREATE TABLE ranking_items ("
    "  ranking_id INTEGER NOT NULL REFERENCES rankings(id) ON DELETE CASCADE,"
    "  completion_id INTEGER NOT NULL REFERENCES completions(id),"
    "  rank INTEGER NOT NULL CHECK (rank >= 1),"
    "  PRIMARY KEY (ranking_id, completion_id)) STRICT, WITHOUT ROWID;"
    "CREATE INDEX ranking_items_completion ON ranking_items(completion_id);"
    "CREATE TABLE reward_scores ("
    "  model TEXT NOT NULL,"
    "  completion_id INTEGER NOT NULL REFERENCES completions(id),"
    "  score REAL NOT NULL,"
    "  created REAL NOT NULL,"
    "  PRIMARY KEY (model, completion_id)) STRICT, WITHOUT ROWID;"
    "CREATE INDEX reward_scores_completion ON reward_scores(completion_id);"
    "CREATE TABLE runs ("
    "  id INTEGER PRIMARY KEY,"
    "  stage TEXT NOT NULL,"
    "  name TEXT NOT NULL DEFAULT '',"
    "  program TEXT NOT NULL DEFAULT '',"
    "  config TEXT NOT NULL DEFAULT '',"
    "  config_hash TEXT NOT NULL DEFAULT '',"
    "  status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'interrupted')),"
    "  checkpoint TEXT NOT NULL DEFAULT '',"
    "  started REAL NOT NULL,"
    "  finished REAL,"
    "  exit_code INTEGER) STRICT;"
    "CREATE INDEX runs_stage ON runs(stage, config_hash, id);"
    "CREATE TABLE metrics ("
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  name TEXT NOT NULL,"
    "  step INTEGER NOT NULL,"
    "  value REAL,"
    "  time REAL NOT NULL,"
    "  PRIMARY KEY (run_id, name, step)) STRICT, WITHOUT ROWID;"
    "CREATE TABLE imports ("
    "  id INTEGER PRIMARY KEY,"
    "  path TEXT NOT NULL,"
    "  hash TEXT NOT NULL UNIQUE,"
    "  kind TEXT NOT NULL DEFAULT '',"
    "  rows INTEGER NOT NULL DEFAULT 0,"
    "  created REAL NOT NULL) STRICT;"
    "INSERT INTO meta(key, value) VALUES ('application', '" STORE_APPLICATION "');"
    "INSERT INTO meta(key, value) VALUES ('created', (julianday('now') - 2440587.5) * 86400.0);",

    // 1 -> 2: labeling assignments, PPO rollouts, process and parent of a run
    "ALTER TABLE runs ADD COLUMN pid INTEGER;"
    "ALTER TABLE runs ADD COLUMN host TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE runs ADD COLUMN parent_id INTEGER REFERENCES runs(id);"
    "CREATE INDEX runs_parent ON runs(parent_id);"
    "CREATE TABLE claims ("
    "  prompt_id INTEGER NOT NULL REFERENCES prompts(id),"
    "  labeler_id INTEGER NOT NULL REFERENCES labelers(id),"
    "  claimed REAL NOT NULL,"
    "  expires REAL NOT NULL,"
    "  skipped INTEGER NOT NULL DEFAULT 0 CHECK (skipped IN (0, 1)),"
    "  PRIMARY KEY (prompt_id, labeler_id)) STRICT, WITHOUT ROWID;"
    "CREATE INDEX claims_labeler ON claims(labeler_id);"
    "CREATE TABLE rollouts ("
    "  id INTEGER PRIMARY KEY,"
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  iteration INTEGER NOT NULL,"
    "  prompt_id INTEGER REFERENCES prompts(id),"
    "  prompt TEXT NOT NULL,"
    "  response TEXT NOT NULL,"
    "  score REAL,"
    "  reward REAL,"
    "  kl REAL,"
    "  response_tokens INTEGER NOT NULL DEFAULT 0,"
    "  ended INTEGER NOT NULL DEFAULT 0,"
    "  created REAL NOT NULL) STRICT;"
    "CREATE INDEX rollouts_run ON rollouts(run_id, iteration);"
    "CREATE INDEX rollouts_prompt ON rollouts(prompt_id);",

    // 2 -> 3: every source of a prompt and whether it queued the prompt for labeling (the
    // prompts of a workspace made before were all queued); the policy contents (hash) that
    // sampled a completion and whose completions a ranking ranked ('' before: unknown contents)
    "CREATE TABLE prompt_sources ("
    "  prompt_id INTEGER NOT NULL REFERENCES prompts(id),"
    "  source TEXT NOT NULL,"
    "  to_label INTEGER NOT NULL CHECK (to_label IN (0, 1)),"
    "  PRIMARY KEY (prompt_id, source)) STRICT, WITHOUT ROWID;"
    "CREATE INDEX prompt_sources_source ON prompt_sources(source, prompt_id);"
    "INSERT INTO prompt_sources(prompt_id, source, to_label) SELECT id, source, 1 FROM prompts;"
    "CREATE TABLE completion_policies ("
    "  policy_hash TEXT NOT NULL,"
    "  completion_id INTEGER NOT NULL REFERENCES completions(id),"
    "  PRIMARY KEY (policy_hash, completion_id)) STRICT, WITHOUT ROWID;"
    "CREATE INDEX completion_policies_completion ON completion_policies(completion_id);"
    "ALTER TABLE rankings ADD COLUMN policy_hash TEXT NOT NULL DEFAULT '';",

    // 3 -> 4: the parts of a rollout's reward (ppo's reward models, programs, penalties)
    "ALTER TABLE rollouts ADD COLUMN components TEXT NOT NULL DEFAULT '';",
    // 4 -> 5: whether a prompt's text is a conversation rendered with a chat template (older
    // prompts were all plain text)
    "ALTER TABLE prompts ADD COLUMN rendered INTEGER NOT NULL DEFAULT 0 "
    "CHECK (rendered IN (0, 1));",
    // 5 -> 6: logins of `rlhf serve` (one per labeler, with a role; only a salted PBKDF2 hash of
    // the token), their sessions (the SHA-256 of the cookie, never the cookie), and the flags a
    // labeler puts on ranked completions
    "CREATE TABLE users ("
    "  id INTEGER PRIMARY KEY,"
    "  labeler_id INTEGER NOT NULL UNIQUE REFERENCES labelers(id),"
    "  role TEXT NOT NULL CHECK (role IN ('labeler', 'admin')),"
    "  salt TEXT NOT NULL,"
    "  hash TEXT NOT NULL,"
    "  iterations INTEGER NOT NULL CHECK (iterations >= 1),"
    "  created REAL NOT NULL) STRICT;"
    "CREATE TABLE sessions ("
    "  id TEXT PRIMARY KEY,"
    "  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  csrf TEXT NOT NULL,"
    "  created REAL NOT NULL,"
    "  expires REAL NOT NULL) STRICT, WITHOUT ROWID;"
    "CREATE INDEX sessions_user ON sessions(user_id);"
    "CREATE TABLE ranking_flags ("
    "  ranking_id INTEGER NOT NULL REFERENCES rankings(id) ON DELETE CASCADE,"
    "  completion_id INTEGER NOT NULL REFERENCES completions(id),"
    "  flag TEXT NOT NULL CHECK (flag IN ('unsafe', 'broken')),"
    "  PRIMARY KEY (ranking_id, completion_id, flag)) STRICT, WITHOUT ROWID;",
};
