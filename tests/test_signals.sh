#!/bin/sh
# Signals: SIGTERM, SIGINT and SIGHUP stop every program the same way, within a few seconds,
# wherever it is: while loading data from a FIFO that never ends (nothing to save: exit at once),
# inside one long optimizer step (sft looks between micro-batches), between steps (save last/,
# the run row 'interrupted', exit 128 + the signal), with the saved checkpoint loadable and the
# same command resuming to the end.
. "$PWD/tests/lib.sh"
lib_workspace
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
cd "$W" || exit 1
tiny_data 24
"$B/rlhf" tokenizer train --vocab-size 280 --out tok corpus.txt 2> err &&
"$B/rlhf" init --preset tiny --n-layer 1 --n-positions 32 --n-embd 32 --tokenizer tok --seed 5 \
    --out lm 2> err ||
    { bad "setup"; echo "$pass passed, $fail failed"; exit 1; }
printf 'model: {init: lm}\ndata: {format: jsonl, train: [demos.jsonl]}\ntrain: {batch_size: 4}\neval: {every: 100000}\nlog: {every: 1}\n' > sft.yaml

# wait_for PATTERN FILE SECONDS: until FILE has a line matching PATTERN
wait_for() {
    i=0
    while ! grep -q -- "$1" "$2" 2>/dev/null; do
        i=$((i + 1)); [ $i -gt $(($3 * 10)) ] && return 1; sleep 0.1
    done
}
# stop_it PID SIG: sends SIG, waits; sets rc (exit status) and secs (whole seconds it took)
stop_it() {
    t0=$(date +%s); kill -"$2" "$1"; wait "$1"; rc=$?; secs=$(($(date +%s) - t0))
}
row() { sqlite3 -batch "$1" \
    "SELECT status || ' ' || coalesce(exit_code, '') FROM runs ORDER BY id DESC LIMIT 1"; }

# 1. between steps, each signal: exit 128+signo, run interrupted with that code, last/ loads,
#    the same command resumes and finishes
for sig in TERM INT HUP; do
    case $sig in TERM) code=143;; INT) code=130;; HUP) code=129;; esac
    : > err   # emptied first: wait_for must not see the previous run's lines
    "$B/sft" -c sft.yaml --set out.dir=o-$sig --set train.steps=100000 \
        --set save.every=1000000 2> err &
    pid=$!
    if ! wait_for "step 3/" err 60; then kill -9 $pid; bad "SIG$sig: sft never reached step 3"; \
        continue; fi
    stop_it $pid $sig
    r=$(row o-$sig/workspace.db)
    if [ $rc -eq $code ] && [ "$r" = "interrupted $code" ] && [ $secs -le 5 ] &&
        grep -q "interrupted by SIG$sig" err &&
       "$B/rlhf" info o-$sig/last > /dev/null 2>&1; then
        ok "SIG$sig between steps: exit $code in ${secs}s, run '$r', last/ loads"
    else bad "SIG$sig between steps: exit $rc (want $code) in ${secs}s, run '$r'"; fi
done
# resume: the same command picks up last/ (run 1) and stops cleanly again
: > err   # emptied first: wait_for must not see the previous run's lines
"$B/sft" -c sft.yaml --set out.dir=o-HUP --set train.steps=100000 --set save.every=1000000 2> err &
pid=$!
if wait_for "resuming run 1 at step" err 60 && wait_for "step [0-9]*/100000" err 60; then
    stop_it $pid TERM
    n=$(sqlite3 -batch o-HUP/workspace.db "SELECT count(*) FROM runs")
    [ $rc -eq 143 ] && [ "$n" = 1 ] && [ "$(row o-HUP/workspace.db)" = "interrupted 143" ] &&
        ok "resume: the same command continues run 1 from last/ and stops again cleanly" ||
        bad "resume: exit $rc, $n runs, run '$(row o-HUP/workspace.db)'"
else kill -9 $pid; bad "resume: no 'resuming run 1' line"; fi
# a resumed run that finishes is 'done'
: > err   # emptied first: wait_for must not see the previous run's lines
"$B/sft" -c sft.yaml --set out.dir=o-fin --set train.steps=1000 --set save.every=1000000 2> err &
pid=$!
wait_for "step 2/" err 60; kill -TERM $pid; wait $pid; rc1=$?
"$B/sft" -c sft.yaml --set out.dir=o-fin --set train.steps=1000 --set save.every=1000000 2> err; \
    rc2=$?
[ $rc1 -eq 143 ] && [ $rc2 -eq 0 ] && grep -q "resuming run" err &&
    [ "$(row o-fin/workspace.db)" = "done 0" ] &&
    ok "interrupted early in 1000 steps, the same command resumes and ends 'done'" ||
    bad "interrupt then resume to the end: exits $rc1, $rc2, run '$(row o-fin/workspace.db)'"

# 2. inside one long step: 4096 micro-batches of 64 sequences; SIGTERM is seen between two of
#    them, the unfinished step is dropped (last/ holds step 0), exit within a few seconds
: > err   # emptied first: wait_for must not see the previous run's lines
"$B/sft" -c sft.yaml --set out.dir=o-long --set train.batch_size=64 --set train.grad_accum=4096 \
    --set train.steps=3 2> err &
