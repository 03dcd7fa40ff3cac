#!/bin/sh
# LoRA adapters in the training programs (lora.* keys) on tiny GPT-2 and Llama-style models: the
# first loss with fresh adapters (B = 0) is exactly the full model's, the base stays frozen, the
# checkpoints are PEFT adapter directories that `rlhf merge` folds in and later stages load
# (merged at load); the held-out pretraining loss with unmerged adapters equals `rlhf eval` of
# the merged model; kill -9 and resume is bit-identical; ppo's reference is the policy's base with
# the adapters off; bad keys and values are one-line errors.
. "$PWD/tests/lib.sh"
lib_workspace
cd "$W" || exit 1
sums 200 "$SUM_DEMO" > train.jsonl
sums 200 "$SUM_TEXT" > corpus.txt
sums 40 'Take %d from %d: %d is left, and %d more.' > held.txt
tiny_tok 300
"$R" init --preset tiny --n-positions 32 --n-embd 32 --tokenizer tok --seed 5 --out gpt2 \
    2>/dev/null
"$R" init --preset llama-tiny --n-positions 32 --tokenizer tok --seed 5 --out llama 2>/dev/null
# the first step's train/loss of a run (the workspace's float64)
first_loss() {
    python3 -c "import sqlite3, sys; print(repr(sqlite3.connect(sys.argv[1]).execute(
        \"select value from metrics where name = 'train/loss' order by step\").fetchone()[0]))" \
        "$1/workspace.db"
}
metric_last() {
    python3 -c "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(
        \"select value from metrics where name = ? order by step desc\", (sys.argv[2],)
        ).fetchone()[0])" "$1/workspace.db" "$2"
}
{ cat held.txt; printf '<|endoftext|>'; } | "$R" tokenizer encode tok --special |
    tr -s ' \n' '\n' | head -n $((4 * 32 + 1)) > held.ids
for arch in gpt2 llama; do
    cat > sft_$arch.yaml <<YAML
model: {init: $arch}
out: {dir: full_$arch}
data: {format: jsonl, train: [train.jsonl], valid_percent: 10}
train: {batch_size: 8, steps: 30, lr: 3e-3, warmup_steps: 2}
eval: {every: 30, pretrain_text: held.txt, pretrain_max_windows: 4}
save: {every: 4}
YAML
    "$B/sft" -c sft_$arch.yaml >/dev/null 2>"$W/err" &&
        "$B/sft" -c sft_$arch.yaml --set out.dir=lora_$arch --set lora.r=4 --set lora.alpha=8 \
            --set lora.dropout=0.1 >/dev/null 2>"$W/err" || bad "$arch: sft runs"
    a=$(first_loss full_$arch); b=$(first_loss lora_$arch)
    [ -n "$a" ] && [ "$a" = "$b" ] &&
        ok "$arch sft: fresh adapters (B = 0) give exactly the full model's first loss ($a)" ||
        bad "$arch sft: first loss full $a, lora $b"
    [ -f lora_$arch/last/adapter_config.json ] && [ -f lora_$arch/last/adapter_model.safetensors ] &&
        [ -f lora_$arch/last/adapter_optimizer.safetensors ] && [ ! -e lora_$arch/last/config.json ] &&
        [ -f lora_$arch/best/adapter_model.safetensors ] &&
        grep -q "\"base_model_name_or_path\":.*$W/$arch\"" lora_$arch/best/adapter_config.json &&
        ok "$arch sft: last/ and best/ are PEFT adapter directories, base = model.init" ||
        bad "$arch sft: adapter files"
    "$R" merge $arch lora_$arch/last --out merged_$arch 2>"$W/err"
    want=$("$R" eval merged_$arch --ids held.ids 2>/dev/null | sed -n 's/^loss //p')
    direct=$("$R" eval lora_$arch/last --ids held.ids 2>/dev/null | sed -n 's/^loss //p')
    got=$(metric_last lora_$arch valid/pretrain_loss)
    close "$got" "$want" 1e-5 && [ "$direct" = "$want" ] &&
        ok "$arch sft: pretraining loss with unmerged adapters $got = rlhf eval of the merge $want (and of the adapter directory)" ||
        bad "$arch sft: unmerged $got, merged $want, adapter directory $direct"
done
# kill -9 at a random moment (possibly mid-save) and rerun: the adapters, their moments and the
# dropout stream continue exactly (the trainer states differ only in the config hash: out.dir)
sed 's/steps: 30/steps: 120/' sft_gpt2.yaml > long.yaml
set -- --set lora.r=4 --set lora.dropout=0.1
"$B/sft" -c long.yaml --set out.dir=kfull "$@" >/dev/null 2>&1
killed=0
for delay in 0.1 0.3 0.05 0.2; do
    rm -rf kill
    "$B/sft" -c long.yaml --set out.dir=kill "$@" >/dev/null 2>&1 &
    pid=$!
    t=0
    while [ ! -d kill/last ] && [ $t -lt 600 ] && kill -0 $pid 2>/dev/null; do
        sleep 0.05; t=$((t + 1)); done
    sleep $delay
    if kill -9 $pid 2>/dev/null; then killed=1; wait $pid 2>/dev/null; break; fi
    wait $pid 2>/dev/null
