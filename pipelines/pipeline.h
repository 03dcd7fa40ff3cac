// Pipeline files: parsing (libyaml), references, dependency order and each stage's command line.
// pipeline_load has no side effects (it reads one file) so that it can be fuzzed; validation of a
// stage's settings by its program, output paths, fingerprints, gates and execution live in run.c.
// Ownership: a Pipeline owns every string and array in it; pipeline_free releases them. Every
// array is allocated to the size the file asks for, within the limits below.
#ifndef PIPELINE_H
#define PIPELINE_H
#include <limits.h>
#include <stddef.h>
#include <stdint.h>

// Limits on what one pipeline file may ask for; each one exceeded is a file:line:column error.
#define PIPELINE_MAX_STAGES 256          // stages in one file
#define PIPELINE_MAX_ITEMS  4096         // needs, args, settings of one stage; vars
#define PIPELINE_MAX_DEPTH  64           // nesting of mappings and lists, aliases expanded
#define PIPELINE_MAX_NODES  100000       // YAML nodes, an alias counting as every node it repeats
#define PIPELINE_MAX_FILE   (16 << 20)   // bytes of the pipeline file

// Names the runner uses inside a workspace: no stage may be named so, no `out` may point there.
#define PIPELINE_LOGS       "logs"
#define PIPELINE_DB         "workspace.db"
#define PIPELINE_LOCK       ".rlhf-run.lock"      // the runner's advisory lock (flock), its pid
#define PIPELINE_MARKER     ".rlhf-run-output"    // in each output directory the runner made

typedef struct {
    char *key, *value;   // dotted key; value as a --set would take it (lists in flow style)
    int line, col;
} Setting;

typedef struct {
    char *text;
    int line, col;
} Str;

// A stage gate (`require: {STAGE: "METRIC OP NUMBER"}`): checked before the stage runs.
typedef enum { GATE_GE, GATE_GT, GATE_LE, GATE_LT, GATE_EQ } GateOp;
typedef struct {
    Str stage;                   // the stage whose metric it reads (at the key's line:column)
    Str cond;                    // the condition as written (at the value's line:column)
    char *metric;                // e.g. valid/accuracy
    GateOp op;
    double threshold;
    int dep;                     // resolved: the stage's index
} Gate;
const char *pipeline_gate_op(GateOp op);   // ">=", ...

typedef struct {
    Str name, run, out, launcher;  // out: as given, or WORKSPACE/NAME at the name's line:column
    int out_given;
    int line, col;               // of the stage's mapping
    Str *needs;
    int n_needs;
    Setting *settings;
    int n_settings, cap_settings;
    Str *args;
    int n_args;
    Str *inputs, *outputs;       // declared files or folders: fingerprinted / must exist after
    int n_inputs, n_outputs;
    Gate *gates;
    int n_gates;
    // resolved
    char *program;               // sft | ppo | dpo | reward | rlhf | command
    int command;                 // run: command (args are the whole command, found on PATH)
    char **in_paths, **out_paths; // inputs, outputs with references expanded
    int config_program;          // takes --set KEY=VALUE
    char **argv;                 // argc entries and a NULL
    int argc;
    int *need_idx;               // n_needs entries
    char fingerprint[17];
    char label[128];             // its runs in the database: "pipeline/NAME"
    char *out_real;              // run.c: the output path resolved (see pipeline_resolve_path)
    // outcome
    const char *outcome;         // "ran", "skipped", "failed", "interrupted", "not run"
    char gate_note[256];         // the gates' outcome, for the summary ("" when none)
    double seconds;
    char log[PATH_MAX];
} Stage;

typedef struct {
    const char *file;
    Str workspace, launcher;
    int64_t seed;
    int has_seed;
    Str *var_keys, *var_vals;
    int n_vars, cap_vars;
    Stage *stages;
    int n_stages;
    int *order;                  // n_stages entries: topological order
    char *reach; // n_stages^2: reach[s * n_stages + d] when s needs d, directly or not
    char bindir[PATH_MAX];
    char base[PATH_MAX];         // run.c: the pipeline file's folder (relative paths start here)
    char err[2048];
} Pipeline;

// Parses path into p (zeroed by the caller, p->bindir set to the programs' directory) and
// applies overrides ("KEY=VALUE"), then resolves references, the order and the commands.
// 0, or -1 with "file:line:column: message" in p->err.
// rlhf run PIPELINE.yaml [options] (run.c): the whole command; returns the exit status.
int  pipeline_cmd_run(int argc, char **argv);

int  pipeline_load(Pipeline *p, const char *path, const char *const *overrides, int n_overrides);
void pipeline_free(Pipeline *p);
// Formats "file:line:column: message" into p->err and returns -1.
int pipeline_error(Pipeline *p, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int  pipeline_stage_index(const Pipeline *p, const char *name);
int  pipeline_depends_on(const Pipeline *p, int s, int dep);   // s needs dep, directly or not
const char *pipeline_stage_out(const Pipeline *p, const Stage *st, char *buf, size_t n);
// The absolute path that path names once its missing directories are created: the deepest part
// that exists resolved by realpath (symbolic links followed, `..` applied), the rest appended
// with `.` and `..` applied to the text. Returns a new string, or NULL with errno set (a dangling
// link, a name too long, an unreadable directory).
char *pipeline_resolve_path(const char *path);
// Whether resolved path `inner` is `outer` or lies under it (a whole-component comparison, so
// "/a/bc" is not under "/a/b").
int  pipeline_path_within(const char *inner, const char *outer);

#endif
