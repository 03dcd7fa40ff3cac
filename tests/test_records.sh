#!/bin/sh
# The records task family (data/records/: Python programs outside the rlhf tool) and its
# pipeline: the generator is deterministic and its prompt sets disjoint; the judge and the scorer
# answer their protocols line by line (malformed lines too); `reward label --source --judge`
# drives the judge through the real protocol on a tiny untrained policy, with the
# demonstrations imported but not queued; `rlhf eval-policy --judge --score` judges and scores
# two policies with the family's programs; pipelines/records.yaml passes
# `rlhf run --dry-run` with its gates and pretraining mix. A few seconds.
. "$PWD/tests/lib.sh"
export OMP_NUM_THREADS=1
lib_workspace
REC="$ROOT/data/records"
PY=python3
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }

# 1. determinism, sizes and disjoint splits
SMALL="--n-pretrain 200 --n-valid 20 --n-sft 300 --n-rm 100 --n-ppo 100 --n-eval 50"
for run in a:5 b:5 c:6; do
    $PY "$REC/make_data.py" --out "$W/${run%:*}" --seed "${run#*:}" $SMALL 2>/dev/null ||
        bad "make_data.py --seed ${run#*:}"
done
same=1
for f in pretrain.txt pretrain_valid.txt sft.jsonl sft_prompts.jsonl rm_prompts.jsonl \
         ppo_prompts.jsonl eval_prompts.jsonl; do
    cmp -s "$W/a/$f" "$W/b/$f" || same=0
done
check "same seed gives identical files" "[ $same = 1 ]"
check "another seed gives other files" "! cmp -s $W/a/sft.jsonl $W/c/sft.jsonl"
check "sizes as asked" "[ \$(wc -l < $W/a/sft.jsonl) = 300 ] && \
    [ \$(wc -l < $W/a/eval_prompts.jsonl) = 50 ] && \
    [ \$(grep -c '<|endoftext|>' $W/a/pretrain.txt) = 200 ]"
$PY - "$W/a" "$REC" > "$W/split.out" <<'EOF'
import json, sys, itertools
d = sys.argv[1]
sys.path.insert(0, sys.argv[2])
import recordtasks as rt
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
check "prompt sets disjoint, in their splits, answers recomputed, no eval question in pretraining" \
    "grep -q disjoint $W/split.out"
check "a bad --mix is refused" "! $PY $REC/make_data.py --out $W/x --mix 50,50 2>/dev/null"

# 2. the judge: one reply per request line, in order, ranking correct first, then short
cat > "$W/req" <<'EOF'
{"prompt_id": 1, "prompt": "name: Ada Hill; city: Riga; age: 43\nWhat is the city?", "completions": ["Sure! The answer is Riga.", "Oslo", "Riga", "Riga\nHuman: What is the age?"], "ended": [true, true, true, false]}

not json
{"prompt": "What is 2 plus 3?", "completions": ["5", "6"]}
{"prompt": "Human: name: Ada Hill; city: Riga; age: 43\nname: Ben Cole; city: Lyon; age: 26\nWho is the youngest?\n\nAssistant:", "completions": ["Ada Hill", "Ben Cole"]}
EOF
$PY "$REC/judge.py" < "$W/req" > "$W/rep" 2>"$W/jerr"; rc=$?
check "judge exits 1 after a malformed line" "[ $rc = 1 ] && grep -q 'stdin:3' $W/jerr"
check "judge: one reply per non-blank line" "[ \$(wc -l < $W/rep) = 4 ]"
check "judge ranks correct, then short, then clean" \
    "sed -n 1p $W/rep | grep -q '\"ranking\": \[2, 4, 1, 3\]'"
check "judge skips a malformed line and a prompt of another family" \
    "[ \"\$(sed -n 2p $W/rep)\" = skip ] && [ \"\$(sed -n 3p $W/rep)\" = skip ]"