pid=$!
if wait_for "sft: run " err 60; then
    sleep 1
    stop_it $pid TERM
    r=$(row o-long/workspace.db)
    [ $rc -eq 143 ] && [ $secs -le 5 ] && [ "$r" = "interrupted 143" ] &&
        grep -q "at step 0; saved" err &&
        "$B/rlhf" info o-long/last > /dev/null 2>&1 &&
        ok "SIGTERM inside a step of 4096 x 64 sequences: exit 143 in ${secs}s, run '$r', last/ loads" ||
        bad "SIGTERM inside a long step: exit $rc in ${secs}s, run '$r'"
else kill -9 $pid; bad "long step: sft did not start"; fi

# same_files DIR1 DIR2 FILE...: 1 when every FILE is the same bytes under both
same_files() {
    d1=$1; d2=$2; shift 2
    for f in "$@"; do cmp -s "$d1/$f" "$d2/$f" || { echo "    differs: $f"; return 1; }; done
}
PPO_FILES="policy/model.safetensors last/policy/model.safetensors last/policy/trainer_state.safetensors
           last/value/model.safetensors last/value/trainer_state.safetensors"

# 2b. ppo inside one iteration (one process): a stop is looked at between generation batches,
#     scoring and update minibatches; the unfinished iteration is dropped, last/ holds the state
#     of its start, and the same command resumes to weights equal to an uninterrupted run's.
"$B/rlhf" init --preset tiny --n-layer 1 --n-positions 32 --n-embd 32 --tokenizer tok --seed 6 \
    --score-head --no-lm-head --out rm 2> err ||
    bad "setup: reward model"
printf 'model: {policy: lm, reward: rm}\ndata: {prompts: [prompts.jsonl], prompt_template: "{prompt}"}\nptx: {coef: 0}\ntrain: {iterations: 2}\n' > ppo.yaml
# The work of one iteration (and of one reward step, 2c) is sized to last about 2 to 3 s on an idle
# machine: long enough for a signal to land where it is aimed, whatever the machine's speed (the
# pauses are measured), and no longer. A sanitizer build runs these loops 5 to 7 times slower
# (measured: ppo 6.3x and 4.5x, reward 6.5x), so it gets that much less work (SHRINK).
if lib_sanitized; then SHRINK_A=8; SHRINK_G=4; else SHRINK_A=1; SHRINK_G=1; fi
# (a) many update minibatches (8192 episodes, 4 epochs of 2048 minibatches: most of the time),
#     last/ saved every iteration: SIGTERM halfway through iteration 2 lands among its updates
#     (iteration 1 took about as long, timed from the run's first line to its own: the pause is
#     half of that, measured on this machine as it is loaded now)
A="--set rollout.batch_size=$((8192 / SHRINK_A)) --set rollout.max_new_tokens=4"
A="$A --set ppo.minibatch_size=4 --set ppo.epochs=4 --set save.every=1"
# (b) long generation (4096 responses of up to 20 tokens), last/ saved every 5 iterations:
#     SIGTERM as iteration 2 starts lands in its generation; last/ gets iteration 1's state
G="--set rollout.batch_size=$((4096 / SHRINK_G)) --set rollout.max_new_tokens=20"
G="$G --set ppo.minibatch_size=$((1024 / SHRINK_G)) --set ppo.epochs=1 --set save.every=5"
for v in a b; do
    if [ $v = a ]; then set -- $A; half=1; \
        want="during iteration 2, after some of its updates; .* holds iteration 1"
    else set -- $G; half=0; want="at iteration 1; saved"; fi
    "$B/ppo" -c ppo.yaml --set out.dir=p-ref-$v "$@" > /dev/null 2> err ||
        bad "ppo ($v): uninterrupted run"
    : > err   # (emptied before the start: the uninterrupted run's lines must not be waited for)
    "$B/ppo" -c ppo.yaml --set out.dir=p-$v "$@" > /dev/null 2> err &
    pid=$!
    if ! { wait_for "ppo: run 1," err 120 && t0=$(date +%s.%N) && wait_for "iter 1/2" err 120; }
    then kill -9 $pid; \
        bad "ppo ($v): never finished iteration 1"; continue; fi
    [ $half = 1 ] &&
        sleep "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", (b - a) / 2 }')"
    stop_it $pid TERM
    r=$(row p-$v/workspace.db)
    if [ $rc -eq 143 ] && [ $secs -le 5 ] && [ "$r" = "interrupted 143" ] &&
        grep -q "interrupted by SIGTERM $want" err &&
       "$B/rlhf" info p-$v/last/policy > /dev/null 2>&1; then
        ok "ppo ($v): SIGTERM inside iteration 2: exit 143 in ${secs}s, run '$r', last/ (iteration 1) loads"
    else bad "ppo ($v): SIGTERM inside iteration 2: exit $rc in ${secs}s, run '$r'"; fi
    "$B/ppo" -c ppo.yaml --set out.dir=p-$v "$@" > /dev/null 2> err; rc=$?
    [ $rc -eq 0 ] && grep -q "resuming run 1 at iteration 1" err &&
        [ "$(row p-$v/workspace.db)" = "done 0" ] &&
        same_files p-ref-$v p-$v $PPO_FILES &&
        ok "ppo ($v): the same command resumes at iteration 1 and ends bit-identical to the uninterrupted run" ||
        bad "ppo ($v): resume: exit $rc, run '$(row p-$v/workspace.db)'"
