// Guards: after each iteration, the run is stopped (guards.action stop) or rolled back to the last
// good checkpoint (rollback) when a figure users watch for trouble leaves its band:
//   guards.kl_max / guards.kl_min     the mean KL per episode (sum over a response of
//                                     log pi - log pi_ref): drifting away, or turning negative
//   guards.len_min / guards.len_max   the mean response length (tokens): collapse or explosion
// A guard fires when its figure is outside the band for guards.patience iterations in a row. It is
// reported on stderr with the figure and the threshold and recorded as the run's metric
// guard/<name> (the figure) at that iteration.
#include "ppo_train.h"
#include "util.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name, *key, *what;
    double value, limit;
    int above;   // fires above the limit (else below)
} Guard;

int ppo_guards_check(Ppo *s, const PpoStats *st, char *why, size_t whylen, char *err,
                     size_t errlen) {
    Config *c = s->cfg;
    Guard g[] = {
        {"kl_max", "guards.kl_max", "mean KL per episode", st->kl, config_get_double(c, "guards.kl_max"), 1},
        {"kl_min", "guards.kl_min", "mean KL per episode", st->kl, config_get_double(c, "guards.kl_min"), 0},
        {"len_max", "guards.len_max", "mean response length", st->resp_len,
         config_get_double(c, "guards.len_max"), 1},
        {"len_min", "guards.len_min", "mean response length", st->resp_len,
         config_get_double(c, "guards.len_min"), 0},
    };
    // off: kl_max, len_max and len_min at 0; kl_min at its default (-1e9)
    int on[4] = {g[0].limit > 0, g[1].limit > -1e9, g[2].limit > 0, g[3].limit > 0};
    int out = 0;
    for (int i = 0; i < 4 && !out; i++) {
        if (!on[i]) continue;
        int bad = g[i].above ? !(g[i].value <= g[i].limit) : !(g[i].value >= g[i].limit);
        if (!bad) continue;
        out = 1;
        int main_rank = dist_main(&s->dist);
        if (++s->guard_streak < config_get_int(c, "guards.patience")) {
            if (main_rank)
                fprintf(stderr, "ppo: guard: iteration %lld: %s %.4g %s %s %.4g (%lld of %lld "
                    "iterations in a row)\n",
                    (long long)s->iteration, g[i].what, g[i].value,
                    g[i].above ? "above" : "below", g[i].key, g[i].limit,
                    (long long)s->guard_streak, (long long)config_get_int(c, "guards.patience"));
            return 0;
        }
        char name[64];
        snprintf(name, sizeof name, "guard/%s", g[i].name);
        if (main_rank && store_add_metric(s->tr.db, s->tr.run_id, s->iteration, name, g[i].value, err, errlen))
            return -1;
        snprintf(why, whylen, "guard %s fired at iteration %lld: %s %.4g %s %s %.4g", g[i].key,
                 (long long)s->iteration, g[i].what, g[i].value,
                 g[i].above ? "above" : "below", g[i].key, g[i].limit);
        if (main_rank) fprintf(stderr, "ppo: %s\n", why);
        return 1;
    }
    if (!out) s->guard_streak = 0;
    return 0;
}
