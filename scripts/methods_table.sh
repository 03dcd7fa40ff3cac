#!/bin/sh
# The comparison table of pipelines/demo-methods.yaml, read from its workspace database:
#   sh scripts/methods_table.sh demo-ws/workspace.db [METHOD ...]   (default: ppo grpo rloo dpo ipo)
# For each method: the last finished `rlhf eval-policy` run named eval-METHOD (judge win rate
# against SFT with its bootstrap 95% interval, task accuracy, KL to SFT, held-out pretraining
# loss, all of the method's policy; SFT's in the first row) and the last finished pipeline stage
# METHOD (wall time of that stage run; peak resident memory of its program's run,
# run/peak_rss_bytes).
# A figure not recorded prints as "-". Needs the sqlite3 shell.
[ $# -ge 1 ] || { echo "usage: sh scripts/methods_table.sh WORKSPACE.db [METHOD ...]" >&2; exit 1; }
db=$1; shift
[ -f "$db" ] || { echo "methods_table: $db: no such file" >&2; exit 1; }
[ $# -ge 1 ] || set -- ppo grpo rloo dpo ipo
q() { sqlite3 -batch -noheader "$db" "$1" 2>/dev/null; }
fmt() { [ -n "$1" ] && printf "%.${2}f" "$1" || printf -- "-"; }
eval_run() { q "select id from runs where stage = 'eval' and name = 'eval-$1' and status = 'done' order by id desc limit 1"; }
metric() { [ -n "$1" ] && q "select value from metrics where run_id = $1 and name = '$2' and step = 0"; }
echo "| method | judge: preferred to SFT (95% CI) | task accuracy | KL to SFT | held-out pretraining loss | wall time | peak memory |"
echo "|---|---|---|---|---|---|---|"
first=1
for m in "$@"; do
    e=$(eval_run "$m")
    if [ $first -eq 1 ] && [ -n "$e" ]; then
        echo "| SFT | - | $(fmt "$(metric "$e" b/accuracy)" 3) | 0 | $(fmt "$(metric "$e" b/pretrain_loss)" 3) | - | - |"
        first=0
    fi
    # the stage's run (its checkpoint is the stage's out folder) and its program's run (whose
    # checkpoint lies in that folder)
    st=$(q "select finished - started, checkpoint from runs where stage = 'pipeline/$m' and status = 'done' order by id desc limit 1")
    wall=${st%%|*}; out=${st#*|}
    peak=""
    [ -n "$st" ] && peak=$(q "select m.value from metrics m join runs r on r.id = m.run_id where r.stage not like 'pipeline/%' and r.checkpoint like '$out/%' and m.name = 'run/peak_rss_bytes' order by r.id desc limit 1")
    mib=""; [ -n "$peak" ] && mib=$(awk -v b="$peak" 'BEGIN { print b / 1048576 }')
    win="-"
    [ -n "$(metric "$e" win_rate)" ] && win="$(fmt "$(metric "$e" win_rate)" 3) ($(fmt "$(metric "$e" win_rate_lo)" 3)-$(fmt "$(metric "$e" win_rate_hi)" 3))"
    echo "| $m | $win | $(fmt "$(metric "$e" a/accuracy)" 3) | $(fmt "$(metric "$e" a/kl)" 2) | $(fmt "$(metric "$e" a/pretrain_loss)" 3) | $(fmt "$wall" 0) s | $(fmt "$mib" 0) MiB |"
done
