// rlhf run: executes a pipeline file (YAML) stage by stage. The whole file is validated first
// (keys, types, references, cycles, and each stage's settings by the stage's own program); then
// each stage runs as a child process of the same binaries, its output streamed to the terminal
// and to WORKSPACE/logs/STAGE.log, its run recorded in the workspace database. A stage whose
// command, inputs and upstream stages are unchanged and that finished before is skipped; an
// interrupted stage is run again with the same command, and the programs resume from their last
// checkpoint. The first failure stops the pipeline with a summary.
#include "commands.h"
#include "store.h"
#include "util.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml.h>

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

static int perr(Pipeline *p, int line, int col, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int perr(Pipeline *p, int line, int col, const char *fmt, ...) {
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(p->err, sizeof p->err, "%s:%d:%d: %s", p->file, line, col, msg);
    return -1;
}

static char *xstrdup(const char *s) {
    char *d = strdup(s ? s : "");
    if (!d) DIE("out of memory");
    return d;
}

static Str str_of(yaml_node_t *n) {
    Str s = {xstrdup((const char *)n->data.scalar.value), (int)n->start_mark.line + 1, (int)n->start_mark.column + 1};
    return s;
}

static int expect(Pipeline *p, yaml_node_t *n, yaml_node_type_t t, const char *what) {
    static const char *names[] = {"nothing", "a scalar", "a list", "a mapping"};
    if (n->type == t) return 0;
    return perr(p, (int)n->start_mark.line + 1, (int)n->start_mark.column + 1, "%s must be %s, not %s", what, names[t], names[n->type]);
}

static int valid_name(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-')) return 0;
    return 1;
}

// Settings: a nested mapping flattened to dotted keys; scalar values as is, lists as "[a, b]".
static int parse_settings(Pipeline *p, Stage *st, yaml_document_t *d, yaml_node_t *n, const char *prefix) {
    if (expect(p, n, YAML_MAPPING_NODE, "settings")) return -1;
    for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = yaml_document_get_node(d, pr->key), *v = yaml_document_get_node(d, pr->value);
        if (expect(p, k, YAML_SCALAR_NODE, "a settings key")) return -1;
        char key[512];
        snprintf(key, sizeof key, "%s%s%s", prefix, prefix[0] ? "." : "", (const char *)k->data.scalar.value);
        if (v->type == YAML_MAPPING_NODE) { if (parse_settings(p, st, d, v, key)) return -1; continue; }
        if (st->n_settings == MAX_ITEMS) return perr(p, (int)k->start_mark.line + 1, 1, "too many settings");
        for (int i = 0; i < st->n_settings; i++)
            if (!strcmp(st->settings[i].key, key))
                return perr(p, (int)k->start_mark.line + 1, (int)k->start_mark.column + 1, "setting '%s' given twice (first at line %d)", key, st->settings[i].line);
        Setting *s = &st->settings[st->n_settings++];
        s->key = xstrdup(key);
        s->line = (int)k->start_mark.line + 1; s->col = (int)k->start_mark.column + 1;
        if (v->type == YAML_SCALAR_NODE) s->value = xstrdup((const char *)v->data.scalar.value);
        else {   // a list of scalars, in flow style
            size_t cap = 64, len = 0;
            char *buf = MALLOC_CHECK(cap);
            buf[len++] = '[';
            for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
                yaml_node_t *e = yaml_document_get_node(d, *it);
                if (expect(p, e, YAML_SCALAR_NODE, "a list item in settings")) { free(buf); return -1; }
                const char *t = (const char *)e->data.scalar.value;
                size_t need = len + strlen(t) * 2 + 8;
                if (need > cap) { while (cap < need) cap *= 2; buf = realloc(buf, cap); if (!buf) DIE("out of memory"); }
                if (it > v->data.sequence.items.start) { buf[len++] = ','; buf[len++] = ' '; }
                buf[len++] = '"';
                for (; *t; t++) { if (*t == '"' || *t == '\\') buf[len++] = '\\'; buf[len++] = *t; }
                buf[len++] = '"';
            }
            buf[len++] = ']';
            buf[len] = 0;
            s->value = buf;
        }
    }
    return 0;
}

static int parse_list(Pipeline *p, yaml_document_t *d, yaml_node_t *n, Str *out, int *count, const char *what) {
    if (n->type == YAML_SCALAR_NODE) { out[0] = str_of(n); *count = 1; return 0; }   // one item
    if (expect(p, n, YAML_SEQUENCE_NODE, what)) return -1;
    *count = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
        yaml_node_t *e = yaml_document_get_node(d, *it);
        if (expect(p, e, YAML_SCALAR_NODE, what)) return -1;
        if (*count == MAX_ITEMS) return perr(p, (int)e->start_mark.line + 1, 1, "too many items in %s", what);
        out[(*count)++] = str_of(e);
    }
    return 0;
}

