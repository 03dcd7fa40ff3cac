// The demo's task family (data/demo/tasks.h): every drawn task is recognised with the same answer;
// each checker accepts right answers (plain or wrapped in the demonstrations' filler) and
// rejects wrong ones, checked on hand-written cases; the judge ranks a correct answer above
// wrong ones without noise, keeps ties, and with noise P agrees with the noiseless ranking on
// 1 - P of the pairs (two judges at the default noise: ~73%, InstructGPT's labelers); rankings
// format and parse.
#include "rng.h"
#include "tasks.h"
#include "testlib.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_round_trip(void) {
    Rng r;
    rng_init(&r, 11);
    int seen[TASK_NUM_KINDS] = {0};
    for (int i = 0; i < 7000; i++) {
        Task t, u;
        task_sample(&r, i % 8 == 7 ? -1 : i % 7, &t);
        seen[t.kind]++;
        CHECK_MSG(strlen(t.prompt) > 0 && strlen(t.answer) > 0,
                  "empty prompt or answer: '%s' -> '%s'", t.prompt, t.answer);
        if (task_parse(t.prompt, &u)) { CHECK_MSG(0, "not recognised: '%s'", t.prompt); continue; }
        CHECK_MSG(u.kind == t.kind && !strcmp(u.answer, t.answer) && u.template_id == t.template_id,
                  "'%s': drawn %s '%s', parsed %s '%s'", t.prompt, task_kind_name(t.kind), t.answer,
                  task_kind_name(u.kind), u.answer);
        CHECK_MSG(task_check(&t, t.answer), "'%s': its own answer '%s' is judged wrong", t.prompt,
                  t.answer);
    }
    for (int k = 0; k < TASK_NUM_KINDS; k++)
        CHECK_MSG(seen[k] > 500, "kind %s drawn %d times", task_kind_name(k), seen[k]);
    // names
    for (int k = 0; k < TASK_NUM_KINDS; k++) CHECK(task_kind_from_name(task_kind_name(k)) == k);
    CHECK(task_kind_from_name("nope") == -1 && !strcmp(task_kind_name(99), "unknown"));
}

static void test_same_seed_same_tasks(void) {
    Rng a, b;
    rng_init(&a, 5); rng_init(&b, 5);
    for (int i = 0; i < 500; i++) {
        Task x, y;
        char rx[512], ry[512];
        task_sample(&a, -1, &x); task_sample(&b, -1, &y);
        task_response(&a, &x, (TaskStyle)(i % TASK_NUM_STYLES), rx, sizeof rx);
        task_response(&b, &y, (TaskStyle)(i % TASK_NUM_STYLES), ry, sizeof ry);
        CHECK(!strcmp(x.prompt, y.prompt) && !strcmp(rx, ry));
    }
}

typedef struct { const char *prompt, *response; int correct; } Case;

