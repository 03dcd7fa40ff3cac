#!/bin/sh
# A Qwen2.5-0.5B-shaped policy (random weights, 494M parameters, vocabulary 151936) through PPO
# with LoRA on a machine the size of a laptop: the memory plan of full PPO (policy, reference,
# reward and value all whole models: refused above memory.limit_gb, 24 GiB by default) against
# LoRA r=16 (policy and reference on one frozen base, value and reward on a second), then one LoRA
# iteration with tiny shapes (2 rollouts, 8 new tokens), its measured peak RSS. Not part of
# `make test` (minutes, and ~5 GiB of memory). Usage: sh bench/qwen_lora_ppo.sh [BUILD] [LIMIT_GB]
BUILD=${1:-build}
LIMIT=${2:-24}
ROOT=$PWD
B="$ROOT/$BUILD/bin"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W" || exit 1
echo "qwen_lora_ppo: writing two random Qwen2.5-0.5B-shaped checkpoints in $W" >&2
"$B/rlhf" init --preset qwen2.5-0.5b --vocab-size 151936 --tokenizer "$ROOT/data/gpt2" \
    --out policy >/dev/null 2>&1 &&
    "$B/rlhf" init --preset qwen2.5-0.5b --vocab-size 151936 --tokenizer "$ROOT/data/gpt2" \
        --score-head --no-lm-head --seed 7 --out rm >/dev/null 2>&1 || exit 1
for i in 1 2 3 4; do echo "{\"prompt\": \"Question $i: what is $i plus $i?\"}"; done \
    > prompts.jsonl
cat > ppo.yaml <<YAML
model: {policy: policy, reward: rm}
data: {prompts: [prompts.jsonl], prompt_template: "{prompt}"}
rollout: {batch_size: 2, max_new_tokens: 8}
ppo: {minibatch_size: 1, epochs: 1}
ptx: {coef: 0}
train: {iterations: 1}
memory: {limit_gb: $LIMIT}
YAML
echo "== full PPO (every model whole) ==" >&2
"$B/ppo" -c ppo.yaml --set out.dir=full 2>&1 | grep "^ppo:  \|memory plan\|needs" >&2
echo "== LoRA r=16 ==" >&2
/usr/bin/time -v "$B/ppo" -c ppo.yaml --set out.dir=lora --set lora.r=16 --set lora.alpha=32 \
    > lora.out 2>&1
rc=$?
grep "^ppo:  \|memory plan\|iter 1/1\|done\|trained\|Maximum resident" lora.out >&2
exit $rc
