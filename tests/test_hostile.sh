#!/bin/sh
# Hostile pipeline files and hostile use of the runner (README "Bad input"): a stage's `out` that
# escapes the workspace, is the workspace, its logs, its database or another stage's output; a
# stage named like the runner's own entries; aliases that repeat themselves or explode; nesting
# 20,000 deep; 512 settings and args; an input file whose name starts like the workspace's; a
# second runner on a busy workspace; SIGTERM, SIGINT and SIGHUP to the runner. Then a canary:
# every hostile file, run and dry-run, leaves a tree outside the workspace untouched and every
# database row in place. Stages are `rlhf tokenizer train` on a tiny corpus and `rlhf judge`
# reading a FIFO that never ends (a stage that runs until it is stopped), so this stays fast.
. "$PWD/tests/lib.sh"
lib_workspace
ERR_LINES=4
cd "$W" || exit 1
tiny_data 40
mkfifo never
exec 3<>never   # held open read-write: a stage reading it waits for ever, never at its end
# on exit, before the folder goes: the stages and runners still running
AT_EXIT='for p in $bg_pids; do kill -9 "$p" 2>/dev/null; done; kill_marked 2>/dev/null'
bg_pids=""
# the processes whose command line holds $1 (no procps needed)
# (a pattern such as 98712[3], which the grep reading its own command line does not match)
pids_with() {
    grep -l -- "$1" /proc/[0-9]*/cmdline 2>/dev/null | sed 's|^/proc/||; s|/cmdline$||'
}
kill_marked() { for p in $(pids_with "98712[3]"); do kill -9 "$p" 2>/dev/null; done; }
# waits up to $2 tenths of a second for process $1 to end; its exit status in $code
wait_gone() {
    n=0
    while kill -0 "$1" 2>/dev/null && [ $n -lt "$2" ]; do sleep 0.1; n=$((n + 1)); done
    if kill -0 "$1" 2>/dev/null; then code=timeout; return 1; fi
    wait "$1"; code=$?
    return 0
}
# waits up to 20 s for file $1 to exist
wait_file() { n=0; while [ ! -e "$1" ] &&
    [ $n -lt 200 ]; do sleep 0.1; n=$((n + 1)); done; [ -e "$1" ]; }
dump() { sqlite3 "$1" .dump | sort; }

# a good pipeline: a workspace with a database, logs and a finished stage
cat > good.yaml <<'YAML'
workspace: ws
stages:
  - name: tok
    run: rlhf tokenizer train
    args: [--vocab-size, "260", --out, "${tok.out}", corpus.txt]
YAML
"$R" run good.yaml > out 2> err && [ -f ws/tok/vocab.json ] && [ -f ws/tok/.rlhf-run-output ] &&
    [ -f ws/logs/tok.log ] &&
    ok "a good pipeline runs and marks the output directory it made" || bad "good pipeline"

mkdir -p canary/sub
echo "keep me" > canary/precious.txt
echo "me too" > canary/sub/precious2.txt
canary_sum() { (cd canary && find . | sort && find . -type f | sort | xargs cat) | cksum; }
canary0=$(canary_sum)

# hostile: name, expected line:col, message pattern, yaml text; exit 1, the message, nothing lost
hostile() {
    printf '%s\n' "$4" > h.yaml
    before=$(dump ws/workspace.db)
    timeout 60 "$R" run h.yaml > out 2> err; rc=$?
    after=$(dump ws/workspace.db)
    lost=$(printf '%s\n' "$before" | while IFS= read -r l; do printf '%s\n' "$after" | grep -qxF -- "$l" || echo "$l"; done)
    if [ $rc -eq 1 ] && grep -q "h.yaml:$2: .*$3" err && [ "$(wc -l < err)" -eq 1 ] &&
        [ -z "$lost" ] &&
       [ "$(canary_sum)" = "$canary0" ] && [ -f ws/tok/vocab.json ] &&
           [ -f ws/logs/tok.log ]; then ok "$1"
    else bad "$1 (exit $rc)"; fi
}
head='workspace: ws
stages:
  - name: tok
    run: rlhf tokenizer train
    args: [--vocab-size, "260", --out, "${tok.out}", corpus.txt]'