static void test_checkers_by_hand(void) {
    static const Case cases[] = {
        {"What is 3 plus 4?", "7", 1},
        {"What is 3 plus 4?", "7.", 1},
        {"What is 3 plus 4?", "  7 ", 1},
        {"What is 3 plus 4?", "Sure! The answer is 7. I hope this helps!", 1},
        {"What is 3 plus 4?", "7\nWhat is 1 plus 1? 2", 1},
        {"What is 3 plus 4?", "8", 0},
        {"What is 3 plus 4?", "77", 0},
        {"What is 3 plus 4?", "7 8", 0},
        {"What is 3 plus 4?", "seven", 0},
        {"What is 3 plus 4?", "", 0},
        {"What is 3 plus 4?", "The answer is 8.", 0},
        {"What is 3 plus 4?", "The result is 7", 0},
        {"Add 12 and 19.", "31", 1},
        {"What is the sum of 0 and 0?", "0", 1},
        {"What is 9 minus 4?", "5", 1},
        {"Subtract 4 from 9.", "5", 1},
        {"Subtract 4 from 9.", "-5", 0},
        {"What is 9 take away 4?", "It is 5.", 1},
        {"Reverse the word 'cat'.", "tac", 1},
        {"Reverse the word 'cat'.", "TAC", 1},
        {"Reverse the word 'cat'.", "'tac'", 1},
        {"Reverse the word 'cat'.", "cat", 0},
        {"Reverse the word 'cat'.", "ta", 0},
        {"Write 'garden' backwards.", "nedrag", 1},
        {"Sort these numbers: 5, 2, 9.", "2, 5, 9", 1},
        {"Sort these numbers: 5, 2, 9.", "2 5 9", 1},
        {"Sort these numbers: 5, 2, 9.", "2,5,9", 1},
        {"Sort these numbers: 5, 2, 9.", "5, 2, 9", 0},
        {"Sort these numbers: 5, 2, 9.", "2, 5", 0},
        {"Sort these numbers: 5, 2, 9.", "2, 5, 9, 9", 0},
        {"Put these letters in alphabetical order: d, a, c.", "a, c, d", 1},
        {"Sort these letters: d, a, c.", "A, C, D", 1},
        {"Sort these letters: d, a, c.", "a, d, c", 0},
        {"How many letters are in the word 'apple'?", "5", 1},
        {"How many letters are in the word 'apple'?", "4", 0},
        {"Count the letters in 'sun'.", "The answer is 3!", 1},
        {"How many words are in 'the cat sat'?", "3", 1},
        {"Count the words in 'red big dog ran'.", "4", 1},
        {"How many words are in 'the cat sat'?", "2", 0},
        {"Write 'hello' in capital letters.", "HELLO", 1},
        {"Write 'hello' in capital letters.", "hello", 0},
        {"Write 'hello' in capital letters.", "Hello", 0},
        {"Change 'hello' to upper case.", "Okay. HELLO.", 1},
        {"Write 'HELLO' in small letters.", "hello", 1},
        {"Change 'HELLO' to lower case.", "HELLO", 0},
        {"What is the capital of Zorbia?", "Mipton", 1},
        {"What is the capital of Zorbia?", "mipton", 1},
        {"What is the capital of Zorbia?", "Fennick", 0},
        {"Which city is the capital of Galdor?", "Fennick", 1},
        {"What colour is grass?", "green", 1},
        {"What colour is grass?", "It is green.", 1},
        {"What colour is grass?", "Green!", 1},
        {"What colour is grass?", "blue", 0},
        {"What colour is the sky?", "blue", 1},
        // the rendered prompt is recognised too
        {"Human: What is 2 plus 2?\n\nAssistant:", "4", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Task t;
        if (task_parse(cases[i].prompt, &t)) {
            CHECK_MSG(0, "'%s' not recognised", cases[i].prompt);
            continue;
        }
        int got = task_check(&t, cases[i].response);
        CHECK_MSG(got == cases[i].correct, "'%s' answered '%s': judged %s, want %s",
                  cases[i].prompt, cases[i].response, got ? "correct" : "wrong",
                  cases[i].correct ? "correct" : "wrong");
    }
}

static void test_unknown_prompts(void) {
    static const char *const unknown[] = {
        "Tell me a joke.",
        "What is 3 plus four?",
        "What is the capital of France?",
        "What is 3 plus 4",
        "",
        "Reverse the word 'c4t'.",
        "Sort these numbers: 5, a, 9.",
        "Sort these numbers: 5.",
        "What colour is a dragon?",
        "Human: Tell me a joke.\n\nAssistant:",
        "Count the words in 'two  spaces'.",
    };
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        Task t;
        CHECK_MSG(task_parse(unknown[i], &t) == -1, "'%s' should not be recognised (got %s)",
                  unknown[i], task_kind_name(t.kind));
    }
    // surrounding whitespace is not part of a prompt
    Task t;
    CHECK(task_parse("  What is 3 plus 4? \n", &t) == 0 && !strcmp(t.prompt, "What is 3 plus 4?"));
    // a very long prompt is just unknown
    char big[4096];
    memset(big, 'a', sizeof big - 1); big[sizeof big - 1] = 0;
    CHECK(task_parse(big, &t) == -1);
}

