// Pipeline files: see pipeline.h.
#include "pipeline.h"
#include "util.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

int pipeline_error(Pipeline *p, int line, int col, const char *fmt, ...) {
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
    return pipeline_error(p, (int)n->start_mark.line + 1, (int)n->start_mark.column + 1, "%s must be %s, not %s", what, names[t], names[n->type]);
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
        if (st->n_settings == MAX_ITEMS) return pipeline_error(p, (int)k->start_mark.line + 1, 1, "too many settings");
        for (int i = 0; i < st->n_settings; i++)
            if (!strcmp(st->settings[i].key, key))
                return pipeline_error(p, (int)k->start_mark.line + 1, (int)k->start_mark.column + 1, "setting '%s' given twice (first at line %d)", key, st->settings[i].line);
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
    // *count follows the items stored, so that an error part-way leaves nothing unfreed
    if (expect(p, n, YAML_SEQUENCE_NODE, what)) return -1;
    *count = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
        yaml_node_t *e = yaml_document_get_node(d, *it);
        if (expect(p, e, YAML_SCALAR_NODE, what)) return -1;
        if (*count == MAX_ITEMS) return pipeline_error(p, (int)e->start_mark.line + 1, 1, "too many items in %s", what);
        out[(*count)++] = str_of(e);
    }
    return 0;
}

