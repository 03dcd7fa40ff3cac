// rlhf run: executes a pipeline file (YAML) stage by stage. The whole file is validated first
// (keys, types, references, cycles, output paths, and each stage's settings by the stage's own
// program); then, holding the workspace's lock, each stage runs as a child process of the same
// binaries in its own process group, its output streamed to the terminal and to
// WORKSPACE/logs/STAGE.log, its run recorded in the workspace database. A stage whose command,
// inputs and upstream stages are unchanged and that finished before is skipped; an interrupted
// stage is run again with the same command, and the programs resume from their last checkpoint.
// An output directory is removed only when the runner made it (its marker file is in it).
// SIGINT, SIGTERM and SIGHUP are passed on to the running stage, and the runner exits 128+signal
// once the stage has. The first failure stops the pipeline with a summary.
// The runner works in the pipeline file's folder, so every relative path in the file, the
// stages' included, is read from there (--set values are made absolute first: override_abs).
// A command stage runs its args directly (execvp), its declared inputs' contents in its
// fingerprint and its declared outputs checked after it exits 0. A stage's gates (require) read
// the last logged value of a metric of a stage it needs from the workspace database just before
// it would run; a failed gate stops the pipeline.
#include "cli.h"
#include "hash.h"
#include "pipeline.h"
#include "store.h"
#include "util.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static void fnv(uint64_t *h, const void *data, size_t n) {
    *h = data_hash_bytes(*h, data, n);
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
            char **argv = calloc((size_t)st->argc + 2, sizeof(char *));
            if (!argv) _exit(127);
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
            if (strstr(msg, st->settings[i].key)) {
                line = st->settings[i].line;
                col = st->settings[i].col;
                break;
            }
        return pipeline_error(p, line, col, "stage '%s': %s", st->name.text,
                              msg[0] ? msg : "its settings were refused");
    }
    return 0;
}

// A file named on the command line counts when it exists and lies outside the workspace, both
// paths resolved (a name that merely starts like the workspace's is outside it).
static int hash_if_input(Pipeline *p, const char *ws_real, const char *path, uint64_t *h) {
    struct stat sb;
    if (stat(path, &sb) || !S_ISREG(sb.st_mode)) return 0;
    char *real = realpath(path, NULL);
    int inside = !real || pipeline_path_within(real, ws_real);
    free(real);
    if (inside) return 0;
    char hex[STORE_HASH_HEX];
    if (store_hash_file(path, hex, p->err, sizeof p->err)) return -1;
    fnv(h, hex, 64);
    return 0;
}

#define RUN_MAX_INPUT_DEPTH 64   // folders within folders in one declared input

static int hash_tree(const char *path, int depth, uint64_t *h, char *err, size_t errlen);

