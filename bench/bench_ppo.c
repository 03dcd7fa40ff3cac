// One PPO-ptx iteration of the real `ppo` program, split into its phases, beside the engine's own
// generation on the same checkpoint and shapes. Not a test: it prints figures and never fails on
// time.
//
//   bench_ppo [--preset small|gpt2|all] [--ppo PATH] [--baseline PATH] [--rounds 1] [--B 8]
//             [--prompt 16] [--new 64] [--iterations 3] [--repeats 3] [--tokenizer data/gpt2]
//             [--keep] [--set KEY=VALUE ...]
//
// Per preset (small: L4 H4 C256 V8192 ctx256; gpt2: L12 H12 C768 V50257 ctx1024) it writes, in a
// temporary directory, a randomly initialised policy (the "SFT" model), a reward model with a
// score head, B identical prompts of about --prompt tokens (template "{prompt}") and some
// pretraining text, runs `ppo` for --iterations iterations (rollout batch B = one minibatch, one
// epoch, --new new tokens, ptx.batch_size B windows of the rollout length, ptx.coef 27.8) and
// reads each iteration's time per phase (the time/* metrics: generation, scoring (reward model),
// reference, logprobs (the policy's scoring forward), value, train_policy, train_value,
// train_ptx, optimizer, database, other) from the run's workspace database; a figure is the median
// over the iterations after the first, printed with its share of the iteration. The ppo
// process's peak resident memory, CPU time and minor page faults are measured by the benchmark
// (wait4). The reference for generation is gen_generate called directly (KV cache of the same
// size, the same sampler settings, the same prompt ids) on the same checkpoint, timed here after
// a warm-up, median of --repeats runs: the ratio shows what the program adds around the engine.
//
// --baseline PATH runs another ppo binary (an older build) on the same files, alternating with
// --ppo for --rounds rounds (baseline first), and prints its iteration time, its phases and its
// peak memory beside ours (ratio = ours / baseline: below 1 is faster or smaller). Older builds
// that stored time/generate_s and such are read through those names.
//
// --set KEY=VALUE (repeatable, up to 8) passes a config key to --ppo's runs only, e.g.
// `--set precision.sample=bf16 --set precision.frozen=bf16`: the baseline keeps its defaults (an
// older build may not know the key), so the comparison is the new settings against the old
// program as it was.
//
// Output: one line per figure,
//   RESULT {"name":..,"value":..,"unit":..,"ref_name":..,"ref_value":..,"ratio":..}
// (ref_name, ref_value and ratio are null when there is no reference). OMP_NUM_THREADS sets the
// threads, for the program and the reference alike.
#include "benchlib.h"
#include "blas.h"
#include "checkpoint.h"
#include "dataset.h"
#include "generate.h"
#include "model.h"
#include "rng.h"
#include "store.h"
#include "tokenizer.h"
#include "util.h"
#include <limits.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct { const char *name; int L, NH, C, V, ctx; } Preset;
static const Preset PRESETS[] = {{"small", 4, 4, 256, 8192, 256},
                                 {"gpt2", 12, 12, 768, 50257, 1024}};

#define MAX_SETS 8

typedef struct {
    int B, prompt, new_tok, iterations, repeats, keep, rounds;
    const char *ppo, *baseline, *gpt2_tok;
    const char *sets[MAX_SETS];   // --set KEY=VALUE for --ppo's runs
    int nsets;
} Opts;

static int write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) { fprintf(stderr, "bench_ppo: cannot write %s\n", path); return -1; }
    fputs(text, f);
    fclose(f);
    return 0;
}

static void result(const char *name, double v, const char *unit, const char *ref_name, double ref) {
    if (ref_name && ref > 0)
        printf(
            "RESULT {\"name\":\"%s\",\"value\":%.3f,\"unit\":\"%s\",\"ref_name\":\"%s\",\"ref_value\":%.3f,\"ratio\":%.3f}\n",
            name, v, unit, ref_name, ref, v / ref);
    else
        printf(
            "RESULT {\"name\":\"%s\",\"value\":%.3f,\"unit\":\"%s\",\"ref_name\":null,\"ref_value\":null,\"ratio\":null}\n",
            name, v, unit);
    fflush(stdout);
}

