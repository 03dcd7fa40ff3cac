#!/bin/sh
# The ppo program's critic-free algorithms (algorithm: grpo | rloo) and the KL as a loss term
# (kl.mode: loss), end to end on tiny models (the fixtures of test_ppo.sh: a reward model that
# prefers digit tokens, a policy pretrained briefly on the sums it is asked about):
#   - the defaults written out (algorithm ppo, group size 1, kl.mode reward) change neither the
#     config hash nor a bit of the result
#   - grpo and rloo: no value model in the memory plan, none loaded or saved; group_size
#     completions of each prompt side by side; the score rises
#   - kl.mode loss: the k3 term recorded, the rollouts' rewards without the KL
#   - kill -9 and the same command ends bit-identical, for grpo and for rloo (with reward
#     normalisation)
#   - bad settings: clear messages
. "$PWD/tests/lib.sh"
. "$TESTS/ppo_fixture.sh"
lib_workspace
export OMP_WAIT_POLICY=passive
ERR_LINES=8
cd "$W" || exit 1

ppo_fixture
cat > ppo.yaml <<'YAML'
model: {policy: pre/best, reward: rm}
out: {dir: ppo}
data: {prompts: [prompts.jsonl], prompt_template: "{prompt}"}
rollout: {batch_size: 16, max_new_tokens: 12}
ppo: {minibatch_size: 4, epochs: 2}
ptx: {coef: 0}
kl: {beta: 0.1}
train: {iterations: 3, policy_lr: 2e-3, value_lr: 3e-3}
YAML

# 1. the defaults written out: the same config hash and the same bits as PPO without them
"$B/ppo" -c ppo.yaml > /dev/null 2> err1 || bad "ppo run"
mv ppo ppo2
"$B/ppo" -c ppo.yaml --set algorithm=ppo --set rollout.group_size=1 \
    --set kl.mode=reward --set grpo.scale_std=true > /dev/null 2> err2 || bad "ppo run, defaults set"
h1=$(sed -n 's/.*config \([0-9a-f]*\)$/\1/p' err1); h2=$(sed -n 's/.*config \([0-9a-f]*\)$/\1/p' err2)
[ -n "$h1" ] && [ "$h1" = "$h2" ] && cmp -s ppo/policy/model.safetensors ppo2/policy/model.safetensors &&
    cmp -s ppo/last/value/model.safetensors ppo2/last/value/model.safetensors &&
    ok "algorithm ppo, group size 1, kl.mode reward written out: config hash $h1 and result unchanged" ||
    bad "the defaults written out changed PPO ($h1 vs $h2)"

# 2. grpo: no value model anywhere; group_size completions per prompt; the score rises
cat > grpo.yaml <<'YAML'
algorithm: grpo
model: {policy: pre/best, reward: rm}
out: {dir: grpo}
data: {prompts: [prompts.jsonl], prompt_template: "{prompt}"}
rollout: {batch_size: 16, group_size: 4, max_new_tokens: 12}
ppo: {minibatch_size: 4, epochs: 2}
ptx: {coef: 0}
kl: {beta: 0.1}
train: {iterations: 10, policy_lr: 2e-3}
save: {every: 5}
YAML
"$B/ppo" -c grpo.yaml > out 2> err || bad "grpo run"
grep -q "^ppo: memory plan.*critic-free: no value model" err && ! grep -q "^ppo:   value" err &&
    grep -q "^ppo:   policy" err && grep -q "^ppo:   reward" err &&
    ok "grpo: the memory plan has no value model (and says so)" || bad "grpo memory plan: $(grep '^ppo:  ' err)"
[ -f grpo/policy/model.safetensors ] && [ -f grpo/last/policy/model.safetensors ] && [ ! -e grpo/last/value ] &&
    ok "grpo: policy/ and last/ written, no value model saved" || bad "grpo outputs: $(ls grpo/last)"
