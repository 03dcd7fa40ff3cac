// rlhf data demo: the demo's data set, made offline and deterministically from the task family in
// data/demo/tasks.h. One seed gives byte-identical files on every machine; each file is drawn from
// its own random stream, so changing one size does not change the other files.
//
// Splits are a function of the prompt text alone: bucket = data_hash_mix(FNV-1a(prompt)) % 100
// puts a prompt in eval (0-11), rm (12-24), ppo (25-49) or sft (50-99), so the four prompt sets
// are disjoint by construction, whatever the seed or the sizes. The pretraining text never holds
// an eval prompt as a question (its statements do state the underlying facts, as real
// pretraining text would).
#include "cli.h"
#include "demo.h"
#include "data.h"
#include "tasks.h"
#include "util.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { SPLIT_EVAL, SPLIT_RM, SPLIT_PPO, SPLIT_SFT, NUM_SPLITS };
static const int SPLIT_LO[NUM_SPLITS] = {0, 12, 25, 50}, SPLIT_HI[NUM_SPLITS] = {12, 25, 50, 100};
static const char *const SPLIT_NAMES[NUM_SPLITS] = {"eval", "rm", "ppo", "sft"};

static int prompt_split(const char *prompt) {
    int b = (int)(data_hash_mix(data_hash_bytes(DATA_HASH_INIT, prompt, strlen(prompt))) % 100);
    for (int s = 0; s < NUM_SPLITS; s++) if (b >= SPLIT_LO[s] && b < SPLIT_HI[s]) return s;
    return SPLIT_SFT;
}

static const char *data_usage =
    "usage: rlhf data demo --out DIR [options]\n"
    "Writes the demo data set (offline, deterministic: the same seed gives byte-identical files):\n"
    "  DIR/pretrain.txt          plain text, documents separated by <|endoftext|>\n"
    "  DIR/pretrain_valid.txt    held-out documents of the same kind (the alignment-tax text)\n"
    "  DIR/sft.jsonl             {\"prompt\", \"response\", \"task\", \"style\"} demonstrations\n"
    "  DIR/rm_prompts.jsonl      {\"prompt\", \"task\"}: prompts whose K samples the judge ranks\n"
    "  DIR/ppo_prompts.jsonl     {\"prompt\", \"task\"}: PPO's prompts (may repeat)\n"
    "  DIR/eval_prompts.jsonl    {\"prompt\", \"task\", \"answer\"}: held-out evaluation prompts\n"
    "The four prompt sets are disjoint (split by a hash of the prompt text).\n"
    "  --seed S          random seed (default 1)\n"
    "  --n-pretrain N    pretraining documents (default 6000, about 1 MB)\n"
    "  --n-sft N         demonstrations (default 3000)\n"
    "  --n-rm N          reward-model prompts (default 300)\n"
    "  --n-prompts N     PPO prompts (default 1000)\n"
    "  --n-eval N        evaluation prompts (default 200)\n"
    "  --mix C,V,R,W     percent of demonstrations that are concise, verbose, rambling, wrong\n"
    "                    (default 20,55,20,5: imperfect on purpose, for RLHF to improve)\n";

typedef struct {
    uint64_t *keys;    // open addressing, 0 = empty
    size_t cap, n;
} HashSet;

static void set_init(HashSet *s, size_t want) {
    s->cap = 64;
    while (s->cap < 2 * want + 64) s->cap *= 2;
    s->keys = CALLOC_CHECK(s->cap, sizeof(uint64_t));
    s->n = 0;
}
static uint64_t text_key(const char *t) {
    uint64_t h = data_hash_mix(data_hash_bytes(DATA_HASH_INIT, t, strlen(t)));
    return h ? h : 1;
}
// 1 when added, 0 when already there.
static int set_add(HashSet *s, uint64_t k) {
    if (2 * (s->n + 1) > s->cap) {
        HashSet t;
        set_init(&t, s->cap);
        for (size_t i = 0; i < s->cap; i++) if (s->keys[i]) set_add(&t, s->keys[i]);
        free(s->keys);
        *s = t;
    }
    size_t i = (size_t)(k & (s->cap - 1));
    while (s->keys[i]) { if (s->keys[i] == k) return 0; i = (i + 1) & (s->cap - 1); }
    s->keys[i] = k;
    s->n++;
    return 1;
}

