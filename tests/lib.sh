# The shell tests' one preamble. Source it first, from the repository root:
#   . "$PWD/tests/lib.sh"
# It sets
#   BUILD (default build), ROOT (the repository), TESTS and FIX (tests/, tests/fixtures),
#   B (BUILD/bin) and R (the rlhf tool), pass and fail (the counters)
# and defines
#   ok NAME / bad NAME      count a check that passed / failed; bad shows the end of $W/err
#                           (ERR_LINES lines, default 5) when there is one
#   expect_fail NAME CODE PATTERN CMD...   CMD exits CODE with a message matching PATTERN
#   lib_workspace           W: a fresh temporary folder, removed on exit (made writable first);
#                           AT_EXIT, when set, is run before (a test's own clean-up)
#   lib_summary             the closing line "N passed, N failed"; fails when a check failed
#   lib_make ARGS...        make ARGS in the repository, one at a time: tests run two at once
#                           (run_tests.sh), and two builds of one variant (build-mpi: test_mpi
#                           and test_dpo) must not write the same objects together
#   lib_sanitized           true when BUILD's programs are built with AddressSanitizer
#   lib_avx2_cpu            true when this CPU runs x86-64-v3 code (AVX2, FMA, BMI1/2, F16C, MOVBE,
#                           LZCNT): the AVX2 build below runs here
#   lib_avx2 TARGET...      make TARGETs (paths under $AVX2) in AVX2=build-avx2, the build for CPUs
#                           without AVX-512 (-march=x86-64-v3, no sanitizer), which test_valgrind
#                           and test_avx2 share (its library is compiled once); on failure the
#                           build's last lines are shown and it returns 1
#   sums N FORMAT           N arithmetic examples, one line each: FORMAT (printf) given a, b, a+b
#                           and a+b+1, with a = 7i mod 19 and b = 11i mod 17, the same every time
#   tiny_data N             N such examples in the current folder as corpus.txt (text),
#                           demos.jsonl (prompt/response), rank.jsonl (3-way rankings) and
#                           prompts.jsonl (prompts only)
#   tiny_tok VOCAB [CORPUS [OUT]]   a byte-level BPE tokenizer trained on CORPUS (corpus.txt) in
#                           OUT (tok), quietly
#   below D T / close A B REL      D < T; |A-B| <= REL*|B| (figures printed by programs)
BUILD=${BUILD:-build}
ROOT=$PWD
TESTS="$ROOT/tests"
FIX="$TESTS/fixtures"
B="$ROOT/$BUILD/bin"
R="$B/rlhf"
pass=0; fail=0

ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() {
    fail=$((fail + 1)); echo "FAIL $1"
    [ -n "$W" ] && [ -f "$W/err" ] && sed 's/^/    /' "$W/err" | tail -n "${ERR_LINES:-5}"
    return 0
}
# expect_fail NAME CODE PATTERN CMD...: exit status CODE and a message matching PATTERN on stderr
expect_fail() {
    name=$1; code=$2; pat=$3; shift 3
    "$@" >"$W/out" 2>"$W/err"; rc=$?
    if [ "$rc" -eq "$code" ] && grep -q -- "$pat" "$W/err"; then ok "$name"
    else echo "    exit $rc (want $code, message '$pat')"; bad "$name"; fi
}
lib_summary() { echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]; }
# (the lock: flock(1) on the Makefile, which every build reads anyway; DEPS_DONE: the packages
# were checked by the `make test` that runs the tests, scripts/deps.sh is not run again)
lib_make() { flock "$ROOT/Makefile" make -C "$ROOT" DEPS_DONE=1 "$@"; }
lib_sanitized() { nm "$ROOT/$BUILD/bin/rlhf" 2>/dev/null | grep -q __asan_init; }
AVX2=build-avx2
lib_avx2_cpu() {
    [ "$(uname -m)" = x86_64 ] || return 1
    flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
    for f in avx2 fma bmi1 bmi2 f16c movbe abm; do
        case "$flags" in *" $f "*) ;; *) return 1;; esac
    done
}
# (DEBUG and MPI emptied: a `make DEBUG=1 test` passes its variables down to the makes it starts)
lib_avx2() {
    log=$(mktemp) || return 1
    if ! lib_make --no-print-directory -j2 DEBUG= MPI= BUILD=$AVX2 ARCH=-march=x86-64-v3 "$@" \
        > "$log" 2>&1; then
        tail -5 "$log"; rm -f "$log"; return 1
    fi
    rm -f "$log"
}

lib_workspace() {
    W=$(mktemp -d) || exit 1
    trap 'lib_exit' EXIT
}
lib_exit() {
    [ -n "$AT_EXIT" ] && eval "$AT_EXIT"
    cd / && chmod -R u+w "$W" 2>/dev/null; rm -rf "$W"
}

SUM_TEXT='What is %d plus %d? %d'
SUM_DEMO='{"prompt": "What is %d plus %d?", "response": "%d"}'
SUM_PROMPT='{"prompt": "What is %d plus %d?"}'
SUM_RANK='{"prompt": "What is %d plus %d?", "completions": ["%d", "%d", "no"], "ranking": "1>2>3"}'
sums() {
    awk -v n="$1" -v f="$2\n" 'BEGIN {
        for (i = 0; i < n; i++) {
            a = i * 7 % 19; b = i * 11 % 17
            printf f, a, b, a + b, a + b + 1
        }
    }'
}
tiny_data() {
    sums "$1" "$SUM_TEXT" > corpus.txt
    sums "$1" "$SUM_DEMO" > demos.jsonl
    sums "$1" "$SUM_RANK" > rank.jsonl
    sums "$1" '{"prompt": "Add %d and %d"}' > prompts.jsonl
}
tiny_tok() { "$R" tokenizer train --vocab-size "$1" --out "${3:-tok}" \
    "${2:-corpus.txt}" 2>/dev/null; }

below() { awk -v d="$1" -v t="$2" 'BEGIN { exit !(d != "" && d + 0 < t + 0) }'; }
close() {
    awk -v a="$1" -v b="$2" -v r="$3" \
        'BEGIN { d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b; exit !(a != "" && d <= r * m) }'
}

# tiny_stages CORPUS STEPS EVERY [SETTING]: the stages of a tiny pipeline (YAML): a tokenizer
# trained on CORPUS (a YAML value), a base model, then STEPS sft steps on train.jsonl with a
# held-out check every EVERY steps, and SETTING (one more "key: value" of the sft stage)
tiny_stages() {
    cat <<YAML
stages:
  - name: tokenizer
    run: rlhf tokenizer train
    args: [--vocab-size, "300", --out, "\${tokenizer.out}", $1]
  - name: base
    run: rlhf init
    needs: [tokenizer]
    args: [--preset, tiny, --n-positions, "32", --tokenizer, "\${tokenizer.out}", --seed, "\${seed}", --out, "\${base.out}"]
  - name: sft
    run: sft
    needs: [base]
    settings:
      model.init: \${base.out}
      data: {format: jsonl, train: [train.jsonl]}
      train: {batch_size: 8, steps: $2, lr: 3e-3}
      eval.every: $3
YAML
    [ -z "$4" ] || echo "      $4"
}