check "judge reads a rendered prompt" "sed -n 4p $W/rep | grep -q '\"ranking\": \[2, 1\]'"
n1=$($PY - "$REC" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
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
check "judge refuses --noise 0.9" "! $PY $REC/judge.py --noise 0.9 < /dev/null 2>/dev/null"

# 3. the scorer: one number per line
printf '%s\n' '{"prompt": "name: Ada Hill; city: Riga; age: 43\nReformat as: Surname, First (age).", "completion": "Here is the answer: Hill, Ada (43). Have a nice day!"}' \
    '{"prompt": "name: Ada Hill; city: Riga; age: 43\nHow old is this person?", "response": "44"}' \
    '' '{"prompt": 3}' | $PY "$REC/score.py" > "$W/score" 2>/dev/null; rc=$?
check "scorer: 1, 0, nan for a malformed line, exit 1" \
    "[ \"\$(tr '\n' ' ' < $W/score)\" = '1 0 nan ' ] && [ $rc = 1 ]"

# 4. the rlhf tools with the family's programs, on a tiny untrained policy
"$R" tokenizer train --vocab-size 400 --out "$W/tok" "$W/a/pretrain.txt" >/dev/null 2>&1
"$R" init --preset tiny --n-layer 1 --n-head 2 --n-embd 32 --n-positions 128 \
    --tokenizer "$W/tok" --seed 3 --out "$W/pol" >/dev/null 2>&1 || bad "rlhf init"
# the pipeline's prompts stage: rm prompts and demonstrations; only the rm prompts are labeled
"$B/reward" import --workspace "$W/ws.db" --valid-percent 20 "$W/a/rm_prompts.jsonl" \
    "$W/a/sft.jsonl" >/dev/null 2>&1 || bad "reward import"
"$B/reward" label --workspace "$W/ws.db" --labeler judge --source rm_prompts.jsonl \
    --judge "$PY $REC/judge.py --noise 0.1 --seed 3" \
    --policy "$W/pol" --k 4 --max-new 8 --limit 5 --seed 3 > "$W/label.out" 2>&1; rc=$?
check "reward label --source --judge judge.py ranks 5 rm prompts" \
    "[ $rc = 0 ] && grep -q '5 rankings saved' $W/label.out"
$PY "$REC/diagnose.py" --workspace "$W/ws.db" > "$W/diag" 2>&1
check "diagnose.py reads the rankings" "grep -q 'rankings 5' $W/diag"
check "no demonstration's prompt was ranked" "$PY - $W/ws.db $W/a/sft_prompts.jsonl <<'EOF'
import json, sqlite3, sys
demo = set(json.loads(l)['prompt'] for l in open(sys.argv[2]))
db = sqlite3.connect(sys.argv[1])
ranked = [r[0] for r in db.execute(
    'SELECT p.text FROM prompts p WHERE p.id IN (SELECT prompt_id FROM rankings)')]
sys.exit(not (len(ranked) == 5 and not demo & set(ranked)))
EOF"
# rlhf eval-policy with the family's judge and scorer: a policy against itself wins half
"$R" eval-policy --a "$W/pol" --b "$W/pol" --prompts "$W/a/eval_prompts.jsonl" --max-new 8 \
    --max-prompts 20 --judge "$PY $REC/judge.py" --score "$PY $REC/score.py" --json \
    > "$W/ep.json" 2>"$W/err"; rc=$?
check "eval-policy --judge judge.py --score score.py: a policy against itself, win rate 0.5" \
    "[ $rc = 0 ] && $PY -c 'import json,sys; d=json.load(open(sys.argv[1])); \
sys.exit(not (abs(d[\"win_rate\"] - 0.5) < 1e-9))' $W/ep.json"

# 5. the pipeline file: valid, every stage planned, both gates shown, paths from pipelines/
"$R" run "$ROOT/pipelines/records.yaml" --dry-run --set workspace="$W/rws" > "$W/plan" \
    2>"$W/err"; rc=$?
check "pipelines/records.yaml: --dry-run plans its 10 stages" \
    "[ $rc = 0 ] && [ \$(grep -c '^[a-z]* *run ' $W/plan) = 10 ]"
check "pipelines/records.yaml: gates on pretrain's loss and on the reward model's accuracy" \
    "grep -q 'gate *pretrain: valid/loss <=' $W/plan && \
     grep -q 'gate *rm: valid/accuracy >= 0.7' $W/plan"
check "pipelines/records.yaml: the data and the judge named from the file's folder" \
    "grep -q '^data *run *python3 ../data/records/make_data.py' $W/plan && \
     grep -q \"judge 'python3 ../data/records/judge.py --noise 0.1 --seed 1234'\" $W/plan"
check "pipelines/records.yaml: SFT mixes pretraining text; SFT and PPO log its held-out loss" \
    "grep '^sft ' $W/plan | grep -q 'data.mix.weight=0.5' && \
     [ \$(grep -c 'eval.pretrain_text=.*pretrain_valid.txt' $W/plan) = 2 ]"

# 6. the methods comparison on this family: records.yaml's stages up to ppo (the same commands,
# so a workspace where records.yaml ran reuses them), then grpo, rloo, dpo, ipo, each evaluated
"$R" run "$ROOT/pipelines/records-methods.yaml" --dry-run --set workspace="$W/rws" > "$W/mplan" \
    2>"$W/err"; rc=$?
check "pipelines/records-methods.yaml: --dry-run plans 18 stages, an eval-METHOD for each method" \
    "[ $rc = 0 ] && [ \$(grep -c '^[a-z-]* *run ' $W/mplan) = 18 ] && \
     (for m in ppo grpo rloo dpo ipo; do grep -q \"^eval-\$m *run .*--name eval-\$m\" $W/mplan || exit 1; done)"
check "pipelines/records-methods.yaml: data to ppo are records.yaml's stages, command for command" \
    "(for st in data tokenizer base pretrain sft prompts label rm ppo; do \
         [ \"\$(grep \"^\$st \" $W/plan)\" = \"\$(grep \"^\$st \" $W/mplan)\" ] || exit 1; done)"
check "pipelines/records-methods.yaml: grpo and rloo at records.yaml's kl.beta 0.2, the KL in the reward" \
    "[ \$(grep -E '^(grpo|rloo) ' $W/mplan | grep -c 'kl.beta=0.2') = 2 ] && ! grep -q kl.mode $W/mplan"
lib_summary
