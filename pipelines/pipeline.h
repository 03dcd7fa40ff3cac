// Pipeline files: parsing (libyaml), references, dependency order and each stage's command line.
// pipeline_load has no side effects (it reads one file) so that it can be fuzzed; validation of a
// stage's settings by its program, fingerprints and execution live in cmd_run.c.
// Ownership: a Pipeline owns every string in it; pipeline_free releases them.
#ifndef PIPELINE_H
#define PIPELINE_H
#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#define MAX_STAGES 256
#define MAX_ITEMS 512

typedef struct {
    char *key, *value;   // dotted key; value as a --set would take it (lists in flow style)
    int line, col;
} Setting;

typedef struct {
    char *text;
    int line, col;
} Str;

typedef struct {
    Str name, run, out, launcher;
    int line, col;               // of the stage's mapping
    Str needs[MAX_ITEMS];
    int n_needs;
    Setting settings[MAX_ITEMS];
    int n_settings;
    Str args[MAX_ITEMS];
    int n_args;
    // resolved
    char *program;               // sft | ppo | reward | rlhf
    int config_program;          // takes --set KEY=VALUE
    char *argv[3 * MAX_ITEMS + 16];
    int argc;
    int need_idx[MAX_ITEMS];
    char fingerprint[17];
    char label[128];             // its runs in the database: "pipeline/NAME"
    // outcome
    const char *outcome;         // "ran", "skipped", "failed", "interrupted", "not run"
    double seconds;
    char log[PATH_MAX];
} Stage;

typedef struct {
    const char *file;
    Str workspace, launcher;
    int64_t seed;
    int has_seed;
    Str var_keys[MAX_ITEMS], var_vals[MAX_ITEMS];
    int n_vars;
    Stage stages[MAX_STAGES];
    int n_stages;
    int order[MAX_STAGES];       // topological order
    char bindir[PATH_MAX];
    char err[2048];
} Pipeline;

// Parses path into p (zeroed by the caller, p->bindir set to the programs' directory) and
// applies overrides ("KEY=VALUE"), then resolves references, the order and the commands.
// 0, or -1 with "file:line:column: message" in p->err.
int  pipeline_load(Pipeline *p, const char *path, const char *const *overrides, int n_overrides);
void pipeline_free(Pipeline *p);
// Formats "file:line:column: message" into p->err and returns -1.
int  pipeline_error(Pipeline *p, int line, int col, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
int  pipeline_stage_index(const Pipeline *p, const char *name);
int  pipeline_depends_on(const Pipeline *p, int s, int dep, int depth);
const char *pipeline_stage_out(const Pipeline *p, const Stage *st, char *buf, size_t n);


#endif
