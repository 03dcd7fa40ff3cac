#!/bin/sh
# LoRA adapters against a hand-written float64 PyTorch reference (tests/ref/lora_ref.py), for a
# GPT-2 base and Llama-style ones (Qwen2, grouped-query; Qwen3, its per-head q_norm and k_norm
# trained too): the PEFT files build/tests/test_lora writes are read back by the script, applied
# by hand and give the engine's logits; the engine's gradients of every lora_A / lora_B equal
# autograd's; `rlhf merge` folds an adapter into a plain checkpoint whose logits (no adapters)
# are the adapter's; merge's bad inputs.
. "$PWD/tests/lib.sh"
PY=/usr/bin/python3
lib_workspace
export OMP_NUM_THREADS=1
for arch in 0 1 2; do   # 2: Qwen3-style, its per-head q_norm and k_norm trained too
    name=$(case $arch in 0) echo gpt2 ;; 1) echo llama ;; *) echo qwen3 ;; esac)
    D="$W/$name"
    mkdir "$D"
    if "$ROOT/$BUILD/tests/test_lora" --export "$D" $arch 2>"$W/err" &&
        "$R" merge "$D/base" "$D/adapter" --out "$D/merged" 2>"$W/err" &&
        [ -f "$D/merged/model.safetensors" ]; then
        ok "$name: exported, merged"
    else
        bad "$name: exported, merged"
        continue
    fi
    if "$PY" "$TESTS/ref/lora_ref.py" "$D" --merged "$D/merged" >"$W/ref" 2>"$W/err"; then
        ok "$name: PyTorch reference: $(grep -c '^ok' "$W/ref") checks"
    else
        cat "$W/ref" >"$W/err"
        bad "$name: PyTorch reference"
    fi
done
# rlhf info on an adapter directory: the adapter (r, alpha, targets, bias, base, its size), then
# its base's architecture, after loading the base with the adapter merged
mkdir "$W/info"
cp "$W/gpt2/adapter/adapter_model.safetensors" "$W/info/"
sed "s|\"tiny\"|\"$W/gpt2/base\"|" "$W/gpt2/adapter/adapter_config.json" \
    >"$W/info/adapter_config.json"
if "$R" info "$W/info" >"$W/out" 2>"$W/err" &&
    grep -q "^adapter      LoRA r 3, alpha 6 (scale 2), dropout 0, bias all, on c_attn, c_proj, c_fc + ln_1 + ln_2 + ln_f$" "$W/out" &&
    grep -q "^adapter base $W/gpt2/base$" "$W/out" &&
    grep -q "^adapter size 1488 parameters" "$W/out" &&
    grep -q "^model        GPT-2, 2 layers, 2 heads, 12 channels" "$W/out" &&
    grep -q "^parameters   4272 .*, the base's$" "$W/out"; then
    ok "info on an adapter directory: r, alpha, targets, bias, base, size; the base's architecture"
else
    cat "$W/out" >>"$W/err"
    bad "info on an adapter directory"
fi
expect_fail "info: an adapter whose base is gone" 1 "rlhf info: .*nowhere: no such checkpoint" \
    sh -c "mkdir '$W/gone' && cp '$W/gpt2/adapter/adapter_model.safetensors' '$W/gone/' &&
        sed 's|\"tiny\"|\"$W/nowhere\"|' '$W/gpt2/adapter/adapter_config.json' \
            >'$W/gone/adapter_config.json' && '$R' info '$W/gone'"
[ "$(wc -l < "$W/err")" -le 1 ] || bad "info: more than one line for a missing base"
expect_fail "merge: a GPT-2 adapter on a Llama-style base" 1 \
    "fan_in_fan_out is true, a llama-style base needs false" \
    "$R" merge "$W/llama/base" "$W/gpt2/adapter" --out "$W/x1"
"$R" init --preset tiny --vocab-size 23 --n-positions 16 --out "$W/wide" 2>/dev/null
expect_fail "merge: an adapter for another width" 1 "c_attn.lora_A.weight.*another base shape" \
    "$R" merge "$W/wide" "$W/gpt2/adapter" --out "$W/x0"
cp -r "$W/gpt2/adapter" "$W/a1"
sed 's/"c_fc"/"q_proj"/' "$W/gpt2/adapter/adapter_config.json" >"$W/a1/adapter_config.json"
expect_fail "merge: an unknown target module" 1 "'q_proj' is no linear layer of a gpt2 model" \
    "$R" merge "$W/gpt2/base" "$W/a1" --out "$W/x3"
sed 's/"r":.*/"r": 0,/' "$W/gpt2/adapter/adapter_config.json" >"$W/a1/adapter_config.json"
expect_fail "merge: r = 0" 1 "lora r must be in 1..65536 (got 0)" \
    "$R" merge "$W/gpt2/base" "$W/a1" --out "$W/x4"
sed 's/"r":.*/"r": 3, "rank_pattern": {"q_proj": 8},/' "$W/gpt2/adapter/adapter_config.json" \
    >"$W/a1/adapter_config.json"
expect_fail "merge: per-module ranks" 1 "rank_pattern is not supported" \
    "$R" merge "$W/gpt2/base" "$W/a1" --out "$W/x5"
[ ! -e "$W/x0" ] && [ ! -e "$W/x5" ] && [ ! -e "$W/x1" ] && [ ! -e "$W/x3" ] && [ ! -e "$W/x4" ] &&
    ok "merge: nothing written on an error" || bad "merge: nothing written on an error"
expect_fail "merge: no adapter there" 1 "adapter_config.json" \
    "$R" merge "$W/gpt2/base" "$W/nothing" --out "$W/x2"
expect_fail "merge: --out missing" 2 "missing --out" "$R" merge "$W/gpt2/base" "$W/gpt2/adapter"
lib_summary
