// rlhf judge: the labeler that stands in for people in the demo (`reward label --judge CMD`).
// It reads one JSON request per line and answers each with one ranking line, ranking by
// correctness and form (data/demo/tasks.h: task_rank) with settable label noise.
//
// Protocol: exactly one reply line per non-blank request line, flushed at once, so a caller can
// write a request and block on the reply. A malformed request is answered with "error: ..." (and
// the same message on stderr, with its line number) and the judge goes on: one bad line must not
// end a long labeling session, and the caller is never left waiting. The exit status says
// whether any line was bad.
#include "cli.h"
#include "demo.h"
#include "tasks.h"
#include "util.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JUDGE_MAX_LINE (16 << 20)   // longest request line read (bytes); longer ones are errors

static const char *judge_usage =
    "usage: rlhf judge [--noise P] [--seed S] [--explain]\n"
    "Ranks completions like a labeler would, for `reward label --judge 'rlhf judge ...'`.\n"
    "stdin: one request per line, {\"prompt\": \"...\", \"completions\": [\"...\", ...]} (1..64 strings;\n"
    "       other keys ignored; the prompt raw or rendered as \"Human: ...\\n\\nAssistant:\").\n"
    "stdout: one line per request, flushed at once: a ranking such as 2>4>1=3 (1-based indices,\n"
    "       best first, '=' between ties), or 'error: MESSAGE' for a malformed request (also on\n"
    "       stderr with its line number); the judge then goes on with the next line. Blank lines\n"
    "       get no reply. An optional \"ended\": [true, false, ...] marks completions that\n"
    "       stopped at the end token; one cut off by the length limit ranks lower.\n"
    "Ranking: a correct answer (the demo's task family: arithmetic, reversing, sorting, counting,\n"
    "case, facts, parsed from the prompt) above a wrong one; then fewer words beyond the answer,\n"
    "no dialogue leaking ('Human:'), no junk bytes. A prompt not of the family cannot be judged:\n"
    "       it is answered 'error: ...' naming it (use a judge program of your own for others).\n"
    "Identical scores are ties.\n"
    "  --noise P   label noise in 0..0.4 (default 0.175): one pass over the ranked groups swapping\n"
    "              neighbours; agreement with the noiseless judge is 1-P, and two judges with\n"
    "              different seeds agree on ~73% of pairs at the default (InstructGPT's labelers)\n"
    "  --seed S    noise seed (default 1); the noise of a request is a function of (seed, request)\n"
    "  --explain   also write each completion's grade to stderr\n"
    "Exit status: 0 when every request was ranked, 1 when some line was malformed or not a demo\n"
    "task, 2 bad usage.\n";

// Reads one line (without its '\n') into *buf, growing it; a line longer than JUDGE_MAX_LINE is
// consumed and reported through *too_long. Returns the length, or -1 at end of input.
static long read_line(FILE *in, char **buf, size_t *cap, int *too_long, int *has_nul) {
    size_t n = 0;
    int c;
    *too_long = 0; *has_nul = 0;
    while ((c = getc(in)) != EOF && c != '\n') {
        if (c == 0) *has_nul = 1;
        if (n >= JUDGE_MAX_LINE) { *too_long = 1; continue; }
        if (n + 1 >= *cap) {
            *cap = *cap ? *cap * 2 : 4096;
            *buf = REALLOC_CHECK(*buf, *cap);
        }
        (*buf)[n++] = (char)c;
    }
    if (c == EOF && n == 0 && !*too_long) return -1;
    if (!*buf) { *cap = 1; *buf = MALLOC_CHECK(1); }
    (*buf)[n] = 0;
    return (long)n;
}