python3 - grpo/workspace.db > out 2>&1 <<'PY' && ok "grpo: 4 completions of each prompt side by side, 4 prompts per iteration, the score rises ($(cat out))" || bad "grpo groups or learning: $(cat out)"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for it in range(1, 11):
    p = [r[0] for r in db.execute("select prompt from rollouts where iteration=? order by id", (it,))]
    assert len(p) == 16, len(p)
    groups = [p[i:i + 4] for i in range(0, 16, 4)]
    assert all(len(set(g)) == 1 for g in groups), groups
    assert len(set(g[0] for g in groups)) == 4, groups
m = lambda n, s: db.execute("select value from metrics where name=? and step=?", (n, s)).fetchone()[0]
first, last = m("ppo/score", 1), sum(m("ppo/score", s) for s in (8, 9, 10)) / 3
assert db.execute("select count(*) from metrics where name='ppo/value_loss' and value=value").fetchone()[0] == 0
assert m("ppo/advantage_abs", 1) > 0
print("%.3f -> %.3f" % (first, last))
assert last > first + 0.25, (first, last)
PY

# the pretraining text is tokenized before the models are allocated: the tokenizer's transient
# memory is freed before theirs is taken, not added to it at the run's peak
"$B/ppo" -c grpo.yaml --set out.dir=grpo_ptx --set ptx.coef=1 --set 'ptx.data=[corpus.txt]' \
    --set ptx.batch_size=4 --set ptx.seq_len=32 --set train.iterations=1 > /dev/null 2> err ||
    bad "grpo run with the pretraining mix"
t=$(grep -n "^ppo: tokenizing 1 pretraining file" err | cut -d: -f1)
p=$(grep -n "^ppo: memory plan" err | cut -d: -f1)
[ -n "$t" ] && [ -n "$p" ] && [ "$t" -lt "$p" ] && [ -f grpo_ptx/ptx.tok ] &&
    ok "the pretraining text is tokenized (line $t) before the models are allocated (memory plan, line $p)" ||
    bad "ptx tokenized at line '$t', memory plan at '$p'"

# 3. rloo with the KL as a loss term: recorded, and the rollouts' rewards are the shaped scores
"$B/ppo" -c grpo.yaml --set algorithm=rloo --set out.dir=rloo --set kl.mode=loss \
    --set train.iterations=4 > /dev/null 2> err || bad "rloo run (kl.mode loss)"
grep -q "critic-free: no value model" err && [ ! -e rloo/last/value ] &&
python3 - rloo/workspace.db > out 2>&1 <<'PY' && ok "rloo, kl.mode loss: k3 loss term recorded (>= 0), rewards without the KL" || bad "rloo kl loss: $(cat out)"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
kl = [r[0] for r in db.execute("select value from metrics where name='ppo/kl_loss' order by step")]
assert len(kl) == 4 and all(k >= 0 for k in kl), kl
r = db.execute("select score, reward, kl, ended from rollouts").fetchall()
# missing_eos_penalty 1: reward = score - (not ended); no -beta KL in it although KL is not 0
assert all(abs(rw - (s - (0 if e else 1))) < 1e-5 for s, rw, k, e in r), r[:3]
assert any(abs(k) > 1e-6 for s, rw, k, e in r)
PY