#define MAX_IT 64
// The phases of an iteration: the time/* metric ppo stores, and the name older builds stored
// (NULL: none). The last is the whole iteration (older builds: the sum of the others).
enum { N_PHASES = 12, N_PICK = 2 * N_PHASES + 1 };
static const char *const PHASES[N_PHASES][2] = {
    {"time/generation", "time/generate_s"},     {"time/scoring", "time/score_reward_s"},
    {"time/reference", "time/score_reference_s"}, {"time/logprobs", "time/score_policy_s"},
    {"time/value", "time/score_value_s"},       {"time/train_policy", "time/train_policy_s"},
    {"time/train_value", "time/train_value_s"}, {"time/train_ptx", "time/train_ptx_s"},
    {"time/optimizer", "time/train_optim_s"},   {"time/database", NULL},
    {"time/other", NULL},                       {"time/iteration", NULL}};
typedef struct { const char *names[N_PICK]; double vals[MAX_IT][N_PICK]; int n; } MetricPick;
static int pick_metric(const StoreMetric *m, void *ctx) {
    MetricPick *p = ctx;
    if (m->step < 1 || m->step > MAX_IT) return 0;
    for (int i = 0; i < p->n; i++)
        if (p->names[i] && !strcmp(m->name, p->names[i])) p->vals[m->step - 1][i] = m->value;
    return 0;
}

// One ppo run's figures: the phases' seconds per iteration and the process's peak memory.
typedef struct {
    double t[MAX_IT][N_PHASES];
    double gen_tokens[MAX_IT];
    double wall, peak_mb, cpu_s;   // cpu_s: the process's user + system time, whole run
    double faults;                 // the process's minor page faults, whole run
} RunFigures;

static const char *BENCH_WORDS[] = {"the",   "model",   "learns", "to",    "answer", "questions",
                                    "about", "numbers", "and",    "words", "with",   "a",
                                    "small", "reward",  "for",    "each",  "good",   "reply"};

// the text for the tokenizer and the pretraining mix: 2000 lines of 12 random words, in
// dir/corpus.txt (its path in corpus)
static int bench_ppo_corpus(const char *dir, char *corpus, size_t corpus_size) {
    char *text = MALLOC_CHECK(1 << 20);
    size_t tl = 0;
    Rng r;
    rng_init(&r, 7);
    for (int line = 0; line < 2000; line++) {
        for (int w = 0; w < 12; w++)
            tl += (size_t)snprintf(text + tl, 64, "%s%s", w ? " " : "",
                                   BENCH_WORDS[rng_below(&r, 18)]);
        text[tl++] = '\n';
    }
    text[tl] = 0;
    snprintf(corpus, corpus_size, "%s/corpus.txt", dir);
    int rc = write_text(corpus, text);
    free(text);
    return rc;
}

// the tokenizer: GPT-2's for the gpt2 preset; a small one trained on the corpus (V <= 8192) for
// small, in dir/tok; its folder in tokdir (PATH_MAX + some)
static Tokenizer *bench_ppo_tokenizer(const Preset *p, const Opts *o, const char *dir,
                                      const char *corpus, char *tokdir, size_t tokdir_size) {
    char err[1024];
    Tokenizer *tok = NULL;
    if (!strcmp(p->name, "gpt2")) {
        if (!realpath(o->gpt2_tok, tokdir)) {
            fprintf(stderr, "bench_ppo: tokenizer %s not found (--tokenizer)\n", o->gpt2_tok);
            return NULL;
        }
    } else {
        snprintf(tokdir, tokdir_size, "%s/tok", dir);
        if (util_mkdir_p(tokdir, err, sizeof err)) {
            fprintf(stderr, "bench_ppo: %s\n", err);
            return NULL;
        }
        const char *paths[1] = {corpus};
        TokTrainOptions to = {.vocab_size = 512};
        if (tok_train(paths, 1, &to, tokdir, NULL, err, sizeof err)) {
            fprintf(stderr, "bench_ppo: %s\n", err);
            return NULL;
        }
    }
    if (tok_load(&tok, tokdir, err, sizeof err)) { fprintf(stderr, "bench_ppo: %s\n", err); return NULL; }
    return tok;
}

