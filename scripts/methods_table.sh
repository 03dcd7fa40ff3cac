#!/bin/sh
# The comparison table of pipelines/demo-methods.yaml (or records-methods.yaml), read from its
# workspace database:
#   sh scripts/methods_table.sh [--seeds[=N,N...]] WORKSPACE.db [METHOD ...]
#   (default methods: ppo grpo rloo dpo ipo)
# For each method: the last finished `rlhf eval-policy` run named eval-METHOD (judge win rate
# against SFT with its bootstrap 95% interval, task accuracy, KL to SFT, held-out pretraining
# loss, all of the method's policy; SFT's in the first row) and the last finished pipeline stage
# METHOD (wall time of that stage run; peak resident memory of its program's run,
# run/peak_rss_bytes). Task accuracy is the demo's (a/accuracy) or, for a family with a gold
# scorer (eval-policy --score, 1 for a correct answer), the mean gold score (a/score).
# --seeds: every seed each method ran with (the methods' train.seed, `--set vars.method_seed=N`;
# scripts/methods_seeds.sh runs them): one row per method with the mean of each figure over its
# seeds and the range [lowest, highest], and the seeds. Each evaluation belongs to the method's
# stage run that finished last before it started (its seed read from that stage's command); of
# several evaluations of one seed, the last counts. --seeds=2,3,4: those seeds only.
# A figure not recorded prints as "-". Needs the sqlite3 shell.
usage="usage: sh scripts/methods_table.sh [--seeds[=N,N...]] WORKSPACE.db [METHOD ...]"
seeds=0 only=""
case ${1:-} in
    --seeds) seeds=1; shift;;
    --seeds=*)
        seeds=1; only=${1#--seeds=}; shift
        case $only in *[!0-9,]*|""|,*|*,|*,,*)
            echo "methods_table: --seeds=$only: expected seeds separated by commas" >&2; exit 1;; esac;;