// A writer to DIR/NAME that becomes visible only when complete: NAME.tmp.PID, fsync, rename.
typedef struct { FILE *f; char path[4096], tmp[4200]; } OutFile;

static int out_open(OutFile *o, const char *dir, const char *name, char *err, size_t errlen) {
    snprintf(o->path, sizeof o->path, "%s/%s", dir, name);
    snprintf(o->tmp, sizeof o->tmp, "%s.tmp.%ld", o->path, (long)getpid());
    o->f = fopen(o->tmp, "wb");
    if (!o->f) return util_err(err, errlen, "%s: %s", o->tmp, strerror(errno));
    return 0;
}

static int out_close(OutFile *o, int ok, char *err, size_t errlen) {
    int bad = !ok || ferror(o->f) || fflush(o->f) || fsync(fileno(o->f));
    int e = errno;
    if (fclose(o->f)) bad = 1;
    o->f = NULL;
    if (!bad && rename(o->tmp, o->path)) { bad = 1; e = errno; }
    if (bad) {
        unlink(o->tmp);
        return ok ? util_err(err, errlen, "%s: %s", o->path, strerror(e)) : -1;
    }
    return 0;
}

static void write_json(FILE *f, cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    if (!s) DIE("out of memory");
    fputs(s, f);
    fputc('\n', f);
    cJSON_free(s);
    cJSON_Delete(o);
}

// An Rng for one output file: every file has its own stream of the seed.
static void stream_rng(Rng *r, uint64_t seed, const char *stream) {
    uint64_t h = data_hash_bytes(data_hash_u64(DATA_HASH_INIT, seed), stream, strlen(stream));
    rng_init(r, data_hash_mix(h));
}

// Draws a task whose prompt is in `split`; with `distinct`, also one not drawn before (into *used;
// eval and rm prompts are distinct, PPO prompts and demonstrations may repeat).
// Tries the chosen kind first and then others, so a small prompt space (facts) runs out
// gracefully. -1 when no new prompt can be found.
static int draw_task(Rng *rng, int split, HashSet *used, int distinct, Task *t) {
    for (int round = 0; round < 64; round++) {
        int kind = (int)rng_below(rng, TASK_NUM_KINDS);
        for (int tries = 0; tries < 2000; tries++) {
            task_sample(rng, kind, t);
            if (prompt_split(t->prompt) != split) continue;
            if (!used) return 0;
            if (set_add(used, text_key(t->prompt)) || !distinct) return 0;
        }
    }
    return -1;
}

static int write_prompts(const char *dir, const char *name, int split, int64_t n, uint64_t seed,
                         int with_answer, int distinct, int64_t *by_kind, char *err,
                         size_t errlen) {
    OutFile o;
    if (out_open(&o, dir, name, err, errlen)) return -1;
    Rng rng;
    stream_rng(&rng, seed, name);
    HashSet used;
    set_init(&used, (size_t)n);
    int ok = 1;
    for (int64_t i = 0; i < n && ok; i++) {
        Task t;
        if (draw_task(&rng, split, &used, distinct, &t)) {
            util_err(
                err, errlen,
                "%s: only %lld distinct prompts could be drawn for the %s split; ask for fewer",
                o.path, (long long)i, SPLIT_NAMES[split]);
            ok = 0; break;
        }
        by_kind[t.kind]++;
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "prompt", t.prompt);
        cJSON_AddStringToObject(j, "task", task_kind_name(t.kind));
        if (with_answer) cJSON_AddStringToObject(j, "answer", t.answer);
        write_json(o.f, j);
    }
    free(used.keys);
    return out_close(&o, ok, err, errlen);
}