static int parse_stage(Pipeline *p, yaml_document_t *d, yaml_node_t *n) {
    if (expect(p, n, YAML_MAPPING_NODE, "a stage")) return -1;
    if (p->n_stages == MAX_STAGES) return pipeline_error(p, (int)n->start_mark.line + 1, 1, "too many stages");
    Stage *st = &p->stages[p->n_stages++];
    memset(st, 0, sizeof *st);
    st->line = (int)n->start_mark.line + 1; st->col = (int)n->start_mark.column + 1;
    st->outcome = "not run";
    int seen = 0;   // needs, args, settings
    for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = yaml_document_get_node(d, pr->key), *v = yaml_document_get_node(d, pr->value);
        if (expect(p, k, YAML_SCALAR_NODE, "a stage key")) return -1;
        const char *key = (const char *)k->data.scalar.value;
        int kl = (int)k->start_mark.line + 1, kc = (int)k->start_mark.column + 1;
        Str *dst = !strcmp(key, "name") ? &st->name : !strcmp(key, "run") ? &st->run : !strcmp(key, "out") ? &st->out
                 : !strcmp(key, "launcher") ? &st->launcher : NULL;
        if (dst) {
            if (dst->text) return pipeline_error(p, kl, kc, "stage key '%s' given twice", key);
            if (expect(p, v, YAML_SCALAR_NODE, key)) return -1;
            *dst = str_of(v);
        } else if (!strcmp(key, "needs") || !strcmp(key, "args") || !strcmp(key, "settings")) {
            int bit = key[0] == 'n' ? 1 : key[0] == 'a' ? 2 : 4;
            if (seen & bit) return pipeline_error(p, kl, kc, "stage key '%s' given twice", key);
            seen |= bit;
            if (bit == 1 && parse_list(p, d, v, st->needs, &st->n_needs, "needs")) return -1;
            if (bit == 2 && parse_list(p, d, v, st->args, &st->n_args, "args")) return -1;
            if (bit == 4 && parse_settings(p, st, d, v, "")) return -1;
        } else {
            return pipeline_error(p, kl, kc, "unknown stage key '%s' (name, run, needs, settings, args, out, launcher)", key);
        }
    }
    if (!st->name.text) return pipeline_error(p, st->line, st->col, "a stage needs a name");
    if (!valid_name(st->name.text)) return pipeline_error(p, st->name.line, st->name.col, "stage name '%s' must use a-z, 0-9, '_' and '-'", st->name.text);
    if (!st->run.text) return pipeline_error(p, st->line, st->col, "stage '%s' needs 'run' (sft, ppo, reward SUBCOMMAND or rlhf SUBCOMMAND)", st->name.text);
    for (int i = 0; i < p->n_stages - 1; i++)
        if (!strcmp(p->stages[i].name.text, st->name.text))
            return pipeline_error(p, st->name.line, st->name.col, "stage name '%s' is used twice (first at line %d)", st->name.text, p->stages[i].name.line);
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
        pipeline_error(p, (int)parser.problem_mark.line + 1, (int)parser.problem_mark.column + 1, "YAML: %s%s%s",
             parser.problem ? parser.problem : "syntax error", parser.context ? " " : "", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        fclose(f);
        return -1;
    }
    yaml_node_t *root = yaml_document_get_root_node(&d);
    if (!root) { pipeline_error(p, 1, 1, "the pipeline file is empty"); goto done; }
    if (expect(p, root, YAML_MAPPING_NODE, "the top level")) goto done;
    yaml_node_t *stages = NULL;
    int top_seen = 0;
    for (yaml_node_pair_t *pr = root->data.mapping.pairs.start; pr < root->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = yaml_document_get_node(&d, pr->key), *v = yaml_document_get_node(&d, pr->value);
        if (expect(p, k, YAML_SCALAR_NODE, "a key")) goto done;
        const char *key = (const char *)k->data.scalar.value;
        int kl = (int)k->start_mark.line + 1, kc = (int)k->start_mark.column + 1;
        static const char *const top_keys[] = {"workspace", "launcher", "seed", "vars", "stages"};
        for (int t = 0; t < 5; t++)
            if (!strcmp(key, top_keys[t])) {
                if (top_seen & (1 << t)) { pipeline_error(p, kl, kc, "key '%s' given twice", key); goto done; }
                top_seen |= 1 << t;
            }
        if (!strcmp(key, "workspace") || !strcmp(key, "launcher")) {
            if (expect(p, v, YAML_SCALAR_NODE, key)) goto done;
            *(!strcmp(key, "workspace") ? &p->workspace : &p->launcher) = str_of(v);
        } else if (!strcmp(key, "seed")) {
            if (expect(p, v, YAML_SCALAR_NODE, "seed")) goto done;
            char *end;
            errno = 0;
            long long s = strtoll((const char *)v->data.scalar.value, &end, 10);
            if (errno || *end || s < 0 || end == (char *)v->data.scalar.value)
                { pipeline_error(p, (int)v->start_mark.line + 1, (int)v->start_mark.column + 1, "seed must be a non-negative integer, got '%s'", v->data.scalar.value); goto done; }
            p->seed = s; p->has_seed = 1;
        } else if (!strcmp(key, "vars")) {
            if (expect(p, v, YAML_MAPPING_NODE, "vars")) goto done;
            for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top; q++) {
                yaml_node_t *vk = yaml_document_get_node(&d, q->key), *vv = yaml_document_get_node(&d, q->value);
                if (expect(p, vk, YAML_SCALAR_NODE, "a vars key") || expect(p, vv, YAML_SCALAR_NODE, "a vars value")) goto done;
                if (p->n_vars == MAX_ITEMS) { pipeline_error(p, kl, kc, "too many vars"); goto done; }
                p->var_keys[p->n_vars] = str_of(vk);
                p->var_vals[p->n_vars++] = str_of(vv);
            }
        } else if (!strcmp(key, "stages")) {
            if (expect(p, v, YAML_SEQUENCE_NODE, "stages")) goto done;
            stages = v;
        } else {
            pipeline_error(p, kl, kc, "unknown key '%s' (workspace, seed, launcher, vars, stages)", key);
            goto done;
        }
    }
    if (!p->workspace.text) { pipeline_error(p, 1, 1, "the pipeline needs 'workspace' (a directory)"); goto done; }
    if (!stages || stages->data.sequence.items.start == stages->data.sequence.items.top) { pipeline_error(p, 1, 1, "the pipeline needs a non-empty 'stages' list"); goto done; }
    for (yaml_node_item_t *it = stages->data.sequence.items.start; it < stages->data.sequence.items.top; it++)
        if (parse_stage(p, &d, yaml_document_get_node(&d, *it))) goto done;
    rc = 0;
done:
    yaml_document_delete(&d);
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}

int pipeline_stage_index(const Pipeline *p, const char *name) {
    for (int i = 0; i < p->n_stages; i++) if (!strcmp(p->stages[i].name.text, name)) return i;
    return -1;
}