tokx() {   # a second tokenizer stage with the given out
    printf '%s\n  - name: x\n    run: rlhf tokenizer train\n    needs: [tok]\n    out: "%s"\n    args: [--vocab-size, "260", --out, "${x.out}", corpus.txt]' "$head" "$1"
}
hostile "F1: out escaping the workspace with .." "9:10" "outside the workspace" \
    "$(tokx '${workspace}/../canary')"
hostile "F2: out that is the workspace itself" "9:10" "is the workspace itself" \
    "$(tokx '${workspace}/')"
hostile "F3: a stage named logs" "3:11" "reserved" 'workspace: ws
stages:
  - name: logs
    run: rlhf tokenizer train
    args: [--vocab-size, "260", --out, "${logs.out}", corpus.txt]'
hostile "F4: out that is another stage's output" "9:10" "overlaps stage 'tok'" \
    "$(tokx '${tok.out}')"

# F5: an input whose name starts like the workspace's is outside it, and counts in the fingerprint
cp corpus.txt ws_corpus.txt
sed 's/corpus.txt/ws_corpus.txt/; s/name: tok/name: tok5/; s/tok.out/tok5.out/' good.yaml > f5.yaml
"$R" run f5.yaml > out 2> err
echo "What is 1 plus 1? 2" >> ws_corpus.txt
"$R" run f5.yaml > out 2> err && grep -q "tok5 *ran" err &&
    ok "F5: an edited input named like the workspace reruns its stage" || bad "F5"

# F6: 512 settings and 512 args (and a long run line) are an error, not a crash
python3 - > f6.yaml <<'PY'
print("workspace: ws\nstages:\n  - name: s\n    run: sft a b c d e f g h i j k l m n o\n    settings:")
for i in range(512): print("      k%d: %d" % (i, i))
print("    args: [" + ", ".join('"a%d"' % i for i in range(512)) + "]")
PY
timeout 60 "$R" run f6.yaml --dry-run > out 2> err; rc=$?
[ $rc -eq 1 ] && grep -q "f6.yaml:[0-9]*:[0-9]*: stage 's'" err &&
    ok "F6: 512 settings and args: a validation error, no overflow" || bad "F6 (exit $rc)"

# F7-F9: aliases and nesting, each a clear error within seconds
hostile "F7: a self-referencing alias" "6:10" "inside the node it names" 'workspace: ws
stages:
  - name: a
    run: sft
    settings: &x
      a: *x'
