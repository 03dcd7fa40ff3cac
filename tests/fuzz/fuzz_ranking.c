// The ranking syntax of `reward label` (what a labeler types, what a judge program answers) and
// of `reward import`'s "ranking" key: the first byte picks k (2..REWARD_MAX_K) and whether the
// line is a person's or a judge's; the rest is the line. Any line parses into dense ranks that
// format and parse back to the same ranks, or gives a one-line message; nothing leaks.
#include "reward.h"
#include "fuzz_common.h"

static void check_one_line(const char *err) {
    if (!err[0]) abort();   // an error says something
    for (const char *p = err; *p; p++)
        if (*p == '\n' || *p == '\r') abort();   // and fits on one line
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int k = 2 + data[0] % (REWARD_MAX_K - 1), judge = (data[0] >> 7) & 1;
    char *line = malloc(size);
    memcpy(line, data + 1, size - 1);
    line[size - 1] = 0;   // the programs read lines as C strings
    char err[512] = "";
    int ranks[REWARD_MAX_K];
    if (reward_parse_ranking(line, k, ranks, err, sizeof err)) check_one_line(err);
    else {
        // dense ranks 1..m with every value used, and the typed form parses back to them
        int m = 0, used[REWARD_MAX_K + 1] = {0};
        for (int i = 0; i < k; i++) {
            if (ranks[i] < 1 || ranks[i] > k) abort();
            used[ranks[i]] = 1;
            if (ranks[i] > m) m = ranks[i];
        }
        for (int r = 1; r <= m; r++) if (!used[r]) abort();
        char f[1024];
        int back[REWARD_MAX_K];
        reward_format_ranking(ranks, k, f, sizeof f);
        if (reward_parse_ranking(f, k, back, err, sizeof err) || memcmp(back, ranks, (size_t)k * sizeof(int))) abort();
    }
    RewardAnswer a;
    err[0] = 0;
    if (reward_parse_answer(line, k, judge, &a, err, sizeof err)) {
        check_one_line(err);
        if (a.comment || a.kind != REWARD_ANSWER_NONE) abort();   // zeroed on error
    } else {
        if (a.kind != REWARD_ANSWER_RANKING && a.comment) abort();
        if (judge && (a.kind == REWARD_ANSWER_UNDO || a.kind == REWARD_ANSWER_QUIT || a.kind == REWARD_ANSWER_HELP)) abort();
        if (a.kind == REWARD_ANSWER_RANKING)
            for (int i = 0; i < k; i++) if (a.ranks[i] < 1 || a.ranks[i] > k) abort();
        reward_answer_free(&a);
    }
    free(line);
    return 0;
}