# 4. kill -9 at a random moment and the same command: the same bits, for grpo and rloo
for algo in grpo rloo; do
    sed -e "s/algorithm: grpo/algorithm: $algo/" -e 's/iterations: 10/iterations: 30/' \
        -e 's/every: 5/every: 1/' -e "s/dir: grpo/dir: full_$algo/" grpo.yaml > full.yaml
    # rloo with the running reward normalisation, whose moments must resume exactly too
    [ $algo = rloo ] && printf 'reward: {normalize: true, length_penalty: 0.05}\n' >> full.yaml
    sed "s/dir: full_$algo/dir: killed_$algo/" full.yaml > killed.yaml
    t0=$(date +%s.%N)
    "$B/ppo" -c full.yaml > /dev/null 2> err || bad "uninterrupted $algo run"
    T=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
    killed=0
    # moments as shares of the uninterrupted run (start-up first, then 30 iterations)
    for f in 0.6 0.5 0.75 0.4 0.85 0.3; do
        delay=$(awk -v t="$T" -v f="$f" 'BEGIN { printf "%.3f", t * f }')
        rm -rf "killed_$algo"
        "$B/ppo" -c killed.yaml > /dev/null 2>&1 &
        pid=$!
        sleep $delay
        if kill -9 $pid 2>/dev/null; then
            wait $pid 2>/dev/null
            if [ -d "killed_$algo/last" ] || [ -d "killed_$algo/last.old" ]; then killed=1; break; fi
        else wait $pid 2>/dev/null; fi
    done
    "$B/ppo" -c killed.yaml > /dev/null 2> err
    at=$(sed -n 's/.*resuming run [0-9]* at iteration \([0-9]*\).*/\1/p' err)
    same=1
    for f in last/policy/model.safetensors last/policy/trainer_state.safetensors policy/model.safetensors; do
        cmp -s "full_$algo/$f" "killed_$algo/$f" || { same=0; echo "    differs: $f"; }
    done
    q="select iteration, prompt, response, score, reward, kl, components from rollouts order by iteration, id"
    [ "$(sqlite3 "full_$algo/workspace.db" "$q" | md5sum)" = "$(sqlite3 "killed_$algo/workspace.db" "$q" | md5sum)" ] || same=0
    if [ $killed -eq 1 ] && [ -n "$at" ] && [ $same -eq 1 ]; then
        ok "$algo: kill -9 (resumed at iteration $at of 30): policy, moments, result and rollouts (with their reward parts) bit-identical"
    else bad "$algo kill/resume (killed=$killed at=$at same=$same)"; fi
done

# 5. reward parts: an ensemble of reward models, a reward program, penalties; each part logged
# per iteration and stored with each rollout
"$B/rlhf" init --preset tiny --n-layer 1 --n-positions 48 --n-embd 32 --tokenizer tok --seed 7 \
    --score-head --no-lm-head --out rm_rand 2>/dev/null
cat > chars.py <<'PY'
import json, sys
for line in sys.stdin:
    print(len(json.loads(line)["completion"]), flush=True)
PY
for comb in mean min; do
    "$B/ppo" -c grpo.yaml --set out.dir=parts_$comb --set train.iterations=2 --set kl.mode=loss \
        --set "reward.models=[rm_rand, rm]" --set reward.combine=$comb \
        --set "reward.programs=[python3 chars.py]" --set "reward.program_weights=[0.5]" \
        --set reward.length_penalty=0.1 --set reward.overlong_penalty=2 \
        --set reward.overlong_tokens=4 > /dev/null 2> err || bad "run with reward parts ($comb): $(tail -1 err)"
    python3 - parts_$comb/workspace.db $comb > out 2>&1 <<'PY' && ok "reward parts ($comb of 3 reward models, a program, length and over-length penalties): each by hand, stored per rollout and logged per iteration" || bad "reward parts ($comb): $(cat out)"
import json, sqlite3, sys
db, comb = sqlite3.connect(sys.argv[1]), sys.argv[2]
rows = db.execute("select response, score, reward, response_tokens, ended, components, iteration from rollouts").fetchall()
assert len(rows) == 32
for resp, score, reward, n, ended, comp, it in rows:
    c = json.loads(comp)
    rm = c["reward_models"]
    # model.reward (rm) first, then reward.models: rm_rand, rm again
    assert len(rm) == 3 and rm[0] != rm[1] and rm[0] == rm[2], rm
    want = sum(rm) / 3 if comb == "mean" else min(rm)
    assert abs(c["score"] - want) < 1e-5 and abs(score - c["score"]) < 1e-6, (c, want)
    assert c["programs"] == [len(resp)], (c["programs"], resp)
    assert abs(c["length_penalty"] - 0.1 * n) < 1e-5
    over = 0 if n <= 8 else 2 * min(1, (n - 8) / 4)
    assert abs(c["overlong_penalty"] - over) < 1e-5, (n, c)
    total = c["score"] + 0.5 * len(resp) - 0.1 * n - over
    assert abs(c["total"] - total) < 1e-3, (c, total)
    # kl.mode loss: the reward is the total, less the missing-end penalty (1)
    assert abs(reward - (total - (0 if ended else 1))) < 1e-3, (reward, total)