// one model of config c with random weights (seed) saved in dir/name
static int bench_ppo_save_model(const ModelConfig *c, uint64_t seed, const CkptSaveOptions *so,
                                const char *dir, const char *name) {
    char path[4200], err[1024];
    Model m;
    if (model_init(&m, c, 1, 1, 0, 0, err, sizeof err)) {
        fprintf(stderr, "bench_ppo: %s\n", err);
        return -1;
    }
    model_init_weights(&m, seed);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int rc = ckpt_save(path, &m, so, err, sizeof err);
    if (rc) fprintf(stderr, "bench_ppo: %s\n", err);
    model_free(&m);
    return rc ? -1 : 0;
}

// the policy (dir/sft, an LM) and the reward model (dir/rm, a score head), random weights
static int bench_ppo_models(const Preset *p, const char *tokdir, int eot, const char *dir) {
    ModelConfig c = {.max_seq_len = p->ctx, .vocab_size = p->V, .n_layer = p->L, .n_head = p->NH,
                     .n_embd = p->C, .ln_eps = 1e-5f, .lm_head = 1, .score_head = 0};
    CkptSaveOptions so = {.tokenizer_dir = tokdir, .has_token_ids = eot >= 0, .bos_token_id = eot,
                          .eos_token_id = eot};
    if (bench_ppo_save_model(&c, 1234, &so, dir, "sft")) return -1;
    ModelConfig rc = c;
    rc.lm_head = 0; rc.score_head = 1;
    return bench_ppo_save_model(&rc, 4321, &so, dir, "rm");
}

// the prompt: words until it encodes to --prompt tokens
static void bench_ppo_prompt(Tokenizer *tok, const Opts *o, char *prompt, size_t prompt_size) {
    char err[512];
    size_t pl = 0;
    TokIds ids = {0};
    prompt[0] = 0;
    for (int w = 0; w < 2000 && (int)ids.n < o->prompt; w++) {
        pl += (size_t)snprintf(prompt + pl, prompt_size - pl, "%s%s", w ? " " : "",
                               BENCH_WORDS[w % 18]);
        ids.n = 0;
        tok_encode(tok, prompt, pl, 0, &ids, err, sizeof err);
    }
    tok_ids_free(&ids);
}

// The files of a run: B copies of the prompt and the config, in dir.
static int bench_ppo_files(const Opts *o, const char *dir, const char *prompt) {
    char path[4200], yaml[2048];
    snprintf(path, sizeof path, "%s/prompts.jsonl", dir);
    FILE *f = fopen(path, "w");
    if (!f) { fprintf(stderr, "bench_ppo: cannot write %s\n", path); return -1; }
    for (int i = 0; i < o->B; i++) fprintf(f, "{\"prompt\": \"%s\"}\n", prompt);
    fclose(f);
    snprintf(path, sizeof path, "%s/ppo.yaml", dir);
    snprintf(yaml, sizeof yaml,
             "model: {policy: sft, reward: rm}\n"
             "data: {prompts: [prompts.jsonl], prompt_template: \"{prompt}\"}\n"
             "rollout: {batch_size: %d, max_new_tokens: %d}\nppo: {minibatch_size: %d, epochs: 1}\n"
             "ptx: {coef: 27.8, data: [corpus.txt], batch_size: %d}\n"
             "train: {iterations: %d, policy_lr: 1e-5, value_lr: 1e-5}\nsave: {every: 1000}\n",
             o->B, o->new_tok, o->B, o->B, o->iterations);
    return write_text(path, yaml);
}