static int parse_stage(Pipeline *p, yaml_document_t *d, yaml_node_t *n) {
    if (expect(p, n, YAML_MAPPING_NODE, "a stage")) return -1;
    if (p->n_stages == MAX_STAGES) return perr(p, (int)n->start_mark.line + 1, 1, "too many stages");
    Stage *st = &p->stages[p->n_stages++];
    memset(st, 0, sizeof *st);
    st->line = (int)n->start_mark.line + 1; st->col = (int)n->start_mark.column + 1;
    st->outcome = "not run";
    for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = yaml_document_get_node(d, pr->key), *v = yaml_document_get_node(d, pr->value);
        if (expect(p, k, YAML_SCALAR_NODE, "a stage key")) return -1;
        const char *key = (const char *)k->data.scalar.value;
        int kl = (int)k->start_mark.line + 1, kc = (int)k->start_mark.column + 1;
        Str *dst = !strcmp(key, "name") ? &st->name : !strcmp(key, "run") ? &st->run : !strcmp(key, "out") ? &st->out
                 : !strcmp(key, "launcher") ? &st->launcher : NULL;
        if (dst) {
            if (dst->text) return perr(p, kl, kc, "stage key '%s' given twice", key);
            if (expect(p, v, YAML_SCALAR_NODE, key)) return -1;
            *dst = str_of(v);
        } else if (!strcmp(key, "needs")) {
            if (parse_list(p, d, v, st->needs, &st->n_needs, "needs")) return -1;
        } else if (!strcmp(key, "args")) {
            if (parse_list(p, d, v, st->args, &st->n_args, "args")) return -1;
        } else if (!strcmp(key, "settings")) {
            if (parse_settings(p, st, d, v, "")) return -1;
        } else {
            return perr(p, kl, kc, "unknown stage key '%s' (name, run, needs, settings, args, out, launcher)", key);
        }
    }
    if (!st->name.text) return perr(p, st->line, st->col, "a stage needs a name");
    if (!valid_name(st->name.text)) return perr(p, st->name.line, st->name.col, "stage name '%s' must use a-z, 0-9, '_' and '-'", st->name.text);
    if (!st->run.text) return perr(p, st->line, st->col, "stage '%s' needs 'run' (sft, ppo, reward SUBCOMMAND or rlhf SUBCOMMAND)", st->name.text);
    for (int i = 0; i < p->n_stages - 1; i++)
        if (!strcmp(p->stages[i].name.text, st->name.text))
            return perr(p, st->name.line, st->name.col, "stage name '%s' is used twice (first at line %d)", st->name.text, p->stages[i].name.line);
    return 0;
}

static int parse_file(Pipeline *p, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { snprintf(p->err, sizeof p->err, "%s: %s", path, strerror(errno)); return -1; }
    yaml_parser_t parser;
    yaml_document_t d;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    int rc = -1;
    if (!yaml_parser_load(&parser, &d)) {
        perr(p, (int)parser.problem_mark.line + 1, (int)parser.problem_mark.column + 1, "YAML: %s%s%s",
             parser.problem ? parser.problem : "syntax error", parser.context ? " " : "", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        fclose(f);
        return -1;
    }
    yaml_node_t *root = yaml_document_get_root_node(&d);
    if (!root) { perr(p, 1, 1, "the pipeline file is empty"); goto done; }
    if (expect(p, root, YAML_MAPPING_NODE, "the top level")) goto done;
    yaml_node_t *stages = NULL;
    for (yaml_node_pair_t *pr = root->data.mapping.pairs.start; pr < root->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = yaml_document_get_node(&d, pr->key), *v = yaml_document_get_node(&d, pr->value);
        if (expect(p, k, YAML_SCALAR_NODE, "a key")) goto done;
        const char *key = (const char *)k->data.scalar.value;
        int kl = (int)k->start_mark.line + 1, kc = (int)k->start_mark.column + 1;
        if (!strcmp(key, "workspace") || !strcmp(key, "launcher")) {
            if (expect(p, v, YAML_SCALAR_NODE, key)) goto done;
            *(!strcmp(key, "workspace") ? &p->workspace : &p->launcher) = str_of(v);
        } else if (!strcmp(key, "seed")) {
            if (expect(p, v, YAML_SCALAR_NODE, "seed")) goto done;
            char *end;
            errno = 0;
            long long s = strtoll((const char *)v->data.scalar.value, &end, 10);
            if (errno || *end || s < 0 || end == (char *)v->data.scalar.value)
                { perr(p, (int)v->start_mark.line + 1, (int)v->start_mark.column + 1, "seed must be a non-negative integer, got '%s'", v->data.scalar.value); goto done; }
            p->seed = s; p->has_seed = 1;
        } else if (!strcmp(key, "vars")) {
            if (expect(p, v, YAML_MAPPING_NODE, "vars")) goto done;
            for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top; q++) {
                yaml_node_t *vk = yaml_document_get_node(&d, q->key), *vv = yaml_document_get_node(&d, q->value);
                if (expect(p, vk, YAML_SCALAR_NODE, "a vars key") || expect(p, vv, YAML_SCALAR_NODE, "a vars value")) goto done;
                if (p->n_vars == MAX_ITEMS) { perr(p, kl, kc, "too many vars"); goto done; }
                p->var_keys[p->n_vars] = str_of(vk);
                p->var_vals[p->n_vars++] = str_of(vv);
            }
        } else if (!strcmp(key, "stages")) {
            if (expect(p, v, YAML_SEQUENCE_NODE, "stages")) goto done;
            stages = v;
        } else {
            perr(p, kl, kc, "unknown key '%s' (workspace, seed, launcher, vars, stages)", key);
            goto done;
        }
    }
    if (!p->workspace.text) { perr(p, 1, 1, "the pipeline needs 'workspace' (a directory)"); goto done; }
    if (!stages || stages->data.sequence.items.start == stages->data.sequence.items.top) { perr(p, 1, 1, "the pipeline needs a non-empty 'stages' list"); goto done; }
    for (yaml_node_item_t *it = stages->data.sequence.items.start; it < stages->data.sequence.items.top; it++)
        if (parse_stage(p, &d, yaml_document_get_node(&d, *it))) goto done;
    rc = 0;
done:
    yaml_document_delete(&d);
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}

