#!/bin/sh
# Conversations with the model's chat template, end to end on a tiny model and a byte-level
# tokenizer.json whose tokenizer_config.json has Qwen2.5's ChatML template
# (tests/fixtures/chat_tiny): `rlhf chat` with piped stdin streams its answers, keeps the
# history, /reset starts over and generation stops at the stop tokens; sft trains on a chat file
# with the template (and a template that breaks the prefix property is a clear error); reward
# import of TRL's conversational preferences equals the pairwise import of the rendered texts.
# Also: checkpoints carry a tokenizer.json directory (rlhf init --tokenizer); eval-policy,
# rlhf generate and reward label use the template and its stop tokens; prompts rendered at import
# are read as their own tokens by reward label, ppo (data.format db), reward score and dpo.
. "$PWD/tests/lib.sh"
lib_workspace
cd "$W" || exit 1
TOK="$FIX/chat_tiny"
"$R" init --preset tiny --vocab-size 259 --seed 5 --out m 2>/dev/null

# 0. rlhf init --tokenizer with a tokenizer.json directory: the checkpoint carries its tokenizer
# and chat template (rlhf chat below needs no --tokenizer then)
"$R" init --preset tiny --tokenizer "$TOK" --seed 5 --out mt 2>err &&
    cmp -s mt/tokenizer.json "$TOK/tokenizer.json" &&
    cmp -s mt/tokenizer_config.json "$TOK/tokenizer_config.json" &&
    "$R" info mt > info 2>>err && grep -q "^tokenizer *tokenizer.json" info &&
    printf 'hello\n' | "$R" chat mt --max-new-tokens 4 > /dev/null 2>>err &&
    ok "rlhf init --tokenizer: a tokenizer.json directory travels with the checkpoint" ||
    bad "rlhf init --tokenizer with tokenizer.json: $(tail -1 err)"

# 1. rlhf chat: --help, greedy answers, history, /reset
"$R" chat --help > out 2>&1 && grep -q -- "--max-new-tokens" out && grep -q "/reset" out &&
    ok "rlhf chat --help" || bad "rlhf chat --help"
chat() { "$R" chat m --tokenizer "$TOK" --temperature 1 "$@"; }
# answers are random bytes (newlines too): compare whole outputs (sampled: greedy decoding of a
# random model repeats one byte). The answer to "hello" alone,
# to "how are you" alone, and a conversation of both, a /reset, "hello" again, /quit
printf 'hello\n' | chat --seed 7 --max-new-tokens 12 > a1 2>err
printf 'how are you\n' | chat --seed 7 --max-new-tokens 12 > alone 2>>err
printf 'hello\nhow are you\n/reset\nhello\n/quit\nnot read\n' |
    chat --seed 7 --max-new-tokens 12 > out 2>>err
python3 - a1 alone out > verdict <<'PY'
import sys
a1, alone, out = (open(f, 'rb').read() for f in sys.argv[1:])
ok_ends = len(a1) > 1 and out.startswith(a1) and out.endswith(a1) and len(out) > 2 * len(a1)
mid = out[len(a1):len(out) - len(a1)]
print("ends" if ok_ends else "no", "history" if mid != alone else "same")
PY
grep -q "^ends" verdict && grep -q "new conversation" err &&
    ok "rlhf chat: streamed answers; /reset gives the first answer again; /quit ends" ||
    bad "rlhf chat: /reset ($(cat verdict))"
grep -q "history" verdict && ok "rlhf chat: the second answer depends on the history" ||
    bad "rlhf chat: history ignored"
printf 'hello\n' | chat --seed 7 --max-new-tokens 12 --system "Be brief." > sys 2>>err
cmp -s sys a1 && bad "rlhf chat: --system ignored" || ok "rlhf chat: --system changes the answer"