esac
[ $# -ge 1 ] || { echo "$usage" >&2; exit 1; }
db=$1; shift
[ -f "$db" ] || { echo "methods_table: $db: no such file" >&2; exit 1; }
[ $# -ge 1 ] || set -- ppo grpo rloo dpo ipo
for m in "$@"; do   # a method name goes into SQL below: plain names only
    case $m in *[!a-z0-9_-]*|"") echo "methods_table: bad method name '$m'" >&2; exit 1;; esac
done
q() { sqlite3 -batch -noheader "$db" "$1" 2>/dev/null; }
fmt() { [ -n "$1" ] && printf "%.${2}f" "$1" || printf -- "-"; }
eval_run() { q "select id from runs where stage = 'eval' and name = 'eval-$1' and status = 'done' order by id desc limit 1"; }
metric() { [ -n "$1" ] && q "select value from metrics where run_id = $1 and name = '$2' and step = 0"; }
# task accuracy of policy $2 (a or b) in eval run $1: the demo's accuracy, else the gold score
accuracy() {
    [ -n "$1" ] && q "select value from metrics where run_id = $1 and step = 0 and name in ('$2/accuracy', '$2/score') order by name = '$2/accuracy' desc limit 1"
}

# --seeds: per method, one row (run ids and figures) per seed, the latest evaluation of each
seed_rows() {
    m=$1 filter=""
    [ -n "$only" ] && filter="where seed in ($only)"
    q "with e as (select id, started from runs where stage = 'eval' and name = 'eval-$m' and status = 'done'),
       ep as (select e.id eid, (select p.id from runs p where p.stage = 'pipeline/$m' and p.status = 'done'
                                 and p.finished <= e.started order by p.finished desc, p.id desc limit 1) pid
              from e),
       s as (select ep.eid, ep.pid, cast(substr(p.config, instr(p.config, 'train.seed=') + 11) as integer) seed,
                    p.finished - p.started wall, p.checkpoint out
             from ep join runs p on p.id = ep.pid where instr(p.config, 'train.seed=') > 0),
       last as (select seed, max(eid) eid from s $filter group by seed)
       select s.seed, s.eid, s.wall,
              (select value from metrics where run_id = s.eid and name = 'win_rate' and step = 0),
              (select value from metrics where run_id = s.eid and step = 0 and name in ('a/accuracy', 'a/score')
                order by name = 'a/accuracy' desc limit 1),
              (select value from metrics where run_id = s.eid and name = 'a/kl' and step = 0),
              (select value from metrics where run_id = s.eid and name = 'a/pretrain_loss' and step = 0),
              (select m.value / 1048576.0 from metrics m join runs r on r.id = m.run_id
                where r.stage not like 'pipeline/%' and r.checkpoint like s.out || '/%' and r.id > s.pid
                  and r.id < s.eid and m.name = 'run/peak_rss_bytes' order by r.id desc limit 1),
              (select value from metrics where run_id = s.eid and name = 'win_rate_lo' and step = 0)
       from s join last on last.eid = s.eid order by s.seed"
}

# mean [lo-hi] of column $1 (3..9 of seed_rows) with $2 decimals and unit $3, from stdin
# (column 9, the interval's lower end: its lowest value only)
stat() {
    awk -F'|' -v c="$1" -v d="$2" -v u="$3" '$c != "" { s += $c; n++; if (n == 1 || $c < lo) lo = $c; if (n == 1 || $c > hi) hi = $c }
        END { if (!n) { printf "-"; exit }
              f = "%." d "f"; if (c == 9) printf f, lo; else printf f " [" f "-" f "]" u, s / n, lo, hi }'
}

# SFT's row from eval run $1 (policy b), with $2 more "- |" cells after the first
sft_row() {
    printf "| SFT | -%s | %s | 0 | %s | - | - |\n" "$2" "$(fmt "$(accuracy "$1" b)" 3)" \
        "$(fmt "$(metric "$1" b/pretrain_loss)" 3)"
}

if [ $seeds -eq 1 ]; then
    echo "| method | seeds | judge: preferred to SFT, mean [range] | lowest 95% CI lower end | task accuracy | KL to SFT | held-out pretraining loss | wall time | peak memory |"
    echo "|---|---|---|---|---|---|---|---|---|"
    first=1
    for m in "$@"; do
        rows=$(seed_rows "$m")
        if [ $first -eq 1 ] && [ -n "$rows" ]; then
            sft_row "$(echo "$rows" | head -1 | cut -d'|' -f2)" " | - | -"
            first=0
        fi
        if [ -z "$rows" ]; then echo "| $m | - | - | - | - | - | - | - | - |"; continue; fi
        list=$(echo "$rows" | cut -d'|' -f1 | paste -sd, -)
        echo "| $m | $list | $(echo "$rows" | stat 4 3) | $(echo "$rows" | stat 9 3) | $(echo "$rows" | stat 5 3) | $(echo "$rows" | stat 6 2) | $(echo "$rows" | stat 7 3) | $(echo "$rows" | stat 3 0 " s") | $(echo "$rows" | stat 8 1 " MiB") |"
    done
    exit 0
fi

echo "| method | judge: preferred to SFT (95% CI) | task accuracy | KL to SFT | held-out pretraining loss | wall time | peak memory |"
echo "|---|---|---|---|---|---|---|"
first=1
for m in "$@"; do
    e=$(eval_run "$m")
    if [ $first -eq 1 ] && [ -n "$e" ]; then sft_row "$e" ""; first=0; fi
    # the stage's run (its checkpoint is the stage's out folder) and its program's run (whose
    # checkpoint lies in that folder)
    st=$(q "select finished - started, checkpoint from runs where stage = 'pipeline/$m' and status = 'done' order by id desc limit 1")
    wall=${st%%|*}; out=${st#*|}
    peak=""
    [ -n "$st" ] && peak=$(q "select m.value from metrics m join runs r on r.id = m.run_id where r.stage not like 'pipeline/%' and r.checkpoint like '$out/%' and m.name = 'run/peak_rss_bytes' order by r.id desc limit 1")
    mib=""; [ -n "$peak" ] && mib=$(awk -v b="$peak" 'BEGIN { print b / 1048576 }')
    win="-"
    [ -n "$(metric "$e" win_rate)" ] && win="$(fmt "$(metric "$e" win_rate)" 3) ($(fmt "$(metric "$e" win_rate_lo)" 3)-$(fmt "$(metric "$e" win_rate_hi)" 3))"
    echo "| $m | $win | $(fmt "$(accuracy "$e" a)" 3) | $(fmt "$(metric "$e" a/kl)" 2) | $(fmt "$(metric "$e" a/pretrain_loss)" 3) | $(fmt "$wall" 0) s | $(fmt "$mib" 0) MiB |"
done