static int stage_index(const Pipeline *p, const char *name) {
    for (int i = 0; i < p->n_stages; i++) if (!strcmp(p->stages[i].name.text, name)) return i;
    return -1;
}

// Is stage `dep` among the stages `s` needs, directly or through others?
static int depends_on(const Pipeline *p, int s, int dep, int depth) {
    if (depth > MAX_STAGES) return 0;
    const Stage *st = &p->stages[s];
    for (int i = 0; i < st->n_needs; i++)
        if (st->need_idx[i] == dep || depends_on(p, st->need_idx[i], dep, depth + 1)) return 1;
    return 0;
}

static const char *stage_out(const Pipeline *p, const Stage *st, char *buf, size_t n) {
    if (st->out.text) return st->out.text;   // already resolved
    snprintf(buf, n, "%s/%s", p->workspace.text, st->name.text);
    return buf;
}

// Expands ${workspace}, ${seed}, ${vars.NAME} and ${STAGE.out} in s (at line:col, for stage si).
static char *expand(Pipeline *p, int si, const Str *s) {
    size_t cap = strlen(s->text) + 256, len = 0;
    char *out = MALLOC_CHECK(cap);
    for (const char *c = s->text; *c;) {
        if (c[0] == '$' && c[1] == '{') {
            const char *e = strchr(c, '}');
            if (!e) { perr(p, s->line, s->col, "unterminated '${' in '%s'", s->text); free(out); return NULL; }
            char ref[256];
            snprintf(ref, sizeof ref, "%.*s", (int)(e - c - 2), c + 2);
            char val_buf[PATH_MAX + 64];
            const char *val = NULL;
            if (!strcmp(ref, "workspace")) val = p->workspace.text;
            else if (!strcmp(ref, "seed")) { snprintf(val_buf, sizeof val_buf, "%lld", (long long)p->seed); val = val_buf; }
            else if (!strncmp(ref, "vars.", 5)) {
                for (int i = 0; i < p->n_vars; i++) if (!strcmp(p->var_keys[i].text, ref + 5)) val = p->var_vals[i].text;
                if (!val) { perr(p, s->line, s->col, "unknown variable '${%s}' (not in vars)", ref); free(out); return NULL; }
            } else {
                char *dot = strrchr(ref, '.');
                if (!dot || strcmp(dot, ".out")) {
                    perr(p, s->line, s->col, "unknown reference '${%s}' (workspace, seed, vars.NAME or STAGE.out)", ref);
                    free(out); return NULL;
                }
                *dot = 0;
                int d = stage_index(p, ref);
                if (d < 0) { perr(p, s->line, s->col, "'${%s.out}' names no stage", ref); free(out); return NULL; }
                if (si >= 0 && d != si && !depends_on(p, si, d, 0)) {
                    perr(p, s->line, s->col, "stage '%s' uses '${%s.out}' but does not need '%s' (add it to needs)", p->stages[si].name.text, ref, ref);
                    free(out); return NULL;
                }
                val = stage_out(p, &p->stages[d], val_buf, sizeof val_buf);
            }
            size_t vl = strlen(val);
            if (len + vl + 1 > cap) { cap = (len + vl + 1) * 2; out = realloc(out, cap); if (!out) DIE("out of memory"); }
            memcpy(out + len, val, vl);
            len += vl;
            c = e + 1;
        } else {
            if (len + 2 > cap) { cap *= 2; out = realloc(out, cap); if (!out) DIE("out of memory"); }
            out[len++] = *c++;
        }
    }
    out[len] = 0;
    return out;
}

static int topo_sort(Pipeline *p) {
    int state[MAX_STAGES] = {0}, n = 0;   // 0 new, 1 on the stack, 2 done
    int stack[MAX_STAGES], it[MAX_STAGES];
    for (int root = 0; root < p->n_stages; root++) {
        if (state[root]) continue;
        int sp = 0;
        stack[sp] = root; it[sp] = 0; state[root] = 1;
        while (sp >= 0) {
            int s = stack[sp];
            if (it[sp] < p->stages[s].n_needs) {
                int d = p->stages[s].need_idx[it[sp]++];
                if (state[d] == 1) {
                    char path[2048] = "";
                    for (int i = 0; i <= sp; i++) {
                        if (path[0] || stack[i] == d) {
                            strncat(path, p->stages[stack[i]].name.text, sizeof path - strlen(path) - 8);
                            strcat(path, " -> ");
                        }
                    }
                    strncat(path, p->stages[d].name.text, sizeof path - strlen(path) - 1);
                    return perr(p, p->stages[s].line, p->stages[s].col, "the stages' needs form a cycle: %s", path);
                }
                if (state[d] == 0) { sp++; stack[sp] = d; it[sp] = 0; state[d] = 1; }
            } else {
                state[s] = 2;
                p->order[n++] = s;
                sp--;
            }
        }
    }
    return 0;
}

