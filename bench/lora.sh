#!/bin/sh
# LoRA against full fine-tuning on the GPT-2 124M shape (random weights, the GPT-2 tokenizer), in
# one run: PPO's planned memory and measured peak RSS (policy + reference on one frozen base,
# reward + value on another, r=16 on c_attn, c_proj, c_fc), the PPO iteration time, the SFT step
# time, PPO's rollouts with the adapters unmerged against a merged sampling copy, and PPO with the
# bases stored in bf16 and in int8 (lora.base_dtype bfloat16, int8) against float32 bases. Small
# shapes (a few tokens) so that it runs in about 3 minutes on 2 cores: the memory figures are what
# the issue bounds (LoRA <= 0.5x full); the times are for the comparison within this run.
# Prints RESULT lines (bench/run_bench.py --only lora).
BUILD=${1:-build}
ROOT=$PWD
B="$ROOT/$BUILD/bin"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W" || exit 1
"$B/rlhf" init --preset gpt2 --tokenizer "$ROOT/data/gpt2" --out policy >/dev/null 2>&1 &&
    "$B/rlhf" init --preset gpt2 --tokenizer "$ROOT/data/gpt2" --score-head --no-lm-head \
        --seed 7 --out rm >/dev/null 2>&1 || exit 1
for i in 1 2 3 4 5 6 7 8; do echo "{\"prompt\": \"Question $i: what is $i plus $i?\"}"; done \
    > prompts.jsonl
cat /usr/share/common-licenses/GPL-3 > corpus.txt 2>/dev/null || cp "$ROOT/README.md" corpus.txt
cat > ppo.yaml <<'YAML'
model: {policy: policy, reward: rm}
data: {prompts: [prompts.jsonl], prompt_template: "{prompt}"}
rollout: {batch_size: 2, max_new_tokens: 8, temperature: 1.0}
ppo: {minibatch_size: 2, epochs: 1}
ptx: {coef: 0}
train: {iterations: 2}
save: {every: 1000}
YAML
metric() {   # mean of a metric over the iterations after the first
    python3 -c "import sqlite3,sys; r=[v for (v,) in sqlite3.connect(sys.argv[1]).execute(
        'select value from metrics where name=? and step>1', (sys.argv[2],))]
print(sum(r)/len(r))" "$1/workspace.db" "$2"
}
rss() {
    python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(
        \"select value from metrics where name='run/peak_rss_bytes'\").fetchone()[0] / 2**20)" \
        "$1/workspace.db"
}
plan() { sed -n 's/^ppo:   total *\([0-9.]*\) \([KMG]\)iB.*/\1 \2/p' "$1" |
    awk '{ m = $2 == "G" ? 1024 : $2 == "K" ? 1 / 1024 : 1; printf "%.1f", $1 * m }'; }
iter() {   # seconds per iteration after the first (time/iteration: generation, scoring, training)
    metric "$1" time/iteration
}
result() {
    echo "RESULT {\"name\": \"$1\", \"value\": $2, \"unit\": \"$3\", \"ref_name\": \"$4\", \"ref_value\": $5, \"ratio\": $(awk -v a="$2" -v b="$5" 'BEGIN{printf "%.3f", a/b}')}"
}
"$B/ppo" -c ppo.yaml --set out.dir=full > /dev/null 2> full.err || { tail -3 full.err >&2; exit 1; }
"$B/ppo" -c ppo.yaml --set out.dir=lora --set lora.r=16 --set lora.alpha=32 > /dev/null \
    2> lora.err || { tail -3 lora.err >&2; exit 1; }
"$B/ppo" -c ppo.yaml --set out.dir=merged --set lora.r=16 --set lora.alpha=32 \
    --set lora.sample=merged > /dev/null 2> merged.err || { tail -3 merged.err >&2; exit 1; }
"$B/ppo" -c ppo.yaml --set out.dir=bf16 --set lora.r=16 --set lora.alpha=32 \
    --set lora.base_dtype=bfloat16 > /dev/null 2> bf16.err || { tail -3 bf16.err >&2; exit 1; }
"$B/ppo" -c ppo.yaml --set out.dir=int8 --set lora.r=16 --set lora.alpha=32 \
    --set lora.base_dtype=int8 > /dev/null 2> int8.err || { tail -3 int8.err >&2; exit 1; }
result "ppo gpt2 LoRA r=16 memory plan" "$(plan lora.err)" MiB "full ppo" "$(plan full.err)"
result "ppo gpt2 LoRA r=16 bf16 base memory plan" "$(plan bf16.err)" MiB "float32 base" \
    "$(plan lora.err)"
result "ppo gpt2 LoRA r=16 bf16 base peak RSS" "$(rss bf16)" MiB "float32 base" "$(rss lora)"
result "ppo gpt2 LoRA r=16 bf16 base iteration time" "$(iter bf16)" s "float32 base" \
    "$(iter lora)"
result "ppo gpt2 LoRA r=16 int8 base memory plan" "$(plan int8.err)" MiB "float32 base" \
    "$(plan lora.err)"
result "ppo gpt2 LoRA r=16 int8 base peak RSS" "$(rss int8)" MiB "float32 base" "$(rss lora)"
result "ppo gpt2 LoRA r=16 int8 base iteration time" "$(iter int8)" s "float32 base" \
    "$(iter lora)"
result "ppo gpt2 LoRA r=16 peak RSS" "$(rss lora)" MiB "full ppo" "$(rss full)"
result "ppo gpt2 LoRA r=16 iteration time" "$(iter lora)" s "full ppo" "$(iter full)"
result "ppo gpt2 LoRA rollouts unmerged gen tok/s" "$(metric lora speed/gen_tokens_per_s)" tok/s \
    "merged sampling copy" "$(metric merged speed/gen_tokens_per_s)"
for k in lora full; do
    set -- --set model.init=policy --set out.dir=sft_$k --set data.format=text \
        --set 'data.train=[corpus.txt]' --set train.batch_size=1 --set train.seq_len=64 \
        --set train.steps=3 --set eval.every=100000 --set log.every=1000
    [ $k = lora ] && set -- "$@" --set lora.r=16 --set lora.alpha=32
    "$B/sft" "$@" > /dev/null 2> sft_$k.err || { tail -3 sft_$k.err >&2; exit 1; }
done
# seconds per step: the "trained N steps ... in S s" line
step() { sed -n 's/.*trained \([0-9]*\) steps, .* in \([0-9.]*\) s.*/\1 \2/p' "$1" |
    awk '{ printf "%.3f", $2 / $1 }'; }
result "sft gpt2 B=1 T=64 LoRA r=16 step time" "$(step sft_lora.err)" s "full sft" \
    "$(step sft_full.err)"