laughs=$(python3 -c '
print("workspace: ws\nstages:\n  - name: a\n    run: sft\n    settings:\n      l0: &l0 {}")
for n in range(1, 30): print("      l%d: &l%d {%s}" % (n, n, ", ".join("k%d: *l%d" % (k, n - 1) for k in range(10))))')
start=$(date +%s)
hostile "F8: a billion laughs" "[0-9]*:[0-9]*" "more than 100000 YAML nodes" "$laughs"
[ $(($(date +%s) - start)) -lt 10 ] && ok "F8: refused within seconds" ||
    bad "F8 took $(($(date +%s) - start)) s"
deep=$(python3 -c 'd = 20000; print("workspace: ws\nstages:\n  - name: a\n    run: sft\n    settings: " + "{a: " * d + "1" + "}" * d)')
hostile "F9: settings nested 20,000 deep" "5:[0-9]*" "nesting deeper than 64 levels" "$deep"
python3 -c 'd = 200000; print("workspace: ws\nvars: " + "{a: " * d + "1" + "}" * d + "\nstages:\n  - {name: a, run: rlhf info}")' > f9v.yaml
start=$(date +%s)
timeout 60 "$R" run f9v.yaml --dry-run > out 2> err; rc=$?
[ $rc -eq 1 ] && grep -q "f9v.yaml:2:[0-9]*: nesting deeper than 64" err &&
    [ $(($(date +%s) - start)) -lt 10 ] &&
    ok "F9: vars nested 200,000 deep refused within seconds" || bad "F9 vars (exit $rc)"

# the same three in the configuration files of sft, reward train and ppo: one line, exit 1
printf 'train: &x\n  lr: *x\n' > cfg-cycle.yaml
python3 -c '
print("l0: &l0 {}")
for n in range(1, 30): print("l%d: &l%d {%s}" % (n, n, ", ".join("k%d: *l%d" % (k, n - 1) for k in range(10))))' > cfg-laughs.yaml
python3 -c 'd = 20000; print("train: " + "{a: " * d + "1" + "}" * d)' > cfg-deep.yaml
cfg_bad=0
for f in cfg-cycle cfg-laughs cfg-deep; do
    for prog in sft "reward train" ppo; do
        timeout 60 "${R%/rlhf}/"$prog -c $f.yaml > out 2> err; rc=$?
        [ $rc -eq 1 ] && [ "$(wc -l < err)" -eq 1 ] && grep -q "$f.yaml:[0-9]*:[0-9]*: " err ||
            { cfg_bad=$((cfg_bad + 1)); echo "    $prog $f: exit $rc: $(tail -1 err)"; }
    done
done
[ $cfg_bad -eq 0 ] &&
    ok "configs: an alias cycle, a billion laughs, nesting 20,000 deep: one line each, exit 1" ||
    bad "configs ($cfg_bad)"

# an output directory the runner did not make is never removed
mkdir -p ws/mine && echo "my notes" > ws/mine/notes.txt
sed 's/name: tok/name: mine/; s/tok.out/mine.out/' good.yaml > mine.yaml
timeout 60 "$R" run mine.yaml > out 2> err; rc=$?
[ $rc -eq 1 ] && grep -q "not made by rlhf run" err && [ -f ws/mine/notes.txt ] &&
    ok "an output directory with files the runner did not make is kept (exit 1, a message)" ||
        bad "unowned output (exit $rc)"
# ...while one it made is replaced when its stage runs afresh
"$R" run good.yaml --force > out 2> err && grep -q "tok *ran" err &&
    [ -f ws/tok/.rlhf-run-output ] &&
    ok "--force replaces an output directory the runner made" || bad "--force on an owned output"

# a stage that runs until stopped: rlhf judge reading the FIFO
cat > judge.yaml <<'YAML'
workspace: wj
stages:
  - name: j
    run: rlhf judge
    args: [--seed, "987123"]
YAML
start_judge() {   # starts the runner in the background; waits for its stage to be running
    "$R" run judge.yaml <&3 > run.out 2> run.err &
    runner=$!; bg_pids="$bg_pids $runner"
    n=0; while [ -z "$(pids_with "98712[3]" | grep -v "^$runner$")" ] &&
        [ $n -lt 200 ]; do sleep 0.1; n=$((n + 1)); done
    sleep 0.3
}
status_of() { sqlite3 wj/workspace.db \
    "select status from runs where stage='$1' order by id desc limit 1"; }

# N1: a second runner on the same workspace stops at once, naming the first one's pid
start_judge
"$R" run judge.yaml <&3 > out 2> err &
second=$!; bg_pids="$bg_pids $second"
wait_gone $second 50
if [ "$code" = 1 ] && grep -q "in use by another rlhf run (pid $runner)" err &&
    [ "$(pids_with "98712[3]" | grep -cv "^$runner$")" -le 1 ]; then
    ok "N1: a second runner on a busy workspace stops at once, naming the holder's pid"
else bad "N1 (second runner: $code)"; fi
kill_marked; kill "$second" 2>/dev/null
wait_gone $runner 300   # the first runner ends once its stage has: the lock is free again
# ...and so does one whose runner was killed with SIGKILL while its stage still runs
start_judge
kill -9 $runner; wait $runner 2>/dev/null
"$R" run judge.yaml <&3 > out 2> err &
second=$!; bg_pids="$bg_pids $second"
wait_gone $second 50
if [ "$code" = 1 ] && grep -q "pid $runner) has ended but a stage it started still runs" err &&
    [ "$(pids_with "98712[3]" | wc -l)" -eq 1 ]; then
    ok "N1: a stage left running by a killed runner still holds the workspace"
else bad "N1 after SIGKILL (second runner: $code)"; fi
kill_marked; kill "$second" 2>/dev/null; wait_gone "$second" 300

# F10 (runner half), N2: each signal reaches the stage's process group; the runner waits for it,
# marks the stage and its own run interrupted and exits 128+signal
for sig in TERM:15 INT:2 HUP:1; do
    num=${sig#*:}; sig=${sig%:*}
    kill -9 $runner 2>/dev/null; wait $runner 2>/dev/null; kill_marked
    start_judge
    kill -$sig $runner
    wait_gone $runner 100
    want=$((128 + num))
    if [ "$code" = "$want" ] && [ -z "$(pids_with "98712[3]")" ] &&
        [ "$(status_of pipeline/j)" = interrupted ] &&
       [ "$(status_of pipeline)" = interrupted ] && grep -q "j *interrupted" run.err; then
        ok "SIG$sig to the runner: passed to the stage, both runs marked interrupted, exit $want"
    else bad "SIG$sig to the runner (exit $code, want $want; stage $(status_of pipeline/j), pipeline $(status_of pipeline); left: $(pids_with "98712[3]" | tr '\n' ' '))"; fi
done
kill_marked

# the canary: every hostile file, run and dry-run, leaves the canary and the database whole
ln -s ../canary ws/link
ln -s workspace.db ws/dblink
ws_abs=$(cd ws && pwd -P); canary_abs=$(cd canary && pwd -P)
i=0
for out in '${workspace}/../canary' '${workspace}/..' '${workspace}/' '${workspace}/.' '${workspace}/sub/..' \
           '${workspace}/logs' '${workspace}/logs/x' '${workspace}/workspace.db' '${workspace}/workspace.db-wal' \
           '${workspace}/.rlhf-run.lock' "$canary_abs" "$canary_abs/sub" '${workspace}/link' '${workspace}/link/sub' \
           '${workspace}/missing/../../canary' '${workspace}/dblink' '${tok.out}' '${tok.out}/sub' "$ws_abs" '' \
           '${workspace}/../ws/../canary/sub' '/' '.' '..'; do
    i=$((i + 1))
    tokx "$out" > "c$i.yaml"
done
for name in logs vars; do
    i=$((i + 1))
    printf '%s\n  - name: %s\n    run: rlhf tokenizer train\n    args: [--vocab-size, "260", --out, "${%s.out}", corpus.txt]\n' "$head" $name $name > "c$i.yaml"
done
before=$(dump ws/workspace.db)
broken=0
for f in c*.yaml f6.yaml f9v.yaml; do
    for mode in --dry-run ""; do
        timeout 60 "$R" run "$f" $mode > out 2> err; rc=$?
        [ $rc -eq 1 ] && [ "$(wc -l < err)" -eq 1 ] ||
            { broken=$((broken + 1)); echo "    $f $mode: exit $rc: $(tail -1 err)"; }
    done
done
after=$(dump ws/workspace.db)
lost=$(printf '%s\n' "$before" | while IFS= read -r l; do printf '%s\n' "$after" | grep -qxF -- "$l" || echo "$l"; done)
if [ $broken -eq 0 ] && [ -z "$lost" ] && [ "$(canary_sum)" = "$canary0" ] &&
    [ -f ws/tok/vocab.json ] && [ -f ws/logs/tok.log ] &&
   [ -f ws/mine/notes.txt ]; then
    ok "canary: $i hostile files, run and dry-run: each one line and exit 1, the canary and every database row kept"
else bad "canary ($broken not refused, lost rows: $(printf '%s' "$lost" | wc -l))"; fi
lib_summary
