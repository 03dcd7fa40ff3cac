#!/bin/sh
# Checks of the records family's programs: BUILD=build sh data/records/test_records.sh
# (from the repository root; a few seconds). The generator is deterministic and its prompt sets
# disjoint; the judge and the scorer answer their protocols line by line (malformed lines too);
# `reward label --judge` drives the judge through the real protocol on a tiny untrained policy;
# evaluate.py judges and scores two policies.
set -u
BUILD=${BUILD:-build}
R=data/records
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok: $1"; }
bad() { fail=$((fail + 1)); echo "FAIL: $1"; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }

# 1. determinism, sizes and disjoint splits
SMALL="--n-pretrain 200 --n-valid 20 --n-sft 300 --n-rm 100 --n-ppo 100 --n-eval 50"
python3 $R/make_data.py --out "$T/a" --seed 5 $SMALL 2>/dev/null
python3 $R/make_data.py --out "$T/b" --seed 5 $SMALL 2>/dev/null
python3 $R/make_data.py --out "$T/c" --seed 6 $SMALL 2>/dev/null
same=1
for f in pretrain.txt pretrain_valid.txt sft.jsonl sft_prompts.jsonl rm_prompts.jsonl \
         ppo_prompts.jsonl eval_prompts.jsonl; do
    cmp -s "$T/a/$f" "$T/b/$f" || same=0
done
check "same seed gives identical files" "[ $same = 1 ]"
check "another seed gives other files" "! cmp -s $T/a/sft.jsonl $T/c/sft.jsonl"
check "sizes as asked" "[ \$(wc -l < $T/a/sft.jsonl) = 300 ] && \
    [ \$(wc -l < $T/a/eval_prompts.jsonl) = 50 ] && \
    [ \$(grep -c '<|endoftext|>' $T/a/pretrain.txt) = 200 ]"
python3 - "$T/a" > "$T/split.out" <<'EOF'
import json, sys, itertools
sys.path.insert(0, "data/records")
import recordtasks as rt
d = sys.argv[1]
sets = {}
for name, split in (("sft_prompts", "sft"), ("rm_prompts", "rm"), ("ppo_prompts", "ppo"),
                    ("eval_prompts", "eval")):
    rows = [json.loads(l) for l in open("%s/%s.jsonl" % (d, name))]
    assert all(rt.split_of(r["prompt"]) == split for r in rows), name
    assert all(rt.parse(r["prompt"]) is not None for r in rows), name
    sets[name] = set(r["prompt"] for r in rows)
for a, b in itertools.combinations(sets, 2):
    assert not sets[a] & sets[b], (a, b)
for r in (json.loads(l) for l in open(d + "/eval_prompts.jsonl")):
    assert rt.parse(r["prompt"]).answer == r["answer"]
text = open(d + "/pretrain.txt").read()
assert not any("Question: " + p + "\n" in text for p in sets["eval_prompts"])
print("disjoint")
EOF
check "prompt sets disjoint, each in its split, answers recomputed, no eval question in pretraining" \
    "grep -q disjoint $T/split.out"
check "a bad --mix is refused" "! python3 $R/make_data.py --out $T/x --mix 50,50 2>/dev/null"

# 2. the judge: one reply per request line, in order, ranking correct first, then short
cat > "$T/req" <<'EOF'
{"prompt_id": 1, "prompt": "name: Ada Hill; city: Riga; age: 43\nWhat is the city?", "completions": ["Sure! The answer is Riga.", "Oslo", "Riga", "Riga\nHuman: What is the age?"], "ended": [true, true, true, false]}

not json
{"prompt": "What is 2 plus 3?", "completions": ["5", "6"]}
{"prompt": "Human: name: Ada Hill; city: Riga; age: 43\nname: Ben Cole; city: Lyon; age: 26\nWho is the youngest?\n\nAssistant:", "completions": ["Ada Hill", "Ben Cole"]}
EOF
python3 $R/judge.py < "$T/req" > "$T/rep" 2>"$T/err"; rc=$?
check "judge exits 1 after a malformed line" "[ $rc = 1 ] && grep -q 'stdin:3' $T/err"
check "judge: one reply per non-blank line" "[ \$(wc -l < $T/rep) = 4 ]"
check "judge ranks correct, then short, then clean" \
    "sed -n 1p $T/rep | grep -q '\"ranking\": \[2, 4, 1, 3\]'"