static void fnv(uint64_t *h, const void *data, size_t n) {
    const unsigned char *c = data;
    for (size_t i = 0; i < n; i++) { *h ^= c[i]; *h *= 0x100000001b3ULL; }
}

// Validation: references, program names, cycles; resolves each stage's argv.
static int resolve(Pipeline *p) {
    for (int s = 0; s < p->n_stages; s++) {
        Stage *st = &p->stages[s];
        for (int i = 0; i < st->n_needs; i++) {
            int d = stage_index(p, st->needs[i].text);
            if (d < 0) return perr(p, st->needs[i].line, st->needs[i].col, "stage '%s' needs '%s', which is not a stage", st->name.text, st->needs[i].text);
            if (d == s) return perr(p, st->needs[i].line, st->needs[i].col, "stage '%s' needs itself", st->name.text);
            st->need_idx[i] = d;
        }
    }
    if (topo_sort(p)) return -1;
    char *ws = p->workspace.text;
    for (int s = 0; s < p->n_stages; s++) {
        Stage *st = &p->stages[s];
        if (st->out.text) {
            char *o = expand(p, s, &st->out);
            if (!o) return -1;
            free(st->out.text);
            st->out.text = o;
        }
    }
    for (int s = 0; s < p->n_stages; s++) {
        Stage *st = &p->stages[s];
        char outbuf[PATH_MAX];
        const char *out = stage_out(p, st, outbuf, sizeof outbuf);
        // the program: sft | ppo | reward SUB | rlhf SUB...
        char *words[16];
        int nw = 0;
        char *runcopy = xstrdup(st->run.text);
        for (char *tok = strtok(runcopy, " \t"); tok && nw < 16; tok = strtok(NULL, " \t")) words[nw++] = tok;
        if (nw == 0 || !(!strcmp(words[0], "sft") || !strcmp(words[0], "ppo") || !strcmp(words[0], "reward") || !strcmp(words[0], "rlhf"))) {
            free(runcopy);
            return perr(p, st->run.line, st->run.col, "stage '%s': unknown program '%s' (sft, ppo, reward SUBCOMMAND, rlhf SUBCOMMAND)", st->name.text, st->run.text);
        }
        if ((!strcmp(words[0], "reward") || !strcmp(words[0], "rlhf")) && nw < 2) {
            free(runcopy);
            return perr(p, st->run.line, st->run.col, "stage '%s': '%s' needs a subcommand", st->name.text, words[0]);
        }
        if (!strcmp(words[0], "rlhf") && !strcmp(words[1], "run")) {
            free(runcopy);
            return perr(p, st->run.line, st->run.col, "stage '%s': a pipeline cannot run a pipeline", st->name.text);
        }
        st->program = xstrdup(words[0]);
        st->config_program = !strcmp(words[0], "sft") || !strcmp(words[0], "ppo") || (!strcmp(words[0], "reward") && (!strcmp(words[1], "train")));
        if (st->n_settings && !st->config_program) {
            free(runcopy);
            return perr(p, st->settings[0].line, st->settings[0].col, "stage '%s': '%s' takes args, not settings", st->name.text, st->run.text);
        }
        int a = 0;
        char bin[PATH_MAX + 16];
        snprintf(bin, sizeof bin, "%s/%s", p->bindir, words[0]);
        st->argv[a++] = xstrdup(bin);
        for (int i = 1; i < nw; i++) st->argv[a++] = xstrdup(words[i]);
        free(runcopy);
        if (st->config_program) {
            int has_out = 0, has_ws = 0;
            for (int i = 0; i < st->n_settings; i++) {
                has_out |= !strcmp(st->settings[i].key, "out.dir");
                has_ws |= !strcmp(st->settings[i].key, "workspace");
            }
            char kv[PATH_MAX + 64];
            if (!has_out) { snprintf(kv, sizeof kv, "out.dir=%s", out); st->argv[a++] = xstrdup("--set"); st->argv[a++] = xstrdup(kv); }
            if (!has_ws) { snprintf(kv, sizeof kv, "workspace=%s/workspace.db", ws); st->argv[a++] = xstrdup("--set"); st->argv[a++] = xstrdup(kv); }
            for (int i = 0; i < st->n_settings; i++) {
                Str v = {st->settings[i].value, st->settings[i].line, st->settings[i].col};
                char *ev = expand(p, s, &v);
                if (!ev) return -1;
                size_t n = strlen(st->settings[i].key) + strlen(ev) + 2;
                char *set = MALLOC_CHECK(n);
                snprintf(set, n, "%s=%s", st->settings[i].key, ev);
                free(ev);
                st->argv[a++] = xstrdup("--set");
                st->argv[a++] = set;
            }
        }
        for (int i = 0; i < st->n_args; i++) {
            char *ev = expand(p, s, &st->args[i]);
            if (!ev) return -1;
            st->argv[a++] = ev;
        }
        st->argc = a;
        st->argv[a] = NULL;
    }
    return 0;
}

