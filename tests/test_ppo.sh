#!/bin/sh
# The ppo program end to end on tiny models: a hand-made reward model that prefers digit tokens
# (tests/fixtures/ppo_craft_reward.py), a policy pretrained briefly on the text it is asked about.
#   - policy == reference: KL exactly 0 and ratio exactly 1 on the first minibatch
#   - the mean score rises clearly within 10 iterations while the KL stays below 15 nats/episode
#   - with the pretraining mix the LM loss on the pretraining text rises less than without
#   - the held-out pretraining loss (eval.pretrain_text) is recorded and equals rlhf eval's
#   - kill -9 at a random moment and the same command ends bit-identical (weights, moments, EMA,
#     rollouts), the database consistent
#   - the NaN/Inf guard skips, then stops and keeps the last good checkpoint
#   - bad inputs: clear messages, non-zero exits
. "$PWD/tests/lib.sh"
. "$TESTS/ppo_fixture.sh"
lib_workspace
# Threads that sleep rather than spin when idle: these models are tiny, and on a shared machine
# spinning OpenMP threads slow every parallel region down by orders of magnitude.
export OMP_WAIT_POLICY=passive
ERR_LINES=8
eval_loss() { "$B/rlhf" eval "$1" --text corpus.txt 2>&1 | sed -n 's/^loss //p'; }
cd "$W" || exit 1

# data: prompts "What is a plus b?" and the same sums as text
ppo_fixture
ppo_config pre/best rm off

"$B/ppo" --help > out 2>&1 && grep -q "ptx.coef" out && grep -q "kl.controller" out &&
    ok "ppo --help lists every key" || bad "ppo --help"

# 1. plain PPO: the score rises, the KL stays bounded; policy == reference on iteration 1
"$B/ppo" -c ppo.yaml > out 2> err && [ -f off/policy/model.safetensors ] &&
    [ -f off/last/policy/trainer_state.json ] &&
    ok "PPO run (ptx off) completes: policy/ and last/ written" || bad "ppo run (ptx off)"
grep -Eq "^ppo: time [0-9.]+ s: gen [0-9.]+ score [0-9.]+ ref [0-9.]+ logp [0-9.]+ value [0-9.]+ \| train policy [0-9.]+ value [0-9.]+ ptx [0-9.]+ adam [0-9.]+ \| db [0-9.]+ other [0-9.]+$" err &&
    python3 - off/workspace.db > out 2>&1 <<'PY' && ok "each iteration's time per phase logged in one line and stored (time/<phase>, adding up to time/iteration)" || bad "time breakdown: $(cat out; grep 'ppo: time' err | head -2)"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
parts = ["generation", "scoring", "reference", "logprobs", "value", "train_policy", "train_value",
         "train_ptx", "optimizer", "allreduce", "database", "other"]
for step in range(1, 11):
    t = dict(db.execute("select name, value from metrics where step = ? and name like 'time/%'", (step,)))
    assert sorted(t) == sorted(["time/" + p for p in parts] + ["time/iteration"]), sorted(t)
    assert all(v >= 0 for v in t.values()) and t["time/generation"] > 0 and t["time/train_policy"] > 0, t
    total = sum(t["time/" + p] for p in parts)
    assert abs(total - t["time/iteration"]) < 1e-3, (total, t["time/iteration"])
PY
python3 - off/workspace.db > out 2>&1 <<'PY' && ok "each iteration's minor page faults stored (count/page_faults: $(cat out))" || bad "page faults: $(cat out)"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
f = [v for (v,) in db.execute(
    "select value from metrics where name = 'count/page_faults' order by step")]
print(f"{f[0]:.0f} then at most {max(f[1:]):.0f}" if len(f) > 1 else f)
assert len(f) == 10 and all(v == int(v) and v >= 0 for v in f) and f[0] > 0, f
assert max(f[1:]) < f[0], f
PY
kl1=$(metric off/workspace.db ppo/kl 1); k31=$(metric off/workspace.db ppo/kl_k3 1); \
    r1=$(metric off/workspace.db ppo/first_ratio_dev 1)
[ "$kl1" = "0.0" ] && [ "$k31" = "0.0" ] && [ "$r1" = "0.0" ] &&
    ok "policy == reference: KL exactly 0 (k1 and k3) and ratio exactly 1 on the first minibatch" ||
        bad "KL/ratio at iteration 1: kl $kl1 k3 $k31 ratio dev $r1"