m = dict(((n, s), v) for n, s, v in db.execute("select name, step, value from metrics where name like 'reward/%'"))
for it in (1, 2):
    progs = [len(r[0]) for r in rows if r[6] == it]
    assert abs(m[("reward/program_0", it)] - sum(progs) / 16) < 1e-4
    for k in range(3):
        assert ("reward/model_%d" % k, it) in m
    assert ("reward/length_penalty", it) in m and ("reward/overlong_penalty", it) in m
PY
done
"$B/ppo" -c grpo.yaml --set out.dir=norm --set train.iterations=3 --set reward.normalize=true \
    --set reward.length_penalty=0.05 > /dev/null 2> err &&
python3 - norm/workspace.db > out 2>&1 <<'PY' && ok "reward.normalize: the rewards of the first iteration have mean 0 and std 1" || bad "reward normalisation: $(cat out) $(tail -1 err)"
import json, sqlite3, sys, statistics as st
db = sqlite3.connect(sys.argv[1])
z = [json.loads(c)["normalized"] for (c,) in db.execute("select components from rollouts where iteration = 1")]
assert abs(st.mean(z)) < 1e-4 and abs(st.stdev(z) - 1) < 1e-3, z
PY

# 6. a reward program that hangs, crashes, answers too little or answers garbage: a clear error
prog_fail() {   # NAME PATTERN PROGRAM [--set ...]
    name=$1; pat=$2; prog=$3; shift 3
    expect_fail "$name" 1 "$pat" "$B/ppo" -c grpo.yaml --set out.dir=pf --set train.iterations=1 \
        --set "reward.programs=[$prog]" "$@"
}
prog_fail "a reward program that hangs is stopped after reward.program_timeout" \
    "reward.programs\[0\] (sleep 30): no progress for 1 s (reward.program_timeout)" "sleep 30" \
    --set reward.program_timeout=1
prog_fail "a reward program that crashes is named with its status" \
    "reward.programs\[0\] (exit 3): exited with status 3 after 0 of 16 answers" "exit 3"
prog_fail "a reward program that answers garbage names the answer" \
    "reward.programs\[0\] (.*): answer 1 is not a finite number: 'banana'" "sed s/.*/banana/"
prog_fail "a reward program that answers too few lines says so" \
    "reward.programs\[0\] (.*): answered 1 lines for 16 completions" "sed -n 1s/.*/1/p"
prog_fail "an infinite answer is refused" "answer 1 is not a finite number: 'inf'" "sed s/.*/inf/"
prog_fail "weights that do not match the programs are refused" \
    "reward.program_weights has 2 weights for 1 reward.programs" "cat" --set "reward.program_weights=[1, 2]"
expect_fail "a reward.models entry without a score head is refused" 1 "reward.models\[0\]: pre/best has no score head" \
    "$B/ppo" -c grpo.yaml --set out.dir=pf --set "reward.models=[pre/best]"

# 7. guards: each fires on a crafted case, reports the figure and the threshold, records it
"$B/ppo" -c grpo.yaml --set out.dir=g1 --set save.every=1 --set guards.kl_max=0.15 \
    --set train.iterations=6 > /dev/null 2> err; rc=$?
it=$(sed -n 's/.*guard guards.kl_max fired at iteration \([0-9]*\): mean KL per episode \([0-9.e-]*\) above guards.kl_max 0.15.*/\1/p' err | head -1)
kl=$(sed -n 's/.*mean KL per episode \([0-9.e-]*\) above.*/\1/p' err | head -1)
[ $rc -eq 1 ] && [ -n "$it" ] && grep -q "stopped (guards.action stop): the last good checkpoint is g1/last" err &&
    [ "$(metric g1/workspace.db guard/kl_max "$it")" != none ] && [ ! -e g1/policy ] &&
    python3 -c "import json,sys; s=json.load(open('g1/last/policy/trainer_state.json')); sys.exit(int(s['ints']['iteration']) != $it - 1)" &&
    ok "guards.kl_max: fired at iteration $it (KL $kl > 0.15), exit 1, recorded as guard/kl_max, last/ kept at iteration $((it - 1))" ||
    bad "guards.kl_max (rc $rc, it $it): $(tail -2 err)"