// Responses in the demonstration styles: the first three are correct, WRONG never is; each
// filler phrase the generator uses is skipped by the grader.
static void test_styles(void) {
    Rng r;
    rng_init(&r, 3);
    int n_leak = 0;
    for (int i = 0; i < 4000; i++) {
        Task t;
        task_sample(&r, -1, &t);
        TaskStyle st = (TaskStyle)(i % TASK_NUM_STYLES);
        char resp[1024];
        task_response(&r, &t, st, resp, sizeof resp);
        TaskGrade g;
        task_grade(&t, resp, &g);
        CHECK_MSG(g.correct == (st != TASK_STYLE_WRONG),
                  "%s response '%s' to '%s' (answer '%s') judged %s", task_style_name(st), resp,
                  t.prompt, t.answer, g.correct ? "correct" : "wrong");
        if (st == TASK_STYLE_CONCISE)
            CHECK(g.extra_words == 0 && !g.leak && !g.junk && g.score == 1000);
        if (st == TASK_STYLE_VERBOSE) CHECK_MSG(g.extra_words > 0 && g.score < 1000, "'%s'", resp);
        if (st == TASK_STYLE_RAMBLING) {
            CHECK_MSG(g.extra_words > 0, "'%s'", resp);
            n_leak += g.leak;
        }
        if (st == TASK_STYLE_WRONG) CHECK_MSG(g.score <= 0, "'%s'", resp);
    }
    CHECK_MSG(n_leak > 100 && n_leak < 900,
              "rambling answers that continue the dialogue: %d of 1000", n_leak);
    for (int i = 0; i < task_filler_count(); i++) {
        char resp[256];
        snprintf(resp, sizeof resp, "%s 7.", task_filler(i));
        Task t;
        task_parse("What is 3 plus 4?", &t);
        CHECK_MSG(task_check(&t, resp), "filler '%s' not skipped", task_filler(i));
    }
}

static void test_grade_form(void) {
    TaskGrade g;
    Task t;
    task_parse("What is 3 plus 4?", &t);
    task_grade(&t, "   \n ", &g);
    CHECK(g.empty && !g.correct && g.score == -100);
    task_grade(&t, "7\n\nHuman: What is 1 plus 1?", &g);
    CHECK(g.correct && g.leak && g.extra_words == 6 && g.score == 1000 - 6 - 20);
    task_grade(&t, "7\n\x01", &g);
    CHECK(g.correct && g.junk && g.extra_words == 1);
    task_grade(&t, "7 caf\xc3\xa9", &g);
    CHECK(g.junk);
    // unknown prompt: form only, one word is the ideal
    task_grade(NULL, "Paris", &g);
    CHECK(!g.known && !g.correct && g.score == 0);
    task_grade(NULL, "It is Paris, I think.", &g);
    CHECK(g.score == -4);
}

static void test_rank_noiseless(void) {
    int rank[6];
    const char *r1[] = {"8", "Sure! The answer is 7.", "7", "seven"};
    CHECK(task_rank("What is 3 plus 4?", r1, NULL, 4, 0, 1, rank) == 1);
    char line[64];
    CHECK(task_ranking_format(rank, 4, line, sizeof line) == 0);
    CHECK_MSG(!strcmp(line, "3>2>1=4"), "got %s", line);
    // identical texts tie; the correct one is first whatever the order
    const char *r2[] = {"tac", "cat", "tac", "I think the answer is tac."};
    task_rank("Reverse the word 'cat'.", r2, NULL, 4, 0, 1, rank);
    task_ranking_format(rank, 4, line, sizeof line);
    CHECK_MSG(!strcmp(line, "1=3>4>2"), "got %s", line);
    // unknown prompt: by form
    const char *r3[] = {"A long rambling answer with many words.", "Short.", "\n"};
    CHECK(task_rank("Tell me a joke.", r3, NULL, 3, 0, 1, rank) == 0);
    task_ranking_format(rank, 3, line, sizeof line);
    CHECK_MSG(!strcmp(line, "2>1>3"), "got %s", line);
    // a completion cut off by the length limit ranks below the same text that ended
    const char *r4[] = {"7", "7"};
    int ended[2] = {0, 1};
    task_rank("What is 3 plus 4?", r4, ended, 2, 0, 1, rank);
    CHECK(rank[0] == 2 && rank[1] == 1);
    // one completion; bad arguments
    CHECK(task_rank("Tell me a joke.", r3, NULL, 1, 0, 1, rank) == 0 && rank[0] == 1);
    CHECK(task_rank("x", r3, NULL, 0, 0, 1, rank) == -1);
    CHECK(task_rank("x", r3, NULL, 2, 0.45, 1, rank) == -1);
    CHECK(task_rank("x", r3, NULL, TASK_MAX_K + 1, 0, 1, rank) == -1);
    // a correct answer is ranked first at noise 0 for every kind
    Rng r;
    rng_init(&r, 9);
    for (int i = 0; i < 700; i++) {
        Task t;
        task_sample(&r, i % TASK_NUM_KINDS, &t);
        char w[512], v[512];
        task_response(&r, &t, TASK_STYLE_WRONG, w, sizeof w);
        task_response(&r, &t, TASK_STYLE_VERBOSE, v, sizeof v);
        const char *rs[] = {w, v, t.answer};
        task_rank(t.prompt, rs, NULL, 3, 0, 1, rank);
        CHECK_MSG(rank[2] == 1 && rank[1] == 2 && rank[0] == 3,
                  "'%s': '%s' '%s' '%s' ranked %d %d %d", t.prompt, w, v, t.answer, rank[0],
                  rank[1], rank[2]);
    }
}

