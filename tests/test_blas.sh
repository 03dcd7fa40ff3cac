#!/bin/sh
# The BLAS kernel at startup (common/blas.h): a program whose OpenBLAS chose a narrower kernel than
# the CPU runs re-executes itself once with OPENBLAS_CORETYPE set to the best one, keeps its
# arguments and environment, says so in one line, never loops, and leaves a user's own
# OPENBLAS_CORETYPE alone; stages of a pipeline inherit the choice silently. The library's own
# choice is pretended with RLHF_BLAS_TEST_CORE (this machine's library may choose right already);
# the kernel selected is always one this CPU runs (the decision on its real features). The same
# re-execution sets OMP_WAIT_POLICY=passive when it is unset, never replacing the user's value.
. "$PWD/tests/lib.sh"
lib_workspace
unset OPENBLAS_CORETYPE RLHF_BLAS_TEST_CORE RLHF_BLAS_TEST_CORE_AFTER RLHF_BLAS_TEST_CPU \
    RLHF_BLAS_REEXEC RLHF_BLAS_SELECTED
cd "$W" || exit 1

"$R" info --system > sys.txt 2> err
native=$(sed -n 's/^openblas core *\([A-Za-z0-9_]*\) .*/\1/p' sys.txt)
best=$(sed -n 's/^openblas core .*best for this CPU: \([A-Za-z0-9_]*\))$/\1/p' sys.txt)
[ -n "$native" ] && [ -n "$best" ] && grep -q "^isa " sys.txt &&
    grep -q "^openblas config *OpenBLAS" sys.txt &&
    grep -q "^openmp threads *[1-9]" sys.txt && grep -q "^OMP_WAIT_POLICY " sys.txt &&
        [ ! -s err ] &&
    ok "rlhf info --system: CPU, ISA, kernel $native (best for this CPU: $best), config, threads; nothing on stderr" ||
        bad "info --system: $(cat sys.txt)"

# the reduced-precision kernels the process would take: RLHF_LOWP=portable forces the AVX2 path
# and sgemm for many rows (on a CPU without AVX2, the scalar one), noamx never names the tiles
RLHF_LOWP=portable "$R" info --system > lp1 2> err
RLHF_LOWP=noamx "$R" info --system > lp2 2>> err
grep -q "^lowp kernels *bf16 [a-z]" sys.txt &&
    grep -q "^lowp kernels *bf16 \(portable\|scalar\).*sgemm (RLHF_LOWP=portable)$" lp1 &&
    grep -q "^lowp kernels .*(RLHF_LOWP=noamx)$" lp2 && ! grep -q "AMX" lp2 && [ ! -s err ] &&
    ok "rlhf info --system: the bf16/int8 kernels ($(sed -n 's/^lowp kernels *//p' sys.txt)),\
 RLHF_LOWP=portable and noamx" ||
    bad "info --system lowp line: $(grep '^lowp' sys.txt lp1 lp2) $(cat err)"

# sgemm's row invariance, probed in the loaded library: OpenBLAS's Haswell kernel (AVX2) runs a
# product's last rows through other micro-kernels (stored and compared forwards then take the
# few-row kernels), Sandybridge's (AVX) does not
if grep -q "^isa .*avx2" sys.txt; then
    OPENBLAS_CORETYPE=Haswell "$R" info --system > out 2> err
    OPENBLAS_CORETYPE=Sandybridge "$R" info --system > out2 2>> err
    grep -q "^openblas sgemm rows *not row-invariant: stored and compared forwards use the few-row" out &&
        grep -q "^openblas sgemm rows *row-invariant" out2 && [ ! -s err ] &&
        ok "info --system: sgemm rows not row-invariant under Haswell's kernel, invariant under Sandybridge's" ||
        bad "sgemm rows: $(grep sgemm out out2)"
else
    ok "sgemm rows under Haswell's kernel: not asked, this CPU has no AVX2"
fi

# OMP_WAIT_POLICY: unset, the program re-executes itself with passive and a short spin
# (GOMP_SPINCOUNT 20000), which the OpenMP library of the image that runs takes (libgomp's own
# report); a value the user set is kept, whatever the kernel decision, and so is a spin count
env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT OMP_DISPLAY_ENV=verbose "$R" info --system > out 2> err
spin=$(sed -n "s/^ *GOMP_SPINCOUNT = '\([0-9]*\)'.*/\1/p" err | tail -1)
[ "$spin" = 20000 ] && grep -q "^OMP_WAIT_POLICY *passive (set at startup, as it was unset" out &&
    grep -q "^GOMP_SPINCOUNT *20000 (set at startup with passive" out &&
    ! grep -v "^ \|OPENMP DISPLAY\|^$" err | grep -q . &&
    ok "OMP_WAIT_POLICY unset: the program runs with passive and libgomp's spin count $spin, says so in info --system, nothing on stderr" ||
        bad "OMP_WAIT_POLICY unset: spin count '$spin', $(grep 'OMP_WAIT\|SPINCOUNT' out)"
env -u OMP_WAIT_POLICY GOMP_SPINCOUNT=7 OMP_DISPLAY_ENV=verbose "$R" info --system > out 2> err
spin=$(sed -n "s/^ *GOMP_SPINCOUNT = '\([0-9]*\)'.*/\1/p" err | tail -1)
[ "$spin" = 7 ] && grep -q "^OMP_WAIT_POLICY *passive (set at startup" out &&
    grep -q "^GOMP_SPINCOUNT *7$" out &&
    ok "GOMP_SPINCOUNT set by the user: kept beside the passive policy the program sets" ||
        bad "GOMP_SPINCOUNT=7: libgomp's spin count '$spin', $(grep SPINCOUNT out)"