// Asks each config program to check its settings (--print-config parses them all); a failure
// points at the setting the message names, else at the stage.
static int validate_settings(Pipeline *p) {
    for (int s = 0; s < p->n_stages; s++) {
        Stage *st = &p->stages[s];
        if (!st->config_program) continue;
        int pipefd[2];
        if (pipe(pipefd)) return perr(p, st->line, st->col, "pipe: %s", strerror(errno));
        pid_t pid = fork();
        if (pid < 0) return perr(p, st->line, st->col, "fork: %s", strerror(errno));
        if (pid == 0) {
            dup2(pipefd[1], 2);
            int dn = open("/dev/null", O_WRONLY);
            if (dn >= 0) dup2(dn, 1);
            close(pipefd[0]);
            char *argv[3 * MAX_ITEMS + 20];
            int a = 0;
            for (int i = 0; i < st->argc; i++) argv[a++] = st->argv[i];
            argv[a++] = "--print-config";
            argv[a] = NULL;
            execv(argv[0], argv);
            fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
            _exit(127);
        }
        close(pipefd[1]);
        char msg[1024] = "";
        size_t n = 0;
        ssize_t r;
        while ((r = read(pipefd[0], msg + n, sizeof msg - 1 - n)) > 0) n += (size_t)r;
        msg[n] = 0;
        close(pipefd[0]);
        int status;
        waitpid(pid, &status, 0);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) continue;
        char *nl = strchr(msg, '\n');
        if (nl) *nl = 0;
        int line = st->line, col = st->col;
        for (int i = 0; i < st->n_settings; i++)
            if (strstr(msg, st->settings[i].key)) { line = st->settings[i].line; col = st->settings[i].col; break; }
        return perr(p, line, col, "stage '%s': %s", st->name.text, msg[0] ? msg : "its settings were refused");
    }
    return 0;
}

static int hash_if_input(Pipeline *p, const char *path, uint64_t *h) {
    size_t wl = strlen(p->workspace.text);
    struct stat sb;
    if (!strncmp(path, p->workspace.text, wl) || stat(path, &sb) || !S_ISREG(sb.st_mode)) return 0;
    char hex[STORE_HASH_HEX];
    if (store_hash_file(path, hex, p->err, sizeof p->err)) return -1;
    fnv(h, hex, 64);
    return 0;
}

// The stage's fingerprint: its command, its upstream stages' fingerprints, and the contents of
// the files it names outside the workspace (so an edited data file reruns the stage). Values of
// --set KEY=VALUE count, and so do the items of a flow list ["a", "b"].
static int fingerprint(Pipeline *p, Stage *st) {
    uint64_t h = 0xcbf29ce484222325ULL;
    fnv(&h, st->program, strlen(st->program) + 1);
    for (int i = 1; i < st->argc; i++) fnv(&h, st->argv[i], strlen(st->argv[i]) + 1);
    for (int i = 0; i < st->n_needs; i++) fnv(&h, p->stages[st->need_idx[i]].fingerprint, 16);
    for (int i = 1; i < st->argc; i++) {
        const char *v = st->argv[i];
        if (i > 1 && !strcmp(st->argv[i - 1], "--set") && strchr(v, '=')) v = strchr(v, '=') + 1;
        if (v[0] != '[') { if (hash_if_input(p, v, &h)) return -1; continue; }
        char *copy = xstrdup(v + 1), *save = NULL;
        for (char *t = strtok_r(copy, ",]", &save); t; t = strtok_r(NULL, ",]", &save)) {
            while (*t == ' ' || *t == '"') t++;
            size_t n = strlen(t);
            while (n && (t[n - 1] == ' ' || t[n - 1] == '"')) t[--n] = 0;
            if (hash_if_input(p, t, &h)) { free(copy); return -1; }
        }
        free(copy);
    }
    snprintf(st->fingerprint, sizeof st->fingerprint, "%016llx", (unsigned long long)h);
    return 0;
}

static void print_cmd(FILE *f, const Stage *st, const char *launcher) {
    if (launcher && launcher[0]) fprintf(f, "%s ", launcher);
    for (int i = 0; i < st->argc; i++) {
        const char *a = i == 0 ? strrchr(st->argv[0], '/') + 1 : st->argv[i];
        int quote = strpbrk(a, " \t\"'$[]{}") != NULL || !a[0];
        fprintf(f, quote ? "'%s'%s" : "%s%s", a, i + 1 < st->argc ? " " : "");
    }
}