expect_fail "guards.kl_min fires on iteration 1's zero KL, naming figure and threshold" 1 \
    "guard guards.kl_min fired at iteration 1: mean KL per episode 0 below guards.kl_min 0.5" \
    "$B/ppo" -c grpo.yaml --set out.dir=g2 --set guards.kl_min=0.5
expect_fail "guards.len_max fires on an explosion of the response length" 1 \
    "guard guards.len_max fired at iteration 1: mean response length [0-9.]* above guards.len_max 2" \
    "$B/ppo" -c grpo.yaml --set out.dir=g3 --set guards.len_max=2
expect_fail "guards.len_min fires on a collapse, and a rollback without a checkpoint stops" 1 \
    "guards.len_min 50; no checkpoint to roll back to yet: stopped" \
    "$B/ppo" -c grpo.yaml --set out.dir=g4 --set guards.len_min=50 --set guards.action=rollback
"$B/ppo" -c grpo.yaml --set out.dir=g5 --set guards.len_min=50 --set guards.patience=3 \
    --set train.iterations=2 > /dev/null 2> err && [ "$(grep -c "below guards.len_min 50 ([12] of 3 iterations in a row)" err)" = 2 ] &&
    ok "guards.patience: outside the band for fewer iterations than the patience only warns" ||
    bad "guards.patience: $(tail -2 err)"
# reward hacking: the reward model likes digits, the judge prefers fewer of them; the score rises
# while the judge's win rate against the starting answers falls
cat > fewdigits.py <<'PY'
import json, sys
for line in sys.stdin:
    a, b = (sum(ch.isdigit() for ch in c) for c in json.loads(line)["completions"])
    print("1>2" if a < b else "2>1" if a > b else "1=2", flush=True)
PY
head -n 16 prompts.jsonl > held.jsonl
H="--set guards.hack_prompts=held.jsonl --set guards.hack_every=2 --set save.every=1"
"$B/ppo" -c grpo.yaml --set out.dir=h1 --set "guards.hack_judge=python3 fewdigits.py" $H > /dev/null 2> err; rc=$?
it=$(sed -n 's/.*guard guards.hack_judge fired at iteration \([0-9]*\): the score rose .* fell to \([0-9.]*\) (below 0.5 - guards.hack_margin 0.05): reward hacking.*/\1/p' err | head -1)
[ $rc -eq 1 ] && [ -n "$it" ] && [ "$(metric h1/workspace.db guard/hack_judge "$it")" != none ] &&
    [ "$(metric h1/workspace.db guard/judge_win_rate 2)" != none ] && [ "$(wc -l < h1/hack_reference.jsonl)" -eq 16 ] &&
    ok "guards.hack_judge: the score rose while the judge's win rate fell: fired at iteration $it, recorded" ||
    bad "guards.hack_judge (rc $rc, it $it): $(tail -2 err)"
# resumed with a consistent judge: the starting answers are read back, the starting score too
# (the first part: a judge that ties everything, stopped by the KL guard after iteration 1)
"$B/ppo" -c grpo.yaml --set out.dir=h2 --set "guards.hack_judge=sed s/.*/1=2/" --set guards.kl_max=0.15 \
    $H > /dev/null 2>&1
"$B/ppo" -c grpo.yaml --set out.dir=h2 --set "guards.hack_judge=python3 fewdigits.py" $H > /dev/null 2> err; rc=$?
[ $rc -eq 1 ] && grep -q "resuming" err && grep -q "guard guards.hack_judge fired at iteration [0-9]*: the score rose ($(metric h2/workspace.db ppo/score 1 | cut -c1-5)" err &&
    ok "guards.hack_judge after a resume: the first iteration's score is the starting point" ||
    bad "guards.hack_judge resumed (rc $rc): $(tail -2 err)"