python3 - off/workspace.db > out 2> err <<'PY' && ok "score rises clearly within 10 iterations, KL below 15 nats/episode ($(cat out))" || bad "score/KL: $(cat out)"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
m = lambda n: [v for (v,) in db.execute("select value from metrics where name=? order by step", (n,))]
s, kl = m("ppo/score"), m("ppo/kl")
first, last = (s[0] + s[1]) / 2, (s[-2] + s[-1]) / 2
print(f"score {first:.2f} -> {last:.2f}, max KL {max(kl):.2f}")
assert len(s) == 10 and last > first + 0.5 and max(kl) < 15.0
PY
python3 - off/workspace.db > out 2> err <<'PY' && ok "every rollout stored (prompt, response, score, KL; valid UTF-8), run done" || bad "rollouts: $(cat out)"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
assert db.execute("pragma integrity_check").fetchone()[0] == "ok"
n, it, lo, hi = db.execute("select count(*), count(distinct iteration), min(iteration), max(iteration) from rollouts").fetchone()
assert (n, it, lo, hi) == (160, 10, 1, 10), (n, it, lo, hi)
assert db.execute("select count(*) from rollouts where prompt = '' or score is null or kl is null or response_tokens < 1").fetchone()[0] == 0
assert db.execute("select status from runs").fetchall() == [("done",)]
# reward hacking can be looked for with SQL: the highest-scoring responses of the last iteration
for (r,) in db.execute("select response from rollouts where iteration = 10 order by score desc limit 3"):
    assert isinstance(r, str)
PY

# 1a. continuous batching: 5 KV-cache slots for 16 rollouts, a rollout that ends handing its slot to
# the next, samples what the whole batch at once did (each rollout its own sampling stream), and the
# run goes on the same
"$B/ppo" -c ppo.yaml --set out.dir=slots5 --set train.iterations=2 --set rollout.generation_batch=5 \
    > /dev/null 2> err || bad "ppo run with rollout.generation_batch=5"
python3 - off/workspace.db slots5/workspace.db > out 2>&1 <<'PY' && ok "rollout.generation_batch 5 of 16 (continuous batching): the same rollouts and statistics as all 16 at once ($(cat out))" || bad "generation_batch 5: $(cat out)"
import sqlite3, sys
q = "select iteration, response, score, kl, response_tokens, ended from rollouts where iteration <= 2 order by id"
a, b = (sqlite3.connect(p).execute(q).fetchall() for p in sys.argv[1:3])
assert len(a) == 32 and a == b, "rollouts differ"
q = "select step, name, value from metrics where step <= 2 and name like 'ppo/%' order by step, name"
a, b = (sqlite3.connect(p).execute(q).fetchall() for p in sys.argv[1:3])
assert a == b, [(x, y) for x, y in zip(a, b) if x != y][:3]
lens = sqlite3.connect(sys.argv[2]).execute("select distinct response_tokens from rollouts order by 1")
print(f"{len(a)} metrics; response lengths {[n for (n,) in lens]}")
PY

# 1b. a response cut off by the length limit is scored with the end token appended (as reward
# train scores every completion) and pays reward.missing_eos_penalty; one that ended is scored as is
for m in end_token as_is; do
    "$B/ppo" -c ppo.yaml --set out.dir=cut_$m --set train.iterations=1 --set rollout.max_new_tokens=4 \
        --set reward.score_unfinished=$m > /dev/null 2> err ||
            bad "ppo run with reward.score_unfinished=$m"
done
python3 - cut_end_token/workspace.db cut_as_is/workspace.db > out 2> err <<'PY' && ok "cut-off responses: end token appended (score lower here, the crafted model counting digits), penalty 1 by default; ended ones as is ($(cat out))" || bad "score_unfinished: $(cat out)"
import sqlite3, sys
q = "select response, ended, score, reward from rollouts order by id"
e = sqlite3.connect(sys.argv[1]).execute(q).fetchall()
a = sqlite3.connect(sys.argv[2]).execute(q).fetchall()
assert len(e) == len(a) == 16 and [r[:2] for r in e] == [r[:2] for r in a], "the same rollouts"
cut = [(x, y) for x, y in zip(e, a) if not x[1]]
assert cut, "no cut-off response"
for x, y in zip(e, a):
    if x[1]:
        assert x[2] == y[2] and x[3] == x[2], (x, y)                    # ended: as is, no penalty
    else:
        assert x[2] < y[2] - 1e-4, (x, y)                              # scored at the appended end token
        assert abs(x[3] - (x[2] - 1.0)) < 1e-5 and abs(y[3] - (y[2] - 1.0)) < 1e-5, (x, y)   # iteration 1: KL 0