// Four completions of distinct quality; pairwise agreement of a noisy ranking with the noiseless
// one, and between two noisy judges with different seeds.
static void agreement(double noise, int n_req, double *with_truth, double *between) {
    const char *resp[4];
    int truth[4], r1[4], r2[4];
    long agree_t = 0, agree_b = 0, pairs = 0;
    char prompt[64];
    for (int q = 0; q < n_req; q++) {
        snprintf(prompt, sizeof prompt, "What is %d plus %d?", q % 20, (q / 20) % 20);
        Task t;
        task_parse(prompt, &t);
        char a[TASK_TEXT_MAX], b[TASK_TEXT_MAX + 32], c[64], d[64];
        snprintf(a, sizeof a, "%s", t.answer);                        // 1000
        snprintf(b, sizeof b, "The answer is %s.", t.answer);         // 997
        snprintf(c, sizeof c, "%d", atoi(t.answer) + 1);              // 0
        snprintf(d, sizeof d, "I do not know, sorry about that.");   // -6
        resp[0] = c; resp[1] = a; resp[2] = d; resp[3] = b;
        task_rank(prompt, resp, NULL, 4, 0, 0, truth);
        task_rank(prompt, resp, NULL, 4, noise, 1000 + (uint64_t)q, r1);
        task_rank(prompt, resp, NULL, 4, noise, 5000000 + (uint64_t)q, r2);
        for (int i = 0; i < 4; i++)
            for (int j = i + 1; j < 4; j++) {
                int st = (truth[i] < truth[j]) - (truth[i] > truth[j]);
                int s1 = (r1[i] < r1[j]) - (r1[i] > r1[j]), s2 = (r2[i] < r2[j]) - (r2[i] > r2[j]);
                agree_t += s1 == st;
                agree_b += s1 == s2;
                pairs++;
            }
    }
    *with_truth = (double)agree_t / (double)pairs;
    *between = (double)agree_b / (double)pairs;
}