// The ppo program `ppo` in dir, out.dir `run` (its log in run.log); its wall time and peak
// resident memory (its own, from wait4) in f.
static int bench_ppo_run(const char *ppo, const char *const *sets, int nsets, const char *dir,
                         const char *run, RunFigures *f) {
    char log[4200], set[4200];
    const char *args[6 + 2 * MAX_SETS + 1];
    int na = 0;
    snprintf(log, sizeof log, "%s/%s.log", dir, run);
    snprintf(set, sizeof set, "out.dir=%s", run);
    double t0 = util_time_s();
    pid_t pid = fork();
    if (pid < 0) { perror("bench_ppo: fork"); return -1; }
    if (pid == 0) {
        if (chdir(dir) || !freopen(log, "w", stdout) || !freopen(log, "a", stderr)) _exit(127);
        args[na++] = ppo;
        args[na++] = "-c";
        args[na++] = "ppo.yaml";
        args[na++] = "--set";
        args[na++] = set;
        for (int i = 0; i < nsets; i++) {
            args[na++] = "--set";
            args[na++] = sets[i];
        }
        args[na] = NULL;
        execv(ppo, (char *const *)args);
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) != pid) { perror("bench_ppo: wait4"); return -1; }
    f->wall = util_time_s() - t0;
    f->peak_mb = (double)ru.ru_maxrss / 1024.0;   // KiB on Linux
    f->faults = (double)ru.ru_minflt;
    f->cpu_s = (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
               (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "bench_ppo: %s failed (see %s)\n", ppo, log);
        return -1;
    }
    return 0;
}

// the phases of every iteration of dir/run, from its workspace database
static int bench_ppo_metrics(const char *dir, const char *run, int iterations, RunFigures *f) {
    char path[4200], err[1024];
    snprintf(path, sizeof path, "%s/%s/workspace.db", dir, run);
    Store *db;
    StoreRun sr;
    static MetricPick mp;
    memset(&mp, 0, sizeof mp);
    for (int i = 0; i < N_PHASES; i++) {
        mp.names[2 * i] = PHASES[i][0];
        mp.names[2 * i + 1] = PHASES[i][1];
    }
    mp.names[2 * N_PHASES] = "count/gen_tokens";
    mp.n = N_PICK;
    if (store_open(&db, path, err, sizeof err) ||
        store_find_last_run(db, "ppo", NULL, -1, &sr, err, sizeof err) ||
        store_each_metric(db, sr.id, NULL, pick_metric, &mp, err, sizeof err)) {
        fprintf(stderr, "bench_ppo: %s\n", err);
        return -1;
    }
    store_run_free(&sr);
    store_close(db);
    for (int k = 0; k < iterations && k < MAX_IT; k++) {
        double sum = 0;
        for (int i = 0; i < N_PHASES; i++) {
            const double *v = mp.vals[k];
            f->t[k][i] = v[2 * i] > 0 || !PHASES[i][1] ? v[2 * i] : v[2 * i + 1];
            if (i < N_PHASES - 1) sum += f->t[k][i];
        }
        if (!(f->t[k][N_PHASES - 1] > 0)) f->t[k][N_PHASES - 1] = sum;   // older builds
        f->gen_tokens[k] = mp.vals[k][2 * N_PHASES];
    }
    return 0;
}

// The buffers of the engine's own generation: B copies of the prompt's ids and the outputs.
typedef struct {
    int32_t *prompts, *plen, *out, *olen;
    int Tp;
} BenchGen;

static void bench_gen_free(BenchGen *b) {
    free(b->prompts); free(b->plen); free(b->out); free(b->olen);
}