static int write_sft(const char *dir, int64_t n, uint64_t seed, const int *mix, int64_t *by_style,
                     char *err, size_t errlen) {
    OutFile o;
    if (out_open(&o, dir, "sft.jsonl", err, errlen)) return -1;
    Rng rng;
    stream_rng(&rng, seed, "sft.jsonl");
    for (int64_t i = 0; i < n; i++) {
        Task t;
        draw_task(&rng, SPLIT_SFT, NULL, 0, &t);   // repeats allowed: never fails
        int u = (int)rng_below(&rng, 100), style = 0, acc = 0;
        for (style = 0; style < TASK_NUM_STYLES - 1; style++) {
            acc += mix[style];
            if (u < acc) break;
        }
        char resp[4 * TASK_TEXT_MAX];
        task_response(&rng, &t, (TaskStyle)style, resp, sizeof resp);
        by_style[style]++;
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "prompt", t.prompt);
        cJSON_AddStringToObject(j, "response", resp);
        cJSON_AddStringToObject(j, "task", task_kind_name(t.kind));
        cJSON_AddStringToObject(j, "style", task_style_name(style));
        write_json(o.f, j);
    }
    return out_close(&o, 1, err, errlen);
}

// Pretraining documents: 3-8 lines, each a statement of a fact of the family (45%), a question
// with its short answer (35%, never an eval prompt), or a plain sentence (20%).
static int write_pretrain(const char *dir, const char *name, int64_t n, uint64_t seed,
                          int64_t *bytes, char *err, size_t errlen) {
    OutFile o;
    if (out_open(&o, dir, name, err, errlen)) return -1;
    Rng rng;
    stream_rng(&rng, seed, name);
    for (int64_t d = 0; d < n; d++) {
        int lines = 3 + (int)rng_below(&rng, 6);
        for (int l = 0; l < lines; l++) {
            char line[2 * TASK_TEXT_MAX + 32];
            int u = (int)rng_below(&rng, 100);
            if (u < 45) task_statement(&rng, -1, line, sizeof line);
            else if (u < 80) {
                Task t;
                do task_sample(&rng, -1, &t); while (prompt_split(t.prompt) == SPLIT_EVAL);
                snprintf(line, sizeof line, "Question: %s\nAnswer: %s", t.prompt, t.answer);
            } else task_sentence(&rng, line, sizeof line);
            fputs(line, o.f);
            fputc('\n', o.f);
        }
        fputs("<|endoftext|>", o.f);
    }
    *bytes = ftell(o.f);
    return out_close(&o, 1, err, errlen);
}

// --mix's value: TASK_NUM_STYLES percentages (ctx: int[TASK_NUM_STYLES]) that add up to 100.
static int parse_mix(const char *s, void *ctx, char *err, size_t errlen) {
    int *mix = ctx;
    int k = 0, sum = 0;
    const char *p = s;
    while (k < TASK_NUM_STYLES) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > 100) break;
        mix[k++] = (int)v; sum += (int)v;
        p = end;
        if (*p != ',') break;
        p++;
    }
    if (k != TASK_NUM_STYLES || *p || sum != 100)
        return util_err(
            err, errlen,
            "--mix: '%s' is not %d percentages that add up to 100 (concise,verbose,rambling,wrong)",
            s, TASK_NUM_STYLES);
    return 0;
}