check "judge skips a malformed line and a prompt of another family" \
    "[ \"\$(sed -n 2p $T/rep)\" = skip ] && [ \"\$(sed -n 3p $T/rep)\" = skip ]"
check "judge reads a rendered prompt" "sed -n 4p $T/rep | grep -q '\"ranking\": \[2, 1\]'"
n1=$(python3 - <<'EOF'
import sys
sys.path.insert(0, "data/records")
import recordtasks as rt
p = "name: Ada Hill; city: Riga; age: 43\nWhat is the city?"
c = ["Riga", "Sure! Riga.", "Riga. I hope this helps!", "Oslo"]
same = sum(rt.rank(p, c, noise=0.2, seed=s) == rt.rank(p, c, noise=0.2, seed=s) for s in range(50))
clean = sum(rt.rank(p, c, noise=0.2, seed=s) == rt.rank(p, c) for s in range(200))
print(same, clean)
EOF
)
check "judge noise: a function of the seed, and it reorders some rankings ($n1)" \
    "[ \"\${n1% *}\" = 50 ] && [ \${n1#* } -lt 200 ] && [ \${n1#* } -gt 20 ]"
check "judge refuses --noise 0.9" "! python3 $R/judge.py --noise 0.9 < /dev/null 2>/dev/null"

# 3. the scorer: one number per line
printf '%s\n' '{"prompt": "name: Ada Hill; city: Riga; age: 43\nReformat as: Surname, First (age).", "completion": "Here is the answer: Hill, Ada (43). Have a nice day!"}' \
    '{"prompt": "name: Ada Hill; city: Riga; age: 43\nHow old is this person?", "response": "44"}' '' '{"prompt": 3}' \
    | python3 $R/score.py > "$T/score" 2>/dev/null; rc=$?
check "scorer: 1, 0, nan for a malformed line, exit 1" \
    "[ \"\$(tr '\n' ' ' < $T/score)\" = '1 0 nan ' ] && [ $rc = 1 ]"

# 4. reward label --judge drives the judge through the real protocol
RL=$BUILD/bin/rlhf
if [ -x "$RL" ] && [ -x "$BUILD/bin/reward" ]; then
    $RL tokenizer train --vocab-size 400 --out "$T/tok" "$T/a/pretrain.txt" >/dev/null 2>&1
    $RL init --preset tiny --n-layer 1 --n-head 2 --n-embd 32 --n-positions 128 \
        --tokenizer "$T/tok" --seed 3 --out "$T/pol" >/dev/null 2>&1
    $BUILD/bin/reward import --workspace "$T/ws.db" "$T/a/rm_prompts.jsonl" >/dev/null 2>&1
    $BUILD/bin/reward label --workspace "$T/ws.db" --labeler judge \
        --judge "python3 $R/judge.py --noise 0.1 --seed 3" \
        --policy "$T/pol" --k 4 --max-new 8 --limit 5 --seed 3 > "$T/label.out" 2>&1; rc=$?
    check "reward label --judge with judge.py ranks 5 prompts" \
        "[ $rc = 0 ] && grep -q '5 rankings saved' $T/label.out"
    python3 $R/diagnose.py --workspace "$T/ws.db" > "$T/diag" 2>&1
    check "diagnose.py reads the rankings" "grep -q 'rankings 5' $T/diag"
    python3 $R/evaluate.py --rlhf "$RL" --a "$T/pol" --b "$T/pol" \
        --prompts "$T/a/eval_prompts.jsonl" --max-new 8 \
        --out "$T/eval.json" > "$T/eval.out" 2>&1; rc=$?
    check "evaluate.py: a policy against itself wins exactly half" \
        "[ $rc = 0 ] && grep -q '\"win_rate\": 0.5,' $T/eval.json"
else
    bad "$BUILD/bin/rlhf and $BUILD/bin/reward are needed (make)"
fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
