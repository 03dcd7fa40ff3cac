#!/bin/sh
# Reward-model speed on the small config: bench_reward (C) beside bench_reward_torch.py (PyTorch,
# same model, shapes and threads), one process each. Prints one line per figure:
#   RESULT {"name": .., "value": .., "unit": .., "ref_name": .., "ref_value": .., "ratio": ..}
# (ratio = ours / PyTorch; ref null when PyTorch is not there). Never fails on time.
#   sh bench/bench_reward.sh [BUILD] [--quick]
BUILD=${1:-build}
STEPS=5
[ "$2" = "--quick" ] && STEPS=3
C="$BUILD/bench/bench_reward"
PY=${PYTHON:-/usr/bin/python3}
T=${OMP_NUM_THREADS:-2}
run() {   # run WHAT MODE ARGS...: the JSON line, or nothing
    what=$1; shift
    if [ "$what" = c ]; then OMP_NUM_THREADS=$T OPENBLAS_NUM_THREADS=$T "$C" "$@" --steps $STEPS 2>/dev/null | grep '^{'
    else OMP_NUM_THREADS=$T $PY bench/bench_reward_torch.py "$@" --steps $STEPS --threads $T 2>/dev/null | grep '^{'; fi
}
ct=$(run c --mode train --rankings 8 --K 4 --T 128); tt=$(run torch --mode train --rankings 8 --K 4 --T 128)
cs=$(run c --mode score --B 16 --T 128); ts=$(run torch --mode score --B 16 --T 128)
$PY - "$ct" "$tt" "$cs" "$ts" <<'PY'
import json, sys
def get(s, k):
    try: return json.loads(s)[k]
    except Exception: return None
def result(name, value, unit, ref):
    if value is None: return
    print("RESULT " + json.dumps(dict(name=name, value=value, unit=unit, ref_name="pytorch" if ref else None, ref_value=ref,
                                      ratio=round(value / ref, 3) if ref else None)))
ct, tt, cs, ts = sys.argv[1:5]
result("reward train small K=4 T=128 8 rankings/step comparisons/s", get(ct, "comparisons_per_s"), "cmp/s", get(tt, "comparisons_per_s"))
result("reward score small T=128 B=16 completions/s", get(cs, "completions_per_s"), "compl/s", get(ts, "completions_per_s"))
result("reward train small peak RSS", get(ct, "peak_rss_mb"), "MiB", get(tt, "peak_rss_mb"))
PY