print(f"{len(cut)} of 16 cut off")
PY

# 2. the pretraining mix: the LM loss on the pretraining text rises less with ptx on
"$B/ppo" -c ppo.yaml --set ptx.coef=1 --set out.dir=on > out 2> err || bad "ppo run (ptx on)"
l0=$(eval_loss pre/best); loff=$(eval_loss off/policy); lon=$(eval_loss on/policy)
awk -v a="$l0" -v b="$loff" -v c="$lon" \
    'BEGIN { exit !(a != "" && b != "" && c != "" && b > a + 0.3 && c < b - 0.3) }' &&
    [ -f on/ptx.tok ] &&
        ok "pretraining loss: start $l0, ptx off $loff, ptx on $lon (rises less with ptx)" ||
        bad "ptx: start $l0 off $loff on $lon"

# 2b. the held-out pretraining loss (eval.pretrain_text): at iteration 0, every eval.every
# iterations and at the end, equal to `rlhf eval` on the same two windows of 32 positions (the
# policy's longest row here: ptx.seq_len) of held.txt's tokens and the end token
sums 40 'Take %d from %d: %d is left, and %d more.' > held.txt
"$B/ppo" -c ppo.yaml --set ptx.coef=1 --set out.dir=pl --set train.iterations=3 \
    --set eval.every=2 --set eval.pretrain_text=held.txt --set eval.pretrain_max_windows=2 \
    > /dev/null 2> err || bad "ppo run with eval.pretrain_text"
{ cat held.txt; printf '<|endoftext|>'; } | "$B/rlhf" tokenizer encode tok --special |
    tr -s ' \n' '\n' > held.ids
head -n 33 held.ids > w1.ids; sed -n '33,65p' held.ids > w2.ids
two_windows() {   # the mean loss of CKPT on the two windows
    a=$("$B/rlhf" eval "$1" --ids w1.ids 2> /dev/null | sed -n 's/^loss //p')
    b=$("$B/rlhf" eval "$1" --ids w2.ids 2> /dev/null | sed -n 's/^loss //p')
    awk -v a="$a" -v b="$b" 'BEGIN { if (a != "" && b != "") printf "%.6f", (a + b) / 2 }'
}
p0=$(metric pl/workspace.db valid/pretrain_loss 0); p2=$(metric pl/workspace.db valid/pretrain_loss 2)
p3=$(metric pl/workspace.db valid/pretrain_loss 3); p1=$(metric pl/workspace.db valid/pretrain_loss 1)
w0=$(two_windows pre/best); w3=$(two_windows pl/policy)
[ "$p1" = none ] && [ "$p2" != none ] && close "$p0" "$w0" 1e-5 && close "$p3" "$w3" 1e-5 &&
    grep -q "^ppo: iteration 3: pretraining loss [0-9.]*$" err &&
    ok "ppo: valid/pretrain_loss at iterations 0, 2 and 3 ($p0 -> $p3) equals rlhf eval's ($w0 -> $w3)" ||
        bad "ppo pretraining loss: $p0 $p1 $p2 $p3, rlhf eval $w0 $w3"
expect_fail "a missing eval.pretrain_text is named" 1 "^ppo: eval.pretrain_text" "$B/ppo" \
    -c ppo.yaml --set out.dir=o7 --set eval.pretrain_text=nope.txt

# 3. kill -9 at a random moment, rerun: the same result as the uninterrupted run
cat > long.yaml <<'YAML'
model: {policy: pre/best, reward: rm}
out: {dir: full}
data: {prompts: [prompts.jsonl], prompt_template: "{prompt}"}
rollout: {batch_size: 8, max_new_tokens: 12}
ppo: {minibatch_size: 4, epochs: 2}
ptx: {coef: 1, data: [corpus.txt], batch_size: 4, seq_len: 32}
kl: {beta: 0.1, controller: adaptive, target: 1, horizon: 200}
train: {iterations: 40, policy_lr: 2e-3, value_lr: 3e-3, ema: 0.9}
save: {every: 1}
YAML
"$B/ppo" -c long.yaml > /dev/null 2> err || bad "uninterrupted long run"
sed 's/dir: full/dir: killed/' long.yaml > killed.yaml
killed=0
for delay in 1.0 1.5 0.7 2.5 0.4; do
    rm -rf killed
    "$B/ppo" -c killed.yaml > /dev/null 2>&1 &
    pid=$!
    sleep $delay
    if kill -9 $pid 2>/dev/null; then
        wait $pid 2>/dev/null
        if [ -d killed/last ] || [ -d killed/last.old ]; then killed=1; break; fi
    else wait $pid 2>/dev/null; fi