// Parses and ranks one request; writes the reply (ranking or error message) to out.
static int judge_line(const char *line, double noise, uint64_t seed, int explain, int64_t lineno,
                      char *out, size_t outlen) {
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(line, &end, 1);
    if (!j)
        return util_err(out, outlen, "line %lld: invalid JSON at column %ld", (long long)lineno,
                        end ? (long)(end - line) + 1 : 1L);
    int rc = -1;
    cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "prompt"),
          *cs = cJSON_GetObjectItemCaseSensitive(j, "completions");
    int k = cJSON_IsArray(cs) ? cJSON_GetArraySize(cs) : 0;
    const char *resp[TASK_MAX_K];
    if (!cJSON_IsObject(j))
        util_err(out, outlen, "line %lld: not a JSON object", (long long)lineno);
    else if (!cJSON_IsString(p))
        util_err(out, outlen, "line %lld: \"prompt\" must be a string", (long long)lineno);
    else if (!cJSON_IsArray(cs))
        util_err(out, outlen, "line %lld: \"completions\" must be an array of strings",
                 (long long)lineno);
    else if (k < 1 || k > TASK_MAX_K)
        util_err(out, outlen, "line %lld: %d completions (1..%d)", (long long)lineno, k,
                 TASK_MAX_K);
    else {
        int i = 0, ok = 1;
        for (cJSON *c = cs->child; c; c = c->next, i++) {
            if (!cJSON_IsString(c)) {
                util_err(out, outlen, "line %lld: completion %d is not a string", (long long)lineno,
                         i + 1);
                ok = 0;
                break;
            }
            resp[i] = c->valuestring;
        }
        // optional "ended": [true, false, ...]: false marks a completion cut off by the length
        // limit
        cJSON *en = cJSON_GetObjectItemCaseSensitive(j, "ended");
        int ended[TASK_MAX_K];
        if (ok && en) {
            if (!cJSON_IsArray(en) || cJSON_GetArraySize(en) != k) {
                util_err(out, outlen, "line %lld: \"ended\" must be an array of %d booleans",
                         (long long)lineno, k);
                ok = 0;
            } else {
                i = 0;
                for (cJSON *c = en->child; c; c = c->next, i++) {
                    if (!cJSON_IsBool(c)) {
                        util_err(out, outlen, "line %lld: \"ended\" item %d is not a boolean",
                                 (long long)lineno, i + 1);
                        ok = 0;
                        break;
                    }
                    ended[i] = cJSON_IsTrue(c);
                }
            }
        }
        int rank[TASK_MAX_K];
        if (ok) {
            int known = task_rank(p->valuestring, resp, en ? ended : NULL, k, noise, seed, rank);
            if (known < 0) util_err(out, outlen, "line %lld: cannot rank", (long long)lineno);
            else if (known == 0)
                util_err(out, outlen,
                         "line %lld: the prompt \"%.60s%s\" is not one of the demo's tasks: rlhf "
                         "judge knows only those (rlhf data demo); rank other prompts with a judge "
                         "program of your own",
                         (long long)lineno, p->valuestring,
                         strlen(p->valuestring) > 60 ? "..." : "");
            else if (task_ranking_format(rank, k, out, outlen))
                util_err(out, outlen, "line %lld: ranking too long", (long long)lineno);
            else {
                rc = 0;
                if (explain) {
                    Task t;
                    task_parse(p->valuestring, &t);   // known: ranked as a demo task
                    fprintf(stderr, "line %lld: %s, answer %s -> %s\n", (long long)lineno,
                            task_kind_name(t.kind), t.answer, out);
                    for (int c = 0; c < k; c++) {
                        TaskGrade g;
                        task_grade(&t, resp[c], &g);
                        int fin = en ? ended[c] : 1;
                        fprintf(
                            stderr,
                            "  %d: correct %d, extra words %d, leak %d, junk %d, empty %d, score %d, ended %d\n",
                            c + 1, g.correct, g.extra_words, g.leak, g.junk, g.empty,
                            g.score - (fin ? 0 : TASK_UNFINISHED_PENALTY), fin);
                    }
                }
            }
        }
    }
    cJSON_Delete(j);
    return rc;
}

int demo_judge_cmd(int argc, char **argv) {
    double noise = TASK_DEFAULT_NOISE;
    int64_t seed = 1;
    int explain = 0;
    int status;
    CliOption opts[] = {
        CLI_DOUBLE("--noise", &noise, 0, TASK_MAX_NOISE),
        CLI_INT("--seed", &seed, 0, INT64_MAX),
        CLI_FLAG("--explain", &explain),
        {0}};
    CliCommand cmd = {.prog = "rlhf judge", .usage = judge_usage, .opts = opts};
    if (cli_parse(&cmd, argc, argv, &status)) return status;
    char *line = NULL, reply[1024];
    size_t cap = 0;
    int64_t lineno = 0, bad = 0;
    long n;
    int too_long, has_nul;
    while ((n = read_line(stdin, &line, &cap, &too_long, &has_nul)) >= 0) {
        lineno++;
        if (n > 0 && line[n - 1] == '\r') line[--n] = 0;   // CRLF
        size_t sp = strspn(line, " \t\r");
        if (!too_long && !has_nul && line[sp] == 0) continue;
        int rc;
        if (too_long)
            rc = util_err(reply, sizeof reply, "line %lld: longer than %d bytes", (long long)lineno,
                          JUDGE_MAX_LINE);
        else if (has_nul)
            rc = util_err(reply, sizeof reply, "line %lld: contains a NUL byte", (long long)lineno);
        else rc = judge_line(line, noise, (uint64_t)seed, explain, lineno, reply, sizeof reply);
        if (rc) {
            bad++;
            fprintf(stderr, "rlhf judge: stdin:%s\n", reply + 5); // "line N: ..." -> "stdin:N: ..."
            printf("error: %s\n", reply);
        } else printf("%s\n", reply);
        fflush(stdout);
    }
    free(line);
    if (ferror(stdin)) { fprintf(stderr, "rlhf judge: error reading stdin\n"); return 1; }
    return bad ? 1 : 0;
}
