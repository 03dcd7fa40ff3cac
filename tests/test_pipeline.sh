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
check_err "a command stage without args" "3:20" "run: command needs args" 'workspace: wsb
stages:
  - {name: a, run: command}'
# inputs and outputs: lists of paths, references checked like args'
check_err "inputs not a list" "3:51" "inputs must be a list" 'workspace: wsb
stages:
  - {name: a, run: command, args: [true], inputs: {a: 1}}'
check_err "an empty input path" "3:52" "an empty path in inputs" 'workspace: wsb
stages:
  - {name: a, run: command, args: [true], inputs: [""]}'
check_err "an output naming no stage" "3:53" "names no stage" 'workspace: wsb
stages:
  - {name: a, run: command, args: [true], outputs: ["${zz.out}/f"]}'
# require: the stage must be one it needs; operator and number checked
G='workspace: wsb
stages:
  - {name: a, run: rlhf info}
  - {name: b, run: rlhf info}
  - {name: c, run: rlhf info, needs: [a], require: '
check_err "a gate on an unknown stage" "5:53" "requires a metric of 'zz', which is not a stage" \
    "$G{zz: \"x >= 1\"}}"
check_err "a gate on a stage not needed" "5:53" "requires a metric of 'b' but does not need it" \
    "$G{b: \"x >= 1\"}}"
check_err "a gate with an unknown operator" "5:56" "unknown operator '=>'" "$G{a: \"x => 1\"}}"
check_err "a gate with a bad number" "5:67" "'high' is not a finite number" \
    "$G{a: [\"x >= 1\", \"y <= high\"]}}"
check_err "a malformed gate" "5:56" "malformed condition 'accuracy'" "$G{a: accuracy}}"

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

# stage gates: a stage after sft, gated on sft's held-out loss (sft itself is skipped: unchanged)
gated() {   # CONDITION: tiny.yaml with a stage `after` that requires it of sft
    cat tiny.yaml
    printf '  - {name: after, run: command, needs: [sft], args: [sh, -c, "echo ran >> after.txt"],\n'
    printf '     require: {sft: ["valid/loss > 0", "%s"]}}\n' "$1"
}
gated "valid/loss <= 1000" > gate.yaml
"$R" run gate.yaml --dry-run > out 2> err && grep -q "^ *gate *sft: valid/loss <= 1000$" out &&
    ok "gates: --dry-run lists them" || bad "gates in --dry-run"
"$R" run gate.yaml > out 2> err && [ "$(cat after.txt)" = ran ] && grep -q "sft *skipped" err &&
    grep -q "after *ran .*gate: sft's valid/loss [0-9.]* <= 1000 passed" err &&
    ok "gates: a gate that holds lets the stage run (the summary says so)" || bad "passing gate"
gated "valid/loss <= 0.001" > gate.yaml
"$R" run gate.yaml > out 2> err; rc=$?
[ $rc -eq 1 ] && [ "$(cat after.txt)" = ran ] &&
    [ "$(grep -c "stopped by its gate" err)" -eq 1 ] &&
    grep -q "^rlhf run: stage 'after' stopped by its gate (gate.yaml:[0-9]*:[0-9]*): $(
        )sft's valid/loss is [0-9.]*, the gate requires <= 0.001; see .*/logs/sft.log and the README" err &&
    grep -q "after *gate failed" err &&
    ok "gates: a gate that fails stops the pipeline, exit 1, the figure and the threshold" ||
    bad "failing gate (exit $rc)"