// Is stage `dep` among the stages `s` needs, directly or through others?
int pipeline_depends_on(const Pipeline *p, int s, int dep, int depth) {
    if (depth > MAX_STAGES) return 0;
    const Stage *st = &p->stages[s];
    for (int i = 0; i < st->n_needs; i++)
        if (st->need_idx[i] == dep || pipeline_depends_on(p, st->need_idx[i], dep, depth + 1)) return 1;
    return 0;
}

const char *pipeline_stage_out(const Pipeline *p, const Stage *st, char *buf, size_t n) {
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
            if (!e) { pipeline_error(p, s->line, s->col, "unterminated '${' in '%s'", s->text); free(out); return NULL; }
            char ref[256];
            snprintf(ref, sizeof ref, "%.*s", (int)(e - c - 2), c + 2);
            char val_buf[PATH_MAX + 64];
            const char *val = NULL;
            if (!strcmp(ref, "workspace")) val = p->workspace.text;
            else if (!strcmp(ref, "bin")) val = p->bindir;   // the programs' directory (e.g. for a judge command)
            else if (!strcmp(ref, "seed")) { snprintf(val_buf, sizeof val_buf, "%lld", (long long)p->seed); val = val_buf; }
            else if (!strncmp(ref, "vars.", 5)) {
                for (int i = 0; i < p->n_vars; i++) if (!strcmp(p->var_keys[i].text, ref + 5)) val = p->var_vals[i].text;
                if (!val) { pipeline_error(p, s->line, s->col, "unknown variable '${%s}' (not in vars)", ref); free(out); return NULL; }
            } else {
                char *dot = strrchr(ref, '.');
                if (!dot || strcmp(dot, ".out")) {
                    pipeline_error(p, s->line, s->col, "unknown reference '${%s}' (workspace, seed, bin, vars.NAME or STAGE.out)", ref);
                    free(out); return NULL;
                }
                *dot = 0;
                int d = pipeline_stage_index(p, ref);
                if (d < 0) { pipeline_error(p, s->line, s->col, "'${%s.out}' names no stage", ref); free(out); return NULL; }
                if (si >= 0 && d != si && !pipeline_depends_on(p, si, d, 0)) {
                    pipeline_error(p, s->line, s->col, "stage '%s' uses '${%s.out}' but does not need '%s' (add it to needs)", p->stages[si].name.text, ref, ref);
                    free(out); return NULL;
                }
                val = pipeline_stage_out(p, &p->stages[d], val_buf, sizeof val_buf);
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
                    return pipeline_error(p, p->stages[s].line, p->stages[s].col, "the stages' needs form a cycle: %s", path);
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

// Validation: references, program names, cycles; resolves each stage's argv.
static int resolve(Pipeline *p) {
    for (int s = 0; s < p->n_stages; s++) {
        Stage *st = &p->stages[s];
        for (int i = 0; i < st->n_needs; i++) {
            int d = pipeline_stage_index(p, st->needs[i].text);
            if (d < 0) return pipeline_error(p, st->needs[i].line, st->needs[i].col, "stage '%s' needs '%s', which is not a stage", st->name.text, st->needs[i].text);
            if (d == s) return pipeline_error(p, st->needs[i].line, st->needs[i].col, "stage '%s' needs itself", st->name.text);
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
        const char *out = pipeline_stage_out(p, st, outbuf, sizeof outbuf);
        // the program: sft | ppo | reward SUB | rlhf SUB...
        char *words[16];
        int nw = 0;
        char *runcopy = xstrdup(st->run.text);
        for (char *tok = strtok(runcopy, " \t"); tok && nw < 16; tok = strtok(NULL, " \t")) words[nw++] = tok;
        if (nw == 0 || !(!strcmp(words[0], "sft") || !strcmp(words[0], "ppo") || !strcmp(words[0], "reward") || !strcmp(words[0], "rlhf"))) {
            free(runcopy);
            return pipeline_error(p, st->run.line, st->run.col, "stage '%s': unknown program '%s' (sft, ppo, reward SUBCOMMAND, rlhf SUBCOMMAND)", st->name.text, st->run.text);
        }
        if ((!strcmp(words[0], "reward") || !strcmp(words[0], "rlhf")) && nw < 2) {
            free(runcopy);
            return pipeline_error(p, st->run.line, st->run.col, "stage '%s': '%s' needs a subcommand", st->name.text, words[0]);
        }
        if (!strcmp(words[0], "rlhf") && !strcmp(words[1], "run")) {
            free(runcopy);
            return pipeline_error(p, st->run.line, st->run.col, "stage '%s': a pipeline cannot run a pipeline", st->name.text);
        }
        st->program = xstrdup(words[0]);
        st->config_program = !strcmp(words[0], "sft") || !strcmp(words[0], "ppo") || (!strcmp(words[0], "reward") && (!strcmp(words[1], "train")));
        if (st->n_settings && !st->config_program) {
            free(runcopy);
            return pipeline_error(p, st->settings[0].line, st->settings[0].col, "stage '%s': '%s' takes args, not settings", st->name.text, st->run.text);
        }
        int a = 0;   // st->argc follows a, so an error part-way leaves nothing unfreed
        char bin[PATH_MAX + 16];
        snprintf(bin, sizeof bin, "%s/%s", p->bindir, words[0]);
        { st->argv[a++] = xstrdup(bin); st->argc = a; }
        for (int i = 1; i < nw; i++) { st->argv[a++] = xstrdup(words[i]); st->argc = a; }
        free(runcopy);
        if (st->config_program) {
            int has_out = 0, has_ws = 0;
            for (int i = 0; i < st->n_settings; i++) {
                has_out |= !strcmp(st->settings[i].key, "out.dir");
                has_ws |= !strcmp(st->settings[i].key, "workspace");
            }
            char kv[PATH_MAX + 64];
            if (!has_out) { snprintf(kv, sizeof kv, "out.dir=%s", out); { st->argv[a++] = xstrdup("--set"); st->argc = a; } { st->argv[a++] = xstrdup(kv); st->argc = a; } }
            if (!has_ws) { snprintf(kv, sizeof kv, "workspace=%s/workspace.db", ws); { st->argv[a++] = xstrdup("--set"); st->argc = a; } { st->argv[a++] = xstrdup(kv); st->argc = a; } }
            for (int i = 0; i < st->n_settings; i++) {
                Str v = {st->settings[i].value, st->settings[i].line, st->settings[i].col};
                char *ev = expand(p, s, &v);
                if (!ev) return -1;
                size_t n = strlen(st->settings[i].key) + strlen(ev) + 2;
                char *set = MALLOC_CHECK(n);
                snprintf(set, n, "%s=%s", st->settings[i].key, ev);
                free(ev);
                { st->argv[a++] = xstrdup("--set"); st->argc = a; }
                { st->argv[a++] = set; st->argc = a; }
            }
        }
        for (int i = 0; i < st->n_args; i++) {
            char *ev = expand(p, s, &st->args[i]);
            if (!ev) return -1;
            { st->argv[a++] = ev; st->argc = a; }
        }
        st->argc = a;
        st->argv[a] = NULL;
    }
    return 0;
}

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
    if (dot) { *dot = 0; s = pipeline_stage_index(p, key); }
    if (s < 0) { free(v.text); snprintf(p->err, sizeof p->err, "--set %s: no such key or stage (workspace, seed, launcher, vars.NAME, STAGE.KEY)", kv); return -1; }
    Stage *st = &p->stages[s];
    for (int i = 0; i < st->n_settings; i++)
        if (!strcmp(st->settings[i].key, dot + 1)) { free(st->settings[i].value); st->settings[i].value = v.text; return 0; }
    if (st->n_settings == MAX_ITEMS) { free(v.text); snprintf(p->err, sizeof p->err, "--set: too many settings"); return -1; }
    st->settings[st->n_settings++] = (Setting){xstrdup(dot + 1), v.text, st->line, st->col};
    return 0;
}

void pipeline_free(Pipeline *p) {
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


int pipeline_load(Pipeline *p, const char *path, const char *const *overrides, int n_overrides) {
    p->file = path;
    if (!p->has_seed) p->seed = 1234;
    if (parse_file(p, path)) return -1;
    for (int i = 0; i < n_overrides; i++) if (apply_override(p, overrides[i])) return -1;
    return resolve(p);
}
