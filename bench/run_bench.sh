#!/bin/sh
# `make bench`: every benchmark beside its reference (see bench/run_bench.py).
BUILD=${1:-build}
sh scripts/deps.sh bench || exit 1
exec /usr/bin/python3 bench/run_bench.py --build "$BUILD" ${BENCH_ARGS:-}