static int cmd_data_demo(int argc, char **argv) {
    const char *out = NULL;
    int64_t seed = 1, n_pre = 6000, n_sft = 3000, n_rm = 300, n_ppo = 1000, n_eval = 200;
    int mix[TASK_NUM_STYLES] = {20, 55, 20, 5};
    char err[512];
    int status;
    CliOption opts[] = {
        CLI_STRING("--out", &out, .required = 1),
        CLI_INT("--seed", &seed, 0, INT64_MAX),
        CLI_INT("--n-pretrain", &n_pre, 1, 10000000),
        CLI_INT("--n-sft", &n_sft, 1, 10000000),
        CLI_INT("--n-rm", &n_rm, 1, 100000),
        CLI_INT("--n-prompts", &n_ppo, 1, 100000),
        CLI_INT("--n-eval", &n_eval, 1, 100000),
        CLI_CUSTOM("--mix", parse_mix, mix),
        {0}};
    CliCommand cmd = {.prog = "rlhf data demo", .usage = data_usage, .opts = opts};
    if (cli_parse(&cmd, argc, argv, &status)) return status;
    if (util_mkdir_p(out, err, sizeof err)) {
        fprintf(stderr, "rlhf data demo: %s\n", err);
        return 1;
    }
    int64_t kinds[NUM_SPLITS][TASK_NUM_KINDS] = {{0}}, styles[TASK_NUM_STYLES] = {0};
    int64_t b_pre = 0, b_val = 0;
    int64_t n_val = n_pre / 20 > 50 ? n_pre / 20 : 50;
    uint64_t s = (uint64_t)seed;
    if (write_pretrain(out, "pretrain.txt", n_pre, s, &b_pre, err, sizeof err) ||
        write_pretrain(out, "pretrain_valid.txt", n_val, s, &b_val, err, sizeof err) ||
        write_sft(out, n_sft, s, mix, styles, err, sizeof err) ||
        write_prompts(out, "rm_prompts.jsonl", SPLIT_RM, n_rm, s, 0, 1, kinds[SPLIT_RM], err,
                      sizeof err) ||
        write_prompts(out, "ppo_prompts.jsonl", SPLIT_PPO, n_ppo, s, 0, 0, kinds[SPLIT_PPO], err,
                      sizeof err) ||
        write_prompts(out, "eval_prompts.jsonl", SPLIT_EVAL, n_eval, s, 1, 1, kinds[SPLIT_EVAL],
                      err, sizeof err)) {
        fprintf(stderr, "rlhf data demo: %s\n", err);
        return 1;
    }
    fprintf(stderr, "rlhf data demo: wrote %s (seed %lld)\n", out, (long long)seed);
    fprintf(stderr, "  pretrain.txt         %lld documents, %lld bytes\n", (long long)n_pre,
            (long long)b_pre);
    fprintf(stderr, "  pretrain_valid.txt   %lld documents, %lld bytes\n", (long long)n_val,
            (long long)b_val);
    fprintf(stderr, "  sft.jsonl            %lld demonstrations:", (long long)n_sft);
    for (int i = 0; i < TASK_NUM_STYLES; i++)
        fprintf(stderr, " %s %lld", task_style_name(i), (long long)styles[i]);
    fputc('\n', stderr);
    const char *names[] = {"eval_prompts.jsonl", "rm_prompts.jsonl", "ppo_prompts.jsonl"};
    const int sp[] = {SPLIT_EVAL, SPLIT_RM, SPLIT_PPO};
    for (int f = 0; f < 3; f++) {
        int64_t tot = 0;
        for (int k = 0; k < TASK_NUM_KINDS; k++) tot += kinds[sp[f]][k];
        fprintf(stderr, "  %-20s %lld prompts:", names[f], (long long)tot);
        for (int k = 0; k < TASK_NUM_KINDS; k++)
            fprintf(stderr, " %s %lld", task_kind_name(k), (long long)kinds[sp[f]][k]);
        fputc('\n', stderr);
    }
    return 0;
}

int demo_data_cmd(int argc, char **argv) {
    if (argc < 1 || cli_is_help(argv[0])) {
        fputs(data_usage, argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    if (!strcmp(argv[0], "demo")) return cmd_data_demo(argc - 1, argv + 1);
    fprintf(stderr, "rlhf data: unknown subcommand '%s' (demo)\n%s", argv[0], data_usage);
    return 2;
}
