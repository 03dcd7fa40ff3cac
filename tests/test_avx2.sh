#!/bin/sh
# The engine as CPUs without AVX-512 run it: the kernel, model and decoding unit tests built for
# AVX2 (-march=x86-64-v3: kernels.c's 8-float vectors and register tiles, 16 decoding rows, the
# row-dot kernels without the 4 x 4 tiles) in build-avx2/ (lib_avx2, shared with
# test_valgrind.sh), run as an AVX2 machine runs them: OpenBLAS's Haswell kernel (whose sgemm is
# not row-invariant: the few-row kernels take full forwards, blas.h) and the AVX2 paths of the
# bf16/int8 products (RLHF_LOWP=portable). A machine whose own build is this one runs them in
# make test anyway; on one without AVX2 they cannot run, and this says so.
. "$PWD/tests/lib.sh"
if ! lib_avx2_cpu; then
    ok "not run: this CPU cannot run x86-64-v3 (AVX2) code; make test ran its own build"
    lib_summary; exit
fi
UNITS="test_kernels test_model test_generate"
targets=""
for t in $UNITS; do targets="$targets $AVX2/tests/$t"; done
if ! lib_avx2 $targets; then bad "building the AVX2 unit tests in $AVX2"; lib_summary; exit; fi
lib_workspace
for t in $UNITS; do
    OPENBLAS_CORETYPE=Haswell RLHF_LOWP=portable "$ROOT/$AVX2/tests/$t" > "$W/out" 2>&1
    rc=$?
    line=$(grep '^[0-9]* passed, [0-9]* failed$' "$W/out" | tail -1)
    if [ $rc -eq 0 ] && [ -n "$line" ]; then ok "$t (AVX2 build, OpenBLAS Haswell): $line"
    else
        grep -B4 '^FAIL' "$W/out" | head -20 | sed 's/^/    /'
        bad "$t (AVX2 build, OpenBLAS Haswell): ${line:-exit $rc}"
    fi
done
lib_summary