// tokens/s of gen_generate over --repeats runs after a warm-up (median), on the same checkpoint,
// prompt ids and cache sizes as the ppo run; the prompt's length in tokens in *Tp
static int bench_ppo_engine(const Preset *p, const Opts *o, Tokenizer *tok, const char *dir,
                            const char *prompt, int eot, double *engine, int *Tp) {
    char path[4200], err[1024];
    DatasetOptions dopt = {
        .prompt_template = "{prompt}", .response_prefix = "", .max_tokens = p->ctx};
    Dataset *ds;
    TokIds pids = {0};
    if (dataset_create(&ds, tok, &dopt, err, sizeof err) ||
        dataset_encode_prompt(ds, prompt, &pids, err, sizeof err)) {
        fprintf(stderr, "bench_ppo: %s\n", err); return -1;
    }
    int B = o->B, T = (int)pids.n, Tseq = T + o->new_tok;
    int max_rows = B * T > 4096 ? (B > 4096 ? B : 4096) : B * T;
    snprintf(path, sizeof path, "%s/sft", dir);
    Model m;
    KVCache kv;
    Sampler s;
    if (ckpt_load_model(path, &m, 1, 1, 0, CKPT_IGNORE_SCORE, err, sizeof err) ||
        kv_init(&kv, &m, B, Tseq, max_rows, err, sizeof err)) {
        fprintf(stderr, "bench_ppo: %s\n", err);
        return -1;
    }
    sampler_init(&s, m.config.vocab_size);
    BenchGen bg = {.prompts = MALLOC_CHECK((size_t)B * T * 4), .plen = MALLOC_CHECK((size_t)B * 4),
                   .out = MALLOC_CHECK((size_t)B * o->new_tok * 4),
                   .olen = MALLOC_CHECK((size_t)B * 4), .Tp = T};
    for (int i = 0; i < B; i++) {
        memcpy(bg.prompts + (size_t)i * T, pids.ids, (size_t)T * 4);
        bg.plen[i] = T;
    }
    GenConfig g = {.max_new_tokens = o->new_tok, .eot_id = eot,
                   .sampler = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f}};
    GenConfig warm = g;
    warm.max_new_tokens = 4;
    Rng gr;
    rng_init(&gr, 1234);
    int rc = gen_generate(&m, &kv, &s, &warm, &gr, bg.prompts, bg.plen, B, T, bg.out, bg.olen, NULL,
                          NULL, err, sizeof err);
    double rates[16];
    int nrep = o->repeats < 16 ? o->repeats : 16;
    for (int k = 0; k < nrep && !rc; k++) {
        double g0 = util_time_s();
        rc = gen_generate(&m, &kv, &s, &g, &gr, bg.prompts, bg.plen, B, T, bg.out, bg.olen, NULL,
                          NULL, err, sizeof err);
        double dt = util_time_s() - g0;
        int64_t ntok = 0;
        for (int i = 0; i < B; i++) ntok += bg.olen[i];
        rates[k] = (double)ntok / dt;
    }
    if (rc) fprintf(stderr, "bench_ppo: %s\n", err);
    else *engine = bench_median(rates, nrep);
    *Tp = T;
    bench_gen_free(&bg);
    tok_ids_free(&pids);
    dataset_free(ds);
    sampler_free(&s);
    kv_free(&kv);
    model_free(&m);
    return rc ? -1 : 0;
}

// The median over the iterations after the first (the first touches fresh memory) of phase i.
static double bench_phase(const Opts *o, const RunFigures *f, int i) {
    int first = o->iterations > 1 ? 1 : 0, nit = o->iterations - first;
    double v[MAX_IT];
    for (int k = 0; k < nit; k++) v[k] = f->t[first + k][i];
    return bench_median(v, nit);
}

// The figures of our run (and the baseline's beside them): generation against the engine, each
// phase with its share of the iteration, the iteration, peak memory.
static void bench_ppo_report(const Preset *p, const Opts *o, const RunFigures *f,
                             const RunFigures *base, double engine) {
    static const char *what[N_PHASES] = {
        "generation", "scoring (reward)", "reference", "logprobs (policy)", "value",
        "train policy", "train value", "train ptx", "optimizer", "database", "other",
        "iteration"};
    char name[1024], label[600];   // label: the preset, and the --set keys when given
    int n = snprintf(label, sizeof label, "%s", p->name);
    for (int i = 0; i < o->nsets && n < (int)sizeof label; i++)
        n += snprintf(label + n, sizeof label - (size_t)n, "%s%s", i ? " " : " [", o->sets[i]);
    if (o->nsets && n < (int)sizeof label) snprintf(label + n, sizeof label - (size_t)n, "]");
    int first = o->iterations > 1 ? 1 : 0, nit = o->iterations - first;
    double rate[MAX_IT];
    for (int k = 0; k < nit; k++) {
        double t = f->t[first + k][0];
        rate[k] = t > 0 ? f->gen_tokens[first + k] / t : 0;
    }
    snprintf(name, sizeof name, "ppo %s B=%d generation", label, o->B);
    result(name, bench_median(rate, nit), "tok/s", "gen_generate (engine)", engine);
    double it = bench_phase(o, f, N_PHASES - 1);
    for (int i = 0; i < N_PHASES; i++) {
        double v = bench_phase(o, f, i);
        snprintf(name, sizeof name, "ppo %s B=%d time: %s", label, o->B, what[i]);
        if (base)
            result(name, v, "s", "baseline", bench_phase(o, base, i));
        else
            result(name, v, "s", i < N_PHASES - 1 ? "share of the iteration" : NULL, it);
    }
    snprintf(name, sizeof name, "ppo %s B=%d peak RSS", label, o->B);
    result(name, f->peak_mb, "MiB", base ? "baseline" : NULL, base ? base->peak_mb : 0);
    // steadier than wall time on a machine shared with other work (all of the run: setup too)
    snprintf(name, sizeof name, "ppo %s B=%d process CPU time (user+sys)", label, o->B);
    result(name, f->cpu_s, "s", base ? "baseline" : NULL, base ? base->cpu_s : 0);
    // memory touched fresh or again after release, zeroed by the system: load-independent too
    snprintf(name, sizeof name, "ppo %s B=%d process minor page faults", label, o->B);
    result(name, f->faults, "faults", base ? "baseline" : NULL, base ? base->faults : 0);
}