# 2. generation stops at a stop token: generation_config.json's eos_token_id (ids are bytes in
# this tokenizer): the answer (40 tokens without it) is cut before the first occurrence of its
# third byte
printf 'hello\n' | chat --seed 2 --max-new-tokens 40 > long 2>>err
v=$(head -c 3 long | tail -c 1 | od -An -tu1 | tr -d ' ')
echo "{\"eos_token_id\": [$v]}" > m/generation_config.json
printf 'hello\n' | chat --seed 2 --max-new-tokens 40 > cut 2>>err
want=$(python3 -c "import sys; d=open('long','rb').read(); print(len(d[:d.index(bytes([$v]))]))")
got=$(($(wc -c < cut) - 1))   # the final newline
[ "$got" -eq "$want" ] && [ "$want" -ge 2 ] && ok "rlhf chat stops at generation_config's eos" ||
    bad "rlhf chat stop: $got bytes, want $want"
rm m/generation_config.json

# 3. bad inputs: one line, exit 1
expect_fail "rlhf chat: a missing checkpoint" 1 "no-such" "$R" chat no-such
printf 'hi\n' > in
raise="{{ raise_exception('nope') }}"
expect_fail "rlhf chat: a template error names the template" 1 "data.chat_template.*nope" \
    sh -c '"$1" chat m --tokenizer "$2" --chat-template "$3" < in' sh "$R" "$TOK" "$raise"

# 3b. eval-policy: message-list prompts rendered with the checkpoint's template, answers stop at
# generation_config.json's eos_token_id (the first answer, cut before its first ASCII letter)
printf '%s\n' '{"prompt": [{"role": "user", "content": "hello"}]}' '{"prompt": "hi there"}' \
    > ep.jsonl
