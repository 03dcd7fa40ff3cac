#!/bin/sh
# Reduced precision in the programs: ppo with precision.sample / precision.frozen /
# precision.kv_cache, and --precision in rlhf generate, rlhf eval-policy, reward score and reward
# label --policy, on the tiny models of tests/ppo_fixture.sh.
#   - ppo in bf16 (sampling copy, frozen models, KV cache) runs, its memory plan shows the copies,
#     the sampling copy's refresh is timed and stored, the first minibatch's ratio is exactly 1
#     (old log-probs from the fp32 forward, not the sampling copy), and its statistics stay
#     close to the fp32 run's
#   - --precision decodes / scores close to fp32; bad values are one-line errors naming the key
. "$PWD/tests/lib.sh"
. "$TESTS/ppo_fixture.sh"
lib_workspace
export OMP_WAIT_POLICY=passive
cd "$W" || exit 1

ppo_fixture
ppo_config pre/best rm f32
"$B/ppo" -c ppo.yaml > /dev/null 2> err32 || bad "fp32 ppo run"
"$B/ppo" -c ppo.yaml --set out.dir=b16 --set precision.sample=bf16 --set precision.frozen=bf16 \
    --set precision.kv_cache=bf16 > /dev/null 2> err16 && [ -f b16/policy/model.safetensors ] &&
    ok "ppo with precision.sample, precision.frozen and precision.kv_cache bf16 completes" ||
    bad "bf16 ppo run: $(tail -3 err16)"
grep -q "sampling .*the policy's bf16 copy" err16 && grep -q "reference .*matrices in bf16" err16 &&
    grep -q "kv cache .*bf16" err16 && ! grep -q "sampling" err32 &&
    ok "memory plan: the sampling copy, the frozen models' bf16 matrices and the bf16 cache" ||
    bad "memory plan: $(grep 'ppo:  ' err16)"
python3 - err32 err16 > out 2>&1 <<'PY' && ok "memory plan: the frozen models smaller in bf16 ($(cat out))" || bad "frozen memory: $(cat out)"
import re, sys
units = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
def row(f, what):
    for line in open(f):
        m = re.match(r"ppo:\s+" + what + r"\s+([\d.]+) (\w+)", line)
        if m: return float(m.group(1)) * units[m.group(2)]
a, b = [row(f, "reference") for f in sys.argv[1:]]
c, d = [row(f, "reward") for f in sys.argv[1:]]
print(f"reference {a / 1024:.1f} -> {b / 1024:.1f} KiB, reward {c / 1024:.1f} -> {d / 1024:.1f} KiB")
assert b < a and d < c
PY
r1=$(metric b16/workspace.db ppo/first_ratio_dev 1); t1=$(metric b16/workspace.db time/sample_refresh_s 1)
n32=$(metric f32/workspace.db time/sample_refresh_s 1)
[ "$r1" = "0.0" ] && below 0 "$t1" && [ "$n32" = "none" ] &&
    ok "old log-probs from the fp32 forward (first ratio exactly 1); refresh timed ($t1 s), absent in fp32" ||
    bad "ratio dev $r1, refresh $t1, fp32 refresh $n32"
python3 - f32/workspace.db b16/workspace.db > out 2> err <<'PY' && ok "bf16 statistics close to fp32's ($(cat out))" || bad "bf16 vs fp32 statistics: $(cat out; tail -2 err)"
import sqlite3, sys
def m(db, n):
    return [v for (v,) in sqlite3.connect(db).execute(
        "select value from metrics where name=? order by step", (n,))]
a, b = sys.argv[1], sys.argv[2]
sa, sb = m(a, "ppo/score"), m(b, "ppo/score")
la, lb = (sa[-2] + sa[-1]) / 2, (sb[-2] + sb[-1]) / 2
kb = m(b, "ppo/kl")
print(f"score {sa[0]:.2f} -> {la:.2f} fp32, {sb[0]:.2f} -> {lb:.2f} bf16; "
      f"iteration-1 KL to the bf16 reference {kb[0]:.4f}")