// Runs the stage's command, streaming its output to the terminal and the log. Returns the exit
// status (128+signal when killed).
static int run_stage(Pipeline *p, Stage *st, const char *launcher) {
    snprintf(st->log, sizeof st->log, "%s/logs/%s.log", p->workspace.text, st->name.text);
    int logfd = open(st->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    int pipefd[2];
    if (logfd < 0 || pipe(pipefd)) { fprintf(stderr, "rlhf run: cannot open %s: %s\n", st->log, strerror(errno)); if (logfd >= 0) close(logfd); return 1; }
    char *argv[3 * MAX_ITEMS + 64];
    int a = 0;
    char *lcopy = launcher && launcher[0] ? xstrdup(launcher) : NULL;
    if (lcopy) for (char *tok = strtok(lcopy, " \t"); tok && a < 32; tok = strtok(NULL, " \t")) argv[a++] = tok;
    for (int i = 0; i < st->argc; i++) argv[a++] = st->argv[i];
    argv[a] = NULL;
    fflush(stdout); fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) { fprintf(stderr, "rlhf run: fork: %s\n", strerror(errno)); free(lcopy); close(logfd); return 1; }
    if (pid == 0) {
        dup2(pipefd[1], 1);
        dup2(pipefd[1], 2);
        close(pipefd[0]); close(pipefd[1]); close(logfd);
        execvp(argv[0], argv);
        fprintf(stderr, "rlhf run: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(pipefd[1]);
    char buf[8192];
    ssize_t r;
    for (;;) {
        r = read(pipefd[0], buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        if (write(2, buf, (size_t)r) < 0) { /* the terminal went away: keep logging */ }
        if (write(logfd, buf, (size_t)r) < 0) { /* disk full: the child's own checkpoints still matter */ }
    }
    close(pipefd[0]);
    close(logfd);
    free(lcopy);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static const char *run_usage =
    "usage: rlhf run PIPELINE.yaml [--from STAGE] [--only STAGE] [--dry-run] [--force] [--set KEY=VALUE ...]\n"
    "Validates the whole file, then runs its stages in dependency order as child processes,\n"
    "recording each in WORKSPACE/workspace.db and logging to WORKSPACE/logs/STAGE.log. A stage\n"
    "whose command, input files and upstream stages are unchanged and that finished before is\n"
    "skipped; an interrupted one is run again and resumes from its checkpoint.\n"
    "  --from STAGE   start at STAGE (the stages before it must have finished)\n"
    "  --only STAGE   run STAGE alone (the stages it needs must have finished)\n"
    "  --dry-run      validate and print the plan without running anything\n"
    "  --force        run the selected stages even when they could be skipped; they start over\n"
    "                 (a stage that runs afresh has its output directory in the workspace\n"
    "                 removed first; only an interrupted run of the same configuration resumes)\n"
    "  --set K=V      override: workspace=DIR, seed=N, launcher=CMD, vars.NAME=V, or\n"
    "                 STAGE.KEY=VALUE (a setting of a config stage)\n"
    "Pipeline file keys: workspace, seed, launcher, vars, stages; stage keys: name, run, needs,\n"
    "settings, args, out, launcher. References: ${workspace}, ${seed}, ${vars.NAME}, ${STAGE.out}.\n";

static volatile sig_atomic_t run_interrupted;
static void on_run_signal(int sig) { (void)sig; run_interrupted = 1; }

static int apply_override(Pipeline *p, const char *kv) {
    const char *eq = strchr(kv, '=');
    if (!eq) { snprintf(p->err, sizeof p->err, "--set %s: expected KEY=VALUE", kv); return -1; }
    char key[512];
    snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
    const char *val = eq + 1;
    Str v = {xstrdup(val), 0, 0};
    if (!strcmp(key, "workspace")) { free(p->workspace.text); p->workspace = v; return 0; }
    if (!strcmp(key, "launcher")) { free(p->launcher.text); p->launcher = v; return 0; }
    if (!strcmp(key, "seed")) {
        char *end;
        long long s = strtoll(val, &end, 10);
        free(v.text);
        if (*end || s < 0 || end == val) { snprintf(p->err, sizeof p->err, "--set seed=%s: not a non-negative integer", val); return -1; }
        p->seed = s; p->has_seed = 1;
        return 0;
    }
    if (!strncmp(key, "vars.", 5)) {
        for (int i = 0; i < p->n_vars; i++) if (!strcmp(p->var_keys[i].text, key + 5)) { free(p->var_vals[i].text); p->var_vals[i] = v; return 0; }
        if (p->n_vars == MAX_ITEMS) { free(v.text); snprintf(p->err, sizeof p->err, "--set %s: too many vars", key); return -1; }
        p->var_keys[p->n_vars] = (Str){xstrdup(key + 5), 0, 0};
        p->var_vals[p->n_vars++] = v;
        return 0;
    }
    char *dot = strchr(key, '.');
    int s = -1;
    if (dot) { *dot = 0; s = stage_index(p, key); }
    if (s < 0) { free(v.text); snprintf(p->err, sizeof p->err, "--set %s: no such key or stage (workspace, seed, launcher, vars.NAME, STAGE.KEY)", kv); return -1; }
    Stage *st = &p->stages[s];
    for (int i = 0; i < st->n_settings; i++)
        if (!strcmp(st->settings[i].key, dot + 1)) { free(st->settings[i].value); st->settings[i].value = v.text; return 0; }
    if (st->n_settings == MAX_ITEMS) { free(v.text); snprintf(p->err, sizeof p->err, "--set: too many settings"); return -1; }
    st->settings[st->n_settings++] = (Setting){xstrdup(dot + 1), v.text, st->line, st->col};
    return 0;
}

static void free_pipeline(Pipeline *p) {
    free(p->workspace.text); free(p->launcher.text);
    for (int i = 0; i < p->n_vars; i++) { free(p->var_keys[i].text); free(p->var_vals[i].text); }
    for (int s = 0; s < p->n_stages; s++) {
        Stage *st = &p->stages[s];
        free(st->name.text); free(st->run.text); free(st->out.text); free(st->launcher.text); free(st->program);
        for (int i = 0; i < st->n_needs; i++) free(st->needs[i].text);
        for (int i = 0; i < st->n_args; i++) free(st->args[i].text);
        for (int i = 0; i < st->n_settings; i++) { free(st->settings[i].key); free(st->settings[i].value); }
        for (int i = 0; i < st->argc; i++) free(st->argv[i]);
    }
}

static int remove_tree(const char *path) {
    pid_t pid = fork();
    if (pid == 0) { execlp("rm", "rm", "-rf", "--", path, (char *)NULL); _exit(127); }
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) < 0) return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

int cmd_run(int argc, char **argv) {
    const char *file = NULL, *from = NULL, *only = NULL;
    int dry = 0, force = 0;
    const char *sets[MAX_ITEMS];
    int nsets = 0;
    for (int i = 0; i < argc; i++) {
        if (cmd_is_help(argv[i])) { fputs(run_usage, stdout); return 0; }
        else if (!strcmp(argv[i], "--from") && i + 1 < argc) from = argv[++i];
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--dry-run")) dry = 1;
        else if (!strcmp(argv[i], "--force")) force = 1;
        else if (!strcmp(argv[i], "--set") && i + 1 < argc && nsets < MAX_ITEMS) sets[nsets++] = argv[++i];
        else if (argv[i][0] != '-' && !file) file = argv[i];
        else { fprintf(stderr, "rlhf run: unexpected argument '%s'\n%s", argv[i], run_usage); return 2; }
    }
    if (!file) { fprintf(stderr, "rlhf run: missing PIPELINE.yaml\n%s", run_usage); return 2; }
    if (from && only) { fprintf(stderr, "rlhf run: --from and --only exclude each other\n"); return 2; }
    Pipeline *p = CALLOC_CHECK(1, sizeof(Pipeline));
    p->file = file;
    p->seed = 1234;
    ssize_t bl = readlink("/proc/self/exe", p->bindir, sizeof p->bindir - 1);
    if (bl <= 0) { fprintf(stderr, "rlhf run: cannot find the program directory\n"); free(p); return 1; }
    p->bindir[bl] = 0;
    *strrchr(p->bindir, '/') = 0;
    int rc = 1;
    Store *db = NULL;
    if (parse_file(p, file)) { fprintf(stderr, "rlhf run: %s\n", p->err); goto out; }
    for (int i = 0; i < nsets; i++) if (apply_override(p, sets[i])) { fprintf(stderr, "rlhf run: %s\n", p->err); goto out; }
    if (resolve(p) || validate_settings(p)) { fprintf(stderr, "rlhf run: %s\n", p->err); goto out; }
    int sel_from = -1, sel_only = -1;
    if (from && (sel_from = stage_index(p, from)) < 0) { fprintf(stderr, "rlhf run: --from %s: no such stage\n", from); rc = 2; goto out; }
    if (only && (sel_only = stage_index(p, only)) < 0) { fprintf(stderr, "rlhf run: --only %s: no such stage\n", only); rc = 2; goto out; }
    char err[1024];
    if (util_mkdir_p(p->workspace.text, err, sizeof err)) { fprintf(stderr, "rlhf run: %s\n", err); goto out; }
    char logs[PATH_MAX], dbpath[PATH_MAX];
    snprintf(logs, sizeof logs, "%s/logs", p->workspace.text);
    snprintf(dbpath, sizeof dbpath, "%s/workspace.db", p->workspace.text);
    if (util_mkdir_p(logs, err, sizeof err) || store_open(&db, dbpath, err, sizeof err) || store_reap_runs(db, NULL, err, sizeof err)) {
        fprintf(stderr, "rlhf run: %s\n", err); goto out;
    }
    // position in the run order of the --from stage
    int from_pos = -1;
    for (int k = 0; k < p->n_stages; k++) if (p->order[k] == sel_from) from_pos = k;
    int64_t pipe_run = 0;
    if (!dry) {
        StoreRunInfo ri = {.stage = "pipeline", .name = file, .program = "rlhf run"};
        if (store_add_run(db, &ri, &pipe_run, err, sizeof err)) { fprintf(stderr, "rlhf run: %s\n", err); goto out; }
        signal(SIGINT, on_run_signal);
        signal(SIGTERM, on_run_signal);
    }
    rc = 0;
    for (int k = 0; k < p->n_stages; k++) {
        Stage *st = &p->stages[p->order[k]];
        if (fingerprint(p, st)) { fprintf(stderr, "rlhf run: %s\n", p->err); rc = 1; break; }
        int selected = sel_only >= 0 ? p->order[k] == sel_only : k >= (from_pos < 0 ? 0 : from_pos);
        StoreRun last;
        snprintf(st->label, sizeof st->label, "pipeline/%s", st->name.text);
        if (store_find_last_run(db, st->label, st->fingerprint, STORE_RUN_DONE, &last, err, sizeof err)) { fprintf(stderr, "rlhf run: %s\n", err); rc = 1; break; }
        int done_before = last.id != 0;
        store_run_free(&last);
        char outbuf[PATH_MAX];
        const char *out = stage_out(p, st, outbuf, sizeof outbuf);
        struct stat sb;
        int out_exists = stat(out, &sb) == 0;
        const char *launcher = st->launcher.text ? st->launcher.text : p->launcher.text;
        if (!selected) {
            // a stage outside the selection matters only when a selected stage needs it
            int needed = 0;
            for (int j = 0; j < p->n_stages; j++) {
                int sel_j = sel_only >= 0 ? j == sel_only : 0;
                for (int kk = (from_pos < 0 ? 0 : from_pos); sel_only < 0 && kk < p->n_stages; kk++) sel_j |= p->order[kk] == j;
                if (sel_j && depends_on(p, j, p->order[k], 0)) needed = 1;
            }
            if (needed && !done_before) {
                if (dry) { st->outcome = "needed"; continue; }
                fprintf(stderr, "rlhf run: stage '%s' is needed by the selection but has not finished with this configuration; run it first\n", st->name.text);
                rc = 1; break;
            }
            st->outcome = needed ? "skipped" : "not selected";
            continue;
        }
        int skip = done_before && out_exists && !force;
        if (dry) {
            printf("%-14s %-8s ", st->name.text, skip ? "skip" : "run");
            print_cmd(stdout, st, launcher);
            printf("\n");
            st->outcome = skip ? "skipped" : "would run";
            continue;
        }
        if (skip) {
            fprintf(stderr, "rlhf run: %s: unchanged since its last run, skipped\n", st->name.text);
            st->outcome = "skipped";
            continue;
        }
        // an interrupted run of this very configuration is continued, not started over; any
        // other run starts from a clean output directory (stale outputs of an older
        // configuration must not be resumed)
        StoreRun prev;
        int64_t run_id = 0;
        if (store_find_last_run(db, st->label, st->fingerprint, -1, &prev, err, sizeof err) == 0) {
            if (prev.id && (prev.status == STORE_RUN_INTERRUPTED || prev.status == STORE_RUN_RUNNING) && !force) run_id = prev.id;
            store_run_free(&prev);
        }
        size_t wl = strlen(p->workspace.text);
        if (!run_id && out_exists && !strncmp(out, p->workspace.text, wl) && out[wl] == '/' && remove_tree(out)) {
            fprintf(stderr, "rlhf run: cannot remove %s\n", out); rc = 1; break;
        }
        fprintf(stderr, "rlhf run: == %s%s: ", st->name.text, run_id ? " (resuming)" : "");
        print_cmd(stderr, st, launcher);
        fprintf(stderr, "\n");
        char prog[8192] = "";
        for (int i = 0; i < st->argc; i++) {
            strncat(prog, i ? st->argv[i] : strrchr(st->argv[0], '/') + 1, sizeof prog - strlen(prog) - 2);
            strncat(prog, " ", sizeof prog - strlen(prog) - 1);
        }
        if (run_id) {
            if (store_set_run_status(db, run_id, STORE_RUN_RUNNING, 0, err, sizeof err)) { fprintf(stderr, "rlhf run: %s\n", err); rc = 1; break; }
        } else {
            StoreRunInfo ri = {.stage = st->label, .name = file, .program = prog, .config = prog, .config_hash = st->fingerprint,
                               .checkpoint = out, .parent_id = pipe_run};
            if (store_add_run(db, &ri, &run_id, err, sizeof err)) { fprintf(stderr, "rlhf run: %s\n", err); rc = 1; break; }
        }
        double t0 = util_time_s();
        int code = run_stage(p, st, launcher);
        st->seconds = util_time_s() - t0;
        StoreRunStatus rs = code == 0 ? STORE_RUN_DONE : (code == 130 || run_interrupted) ? STORE_RUN_INTERRUPTED : STORE_RUN_FAILED;
        if (store_set_run_status(db, run_id, rs, code, err, sizeof err)) fprintf(stderr, "rlhf run: %s\n", err);
        if (code != 0) {
            st->outcome = rs == STORE_RUN_INTERRUPTED ? "interrupted" : "failed";
            fprintf(stderr, "rlhf run: stage '%s' %s (exit %d); its log: %s\n", st->name.text, st->outcome, code, st->log);
            rc = rs == STORE_RUN_INTERRUPTED ? 130 : 1;
            break;
        }
        st->outcome = "ran";
        if (run_interrupted) { rc = 130; break; }
    }
    if (!dry) {
        fprintf(stderr, "\nrlhf run: summary of %s (workspace %s)\n", file, p->workspace.text);
        for (int k = 0; k < p->n_stages; k++) {
            const Stage *st = &p->stages[p->order[k]];
            fprintf(stderr, "  %-16s %-12s", st->name.text, st->outcome);
            if (st->seconds > 0) fprintf(stderr, " %8.1f s   %s", st->seconds, st->log);
            fprintf(stderr, "\n");
        }
        if (store_set_run_status(db, pipe_run, rc == 0 ? STORE_RUN_DONE : rc == 130 ? STORE_RUN_INTERRUPTED : STORE_RUN_FAILED, rc, err, sizeof err))
            fprintf(stderr, "rlhf run: %s\n", err);
    }
out:
    store_close(db);
    free_pipeline(p);
    free(p);
    return rc;
}
