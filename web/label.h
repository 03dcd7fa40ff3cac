// label: the labeling API of `rlhf serve` (JSON over HTTP), on the same claims and tables as
// `reward label` (common/store): a labeler is given the next prompt by store_claim_prompt (two
// labelers never share one unless overlap asks for it), ranks its completions, and the ranking,
// its flags and its note are stored in one transaction, only for the labeler's own active claim.
//
// Every function answers one request: it returns the HTTP status and sets *json to a malloc'd
// JSON body (the caller frees it): the result, or {"error": "..."} naming what was wrong.
#ifndef LABEL_H
#define LABEL_H
#include "store.h"
#include <stddef.h>
#include <stdint.h>

#include <pthread.h>

#define LABEL_TOTALS_S 2.0    // the progress totals are read again after this many seconds

// The progress totals (prompts done, queued) shared by a server's threads: they scan the whole
// workspace, so they are read at most every LABEL_TOTALS_S seconds.
typedef struct {
    pthread_mutex_t mu;
    double at;                // when they were read (0: never)
    int64_t done, queued;
} LabelTotals;

typedef struct {
    StoreClaimOptions co;     // overlap, lease, split (min_completions is set to 2)
    LabelTotals *totals;      // the caller's (mu initialised); NULL: read per request
} LabelOptions;

// GET /api/next, in two steps: label_claim (the write) gives the labeler a prompt in *pid: its
// own unexpired claim first, else the next one free, 0 when nothing is left; want > 0: that
// prompt when the labeler holds an active claim on it (the prompt an undo gave back). It returns
// 200 with *json NULL, or an error status and *json. label_show (reads only) answers
// {"prompt_id", "prompt", "completions": [{"id", "text"}], "progress": {"mine", "done",
// "queued", "overlap"}}: the completions shuffled (a fixed order per labeler and prompt) and
// without their sources.
int label_claim(Store *db, const LabelOptions *o, int64_t labeler_id, int64_t want,
                int64_t *pid, char **json);
int label_show(Store *db, const LabelOptions *o, int64_t labeler_id, int64_t pid, char **json);
// POST /api/rank {"prompt_id", "items": [{"id", "rank"}], "flags": [{"id", "flag"}], "note"}:
// every completion shown is ranked (rank 1 best, equal ranks tie). 403 when the labeler holds no
// active claim on the prompt (another labeler's, expired, never given).
int label_rank(Store *db, const LabelOptions *o, int64_t labeler_id, const char *body,
               char **json);
// POST /api/skip {"prompt_id"}: never shown to this labeler again (403 unless claimed by it).
int label_skip(Store *db, const LabelOptions *o, int64_t labeler_id, const char *body,
               char **json);
// POST /api/undo {}: deletes the labeler's newest ranking made at `since` (the login) or later,
// and claims its prompt back (409 when there is none).
int label_undo(Store *db, const LabelOptions *o, int64_t labeler_id, double since, char **json);
#endif
