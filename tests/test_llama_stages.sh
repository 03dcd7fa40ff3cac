#!/bin/sh
# Every stage on the Llama-style block kind, on tiny models (rlhf init --preset llama-tiny), beside
# GPT-2 (whose own tests are test_sft, test_reward, test_ppo):
#   1. the presets: shapes, config.json in Hugging Face's keys, parameter counts by the formula,
#      `rlhf info`'s architecture and memory lines; options that only fit one kind refused
#   2. sft: the loss falls, last/ and best/ reload, the held-out pretraining loss equals
#      `rlhf eval`'s on the same windows; an untied LM head trains and reloads
#   3. reward: label with --policy (a judge program), train from the SFT model (a score head in
#      place of the LM head: LlamaForSequenceClassification), the loss falls, score and inspect
#      read the final model, whose scores are last/'s (RMSNorm has no bias to fold)
#   4. ppo: a Llama-style policy with a GPT-2 reward model of the same tokenizer (the score
#      rises), with its own Llama-style reward and value models; kill -9 and resume bit-identical;
#      a reward model of another tokenizer, or one that cannot show its tokenizer, refused
#   5. generate, eval-policy (with the GPT-2 reward model scoring the Llama-style policies)
# Tiny models and short runs: seconds.
. "$PWD/tests/lib.sh"
lib_workspace
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=1
ERR_LINES=8
PY=python3
. "$TESTS/ppo_fixture.sh"   # ppo_config (its metric is replaced by the one below)
metric() {   # metric DB NAME: the values of NAME in step order, one per line
    $PY -c "import sqlite3,sys
for (v,) in sqlite3.connect(sys.argv[1]).execute('select value from metrics where name=? order by step', (sys.argv[2],)): print(repr(v))" "$@"
}
# tensors CKPT: the tensor names of CKPT/model.safetensors, one per line
tensors() { $PY -c "import json,struct,sys
f=open(sys.argv[1]+'/model.safetensors','rb'); n=struct.unpack('<Q',f.read(8))[0]
print('\n'.join(k for k in json.loads(f.read(n)) if k != '__metadata__'))" "$1" 2>/dev/null; }
cd "$W" || exit 1
sums 300 "$SUM_DEMO" > train.jsonl
sums 300 "$SUM_TEXT" > corpus.txt
sums 300 "$SUM_PROMPT" > prompts.jsonl
sums 300 "$SUM_RANK" > rank.jsonl
sums 40 'Take %d from %d: %d is left, and %d more.' > held.txt
tiny_tok 300
V=$($PY -c "import json; print(len(json.load(open('tok/vocab.json'))))")   # 300 or a few fewer
"$R" init --preset llama-tiny --n-positions 48 --tokenizer tok --seed 5 --out lbase 2> err ||
    bad "init llama-tiny"

# ---------------------------------------------------------------------------------------------
# 1. presets and info
# params CONFIG.JSON: the parameter count of a Llama-style config by the formula (tied head)
params() { $PY -c "import json,sys
c=json.load(open(sys.argv[1])); C,L,V,F=c['hidden_size'],c['num_hidden_layers'],c['vocab_size'],c['intermediate_size']
H,K=c['num_attention_heads'],c['num_key_value_heads']; hd=c.get('head_dim') or C//H
qkv=(H+2*K)*hd; bias=qkv if c['model_type']=='qwen2' else 0; qk=2*hd if c['model_type']=='qwen3' else 0
head=0 if c.get('tie_word_embeddings',True) else V*C
print(V*C+L*(2*C+qkv*C+bias+H*hd*C+3*C*F+qk)+C+head)" "$1"; }
# shape CONFIG.JSON KEY=VALUE...: the config holds these values
shape() { f=$1; shift; $PY -c "import json,sys
c=json.load(open(sys.argv[1]))
for kv in sys.argv[2:]:
    k,v=kv.split('=',1)
    assert str(c.get(k))==v, (k, c.get(k), v)" "$f" "$@"; }
"$R" info lbase > info.txt 2> err &&
    shape lbase/config.json model_type=llama "architectures=['LlamaForCausalLM']" \
        num_hidden_layers=2 hidden_size=64 num_attention_heads=4 num_key_value_heads=2 head_dim=16 \
        intermediate_size=96 vocab_size=$V rope_theta=10000.0 tie_word_embeddings=True \
        max_position_embeddings=48 2> err &&
    grep -q "^model  *Llama-style (llama), 2 layers, 4 heads, 64 channels, context 48, vocabulary $V$" info.txt &&
    grep -q "^attention  *4 heads of 16, 2 KV heads (grouped-query)" info.txt &&
    grep -q "^rope  *theta 10000$" info.txt && grep -q "^mlp  *SwiGLU 96$" info.txt &&
    grep -q "^heads  *LM (tied)$" info.txt &&
    grep -q "^parameters  *$(params lbase/config.json) " info.txt &&
    grep -q "^memory  *train at B=8 T=48: .*(weights+grads+AdamW .*, activations .*)$" info.txt &&
    grep -q "^ *sample at B=8 T=48: .*(weights .*, KV cache .*)$" info.txt &&
    ok "llama-tiny: HF Llama config (GQA 4/2, head 16, SwiGLU 96, tied); info prints the architecture, $(params lbase/config.json) parameters, train and sample memory" ||
    bad "llama-tiny config/info: $(cat info.txt err | head -12 | tr '\n' '|')"
# the real shapes, one layer and a small vocabulary each (the full ones are written the same way)
"$R" init --preset smollm2-135m --n-layer 1 --vocab-size 512 --out smol 2> err &&
"$R" init --preset qwen2.5-0.5b --n-layer 1 --vocab-size 512 --out qwen2 2>> err &&
"$R" init --preset qwen3-0.6b --n-layer 1 --vocab-size 512 --out qwen3 2>> err &&
    shape smol/config.json model_type=llama num_attention_heads=9 num_key_value_heads=3 \
        hidden_size=576 intermediate_size=1536 rope_theta=100000.0 max_position_embeddings=2048 \
        rms_norm_eps=1e-05 tie_word_embeddings=True 2>> err &&
    shape qwen2/config.json model_type=qwen2 num_attention_heads=14 num_key_value_heads=2 \
        hidden_size=896 intermediate_size=4864 rope_theta=1000000.0 max_position_embeddings=32768 \
        rms_norm_eps=1e-06 tie_word_embeddings=True 2>> err &&
    shape qwen3/config.json model_type=qwen3 num_attention_heads=16 num_key_value_heads=8 \
        head_dim=128 hidden_size=1024 intermediate_size=3072 rope_theta=1000000.0 \
        max_position_embeddings=40960 rms_norm_eps=1e-06 tie_word_embeddings=True 2>> err &&
    "$R" info qwen2 > q2.txt 2>> err && "$R" info qwen3 > q3.txt 2>> err &&
    grep -q "^attention  *14 heads of 64, 2 KV heads (grouped-query), q/k/v biases" q2.txt &&
    grep -q "^attention  *16 heads of 128, 8 KV heads (grouped-query), q/k RMSNorm" q3.txt &&
    grep -q "^model  *Llama-style (qwen3)" q3.txt &&
    grep -q "^parameters  *$(params qwen2/config.json) " q2.txt &&
    grep -q "^parameters  *$(params qwen3/config.json) " q3.txt &&
    grep -q "^memory  *train at B=8 T=2048:" q3.txt &&
    ok "smollm2-135m, qwen2.5-0.5b (q/k/v biases), qwen3-0.6b (head 128, q/k norms): their HF configs and parameter counts; info at T = 2048, not the 40k context" ||
    bad "real presets: $(cat q2.txt q3.txt err | head -20 | tr '\n' '|')"
"$R" info qwen3 --batch 1 --seq 40960 > q3full.txt 2> err &&
    grep -q "^memory  *train at B=1 T=40960:" q3full.txt &&
    ok "info --seq 40960: the memory at the whole context, on request" || bad "info --seq 40960"
"$R" init --preset llama-tiny --n-kv-head 1 --head-dim 24 --d-ff 40 --untied --qk-norm \
    --rope-theta 500000 --vocab-size 301 --out over 2> err &&
    shape over/config.json model_type=qwen3 num_key_value_heads=1 head_dim=24 \
        intermediate_size=40 tie_word_embeddings=False rope_theta=500000.0 vocab_size=301 2>> err &&
    "$R" init --preset llama-tiny --qkv-bias --out over2 2>> err &&
    shape over2/config.json model_type=qwen2 2>> err && tensors over2 | grep -q "q_proj.bias$" &&
    "$R" info over > over.txt 2>> err && grep -q "1 KV head (multi-query)" over.txt &&
    grep -q "^heads  *LM (untied lm_head)$" over.txt &&
    tensors over | grep -q "^lm_head.weight$" &&
    ok "overrides: --n-kv-head 1 (multi-query), --head-dim, --d-ff, --untied (lm_head.weight), --rope-theta, --qk-norm (Qwen3), --qkv-bias (Qwen2)" ||
    bad "overrides: $(cat over.txt | tr '\n' '|')"
# a Hugging Face config with Llama 3's rope scaling: info names it
cp -r lbase l3 && $PY - l3/config.json <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["rope_theta"] = 500000.0
c["rope_scaling"] = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 16, "rope_type": "llama3"}
json.dump(c, open(sys.argv[1], "w"))
PY
"$R" info l3 > l3.txt 2> err &&
    grep -q "^rope  *theta 500000, llama3 scaling (factor 8, low 1, high 4, original context 16)$" \
        l3.txt && ok "info: Llama 3's rope scaling from config.json" || bad "info with rope_scaling"
expect_fail "a Llama-only option on a GPT-2 preset: refused, naming it" 1 \
    "rlhf init: --n-kv-head applies to the Llama-family presets" "$R" init --preset tiny \
    --n-kv-head 2 --out x
expect_fail "q/k/v biases with q/k norms: no HF family, refused" 1 "^rlhf init: --qkv-bias: no" \
    "$R" init --preset qwen3-0.6b --qkv-bias --out x
expect_fail "KV heads that do not divide the heads: one line naming them" 1 "^rlhf init: .*3" \
    "$R" init --preset llama-tiny --n-kv-head 3 --out x
expect_fail "a tokenizer larger than a preset's vocabulary: refused, saying --vocab-size" 1 \
    "more than the vocabulary of 100 (--vocab-size)" "$R" init --preset llama-tiny \
    --tokenizer tok --vocab-size 100 --out x

# ---------------------------------------------------------------------------------------------
# 2. sft
cat > sft.yaml <<'YAML'
model: {init: lbase}
out: {dir: lsft}
data: {format: jsonl, train: [train.jsonl], valid_percent: 10}
train: {batch_size: 8, epochs: 4, lr: 3e-3, warmup_steps: 5}
eval: {every: 50, max_new: 3, prompts: ["What is 2 plus 3?"], pretrain_text: held.txt, pretrain_max_windows: 4}
YAML
"$B/sft" -c sft.yaml > out 2> err
first=$(grep -m1 "step 1/" err | sed 's/.*loss \([0-9.]*\).*/\1/')
last=$(grep "held-out loss" err | tail -1 | sed 's/.*held-out loss \([0-9.]*\).*/\1/')
awk -v a="$first" -v b="$last" 'BEGIN { exit !(a != "" && b != "" && b < a * 0.5) }' &&
    "$R" info lsft/last > /dev/null 2>> err && "$R" info lsft/best > /dev/null 2>> err &&
    shape lsft/best/config.json model_type=llama "architectures=['LlamaForCausalLM']" 2>> err &&
    grep -q "^sft: sample 1: What is 2 plus 3? ->" err &&
    ok "sft on llama-tiny: loss $first -> held-out $last; last/ and best/ reload as LlamaForCausalLM; greedy samples" ||
    bad "llama sft: $first -> $last"
{ cat held.txt; printf '<|endoftext|>'; } | "$R" tokenizer encode tok --special |
    tr -s ' \n' '\n' | head -n $((4 * 48 + 1)) > held.ids
want=$("$R" eval lsft/last --ids held.ids 2> /dev/null | sed -n 's/^loss //p')
got=$(metric lsft/workspace.db valid/pretrain_loss | tail -1)
close "$got" "$want" 1e-5 &&
    ok "valid/pretrain_loss $got equals rlhf eval's $want on the same 4 windows" ||
    bad "pretraining loss: sft $got, rlhf eval $want"
"$R" init --preset llama-tiny --n-positions 48 --tokenizer tok --seed 5 --untied \
    --out lbase_untied 2> err
"$B/sft" -c sft.yaml --set model.init=lbase_untied --set out.dir=lsftu --set train.epochs=1 \
    > out 2> err && tensors lsftu/last | grep -q "^lm_head.weight$" &&
    "$R" eval lsftu/last --ids held.ids > out 2>> err &&
    ok "untied LM head: sft trains it, lm_head.weight saved, the checkpoint evaluates" ||
    bad "untied sft"

# the result in bfloat16 shards with their index (save.dtype, save.max_shard_bytes); last/ stays
# float32 in one file
"$B/sft" -c sft.yaml --set out.dir=lsftb --set train.steps=5 --set save.dtype=bfloat16 \
    --set save.max_shard_bytes=40000 > out 2> err &&
    [ -f lsftb/best/model.safetensors.index.json ] && [ ! -f lsftb/best/model.safetensors ] &&
    [ "$(ls lsftb/best/model-*-of-*.safetensors | wc -l)" -ge 2 ] &&
    shape lsftb/best/config.json torch_dtype=bfloat16 2>> err &&
    shape lsftb/last/config.json torch_dtype=float32 2>> err && [ -f lsftb/last/model.safetensors ] &&
    "$R" eval lsftb/best --ids held.ids > out 2>> err && "$R" info lsftb/best > /dev/null 2>> err &&
    ok "save.dtype bfloat16 and save.max_shard_bytes: best/ in bfloat16 shards that load, last/ float32" ||
    bad "bfloat16 shards"

# ---------------------------------------------------------------------------------------------
# 3. reward: label with the Llama policy, train from it, score, inspect
"$B/reward" import --workspace lab.db prompts.jsonl > /dev/null 2> err &&
"$B/reward" label --workspace lab.db --labeler py --policy lsft/best --k 2 --max-new 3 \
    --limit 3 --judge "$PY $ROOT/reward/judge_example.py" \
    > /dev/null 2>> err &&
    [ "$(sqlite3 -batch lab.db "SELECT count(*) FROM rankings")" = 3 ] &&
    [ "$(sqlite3 -batch lab.db "SELECT count(DISTINCT model) FROM completions WHERE model LIKE '%lsft/best'")" = 1 ] &&
    ok "reward label --policy (Llama-style) with a judge: 3 prompts sampled and ranked" ||
    bad "label with the Llama policy"
"$B/reward" label --workspace lab.db --labeler py --policy lsftb/best --k 2 --max-new 3 \
    --limit 1 --judge "$PY $ROOT/reward/judge_example.py" > /dev/null 2> err &&
    [ "$(sqlite3 -batch lab.db "SELECT count(*) FROM completions WHERE model LIKE '%lsftb/best'")" = 2 ] &&
    ok "reward label --policy with a sharded checkpoint: its contents hashed through the index and shards" ||
    bad "label with a sharded policy"
"$B/reward" import --workspace ws.db --valid-percent 20 rank.jsonl > /dev/null 2> err ||
    bad "import rankings"
cat > rm.yaml <<'YAML'
model: {init: lsft/best}
out: {dir: lrm}
workspace: ws.db
train: {batch_size: 8, epochs: 3, lr: 3e-3, warmup_steps: 5}
eval: {every: 10}
YAML
"$B/reward" train -c rm.yaml > out 2> err; rc=$?
acc=$(grep "held-out loss" err | tail -1 | sed 's/.*accuracy \([0-9.]*\).*/\1/')
$PY - ws.db > res.txt 2>&1 <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
l = [v for (v,) in db.execute("select value from metrics where name='train/loss' order by step")]
import math
assert all(math.isfinite(v) for v in l) and len(l) > 20, l[:5]
a, b = sum(l[:5]) / 5, sum(l[-5:]) / 5
print(f"{a:.3f} -> {b:.3f}")
assert b < a * 0.7
PY
[ $rc -eq 0 ] && awk -v a="$acc" 'BEGIN { exit !(a != "" && a >= 0.8) }' &&
    shape lrm/final/config.json "architectures=['LlamaForSequenceClassification']" \
        "id2label={'0': 'LABEL_0'}" 2>> err &&
    tensors lrm/final | grep -q "^score.weight$" &&
    ! tensors lrm/final | grep -q "lm_head" &&
    ok "reward train from the Llama SFT model: loss $(cat res.txt), held-out accuracy $acc; final/ is a LlamaForSequenceClassification (score.weight, no lm_head)" ||
    bad "llama reward train (exit $rc, accuracy '$acc', loss $(cat res.txt))"
grep -q "no bias folded: the model's final RMSNorm" err &&
    cmp -s lrm/last/model.safetensors lrm/final/model.safetensors &&
    [ "$(metric ws.db final/bias)" = 0.0 ] &&
    ok "no bias to fold in RMSNorm: said so, final/ holds last/'s weights, final/bias 0" ||
    bad "bias on a Llama reward model"
"$B/reward" train -c rm.yaml --set model.init=lsftu/last --set out.dir=lrmu \
    --set train.steps=3 > out 2> err &&
    shape lrmu/final/config.json "architectures=['LlamaForSequenceClassification']" \
        tie_word_embeddings=False 2>> err &&
    [ "$(tensors lrmu/final | grep -c 'lm_head\|score.weight')" = 1 ] &&
    "$R" info lrmu/final > /dev/null 2>> err &&
    ok "a reward model from the untied SFT model: its lm_head.weight dropped, score.weight added, it loads" ||
    bad "reward model from an untied SFT model"
head -20 train.jsonl | sed 's/"response"/"completion"/' > demos.jsonl
"$B/reward" score lrm/final --input demos.jsonl > scores.jsonl 2> err &&
    [ "$(grep -c '"score":-*[0-9]' scores.jsonl)" = 20 ] && ! grep -qi "nan\|inf" scores.jsonl &&
    ok "reward score reads the Llama reward model: 20 finite scores" || bad "reward score"
"$B/reward" inspect lrm/final --workspace ws.db --json --split valid > insp.json 2> err &&
    $PY - insp.json "$(metric ws.db valid/accuracy | tail -1)" > res.txt 2>&1 <<'PY' &&
import json, sys
j = json.load(open(sys.argv[1]))
def find(o, key):
    if isinstance(o, dict):
        if key in o and isinstance(o[key], (int, float)): return o[key]
        for v in o.values():
            r = find(v, key)
            if r is not None: return r
    return None
acc = find(j, "accuracy")
print(acc, sys.argv[2])
assert acc is not None and abs(acc - float(sys.argv[2])) < 1e-6
PY
    ok "reward inspect on the valid split: accuracy equals train's last held-out accuracy ($(cat res.txt))" ||
    bad "inspect: $(cat res.txt)"

# ---------------------------------------------------------------------------------------------
# 4. ppo
# a policy 32 wide (at 64, PPO's first steps at this learning rate overshoot: KL 20+ nats)
"$R" init --preset llama-tiny --n-embd 32 --n-positions 48 --tokenizer tok --seed 5 \
    --out lbase32 2> err || bad "init llama-tiny 32 wide"
cat > pre.yaml <<'YAML'
model: {init: lbase32}
out: {dir: lpre}
data: {format: text, train: [corpus.txt]}
train: {batch_size: 8, seq_len: 32, steps: 80, lr: 3e-3}
eval: {every: 1000}
YAML
"$B/sft" -c pre.yaml > /dev/null 2> err || bad "pretraining the Llama policy"
# a GPT-2 reward model of the same tokenizer that prefers digits (test_ppo's), its tokenizer files
# beside it
"$R" init --preset tiny --n-layer 1 --n-positions 48 --n-embd 32 --tokenizer tok --seed 6 \
    --score-head --no-lm-head --out grm 2>/dev/null
$PY "$FIX/ppo_craft_reward.py" grm > /dev/null || bad "crafting the reward model"
ppo_config lpre/best grm mixed
"$B/ppo" -c ppo.yaml > out 2> err; rc=$?
$PY - mixed/workspace.db > res.txt 2>&1 <<'PY'
import sqlite3, sys, math
db = sqlite3.connect(sys.argv[1])
m = lambda n: [v for (v,) in db.execute("select value from metrics where name=? order by step", (n,))]
s, kl = m("ppo/score"), m("ppo/kl")
assert len(s) == 10 and all(math.isfinite(v) for v in s + kl), s
first, last = (s[0] + s[1]) / 2, (s[-2] + s[-1]) / 2
print(f"score {first:.2f} -> {last:.2f}, max KL {max(kl):.2f}")
assert last > first + 0.3 and max(kl) < 15.0
PY
[ $rc -eq 0 ] && shape mixed/policy/config.json model_type=llama 2>> err &&
    "$R" info mixed/policy > /dev/null 2>> err &&
    ok "ppo: Llama-style policy, GPT-2 reward and value models of the same tokenizer: $(cat res.txt); the policy reloads" ||
    bad "ppo with a GPT-2 reward model (exit $rc): $(cat res.txt)"
# the same tokens in another order: a tokenizer of the same size that does not agree
$PY - tok tok2 <<'PY'
import json, os, shutil, sys
os.makedirs(sys.argv[2], exist_ok=True)
v = json.load(open(sys.argv[1] + "/vocab.json"))
names = sorted(v, key=v.get)
a, b = v[names[-2]], v[names[-3]]   # two merged tokens (the last id is <|endoftext|>) swap ids
v[names[-2]], v[names[-3]] = b, a
json.dump(v, open(sys.argv[2] + "/vocab.json", "w"))
shutil.copy(sys.argv[1] + "/merges.txt", sys.argv[2] + "/merges.txt")
PY
"$R" init --preset tiny --n-layer 1 --n-positions 48 --n-embd 32 --tokenizer tok2 --seed 6 \
    --score-head --no-lm-head --out grm_other 2>/dev/null
expect_fail "ppo: a reward model whose tokenizer gives an id other bytes: refused, naming the id" 1 \
    "model.reward: the tokenizer of grm_other and the policy's (lpre/best) disagree on token id" \
    "$B/ppo" -c ppo.yaml --set model.reward=grm_other --set out.dir=o1
# the same tokens, two merges in the other order: text is split differently
mkdir grm_merges && cp grm/config.json grm/model.safetensors grm/vocab.json grm_merges/
awk 'NR == 2 { held = $0; next } NR == 3 { print; print held; next } { print }' grm/merges.txt \
    > grm_merges/merges.txt
expect_fail "ppo: a reward model whose tokenizer has the same tokens but other merges: refused" 1 \
    "model.reward: .*grm_merges .*same tokens but different merges" \
    "$B/ppo" -c ppo.yaml --set model.reward=grm_merges --set out.dir=o3
mkdir grm_bare && cp grm/config.json grm/model.safetensors grm_bare/
expect_fail "ppo: a GPT-2 reward model without tokenizer files beside a Llama-style policy: refused" 1 \
    "model.reward: grm_bare is a GPT-2 model without tokenizer files beside a Llama-style policy" \
    "$B/ppo" -c ppo.yaml --set model.reward=grm_bare --set out.dir=o2
# all four of the Llama-style kind: the SFT policy, its reward model; kill -9 and resume
cat > lppo.yaml <<'YAML'
model: {policy: lsft/best, reward: lrm/final}
out: {dir: lfull}
data: {prompts: [prompts.jsonl]}
rollout: {batch_size: 8, max_new_tokens: 6}
ppo: {minibatch_size: 4, epochs: 1}
ptx: {coef: 1, data: [corpus.txt], batch_size: 4, seq_len: 32}
kl: {beta: 0.1}
train: {iterations: 24, policy_lr: 1e-3, value_lr: 1e-3, ema: 0.9}
save: {every: 1}
YAML
"$B/ppo" -c lppo.yaml > /dev/null 2> err &&
    shape lfull/last/value/config.json "architectures=['LlamaForSequenceClassification']" \
        2>> err && [ "$(metric lfull/workspace.db ppo/score | grep -c 'nan\|inf')" = 0 ] &&
    ok "ppo with Llama-style policy, reference, reward and value models: 24 iterations, finite scores" ||
    bad "all-Llama ppo"
# the held-out pretraining loss at the end equals `rlhf eval` on the same two windows of 32
# positions (ptx.seq_len, the policy's longest row) of held.txt's tokens and the end token
"$B/ppo" -c lppo.yaml --set out.dir=lpl --set train.iterations=3 --set train.ema=0 \
    --set eval.pretrain_text=held.txt --set eval.pretrain_max_windows=2 > /dev/null 2> err ||
    bad "llama ppo with eval.pretrain_text"
{ cat held.txt; printf '<|endoftext|>'; } | "$R" tokenizer encode tok --special |
    tr -s ' \n' '\n' > held_all.ids
head -n 33 held_all.ids > w1.ids; sed -n '33,65p' held_all.ids > w2.ids
a=$("$R" eval lpl/policy --ids w1.ids 2> /dev/null | sed -n 's/^loss //p')
b=$("$R" eval lpl/policy --ids w2.ids 2> /dev/null | sed -n 's/^loss //p')
want=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.6f", (a + b) / 2 }')
got=$(metric lpl/workspace.db valid/pretrain_loss | tail -1)
[ -n "$a" ] && [ -n "$b" ] && close "$got" "$want" 1e-5 &&
    ok "ppo on Llama-style models: the final valid/pretrain_loss $got equals rlhf eval's $want" ||
    bad "llama ppo pretraining loss: ppo $got, rlhf eval $want ($a, $b)"
sed 's/dir: lfull/dir: lkilled/' lppo.yaml > lkilled.yaml
killed=0
for delay in 0.3 0.6 0.1 1.0; do
    rm -rf lkilled
    "$B/ppo" -c lkilled.yaml > /dev/null 2>&1 &
    pid=$!
    t=0
    while [ ! -d lkilled/last ] && [ $t -lt 600 ] && kill -0 $pid 2>/dev/null; do
        sleep 0.05; t=$((t + 1)); done
    sleep $delay
    if kill -9 $pid 2>/dev/null; then killed=1; wait $pid 2>/dev/null; break; fi
    wait $pid 2>/dev/null
done
"$B/ppo" -c lkilled.yaml > /dev/null 2> err
same=1
for f in last/policy/model.safetensors last/policy/trainer_state.safetensors \
    last/value/model.safetensors last/ema/model.safetensors policy/model.safetensors; do
    cmp -s "lfull/$f" "lkilled/$f" || { same=0; echo "    differs: $f"; }
done
[ $killed -eq 1 ] && grep -q "resuming run" err && [ $same -eq 1 ] &&
    ok "ppo on Llama-style models killed with -9 and rerun: policy, value, moments, EMA bit-identical" ||
    bad "llama ppo kill/resume (killed=$killed same=$same)"

# ---------------------------------------------------------------------------------------------
# 5. generate, eval-policy
"$R" generate lsft/best --prompt "What is 2 plus 3?" --greedy --max-new 4 > g1.txt 2> err &&
    "$R" generate lsft/best --prompt "What is 2 plus 3?" --greedy --max-new 4 > g2.txt 2>> err &&
    [ -s g1.txt ] && cmp -s g1.txt g2.txt &&
    ok "rlhf generate on the Llama-style SFT model: greedy, the same twice ($(head -c 40 g1.txt | tr '\n' ' '))" ||
    bad "generate"
head -12 prompts.jsonl > ep.jsonl
"$R" eval-policy --a mixed/policy --b lpre/best --prompts ep.jsonl --max-new 6 --batch 4 \
    --reward grm --reference lpre/best --pretrain-text held.txt \
    --judge "$PY $ROOT/reward/judge_example.py" > ep.txt 2> err &&
    grep -q "^ *reward-model score  *-*[0-9.]*  *-*[0-9.]*$" ep.txt &&
    grep -q "^ *KL to reference  *[0-9.]*  *[0-9.]*$" ep.txt &&
    grep -q "^ *pretraining loss  *[0-9.]*  *[0-9.]*$" ep.txt &&
    ok "eval-policy: two Llama-style policies judged, scored by the GPT-2 reward model, their KL and pretraining losses" ||
    bad "eval-policy"
expect_fail "eval-policy: a reward model of another tokenizer refused" 1 "disagree on token id" \
    "$R" eval-policy --a mixed/policy --b lpre/best --prompts ep.jsonl --max-new 6 \
    --reward grm_other --judge "$PY $ROOT/reward/judge_example.py"
"$R" init --preset llama-tiny --n-positions 48 --tokenizer tok2 --out lother 2> /dev/null
expect_fail "eval-policy: a policy B of another tokenizer refused, naming --b and the id" 1 \
    "^rlhf eval-policy: --b: the tokenizer of lother and the policy's (mixed/policy) disagree" \
    "$R" eval-policy --a mixed/policy --b lother --prompts ep.jsonl --max-new 6 \
    --judge "$PY $ROOT/reward/judge_example.py"
lib_summary