// One preset: corpus, tokenizer and models in a fresh folder under /tmp, the ppo runs (the
// baseline's alternating with ours), the engine's generation, the figures.
static int bench_preset(const Preset *p, const Opts *o) {
    char dir[] = "/tmp/bench_ppo.XXXXXX", corpus[4200], tokdir[4200], prompt[4096], cmd[9000];
    if (!mkdtemp(dir)) { perror("bench_ppo: mkdtemp"); return -1; }
    fprintf(stderr, "bench_ppo: %s in %s\n", p->name, dir);
    if (bench_ppo_corpus(dir, corpus, sizeof corpus)) return -1;
    Tokenizer *tok = bench_ppo_tokenizer(p, o, dir, corpus, tokdir, sizeof tokdir);
    if (!tok) return -1;
    int eot = tok_eot(tok);
    bench_ppo_prompt(tok, o, prompt, sizeof prompt);
    static RunFigures fig, base;
    memset(&fig, 0, sizeof fig);
    memset(&base, 0, sizeof base);
    double engine = 0;
    int Tp = 0, rc = bench_ppo_models(p, tokdir, eot, dir) || bench_ppo_files(o, dir, prompt);
    // the figures of the last round; peak memory: the largest of any round
    for (int r = 0; r < o->rounds && !rc; r++) {
        RunFigures f;
        char run[64];
        if (o->baseline) {
            snprintf(run, sizeof run, "base%d", r);
            double peak = base.peak_mb;
            rc = bench_ppo_run(o->baseline, NULL, 0, dir, run, &base) ||
                 bench_ppo_metrics(dir, run, o->iterations, &base);
            if (peak > base.peak_mb) base.peak_mb = peak;
        }
        snprintf(run, sizeof run, "run%d", r);
        if (!rc) rc = bench_ppo_run(o->ppo, o->sets, o->nsets, dir, run, &f) ||
                      bench_ppo_metrics(dir, run, o->iterations, &f);
        if (!rc && f.peak_mb < fig.peak_mb) f.peak_mb = fig.peak_mb;
        if (!rc) fig = f;
    }
    if (rc || bench_ppo_engine(p, o, tok, dir, prompt, eot, &engine, &Tp)) {
        tok_free(tok);
        return -1;
    }
    fprintf(stderr,
            "bench_ppo: %s: B=%d prompt %d + %d new tokens, %d threads; ppo wall %.1f s for %d "
            "iterations%s\n",
            p->name, o->B, Tp, o->new_tok, omp_get_max_threads(), fig.wall, o->iterations,
            o->baseline ? " (last round)" : "");
    for (int i = 0; i < o->nsets; i++) fprintf(stderr, "bench_ppo: ppo --set %s\n", o->sets[i]);
    if (o->baseline)
        fprintf(stderr, "bench_ppo: baseline %s: wall %.1f s (last round)\n", o->baseline,
                base.wall);
    bench_ppo_report(p, o, &fig, o->baseline ? &base : NULL, engine);
    tok_free(tok);
    if (!o->keep) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) fprintf(stderr, "bench_ppo: could not remove %s\n", dir);
    }
    return 0;
}

