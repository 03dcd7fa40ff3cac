#!/bin/sh
# The main job (`make demo`): the whole InstructGPT recipe on the offline demo task family,
# `rlhf run pipelines/demo.yaml`, into the workspace demo-ws/ (rerun: finished stages are
# skipped, an interrupted one resumes). Threads wait passively: the demo's models are tiny, and
# spinning OpenMP threads slow them down badly on a machine where anything else runs.
set -e
BUILD=${1:-build}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
exec "$BUILD/bin/rlhf" run pipelines/demo.yaml ${DEMO_ARGS:-}