done
"$B/sft" -c long.yaml --set out.dir=kill "$@" >/dev/null 2>err
if [ $killed -eq 1 ] && grep -q "resuming run" err &&
    cmp -s kfull/last/adapter_model.safetensors kill/last/adapter_model.safetensors &&
    cmp -s kfull/last/adapter_optimizer.safetensors kill/last/adapter_optimizer.safetensors &&
    [ "$(grep -v config_hash kfull/last/trainer_state.json)" = \
      "$(grep -v config_hash kill/last/trainer_state.json)" ]; then
    ok "sft: kill -9 and resume: adapters, moments and trainer state bit-identical"
else bad "sft kill/resume (killed=$killed)"; fi

# ppo: the first iteration with fresh adapters is the full run's (same rollouts, same scores), the
# reference (the base with the adapters off) gives a KL of exactly 0 there; kill -9 and resume
. "$TESTS/ppo_fixture.sh"
mkdir ppo && cd ppo && ppo_fixture && ppo_config pre/best rm pfull
"$B/ppo" -c ppo.yaml --set train.iterations=2 >/dev/null 2>"$W/err" &&
    "$B/ppo" -c ppo.yaml --set train.iterations=2 --set out.dir=plora --set lora.r=4 \
        >/dev/null 2>"$W/err" || bad "ppo runs"
a=$(metric pfull/workspace.db ppo/score 1); b=$(metric plora/workspace.db ppo/score 1)
k=$(metric plora/workspace.db ppo/kl 1)
[ "$a" != none ] && [ "$a" = "$b" ] && [ "$k" = 0.0 ] &&
    ok "ppo: fresh adapters score the full run's rollouts ($a); reference = adapters off: KL $k" ||
    bad "ppo: first score full $a, lora $b, kl $k"
grep -q "reference  *0 B  the policy's base" "$W/err" && [ -f plora/policy/adapter_config.json ] &&
    grep -q '"task_type":.*"SEQ_CLS"' plora/last/value/adapter_config.json &&
    ok "ppo: no reference copy in the memory plan; policy and value saved as adapters" ||
    bad "ppo: plan or adapter files"
set -- --set lora.r=4 --set train.iterations=8 --set save.every=1
"$B/ppo" -c ppo.yaml --set out.dir=kf "$@" >/dev/null 2>&1
killed=0
for delay in 0.2 0.5 0.1 0.3; do
    rm -rf kk
    "$B/ppo" -c ppo.yaml --set out.dir=kk "$@" >/dev/null 2>&1 &
    pid=$!
    t=0
    while [ ! -d kk/last ] && [ $t -lt 600 ] && kill -0 $pid 2>/dev/null; do
        sleep 0.05; t=$((t + 1)); done
    sleep $delay
    if kill -9 $pid 2>/dev/null; then killed=1; wait $pid 2>/dev/null; break; fi
    wait $pid 2>/dev/null
done
"$B/ppo" -c ppo.yaml --set out.dir=kk "$@" >/dev/null 2>"$W/err"
if [ $killed -eq 1 ] && grep -q "resuming run" "$W/err" &&
    cmp -s kf/last/policy/adapter_model.safetensors kk/last/policy/adapter_model.safetensors &&
    cmp -s kf/last/policy/adapter_optimizer.safetensors kk/last/policy/adapter_optimizer.safetensors &&
    cmp -s kf/last/value/adapter_model.safetensors kk/last/value/adapter_model.safetensors; then
    ok "ppo: kill -9 and resume: policy and value adapters and moments bit-identical"
else bad "ppo kill/resume (killed=$killed)"; fi
# a later stage from an adapter: ppo's policy is sft's LoRA result, merged at load
"$B/sft" -c pre.yaml --set out.dir=prel --set lora.r=4 --set train.steps=5 >/dev/null 2>&1 &&
    "$B/ppo" -c ppo.yaml --set model.policy=prel/best --set out.dir=pa --set lora.r=4 \
        --set train.iterations=1 >/dev/null 2>"$W/err" &&
    [ "$(metric pa/workspace.db ppo/kl 1)" = 0.0 ] &&
    grep -q "base_model_name_or_path\":.*prel/best\"" pa/policy/adapter_config.json &&
    ok "ppo from sft's adapter directory (merged at load), its adapter based on it" ||
    bad "ppo from an sft adapter"
expect_fail "ppo: a separate reference with adapters" 1 "leave model.reference empty" \
    "$B/ppo" -c ppo.yaml --set lora.r=4 --set model.reference=base --set out.dir=bad
expect_fail "ppo: lora dropout" 1 "lora.dropout must be 0 in ppo" \
    "$B/ppo" -c ppo.yaml --set lora.r=4 --set lora.dropout=0.1 --set out.dir=bad
cd "$W"

# bad keys and values: one line naming the key
for kv in "lora.r=-1:lora.r" "lora.dropout=1.5:lora.dropout" \
    "lora.target_modules=q_proj:'q_proj' is no linear layer of a gpt2 model" \
    "lora.modules_to_save=score:lora.modules_to_save: 'score' needs a model with a score head" \
    "lora.modules_to_save=lm_head:lora.modules_to_save: 'lm_head' is not supported" \
    "lora.train_bias=true:lora.train_bias: training biases" \
    "lora.train_norms=true:lora.train_norms: training norm weights" \
    "lora.alpha=0:lora_alpha must be positive"; do
    expect_fail "sft: bad ${kv%%:*}" 1 "${kv#*:}" \
        "$B/sft" -c sft_gpt2.yaml --set out.dir=bad --set lora.r=4 --set "${kv%%:*}"
    [ "$(wc -l < "$W/err")" -le 1 ] || bad "sft: ${kv%%:*}: more than one line"
done
lib_summary