expect_fail "a judge that stops answering is a clear error" 1 "guards.hack_judge (sed -n 1s/.*/1=2/p): exited with status 0 after 1 of 16 answers" \
    "$B/ppo" -c grpo.yaml --set out.dir=h4 --set "guards.hack_judge=sed -n 1s/.*/1=2/p" --set guards.hack_prompts=held.jsonl
expect_fail "a judge answering nonsense is a clear error" 1 "guards.hack_judge (echo maybe): answer 1 is not a ranking: 'maybe'" \
    "$B/ppo" -c grpo.yaml --set out.dir=h3 --set "guards.hack_judge=echo maybe" --set guards.hack_prompts=held.jsonl

# rollback: the result is the last good checkpoint, bit for bit
"$B/ppo" -c grpo.yaml --set out.dir=g6 --set save.every=1 --set guards.kl_max=0.15 \
    --set guards.action=rollback --set train.iterations=6 > /dev/null 2> err; rc=$?
it=$(sed -n 's/.*rolled back to the last good checkpoint g6\/last (iteration \([0-9]*\)).*/\1/p' err)
[ -n "$it" ] && "$B/ppo" -c grpo.yaml --set out.dir=g7 --set train.iterations="$it" > /dev/null 2>&1
[ $rc -eq 0 ] && [ -n "$it" ] && cmp -s g6/policy/model.safetensors g7/policy/model.safetensors &&
    ok "guards.action rollback: the result is the last good checkpoint (iteration $it), equal to a run of $it iterations" ||
    bad "guards rollback (rc $rc, it $it): $(tail -2 err)"

# 8. the comparison pipeline validates (every program checks its settings) without running; its
# table reads the runs it records
peak=$(metric grpo/workspace.db run/peak_rss_bytes 0)
awk -v p="$peak" 'BEGIN { exit !(p > 1e6 && p < 1e11) }' &&
    ok "a finished run records its peak memory (run/peak_rss_bytes $peak)" || bad "run/peak_rss_bytes: $peak"
(cd "$ROOT" && "$B/rlhf" run pipelines/demo-methods.yaml --dry-run --set workspace="$W/dry") > out 2> err &&
    for m in ppo grpo rloo dpo ipo; do grep -q "^$m  *run " out && grep -q "^eval-$m  *run .*--name eval-$m" out || exit 1; done &&
    grep -q "^grpo .*--set algorithm=grpo .*--set rollout.group_size=4 .*--set kl.beta=0.1" out &&
    ! grep -q "^grpo .*kl.mode" out && grep -q "^dpo .*--set train.steps=100 --set train.lr=1.5e-4 .*--set eval.max_groups=500" out &&
    grep -q "^ipo .*--set loss.type=ipo" out && [ ! -d "$W/dry/logs" ] &&
    ok "pipelines/demo-methods.yaml validates with --dry-run: ppo, grpo (KL in the reward), rloo, dpo (100 steps, 500 held-out pairs), ipo, each evaluated against SFT" ||
    bad "demo-methods.yaml --dry-run: $(tail -3 err)"
cp grpo/workspace.db table.db
python3 - table.db <<'PY' || bad "crafting the table's runs"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
def run(stage, name, ckpt, t0, t1):
    c = db.execute("insert into runs(stage, name, program, config, config_hash, status, checkpoint, started, finished) values (?, ?, '', '', '', 'done', ?, ?, ?)", (stage, name, ckpt, t0, t1))
    return c.lastrowid
def metric(r, n, v):
    db.execute("insert into metrics(run_id, name, step, value, time) values (?, ?, 0, ?, 0)", (r, n, v))
run("pipeline/grpo", "demo-methods.yaml", "/ws/grpo", 100, 190.4)
r = run("ppo", "", "/ws/grpo/policy", 101, 190)
metric(r, "run/peak_rss_bytes", 300 * 1048576)
e = run("eval", "eval-grpo", "/ws/grpo/policy", 200, 210)
for n, v in [("win_rate", 0.7125), ("win_rate_lo", 0.65), ("win_rate_hi", 0.77), ("a/accuracy", 0.4),
             ("b/accuracy", 0.29), ("a/kl", 1.234), ("a/pretrain_loss", 2.8), ("b/pretrain_loss", 2.69)]:
    metric(e, n, v)