static void test_rank_noise(void) {
    double t, b;
    agreement(0.0, 200, &t, &b);
    CHECK(t == 1.0 && b == 1.0);
    const double levels[] = {0.05, 0.1, TASK_DEFAULT_NOISE, 0.3, 0.4};
    for (int i = 0; i < 5; i++) {
        agreement(levels[i], 8000, &t, &b);
        printf(
            "    noise %.3f: agreement with the noiseless judge %.4f (expected %.4f), between two judges %.4f\n",
            levels[i], t, 1 - levels[i], b);
        CHECK_MSG(t > 1 - levels[i] - 0.012 && t < 1 - levels[i] + 0.012,
                  "noise %g: agreement %.4f, expected %.4f", levels[i], t, 1 - levels[i]);
        if (levels[i] == TASK_DEFAULT_NOISE)
            CHECK_MSG(b > 0.71 && b < 0.755,
                      "two judges at the default noise agree on %.4f of pairs, expected ~0.73", b);
    }
    // the noise is a function of (seed, request): same inputs, same ranking
    const char *rs[] = {"7", "8", "The answer is 7.", "nine"};
    int x[4], y[4], differs = 0;
    for (uint64_t s = 0; s < 50; s++) {
        task_rank("What is 3 plus 4?", rs, NULL, 4, 0.3, s, x);
        task_rank("What is 3 plus 4?", rs, NULL, 4, 0.3, s, y);
        CHECK(!memcmp(x, y, sizeof x));
        int z[4];
        task_rank("What is 3 plus 4?", rs, NULL, 4, 0.3, s + 1, z);
        differs += memcmp(x, z, sizeof x) != 0;
    }
    CHECK(differs > 5);
    // noise never breaks a tie
    const char *ties[] = {"7", "7", "8", "8"};
    for (uint64_t s = 0; s < 200; s++) {
        task_rank("What is 3 plus 4?", ties, NULL, 4, 0.4, s, x);
        CHECK(x[0] == x[1] && x[2] == x[3] && x[0] != x[2]);
    }
}

static void test_ranking_parse(void) {
    int rank[8];
    char err[256], line[64];
    CHECK(task_ranking_parse("2>4>1=3", 4, rank, err, sizeof err) == 0);
    CHECK(rank[0] == 3 && rank[1] == 1 && rank[2] == 3 && rank[3] == 2);
    CHECK(task_ranking_format(rank, 4, line, sizeof line) == 0 && !strcmp(line, "2>4>1=3"));
    CHECK(task_ranking_parse(" 1 = 2 ", 2, rank, err, sizeof err) == 0 && rank[0] == 1 &&
          rank[1] == 1);
    CHECK(task_ranking_parse("1", 1, rank, err, sizeof err) == 0);
    const char *bad[] = {"1>1", "1>5", "1>2", "1>2>3>", "a>b", "1,2,3", "", ">1>2>3", "0>1>2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        CHECK_MSG(task_ranking_parse(bad[i], 3, rank, err, sizeof err) == -1 && err[0],
                  "'%s' accepted", bad[i]);
    }
    CHECK(task_ranking_parse("1>2", 2, rank, NULL, 0) == 0);
    CHECK(task_ranking_parse("1>1", 2, rank, NULL, 0) == -1);
    // a buffer too small is reported, never overrun
    int r10[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    char small[8];
    CHECK(task_ranking_format(r10, 10, small, sizeof small) == -1 && strlen(small) < sizeof small);
}

static void test_sentences_and_statements(void) {
    Rng r;
    rng_init(&r, 1);
    for (int i = 0; i < 2000; i++) {
        char s[512];
        task_sentence(&r, s, sizeof s);
        size_t n = strlen(s);
        CHECK_MSG(n > 10 && s[n - 1] == '.' && !strchr(s, '\n'), "sentence '%s'", s);
        task_statement(&r, -1, s, sizeof s);
        CHECK_MSG(strlen(s) > 5 && !strchr(s, '{') && !strchr(s, '\n'), "statement '%s'", s);
    }
    // truncation is safe
    char tiny[5];
    task_sentence(&r, tiny, sizeof tiny);
    CHECK(strlen(tiny) == 4);
}

int main(void) {
    test_case("every drawn task is recognised with its answer", test_round_trip);
    test_case("same seed, same tasks and responses", test_same_seed_same_tasks);
    test_case("checkers accept right answers and reject wrong ones (hand-written cases)",
              test_checkers_by_hand);
    test_case("prompts outside the family are not recognised", test_unknown_prompts);
    test_case("demonstration styles: concise/verbose/rambling correct, wrong never", test_styles);
    test_case("form terms: empty, leak, junk, unknown prompts", test_grade_form);
    test_case("noiseless ranking: correctness, then form; ties kept", test_rank_noiseless);
    test_case("label noise: agreement 1-P with the truth, ~73% between two judges",
              test_rank_noise);
    test_case("ranking lines format and parse", test_ranking_parse);
    test_case("sentences and statements", test_sentences_and_statements);
    return test_summary();
}
