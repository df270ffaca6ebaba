#!/usr/bin/env bash
# Multi-device sync simulation soak (SECURITY F5): runs SEEDS seeds of the
# seeded simulator (crates/keyhold-client/tests/simulation.rs: devices, a
# server, crashes, partitions, lost, duplicated and reordered commits) in
# release mode on every core. A failure prints the smallest failing seed, its
# shortest failing schedule and the event log; replay it with
#   KEYHOLD_SIM_SEED=<seed> [KEYHOLD_SIM_EVENTS=<n>] cargo test -p keyhold-client --test simulation -- --nocapture
#
# Usage: scripts/simulate.sh [SEEDS] [FIRST]
#   SEEDS  seeds to run (default 100000; `cargo test` runs 300)
#   FIRST  first seed (default 0)
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${1:-100000}
first=${2:-0}
for n in "$seeds" "$first"; do
    if ! [[ $n =~ ^[0-9]+$ ]]; then
        echo "simulate.sh: SEEDS and FIRST must be numbers" >&2
        exit 2
    fi
done
export KEYHOLD_SIM_SEEDS=$seeds KEYHOLD_SIM_START=$first
echo "simulate: seeds $first..$((first + seeds))"
cargo test --release -p keyhold-client --test simulation -- --nocapture