int main(int argc, char **argv) {
    blas_startup("bench_ppo", argv);   // the best OpenBLAS kernel for this CPU, as the programs run
    Opts o = {.B = 8,
              .prompt = 16,
              .new_tok = 64,
              .iterations = 3,
              .repeats = 3,
              .gpt2_tok = "data/gpt2"};
    const char *preset = "all";
    char ppo[PATH_MAX], baseline[PATH_MAX];
    ppo[0] = baseline[0] = 0;
    o.rounds = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--preset") && v) { preset = v; i++; }
        else if (!strcmp(a, "--ppo") && v) { snprintf(ppo, sizeof ppo, "%s", v); i++; }
        else if (!strcmp(a, "--baseline") && v) {
            snprintf(baseline, sizeof baseline, "%s", v);
            i++;
        } else if (!strcmp(a, "--rounds") && v) { o.rounds = atoi(v); i++; }
        else if (!strcmp(a, "--B") && v) { o.B = atoi(v); i++; }
        else if (!strcmp(a, "--prompt") && v) { o.prompt = atoi(v); i++; }
        else if (!strcmp(a, "--new") && v) { o.new_tok = atoi(v); i++; }
        else if (!strcmp(a, "--iterations") && v) { o.iterations = atoi(v); i++; }
        else if (!strcmp(a, "--repeats") && v) { o.repeats = atoi(v); i++; }
        else if (!strcmp(a, "--tokenizer") && v) { o.gpt2_tok = v; i++; }
        else if (!strcmp(a, "--keep")) o.keep = 1;
        else if (!strcmp(a, "--set") && v && strchr(v, '=') && o.nsets < MAX_SETS) {
            o.sets[o.nsets++] = v;
            i++;
        }
        else {
            fprintf(
                stderr,
                "usage: bench_ppo [--preset small|gpt2|all] [--ppo PATH] [--baseline PATH] "
                "[--rounds 1] [--B 8] [--prompt 16] [--new 64] [--iterations 3] [--repeats 3] "
                "[--tokenizer data/gpt2] [--keep] [--set KEY=VALUE (up to 8)]\n");
            return 2;
        }
    }
    if (o.B < 1 || o.prompt < 1 || o.new_tok < 1 || o.iterations < 1 || o.iterations > MAX_IT ||
        o.repeats < 1 || o.rounds < 1) {
        fprintf(stderr, "bench_ppo: sizes must be positive\n");
        return 2;
    }
    if (!ppo[0]) {   // build/bench/bench_ppo -> build/bin/ppo
        char self[PATH_MAX];
        snprintf(self, sizeof self, "%s", argv[0]);
        char *slash = strrchr(self, '/');
        if (slash) *slash = 0; else snprintf(self, sizeof self, ".");
        snprintf(ppo, sizeof ppo, "%.4000s/../bin/ppo", self);
    }
    char abs_ppo[PATH_MAX];
    if (!realpath(ppo, abs_ppo) || access(abs_ppo, X_OK)) {
        fprintf(stderr, "bench_ppo: no ppo program at %s (--ppo PATH)\n", ppo);
        return 2;
    }
    o.ppo = abs_ppo;
    char abs_base[PATH_MAX];
    if (baseline[0]) {
        if (!realpath(baseline, abs_base) || access(abs_base, X_OK)) {
            fprintf(stderr, "bench_ppo: no ppo program at %s (--baseline PATH)\n", baseline);
            return 2;
        }
        o.baseline = abs_base;
    }
    int rc = 0, any = 0;
    for (size_t i = 0; i < sizeof PRESETS / sizeof PRESETS[0]; i++) {
        if (strcmp(preset, "all") && strcmp(preset, PRESETS[i].name)) continue;
        any = 1;
        if (bench_preset(&PRESETS[i], &o)) rc = 1;
    }
    if (!any) {
        fprintf(stderr, "bench_ppo: unknown preset %s (small, gpt2, all)\n", preset);
        return 2;
    }
    return rc;
}