gated "valid/acuracy >= 0.5" > gate.yaml
"$R" run gate.yaml > out 2> err; rc=$?
[ $rc -eq 1 ] && grep -q "cannot read sft's valid/acuracy: $(
    )'sft' logged no metric 'valid/acuracy' (its sft run [0-9]* logged: .*valid/loss" err &&
    ok "gates: an unknown metric fails, naming what was logged" || bad "unknown metric (exit $rc)"

# a command stage, run from another folder: its args, inputs, outputs and the workspace resolve
# against the pipeline file's folder; run without a shell; skipped while its inputs are unchanged
mkdir -p cmd/data
printf 'echo "$2" >> counter.txt\ncat data/in.txt > "$1/copy.txt"\n' > cmd/count.sh
echo one > cmd/data/in.txt
cat > cmd/c.yaml <<'YAML'
workspace: cws
stages:
  - name: prep
    run: command
    args: [sh, count.sh, "${prep.out}", "x;y *"]
    inputs: [data]
    outputs: ["${prep.out}/copy.txt"]
YAML
"$R" run cmd/c.yaml > out 2> err && [ "$(cat cmd/counter.txt)" = "x;y *" ] &&
    [ "$(cat cmd/cws/prep/copy.txt)" = one ] && [ -f cmd/cws/prep/.rlhf-run-output ] &&
    [ ! -e cws ] && [ ! -e counter.txt ] &&
    ok "command stage: runs from the file's folder, its args passed as they are" ||
    bad "command stage"
runs() { wc -l < cmd/counter.txt | tr -d ' '; }
"$R" run cmd/c.yaml > out 2> err && [ "$(runs)" = 1 ] && grep -q "prep *skipped" err &&
    ok "command stage: skipped when its inputs are unchanged" || bad "command stage skip"
echo two > cmd/data/in.txt
"$R" run cmd/c.yaml > out 2> err && [ "$(runs)" = 2 ] && [ "$(cat cmd/cws/prep/copy.txt)" = two ] &&
    ok "command stage: reruns when an input file's contents change" || bad "command stage rerun"
echo new > cmd/data/added.txt
"$R" run cmd/c.yaml > out 2> err && [ "$(runs)" = 3 ] &&
    ok "command stage: reruns when a file is added to an input folder" || bad "input folder"
(cd cmd && "$R" run c.yaml > ../out 2> ../err) && [ "$(runs)" = 3 ] &&
    ok "command stage: the same file run from its own folder is the same pipeline" ||
    bad "run from the file's folder"
rm cmd/cws/prep/copy.txt
"$R" run cmd/c.yaml > out 2> err && [ "$(runs)" = 4 ] &&
    ok "command stage: reruns when a declared output is gone" || bad "missing output rerun"
printf '  - {name: lazy, run: command, args: ["true"], outputs: [made.txt, "${lazy.out}/x"]}\n' \
    >> cmd/c.yaml
"$R" run cmd/c.yaml > out 2> err; rc=$?
[ $rc -eq 1 ] &&
    grep -q "^rlhf run: stage 'lazy' exited 0 but did not make 2 of its declared outputs: $(
        )made.txt, cws/lazy/x$" err &&
    grep -q "lazy *failed" err && "$R" run cmd/c.yaml > out 2> err; rc2=$?
[ $rc -eq 1 ] && [ $rc2 -eq 1 ] && grep -q "lazy *failed" err &&
    ok "command stage: a declared output missing after exit 0 fails the stage, every time" ||
    bad "missing declared output (exit $rc, then $rc2)"
mkdir cmd/sub && cp corpus.txt cmd/sub/
cat > cmd/sub/s.yaml <<'YAML'
workspace: ../sws
stages:
  - {name: t, run: rlhf tokenizer train, args: [--vocab-size, "260", --out, "${t.out}", corpus.txt]}
YAML
(cd cmd && "$R" run sub/s.yaml > ../out 2> ../err) && [ -f cmd/sws/t/vocab.json ] && [ ! -e sws ] &&
    (cd cmd && "$R" run sub/s.yaml --set workspace=ws2 > ../out 2> ../err) &&
    [ -f cmd/ws2/t/vocab.json ] && [ ! -e cmd/sub/ws2 ] &&
    ok "paths: the workspace and args from the file's folder, a --set workspace from here" ||
    bad "relative paths"

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
for f in pipelines/demo.yaml pipelines/instructgpt-gpt2.yaml pipelines/demo-llama.yaml \
    pipelines/instructgpt-llama.yaml; do
    "$R" run "$f" --dry-run --set workspace="$W/dry" > "$W/out" 2> "$W/err" &&
        [ "$(grep -c ' run ' "$W/out")" -ge 4 ] && [ ! -d "$W/dry/logs" ] &&
        grep -q "^ *gate *rm: valid/accuracy >= 0.6$" "$W/out" &&
        ok "$f validates with --dry-run" || bad "$f --dry-run"
done
lib_summary