done
"$B/ppo" -c killed.yaml > /dev/null 2> err
at=$(sed -n 's/.*resuming run [0-9]* at iteration \([0-9]*\).*/\1/p' err)
same=1
for f in last/policy/model.safetensors last/policy/trainer_state.safetensors last/value/model.safetensors \
         last/value/trainer_state.safetensors last/ema/model.safetensors \
             policy/model.safetensors; do
    cmp -s "full/$f" "killed/$f" || { same=0; echo "    differs: $f"; }
done
if [ $killed -eq 1 ] && grep -q "resuming run" err && [ $same -eq 1 ]; then
    ok "kill -9 (resumed at iteration $at of 40): policy, value, moments, EMA and result bit-identical to the uninterrupted run"
else bad "kill/resume (killed=$killed same=$same)"; fi
python3 - full/workspace.db killed/workspace.db > out 2>err <<'PY' && ok "after kill and resume: one run, done, rollouts and metrics equal to the uninterrupted run's" || bad "db after resume: $(cat out)"
import sqlite3, sys
a, b = (sqlite3.connect(p) for p in sys.argv[1:3])
for db in (a, b):
    assert db.execute("pragma integrity_check").fetchone()[0] == "ok"
    assert db.execute("select status from runs").fetchall() == [("done",)]
q = "select iteration, prompt, response, score, reward, kl, response_tokens, ended from rollouts order by iteration, id"
ra, rb = a.execute(q).fetchall(), b.execute(q).fetchall()
print(len(ra), len(rb))
assert len(ra) == 320 and ra == rb
q = "select name, step, value from metrics where name like 'ppo/%' order by name, step"
assert a.execute(q).fetchall() == b.execute(q).fetchall()
PY

# a crash between "last -> last.old" and "last.tmp -> last" (plus a half-written last.tmp): the next
# start puts last.old back and removes the garbage
mv killed/last killed/last.old && mkdir -p killed/last.tmp.999/policy &&
    echo x > killed/last.tmp.999/policy/config.json
"$B/ppo" -c killed.yaml > /dev/null 2> err && grep -q "resuming run 1 at iteration 40" err &&
    [ -d killed/last ] &&
    [ ! -e killed/last.old ] && [ ! -e killed/last.tmp.999 ] &&
        cmp -s full/policy/model.safetensors killed/policy/model.safetensors &&
    ok "an interrupted checkpoint save is repaired on the next start (last.old restored, last.tmp.* removed)" ||
        bad "checkpoint group recovery"

# 4. the NaN/Inf guard: skipped minibatches, then a stop that keeps the last good checkpoint
expect_fail "NaN guard: 3 bad minibatches in a row stop the run (exit 1), message says what happened" 1 "minibatches in a row had a NaN" \
    "$B/ppo" -c ppo.yaml --set out.dir=nan --set save.every=1 --set debug.nan_from_iteration=3
n=$(grep -c "skipped: policy loss nan" "$W/err")
it=$(python3 -c "import json; print(json.load(open('nan/last/policy/trainer_state.json'))['ints']['iteration'])")
[ "$n" -eq 3 ] && [ "$it" = "2" ] && grep -q "restored the last good checkpoint" "$W/err" &&
    [ ! -e nan/policy ] &&
    ok "NaN guard: 3 warnings, last/ still holds iteration 2, no result written" ||
        bad "NaN guard (warnings $n, last/ iteration $it)"

# rerun after the guard stopped: resumes from last/ (iteration 2), removes the rollouts of iteration 3
# (recorded after that checkpoint) and redoes it; the result equals an uninterrupted run's
"$B/ppo" -c ppo.yaml --set out.dir=nan2 --set save.every=2 --set train.iterations=5 \
    --set debug.nan_from_iteration=4 > /dev/null 2>&1
"$B/ppo" -c ppo.yaml --set out.dir=nan2 --set save.every=2 \
    --set train.iterations=5 > /dev/null 2> err
