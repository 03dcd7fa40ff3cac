#!/bin/sh
# The pipeline runner: validation errors point at the right line and column; a tiny pipeline
# runs end to end, saying "stage k of N" and each stage's time (expected from its earlier runs);
# a second run skips every stage; an edited input reruns what depends on it;
# killed in the middle of a stage, the same command resumes and finishes with the same weights.
. "$PWD/tests/lib.sh"
. "$TESTS/procs.sh"   # procs_kill_in: no procps needed
lib_workspace
ERR_LINES=4
cd "$W" || exit 1
sums 200 "$SUM_DEMO" > train.jsonl
sums 200 "$SUM_TEXT" > corpus.txt
{ printf 'workspace: ws\nseed: 7\nvars:\n  corpus: corpus.txt\n'; tiny_stages '"${vars.corpus}"' \
    40 20; } > tiny.yaml

# validation: each broken file's message names file:line:column
check_err() {   # name, expected "line:col", pattern, yaml text
    printf '%s\n' "$4" > broken.yaml
    "$R" run broken.yaml > out 2> err; rc=$?
    if [ $rc -ne 0 ] && grep -q "broken.yaml:$2: .*$3" err &&
        [ ! -d wsb ]; then ok "validation: $1"; else bad "validation: $1 (exit $rc)"; fi
}
check_err "unknown top-level key" "2:1" "unknown key 'stagez'" 'workspace: wsb
stagez: []'
check_err "unknown stage key" "4:5" "unknown stage key 'rn'" 'workspace: wsb
stages:
  - name: a
    rn: sft'
check_err "stage without a name" "3:5" "needs a name" 'workspace: wsb
stages:
  - run: sft'
check_err "bad seed" "2:7" "seed must be" 'workspace: wsb
seed: many
stages: [{name: a, run: sft}]'
check_err "unknown program" "4:10" "unknown program" 'workspace: wsb
stages:
  - name: a
    run: train-everything'
check_err "needs an unknown stage" "5:13" "needs .zz." 'workspace: wsb
stages:
  - name: a
    run: rlhf info
    needs: [zz]'
check_err "a cycle" "[0-9]*:[0-9]*" "cycle: .*a -> b -> a\|cycle: .*b -> a -> b" 'workspace: wsb
stages:
  - {name: a, run: rlhf info, needs: [b]}
  - {name: b, run: rlhf info, needs: [a]}'
check_err "reference to a stage not needed" "4:38" "does not need 'a'" 'workspace: wsb
stages:
  - {name: a, run: rlhf info}
  - {name: b, run: rlhf info, args: ["${a.out}"]}'
check_err "unknown variable" "3:38" "unknown variable" 'workspace: wsb
stages:
  - {name: a, run: rlhf info, args: ["${vars.nope}"]}'
check_err "a setting the program does not know" "6:7" "trian" 'workspace: wsb
stages:
  - name: s
    run: sft
    settings:
      trian.lr: 0.1'
check_err "a setting of the wrong type" "6:15" "train.lr" 'workspace: wsb
stages:
  - name: s
    run: sft
    settings:
      train: {lr: fast}'
