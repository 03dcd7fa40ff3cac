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
# kill_rerun DIR CMD...: runs CMD (writing DIR), kills it with -9 once DIR/last exists, at a
# random later moment (possibly mid-save), and reruns it to the end; killed=1 when a kill landed
kill_rerun() {
    d=$1; shift
    killed=0
    for delay in 0.1 0.3 0.05 0.2; do
        rm -rf "$d"
        "$@" >/dev/null 2>&1 &
        pid=$!
        t=0
        while [ ! -d "$d/last" ] && [ $t -lt 600 ] && kill -0 $pid 2>/dev/null; do
            sleep 0.05; t=$((t + 1)); done
        sleep $delay
        if kill -9 $pid 2>/dev/null; then killed=1; wait $pid 2>/dev/null; break; fi
        wait $pid 2>/dev/null
    done
    "$@" >/dev/null 2>"$W/err"
}
# same_adapter A B: the adapter checkpoints A and B hold the same adapters, moments and trainer
# state (whose config hashes differ by out.dir, run ids by the workspace)
same_adapter() {
    cmp -s "$1/adapter_model.safetensors" "$2/adapter_model.safetensors" &&
        cmp -s "$1/adapter_optimizer.safetensors" "$2/adapter_optimizer.safetensors" &&
        [ "$(grep -v "config_hash\|run_id" "$1/trainer_state.json")" = \
          "$(grep -v "config_hash\|run_id" "$2/trainer_state.json")" ]
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
set -- -c long.yaml --set lora.r=4 --set lora.dropout=0.1
"$B/sft" "$@" --set out.dir=kfull >/dev/null 2>&1
kill_rerun kill "$B/sft" "$@" --set out.dir=kill
[ $killed -eq 1 ] && grep -q "resuming run" "$W/err" && same_adapter kfull/last kill/last &&
    ok "sft: kill -9 and resume: adapters, moments and trainer state bit-identical" ||
    bad "sft kill/resume (killed=$killed)"

# lora.base_dtype bfloat16: the frozen base's matrices stored and multiplied in bf16 (forward and
# backward): the first loss within 2^-8 of the float32 base's and not equal to it (the weights
# are rounded); the adapter files exactly as a float32 run writes them (config, tensor names,
# shapes, dtypes); kill -9 and resume bit-identical
st_header() {
    python3 -c "import json, struct, sys; f = open(sys.argv[1], 'rb')
n = struct.unpack('<Q', f.read(8))[0]; h = json.loads(f.read(n)); h.pop('__metadata__', None)
print(sorted((k, v['dtype'], v['shape']) for k, v in h.items()))" "$1"
}
# lora.base_dtype int8 (one scale per output channel, as precision.frozen's) the same, its first
# loss within 2^-6
for case in bfloat16:bf:0.00390625:2^-8 int8:i8:0.015625:2^-6; do
    dt=${case%%:*}; rest=${case#*:}; p=${rest%%:*}; rest=${rest#*:}; tol=${rest%%:*}
    for arch in gpt2 llama; do
        "$B/sft" -c sft_$arch.yaml --set out.dir=${p}_$arch --set lora.r=4 --set lora.alpha=8 \
            --set lora.dropout=0.1 --set lora.base_dtype=$dt >/dev/null 2>"$W/err" ||
            bad "$arch: sft with a $dt base"
        a=$(first_loss lora_$arch); b=$(first_loss ${p}_$arch)
        close "$b" "$a" $tol && [ "$a" != "$b" ] &&
            ok "$arch sft: lora.base_dtype $dt: first loss $b within ${rest#*:} of float32's $a" ||
            bad "$arch sft: first loss $dt base $b, float32 base $a"
        cmp -s lora_$arch/best/adapter_config.json ${p}_$arch/best/adapter_config.json &&
            [ "$(st_header lora_$arch/best/adapter_model.safetensors)" = \
              "$(st_header ${p}_$arch/best/adapter_model.safetensors)" ] &&
            ok "$arch sft: lora.base_dtype $dt: the adapter files are the float32 base's format" ||
            bad "$arch sft: $dt base adapter format"
    done
done
# (an int8 base, killed and resumed)
set -- -c long.yaml --set lora.r=4 --set lora.dropout=0.1 --set lora.base_dtype=int8
"$B/sft" "$@" --set out.dir=ki8full >/dev/null 2>&1
kill_rerun ki8 "$B/sft" "$@" --set out.dir=ki8
[ $killed -eq 1 ] && grep -q "resuming run" "$W/err" && same_adapter ki8full/last ki8/last &&
    ok "sft, int8 base: kill -9 and resume: adapters, moments and trainer state bit-identical" ||
    bad "sft int8 base kill/resume (killed=$killed)"
# (with every bias and the final norm trained beside the adapters, lora.bias all and
# lora.modules_to_save ln_f: saved under the base's names)
set -- -c long.yaml --set lora.r=4 --set lora.dropout=0.1 --set lora.base_dtype=bfloat16 \
    --set lora.bias=all --set lora.modules_to_save=ln_f
"$B/sft" "$@" --set out.dir=kbfull >/dev/null 2>&1
kill_rerun kbf "$B/sft" "$@" --set out.dir=kbf
[ $killed -eq 1 ] && grep -q "resuming run" "$W/err" && same_adapter kbfull/last kbf/last &&
    grep -q '"bias":.*"all"' kbf/last/adapter_config.json &&
    st_header kbf/last/adapter_model.safetensors | grep -q "transformer.h.1.ln_2.bias" &&
    st_header kbf/last/adapter_model.safetensors | grep -q "transformer.ln_f.weight" &&
    ok "sft, bf16 base, lora.bias all, ln_f trained: kill -9 and resume: adapters, biases, norm, moments and trainer state bit-identical" ||
    bad "sft bf16 base kill/resume (killed=$killed)"

# dpo and reward train: fresh adapters start exactly at the base (DPO's held-out loss log 2 with
# zero margins; the reward model's first loss the full run's); resume after kill -9
tiny_data 200
cat > dpo.yaml <<'YAML'
model: {init: gpt2}
out: {dir: dfull}
workspace: dws.db
data: {import: [rank.jsonl], valid_percent: 20}
train: {batch_size: 8, steps: 40, lr: 1e-3}
eval: {every: 40}
save: {every: 2}
YAML
"$B/dpo" -c dpo.yaml --set lora.r=4 --set lora.dropout=0.1 >/dev/null 2>"$W/err" ||
    bad "dpo with adapters"
l0=$(sqlite3 dws.db "select value from metrics where name = 'valid/loss' and step = 0")
m0=$(sqlite3 dws.db "select value from metrics where name = 'valid/rewards/margins' and step = 0")
close "$l0" 0.69314718 1e-7 && [ "$m0" = 0.0 ] && [ -f dfull/final/adapter_config.json ] &&
    ok "dpo: fresh adapters: held-out loss log 2 ($l0), margins 0; final/ an adapter" ||
    bad "dpo: step 0 loss $l0 margins $m0"
kill_rerun dkill "$B/dpo" -c dpo.yaml --set lora.r=4 --set lora.dropout=0.1 --set out.dir=dkill
[ $killed -eq 1 ] && grep -q "resuming run" "$W/err" && same_adapter dfull/last dkill/last &&
    ok "dpo: kill -9 and resume: adapters and moments bit-identical" ||
    bad "dpo kill/resume (killed=$killed)"
sed 's/dfull/rfull/; s/dws.db/rws.db/' dpo.yaml > rm.yaml
"$B/reward" train -c rm.yaml --set train.steps=1 --set out.dir=rone >/dev/null 2>&1
"$B/reward" train -c rm.yaml --set lora.r=4 >/dev/null 2>"$W/err" || bad "reward with adapters"
a=$(sqlite3 rws.db "select value from metrics m join runs r on r.id = m.run_id where
    r.checkpoint like '%rone%' and m.name = 'train/loss' and m.step = 1")
b=$(sqlite3 rws.db "select value from metrics m join runs r on r.id = m.run_id where
    r.checkpoint like '%rfull%' and m.name = 'train/loss' and m.step = 1")
[ -n "$a" ] && [ "$a" = "$b" ] && [ -f rfull/final/model.safetensors ] &&
    grep -q '"task_type":.*"SEQ_CLS"' rfull/last/adapter_config.json &&
    ok "reward: fresh adapters give the full run's first loss ($a); final/ the merged model" ||
    bad "reward: first loss full $a, lora $b"
kill_rerun rkill "$B/reward" train -c rm.yaml --set lora.r=4 --set out.dir=rkill
[ $killed -eq 1 ] && grep -q "resuming run" "$W/err" && same_adapter rfull/last rkill/last &&
    cmp -s rfull/final/model.safetensors rkill/final/model.safetensors &&
    ok "reward: kill -9 and resume: adapters bit-identical, the same merged reward model" ||
    bad "reward kill/resume (killed=$killed)"
"$R" info rfull/last >"$W/out" 2>"$W/err" && grep -q "^adapter .* + the score head$" "$W/out" &&
    grep -q "^heads        LM (tied) + scalar score$" "$W/out" &&
    ok "info on a reward adapter (a score head on a language model's base)" ||
    bad "info on a reward adapter: $(cat "$W/err")"

# on a bf16 base: dpo's reference is the same base (held-out log 2, margins 0); reward train's
# first loss within 2^-8 of the float32 base's, and its final/ the adapter merged into
# model.init's float32 weights, as `rlhf merge` folds it
"$B/dpo" -c dpo.yaml --set lora.r=4 --set lora.base_dtype=bfloat16 --set out.dir=dbf \
    --set workspace=dbf.db >/dev/null 2>"$W/err" || bad "dpo with a bf16 base"
l0=$(sqlite3 dbf.db "select value from metrics where name = 'valid/loss' and step = 0")
m0=$(sqlite3 dbf.db "select value from metrics where name = 'valid/rewards/margins' and step = 0")
close "$l0" 0.69314718 1e-7 && [ "$m0" = 0.0 ] &&
    ok "dpo, bf16 base: fresh adapters: held-out loss log 2 ($l0), margins 0" ||
    bad "dpo, bf16 base: step 0 loss $l0 margins $m0"
"$B/reward" train -c rm.yaml --set lora.r=4 --set lora.base_dtype=bfloat16 --set out.dir=rbf \
    >/dev/null 2>"$W/err" || bad "reward with a bf16 base"
c=$(sqlite3 rws.db "select value from metrics m join runs r on r.id = m.run_id where
    r.checkpoint like '%rbf%' and m.name = 'train/loss' and m.step = 1")
close "$c" "$a" 0.00390625 && [ "$c" != "$a" ] && python3 - gpt2 rbf/final <<'PY' &&
import json, struct, sys
def read(d):
    f = open(d + "/model.safetensors", "rb"); n = struct.unpack("<Q", f.read(8))[0]
    h = json.loads(f.read(n)); h.pop("__metadata__", None); data = f.read()
    return {k: data[v["data_offsets"][0]:v["data_offsets"][1]] for k, v in h.items()}
base, final = read(sys.argv[1]), read(sys.argv[2])
adapted = [k for k in base if k.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight"))]
# untouched tensors are model.init's float32 bytes; the adapted ones are float32 sums, not the
# base's bf16-rounded matrices (their low 16 bits are not all zero)
same = all(final[k] == base[k] for k in base if k not in adapted and "ln_f.bias" not in k)
lows = [final[k][i:i + 2] for k in adapted for i in range(0, len(final[k]), 4)]
sys.exit(0 if adapted and same and sum(x != b"\0\0" for x in lows) > len(lows) // 2 else 1)
PY
    ok "reward, bf16 base: first loss $c within 2^-8 of $a; final/ merged into model.init's float32 weights" ||
    bad "reward, bf16 base: first loss $c (float32 $a), final/"

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
"$B/ppo" -c ppo.yaml --set train.iterations=1 --set out.dir=pm --set lora.r=4 \
    --set lora.sample=merged >/dev/null 2>"$W/err" &&
    [ "$(metric pm/workspace.db ppo/score 1)" = "$b" ] &&
    ok "ppo: lora.sample merged: rollouts from the merged copy score the same ($b)" ||
    bad "ppo: lora.sample merged"
grep -q "reference  *0 B  the policy's base" "$W/err" && [ -f plora/policy/adapter_config.json ] &&
    grep -q '"task_type":.*"SEQ_CLS"' plora/last/value/adapter_config.json &&
    ok "ppo: no reference copy in the memory plan; policy and value saved as adapters" ||
    bad "ppo: plan or adapter files"
set -- -c ppo.yaml --set lora.r=4 --set train.iterations=8 --set save.every=1
"$B/ppo" "$@" --set out.dir=kf >/dev/null 2>&1
kill_rerun kk "$B/ppo" "$@" --set out.dir=kk
[ $killed -eq 1 ] && grep -q "resuming run" "$W/err" &&
    same_adapter kf/last/policy kk/last/policy && same_adapter kf/last/value kk/last/value &&
    ok "ppo: kill -9 and resume: policy and value adapters and moments bit-identical" ||
    bad "ppo kill/resume (killed=$killed)"
# a bf16 base: policy + reference on one, reward + value on the other, the plan says so; the
# reference is that base with the adapters off (KL exactly 0 at first); precision.sample and
# precision.frozen bf16 are the bases themselves (no copies); with trained biases (lora.bias all:
# the reference and the reward model read the bases' own); kill -9 and resume bit-identical
set -- -c ppo.yaml --set lora.r=4 --set lora.base_dtype=bfloat16 --set precision.sample=bf16 \
    --set precision.frozen=bf16 --set lora.bias=all
# both narrow bases planned as such, with no sampling copy (bf16 with the biases trained, as above)
for p in bf16 int8; do
    d=$p; [ $p = bf16 ] && d=bfloat16
    "$B/ppo" -c ppo.yaml --set lora.r=4 --set lora.base_dtype=$d --set precision.sample=$p \
        --set precision.frozen=$p $([ $p = bf16 ] && echo --set lora.bias=all) \
        --set train.iterations=2 --set out.dir=p$p >/dev/null 2>"$W/err" &&
        [ "$(metric p$p/workspace.db ppo/kl 1)" = 0.0 ] &&
        grep -q "policy .*frozen base (matrices in $p" "$W/err" &&
        grep -q "reward .*matrices in $p, .*(the value's base too)" "$W/err" &&
        ! grep -q "sampling" "$W/err" &&
        ok "ppo, $p bases: planned as such, no sampling copy, KL to the reference exactly 0" ||
        bad "ppo with $p bases"
done
"$B/ppo" "$@" --set train.iterations=8 --set save.every=1 --set out.dir=kbf >/dev/null 2>&1
kill_rerun kbk "$B/ppo" "$@" --set train.iterations=8 --set save.every=1 --set out.dir=kbk
[ $killed -eq 1 ] && grep -q "resuming run" "$W/err" &&
    same_adapter kbf/last/policy kbk/last/policy && same_adapter kbf/last/value kbk/last/value &&
    ok "ppo, bf16 bases: kill -9 and resume: adapters and moments bit-identical" ||
    bad "ppo bf16 kill/resume (killed=$killed)"
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
expect_fail "ppo: a bf16 reference on a float32 base" 1 \
    "precision.frozen bf16 with lora.r > 0: the policy's frozen base is float32" \
    "$B/ppo" -c ppo.yaml --set lora.r=4 --set precision.frozen=bf16 --set out.dir=bad
expect_fail "ppo: int8 sampling on a bf16 base" 1 \
    "precision.sample int8 with lora.r > 0: the policy's frozen base is bfloat16" \
    "$B/ppo" -c ppo.yaml --set lora.r=4 --set lora.base_dtype=bfloat16 \
    --set precision.sample=int8 --set out.dir=bad
expect_fail "ppo: a merged sampling copy of a bf16 base" 1 \
    "lora.sample merged: a merged copy needs the base's fp32 weights" \
    "$B/ppo" -c ppo.yaml --set lora.r=4 --set lora.base_dtype=bfloat16 \
    --set lora.sample=merged --set out.dir=bad
cd "$W"

(cd "$ROOT" && "$R" run pipelines/demo-lora.yaml --dry-run --set workspace="$W/dry") >out 2>"$W/err" &&
    grep -q "^ppo-lora .*--set lora.r=16" out && grep -q "^eval-ppo-lora .*ppo-lora/policy" out &&
    ok "pipelines/demo-lora.yaml validates with --dry-run: full and LoRA PPO, each evaluated" ||
    bad "demo-lora.yaml --dry-run"

# bad keys and values: one line naming the key
for kv in "lora.r=-1:lora.r" "lora.dropout=1.5:lora.dropout" \
    "lora.target_modules=q_proj:'q_proj' is no linear layer of a gpt2 model" \
    "lora.modules_to_save=score:lora.modules_to_save: 'score' needs a model with a score head" \
    "lora.modules_to_save=lm_head:lora.modules_to_save: 'lm_head' is not supported" \
    "lora.bias=some:lora.bias" \
    "lora.modules_to_save=norm:lora.modules_to_save: 'norm' is not supported (score, or the norms ln_1" \
    "lora.alpha=0:lora_alpha must be positive"; do
    expect_fail "sft: bad ${kv%%:*}" 1 "${kv#*:}" \
        "$B/sft" -c sft_gpt2.yaml --set out.dir=bad --set lora.r=4 --set "${kv%%:*}"
    [ "$(wc -l < "$W/err")" -le 1 ] || bad "sft: ${kv%%:*}: more than one line"
done
expect_fail "sft: q_norm on a Llama-style base without per-head q/k norms" 1 \
    "lora.modules_to_save: 'q_norm' needs a base with per-head q/k norms (Qwen3's)" \
    "$B/sft" -c sft_llama.yaml --set out.dir=bad --set lora.r=4 \
    --set lora.modules_to_save=q_norm

# Qwen3's per-head q/k norms train beside the adapters, saved under PEFT's names, and merge
"$R" init --preset llama-tiny --qk-norm --n-positions 32 --tokenizer tok --seed 5 --out qwen3 \
    2>/dev/null
if "$B/sft" -c sft_llama.yaml --set model.init=qwen3 --set out.dir=lora_qk --set lora.r=4 \
    --set lora.modules_to_save=q_norm,k_norm --set train.steps=4 >/dev/null 2>"$W/err" &&
    python3 - lora_qk/best/adapter_model.safetensors lora_qk/best/adapter_config.json \
        qwen3/model.safetensors <<'PY' && "$R" merge qwen3 lora_qk/best --out qk_merged \
        >/dev/null 2>"$W/err"; then
import json, struct, sys
def tensors(path):
    f = open(path, "rb")
    n = struct.unpack("<Q", f.read(8))[0]
    h = json.loads(f.read(n))
    return {k: v for k, v in h.items() if k != "__metadata__"}, f.read(), 8 + n
ad, data, _ = tensors(sys.argv[1])
cfg = json.load(open(sys.argv[2]))
assert cfg["modules_to_save"] == ["q_norm", "k_norm"], cfg["modules_to_save"]
base, bdata, _ = tensors(sys.argv[3])
for l in range(2):
    for m in ("q_norm", "k_norm"):
        e = ad["base_model.model.model.layers.%d.self_attn.%s.weight" % (l, m)]
        b = base["model.layers.%d.self_attn.%s.weight" % (l, m)]
        assert e["shape"] == b["shape"], (e, b)
        s, t = e["data_offsets"]
        u, v = b["data_offsets"]
        assert data[s:t] != bdata[u:v], "%s of layer %d did not train" % (m, l)
PY
    ok "sft: Qwen3's q_norm and k_norm train beside the adapters, saved as PEFT names them, merge"
else
    bad "sft: q_norm, k_norm as modules_to_save"
fi
lib_summary
