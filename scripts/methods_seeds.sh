#!/bin/sh
# The methods comparison at several seeds, from the same SFT model and rankings:
#   sh scripts/methods_seeds.sh PIPELINE.yaml SEED...   (e.g. pipelines/demo-methods.yaml 1234 2 3)
# Runs `rlhf run PIPELINE --set vars.method_seed=SEED` for each seed in turn (the stages before
# the methods are unchanged and skipped after the first; each method and its evaluation run
# again with train.seed SEED), then prints `scripts/methods_table.sh --seeds` on the pipeline's
# workspace: each figure's mean and range over the seeds. BUILD (default build) names the build
# folder; OMP_NUM_THREADS as set (threads wait passively, as in `make demo`). Stops at the first
# pipeline that fails.
set -e
usage="usage: sh scripts/methods_seeds.sh PIPELINE.yaml SEED..."
[ $# -ge 2 ] || { echo "$usage" >&2; exit 1; }
pipe=$1; shift
[ -f "$pipe" ] || { echo "methods_seeds: $pipe: no such file" >&2; exit 1; }
for s in "$@"; do
    case $s in *[!0-9]*|"") echo "methods_seeds: seed '$s' is not a non-negative integer" >&2; exit 1;; esac
done
BUILD=${BUILD:-build}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
# the workspace: the file's `workspace:`, relative to the file's folder
ws=$(sed -n 's/^workspace: *\([^ #]*\).*/\1/p' "$pipe" | head -1)
case $ws in /*) ;; *) ws="$(dirname "$pipe")/$ws";; esac
for s in "$@"; do
    echo "methods_seeds: $pipe with vars.method_seed=$s" >&2
    "$BUILD/bin/rlhf" run "$pipe" --set vars.method_seed="$s"
done
sh "$(dirname "$0")/methods_table.sh" --seeds "$ws/workspace.db"