// A folder's entries, by name (bytewise), each as its name and its contents (hash_tree).
static int hash_dir(const char *path, int depth, uint64_t *h, char *err, size_t errlen) {
    struct dirent **names = NULL;
    int n = scandir(path, &names, NULL, alphasort), rc = 0;
    if (n < 0) return util_err(err, errlen, "%s: %s", path, strerror(errno));
    for (int i = 0; i < n; i++) {
        const char *nm = names[i]->d_name;
        if (!rc && strcmp(nm, ".") && strcmp(nm, "..")) {
            char child[PATH_MAX];
            if ((size_t)snprintf(child, sizeof child, "%s/%s", path, nm) >= sizeof child)
                rc = util_err(err, errlen, "%s/%s: path too long", path, nm);
            else {
                fnv(h, nm, strlen(nm) + 1);
                rc = hash_tree(child, depth + 1, h, err, errlen);
            }
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

// A declared input's contents into h: a file's SHA-256, a folder's files (names and contents)
// recursively; links are followed, other kinds of file count by their kind alone.
static int hash_tree(const char *path, int depth, uint64_t *h, char *err, size_t errlen) {
    struct stat sb;
    if (stat(path, &sb)) return util_err(err, errlen, "%s: %s", path, strerror(errno));
    if (depth > RUN_MAX_INPUT_DEPTH)
        return util_err(err, errlen, "%s: folders nested deeper than %d (a link loop?)", path,
                        RUN_MAX_INPUT_DEPTH);
    if (S_ISDIR(sb.st_mode)) {
        fnv(h, "d", 1);
        return hash_dir(path, depth, h, err, errlen);
    }
    if (!S_ISREG(sb.st_mode)) { fnv(h, "o", 1); return 0; }
    char hex[STORE_HASH_HEX];
    if (store_hash_file(path, hex, err, errlen)) return -1;
    fnv(h, "f", 1);
    fnv(h, hex, 64);
    return 0;
}

// The stage's declared inputs into h. A missing one is an error, except in a dry run, where an
// earlier stage would have made it (the stage then shows as one to run).
static int hash_inputs(Pipeline *p, Stage *st, int dry, uint64_t *h) {
    for (int i = 0; i < st->n_inputs; i++) {
        const char *path = st->in_paths[i];
        char err[1024];
        struct stat sb;
        fnv(h, path, strlen(path) + 1);
        if (dry && stat(path, &sb) && errno == ENOENT) {
            fnv(h, "missing", 8);
            continue;
        }
        if (hash_tree(path, 0, h, err, sizeof err))
            return pipeline_error(p, st->inputs[i].line, st->inputs[i].col,
                                  "stage '%s': input %s", st->name.text, err);
    }
    return 0;
}

// The stage's fingerprint: its command, its upstream stages' fingerprints, the contents of its
// declared inputs and of the files it names outside the workspace (so an edited data file reruns
// the stage). Values of --set KEY=VALUE count, and so do the items of a flow list ["a", "b"].
static int fingerprint(Pipeline *p, const char *ws_real, Stage *st, int dry) {
    uint64_t h = DATA_HASH_INIT;
    fnv(&h, st->program, strlen(st->program) + 1);
    for (int i = st->command ? 0 : 1; i < st->argc; i++)
        fnv(&h, st->argv[i], strlen(st->argv[i]) + 1);
    for (int i = 0; i < st->n_needs; i++) fnv(&h, p->stages[st->need_idx[i]].fingerprint, 16);
    for (int i = 0; i < st->n_outputs; i++) fnv(&h, st->out_paths[i], strlen(st->out_paths[i]) + 1);
    if (hash_inputs(p, st, dry, &h)) return -1;
    for (int i = st->command ? 0 : 1; i < st->argc; i++) {
        const char *v = st->argv[i];
        if (i > 1 && !strcmp(st->argv[i - 1], "--set") && strchr(v, '=')) v = strchr(v, '=') + 1;
        if (v[0] != '[') { if (hash_if_input(p, ws_real, v, &h)) return -1; continue; }
        char *copy = STRDUP_CHECK(v + 1), *save = NULL;
        for (char *t = strtok_r(copy, ",]", &save); t; t = strtok_r(NULL, ",]", &save)) {
            while (*t == ' ' || *t == '"') t++;
            size_t n = strlen(t);
            while (n && (t[n - 1] == ' ' || t[n - 1] == '"')) t[--n] = 0;
            if (hash_if_input(p, ws_real, t, &h)) { free(copy); return -1; }
        }
        free(copy);
    }
    snprintf(st->fingerprint, sizeof st->fingerprint, "%016llx", (unsigned long long)h);
    return 0;
}

// The stage's program as people call it: rlhf, sft, ... (found in the programs' directory), or a
// command stage's own first argument.
static const char *stage_prog(const Stage *st) {
    return st->command ? st->argv[0] : strrchr(st->argv[0], '/') + 1;
}

static void print_cmd(FILE *f, const Stage *st, const char *launcher) {
    if (launcher && launcher[0]) fprintf(f, "%s ", launcher);
    for (int i = 0; i < st->argc; i++) {
        const char *a = i == 0 ? stage_prog(st) : st->argv[i];
        int quote = strpbrk(a, " \t\"'$[]{}") != NULL || !a[0];
        fprintf(f, quote ? "'%s'%s" : "%s%s", a, i + 1 < st->argc ? " " : "");
    }
}

// What the signal handler shares with the runner: the signal received (0: none), the running
// stage's process group (0: none) and whether the signal reached it.
static volatile sig_atomic_t run_signal, stage_pgid, signal_forwarded;

static void on_run_signal(int sig) {
    int saved = errno;
    run_signal = sig;
    if (stage_pgid > 0 && kill(-(pid_t)stage_pgid, sig) == 0) signal_forwarded = 1;
    errno = saved;
}

// SIGINT, SIGTERM and SIGHUP go to on_run_signal, without SA_RESTART: a read of the stage's
// output returns EINTR and the loop goes on.
static void run_catch_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_run_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

// Runs the stage's command in its own process group (which gets the terminal when the runner has
// it, so a labeler typing rankings still can), streaming its output to the terminal and the log.
// Returns the exit status (128+signal when killed).
static int run_stage(const char *ws_real, Stage *st, const char *launcher) {
    snprintf(st->log, sizeof st->log, "%s/%s/%s.log", ws_real, PIPELINE_LOGS, st->name.text);
    int logfd = open(st->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int pipefd[2];
    if (logfd < 0 || pipe(pipefd)) {
        fprintf(stderr, "rlhf run: cannot open %s: %s\n", st->log, strerror(errno));
        if (logfd >= 0) close(logfd);
        return 1;
    }
    char *lcopy = launcher && launcher[0] ? STRDUP_CHECK(launcher) : NULL;
    char **argv =
        CALLOC_CHECK((lcopy ? strlen(lcopy) / 2 + 1 : 0) + (size_t)st->argc + 1, sizeof(char *));
    int a = 0;
    if (lcopy)
        for (char *tok = strtok(lcopy, " \t"); tok; tok = strtok(NULL, " \t")) argv[a++] = tok;
    for (int i = 0; i < st->argc; i++) argv[a++] = st->argv[i];
    argv[a] = NULL;
    int tty = isatty(STDIN_FILENO) && tcgetpgrp(STDIN_FILENO) == getpgrp();
    fflush(stdout); fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "rlhf run: fork: %s\n", strerror(errno));
        free(lcopy);
        free(argv);
        close(logfd);
        return 1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        if (tty) { signal(SIGTTOU, SIG_IGN); tcsetpgrp(STDIN_FILENO, getpid()); }
        signal(SIGTTOU, SIG_DFL);
        dup2(pipefd[1], 1);
        dup2(pipefd[1], 2);
        close(pipefd[0]); close(pipefd[1]);
        execvp(argv[0], argv);
        fprintf(stderr, "rlhf run: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid);   // both sides set it: whichever runs first, the group exists before a kill
    stage_pgid = pid;
    if (run_signal && !signal_forwarded && kill(-pid, run_signal) == 0)
        signal_forwarded = 1; // came before the group did
    if (tty) { signal(SIGTTOU, SIG_IGN); tcsetpgrp(STDIN_FILENO, pid); }
    close(pipefd[1]);
    char buf[8192];
    ssize_t r;
    for (;;) {
        r = read(pipefd[0], buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        if (write(2, buf, (size_t)r) < 0) { /* the terminal went away: keep logging */ }
        if (write(logfd, buf, (size_t)r) <
            0) { /* disk full: the child's own checkpoints still matter */
        }
    }
    close(pipefd[0]);
    close(logfd);
    free(lcopy);
    free(argv);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    stage_pgid = 0;
    if (tty) { tcsetpgrp(STDIN_FILENO, getpgrp()); signal(SIGTTOU, SIG_DFL); }
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
    "  --dry-run      validate and print the plan and the gates without running anything\n"
    "  --force        run the selected stages even when they could be skipped; they start over\n"
    "                 (a stage that runs afresh has its output directory removed first when\n"
    "                 rlhf run made it; only an interrupted run of the same configuration resumes)\n"
    "  --set K=V      override: workspace=DIR, seed=N, launcher=CMD, vars.NAME=V, or\n"
    "                 STAGE.KEY=VALUE (a setting of a config stage)\n"
    "Paths: every relative path in the file (workspace, out, inputs, outputs, settings, args) is\n"
    "relative to the file's folder: the runner and its stages work there. A --set value is read\n"
    "against the current directory: a relative workspace, and a value starting with ./ or ../ or\n"
    "naming an existing file or folder, is made absolute.\n"
    "Pipeline file keys: workspace, seed, launcher, vars, stages; stage keys: name, run, needs,\n"
    "settings, args, inputs, outputs, require, out, launcher. run: sft | ppo | dpo | reward SUB |\n"
    "rlhf SUB | command (args: [PROGRAM, ARG...], run directly, PROGRAM found on PATH).\n"
    "inputs: files or folders whose contents count in the stage's fingerprint; outputs: paths the\n"
    "stage must have made (missing after exit 0: the stage fails).\n"
    "require: {STAGE: \"METRIC OP NUMBER\" or a list} (OP: >= > <= < ==), STAGE one it needs: the\n"
    "last value of METRIC logged by STAGE's latest run, checked before the stage runs; a failed\n"
    "gate stops the pipeline (exit 1) with the figure and the threshold.\n"
    "References: ${workspace}, ${seed}, ${bin} (the programs' directory), ${vars.NAME},\n"
    "${STAGE.out}. A stage's out must lie inside the workspace, apart from logs/, the database and\n"
    "other stages' outputs; stages may not be named logs or vars.\n"
    "One runner per workspace (a lock); SIGINT, SIGTERM and SIGHUP are passed to the running\n"
    "stage, and the runner exits 128+signal once it has stopped.\n";

static int remove_tree(const char *path) {
    pid_t pid = fork();
    if (pid == 0) { execlp("rm", "rm", "-rf", "--", path, (char *)NULL); _exit(127); }
    int status;
    if (pid < 0) return -1;
    while (waitpid(pid, &status, 0) < 0) if (errno != EINTR) return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

// What a name directly in the workspace is to the runner: NULL when nothing.
static const char *reserved_entry(const char *name, size_t n) {
    static const char *const names[][2] = {
        {PIPELINE_LOGS, "the workspace's logs directory (every stage's log)"},
        {PIPELINE_DB, "the workspace database"},
        {PIPELINE_DB "-wal", "the workspace database's log"},
        {PIPELINE_DB "-shm", "the workspace database's shared memory"},
        {PIPELINE_DB "-journal", "the workspace database's journal"},
        {PIPELINE_LOCK, "the runner's lock file"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i][0]) == n && !strncmp(name, names[i][0], n)) return names[i][1];
    return NULL;
}

// Every stage's output path, resolved, must lie strictly inside the workspace, away from what the
// runner keeps there (logs, database, lock) and apart from every other stage's output: the runner
// removes an output directory before running its stage afresh. Sets each stage's out_real.
static int check_outputs(Pipeline *p, const char *ws_real) {
    size_t wl = strlen(ws_real);
    for (int s = 0; s < p->n_stages; s++) {
        Stage *st = &p->stages[s];
        const char *o = st->out.text;
        free(st->out_real);
        st->out_real = pipeline_resolve_path(o);
        if (!st->out_real)
            return pipeline_error(p, st->out.line, st->out.col,
                                  "stage '%s': cannot resolve out '%s': %s", st->name.text, o,
                                  strerror(errno));
        const char *r = st->out_real;
        if (!pipeline_path_within(r, ws_real))
            return pipeline_error(
                p, st->out.line, st->out.col,
                "stage '%s': out '%s' (%s) is outside the workspace %s; a stage's output must be inside it",
                st->name.text, o, r, ws_real);
        if (!strcmp(r, ws_real))
            return pipeline_error(
                p, st->out.line, st->out.col,
                "stage '%s': out '%s' is the workspace itself; a stage's output must be a directory inside it",
                st->name.text, o);
        const char *first = r + wl + (wl > 1);   // its first component inside the workspace
        const char *what = reserved_entry(first, strcspn(first, "/"));
        if (what)
            return pipeline_error(p, st->out.line, st->out.col,
                                  "stage '%s': out '%s' is or is inside %s", st->name.text, o,
                                  what);
        for (int j = 0; j < s; j++) {
            const Stage *other = &p->stages[j];
            if (pipeline_path_within(r, other->out_real) ||
                pipeline_path_within(other->out_real, r))
                return pipeline_error(
                    p, st->out.line, st->out.col,
                    "stage '%s': out '%s' overlaps stage '%s''s output %s (line %d); each stage needs its own",
                    st->name.text, o, other->name.text, other->out.text, other->out.line);
        }
    }
    return 0;
}

// The marker the runner leaves in an output directory it made: it removes no other directory.
static int has_marker(const char *dir) {
    char path[PATH_MAX];
    struct stat sb;
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, PIPELINE_MARKER) >= sizeof path) return 0;
    return lstat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static void write_marker(const Stage *st) {
    struct stat sb;
    if (lstat(st->out_real, &sb) || !S_ISDIR(sb.st_mode) || has_marker(st->out_real)) return;
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", st->out_real, PIPELINE_MARKER) >= sizeof path)
        return;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "rlhf run: cannot write %s: %s (rlhf run will not remove this directory)\n",
                path, strerror(errno));
        return;
    }
    dprintf(
        fd,
        "Made by rlhf run for stage '%s'; rlhf run removes this directory before running the stage afresh.\n",
        st->name.text);
    close(fd);
}

static int dir_is_empty(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = 0;
    closedir(d);
    return empty;
}

// Takes WORKSPACE/.rlhf-run.lock (flock) and writes our pid in it. The descriptor is inherited by
// the stages (no close-on-exec), so a stage left running by a runner killed with SIGKILL still
// holds the lock and no second runner starts that stage beside it. 0; -1 with a message naming
// the holder's pid when another runner (or a stage of one) holds it.
static int lock_workspace(const char *ws, int *fd_out, char *err, size_t errlen) {
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", ws, PIPELINE_LOCK) >= sizeof path)
        return util_err(err, errlen, "%s: path too long", ws);
    int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW, 0644);
    if (fd < 0)
        return util_err(err, errlen, "cannot open the workspace lock %s: %s", path,
                        strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        int en = errno;
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = 0;
        pid[strcspn(pid, "\n")] = 0;
        close(fd);
        if (en != EWOULDBLOCK)
            return util_err(err, errlen, "cannot lock %s: %s", path, strerror(en));
        long holder = atol(pid);
        if (holder > 0 && kill((pid_t)holder, 0) && errno == ESRCH)
            return util_err(
                err, errlen,
                "workspace %s is in use: rlhf run (pid %ld) has ended but a stage it started still runs; "
                "wait for it to end or stop it",
                ws, holder);
        return util_err(
            err, errlen,
            "workspace %s is in use by another rlhf run (pid %s); wait for it to end or stop it",
            ws, pid[0] ? pid : "unknown");
    }
    char line[32];
    int n = snprintf(line, sizeof line, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) ||
        pwrite(fd, line, (size_t)n, 0) != n) { /* the lock holds without the pid */
    }
    *fd_out = fd;
    return 0;
}

// "12.3 s", "4 min 05 s", "2 h 03 min"
static void fmt_duration(char *buf, size_t n, double s) {
    if (s < 120) snprintf(buf, n, "%.1f s", s);
    else if (s < 7200) snprintf(buf, n, "%d min %02d s", (int)(s / 60), (int)s % 60);
    else snprintf(buf, n, "%d h %02d min", (int)(s / 3600), (int)(s / 60) % 60);
}

typedef struct { double *t; int n, cap; } Durations;

static int collect_duration(const StoreRun *r, void *ctx) {
    Durations *d = ctx;
    if (r->status != STORE_RUN_DONE || r->finished <= r->started) return 0;
    if (d->n == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 16;
        d->t = REALLOC_ARRAY(d->t, (size_t)d->cap, sizeof(double));
    }
    d->t[d->n++] = r->finished - r->started;
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// The median time of the stage's finished runs in this workspace (any configuration); 0 when none.
static double expected_seconds(Store *db, const char *label, int *runs) {
    Durations d = {0};
    char err[256];
    *runs = 0;
    if (store_each_run(db, label, collect_duration, &d, err, sizeof err) || d.n == 0) {
        free(d.t);
        return 0;
    }
    qsort(d.t, (size_t)d.n, sizeof(double), cmp_double);
    double m = d.n % 2 ? d.t[d.n / 2] : (d.t[d.n / 2 - 1] + d.t[d.n / 2]) / 2;
    *runs = d.n;
    free(d.t);
    return m;
}

// How many stages the selection (--only, --from, or all) holds.
static int selected_count(const Pipeline *p, int sel_only, int from_pos) {
    if (sel_only >= 0) return 1;
    return p->n_stages - (from_pos < 0 ? 0 : from_pos);
}

// One `rlhf run`: what was asked, the pipeline, the workspace, and where the loop stands.
typedef struct {
    const char *file, *from, *only;
    int dry, force;
    Pipeline *p;
    char *ws_real;            // the workspace's real path
    Store *db;                // NULL in a dry run without a workspace database
    int lock_fd;              // the workspace's lock (-1: not held)
    int sel_only;             // the --only stage's index (-1: none)
    int from_pos;             // the --from stage's place in the run order (-1: none)
    int64_t pipe_run;         // the pipeline's own run in db
    int n_sel, k_sel;         // stages selected, and begun so far
    int interrupted;
} Runner;

// A --set KEY=VALUE as the runner applies it once it works in the pipeline file's folder: a value
// given on the command line is read against the current directory, so a relative workspace, and
// any other relative value that starts with ./ or ../ or names an existing file or folder here,
// is made absolute. Returns a new string.
static char *override_abs(const char *kv, const char *cwd) {
    const char *eq = strchr(kv, '=');
    if (!eq || !eq[1] || eq[1] == '/') return STRDUP_CHECK(kv);
    const char *v = eq + 1;
    int is_ws = (size_t)(eq - kv) == strlen("workspace") && !strncmp(kv, "workspace", 9);
    int plain = !strncmp(kv, "seed=", 5) || !strncmp(kv, "launcher=", 9);
    if (plain || !(is_ws || !strncmp(v, "./", 2) || !strncmp(v, "../", 3) || !access(v, F_OK)))
        return STRDUP_CHECK(kv);
    size_t n = strlen(kv) + strlen(cwd) + 2;
    char *out = MALLOC_CHECK(n);
    snprintf(out, n, "%.*s%s/%s", (int)(eq + 1 - kv), kv, cwd, v);
    return out;
}

// Parses the file with the overrides (made absolute, see override_abs) and enters the file's
// folder, against which every relative path in the file resolves, the stages' too (they run
// there). Returns 0, or 1 with the message printed.
static int runner_parse(Runner *r, const CliList *sets) {
    Pipeline *p = r->p;
    char *cwd = getcwd(NULL, 0);
    if (!cwd) {
        fprintf(stderr, "rlhf run: cannot read the current directory: %s\n", strerror(errno));
        return 1;
    }
    char **over = CALLOC_CHECK((size_t)sets->n + 1, sizeof(char *));
    for (int i = 0; i < sets->n; i++) over[i] = override_abs(sets->items[i], cwd);
    int rc = pipeline_load(p, r->file, (const char *const *)over, sets->n);
    for (int i = 0; i < sets->n; i++) free(over[i]);
    free(over);
    free(cwd);
    if (rc) {
        fprintf(stderr, "rlhf run: %s\n", p->err);
        return 1;
    }
    char *real = realpath(r->file, NULL);
    char *slash = real ? strrchr(real, '/') : NULL;
    if (slash) {
        *slash = 0;
        snprintf(p->base, sizeof p->base, "%s", slash == real ? "/" : real);
    }
    free(real);
    if (!slash || chdir(p->base)) {
        fprintf(stderr, "rlhf run: cannot enter the folder of %s: %s\n", r->file, strerror(errno));
        return 1;
    }
    return 0;
}

// Loads and validates the pipeline file with the --set overrides and finds the selection.
// Returns 0, or the exit status with the message printed.
static int runner_load(Runner *r, const CliList *sets) {
    Pipeline *p = r->p;
    p->file = r->file;
    p->seed = 1234;
    ssize_t bl = readlink("/proc/self/exe", p->bindir, sizeof p->bindir - 1);
    if (bl <= 0) {
        fprintf(stderr, "rlhf run: cannot find the program directory\n");
        return 1;
    }
    p->bindir[bl] = 0;
    *strrchr(p->bindir, '/') = 0;
    if (runner_parse(r, sets)) return 1;
    r->ws_real = pipeline_resolve_path(p->workspace.text);
    if (!r->ws_real) {
        fprintf(stderr, "rlhf run: %s:%d:%d: workspace '%s': %s\n", r->file, p->workspace.line,
                p->workspace.col, p->workspace.text, strerror(errno));
        return 1;
    }
    if (check_outputs(p, r->ws_real) || validate_settings(p)) {
        fprintf(stderr, "rlhf run: %s\n", p->err);
        return 1;
    }
    int sel_from = -1;
    if (r->from && (sel_from = pipeline_stage_index(p, r->from)) < 0) {
        fprintf(stderr, "rlhf run: --from %s: no such stage\n", r->from);
        return 2;
    }
    if (r->only && (r->sel_only = pipeline_stage_index(p, r->only)) < 0) {
        fprintf(stderr, "rlhf run: --only %s: no such stage\n", r->only);
        return 2;
    }
    for (int k = 0; k < p->n_stages; k++)
        if (p->order[k] == sel_from) r->from_pos = k;
    r->n_sel = selected_count(p, r->sel_only, r->from_pos);
    return 0;
}

// Makes the workspace and its logs folder, takes its lock, opens its database and records the
// pipeline's run. A dry run creates nothing. Returns 0 or 1 with the message printed.
static int runner_open_workspace(Runner *r) {
    const char *ws = r->p->workspace.text;
    char err[1024], logs[PATH_MAX], dbpath[PATH_MAX];
    snprintf(logs, sizeof logs, "%s/%s", ws, PIPELINE_LOGS);
    snprintf(dbpath, sizeof dbpath, "%s/%s", ws, PIPELINE_DB);
    struct stat dbst;
    if (r->dry && stat(dbpath, &dbst) != 0) {
        r->db = NULL;   // a dry run creates nothing: without a workspace every stage would run
        return 0;
    }
    if (util_mkdir_p(ws, err, sizeof err) || (!r->dry && util_mkdir_p(logs, err, sizeof err)) ||
        (!r->dry && lock_workspace(ws, &r->lock_fd, err, sizeof err)) ||
        store_open(&r->db, dbpath, err, sizeof err) ||
        (!r->dry && store_reap_runs(r->db, NULL, err, sizeof err))) {
        fprintf(stderr, "rlhf run: %s\n", err);
        return 1;
    }
    if (r->dry) return 0;
    StoreRunInfo ri = {.stage = "pipeline", .name = r->file, .program = "rlhf run"};
    if (store_add_run(r->db, &ri, &r->pipe_run, err, sizeof err)) {
        fprintf(stderr, "rlhf run: %s\n", err);
        return 1;
    }
    run_catch_signals();
    return 0;
}

// Whether stage index j is in the selection (--only, --from, or all).
static int runner_selects(const Runner *r, int j) {
    if (r->sel_only >= 0) return j == r->sel_only;
    for (int k = (r->from_pos < 0 ? 0 : r->from_pos); k < r->p->n_stages; k++)
        if (r->p->order[k] == j) return 1;
    return 0;
}

// A stage outside the selection matters only when a selected stage needs it: then it must have
// finished with this configuration. Returns -1 to go on, or the exit status.
static int runner_unselected(Runner *r, int k, Stage *st, int done_before) {
    int needed = 0;
    for (int j = 0; j < r->p->n_stages; j++)
        if (runner_selects(r, j) && pipeline_depends_on(r->p, j, r->p->order[k])) needed = 1;
    if (needed && !done_before) {
        if (r->dry) {
            st->outcome = "needed";
            return -1;
        }
        fprintf(stderr, "rlhf run: stage '%s' is needed by the selection but has not finished with "
                        "this configuration; run it first\n", st->name.text);
        return 1;
    }
    st->outcome = needed ? "skipped" : "not selected";
    return -1;
}

// The run of this very configuration that was interrupted (it is continued, not started over),
// or 0.
static int64_t runner_resumable(const Runner *r, const Stage *st) {
    StoreRun prev;
    int64_t run_id = 0;
    char err[1024];
    if (store_find_last_run(r->db, st->label, st->fingerprint, -1, &prev, err, sizeof err) == 0) {
        if (prev.id && (prev.status == STORE_RUN_INTERRUPTED || prev.status == STORE_RUN_RUNNING) &&
            !r->force)
            run_id = prev.id;
        store_run_free(&prev);
    }
    return run_id;
}

// "stage 2 of 5: sft (resuming) (expected ...)" and the command, on stderr.
static void runner_announce(const Runner *r, const Stage *st, const char *launcher, int resuming) {
    int prev_runs = 0;
    double expect = expected_seconds(r->db, st->label, &prev_runs);
    char when[128] = "";
    if (prev_runs) {
        char d[32];
        fmt_duration(d, sizeof d, expect);
        snprintf(when, sizeof when, " (expected %s: the median of %d earlier run%s)", d, prev_runs,
                 prev_runs > 1 ? "s" : "");
    }
    fprintf(stderr, "rlhf run: stage %d of %d: %s%s%s\n", r->k_sel, r->n_sel, st->name.text,
            resuming ? " (resuming)" : "", when);
    fprintf(stderr, "rlhf run: == %s%s: ", st->name.text, resuming ? " (resuming)" : "");
    print_cmd(stderr, st, launcher);
    fprintf(stderr, "\n");
}

// Declared outputs a stage did not make: their names into `missing` (space-separated); the count.
static int missing_outputs(const Stage *st, char *missing, size_t n) {
    int count = 0;
    size_t used = 0;
    missing[0] = 0;
    for (int i = 0; i < st->n_outputs; i++) {
        struct stat sb;
        if (stat(st->out_paths[i], &sb) == 0) continue;
        count++;
        if (used < n)
            used += (size_t)snprintf(missing + used, n - used, "%s%s", used ? ", " : "",
                                     st->out_paths[i]);
    }
    return count;
}

// Records the stage's run (or marks the resumed one running), runs it, records how it ended.
// Returns -1 to go on, or the exit status.
static int runner_execute(Runner *r, Stage *st, const char *launcher, int64_t run_id, int owned) {
    char err[1024];
    runner_announce(r, st, launcher, run_id != 0);
    char prog[8192] = "";
    for (int i = 0; i < st->argc; i++) {
        strncat(prog, i ? st->argv[i] : stage_prog(st),
                sizeof prog - strlen(prog) - 2);
        strncat(prog, " ", sizeof prog - strlen(prog) - 1);
    }
    if (run_id) {
        if (store_set_run_status(r->db, run_id, STORE_RUN_RUNNING, 0, err, sizeof err)) {
            fprintf(stderr, "rlhf run: %s\n", err);
            return 1;
        }
    } else {
        StoreRunInfo ri = {.stage = st->label, .name = r->file, .program = prog, .config = prog,
                           .config_hash = st->fingerprint, .checkpoint = st->out.text,
                           .parent_id = r->pipe_run};
        if (store_add_run(r->db, &ri, &run_id, err, sizeof err)) {
            fprintf(stderr, "rlhf run: %s\n", err);
            return 1;
        }
    }
    double t0 = util_time_s();
    int code = run_stage(r->ws_real, st, launcher);
    st->seconds = util_time_s() - t0;
    if (owned) write_marker(st);
    // interrupted: a signal to the runner (passed on), or the stage's own exit on one (the
    // terminal's Ctrl-C reaches the stage's group directly)
    char missing[1024];
    int n_missing = code == 0 ? missing_outputs(st, missing, sizeof missing) : 0;
    if (n_missing) {
        fprintf(stderr, "rlhf run: stage '%s' exited 0 but did not make %d of its declared "
                "outputs: %s\n", st->name.text, n_missing, missing);
        code = 1;
    }
    int by_signal = !n_missing && (run_signal || code == 128 + SIGINT || code == 128 + SIGTERM ||
                                   code == 128 + SIGHUP);
    StoreRunStatus rs = code == 0   ? STORE_RUN_DONE
                        : by_signal ? STORE_RUN_INTERRUPTED
                                    : STORE_RUN_FAILED;
    if (store_set_run_status(r->db, run_id, rs, code, err, sizeof err))
        fprintf(stderr, "rlhf run: %s\n", err);
    char took[32];
    fmt_duration(took, sizeof took, st->seconds);
    if (code != 0) {
        st->outcome = rs == STORE_RUN_INTERRUPTED ? "interrupted" : "failed";
        fprintf(stderr, "rlhf run: stage %d of %d: %s %s after %s (exit %d); its log: %s\n",
                r->k_sel, r->n_sel, st->name.text, st->outcome, took, code, st->log);
        if (rs != STORE_RUN_INTERRUPTED) return 1;
        r->interrupted = 1;
        return run_signal ? 128 + run_signal : code;
    }
    st->outcome = "ran";
    fprintf(stderr, "rlhf run: stage %d of %d: %s finished in %s\n", r->k_sel, r->n_sel,
            st->name.text, took);
    if (run_signal) {
        r->interrupted = 1;
        return 128 + run_signal;
    }
    return -1;
}

// The newest run a program recorded (not the runner's own pipeline runs) between a stage run's
// start and end: the run of the program the stage ran.
typedef struct { double from, to; int64_t id; char stage[64]; } GateRun;

static int gate_pick_run(const StoreRun *run, void *ctx) {
    GateRun *g = ctx;
    if (!strncmp(run->stage, "pipeline", 8) || run->started < g->from || run->started > g->to)
        return 0;
    g->id = run->id;
    snprintf(g->stage, sizeof g->stage, "%s", run->stage);
    return 0;
}

// The last value logged of a metric (by step), and the names of the metrics seen.
typedef struct { double value; int found; char names[400]; } GateMetric;

static int gate_last_value(const StoreMetric *m, void *ctx) {
    GateMetric *g = ctx;
    g->value = m->value;
    g->found = 1;
    return 0;
}

static int gate_collect_name(const StoreMetric *m, void *ctx) {
    GateMetric *g = ctx;
    size_t n = strlen(g->names), l = strlen(m->name);
    const char *last = strrchr(g->names, ' ');
    last = last ? last + 1 : g->names;
    if (!strcmp(last, m->name) || n + l + 2 >= sizeof g->names) return 0;   // by name: repeats
    snprintf(g->names + n, sizeof g->names - n, "%s%s", n ? " " : "", m->name);
    return 0;
}

static int gate_holds(GateOp op, double v, double t) {
    switch (op) {
    case GATE_GE: return v >= t;
    case GATE_GT: return v > t;
    case GATE_LE: return v <= t;
    case GATE_LT: return v < t;
    case GATE_EQ: return v == t;
    }
    return 0;
}

// Reads gate g's figure: the last value of its metric logged by the program of its stage's
// latest finished run with the stage's current fingerprint. 0 with *v, or -1 with why in `why`.
static int gate_figure(const Runner *r, const Gate *g, double *v, char *why, size_t n) {
    const Stage *dep = &r->p->stages[g->dep];
    char label[128], err[1024];
    snprintf(label, sizeof label, "pipeline/%s", dep->name.text);
    StoreRun last;
    memset(&last, 0, sizeof last);
    if (store_find_last_run(r->db, label, dep->fingerprint, STORE_RUN_DONE, &last, err, sizeof err))
        return util_err(why, n, "%s", err);
    GateRun pick = {last.started, last.finished, 0, ""};
    int finished = last.id != 0;
    store_run_free(&last);
    if (!finished)
        return util_err(why, n, "'%s' has not finished with this configuration",
                        dep->name.text);
    if (store_each_run(r->db, NULL, gate_pick_run, &pick, err, sizeof err))
        return util_err(why, n, "%s", err);
    if (!pick.id)
        return util_err(why, n,
                        "'%s' recorded no metrics in the workspace database (sft, reward train, "
                        "ppo, dpo and rlhf eval-policy do)", dep->name.text);
    GateMetric m = {0};
    if (store_each_metric(r->db, pick.id, g->metric, gate_last_value, &m, err, sizeof err))
        return util_err(why, n, "%s", err);
    if (!m.found) {
        if (store_each_metric(r->db, pick.id, NULL, gate_collect_name, &m, err, sizeof err))
            return util_err(why, n, "%s", err);
        return util_err(why, n, "'%s' logged no metric '%s' (its %s run %lld logged: %s)",
                        dep->name.text, g->metric, pick.stage, (long long)pick.id,
                        m.names[0] ? m.names : "none");
    }
    *v = m.value;
    return 0;
}

// Checks the stage's gates in turn; the outcome goes to st->gate_note. Returns -1 when all hold,
// else 1 with one message printed: the figure, the threshold and where to look.
static int runner_gates(const Runner *r, Stage *st) {
    size_t used = 0;
    for (int i = 0; i < st->n_gates; i++) {
        const Gate *g = &st->gates[i];
        const Stage *dep = &r->p->stages[g->dep];
        double v = 0;
        char why[1024] = "", fig[64] = "(missing)";
        int got = gate_figure(r, g, &v, why, sizeof why) == 0;
        int held = got && gate_holds(g->op, v, g->threshold);
        if (got) snprintf(fig, sizeof fig, "%.4g", v);
        size_t room = sizeof st->gate_note - used;
        used += (size_t)snprintf(st->gate_note + used, room, "%sgate: %s's %s %s %s %g %s",
                                 i ? "; " : "", dep->name.text, g->metric, fig,
                                 pipeline_gate_op(g->op), g->threshold, held ? "passed" : "failed");
        if (used >= sizeof st->gate_note) used = sizeof st->gate_note - 1;
        if (held) continue;
        st->outcome = "gate failed";
        char log[PATH_MAX + 32];
        snprintf(log, sizeof log, "%s/%s/%s.log", r->ws_real, PIPELINE_LOGS, dep->name.text);
        if (got)
            fprintf(stderr, "rlhf run: stage '%s' stopped by its gate (%s:%d:%d): %s's %s is %.4g, "
                    "the gate requires %s %g; see %s and the README's \"Bring your own task\" "
                    "(what to look at when a stage learned nothing)\n", st->name.text, r->file,
                    g->cond.line, g->cond.col, dep->name.text, g->metric, v,
                    pipeline_gate_op(g->op), g->threshold, log);
        else
            fprintf(stderr, "rlhf run: stage '%s' stopped by its gate (%s:%d:%d): cannot read "
                    "%s's %s: %s; the gate requires %s %g (see \"Stage gates\" in the README)\n",
                    st->name.text, r->file, g->cond.line, g->cond.col, dep->name.text, g->metric,
                    why, pipeline_gate_op(g->op), g->threshold);
        return 1;
    }
    return -1;
}

// A command stage's output directory, made (with the runner's marker) before its command runs, so
// the command may write in ${STAGE.out}. 0, or -1 with the message printed.
static int command_out_dir(const Stage *st) {
    char err[1024];
    if (util_mkdir_p(st->out_real, err, sizeof err)) {
        fprintf(stderr, "rlhf run: stage '%s': %s\n", st->name.text, err);
        return -1;
    }
    write_marker(st);
    return 0;
}

// The k-th stage of the run order: skipped when unchanged since it finished, printed in a dry
// run, else run. Returns -1 to go on, or the exit status.
static int runner_stage(Runner *r, int k) {
    Pipeline *p = r->p;
    Stage *st = &p->stages[p->order[k]];
    char err[1024];
    if (fingerprint(p, r->ws_real, st, r->dry)) {
        fprintf(stderr, "rlhf run: %s\n", p->err);
        return 1;
    }
    StoreRun last;
    memset(&last, 0, sizeof last);
    snprintf(st->label, sizeof st->label, "pipeline/%s", st->name.text);
    if (r->db && store_find_last_run(r->db, st->label, st->fingerprint, STORE_RUN_DONE, &last, err,
                                     sizeof err)) {
        fprintf(stderr, "rlhf run: %s\n", err);
        return 1;
    }
    int done_before = last.id != 0;
    if (r->db) store_run_free(&last);
    struct stat sb;
    int out_exists = lstat(st->out_real, &sb) == 0, out_is_dir = out_exists && S_ISDIR(sb.st_mode);
    // a command stage is not a training program: only its own launcher counts
    const char *launcher = st->launcher.text ? st->launcher.text
                           : st->command     ? NULL
                                             : p->launcher.text;
    if (!runner_selects(r, p->order[k])) return runner_unselected(r, k, st, done_before);
    r->k_sel++;
    char missing[1024];
    int skip = done_before && out_exists && !r->force &&
               missing_outputs(st, missing, sizeof missing) == 0;
    if (r->dry) {
        printf("%-14s %-8s ", st->name.text, skip ? "skip" : "run");
        print_cmd(stdout, st, launcher);
        printf("\n");
        for (int i = 0; i < st->n_gates; i++)
            printf("%-14s %-8s %s: %s\n", "", "gate", st->gates[i].stage.text,
                   st->gates[i].cond.text);
        st->outcome = skip ? "skipped" : "would run";
        return -1;
    }
    if (st->n_gates && runner_gates(r, st) >= 0) return 1;
    if (skip) {
        fprintf(stderr, "rlhf run: stage %d of %d: %s: unchanged since its last run, skipped\n",
                r->k_sel, r->n_sel, st->name.text);
        st->outcome = "skipped";
        return -1;
    }
    // any run but a resumed one starts from a clean output directory (stale outputs of an older
    // configuration must not be resumed), which the runner removes only when it made it
    int64_t run_id = runner_resumable(r, st);
    int owned = !out_exists || run_id ||
                (out_is_dir && (has_marker(st->out_real) || dir_is_empty(st->out_real)));
    if (!run_id && out_is_dir) {
        if (!owned) {
            fprintf(
                stderr,
                "rlhf run: stage '%s': its output %s exists and was not made by rlhf run (no %s in "
                "it); move it away or give the stage another out\n",
                st->name.text, st->out.text, PIPELINE_MARKER);
            return 1;
        }
        if (!dir_is_empty(st->out_real) && remove_tree(st->out_real)) {
            fprintf(stderr, "rlhf run: cannot remove %s\n", st->out.text);
            return 1;
        }
    }
    if (st->command && owned && command_out_dir(st)) return 1;
    return runner_execute(r, st, launcher, run_id, owned);
}

// What became of each stage, and the pipeline's run recorded as done, interrupted or failed.
static void runner_summary(const Runner *r, int rc) {
    const Pipeline *p = r->p;
    char err[1024];
    fprintf(stderr, "\nrlhf run: summary of %s (workspace %s)\n", r->file, p->workspace.text);
    for (int k = 0; k < p->n_stages; k++) {
        const Stage *st = &p->stages[p->order[k]];
        fprintf(stderr, "  %-16s %-12s", st->name.text, st->outcome);
        if (st->seconds > 0) fprintf(stderr, " %8.1f s   %s", st->seconds, st->log);
        if (st->gate_note[0])
            fprintf(stderr, "%s(%s)", st->seconds > 0 ? "  " : " ", st->gate_note);
        fprintf(stderr, "\n");
    }
    StoreRunStatus rs = rc == 0 ? STORE_RUN_DONE : r->interrupted ? STORE_RUN_INTERRUPTED : STORE_RUN_FAILED;
    if (store_set_run_status(r->db, r->pipe_run, rs, rc, err, sizeof err))
        fprintf(stderr, "rlhf run: %s\n", err);
    if (r->interrupted)
        fprintf(stderr, "rlhf run: interrupted%s%s; the same command resumes\n", run_signal ? " by " : "",
                run_signal ? strsignal(run_signal) : "");
}

int pipeline_cmd_run(int argc, char **argv) {
    Runner r = {.lock_fd = -1, .sel_only = -1, .from_pos = -1};
    CliList sets = {0};
    int status;
    CliOption opts[] = {
        CLI_STRING("--from", &r.from),
        CLI_STRING("--only", &r.only),
        CLI_FLAG("--dry-run", &r.dry),
        CLI_FLAG("--force", &r.force),
        CLI_LIST("--set", &sets),
        {0}};
    CliCommand cmd = {.prog = "rlhf run", .usage = run_usage, .opts = opts,
                      .arg_name = "PIPELINE.yaml", .arg = &r.file};
    if (cli_parse(&cmd, argc, argv, &status)) return status;
    if (!r.file) {
        cli_list_free(&sets);
        return cli_usage_error(&cmd, "missing PIPELINE.yaml");
    }
    if (r.from && r.only) {
        fprintf(stderr, "rlhf run: --from and --only exclude each other\n");
        cli_list_free(&sets);
        return 2;
    }
    r.p = CALLOC_CHECK(1, sizeof(Pipeline));
    int rc = runner_load(&r, &sets);
    if (!rc) rc = runner_open_workspace(&r);
    if (!rc) {
        for (int k = 0; k < r.p->n_stages; k++) {
            if (run_signal) {
                r.interrupted = 1;
                rc = 128 + run_signal;
                break;
            }
            int stop = runner_stage(&r, k);
            if (stop >= 0) {
                rc = stop;
                break;
            }
        }
        if (!r.dry) runner_summary(&r, rc);
    }
    store_close(r.db);
    if (r.lock_fd >= 0) close(r.lock_fd);   // releases the lock
    pipeline_free(r.p);
    free(r.p);
    free(r.ws_real);
    cli_list_free(&sets);
    return rc;
}