done

# 2c. reward train inside one step of 16384 rankings (2048 under the sanitizers; micro-batches of
#     64 rows): SIGTERM is seen between micro-batches, the step is dropped (last/ holds step 0),
#     and the same command resumes to weights equal to an uninterrupted run's
"$B/reward" import --workspace rk.db rank.jsonl 2> err || bad "reward import"
RK=$((16384 / SHRINK_A))
printf 'model: {init: lm}\nworkspace: rk.db\ntrain: {batch_size: %d, steps: 2}\n' $RK > rw.yaml
printf 'save: {every: 1}\neval: {every: 100000}\n' >> rw.yaml
"$B/reward" train -c rw.yaml --set out.dir=r-ref > /dev/null 2> err ||
    bad "reward: uninterrupted run"
: > err
"$B/reward" train -c rw.yaml --set out.dir=r-int > /dev/null 2> err &
pid=$!
if wait_for "reward: run " err 60; then
    sleep 1
    stop_it $pid TERM
    r=$(row rk.db)
    if [ $rc -eq 143 ] && [ $secs -le 5 ] && [ "$r" = "interrupted 143" ] &&
        grep -q "interrupted by SIGTERM at step 0; saved" err &&
       "$B/rlhf" info r-int/last > /dev/null 2>&1; then
        ok "reward train: SIGTERM inside a step of $RK rankings: exit 143 in ${secs}s, run '$r', last/ (step 0) loads"
    else bad "reward train: SIGTERM inside a step: exit $rc in ${secs}s, run '$r'"; fi
    "$B/reward" train -c rw.yaml --set out.dir=r-int > /dev/null 2> err; rc=$?
    [ $rc -eq 0 ] && grep -q "resuming" err && [ "$(row rk.db)" = "done 0" ] &&
        same_files r-ref r-int final/model.safetensors last/model.safetensors \
            last/trainer_state.safetensors &&
        ok "reward train: the same command resumes and ends bit-identical to the uninterrupted run" ||
        bad "reward train: resume: exit $rc, run '$(row rk.db)'"
else kill -9 $pid; bad "reward train did not start"; fi

# 3. loading from a FIFO that never ends (jsonl and text): nothing to save, exit at once
mkfifo fifo
# stop_reading SIG CMD...: CMD started while a writer holds the FIFO `fifo` open without writing,
# SIG after 1 s; rc and secs as stop_it
stop_reading() {
    sig=$1; shift
    sleep 30 > fifo &
    holder=$!
    "$@" > /dev/null 2> err &
    pid=$!
    sleep 1
    stop_it $pid "$sig"
    kill $holder 2>/dev/null; wait $holder 2>/dev/null
}
for fmt in jsonl text; do
    stop_reading TERM "$B/sft" -c sft.yaml --set out.dir=o-fifo-$fmt --set data.format=$fmt \
        --set 'data.train=[fifo]'
    [ $rc -eq 143 ] && [ $secs -le 3 ] && [ "$(tail -n 1 err)" = "sft: stopped by SIGTERM" ] &&
        ok "SIGTERM while loading a FIFO that never ends ($fmt): exit 143 in ${secs}s" ||
        bad "FIFO ($fmt): exit $rc in ${secs}s, last line '$(tail -n 1 err)'"
done

# 4. the other programs: SIGHUP to rlhf generate (prompts from a FIFO) and to reward label with a
#    judge that never answers: exit 129, one line; the label session gives its prompt back
stop_reading HUP "$B/rlhf" generate lm --prompts fifo
[ $rc -eq 129 ] && [ $secs -le 3 ] && [ "$(tail -n 1 err)" = "rlhf: stopped by SIGHUP" ] &&
    ok "SIGHUP to rlhf generate reading prompts from a FIFO: exit 129" ||
        bad "SIGHUP to rlhf generate: exit $rc in ${secs}s"
"$B/reward" import --workspace lab.db prompts.jsonl 2> err
"$B/reward" label --workspace lab.db --labeler j --policy lm --k 2 --max-new 4 \
    --judge "sleep 60" 2> err &
pid=$!
sleep 1
stop_it $pid HUP
held=$(sqlite3 -batch lab.db "SELECT count(*) FROM claims WHERE skipped = 0" 2>/dev/null)
# (the judge sleeps 60 s; 10 s leaves room for a sanitizer build's exit on a loaded machine)
[ $rc -eq 129 ] && [ $secs -le 10 ] && [ "$held" = 0 ] && grep -q "interrupted by SIGHUP" err &&
    ok "SIGHUP to reward label waiting for its judge: exit 129, no claim left" ||
    bad "SIGHUP to reward label: exit $rc in ${secs}s, $held claims held"

lib_summary
