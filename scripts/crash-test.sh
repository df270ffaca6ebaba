#!/usr/bin/env bash
# Crash safety soak (SECURITY F1, F3): kills the client (SIGKILL) and the
# server at random points of syncs, N times each, and checks after every
# crash that each committed version is restorable, the newest is complete
# or absent, nothing is lost locally and the next sync converges.
#
# Usage: scripts/crash-test.sh [ITERATIONS] [SEED]
#   ITERATIONS  crashes per test (default 1000; CI runs 12)
#   SEED        replays a schedule of edits and kill delays (printed on failure)
set -euo pipefail
cd "$(dirname "$0")/.."
iterations=${1:-1000}
if ! [[ $iterations =~ ^[0-9]+$ ]] || [[ $iterations -lt 1 ]]; then
    echo "crash-test.sh: ITERATIONS must be a positive number" >&2
    exit 2
fi
export KEYHOLD_CRASH_ITERATIONS=$iterations
if [[ $# -ge 2 ]]; then
    export KEYHOLD_CRASH_SEED=$2
fi
echo "crash-test: $iterations crashes per test${KEYHOLD_CRASH_SEED:+, seed $KEYHOLD_CRASH_SEED}"
cargo test --release -p keyhold --test crash -- --nocapture --test-threads 1
