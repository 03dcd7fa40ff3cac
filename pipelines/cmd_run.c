// rlhf run: executes a pipeline file (YAML) stage by stage. The whole file is validated first
// (keys, types, references, cycles, and each stage's settings by the stage's own program); then
// each stage runs as a child process of the same binaries, its output streamed to the terminal
// and to WORKSPACE/logs/STAGE.log, its run recorded in the workspace database. A stage whose
// command, inputs and upstream stages are unchanged and that finished before is skipped; an
// interrupted stage is run again with the same command, and the programs resume from their last
// checkpoint. The first failure stops the pipeline with a summary.
#include "commands.h"
#include "pipeline.h"
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

static void fnv(uint64_t *h, const void *data, size_t n) {
    const unsigned char *c = data;
    for (size_t i = 0; i < n; i++) { *h ^= c[i]; *h *= 0x100000001b3ULL; }
}

static char *xstrdup(const char *s) {
    char *d = strdup(s ? s : "");
    if (!d) DIE("out of memory");
    return d;
}

// Asks each config program to check its settings (--print-config parses them all); a failure
// points at the setting the message names, else at the stage.
static int validate_settings(Pipeline *p) {
    for (int s = 0; s < p->n_stages; s++) {
        Stage *st = &p->stages[s];
        if (!st->config_program) continue;
        int pipefd[2];
        if (pipe(pipefd)) return pipeline_error(p, st->line, st->col, "pipe: %s", strerror(errno));
        pid_t pid = fork();
        if (pid < 0) return pipeline_error(p, st->line, st->col, "fork: %s", strerror(errno));
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
        return pipeline_error(p, line, col, "stage '%s': %s", st->name.text, msg[0] ? msg : "its settings were refused");
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
    "settings, args, out, launcher. References: ${workspace}, ${seed}, ${bin} (the programs'\n"
    "directory), ${vars.NAME}, ${STAGE.out}.\n";

static volatile sig_atomic_t run_interrupted;
static void on_run_signal(int sig) { (void)sig; run_interrupted = 1; }

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
    if (pipeline_load(p, file, sets, nsets) || validate_settings(p)) { fprintf(stderr, "rlhf run: %s\n", p->err); goto out; }
    int sel_from = -1, sel_only = -1;
    if (from && (sel_from = pipeline_stage_index(p, from)) < 0) { fprintf(stderr, "rlhf run: --from %s: no such stage\n", from); rc = 2; goto out; }
    if (only && (sel_only = pipeline_stage_index(p, only)) < 0) { fprintf(stderr, "rlhf run: --only %s: no such stage\n", only); rc = 2; goto out; }
    char err[1024];
    char logs[PATH_MAX], dbpath[PATH_MAX];
    snprintf(logs, sizeof logs, "%s/logs", p->workspace.text);
    snprintf(dbpath, sizeof dbpath, "%s/workspace.db", p->workspace.text);
    struct stat dbst;
    if (dry && stat(dbpath, &dbst) != 0) {
        db = NULL;   // a dry run creates nothing: without a workspace every stage would run
    } else if (util_mkdir_p(p->workspace.text, err, sizeof err) || (!dry && util_mkdir_p(logs, err, sizeof err)) ||
               store_open(&db, dbpath, err, sizeof err) || (!dry && store_reap_runs(db, NULL, err, sizeof err))) {
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
        memset(&last, 0, sizeof last);
        snprintf(st->label, sizeof st->label, "pipeline/%s", st->name.text);
        if (db && store_find_last_run(db, st->label, st->fingerprint, STORE_RUN_DONE, &last, err, sizeof err)) { fprintf(stderr, "rlhf run: %s\n", err); rc = 1; break; }
        int done_before = last.id != 0;
        if (db) store_run_free(&last);
        char outbuf[PATH_MAX];
        const char *out = pipeline_stage_out(p, st, outbuf, sizeof outbuf);
        struct stat sb;
        int out_exists = stat(out, &sb) == 0;
        const char *launcher = st->launcher.text ? st->launcher.text : p->launcher.text;
        if (!selected) {
            // a stage outside the selection matters only when a selected stage needs it
            int needed = 0;
            for (int j = 0; j < p->n_stages; j++) {
                int sel_j = sel_only >= 0 ? j == sel_only : 0;
                for (int kk = (from_pos < 0 ? 0 : from_pos); sel_only < 0 && kk < p->n_stages; kk++) sel_j |= p->order[kk] == j;
                if (sel_j && pipeline_depends_on(p, j, p->order[k], 0)) needed = 1;
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
    pipeline_free(p);
    free(p);
    return rc;
}