# iteration 1 samples the same policy: scores near; the run rises as fp32's does; the reference's
# bf16 rounding alone costs little KL
assert len(sb) == 10 and abs(sa[0] - sb[0]) < 0.5 and lb > sb[0] + 0.5 and abs(la - lb) < 1.0
assert abs(kb[0]) < 0.1
PY

# bad values: one line naming the key
expect_fail "precision.sample fp16: refused naming the key" 1 "precision.sample" \
    "$B/ppo" -c ppo.yaml --set out.dir=bad --set precision.sample=fp16
[ "$(wc -l < err)" -eq 1 ] && ok "  ... in one line" || bad "precision.sample message: $(cat err)"
expect_fail "precision.kv_cache int8: refused naming the key" 1 "precision.kv_cache" \
    "$B/ppo" -c ppo.yaml --set out.dir=bad --set precision.kv_cache=int8

# rlhf generate
printf 'What is 3 plus 4?\nWhat is 12 plus 5?\nWhat is 1 plus 1?\n' > p.txt
for p in fp32 bf16 int8; do
    "$B/rlhf" generate pre/best --prompts p.txt --greedy --max-new 12 --precision $p > gen_$p 2> err ||
        bad "generate --precision $p: $(cat err)"
done
"$B/rlhf" generate pre/best --prompts p.txt --greedy --max-new 12 > gen_default 2> /dev/null
cmp -s gen_default gen_fp32 && [ -s gen_bf16 ] && [ -s gen_int8 ] &&
    ok "rlhf generate --precision: fp32 is the default's output, bf16 and int8 decode" ||
    bad "generate --precision outputs"
expect_fail "rlhf generate --precision fp16: one line naming --precision" 2 \
    "\-\-precision: unknown precision 'fp16'" \
    "$B/rlhf" generate pre/best --prompt hi --precision fp16

# reward score --input: narrow weights score within their rounding of fp32 (a random reward model:
# the crafted one's weights are exact in bf16 and int8)
"$B/rlhf" init --preset tiny --n-layer 2 --n-positions 48 --n-embd 32 --tokenizer tok --seed 8 \
    --score-head --no-lm-head --out rmr 2> /dev/null
printf '{"prompt": "What is 3 plus 4?", "completion": " 7"}\n{"prompt": "What is 1 plus 1?", "completion": " two"}\n' > c.jsonl
"$B/reward" score rmr --input c.jsonl > s32 2> /dev/null &&
    "$B/reward" score rmr --input c.jsonl --precision bf16 > s16 2> /dev/null &&
    "$B/reward" score rmr --input c.jsonl --precision int8 > s8 2> /dev/null &&
    python3 - s32 s16 s8 > out 2>&1 <<'PY' && ok "reward score --precision bf16 / int8: scores within 2% of fp32's scale ($(cat out))" || bad "reward score --precision: $(cat out)"
import json, sys
s = [[json.loads(l)["score"] for l in open(f)] for f in sys.argv[1:]]
scale = max(abs(v) for v in s[0]) or 1.0
d = [max(abs(x - y) for x, y in zip(s[0], t)) / scale for t in s[1:]]
print(f"relative differences bf16 {d[0]:.2g}, int8 {d[1]:.2g}")
assert len(s[1]) == len(s[0]) == 2 and d[0] < 0.02 and d[1] < 0.02 and d[0] > 0
PY

# reward label: --precision needs --policy
expect_fail "reward label --precision without --policy: refused" 1 "\-\-precision needs --policy" \
    "$B/reward" label --workspace x.db --labeler me --precision bf16

# rlhf eval-policy with --precision (the policies sample from int8 copies, --reward scores in int8)
sums 6 "$SUM_PROMPT" > ep.jsonl
"$B/rlhf" eval-policy --a pre/best --b pre/best --prompts ep.jsonl --reward rm --greedy \
    --max-new 8 --judge "python3 $FIX/eval_judge.py longer j.log" --score \
    "python3 $FIX/eval_score.py len" --precision int8 > out 2> err &&
    ok "rlhf eval-policy --precision int8 runs" || bad "eval-policy --precision: $(tail -2 err)"
lib_summary
