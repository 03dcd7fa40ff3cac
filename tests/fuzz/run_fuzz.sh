#!/bin/sh
# make fuzz: builds each tests/fuzz/fuzz_*.c with clang's libFuzzer + ASan + UBSan into
# build-fuzz/ and runs it for FUZZ_SECONDS (default 60) from its seed corpus
# (tests/fuzz/corpus/TARGET), with its dictionary (tests/fuzz/TARGET.dict; the YAML parsers share
# tests/fuzz/yaml.dict: anchors, aliases, deep nesting, the pipeline keys). New interesting
# inputs go to build-fuzz/corpus/TARGET; a crash is saved as build-fuzz/crash-TARGET-* and fails
# the run: copy it into tests/fuzz/corpus/TARGET so that `make test` replays it from then on.
# Prints one line per target.
set -u
SECONDS_EACH=${FUZZ_SECONDS:-60}
ONLY=${FUZZ_TARGETS:-}
command -v clang >/dev/null || { echo "fuzz: clang is missing; as root: apt-get install -y clang libclang-rt-14-dev" >&2; exit 1; }
OUT=build-fuzz
mkdir -p "$OUT/obj" "$OUT/corpus"
CFLAGS="-std=gnu11 -g -O1 -fopenmp=libgomp -Icommon -Ipipelines -Ireward -fsanitize=address,undefined -fno-sanitize-recover=undefined"
objs=""
for c in common/*.c pipelines/pipeline.c reward/import.c reward/text.c; do
    o="$OUT/obj/$(basename "$c" .c).o"
    if [ ! -f "$o" ] || [ "$c" -nt "$o" ]; then clang $CFLAGS -fsanitize=fuzzer-no-link -c "$c" -o "$o" || exit 1; fi
    objs="$objs $o"
done
LIBS="-lopenblas -lsqlite3 -lyaml -lpcre2-8 -lcjson -lutf8proc -lm -lgomp"
status=0
for src in tests/fuzz/fuzz_*.c; do
    t=$(basename "$src" .c)
    [ "$t" = fuzz_driver ] && continue
    [ -n "$ONLY" ] && ! echo " $ONLY " | grep -q " $t " && continue
    clang $CFLAGS -fsanitize=fuzzer "$src" $objs -o "$OUT/$t" $LIBS || exit 1
    mkdir -p "$OUT/corpus/$t"
    log="$OUT/$t.log"
    # a target's dictionary: tests/fuzz/TARGET.dict, or the YAML one for the YAML parsers
    dict=""
    [ -f "tests/fuzz/$t.dict" ] && dict="-dict=tests/fuzz/$t.dict"
    case "$t" in fuzz_pipeline|fuzz_config) dict="-dict=tests/fuzz/yaml.dict";; esac
    ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 OMP_NUM_THREADS=1 "$OUT/$t" $dict -max_total_time="$SECONDS_EACH" \
        -rss_limit_mb=2048 -max_len=65536 -timeout=10 -artifact_prefix="$OUT/crash-$t-" "$OUT/corpus/$t" "tests/fuzz/corpus/$t" > "$log" 2>&1
    rc=$?
    runs=$(grep -o 'Done [0-9]* runs' "$log" | tail -1)
    if [ $rc -eq 0 ]; then echo "fuzz: $t: clean for ${SECONDS_EACH}s ($runs)"
    else echo "fuzz: $t: FAILED (exit $rc); see $log and $OUT/crash-$t-*"; status=1; fi
done
exit $status