db.commit()
PY
sh "$ROOT/scripts/methods_table.sh" table.db grpo dpo > out 2> err &&
    grep -qF "| SFT | - | 0.290 | 0 | 2.690 | - | - |" out &&
    grep -qF "| grpo | 0.713 (0.650-0.770) | 0.400 | 1.23 | 2.800 | 90 s | 300 MiB |" out &&
    grep -qF "| dpo | - | - | - | - | - s | - MiB |" out &&
    ok "scripts/methods_table.sh: one row per method from its eval and stage runs, '-' where none" ||
    bad "methods table: $(cat out err)"
# --seeds: each evaluation belongs to the stage run that finished last before it; the last
# evaluation of a seed counts; mean [range] over the seeds; a family's gold score as accuracy
python3 - table.db <<'PY' || bad "crafting the seeds' runs"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
def run(stage, name, ckpt, t0, t1, config=""):
    c = db.execute("insert into runs(stage, name, program, config, config_hash, status, checkpoint, started, finished) values (?, ?, '', ?, '', 'done', ?, ?, ?)", (stage, name, config, ckpt, t0, t1))
    return c.lastrowid
def metric(r, n, v):
    db.execute("insert into metrics(run_id, name, step, value, time) values (?, ?, 0, ?, 0)", (r, n, v))
# seed 7: 100 s, 200 MiB, evaluated twice (the second counts); seed 8: 120 s, 220 MiB
for seed, t0, wall, mib, evals in [(7, 1000, 100, 200, [(0.5, 0.1), (0.6, 0.2)]),
                                   (8, 2000, 120, 220, [(0.8, 0.4)])]:
    run("pipeline/rloo", "m.yaml", "/ws/rloo", t0, t0 + wall, "ppo --set algorithm=rloo --set train.seed=%d --set x=1" % seed)
    r = run("ppo", "", "/ws/rloo/policy", t0 + 1, t0 + wall - 1)
    metric(r, "run/peak_rss_bytes", mib * 1048576)
    for i, (w, a) in enumerate(evals):
        e = run("eval", "eval-rloo", "/ws/rloo/policy", t0 + wall + 10 * i, t0 + wall + 10 * i + 5)
        for n, v in [("win_rate", w), ("win_rate_lo", w - 0.05), ("a/score", a), ("b/score", 0.05), ("a/kl", 1.0 + a),
                     ("a/pretrain_loss", 2.0 + a), ("b/pretrain_loss", 1.9)]:
            metric(e, n, v)
db.commit()
PY
sh "$ROOT/scripts/methods_table.sh" --seeds table.db rloo dpo > out 2> err &&
    grep -qF "| SFT | - | - | - | 0.050 | 0 | 1.900 | - | - |" out &&
    grep -qF "| rloo | 7,8 | 0.700 [0.600-0.800] | 0.550 | 0.300 [0.200-0.400] | 1.30 [1.20-1.40] | 2.300 [2.200-2.400] | 110 [100-120] s | 210.0 [200.0-220.0] MiB |" out &&
    grep -qF "| dpo | - | - | - | - | - | - | - | - |" out &&
    ok "scripts/methods_table.sh --seeds: mean [range] per method over its seeds, the last evaluation of a seed" ||
    bad "methods table --seeds: $(cat out err)"

# 9. bad settings
expect_fail "grpo without a group is refused, naming rollout.group_size" 1 "rollout.group_size to 2 or more" \
    "$B/ppo" -c grpo.yaml --set out.dir=b1 --set rollout.group_size=1
expect_fail "a rollout batch not a multiple of the group size is refused" 1 "multiple of rollout.group_size" \
    "$B/ppo" -c grpo.yaml --set out.dir=b2 --set rollout.group_size=3
expect_fail "an unknown algorithm names the choices" 1 "algorithm: expected one of ppo, grpo, rloo" \
    "$B/ppo" -c grpo.yaml --set out.dir=b3 --set algorithm=dpo
lib_summary