for kernel in "" Prescott; do
    for pol in active PASSIVE; do
        RLHF_BLAS_TEST_CORE=$kernel OMP_WAIT_POLICY=$pol OMP_DISPLAY_ENV=verbose "$R" info \
            --system > out 2> err
        want=$([ $pol = active ] && echo ACTIVE || echo PASSIVE)
        got=$(sed -n "s/^ *OMP_WAIT_POLICY = '\([A-Z]*\)'.*/\1/p" err | tail -1)
        [ "$got" = "$want" ] && grep -q "^OMP_WAIT_POLICY *$pol (set by the user)$" out &&
            ok "OMP_WAIT_POLICY=$pol set by the user is kept${kernel:+ (through a kernel re-execution)}" ||
                bad "OMP_WAIT_POLICY=$pol kept (kernel '$kernel'): libgomp $got, $(grep OMP_WAIT out)"
    done
done

if [ "$best" = generic ]; then
    # a CPU without AVX: no kernel is better than what the library chose, nothing may change
    RLHF_BLAS_TEST_CORE=Prescott "$R" info --system > out 2> err
    [ ! -s err ] && grep -q "^openblas core *Prescott (chosen by the library" out &&
        ok "a CPU without AVX: Prescott kept, nothing said" || bad "no AVX"
else
    # 1. the library "chose" Prescott: one re-execution onto the best kernel, one line saying so
    RLHF_BLAS_TEST_CORE=Prescott OMP_NUM_THREADS=1 "$R" info --system > out 2> err; rc=$?
    [ $rc -eq 0 ] && [ "$(wc -l < err)" -eq 1 ] &&
        grep -q "^rlhf: OpenBLAS chose its Prescott kernel but this CPU has .*: running its $best kernel (OPENBLAS_CORETYPE=$best; set OPENBLAS_CORETYPE to choose another)$" err &&
        grep -q "^openblas core *$best (selected at startup in place of Prescott" out &&
        grep -q "^openblas config .* $best MAX_THREADS" out &&
        ok "a Prescott choice on this CPU: re-executed once onto $best, the library runs it, one line says so" ||
            bad "re-execution (exit $rc): $(grep core out)"
    # 2. the environment and the arguments survive the re-execution
    grep -q "^OMP_NUM_THREADS *1$" out && grep -q "^openmp threads *1$" out &&
        ok "the environment is kept (OMP_NUM_THREADS=1 reaches the re-executed image)" ||
            bad "environment: $(grep -i threads out)"
    printf 'Hello, "quoted" world\n' > "a file with spaces.txt"
    "$R" tokenizer encode "$ROOT/data/gpt2" --text "a file with spaces.txt" > want 2> err
    RLHF_BLAS_TEST_CORE=Prescott "$R" tokenizer encode "$ROOT/data/gpt2" \
        --text "a file with spaces.txt" > got 2> err; rc=$?
    [ $rc -eq 0 ] && [ -s want ] && cmp -s want got && grep -q "running its $best kernel" err &&
        ok "the arguments are kept (a path with spaces, read by the re-executed image)" ||
            bad "arguments (exit $rc)"
    # 3. a library that ignores the variable: one try, a line saying so, no loop
    RLHF_BLAS_TEST_CORE=Prescott RLHF_BLAS_TEST_CORE_AFTER=Prescott timeout 20 "$R" info \
        --system > out 2> err; rc=$?
    [ $rc -eq 0 ] && [ "$(wc -l < err)" -eq 1 ] &&
        grep -q "did not take OPENBLAS_CORETYPE=$best and runs its Prescott kernel" err &&
        [ "$(grep -c '^cpu ' out)" -eq 1 ] &&
        ok "the library ignores OPENBLAS_CORETYPE: no second re-execution, one line says so, the command runs once" ||
            bad "loop guard (exit $rc)"
    # 4. the user's OPENBLAS_CORETYPE wins, even a narrower one
    OPENBLAS_CORETYPE=Prescott "$R" info --system > out 2> err
    [ ! -s err ] && grep -q "^openblas core *Prescott (set by OPENBLAS_CORETYPE" out &&
        ok "OPENBLAS_CORETYPE set by the user: left alone, nothing said" || bad "user's choice"
    # 5. a kernel as wide as the best one: nothing happens
    RLHF_BLAS_TEST_CORE=$best "$R" info --system > out 2> err
    [ ! -s err ] && grep -q "^openblas core *$best (chosen by the library" out &&
        ok "already the best kernel: no re-execution" || bad "best already"
    # 6. an AVX2-only CPU (pretended; this one runs Haswell's code too): Haswell
    RLHF_BLAS_TEST_CORE=Prescott RLHF_BLAS_TEST_CPU="sse3 avx avx2 fma" "$R" info \
        --system > out 2> err
    grep -q "running its Haswell kernel" err && grep -q "^openblas core *Haswell (selected" out &&
        ok "an AVX2 CPU under Prescott: Haswell" || bad "AVX2 CPU"
    # 7. a pipeline's stages inherit the selection: the runner says it once, the stage nothing
    cat > p.yaml <<'YAML'
workspace: ws
stages:
  - name: sys
    run: rlhf info
    args: [--system]
YAML
    RLHF_BLAS_TEST_CORE=Prescott "$R" run p.yaml > out 2> err; rc=$?
    [ $rc -eq 0 ] && [ "$(grep -c 'OpenBLAS chose' err)" -eq 1 ] &&
        ! grep -q "OpenBLAS chose" ws/logs/sys.log 2>/dev/null &&
        grep -rq "^openblas core *$best (selected at startup in place of Prescott" ws/ &&
        ok "rlhf run: one line from the runner, the stage inherits $best silently" ||
            bad "pipeline (exit $rc): $(ls ws ws/logs 2>&1 | tr '\n' ' ')"
fi
lib_summary
