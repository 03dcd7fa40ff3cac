#!/bin/sh
# Every program once under valgrind's memcheck, end to end on a tiny model: a tokenizer, rlhf init,
# a few sft steps, reward import, a reward train step, reward score and inspect, reward label
# with a judge, one ppo iteration, rlhf info, generate and eval. A definite leak, an invalid read
# or write, or a use of uninitialised memory fails the step (--error-exitcode); OpenMP's and
# OpenBLAS's thread pools may leave "possibly lost" or still reachable blocks, which are allowed.
# valgrind does not know AVX-512, so the programs are built for it in build-avx2/ with
# -march=x86-64-v3 (AVX2: lib_avx2). Under the sanitizer build (make DEBUG=1 test) valgrind is not
# run: ASan and valgrind do not mix, and that build checks the same things itself.
. "$PWD/tests/lib.sh"
ERR_LINES=0   # vg shows what valgrind said instead
if lib_sanitized; then
    ok "valgrind not run on a sanitizer build ($BUILD: ASan checks these programs itself)"
    lib_summary; exit
fi
command -v valgrind > /dev/null ||
    { bad "valgrind is missing (scripts/deps.sh test installs it)"; lib_summary; exit; }
if ! lib_avx2 $AVX2/bin/rlhf $AVX2/bin/sft $AVX2/bin/reward $AVX2/bin/ppo; then
    bad "building $AVX2"; lib_summary; exit
fi
B="$ROOT/$AVX2/bin"
lib_workspace
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
cd "$W" || exit 1
tiny_data 12
cat > sft.yaml <<'YAML'
model: {init: base}
out: {dir: sft}
data: {format: jsonl, train: [demos.jsonl]}
train: {batch_size: 4, steps: 3, lr: 3e-3}
eval: {every: 2, prompts: ["What is 1 plus 2?"], max_new: 4}
YAML
cat > rm.yaml <<'YAML'
model: {init: sft/last}
out: {dir: rm}
workspace: ws.db
train: {batch_size: 4, steps: 2, lr: 3e-3}
eval: {every: 2}
YAML
cat > ppo.yaml <<'YAML'
model: {policy: sft/last, reward: rm/final}
out: {dir: ppo}
data: {prompts: [prompts.jsonl], prompt_template: "{prompt}"}
rollout: {batch_size: 4, max_new_tokens: 4}
ppo: {minibatch_size: 2, epochs: 1}
ptx: {coef: 1, data: [corpus.txt], batch_size: 2, seq_len: 16}
train: {iterations: 1}
YAML
# a judge that ranks the completions in the order shown
printf 'while read -r line; do echo "1>2>3"; done\n' > judge.sh

vg() {   # vg NAME COMMAND...: the command under memcheck; its errors fail the step
    name=$1; shift
    valgrind -q --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99 --track-origins=no \
        "$@" > out 2> err; rc=$?
    if [ $rc -eq 0 ] && ! grep -q '^==[0-9]*==' err; then ok "valgrind: $name"
    else bad "valgrind: $name (exit $rc)"; grep -A12 '^==[0-9]*==' err | head -40 | sed \
        's/^/    /'; [ $rc -ne 99 ] &&
        tail -3 err | sed 's/^/    /'; fi
}
vg "rlhf tokenizer train" "$B/rlhf" tokenizer train --vocab-size 280 --out tok corpus.txt
vg "rlhf init" "$B/rlhf" init --preset tiny --n-layer 1 --n-positions 32 --n-embd 32 \
    --tokenizer tok --seed 5 --out base
vg "sft, 3 steps with eval and sampling" "$B/sft" -c sft.yaml
vg "reward import" "$B/reward" import --workspace ws.db rank.jsonl prompts.jsonl
vg "reward train, 2 steps and the bias" "$B/reward" train -c rm.yaml
vg "reward score" "$B/reward" score rm/final --workspace ws.db
vg "reward inspect" "$B/reward" inspect rm/final --workspace ws.db
vg "reward label --judge, sampling from a policy" "$B/reward" label --workspace ws.db --labeler vg \
    --policy sft/last --k 3 --max-new 3 --limit 2 --judge "sh judge.sh"
vg "ppo, one iteration with the pretraining mix" "$B/ppo" -c ppo.yaml
vg "rlhf info" "$B/rlhf" info ppo/policy
vg "rlhf generate" "$B/rlhf" generate ppo/policy --prompt "What is" --max-new 4 --seed 1
vg "rlhf eval" "$B/rlhf" eval sft/last --text corpus.txt
# a generic OpenBLAS choice (pretended) must not make the program re-execute itself out of valgrind
# (the pretended choice is the library's own, made without OPENBLAS_CORETYPE: a caller's is unset)
unset OPENBLAS_CORETYPE
export RLHF_BLAS_TEST_CORE=Prescott
vg "rlhf info --system with a generic BLAS kernel" "$B/rlhf" info --system
unset RLHF_BLAS_TEST_CORE
grep -q "^openblas core *Prescott (chosen by the library" out &&
    ok "under valgrind: no re-execution (it would leave valgrind)" ||
    bad "under valgrind: $(grep '^openblas core' out)"
lib_summary