check_err "YAML syntax" "[34]:[0-9]*" "YAML" 'workspace: wsb
stages:
  - {name: a, run: [unclosed'
check_err "settings on an args-only program" "3:[0-9]*" "takes args, not settings" 'workspace: wsb
stages:
  - {name: a, run: rlhf info, settings: {x: 1}}'

# a dry run validates and plans without running anything
"$R" run tiny.yaml --dry-run > out 2> err && grep -q "^sft *run" out && [ ! -d ws/sft ] &&
    ok "--dry-run prints the plan and runs nothing" || bad "--dry-run"

# end to end, then a second run skips everything
"$R" run tiny.yaml > out 2> err && [ -f ws/sft/last/model.safetensors ] && grep -q "sft *ran" err &&
    ok "tiny pipeline runs end to end" || bad "pipeline run"
grep -q "^rlhf run: stage 1 of 3: tokenizer$" err && grep -q "^rlhf run: stage 3 of 3: sft$" err &&
    grep -q "^rlhf run: stage 3 of 3: sft finished in [0-9][0-9. minhs]*$" err &&
        ok "progress: stage k of N, and each stage's time" || bad "progress lines"
"$R" run tiny.yaml > out 2> err && [ "$(grep -c '^  [a-z]* *skipped' err)" -eq 3 ] &&
    ok "second run skips every stage" || bad "second run"
grep -q "^rlhf run: stage 2 of 3: base: unchanged since its last run, skipped$" err &&
    ok "progress: a skipped stage says so" || bad "progress of a skipped stage"
python3 - ws/workspace.db > out 2>&1 <<'PY' && ok "runs recorded: pipeline runs and one done run per stage with its fingerprint" || bad "pipeline runs in the db: $(cat out)"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
assert db.execute("pragma integrity_check").fetchone()[0] == "ok"
for st in ("tokenizer", "base", "sft"):
    rows = db.execute("select status, config_hash from runs where stage=?", ("pipeline/" + st,)).fetchall()
    assert len(rows) == 1 and rows[0][0] == "done" and len(rows[0][1]) == 16, (st, rows)
assert db.execute("select count(*) from runs where stage='pipeline' and status='done'").fetchone()[0] == 2
PY
# an edited input file reruns the stages that depend on it, and only those
printf '{"prompt": "What is 1 plus 1?", "response": "2"}\n' >> train.jsonl
"$R" run tiny.yaml > out 2> err && grep -q "tokenizer *skipped" err && grep -q "sft *ran" err &&
    ok "an edited data file reruns its stage only" || bad "edited input"
# --only and --from
"$R" run tiny.yaml --only base --force > out 2> err && grep -q "base *ran" err &&
    grep -q "tokenizer *skipped" err && ok "--only --force reruns one stage" || bad "--only"
grep -q "^rlhf run: stage 1 of 1: base (expected [0-9][0-9. minhs]*: the median of 1 earlier run)$" err &&
    ok "progress: a stage that ran before shows its expected time" || bad "expected time"
"$R" run tiny.yaml --from nope > out 2> err; [ $? -eq 2 ] && grep -q "no such stage" err &&
    ok "--from an unknown stage is a usage error" || bad "--from unknown"

# kill in the middle of the sft stage; the same command resumes and finishes
sed 's/workspace: ws/workspace: wk/; s/steps: 40/steps: 100/; s/eval.every: 20/eval.every: 50/' \
    tiny.yaml > long.yaml
printf '      save.every: 9\n' >> long.yaml
sed 's/workspace: wk/workspace: wfull/' long.yaml > full.yaml
"$R" run full.yaml > /dev/null 2>&1
killed=0
rm -rf wk
"$R" run long.yaml > /dev/null 2>&1 &
pid=$!
# as soon as the first checkpoint is saved (however busy the machine), kill -9 the runner and its
# stage (in a process group of its own)
n=0; while [ ! -f wk/sft/last/model.safetensors ] && kill -0 $pid 2>/dev/null &&
    [ $n -lt 1200 ]; do sleep 0.1; n=$((n + 1)); done
if [ -f wk/sft/last/model.safetensors ] &&
    kill -9 $pid 2>/dev/null; then procs_kill_in "$W"; killed=1; fi
wait $pid 2>/dev/null
# the stage holds the workspace's lock until it has gone (the pattern does not match this grep)
n=0; while grep -lq "out.dir=wk/sf[t]" /proc/[0-9]*/cmdline 2>/dev/null &&
    [ $n -lt 300 ]; do sleep 0.1; n=$((n + 1)); done
"$R" run long.yaml > out 2> err
if [ $killed -eq 1 ] && grep -q "sft (resuming)" err && grep -q "sft *ran" err &&
   cmp -s wk/sft/last/model.safetensors wfull/sft/last/model.safetensors; then
    ok "killed mid-stage: the rerun resumes the stage and ends with the same weights"
else bad "kill and resume (killed=$killed)"; fi
# the shipped pipelines validate (their programs check every setting) without running anything
cd "$ROOT" || exit 1
for f in pipelines/demo.yaml pipelines/instructgpt-gpt2.yaml; do
    "$R" run "$f" --dry-run --set workspace="$W/dry" > "$W/out" 2> "$W/err" &&
        [ "$(grep -c ' run ' "$W/out")" -ge 4 ] && [ ! -d "$W/dry/logs" ] &&
        ok "$f validates with --dry-run" || bad "$f --dry-run"
done
lib_summary