ep() {
    "$R" eval-policy --a mt --b mt --prompts ep.jsonl --max-new 20 --responses "$1" \
        --judge "python3 $FIX/eval_judge.py longer j.log" > /dev/null 2>>err
}
ep r1.jsonl && v=$(python3 -c "import json, sys
o = json.loads(open('r1.jsonl').readline())['output']
print(next(ord(c) for c in o[1:] if c.isascii() and c.isalpha()))") &&
    echo "{\"eos_token_id\": [$v]}" > mt/generation_config.json && ep r2.jsonl &&
    python3 - "$v" > verdict <<'PY'
import json, sys
a, b = ([json.loads(l) for l in open(f)] for f in ("r1.jsonl", "r2.jsonl"))
c = chr(int(sys.argv[1]))
rendered = a[0]["instruction"].startswith("<|im_start|>system\n") and a[0]["instruction"].endswith(
    "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n")
cut = b[0]["output"] == a[0]["output"][:a[0]["output"].index(c)]
print("rendered" if rendered else "plain", "cut" if cut else "uncut")
PY
grep -q "^rendered cut" verdict &&
    ok "eval-policy: the checkpoint's chat template and generation_config stop tokens" ||
    bad "eval-policy with a chat template: $(cat verdict 2>/dev/null) $(tail -1 err)"
rm -f mt/generation_config.json
# rlhf generate stops there too (the streamed continuation cut before the stop token's byte)
"$R" generate mt --prompt hello --max-new 30 --seed 3 > g1 2>>err
v=$(head -c 4 g1 | tail -c 1 | od -An -tu1 | tr -d ' ')
echo "{\"eos_token_id\": [$v]}" > mt/generation_config.json
"$R" generate mt --prompt hello --max-new 30 --seed 3 > g2 2>>err
"$R" generate mt --prompt hello --max-new 30 --seed 3 --no-stop > g3 2>>err
want=$(python3 -c "d=open('g1','rb').read(); print(len(d[:d.index(bytes([$v]))]))")
[ "$(($(wc -c < g2) - 1))" -eq "$want" ] && [ "$want" -ge 3 ] && cmp -s g1 g3 &&
    ok "rlhf generate stops at generation_config's eos (not with --no-stop)" ||
    bad "rlhf generate stop: $(wc -c < g2) bytes, want $want + 1"
rm -f mt/generation_config.json

# 4. sft on chat data with the template; a template breaking the prefix property is an error
CD="$FIX/chat_data"
for i in 1 2 3 4 5 6 7 8; do sed -n 1p "$CD/sft_chat.jsonl"; done > train.jsonl
cat "$CD/sft_chat.jsonl" >> train.jsonl
cat > sft.yaml <<YAML
model: {init: m, tokenizer: "$TOK"}
out: {dir: run}
data: {format: jsonl, train: [train.jsonl], valid_percent: 0}
train: {batch_size: 4, epochs: 1, lr: 1e-3}
YAML
"$B/sft" -c sft.yaml > out 2>err && grep -q "10 examples" err &&
    cmp -s run/last/tokenizer_config.json "$TOK/tokenizer_config.json" &&
    ok "sft trains on chats rendered with the template" || bad "sft with a chat template"
count='{{ messages|length }}{% for m in messages %}{{ m.content }}{% endfor %}'
expect_fail "sft: a template breaking the prefix property" 1 "train.jsonl:1.*prefix property" \
    "$B/sft" -c sft.yaml --set out.dir=run2 --set "data.chat_template=$count"

# 5. reward import: TRL's conversational forms equal the pairwise import of the rendered texts
imp() { "$B/reward" import --source s --labeler l --workspace "$@"; }
imp a.db --tokenizer "$TOK" "$CD/prefs_conv.jsonl" 2>err &&
    imp b.db "$CD/prefs_rendered.jsonl" 2>>err || bad "reward import"
dump() {
    sqlite3 "$1" "select p.text, c.text, r.rank from prompts p join completions c on
        c.prompt_id = p.id join ranking_items r on r.completion_id = c.id order by c.id"
}
dump a.db > a.txt 2>>err; dump b.db > b.txt 2>>err
[ "$(wc -l < a.txt)" -ge 4 ] && cmp -s a.txt b.txt &&
    ok "reward import: TRL conversations == rendered pairs" ||
    bad "reward import: conversational != pairwise"
# the rendered prompts are stored as such (readers neither wrap them again nor read their special
# tokens as text); the same texts imported as plain strings stay plain
r=$(sqlite3 a.db "select count(*), sum(rendered) from prompts" 2>>err)
p=$(sqlite3 b.db "select count(*), sum(rendered) from prompts" 2>>err)
[ "${r%|*}" -ge 2 ] && [ "${r%|*}" = "${r#*|}" ] && [ "${p#*|}" = 0 ] &&
    ok "reward import: rendered conversations are marked rendered" ||
    bad "reward import: rendered marks ($r / $p)"
expect_fail "reward import: conversations that differ before the end" 1 \
    "prefs_bad_prefix.jsonl:1: chosen and rejected differ" \
    imp c.db --tokenizer "$TOK" "$CD/prefs_bad_prefix.jsonl"
expect_fail "reward import: an unknown role names file:line" 1 \
    "prefs_bad_role.jsonl:1: .*role must be" imp c.db --tokenizer "$TOK" "$CD/prefs_bad_role.jsonl"
expect_fail "reward import: a conversation as the prompt needs a template" 1 \
    "prefs_conv.jsonl:2: .*needs a chat template" imp d.db "$CD/prefs_conv.jsonl"

# 5b. reward label --policy samples after the rendered prompt and stops at the checkpoint's stop
# tokens: the same prompt (same samples), once without and once with generation_config.json's eos
cat > judge.py <<'PY'
import json, sys
log = open(sys.argv[1], "a")
for line in sys.stdin:
    req = json.loads(line)
    log.write(json.dumps({"c": req["completions"], "ended": req.get("ended")}) + "\n"); log.flush()
    print(json.dumps(list(range(1, len(req["completions"]) + 1))), flush=True)
PY
echo '{"prompt": [{"role": "user", "content": "hello"}]}' > lp.jsonl
label() {
    imp "$1" --tokenizer "$TOK" lp.jsonl 2>>err &&
    "$B/reward" label --workspace "$1" --labeler bot --policy mt --k 2 --max-new 16 \
        --judge "python3 judge.py $2" > /dev/null 2>>err
}
label l1.db l1.log && v=$(python3 -c "import json
c = json.loads(open('l1.log').readline())['c'][0]
print(next(ord(x) for x in c[2:] if x.isascii() and x.isalpha()))") &&
    echo "{\"eos_token_id\": [$v]}" > mt/generation_config.json && label l2.db l2.log &&
    python3 - "$v" > verdict <<'PY'
import json, sys
a, b = (json.loads(open(f).readline()) for f in ("l1.log", "l2.log"))
c = chr(int(sys.argv[1]))
cut = b["c"][0] == a["c"][0][:a["c"][0].index(c)] and b["ended"][0] is True
print("cut" if cut else "uncut", a, b)
PY
grep -q "^cut" verdict &&
    ok "reward label --policy: a rendered prompt; stops at the checkpoint's eos" ||
    bad "reward label --policy with a template: $(head -c 300 verdict) $(tail -1 err)"
rm -f mt/generation_config.json

# 5c. ppo data.format db: a prompt rendered at import is exactly its tokens (special tokens as
# tokens, no second format around it): it fits data.max_prompt_tokens = that count, not one less
"$R" init --preset tiny --n-layer 1 --tokenizer "$TOK" --seed 6 --score-head --no-lm-head \
    --out rm 2>>err
sqlite3 l1.db "select text from prompts where id = 1" | head -c -1 > ptext 2>>err
n=$("$R" tokenizer encode "$TOK" --special --text ptext 2>>err | wc -w)
ppo() {
    cat > ppo.yaml <<YAML
model: {policy: mt, reward: rm}
out: {dir: pout$1}
workspace: l1.db
data: {format: db, max_prompt_tokens: $1, truncation: error}
rollout: {batch_size: 4, max_new_tokens: 4}
ppo: {minibatch_size: 2, epochs: 1}
ptx: {coef: 0}
train: {iterations: 1}
YAML
    "$B/ppo" -c ppo.yaml > /dev/null 2>"ppo$1.err"
}
[ "$n" -gt 20 ] && ppo "$n" && ! ppo $((n - 1)) &&
    grep -q "workspace prompt 1: the prompt is $n tokens" "ppo$((n - 1)).err" &&
    ok "ppo data.format db: a rendered prompt is read as its own tokens" ||
    bad "ppo with a rendered prompt ($n): $(tail -1 "ppo$n.err")"

# 5c'. ppo stops where the policy's checkpoint says (generation_config.json's eos, from 5b), and a
# response ending there counts as ended: not cut off by the length limit, no missing-end penalty
echo "{\"eos_token_id\": [$v]}" > mt/generation_config.json
before=$(sqlite3 l1.db "select coalesce(max(id), 0) from rollouts" 2>>err)
sed -e "s/max_new_tokens: 4/max_new_tokens: 24/" -e "s/batch_size: 4/batch_size: 8/" \
    -e "s/max_prompt_tokens: [0-9]*/max_prompt_tokens: $n/" ppo.yaml |
    sed "s/dir: pout[0-9]*/dir: pstop/" > ppo_stop.yaml
"$B/ppo" -c ppo_stop.yaml > /dev/null 2> ppo_stop.err
stopped=$(sqlite3 l1.db "select count(*) from rollouts where id > $before and response_tokens < 24" \
    2>>err)
unended=$(sqlite3 l1.db "select count(*) from rollouts where id > $before and response_tokens < 24 \
    and ended = 0" 2>>err)
[ "${stopped:-0}" -gt 0 ] && [ "$unended" = 0 ] &&
    ok "ppo: stops at the checkpoint's eos ($stopped of 8 responses), each counted as ended" ||
    bad "ppo with generation_config.json's eos: $stopped stopped, $unended of them not ended \
$(tail -1 ppo_stop.err)"
rm -f mt/generation_config.json

# 5c''. a reward model whose tokenizer.json splits differently (the same tokens, another
# normalizer) is refused before anything runs; one with GPT-2's two files beside a tokenizer.json
# policy too (nothing shows the two kinds split text alike)
cp -r rm rm_swap && python3 - rm_swap/tokenizer.json <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
t["normalizer"] = {"type": "NFKC"}
json.dump(t, open(sys.argv[1], "w"))
PY
sed "s/reward: rm}/reward: rm_swap}/; s/dir: pout[0-9]*/dir: pswap/; s/max_prompt_tokens: [0-9]*/max_prompt_tokens: $n/" \
    ppo.yaml > ppo_swap.yaml
"$B/ppo" -c ppo_swap.yaml > /dev/null 2> ppo_swap.err; rc=$?
[ $rc = 1 ] && grep -q "same tokens but a different tokenizer.json" ppo_swap.err &&
    ok "ppo: a reward model whose tokenizer.json splits text otherwise is refused" ||
    bad "ppo with a reward model merging differently: exit $rc, $(tail -1 ppo_swap.err)"
cp -r rm rm_two && rm rm_two/tokenizer.json && python3 - rm/tokenizer.json rm_two <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
vocab = dict(t["model"]["vocab"])
vocab.update({a["content"]: a["id"] for a in t.get("added_tokens", [])})
json.dump(vocab, open(sys.argv[2] + "/vocab.json", "w"))
merges = [m if isinstance(m, str) else " ".join(m) for m in t["model"]["merges"]]
open(sys.argv[2] + "/merges.txt", "w").write("#version: 0.2\n" + "\n".join(merges) + "\n")
PY
sed "s/reward: rm}/reward: rm_two}/; s/dir: pout[0-9]*/dir: ptwo/; s/max_prompt_tokens: [0-9]*/max_prompt_tokens: $n/" \
    ppo.yaml > ppo_two.yaml
"$B/ppo" -c ppo_two.yaml > /dev/null 2> ppo_two.err; rc=$?
[ $rc = 1 ] && grep -q "rm_two and the policy's tokenizer .* are of two kinds" ppo_two.err &&
    ok "ppo: a reward model with GPT-2's files beside a tokenizer.json policy is refused" ||
    bad "ppo with two tokenizer kinds: exit $rc, $(tail -1 ppo_two.err)"

# 5d. reward score of workspace completions: a rendered prompt ($n tokens), its longest answer and
# the end token exactly fill the reward model's positions (wrapped once more they would not)
longest=0
for id in 1 2; do
    sqlite3 l1.db "select text from completions where id = $id" | head -c -1 > ctext 2>>err
    c=$("$R" tokenizer encode "$TOK" --text ctext 2>>err | wc -w)
    [ "$c" -gt "$longest" ] && longest=$c
done
"$R" init --preset tiny --n-layer 1 --n-positions $((n + longest + 1)) --tokenizer "$TOK" \
    --seed 6 --score-head --no-lm-head --out rm128 2>>err
"$B/reward" score rm128 --workspace l1.db > /dev/null 2>score.err &&
    [ "$(sqlite3 l1.db "select count(*) from reward_scores" 2>>err)" -ge 2 ] &&
    ! grep -q "longer than the context" score.err &&
    ok "reward score: completions of a rendered prompt scored on its own tokens" ||
    bad "reward score with a rendered prompt: $(tail -1 score.err)"

# 6. dpo: data.import of conversational preferences renders them with the checkpoint's template
# (stored rendered), and trains on them
cat > dpo.yaml <<'YAML'
model: {init: mt}
out: {dir: drun}
workspace: d.db
data: {import: [prefs.jsonl], valid_percent: 0}
train: {batch_size: 2, steps: 2, lr: 1e-3}
YAML
cat "$CD/prefs_conv.jsonl" "$CD/prefs_conv.jsonl" > prefs.jsonl
"$B/dpo" -c dpo.yaml > out 2>err &&
    n=$(sqlite3 d.db "select count(*) from prompts where rendered = 1 and text like
        '<|im_start|>%'" 2>>err) && [ "$n" -ge 2 ] &&
    ok "dpo: conversational data.import rendered with the template, trained on" ||
    bad "dpo with conversations: $(tail -1 err)"
lib_summary