grep -q "resuming run 1 at iteration 2 .*rollouts of the redone iterations removed" err ||
    bad "resume after the guard: $(head -c 300 err)"
"$B/ppo" -c ppo.yaml --set out.dir=ref5 --set save.every=2 --set train.iterations=5 > /dev/null 2>&1
python3 - ref5/workspace.db nan2/workspace.db > out 2>&1 <<'PY' && cmp -s ref5/policy/model.safetensors nan2/policy/model.safetensors &&
import sqlite3, sys
a, b = (sqlite3.connect(p) for p in sys.argv[1:3])
q = "select iteration, prompt, response, score, kl from rollouts order by iteration, id"
ra, rb = a.execute(q).fetchall(), b.execute(q).fetchall()
print(len(ra), len(rb))
assert len(ra) == 80 and ra == rb
PY
    ok "resumed after the guard: redone iterations' rollouts replaced, result equal to an uninterrupted run" ||
        bad "resume after the guard: $(cat out)"

# 5. prompts from the workspace database (data.format db): rollouts point at their prompt rows
expect_fail "data.format db on a workspace without prompts" 1 "has none in the train split" \
    "$B/ppo" -c ppo.yaml --set out.dir=dbrun --set data.format=db --set workspace=ws.db
python3 - ws.db <<'PY'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1])
for i in range(12):
    db.execute("insert into prompts(text, split, source, created) values (?, ?, 'test', ?)",
               (f"What is {i} plus {i % 5}?", "valid" if i % 4 == 3 else "train", time.time()))
db.commit()
PY
"$B/ppo" -c ppo.yaml --set out.dir=dbrun --set data.format=db --set workspace=ws.db \
    --set train.iterations=2 > out 2> err &&
python3 - ws.db > out 2>&1 <<'PY' && ok "prompts from the workspace (train split only), rollouts linked to prompt rows" || bad "data.format db: $(cat out)"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
n, linked, bad = db.execute("select count(*), count(r.prompt_id), sum(p.split != 'train' or r.prompt != p.text) "
                            "from rollouts r left join prompts p on p.id = r.prompt_id").fetchone()
print(n, linked, bad)
assert n == 32 and linked == 32 and bad == 0
PY

# 6. bad inputs
expect_fail "a memory plan that does not fit is refused, saying what to change" 1 "memory plan needs.*ppo.minibatch_size" \
    "$B/ppo" -c ppo.yaml --set out.dir=o1 --set memory.limit_gb=0.0001
expect_fail "a reward model without a score head" 1 "no score head" "$B/ppo" -c ppo.yaml \
    --set out.dir=o2 --set model.reward=pre/best
printf '{"prompt": "What is 1 plus 2?"}\n{"promt": "x"}\n' > bad.jsonl
expect_fail "a bad prompt line names file and line" 1 "bad.jsonl:2" "$B/ppo" -c ppo.yaml \
    --set out.dir=o3 --set data.prompts=bad.jsonl
printf '{"prompt": [{"role": "user", "content": "What is 1 plus 2?"}]}\n{"messages": [{"role": "bot", "content": "x"}]}\n' > bad2.jsonl
expect_fail "prompts as message lists; a bad role names file and line" 1 \
    "bad2.jsonl:2: messages\[0\].role must be" "$B/ppo" -c ppo.yaml --set out.dir=o3 \
    --set data.prompts=bad2.jsonl
expect_fail "ptx on without pretraining data" 1 "ptx.data" "$B/ppo" -c ppo.yaml --set out.dir=o4 \
    --set ptx.coef=27.8 --set ptx.data=
expect_fail "rollout batch not a multiple of the minibatch" 1 "multiple of ppo.minibatch_size" \
    "$B/ppo" -c ppo.yaml --set out.dir=o5 --set rollout.batch_size=10
expect_fail "a missing policy checkpoint" 1 "nope" "$B/ppo" -c ppo.yaml --set out.dir=o6 \
    --set model.policy=nope
printf 'ppo: {clip: wide}\n' > badcfg.yaml
expect_fail "a wrong type in the config names file:line:column" 1 "badcfg.yaml:1:" \
    "$B/ppo" -c badcfg.yaml
expect_fail "resuming into another configuration is refused" 1 "another configuration" \
    "$B/ppo" -c ppo.yaml --set kl.beta=0.3
lib_summary
