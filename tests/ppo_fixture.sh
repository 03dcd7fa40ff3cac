# What the ppo tests share (sourced after tests/lib.sh, in the work folder): the sums as text
# (corpus.txt) and as prompts (prompts.jsonl), a tokenizer (tok), a reward model crafted to prefer
# digit tokens (rm, tests/fixtures/ppo_craft_reward.py) and a policy pretrained briefly on the
# sums (pre/best); ppo_config POLICY REWARD OUT, the short PPO run the tests start from, into
# ppo.yaml; and metric DB NAME STEP, a run's metric as Python prints it ('none': absent).
metric() {
    python3 -c "import sqlite3,sys; r=sqlite3.connect(sys.argv[1]).execute('select value from metrics where name=? and step=?', (sys.argv[2], int(sys.argv[3]))).fetchone(); print(repr(r[0]) if r else 'none')" "$@"
}
ppo_fixture() {
    sums 300 "$SUM_TEXT" > corpus.txt
    sums 300 "$SUM_PROMPT" > prompts.jsonl
    tiny_tok 300
    "$B/rlhf" init --preset tiny --n-layer 2 --n-positions 48 --n-embd 32 --tokenizer tok \
        --seed 5 --out base 2>/dev/null
    "$B/rlhf" init --preset tiny --n-layer 1 --n-positions 48 --n-embd 32 --tokenizer tok \
        --seed 6 --score-head --no-lm-head --out rm 2>/dev/null
    python3 "$FIX/ppo_craft_reward.py" rm > /dev/null || bad "crafting the reward model"
    cat > pre.yaml <<'YAML'
model: {init: base}
out: {dir: pre}
data: {format: text, train: [corpus.txt]}
train: {batch_size: 8, seq_len: 32, steps: 80, lr: 3e-3}
eval: {every: 1000}
YAML
    "$B/sft" -c pre.yaml > /dev/null 2>&1 || bad "pretraining the policy"
}

ppo_config() {
    cat > ppo.yaml <<YAML
model: {policy: $1, reward: $2}
out: {dir: $3}
data: {prompts: [prompts.jsonl], prompt_template: "{prompt}"}
rollout: {batch_size: 16, max_new_tokens: 12}
ppo: {minibatch_size: 4, epochs: 2}
ptx: {coef: 0, data: [corpus.txt], batch_size: 4, seq_len: 32}
kl: {beta: 0.1}
train: {iterations: 10, policy_lr: 2e-3, value_lr: 3e-3}
save: {every: 5}
YAML
}
